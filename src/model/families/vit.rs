//! ViT, DeiT and DINOv2 as `transformers` writes them: one encoder layout (`encoder.layer.{i}.
//! attention.attention.query`, ...) under a model prefix (`vit.`, `deit.`, `dinov2.`), a class
//! token (and DeiT's distillation token), position embeddings for every token, and the heads of
//! `ViTForImageClassification`, `DeiTForImageClassificationWithTeacher` and
//! `Dinov2ForImageClassification`. Mirrors
//! <https://github.com/huggingface/transformers/blob/main/src/transformers/models/vit/configuration_vit.py>
//! (and `deit/configuration_deit.py`, `dinov2/configuration_dinov2.py`); the models are
//! `modeling_vit.py`, `modeling_deit.py`, `modeling_dinov2.py`; the image processor
//! `image_processing_vit.py` (`ViTImageProcessor`).
//!
//! Rearranged for the engine: DINOv2's layer scale folded into the projection it scales, DeiT's
//! two heads pre-scaled by 1/2 so that their sum is the average.
//!
//! Depth Anything (`DepthAnythingForDepthEstimation`, `modeling_depth_anything.py`) is a DINOv2
//! written under `backbone.` with its `config.json` in `backbone_config`, and a DPT neck and
//! depth head (`model::shared::dpt`) over its hidden states. DPT (`DPTForDepthEstimation`,
//! `modeling_dpt.py`, Intel/dpt-large's layout) is a ViT under `dpt.` with its fields at the top
//! of its `config.json`, position embeddings resized bilinearly to every grid, and DPT's own neck
//! and head over the hidden states as its layers leave them; DPT-Hybrid (a ResNet stem) and other
//! backbones are refused by name.

use crate::error::{Error, Result};
use crate::graph::ir::Graph;
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::dpt::{self, DepthHead};
use crate::model::shared::family::{FamilyDef, Shapes};
use crate::model::shared::hf_config::{self, head_of, Defaults, FamilyParts, VisionFields};
use crate::model::shared::names::{engine, Linear, Norm};
use crate::model::shared::preprocess::{PreprocessorConfig, Resample};
use crate::model::shared::reader::{check_all_used, positions_named, qkv_to, Loaded, PosResample, Reader, Sink};
use crate::model::shared::spec::{Family, Head, Layout, ModelConfig};
use crate::model::shared::tower::{Heads, Tower};
use crate::ops::Activation;
use serde::Deserialize;
use serde_json::Value;

#[allow(non_upper_case_globals)]
impl Family {
    /// `model_type: "vit"`.
    pub const Vit: Family = Family::named("Vit");
    /// `model_type: "deit"` (class + distillation tokens).
    pub const Deit: Family = Family::named("Deit");
    /// `model_type: "dinov2"` (layer scale, always-interpolated position embeddings).
    pub const Dinov2: Family = Family::named("Dinov2");
    /// `model_type: "depth_anything"`: a DINOv2 backbone and a DPT depth head.
    pub const DepthAnything: Family = Family::named("DepthAnything");
    /// `model_type: "dpt"`: a ViT backbone and DPT's depth head.
    pub const Dpt: Family = Family::named("Dpt");
    /// `model_type: "dpt"` over a DINOv2 `backbone_config` (facebook/dpt-dinov2-*'s layout): the
    /// DINOv2 under `backbone.` and DPT's neck and head.
    pub const DptDinov2: Family = Family::named("DptDinov2");
}

/// `ViTConfig`, `DeiTConfig` and `Dinov2Config`: the shared vision fields, and DINOv2's own.
#[derive(Deserialize)]
struct Config {
    #[serde(flatten)]
    common: VisionFields,
    /// Dinov2Config: the MLP width as a ratio of the width.
    mlp_ratio: Option<f64>,
    /// Dinov2Config: a SwiGLU MLP (the giant model), which the engine does not run.
    use_swiglu_ffn: Option<bool>,
}

