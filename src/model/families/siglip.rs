//! SigLIP as `transformers` writes it (also SigLIP 2's fixed-resolution checkpoints, which have
//! the same layout): `SiglipVisionModel` (with or without its attention-pooling head),
//! `SiglipForImageClassification`, `SiglipModel` (image and text towers, `logit_scale`,
//! `logit_bias`) and `SiglipTextModel`. Mirrors
//! <https://github.com/huggingface/transformers/blob/main/src/transformers/models/siglip/configuration_siglip.py>
//! (`SiglipVisionConfig`, `SiglipTextConfig`, `SiglipConfig`); the model is
//! `modeling_siglip.py`, its image processor `image_processing_siglip.py` (`SiglipImageProcessor`:
//! a bicubic resize to the training size).
//!
//! The image tower: no class token, position embeddings for the patches only, tanh GELU, every
//! token normed after the encoder (`post_layernorm`), pooled by an attention-pooling head (its
//! `nn.MultiheadAttention` packs query, key and value in one `in_proj`; the learned query is
//! projected once at load). The classifier reads the mean token. The text tower: bidirectional,
//! pooled at the last position through its `head` (with bias).

use crate::error::Result;
use crate::graph::ir::Graph;
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::clip_layout as layout;
use crate::model::shared::family::{FamilyDef, Shapes};
use crate::model::shared::hf_config::{self, head_of, image_text_tower, text_tower, Defaults, FamilyParts, TowerConfig, TowerTypes, VisionFields};
use crate::model::shared::names::engine;
use crate::model::shared::preprocess::{PreprocessorConfig, Resample};
use crate::model::shared::reader::{positions_named, Loaded, Reader, Sink};
use crate::model::shared::siglip_parts;
use crate::model::shared::spec::{Family, Head, Layout, ModelConfig};
use crate::model::shared::text_spec::{text_only_config, TextConfig, TextDefaults, TextHost, TextKind};
use crate::model::shared::tower::{Heads, Tower};
use crate::ops::Activation;
use serde::Deserialize;
use serde_json::Value;

/// The two-tower model's, the image tower's and the text tower's `model_type`.
const TYPES: TowerTypes = ["siglip", "siglip_vision_model", "siglip_text_model"];

#[allow(non_upper_case_globals)]
impl Family {
    /// `model_type: "siglip_vision_model"`, or the image tower of `"siglip"` (SigLIP and SigLIP
    /// 2's fixed-resolution checkpoints): no class token, tanh GELU, attention-pooling head.
    pub const Siglip: Family = Family::named("Siglip");
}

/// `SiglipVisionConfig`: the shared vision fields, and whether the tower has its pooling head.
#[derive(Deserialize)]
struct VisionConfig {
    #[serde(flatten)]
    common: VisionFields,
    vision_use_head: Option<bool>,
}

/// `SiglipVisionConfig`'s defaults (hub configs written with `to_diff_dict` leave them out).
const VISION_DEFAULTS: Defaults = Defaults { shape: Some([768, 12, 12, 3072, 224, 16]), eps: 1e-6, act: Activation::GeluTanh };

/// `SiglipTextConfig`'s defaults.
const TEXT_DEFAULTS: TextDefaults = TextDefaults { hidden_size: 768, heads: 12, intermediate_size: 3072, vocab_size: 32000, positions: 64, act: "gelu_pytorch_tanh", eps: 1e-6 };

const ARCHITECTURES: &[(&str, Head)] = &[
    ("SiglipModel", Head::None),
    ("SiglipVisionModel", Head::None),
    // The mean of the normed tokens.
    ("SiglipForImageClassification", Head::Avg),
];

/// Tensors of a SiglipModel's text tower and scores (read by the text tower).
const TEXT: [&str; 3] = ["text_model.", "logit_scale", "logit_bias"];

/// The SigLIP family.
pub struct SiglipFamily;

/// SigLIP.
pub const SIGLIP: SiglipFamily = SiglipFamily;

