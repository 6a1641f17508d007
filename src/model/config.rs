//! `config.json` as the hub writes it for ViT, DeiT and DINOv2, reduced to what the engine needs
//! and validated. Mirrors `transformers`' `ViTConfig`, `DeiTConfig` and `Dinov2Config`
//! (models/{vit,deit,dinov2}/configuration_*.py); unknown keys are ignored.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Which `transformers` family the checkpoint belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `model_type: "vit"`.
    Vit,
    /// `model_type: "deit"` (class + distillation tokens).
    Deit,
    /// `model_type: "dinov2"` (layer scale, always-interpolated position embeddings).
    Dinov2,
    /// `model_type: "clip_vision_model"`, or the image tower of `"clip"` (pre-norm, quick GELU,
    /// the class token normed after the encoder, a projection into the shared space).
    Clip,
    /// `model_type: "siglip_vision_model"`, or the image tower of `"siglip"` (SigLIP and SigLIP 2's
    /// fixed-resolution checkpoints): no class token, tanh GELU, attention-pooling head.
    Siglip,
    /// A text tower alone (`model_type: "clip_text_model"` or `"siglip_text_model"`: CLIPTextModel,
    /// CLIPTextModelWithProjection, SiglipTextModel): no image tower, so the image fields of its
    /// config are 0. Its shape is [`super::text::TextConfig`]'s; it loads as a
    /// [`super::text::TextModel`] or [`super::clip::TextEncoder`], not as a [`super::Model`].
    TextOnly,
    /// A `timm` Vision Transformer (`vit_*`, `deit_*`, `deit3_*`, `flexivit_*`, ...; see
    /// `model::timm`): class token or none, register tokens, position embeddings with or without
    /// the prefix tokens, an optional pre-norm, token or average pooling with `fc_norm`.
    Timm,
}

/// The head on top of the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// Base model (`ViTModel`, `DeiTModel`, `Dinov2Model`): no logits.
    None,
    /// A linear classifier on the CLS token (`ViTForImageClassification`, `DeiTForImageClassification`).
    Cls,
    /// Class and distillation heads averaged (`DeiTForImageClassificationWithTeacher`).
    ClsDistilled,
    /// A linear classifier on CLS concatenated with the mean patch token (`Dinov2ForImageClassification`).
    ClsMeanPatch,
    /// A linear classifier on the mean of the patch tokens (`timm`'s `global_pool="avg"`).
    Avg,
}

/// How the prefix tokens and norms are laid out around the encoder. `transformers`' families
/// use the default; `timm` checkpoints set what their architecture uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// A class token first.
    pub class_token: bool,
    /// A distillation token after it (DeiT distilled).
    pub dist_token: bool,
    /// Register tokens after those.
    pub reg_tokens: usize,
    /// Whether the position embeddings cover the prefix tokens too (else only the patches; the
    /// prefix tokens get none).
    pub pos_prefix: bool,
    /// A layer norm before the encoder (`norm_pre`, CLIP image towers).
    pub pre_norm: bool,
    /// The final norm applied after pooling (`fc_norm`) instead of to every token.
    pub fc_norm: bool,
    /// Pooled features (`timm`): the mean of the patch tokens instead of the class token.
    pub pool_avg: bool,
    /// Pooled features from attention pooling with a learned query (SigLIP's head, `timm`'s
    /// `global_pool="map"`) over the normed tokens.
    pub pool_map: bool,
    /// Position embeddings resampled with antialiasing (`timm`) rather than as `transformers`
    /// does, and whenever the grid differs from the checkpoint's.
    pub pos_antialias: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Layout { class_token: true, dist_token: false, reg_tokens: 0, pos_prefix: true, pre_norm: false, fc_norm: false, pool_avg: false, pool_map: false, pos_antialias: false }
    }
}

/// The model's shape and options, validated.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Family.
    pub family: Family,
    /// Head, from `architectures` (or from the weights when absent).
    pub head: Option<Head>,
    /// `architectures[0]`, when given.
    pub architecture: Option<String>,
    /// Model width D.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Training resolution (height, width).
    pub image_size: (usize, usize),
    /// Patch size.
    pub patch_size: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Layer norm epsilon.
    pub layer_norm_eps: f32,
    /// Whether query/key/value have biases.
    pub qkv_bias: bool,
    /// Class names by index (`id2label`); empty for base models.
    pub labels: Vec<String>,
    /// How the Linear layers are quantized (`quantization_config`), if they are.
    pub quant: Option<super::quantized::QuantConfig>,
    /// Prefix tokens and norms.
    pub layout: Layout,
    /// The MLP's activation (GELU; quick GELU for CLIP-style towers).
    pub hidden_act: crate::ops::Activation,
    /// Width of the projection into an image-text space (CLIP's `projection_dim`), where the
    /// model has one.
    pub projection_dim: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    One(usize),
    Two([usize; 2]),
}

