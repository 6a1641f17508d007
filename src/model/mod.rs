//! Hugging Face ViT, DeiT and DINOv2 checkpoints on the engine, in parts: the config and
//! checkpoint files, weight names (`naming`), loading and rearranging weights (`load`), the graph
//! builder (`build`), the runner (compiled graphs, batch chunking), and the `Model` facade (`vit`).

pub mod build;
pub mod checkpoint;
#[cfg(feature = "text")]
pub mod clip;
pub mod config;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod flexi;
pub mod interp;
mod load;
pub mod naming;
pub mod preprocess;
pub mod quantized;
mod runner;
#[cfg(feature = "text")]
pub mod spm;
pub mod synthetic;
pub mod text;
pub mod timm;
#[cfg(feature = "text")]
pub mod tokenize;
pub mod vit;

pub use build::{build_graph, Arch, Outputs, RunOptions};
pub use checkpoint::Checkpoint;
pub use config::{Family, Head, ModelConfig};
pub use preprocess::{decode_image, PreprocessorConfig};
pub use quantized::{quantize_checkpoint, QuantConfig, QuantizeReport};
pub use runner::MAX_COMPILED;
pub use text::{TextConfig, TextModel, TextOutput};
pub use vit::{unit_length, AttentionMap, LoadOptions, Model, ModelOutput, TopK};
