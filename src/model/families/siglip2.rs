//! SigLIP 2 as `transformers` writes it, NaFlex included: `Siglip2VisionModel`,
//! `Siglip2ForImageClassification`, `Siglip2Model` (image and text towers, `logit_scale`,
//! `logit_bias`) and `Siglip2TextModel`. Mirrors
//! <https://github.com/huggingface/transformers/blob/main/src/transformers/models/siglip2/configuration_siglip2.py>
//! (`Siglip2VisionConfig`, `Siglip2TextConfig`, `Siglip2Config`); the model is
//! `modeling_siglip2.py`, its image processor `image_processing_siglip2.py`
//! (`Siglip2ImageProcessor`: each image keeps its aspect ratio at the largest scale whose grid of
//! patches fits `max_num_patches`, `model::shared::preprocess`'s `ResizeTo::MaxPatches`).
//!
//! The image tower is SigLIP's (no class token, tanh GELU, every token normed, attention-pooling
//! head) with two differences: the patch embedding is a Linear layer over patches flattened in
//! (row, column, channel) order, permuted at load into the engine's convolution layout so that the
//! patch-embedding op (and the patch-size dial) serve it; and its learned position grid
//! (`num_patches` positions, a square grid) is resized to every image's grid, bilinear with
//! antialiasing (`PosResample::BilinearAntialias`). One image, or a batch of images of one grid,
//! runs without padding, so no mask is needed; images of different grids run as separate batches,
//! or, from the processor's padded patches, as one batch with masked attention
//! (`Model::run_patches`).
//! The text tower is SigLIP's.

use crate::error::{Error, Result};
use crate::graph::ir::Graph;
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::clip_layout as layout;
use crate::model::shared::family::{FamilyDef, Shapes};
use crate::model::shared::hf_config::{self, head_of, image_text_tower, need, text_tower, Defaults, FamilyParts, Size, TowerConfig, TowerTypes, VisionFields};
use crate::model::shared::names::engine;
use crate::model::shared::preprocess::{PreprocessorConfig, ResizeTo, Resample};
use crate::model::shared::reader::{patch_kernel_to, Loaded, PosResample, Positions, Reader, Sink};
use crate::model::shared::siglip_parts;
use crate::model::shared::spec::{Family, Head, Layout, ModelConfig};
use crate::model::shared::text_spec::{text_only_config, TextConfig, TextDefaults, TextHost, TextKind};
use crate::model::shared::tower::{Heads, Tower};
use crate::ops::Activation;
use serde::Deserialize;
use serde_json::Value;

/// The two-tower model's, the image tower's and the text tower's `model_type`.
const TYPES: TowerTypes = ["siglip2", "siglip2_vision_model", "siglip2_text_model"];

#[allow(non_upper_case_globals)]
impl Family {
    /// `model_type: "siglip2_vision_model"`, or the image tower of `"siglip2"` (SigLIP 2 NaFlex):
    /// SigLIP's tower with a Linear patch embedding and a position grid resized to each image's.
    pub const Siglip2: Family = Family::named("Siglip2");
}

/// `Siglip2VisionConfig`: the shared vision fields (no `image_size`: the grid follows each image),
/// the number of learned positions and whether the tower has its pooling head.
#[derive(Deserialize)]
struct VisionConfig {
    #[serde(flatten)]
    common: VisionFields,
    num_patches: Option<usize>,
    vision_use_head: Option<bool>,
}

/// `Siglip2VisionConfig`'s defaults (the image size stands for the position grid: see `vision`).
const VISION_DEFAULTS: Defaults = Defaults { shape: None, eps: 1e-6, act: Activation::GeluTanh };

/// `Siglip2TextConfig`'s defaults (SigLIP's).
const TEXT_DEFAULTS: TextDefaults = TextDefaults { hidden_size: 768, heads: 12, intermediate_size: 3072, vocab_size: 32000, positions: 64, act: "gelu_pytorch_tanh", eps: 1e-6 };

const ARCHITECTURES: &[(&str, Head)] = &[
    ("Siglip2Model", Head::None),
    ("Siglip2VisionModel", Head::None),
    // The mean of the normed tokens.
    ("Siglip2ForImageClassification", Head::Avg),
];

/// Tensors of a Siglip2Model's text tower and scores (read by the text tower).
const TEXT: [&str; 3] = ["text_model.", "logit_scale", "logit_bias"];

/// The SigLIP 2 family.
pub struct Siglip2Family;

/// SigLIP 2.
pub const SIGLIP2: Siglip2Family = Siglip2Family;

