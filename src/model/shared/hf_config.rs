//! What `transformers`' vision configs share, read and validated once: the fields of
//! `PretrainedConfig` and of `ViTConfig`-style vision configs (`hidden_size`,
//! `num_hidden_layers`, ...; every ViT-like family in transformers uses these names), the
//! architecture-to-head lookup, `id2label` and `quantization_config`. A family's own config mirror
//! flattens [`VisionFields`] and adds its own fields; [`VisionFields::validate`] turns them into
//! the engine's [`ModelConfig`] with the family's defaults.

use crate::error::{Error, Result};
use crate::model::shared::quantized::QuantConfig;
use crate::model::shared::spec::{Family, Head, Layout, ModelConfig};
use crate::ops::Activation;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Limits on config values: far above any published ViT, low enough that nothing overflows.
pub const MAX_HIDDEN: usize = 16384;
/// Most encoder layers.
pub const MAX_LAYERS: usize = 512;
/// Widest MLP.
pub const MAX_MLP: usize = 131072;
/// Largest image side.
pub const MAX_IMAGE: usize = 16384;
/// Most labels.
pub const MAX_LABELS: usize = 1 << 20;

/// A size written as one number or as `[height, width]`.
#[derive(Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// Square.
    One(usize),
    /// `[height, width]`.
    Two([usize; 2]),
}

/// The fields transformers' ViT-style vision configs share (`PretrainedConfig`: `architectures`,
/// `id2label`, `num_labels`, `quantization_config`; `ViTConfig` and its kin: the shape).
#[derive(Deserialize)]
pub struct VisionFields {
    /// `architectures`.
    pub architectures: Option<Vec<String>>,
    /// `hidden_size`.
    pub hidden_size: Option<usize>,
    /// `num_hidden_layers`.
    pub num_hidden_layers: Option<usize>,
    /// `num_attention_heads`.
    pub num_attention_heads: Option<usize>,
    /// `intermediate_size`.
    pub intermediate_size: Option<usize>,
    /// `image_size`.
    pub image_size: Option<Size>,
    /// `patch_size`.
    pub patch_size: Option<Size>,
    /// `num_channels`.
    pub num_channels: Option<usize>,
    /// `layer_norm_eps`.
    pub layer_norm_eps: Option<f64>,
    /// `qkv_bias`.
    pub qkv_bias: Option<bool>,
    /// `hidden_act`.
    pub hidden_act: Option<String>,
    /// `id2label`.
    pub id2label: Option<BTreeMap<String, String>>,
    /// `num_labels`.
    pub num_labels: Option<usize>,
    /// `quantization_config`.
    pub quantization_config: Option<Value>,
}

/// What a family's config class sets where `config.json` leaves a field out (hub configs written
/// with `to_diff_dict` leave the defaults out).
pub struct Defaults {
    /// `hidden_size`, `num_hidden_layers`, `num_attention_heads`, `intermediate_size`,
    /// `image_size`, `patch_size`; None: the field is required.
    pub shape: Option<[usize; 6]>,
    /// `layer_norm_eps`.
    pub eps: f64,
    /// `hidden_act`.
    pub act: Activation,
}

/// What the family decided before the shared fields are read.
pub struct FamilyParts {
    /// The family.
    pub family: Family,
    /// The head `architectures` names.
    pub head: Option<Head>,
    /// The MLP width as a ratio of the width (DINOv2's `mlp_ratio`) instead of
    /// `intermediate_size`.
    pub mlp_ratio: Option<f64>,
    /// The layout of its prefix tokens and norms.
    pub layout: Layout,
    /// Its projection width, where it has one.
    pub projection_dim: Option<usize>,
}

/// A required positive number at most `max`; `file` names the config.
pub fn need(v: Option<usize>, key: &str, max: usize, file: &str) -> Result<usize> {
    match v {
        None => Err(Error::model(file, format!("`{key}` is missing"))),
        Some(0) => Err(Error::model(file, format!("`{key}` is 0"))),
        Some(n) if n > max => Err(Error::model(file, format!("`{key}` = {n} is over the supported maximum {max}"))),
        Some(n) => Ok(n),
    }
}

