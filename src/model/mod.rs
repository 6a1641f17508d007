//! Hugging Face ViT, DeiT and DINOv2 checkpoints on the engine: config, weights, preprocessing
//! and one graph builder for all three families.

pub mod checkpoint;
pub mod config;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod interp;
pub mod preprocess;
pub mod synthetic;
pub mod vit;

pub use checkpoint::Checkpoint;
pub use config::{Family, Head, ModelConfig};
pub use preprocess::{decode_image, PreprocessorConfig};
pub use vit::{AttentionMap, Model, ModelOutput, RunOptions, TopK, MAX_COMPILED};