#[derive(Deserialize)]
struct Raw {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    mlp_ratio: Option<f64>,
    image_size: Option<Size>,
    patch_size: Option<Size>,
    num_channels: Option<usize>,
    layer_norm_eps: Option<f64>,
    qkv_bias: Option<bool>,
    hidden_act: Option<String>,
    use_swiglu_ffn: Option<bool>,
    id2label: Option<BTreeMap<String, String>>,
    num_labels: Option<usize>,
    quantization_config: Option<serde_json::Value>,
    projection_dim: Option<usize>,
    vision_use_head: Option<bool>,
}

/// Limits on config values: far above any published ViT, low enough that nothing overflows.
const MAX_HIDDEN: usize = 16384;
const MAX_LAYERS: usize = 512;
const MAX_MLP: usize = 131072;
const MAX_IMAGE: usize = 16384;
const MAX_LABELS: usize = 1 << 20;

impl ModelConfig {
    /// Parses and validates `config.json`; `file` names it in errors.
    pub fn parse(json: &[u8], file: &str) -> Result<Self> {
        let mut value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| Error::model(file, format!("not a valid config.json: {e}")))?;
        // CLIPModel: its image tower's config is `vision_config`, with the shared projection width
        // (and any quantization) at the top.
        // SiglipModel and SiglipForImageClassification likewise (the labels at the top).
        let two_tower = match value.get("model_type").and_then(|m| m.as_str()) {
            Some("clip") => Some(("clip", "clip_vision_model")),
            Some("siglip") => Some(("siglip", "siglip_vision_model")),
            _ => None,
        };
        if let Some((kind, tower)) = two_tower {
            let top = value.clone();
            let mut vision = top.get("vision_config").cloned().filter(|v| v.is_object()).ok_or_else(|| Error::model(file, format!("a `{kind}` config without `vision_config`")))?;
            vision["model_type"] = tower.into();
            for key in ["architectures", "projection_dim", "quantization_config", "id2label", "num_labels"] {
                if let Some(v) = top.get(key) {
                    vision[key] = v.clone();
                }
            }
            value = vision;
        }
        if let Some("clip_text_model" | "siglip_text_model") = value.get("model_type").and_then(|m| m.as_str()) {
            return Self::text_only(json, &value, file);
        }
        let raw: Raw = serde_json::from_value(value).map_err(|e| Error::model(file, format!("not a valid config.json: {e}")))?;
        let bad = |p: String| Error::model(file, p);
        let family = match raw.model_type.as_deref() {
            Some("vit") => Family::Vit,
            Some("deit") => Family::Deit,
            Some("dinov2") => Family::Dinov2,
            Some("clip_vision_model") => Family::Clip,
            Some("siglip_vision_model") => Family::Siglip,
            Some(other) => {
                return Err(bad(format!(
                    "model_type `{other}` is not supported (supported: vit, deit, dinov2, clip, clip_vision_model, siglip, siglip_vision_model)"
                )));
            }
            None => return Err(bad("no `model_type` (expected vit, deit, dinov2, clip, clip_vision_model, siglip or siglip_vision_model)".into())),
        };
        // SiglipVisionConfig's and CLIPVisionConfig's defaults: hub configs written with
        // `to_diff_dict` leave them out (the patch size is the one default that differs).
        let mut raw = raw;
        if matches!(family, Family::Siglip | Family::Clip) {
            raw.hidden_size = raw.hidden_size.or(Some(768));
            raw.num_hidden_layers = raw.num_hidden_layers.or(Some(12));
            raw.num_attention_heads = raw.num_attention_heads.or(Some(12));
            raw.intermediate_size = raw.intermediate_size.or(Some(3072));
            raw.image_size = raw.image_size.or(Some(Size::One(224)));
            raw.patch_size = raw.patch_size.or(Some(Size::One(if family == Family::Clip { 32 } else { 16 })));
        }
        let architecture = raw.architectures.as_ref().and_then(|a| a.first().cloned());
        let head = match architecture.as_deref() {
            None => None,
            Some("ViTModel" | "DeiTModel" | "Dinov2Model") => Some(Head::None),
            Some("CLIPVisionModel" | "CLIPVisionModelWithProjection" | "CLIPModel") if family == Family::Clip => Some(Head::None),
            Some("SiglipVisionModel" | "SiglipModel") if family == Family::Siglip => Some(Head::None),
            // The mean of the normed tokens.
            Some("SiglipForImageClassification") if family == Family::Siglip => Some(Head::Avg),
            Some("ViTForImageClassification" | "DeiTForImageClassification") => Some(Head::Cls),
            Some("DeiTForImageClassificationWithTeacher") => Some(Head::ClsDistilled),
            Some("Dinov2ForImageClassification") => Some(Head::ClsMeanPatch),
            Some(other) => {
                return Err(bad(format!(
                    "architecture `{other}` is not supported (supported: ViTModel, ViTForImageClassification, \
                     DeiTModel, DeiTForImageClassification, DeiTForImageClassificationWithTeacher, \
                     Dinov2Model, Dinov2ForImageClassification, CLIPModel, CLIPVisionModel, CLIPVisionModelWithProjection, \
                     SiglipModel, SiglipVisionModel, SiglipForImageClassification)"
                )));
            }
        };
        let need = |v: Option<usize>, key: &str, max: usize| -> Result<usize> {
            match v {
                None => Err(bad(format!("`{key}` is missing"))),
                Some(0) => Err(bad(format!("`{key}` is 0"))),
                Some(n) if n > max => Err(bad(format!("`{key}` = {n} is over the supported maximum {max}"))),
                Some(n) => Ok(n),
            }
        };
        let hidden_size = need(raw.hidden_size, "hidden_size", MAX_HIDDEN)?;
        let num_layers = need(raw.num_hidden_layers, "num_hidden_layers", MAX_LAYERS)?;
        let num_heads = need(raw.num_attention_heads, "num_attention_heads", hidden_size)?;
        if hidden_size % num_heads != 0 {
            return Err(bad(format!("hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}")));
        }
        let head_dim = hidden_size / num_heads;
        if head_dim > crate::ops::attention::MAX_HEAD_DIM {
            return Err(bad(format!(
                "head dim {head_dim} is over the supported maximum {}",
                crate::ops::attention::MAX_HEAD_DIM
            )));
        }
        let intermediate_size = match family {
            Family::Dinov2 => {
                let ratio = raw.mlp_ratio.unwrap_or(4.0);
                if !(ratio.is_finite() && ratio > 0.0 && ratio * hidden_size as f64 <= MAX_MLP as f64) {
                    return Err(bad(format!("`mlp_ratio` {ratio} is not usable")));
                }
                (hidden_size as f64 * ratio) as usize
            }
            _ => need(raw.intermediate_size, "intermediate_size", MAX_MLP)?,
        };
        let size = |s: Option<Size>, key: &str, default: Option<usize>| -> Result<(usize, usize)> {
            let (h, w) = match s {
                Some(Size::One(n)) => (n, n),
                Some(Size::Two([h, w])) => (h, w),
                None => match default {
                    Some(d) => (d, d),
                    None => return Err(bad(format!("`{key}` is missing"))),
                },
            };
            if h == 0 || w == 0 || h > MAX_IMAGE || w > MAX_IMAGE {
                return Err(bad(format!("`{key}` {h}x{w} is out of range (1..={MAX_IMAGE})")));
            }
            Ok((h, w))
        };
        let image_size = size(raw.image_size, "image_size", None)?;
        let (ph, pw) = size(raw.patch_size, "patch_size", None)?;
        if ph != pw {
            return Err(bad(format!("non-square patches {ph}x{pw} are not supported")));
        }
        if ph > image_size.0 || ph > image_size.1 {
            return Err(bad(format!(
                "patch_size {ph} is larger than the image_size {}x{}",
                image_size.0, image_size.1
            )));
        }
        let num_channels = raw.num_channels.unwrap_or(3);
        if num_channels == 0 || num_channels > 16 {
            return Err(bad(format!("`num_channels` = {num_channels} is out of range (1..=16)")));
        }
        let eps = raw.layer_norm_eps.unwrap_or(match family {
            Family::Clip => 1e-5,
            Family::Siglip => 1e-6,
            _ => 1e-12,
        });
        if !(eps.is_finite() && (0.0..1.0).contains(&eps)) {
            return Err(bad(format!("`layer_norm_eps` = {eps} is out of range")));
        }
        let hidden_act = match raw.hidden_act.as_deref() {
            None if family == Family::Clip => crate::ops::Activation::QuickGelu,
            None if family == Family::Siglip => crate::ops::Activation::GeluTanh,
            None | Some("gelu") => crate::ops::Activation::Gelu,
            Some("quick_gelu") => crate::ops::Activation::QuickGelu,
            // transformers' NewGELUActivation and PytorchGELUTanh: the same tanh approximation.
            Some("gelu_pytorch_tanh" | "gelu_new") => crate::ops::Activation::GeluTanh,
            Some(other) => return Err(bad(format!("hidden_act `{other}` is not supported (supported: gelu, quick_gelu, gelu_pytorch_tanh, gelu_new)"))),
        };
        let projection_dim = match raw.projection_dim {
            Some(p) if family == Family::Clip => Some(need(Some(p), "projection_dim", MAX_HIDDEN)?),
            _ => None,
        };
        if raw.use_swiglu_ffn == Some(true) {
            return Err(bad("`use_swiglu_ffn: true` (SwiGLU MLP) is not supported".into()));
        }
        let labels = match raw.id2label {
            Some(map) if !map.is_empty() => {
                let n = map.len();
                if n > MAX_LABELS {
                    return Err(bad(format!("id2label has {n} entries, over {MAX_LABELS}")));
                }
                let mut labels: Vec<String> = (0..n).map(|i| format!("LABEL_{i}")).collect();
                for (k, v) in map {
                    let i: usize = k.parse().map_err(|_| bad(format!("id2label key `{k}` is not an integer")))?;
                    if i >= n {
                        return Err(bad(format!("id2label key {i} is not below the number of labels {n}")));
                    }
                    labels[i] = v;
                }
                labels
            }
            _ => (0..raw.num_labels.unwrap_or(0).min(MAX_LABELS)).map(|i| format!("LABEL_{i}")).collect(),
        };
        let quant = match &raw.quantization_config {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(super::quantized::QuantConfig::parse(v, file)?),
        };
        let layout = match family {
            // CLIP: a norm before the encoder; the class token normed after it (post_layernorm).
            Family::Clip => Layout { pre_norm: true, fc_norm: true, ..Default::default() },
            // SigLIP: no class token; every token normed (post_layernorm), pooled by the head.
            Family::Siglip => Layout { class_token: false, pool_map: raw.vision_use_head.unwrap_or(true), ..Default::default() },
            _ => Layout { dist_token: family == Family::Deit, ..Default::default() },
        };
        Ok(ModelConfig {
            projection_dim,
            hidden_act,
            layout,
            quant,
            family,
            head,
            architecture,
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size,
            image_size,
            patch_size: ph,
            num_channels,
            layer_norm_eps: eps as f32,
            qkv_bias: raw.qkv_bias.unwrap_or(true),
            labels,
        })
    }

    /// A text tower's config as far as this struct describes it (see [`Family::TextOnly`]).
    fn text_only(json: &[u8], value: &serde_json::Value, file: &str) -> Result<Self> {
        let t = super::text::TextConfig::parse(json, file)?;
        let architecture = value["architectures"][0].as_str().map(String::from);
        Ok(ModelConfig {
            family: Family::TextOnly,
            head: Some(Head::None),
            architecture,
            hidden_size: t.hidden_size,
            num_layers: t.num_layers,
            num_heads: t.num_heads,
            intermediate_size: t.intermediate_size,
            image_size: (0, 0),
            patch_size: 0,
            num_channels: 0,
            layer_norm_eps: t.layer_norm_eps,
            qkv_bias: true,
            labels: Vec::new(),
            quant: None,
            layout: Layout::default(),
            hidden_act: t.hidden_act,
            projection_dim: t.projection_dim,
        })
    }

    /// Prefix tokens before the patches: CLS, and the distillation token for DeiT.
    pub fn prefix_tokens(&self) -> usize {
        let l = &self.layout;
        l.class_token as usize + l.dist_token as usize + l.reg_tokens
    }

    /// Head dim.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
}