/// The architectures of the three families and their heads (a DeiT config may name a ViT head,
/// as transformers loads it).
const ARCHITECTURES: &[(&str, Head)] = &[
    ("ViTModel", Head::None),
    ("ViTForImageClassification", Head::Cls),
    ("DeiTModel", Head::None),
    ("DeiTForImageClassification", Head::Cls),
    ("DeiTForImageClassificationWithTeacher", Head::ClsDistilled),
    ("Dinov2Model", Head::None),
    ("Dinov2ForImageClassification", Head::ClsMeanPatch),
    ("DepthAnythingForDepthEstimation", Head::None),
    ("DPTForDepthEstimation", Head::None),
];

/// One of the three families.
pub struct HfVit {
    family: Family,
    model_type: &'static [&'static str],
}

/// ViT.
pub const VIT: HfVit = HfVit { family: Family::Vit, model_type: &["vit"] };
/// DeiT.
pub const DEIT: HfVit = HfVit { family: Family::Deit, model_type: &["deit"] };
/// DINOv2.
pub const DINOV2: HfVit = HfVit { family: Family::Dinov2, model_type: &["dinov2"] };
/// Depth Anything (V1 and V2, relative and metric).
pub const DEPTH_ANYTHING: HfVit = HfVit { family: Family::DepthAnything, model_type: &["depth_anything"] };
/// DPT with a ViT backbone (`DPTForDepthEstimation`).
pub const DPT: HfVit = HfVit { family: Family::Dpt, model_type: &["dpt"] };
/// DPT over a DINOv2 `backbone_config`: claims the `dpt` configs that have one (listed before
/// [`DPT`]; its `model_type` is DPT's, so it lists none of its own).
pub const DPT_DINOV2: HfVit = HfVit { family: Family::DptDinov2, model_type: &[] };

/// Whether a `config.json` is a DPT over a DINOv2 `backbone_config`.
fn dpt_over_dinov2(config: &Value) -> bool {
    config.get("model_type").and_then(Value::as_str) == Some("dpt")
        && config.get("backbone_config").and_then(|b| b.get("model_type")).and_then(Value::as_str) == Some("dinov2")
}

impl FamilyDef for HfVit {
    fn family(&self) -> Family {
        self.family
    }