/// The head `architectures[0]` names, from a family's `(architecture, head)` table: None where
/// the config names none (the weights decide), an error listing the table where it names another.
pub fn head_of(architecture: Option<&str>, table: &[(&str, Head)], file: &str) -> Result<Option<Head>> {
    let Some(arch) = architecture else { return Ok(None) };
    match table.iter().find(|(a, _)| *a == arch) {
        Some((_, h)) => Ok(Some(*h)),
        None => {
            let names: Vec<&str> = table.iter().map(|(a, _)| *a).collect();
            Err(Error::model(file, format!("architecture `{arch}` is not supported (supported: {})", names.join(", "))))
        }
    }
}

/// `hidden_act` as the engine's activation: transformers' names for GELU, its tanh approximation
/// and quick GELU.
pub fn activation(name: Option<&str>, default: Activation, file: &str) -> Result<Activation> {
    match name {
        None => Ok(default),
        Some("gelu") => Ok(Activation::Gelu),
        Some("quick_gelu") => Ok(Activation::QuickGelu),
        // transformers' NewGELUActivation and PytorchGELUTanh: the same tanh approximation.
        Some("gelu_pytorch_tanh" | "gelu_new") => Ok(Activation::GeluTanh),
        Some(other) => Err(Error::model(file, format!("hidden_act `{other}` is not supported (supported: gelu, quick_gelu, gelu_pytorch_tanh, gelu_new)"))),
    }
}

/// Class names by index from `id2label` (or `LABEL_i` for `num_labels` classes).
pub fn labels(id2label: Option<BTreeMap<String, String>>, num_labels: Option<usize>, file: &str) -> Result<Vec<String>> {
    let bad = |p: String| Error::model(file, p);
    Ok(match id2label {
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
        _ => (0..num_labels.unwrap_or(0).min(MAX_LABELS)).map(|i| format!("LABEL_{i}")).collect(),
    })
}

/// `quantization_config`, where the config has one.
pub fn quantization(v: Option<&Value>, file: &str) -> Result<Option<QuantConfig>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(Some(QuantConfig::parse(v, file)?)),
    }
}

