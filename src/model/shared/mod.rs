//! The parts below the families: each is used by several families (or by the layers above the
//! family table) and imports no family.

pub mod checkpoint;
pub mod clip_layout;
pub mod decode;
pub mod dpt;
pub mod family;
pub mod flexi;
pub mod hf_config;
pub mod interp;
pub mod merge;
pub mod names;
pub mod preprocess;
pub mod quantized;
pub mod reader;
pub mod siglip_parts;
pub mod spec;
#[cfg(feature = "text")]
pub mod spm;
pub mod text_spec;
#[cfg(feature = "text")]
pub mod tokenize;
pub mod tower;