    fn model_types(&self) -> &'static [&'static str] {
        self.model_type
    }

    fn claims(&self, config: &Value) -> bool {
        if self.family == Family::DptDinov2 {
            return dpt_over_dinov2(config);
        }
        config.get("model_type").and_then(Value::as_str).is_some_and(|m| self.model_type.contains(&m))
    }

    fn parse(&self, config: &Value, file: &str, _shapes: Shapes) -> Result<(ModelConfig, PreprocessorConfig)> {
        let depth = [Family::DepthAnything, Family::Dpt, Family::DptDinov2].contains(&self.family);
        let backbone = match self.family {
            Family::DepthAnything | Family::DptDinov2 => depth_backbone(config, file)?,
            Family::Dpt => dpt_backbone(config, file)?,
            _ => config,
        };
        let family = self.family;
        if family == Family::DptDinov2 && config.get("is_hybrid").and_then(Value::as_bool) == Some(true) {
            return Err(Error::model(file, "`is_hybrid: true` with a DINOv2 backbone_config: DPT-Hybrid is not supported"));
        }
        let raw: Config = hf_config::read(backbone, file)?;
        let dinov2 = names::dinov2_layout(family);
        let top = if depth { config.get("architectures").and_then(|a| a.get(0)).and_then(Value::as_str).map(String::from) } else { None };
        let architecture = top.or_else(|| raw.common.architectures.as_ref().and_then(|a| a.first().cloned()));
        let head = head_of(architecture.as_deref(), ARCHITECTURES, file)?;
        if raw.use_swiglu_ffn == Some(true) {
            return Err(Error::model(file, "`use_swiglu_ffn: true` (SwiGLU MLP) is not supported"));
        }
        let parts = FamilyParts {
            family,
            head,
            mlp_ratio: dinov2.then(|| raw.mlp_ratio.unwrap_or(4.0)),
            layout: Layout { dist_token: self.family == Family::Deit, ..Default::default() },
            projection_dim: None,
        };
        let mut cfg = raw.common.validate(parts, &Defaults { shape: None, eps: 1e-12, act: Activation::Gelu }, file)?;
        if depth {
            let mut spec = DepthHead::from_config(config, file)?;
            spec.readout_act = cfg.hidden_act;
            spec.check(cfg.num_layers, file)?;
            cfg.depth = Some(spec);
            cfg.labels.clear();
            // A quantized checkpoint says so at the top level, beside backbone_config.
            if cfg.quant.is_none() {
                cfg.quant = hf_config::quantization(config.get("quantization_config"), file)?;
            }
        }
        let pre = if depth {
            PreprocessorConfig::parse(depth_preprocessor(family, &cfg).to_string().as_bytes(), file)?
        } else {
            PreprocessorConfig::vit_default(cfg.image_size, Resample::Bilinear)
        };
        Ok((cfg, pre))
    }

    fn preprocessor_json(&self, config: &ModelConfig) -> Option<Value> {
        if config.depth.is_some() {
            return Some(depth_preprocessor(config.family, config));
        }
        Some(PreprocessorConfig::vit_default_json("ViTImageProcessor", config.image_size, Resample::Bilinear))
    }

    fn check(&self, ck: &Checkpoint) -> Result<()> {
        model_prefix(ck).map(|_| ())
    }

    fn load(&self, ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
        load(ck, patch, sink)
    }

    fn heads(&self, g: &mut Graph, t: &Tower) -> Result<Heads> {
        let cfg = t.arch.config;
        if cfg.depth.is_some() {
            // The depth head reads the hidden states (`model::build`).
            return Ok(Heads::default());
        }
        let logits = t.logits(g, None)?;
        let pooled = if t.arch.pooler {
            let d = cfg.hidden_size;
            let cls = g.mean_tokens("pooler_cls", t.seq, 0, 1)?;
            let (pw, pb) = engine::pooler();
            let (pw, pb) = (g.weight(&pw, &[d, d]), g.weight(&pb, &[d]));
            Some(g.matmul("pooler_output", cls, pw, Some(pb), Activation::Tanh, None)?)
        } else if self.family == Family::Dinov2 {
            // DINOv2's pooler output is the normed class token.
            Some(g.mean_tokens("pooler_output", t.seq, 0, 1)?)
        } else {
            None
        };
        Ok(Heads { logits, pooled, image_embeds: None })
    }

    fn float_layers(&self) -> &'static [&'static str] {
        &[names::CLASSIFIER, names::CLS_CLASSIFIER, names::DISTILLATION_CLASSIFIER]
    }
}

/// The checkpoint's names, relative to the model prefix (`vit.`, `deit.`, `dinov2.` or none);
/// heads sit at the top level.
pub mod names {
    use crate::model::shared::names::{Linear, Norm};
    use crate::model::shared::spec::Family;

    /// Class token.
    pub const CLS_TOKEN: &str = "embeddings.cls_token";
    /// DeiT's distillation token.
    pub const DISTILLATION_TOKEN: &str = "embeddings.distillation_token";
    /// Mask token (masked image modeling only; never used here).
    pub const MASK_TOKEN: &str = "embeddings.mask_token";
    /// Position embeddings.
    pub const POSITIONS: &str = "embeddings.position_embeddings";
    /// The patch projection (a `Conv2d`).
    pub const PATCH: &str = "embeddings.patch_embeddings.projection";
    /// The final layer norm.
    pub const FINAL_NORM: &str = "layernorm";
    /// The pooler's dense layer.
    pub const POOLER: &str = "pooler.dense";
    /// The classifier.
    pub const CLASSIFIER: &str = "classifier";
    /// DeiT with a teacher: the class-token head.
    pub const CLS_CLASSIFIER: &str = "cls_classifier";
    /// DeiT with a teacher: the distillation-token head.
    pub const DISTILLATION_CLASSIFIER: &str = "distillation_classifier";