/// An image-text family's `model_type`s: the two-tower model's, the image tower's alone and the
/// text tower's alone (`["clip", "clip_vision_model", "clip_text_model"]`).
pub type TowerTypes = [&'static str; 3];

/// Which tower an image-text family's `config.json` describes.
pub enum TowerConfig {
    /// An image tower: its own config, or a two-tower model's `vision_config` with the keys of the
    /// whole model that concern it (`architectures`, the shared projection width, quantization,
    /// labels) copied in and `model_type` set to the image tower's.
    Vision(Value),
    /// A text tower alone.
    Text,
}

/// The tower `config` describes, for a family with `model_type`s `types`.
pub fn image_text_tower(config: &Value, [model, vision, text]: TowerTypes, file: &str) -> Result<TowerConfig> {
    let model_type = config.get("model_type").and_then(Value::as_str);
    if model_type == Some(text) {
        return Ok(TowerConfig::Text);
    }
    if model_type != Some(model) {
        return Ok(TowerConfig::Vision(config.clone()));
    }
    let mut t = config.get("vision_config").cloned().filter(|v| v.is_object()).ok_or_else(|| Error::model(file, format!("a `{model}` config without `vision_config`")))?;
    t["model_type"] = vision.into();
    for k in ["architectures", "projection_dim", "quantization_config", "id2label", "num_labels"] {
        if let Some(v) = config.get(k) {
            t[k] = v.clone();
        }
    }
    Ok(TowerConfig::Vision(t))
}

/// The text tower's config in `config`: a two-tower model's `text_config`, or a text tower's own.
pub fn text_tower(config: &Value, [model, _, _]: TowerTypes, file: &str) -> Result<Value> {
    if config.get("model_type").and_then(Value::as_str) != Some(model) {
        return Ok(config.clone());
    }
    config.get("text_config").cloned().filter(Value::is_object).ok_or_else(|| Error::model(file, format!("a `{model}` config without `text_config`")))
}

/// Reads a family's config mirror from `value`; `file` names it in errors.
pub fn read<T: serde::de::DeserializeOwned>(value: &Value, file: &str) -> Result<T> {
    T::deserialize(value).map_err(|e| Error::model(file, format!("not a valid config.json: {e}")))
}

impl VisionFields {
    /// The engine's config from these fields, the family's parts and its defaults.
    pub fn validate(self, parts: FamilyParts, defaults: &Defaults, file: &str) -> Result<ModelConfig> {
        let bad = |p: String| Error::model(file, p);
        let mut raw = self;
        if let Some([h, l, a, m, i, p]) = defaults.shape {
            raw.hidden_size = raw.hidden_size.or(Some(h));
            raw.num_hidden_layers = raw.num_hidden_layers.or(Some(l));
            raw.num_attention_heads = raw.num_attention_heads.or(Some(a));
            raw.intermediate_size = raw.intermediate_size.or(Some(m));
            raw.image_size = raw.image_size.or(Some(Size::One(i)));
            raw.patch_size = raw.patch_size.or(Some(Size::One(p)));
        }
        let architecture = raw.architectures.as_ref().and_then(|a| a.first().cloned());
        let hidden_size = need(raw.hidden_size, "hidden_size", MAX_HIDDEN, file)?;
        let num_layers = need(raw.num_hidden_layers, "num_hidden_layers", MAX_LAYERS, file)?;
        let num_heads = need(raw.num_attention_heads, "num_attention_heads", hidden_size, file)?;
        if hidden_size % num_heads != 0 {
            return Err(bad(format!("hidden_size {hidden_size} is not divisible by num_attention_heads {num_heads}")));
        }
        let head_dim = hidden_size / num_heads;
        if head_dim > crate::ops::attention::MAX_HEAD_DIM {
            return Err(bad(format!("head dim {head_dim} is over the supported maximum {}", crate::ops::attention::MAX_HEAD_DIM)));
        }
        let intermediate_size = match parts.mlp_ratio {
            Some(ratio) => {
                if !(ratio.is_finite() && ratio > 0.0 && ratio * hidden_size as f64 <= MAX_MLP as f64) {
                    return Err(bad(format!("`mlp_ratio` {ratio} is not usable")));
                }
                (hidden_size as f64 * ratio) as usize
            }
            None => need(raw.intermediate_size, "intermediate_size", MAX_MLP, file)?,
        };
        let size = |s: Option<Size>, key: &str| -> Result<(usize, usize)> {
            let (h, w) = match s {
                Some(Size::One(n)) => (n, n),
                Some(Size::Two([h, w])) => (h, w),
                None => return Err(bad(format!("`{key}` is missing"))),
            };
            if h == 0 || w == 0 || h > MAX_IMAGE || w > MAX_IMAGE {
                return Err(bad(format!("`{key}` {h}x{w} is out of range (1..={MAX_IMAGE})")));
            }
            Ok((h, w))
        };
        let image_size = size(raw.image_size, "image_size")?;
        let (ph, pw) = size(raw.patch_size, "patch_size")?;
        if ph != pw {
            return Err(bad(format!("non-square patches {ph}x{pw} are not supported")));
        }
        if ph > image_size.0 || ph > image_size.1 {
            return Err(bad(format!("patch_size {ph} is larger than the image_size {}x{}", image_size.0, image_size.1)));
        }
        let num_channels = raw.num_channels.unwrap_or(3);
        if num_channels == 0 || num_channels > 16 {
            return Err(bad(format!("`num_channels` = {num_channels} is out of range (1..=16)")));
        }
        let eps = raw.layer_norm_eps.unwrap_or(defaults.eps);
        if !(eps.is_finite() && (0.0..1.0).contains(&eps)) {
            return Err(bad(format!("`layer_norm_eps` = {eps} is out of range")));
        }
        let hidden_act = activation(raw.hidden_act.as_deref(), defaults.act, file)?;
        let projection_dim = match parts.projection_dim {
            Some(p) => Some(need(Some(p), "projection_dim", MAX_HIDDEN, file)?),
            None => None,
        };
        Ok(ModelConfig {
            family: parts.family,
            head: parts.head,
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
            labels: labels(raw.id2label, raw.num_labels, file)?,
            quant: quantization(raw.quantization_config.as_ref(), file)?,
            layout: parts.layout,
            hidden_act,
            projection_dim,
            depth: None,
        })
    }
}