impl FamilyDef for SiglipFamily {
    fn family(&self) -> Family {
        Family::Siglip
    }

    fn model_types(&self) -> &'static [&'static str] {
        &TYPES
    }

    fn text_model_types(&self) -> &'static [&'static str] {
        &[TYPES[0], TYPES[2]]
    }

    fn parse(&self, config: &Value, file: &str, _shapes: Shapes) -> Result<(ModelConfig, PreprocessorConfig)> {
        let cfg = match image_text_tower(config, TYPES, file)? {
            TowerConfig::Text => text_only_config(&self.text_config(config, file)?, config),
            TowerConfig::Vision(v) => vision(&v, file)?,
        };
        let pre = PreprocessorConfig::vit_default(cfg.image_size, filter(&cfg));
        Ok((cfg, pre))
    }

    fn preprocessor_json(&self, config: &ModelConfig) -> Option<Value> {
        let processor = if config.family == Family::Siglip { "SiglipImageProcessor" } else { "ViTImageProcessor" };
        Some(PreprocessorConfig::vit_default_json(processor, config.image_size, filter(config)))
    }

    fn load(&self, ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
        load_vision(ck, patch, sink)
    }

    fn heads(&self, g: &mut Graph, t: &Tower) -> Result<Heads> {
        siglip_parts::heads(g, t)
    }

    fn text_kind(&self) -> Option<TextKind> {
        Some(TextKind::Siglip)
    }

    fn text_config(&self, config: &Value, file: &str) -> Result<TextConfig> {
        siglip_parts::text_config(&text_tower(config, TYPES, file)?, &TEXT_DEFAULTS, file)
    }

    fn load_text(&self, ck: &Checkpoint, cfg: &TextConfig, sink: &mut dyn Sink) -> Result<TextHost> {
        siglip_parts::load_text(ck, cfg, sink)
    }

    fn float_layers(&self) -> &'static [&'static str] {
        &["classifier"]
    }
}

/// `SiglipImageProcessor` resizes bicubic (a text tower alone keeps ViT's default).
fn filter(config: &ModelConfig) -> Resample {
    if config.family == Family::Siglip {
        Resample::Bicubic
    } else {
        Resample::Bilinear
    }
}

/// A `siglip_vision_model` config.
fn vision(config: &Value, file: &str) -> Result<ModelConfig> {
    let raw: VisionConfig = hf_config::read(config, file)?;
    let architecture = raw.common.architectures.as_ref().and_then(|a| a.first().cloned());
    let head = head_of(architecture.as_deref(), ARCHITECTURES, file)?;
    // No class token; every token normed (post_layernorm), pooled by the head.
    let layout = Layout { class_token: false, pool_map: raw.vision_use_head.unwrap_or(true), ..Default::default() };
    let parts = FamilyParts { family: Family::Siglip, head, mlp_ratio: None, layout, projection_dim: None };
    raw.common.validate(parts, &VISION_DEFAULTS, file)
}

/// SigLIP's image tower: patch convolution with bias, position embeddings for the patches only,
/// the encoder, the post-norm of every token as the final norm, then the attention-pooling head
/// and the classifier on the mean token, where the checkpoint has them. A SiglipModel's text
/// tower is known and left for the text side.
fn load_vision(ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
    let cfg = &ck.config;
    let prefix = if ck.has(&format!("vision_model.{}.weight", layout::PATCH)) { "vision_model." } else { "" };
    let mut rd = Reader::new(ck, prefix);
    let d = cfg.hidden_size;
    rd.patch_weight_to(sink, layout::PATCH, cfg, patch)?;
    sink.f32(&engine::patch().1, &[d], &rd.get(&format!("{}.bias", layout::PATCH), &[d])?)?;
    let pos = positions_named(ck, &mut rd, layout::POSITIONS, 0)?;
    siglip_parts::tower_to(ck, rd, sink, &TEXT, pos)
}