    fn layer(i: usize) -> String {
        format!("encoder.layer.{i}")
    }

    /// Whether the family's encoder is written as DINOv2's (`norm1`, `mlp.fc1`, layer scale).
    pub fn dinov2_layout(family: Family) -> bool {
        family == Family::Dinov2 || family == Family::DepthAnything || family == Family::DptDinov2
    }

    /// Layer `i`'s norm.
    pub fn norm(family: Family, i: usize, which: Norm) -> String {
        let n = match (dinov2_layout(family), which) {
            (true, Norm::Before) => "norm1",
            (true, Norm::After) => "norm2",
            (false, Norm::Before) => "layernorm_before",
            (false, Norm::After) => "layernorm_after",
        };
        format!("{}.{n}", layer(i))
    }

    /// Layer `i`'s query, key or value projection (`part` 0, 1, 2).
    pub fn attention(i: usize, part: usize) -> String {
        format!("{}.attention.attention.{}", layer(i), ["query", "key", "value"][part.min(2)])
    }

    /// Layer `i`'s other linear layers.
    pub fn linear(family: Family, i: usize, which: Linear) -> String {
        let n = match (dinov2_layout(family), which) {
            (_, Linear::Proj) => "attention.output.dense",
            (true, Linear::Fc1) => "mlp.fc1",
            (true, Linear::Fc2) => "mlp.fc2",
            (false, Linear::Fc1) => "intermediate.dense",
            (false, Linear::Fc2) => "output.dense",
        };
        format!("{}.{n}", layer(i))
    }

    /// DINOv2's layer scale after attention (1) or the MLP (2).
    pub fn layer_scale(i: usize, which: Norm) -> String {
        format!("{}.layer_scale{}.lambda1", layer(i), if which == Norm::Before { 1 } else { 2 })
    }
}

/// The model prefix (`vit.`, `deit.`, `dinov2.` or none): what precedes the class token's name.
fn model_prefix(ck: &Checkpoint) -> Result<String> {
    let cls = ck
        .tensor_names()
        .into_iter()
        .find(|n| n.ends_with(names::CLS_TOKEN))
        .ok_or_else(|| Error::model(ck.weights_name(), format!("no `{}` tensor: not a ViT, DeiT or DINOv2 checkpoint", names::CLS_TOKEN)))?;
    Ok(cls[..cls.len() - names::CLS_TOKEN.len()].to_string())
}

