//! Checkpoints on the engine, in three layers (ARCHITECTURE.md, "Model families"):
//! - [`shared`]: what every family uses and none owns: the checkpoint files, the engine's
//!   description of a model and its weight names, the transformer encoder builder, weight
//!   reading, image decoding and preprocessing, position-embedding resampling, PI-resize,
//!   tokenizers, the quantized format, and the interface a family implements
//!   ([`shared::family::FamilyDef`]);
//! - [`families`]: one module per family (ViT/DeiT/DINOv2, CLIP, SigLIP, timm), each importing only
//!   `shared`, and the one table that lists them;
//! - above the table: opening checkpoints (`checkpoint`), the graph of a model (`build`), the
//!   runner (compiled graphs, batch chunks), the facades ([`Model`], [`TextModel`], and
//!   `clip::Clip` / `clip::TextEncoder`), quantizing, the built-in checkpoints.

pub mod shared;
pub mod families;

pub mod build;
pub mod checkpoint;
#[cfg(feature = "text")]
pub mod clip;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod image;
pub mod quantize;
mod runner;
pub mod synthetic;
pub mod text;

pub use build::{build_graph, Outputs};
pub use families::timm;
pub use image::{unit_length, ArithmeticReport, AttentionMap, DepthMap, LoadOptions, Model, ModelOutput, TopK};
pub use quantize::{quantize_checkpoint, QuantizeReport};
pub use runner::MAX_COMPILED;
pub use shared::checkpoint::{ByteSource, Checkpoint};
pub use shared::decode::decode_image;
pub use shared::flexi;
pub use shared::merge::{LayerMerge, Merge, MergeSchedule};
pub use shared::preprocess::PreprocessorConfig;
pub use shared::quantized::QuantConfig;
pub use shared::spec::{Family, Head, Layout, ModelConfig};
pub use shared::text_spec::{TextConfig, TextKind};
#[cfg(feature = "text")]
pub use shared::tokenize;
pub use shared::tower::{Arch, RunOptions};
pub use text::{TextModel, TextOutput};
