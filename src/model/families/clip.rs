//! CLIP as `transformers` writes it: `CLIPVisionModel`, `CLIPVisionModelWithProjection`,
//! `CLIPModel` (image and text towers, `logit_scale`), `CLIPTextModel` and
//! `CLIPTextModelWithProjection`. Mirrors
//! <https://github.com/huggingface/transformers/blob/main/src/transformers/models/clip/configuration_clip.py>
//! (`CLIPVisionConfig`, `CLIPTextConfig`, `CLIPConfig`); the model is `modeling_clip.py`, its
//! image processor `image_processing_clip.py` (a single `size` is the shortest edge, which
//! `model::shared::preprocess` reads from the processor's type).
//!
//! The image tower: a class embedding, a patch convolution without bias, a norm before the
//! encoder (`pre_layrnorm`), quick GELU, the class token normed after the encoder
//! (`post_layernorm`, the engine's `fc_norm`) and projected (`visual_projection`). The text
//! tower: causal, pooled at the end-of-text token, projected by `text_projection` (no bias).

use crate::error::Result;
use crate::graph::ir::Graph;
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::clip_layout as layout;
use crate::model::shared::family::{FamilyDef, Shapes};
use crate::model::shared::hf_config::{self, head_of, image_text_tower, text_tower, Defaults, FamilyParts, TowerConfig, TowerTypes, VisionFields};
use crate::model::shared::names::engine;
use crate::model::shared::preprocess::{PreprocessorConfig, Resample};
use crate::model::shared::reader::{check_all_used, positions_named, Loaded, Reader, Sink};
use crate::model::shared::spec::{Family, Head, Layout, ModelConfig};
use crate::model::shared::text_spec::{parse_text, text_only_config, TextConfig, TextDefaults, TextHost, TextKind};
use crate::model::shared::tower::{Heads, Tower};
use crate::ops::Activation;
use serde::Deserialize;
use serde_json::Value;

/// The two-tower model's, the image tower's and the text tower's `model_type`.
const TYPES: TowerTypes = ["clip", "clip_vision_model", "clip_text_model"];

#[allow(non_upper_case_globals)]
impl Family {
    /// `model_type: "clip_vision_model"`, or the image tower of `"clip"` (pre-norm, quick GELU,
    /// the class token normed after the encoder, a projection into the shared space).
    pub const Clip: Family = Family::named("Clip");
}

/// `CLIPVisionConfig`: the shared vision fields, and the projection width a CLIPModel's config
/// carries at its top level.
#[derive(Deserialize)]
struct VisionConfig {
    #[serde(flatten)]
    common: VisionFields,
    projection_dim: Option<usize>,
}

/// `CLIPVisionConfig`'s defaults (hub configs written with `to_diff_dict` leave them out).
const VISION_DEFAULTS: Defaults = Defaults { shape: Some([768, 12, 12, 3072, 224, 32]), eps: 1e-5, act: Activation::QuickGelu };

/// `CLIPTextConfig`'s defaults.
const TEXT_DEFAULTS: TextDefaults = TextDefaults { hidden_size: 512, heads: 8, intermediate_size: 2048, vocab_size: 49408, positions: 77, act: "quick_gelu", eps: 1e-5 };

const ARCHITECTURES: &[(&str, Head)] = &[("CLIPModel", Head::None), ("CLIPVisionModel", Head::None), ("CLIPVisionModelWithProjection", Head::None)];

/// The image tower's names, relative to its prefix (`vision_model.` in CLIPModel and
/// CLIPVisionModelWithProjection files, and in CLIPVisionModel files of transformers 4; none in
/// those transformers 5 writes); the projection at the top level. The encoder's are
/// `model::shared::clip_layout`'s.
pub mod names {
    /// The class embedding, `(D)`.
    pub const CLASS: &str = "embeddings.class_embedding";
    /// The norm before the encoder.
    pub const PRE_NORM: &str = "pre_layrnorm";
    /// The projection into the image-text space, `(P, D)`, no bias.
    pub const PROJECTION: &str = "visual_projection";
    /// Tensors of a CLIPModel's text tower and similarity scale (read by the text tower).
    pub const TEXT: [&str; 3] = ["text_model.", "text_projection.", "logit_scale"];
}

/// The CLIP family.
pub struct ClipFamily;

/// CLIP.
pub const CLIP: ClipFamily = ClipFamily;

impl FamilyDef for ClipFamily {
    fn family(&self) -> Family {
        Family::Clip
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
        let pre = PreprocessorConfig::vit_default(cfg.image_size, Resample::Bilinear);
        Ok((cfg, pre))
    }