/// Reads every weight of `ck`, rearranged, into `sink`.
fn load(ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
    use names as hf;
    let cfg = &ck.config;
    let prefix = model_prefix(ck)?;
    let mut rd = Reader::new(ck, &prefix);
    let d = cfg.hidden_size;
    let dinov2 = names::dinov2_layout(cfg.family);

    // Embeddings.
    rd.patch_weight_to(sink, hf::PATCH, cfg, patch)?;
    sink.f32(&engine::patch().1, &[d], &rd.get(&format!("{}.bias", hf::PATCH), &[d])?)?;
    let prefix_tokens = cfg.prefix_tokens();
    let mut toks = rd.get(hf::CLS_TOKEN, &[d])?;
    if cfg.layout.dist_token {
        toks.extend(rd.get(hf::DISTILLATION_TOKEN, &[d])?);
    }
    sink.f32(engine::prefix(), &[prefix_tokens, d], &toks)?;
    if rd.has(hf::MASK_TOKEN) {
        // Only used for masked image modeling; marked as known.
        rd.used.insert(format!("{prefix}{}", hf::MASK_TOKEN));
    }
    let mut pos = positions_named(ck, &mut rd, hf::POSITIONS, prefix_tokens)?;
    if cfg.family == Family::Dpt {
        // DPT resizes its grid bilinearly for every input (`DPTViTEmbeddings._resize_pos_embed`).
        pos.resample = PosResample::Bilinear;
    }

    // Encoder.
    let mlp = cfg.intermediate_size;
    for i in 0..cfg.num_layers {
        for which in [Norm::Before, Norm::After] {
            rd.norm_to(sink, &hf::norm(cfg.family, i, which), engine::norm(i, which), d)?;
        }
        qkv_to(&mut rd, sink, [0, 1, 2].map(|j| hf::attention(i, j)), d, cfg.qkv_bias, i)?;
        let (ls1, ls2) = if dinov2 {
            (Some(rd.get(&hf::layer_scale(i, Norm::Before), &[d])?), Some(rd.get(&hf::layer_scale(i, Norm::After), &[d])?))
        } else {
            (None, None)
        };
        for (which, dims, scale) in [(Linear::Proj, (d, d), ls1), (Linear::Fc1, (d, mlp), None), (Linear::Fc2, (mlp, d), ls2)] {
            rd.linear_to(sink, &hf::linear(cfg.family, i, which), engine::linear(i, which), dims, scale.as_deref())?;
        }
    }
    rd.norm_to(sink, hf::FINAL_NORM, engine::final_norm(), d)?;

    // Pooler and head; heads sit at the top level.
    let pooler = !dinov2 && rd.has_linear(hf::POOLER);
    if let Some(spec) = &cfg.depth {
        let mut top = Reader::new(ck, "");
        dpt::load(spec, d, &mut |n, s| top.get(n, s), sink)?;
        if spec.readout == dpt::DptReadout::Project {
            for i in 0..spec.out_indices.len() {
                let (name, engine) = dpt::readout_projection(i);
                top.linear_to(sink, &name, engine, (2 * d, d), None)?;
            }
        }
        rd.used.extend(top.used);
        rd.used.extend(ck.tensor_names().into_iter().filter(|n| dpt::unread(n)));
    }
    if pooler {
        rd.linear_to(sink, hf::POOLER, engine::pooler(), (d, d), None)?;
    }
    let mut top = Reader::new(ck, "");
    let head = match cfg.head {
        Some(h) => h,
        None if top.has_linear(hf::CLS_CLASSIFIER) => Head::ClsDistilled,
        None if top.has_linear(hf::CLASSIFIER) => {
            if dinov2 {
                Head::ClsMeanPatch
            } else {
                Head::Cls
            }
        }
        None => Head::None,
    };
    let n = cfg.labels.len();
    if head != Head::None && n == 0 {
        return Err(Error::model(format!("{}/config.json", ck.source), "the model has a classifier but no id2label / num_labels"));
    }
    match head {
        Head::None => {}
        Head::Cls | Head::Avg => top.linear_to(sink, hf::CLASSIFIER, engine::head(), (d, n), None)?,
        Head::ClsMeanPatch => top.linear_to(sink, hf::CLASSIFIER, engine::head(), (2 * d, n), None)?,
        Head::ClsDistilled => {
            // logits = (cls_head(t0) + dist_head(t1)) / 2; halving is exact in floating point.
            let half = vec![0.5f32; n];
            top.linear_to(sink, hf::CLS_CLASSIFIER, engine::head(), (d, n), Some(&half))?;
            top.linear_to(sink, hf::DISTILLATION_CLASSIFIER, engine::head_dist(), (d, n), Some(&half))?;
        }
    }
    rd.used.extend(top.used);
    check_all_used(ck, &rd.used, head)?;
    Ok(Loaded { head, pooler, projection: false, pos })
}