impl FamilyDef for Siglip2Family {
    fn family(&self) -> Family {
        Family::Siglip2
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
        // Siglip2ImageProcessor's defaults: 16-pixel patches, a budget of 256, bilinear.
        let pre = if cfg.family == Family::Siglip2 {
            let mut p = PreprocessorConfig::vit_default(cfg.image_size, Resample::Bilinear);
            p.resize = Some((ResizeTo::MaxPatches { patch: cfg.patch_size, max: 256 }, Resample::Bilinear));
            p
        } else {
            PreprocessorConfig::vit_default(cfg.image_size, Resample::Bilinear)
        };
        Ok((cfg, pre))
    }

    fn preprocessor_json(&self, config: &ModelConfig) -> Option<Value> {
        if config.family != Family::Siglip2 {
            return Some(PreprocessorConfig::vit_default_json("ViTImageProcessor", config.image_size, Resample::Bilinear));
        }
        Some(serde_json::json!({
            "image_processor_type": "Siglip2ImageProcessor", "do_resize": true, "patch_size": config.patch_size,
            "max_num_patches": 256, "resample": 2, "do_rescale": true, "rescale_factor": 1.0 / 255.0,
            "do_normalize": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        }))
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

/// A `siglip2_vision_model` config. Its learned positions form a square grid of `num_patches`;
/// the engine's image size stands for that grid (`side * patch_size` pixels a side), which is what
/// a fixed-size input (a benchmark, `tessera info`) gets.
fn vision(config: &Value, file: &str) -> Result<ModelConfig> {
    let mut raw: VisionConfig = hf_config::read(config, file)?;
    let architecture = raw.common.architectures.as_ref().and_then(|a| a.first().cloned());
    let head = head_of(architecture.as_deref(), ARCHITECTURES, file)?;
    let num_patches = need(raw.num_patches.or(Some(256)), "num_patches", 1 << 20, file)?;
    let side = (num_patches as f64).sqrt().round() as usize;
    if side * side != num_patches {
        return Err(Error::model(file, format!("`num_patches` {num_patches} is not a square grid of positions")));
    }
    let patch = match raw.common.patch_size.unwrap_or(Size::One(16)) {
        Size::One(p) => p,
        Size::Two([a, b]) if a == b => a,
        Size::Two([a, b]) => return Err(Error::model(file, format!("non-square patches {a}x{b} are not supported"))),
    };
    raw.common.patch_size = Some(Size::One(patch));
    raw.common.image_size = Some(Size::One(side.saturating_mul(patch).max(1)));
    // Siglip2VisionConfig's shape defaults (the image size set above).
    let c = &mut raw.common;
    c.hidden_size = c.hidden_size.or(Some(768));
    c.num_hidden_layers = c.num_hidden_layers.or(Some(12));
    c.num_attention_heads = c.num_attention_heads.or(Some(12));
    c.intermediate_size = c.intermediate_size.or(Some(3072));
    // No class token; every token normed (post_layernorm), pooled by the head.
    let layout = Layout { class_token: false, pool_map: raw.vision_use_head.unwrap_or(true), ..Default::default() };
    let parts = FamilyParts { family: Family::Siglip2, head, mlp_ratio: None, layout, projection_dim: None };
    raw.common.validate(parts, &VISION_DEFAULTS, file)
}

/// SigLIP 2's image tower: the Linear patch embedding (as a convolution kernel), the position grid
/// (resized per image), the encoder, the post-norm of every token as the final norm, then the
/// attention-pooling head and the classifier on the mean token where the checkpoint has them. A
/// Siglip2Model's text tower is known and left for the text side.
fn load_vision(ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
    let cfg = &ck.config;
    let prefix = if ck.has(&format!("vision_model.{}.weight", layout::PATCH)) { "vision_model." } else { "" };
    let mut rd = Reader::new(ck, prefix);
    let (d, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
    // (D, p * p * C) over (row, column, channel) into the convolution's (D, C, p, p).
    let linear = rd.get(&format!("{}.weight", layout::PATCH), &[d, p * p * c])?;
    let mut kernel = vec![0f32; d * c * p * p];
    for o in 0..d {
        for i in 0..p {
            for j in 0..p {
                for ch in 0..c {
                    kernel[((o * c + ch) * p + i) * p + j] = linear[o * p * p * c + (i * p + j) * c + ch];
                }
            }
        }
    }
    patch_kernel_to(sink, &kernel, cfg, patch)?;
    sink.f32(&engine::patch().1, &[d], &rd.get(&format!("{}.bias", layout::PATCH), &[d])?)?;
    let side = (cfg.image_size.0 / cfg.patch_size).max(1);
    let positions = rd.get(layout::POSITIONS, &[side * side, d])?;
    let pos = Positions { prefix: Vec::new(), patches: positions, side, resample: PosResample::BilinearAntialias };
    siglip_parts::tower_to(ck, rd, sink, &TEXT, pos)
}