    fn preprocessor_json(&self, config: &ModelConfig) -> Option<Value> {
        Some(PreprocessorConfig::vit_default_json("ViTImageProcessor", config.image_size, Resample::Bilinear))
    }

    fn load(&self, ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
        load_vision(ck, patch, sink)
    }

    fn heads(&self, g: &mut Graph, t: &Tower) -> Result<Heads> {
        let pooled = t.pooled_features(g, None)?;
        let logits = t.logits(g, Some(pooled))?;
        let image_embeds = t.projection(g, pooled)?;
        Ok(Heads { logits, pooled: Some(pooled), image_embeds })
    }

    fn text_kind(&self) -> Option<TextKind> {
        Some(TextKind::Clip)
    }

    fn text_config(&self, config: &Value, file: &str) -> Result<TextConfig> {
        let t = text_tower(config, TYPES, file)?;
        let mut cfg = parse_text(&t, TextKind::Clip, &TEXT_DEFAULTS, file)?;
        // A CLIPTextModel's config carries CLIP's projection_dim without the projection.
        let plain = config["architectures"][0].as_str() == Some("CLIPTextModel");
        cfg.projection_dim = config.get("projection_dim").and_then(Value::as_u64).map(|p| p as usize).filter(|&p| p > 0 && p <= 16384 && !plain);
        Ok(cfg)
    }

    fn load_text(&self, ck: &Checkpoint, cfg: &TextConfig, sink: &mut dyn Sink) -> Result<TextHost> {
        let (_, tokens, positions) = layout::text_tower_to(ck, cfg, sink)?;
        let mut top = Reader::new(ck, "");
        let d = cfg.hidden_size;
        let projection = match cfg.projection_dim {
            Some(p) if top.has_linear("text_projection") => Some((top.linear("text_projection", d, p, false, None)?.0.into_f32(), None)),
            _ => None,
        };
        Ok((tokens, positions, projection))
    }
}

/// A `clip_vision_model` config.
fn vision(config: &Value, file: &str) -> Result<ModelConfig> {
    let raw: VisionConfig = hf_config::read(config, file)?;
    let architecture = raw.common.architectures.as_ref().and_then(|a| a.first().cloned());
    let head = head_of(architecture.as_deref(), ARCHITECTURES, file)?;
    // CLIP: a norm before the encoder; the class token normed after it (post_layernorm).
    let layout = Layout { pre_norm: true, fc_norm: true, ..Default::default() };
    let parts = FamilyParts { family: Family::Clip, head, mlp_ratio: None, layout, projection_dim: raw.projection_dim };
    raw.common.validate(parts, &VISION_DEFAULTS, file)
}

/// CLIP's image tower: class embedding, patch convolution without bias, position embeddings,
/// pre-norm, the encoder (quick GELU), the post-norm of the class token as `fc_norm`, and the
/// projection where the checkpoint has one. A CLIPModel's text tower is known and left for the
/// text side.
fn load_vision(ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
    use names as c;
    let cfg = &ck.config;
    let prefix = if ck.has(&format!("vision_model.{}", c::CLASS)) { "vision_model." } else { "" };
    let mut rd = Reader::new(ck, prefix);
    let d = cfg.hidden_size;
    rd.patch_weight_to(sink, layout::PATCH, cfg, patch)?;
    sink.f32(&engine::patch().1, &[d], &vec![0.0; d])?;
    sink.f32(engine::prefix(), &[1, d], &rd.get(c::CLASS, &[d])?)?;
    let pos = positions_named(ck, &mut rd, layout::POSITIONS, 1)?;
    rd.norm_to(sink, c::PRE_NORM, engine::pre_norm(), d)?;
    let mlp = cfg.intermediate_size;
    layout::encoder_to(&mut rd, sink, cfg.num_layers, d, mlp)?;
    rd.norm_to(sink, layout::POST_NORM, engine::fc_norm(), d)?;
    let mut top = Reader::new(ck, "");
    let projection = cfg.projection_dim.is_some() && top.has_linear(c::PROJECTION);
    if let Some(pd) = cfg.projection_dim.filter(|_| projection) {
        let (wt, _) = top.linear(c::PROJECTION, d, pd, false, None)?;
        let (w, b) = engine::projection();
        wt.to_sink(sink, &w, &[d, pd])?;
        sink.f32(&b, &[pd], &vec![0.0; pd])?;
    }
    rd.used.extend(top.used);
    for t in ck.tensor_names() {
        if c::TEXT.iter().any(|p| t.starts_with(p)) {
            rd.used.insert(t);
        }
    }
    check_all_used(ck, &rd.used, Head::None)?;
    Ok(Loaded { head: Head::None, pooler: false, projection, pos })
}