/// A Depth Anything `config.json`'s backbone (or a DPT's over DINOv2): its `backbone_config`,
/// which must be a DINOv2 (transformers' other backbones, and a named `backbone` loaded from
/// elsewhere, are not read).
fn depth_backbone<'a>(config: &'a Value, file: &str) -> Result<&'a Value> {
    if let Some(name) = config.get("backbone").and_then(Value::as_str) {
        return Err(Error::model(file, format!("`backbone: {name}` names a backbone loaded from elsewhere; only a DINOv2 `backbone_config` is supported")));
    }
    let b = config.get("backbone_config").filter(|v| v.is_object()).ok_or_else(|| Error::model(file, "no `backbone_config` (Depth Anything's DINOv2 backbone)"))?;
    match b.get("model_type").and_then(Value::as_str) {
        Some("dinov2") => {}
        Some(other) => return Err(Error::model(file, format!("backbone_config.model_type `{other}`: only a `dinov2` backbone is supported"))),
        None => return Err(Error::model(file, "backbone_config has no `model_type` (expected `dinov2`)")),
    }
    if b.get("reshape_hidden_states").and_then(Value::as_bool) == Some(true) {
        return Err(Error::model(file, "backbone_config: the neck reads the backbone's token sequences (reshape_hidden_states false)"));
    }
    Ok(b)
}

/// A DPT `config.json`'s backbone: the config itself (a ViT's fields at its top level). DPT-Hybrid
/// and the backbones transformers loads through `backbone_config` other than DINOv2
/// ([`DPT_DINOV2`]'s) are refused by name.
fn dpt_backbone<'a>(config: &'a Value, file: &str) -> Result<&'a Value> {
    if config.get("is_hybrid").and_then(Value::as_bool) == Some(true) {
        return Err(Error::model(file, "DPT-Hybrid (`is_hybrid: true`: a ResNet (BiT) stem before the ViT, as Intel/dpt-hybrid-midas) is not supported; DPT with a plain ViT backbone is"));
    }
    if let Some(name) = config.get("backbone").and_then(Value::as_str) {
        return Err(Error::model(file, format!("`backbone: {name}` names a backbone loaded from elsewhere; DPT with its own ViT backbone is supported")));
    }
    if let Some(b) = config.get("backbone_config").filter(|v| !v.is_null()) {
        let kind = b.get("model_type").and_then(Value::as_str).unwrap_or("unnamed");
        return Err(Error::model(file, format!("a `{kind}` backbone_config: DPT over this backbone is not supported; DPT with its own ViT backbone or a DINOv2 backbone_config is")));
    }
    Ok(config)
}

/// A depth model's preprocessing where the checkpoint has none: Depth Anything's hub checkpoints'
/// (the shorter side scaled towards the training size keeping the aspect ratio, each side a
/// multiple of the patch, bicubic, ImageNet's mean and std), or `DPTImageProcessor`'s defaults as
/// Intel/dpt-large keeps them (the training size, bicubic, mean and std 0.5).
fn depth_preprocessor(family: Family, cfg: &ModelConfig) -> Value {
    let (h, w) = cfg.image_size;
    if family == Family::DptDinov2 {
        // facebook/dpt-dinov2-*'s: the image at its own size, zero-padded to a multiple of the
        // patch after normalizing with ImageNet's mean and std in 0..255 units.
        return serde_json::json!({
            "image_processor_type": "DPTImageProcessor",
            "do_resize": false, "do_pad": true, "size_divisor": cfg.patch_size, "do_rescale": false,
            "do_normalize": true, "image_mean": [123.675, 116.28, 103.53], "image_std": [58.395, 57.12, 57.375],
        });
    }
    if family == Family::Dpt {
        return serde_json::json!({
            "image_processor_type": "DPTImageProcessor",
            "do_resize": true, "size": { "height": h, "width": w }, "resample": 3,
            "keep_aspect_ratio": false, "ensure_multiple_of": 1, "do_pad": false,
            "do_rescale": true, "rescale_factor": 1.0 / 255.0,
            "do_normalize": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        });
    }
    serde_json::json!({
        "image_processor_type": "DPTImageProcessor",
        "do_resize": true, "size": { "height": h, "width": w }, "resample": 3,
        "keep_aspect_ratio": true, "ensure_multiple_of": cfg.patch_size, "do_pad": false,
        "do_rescale": true, "rescale_factor": 1.0 / 255.0,
        "do_normalize": true, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    })
}
