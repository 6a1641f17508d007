//! `timm` Vision Transformer checkpoints: `config.json` as `timm` writes it (`architecture`,
//! `num_classes`, `global_pool`, `model_args`, `pretrained_cfg`) with the weights' shapes, to a
//! [`ModelConfig`] and the evaluation preprocessing of `timm.data.resolve_data_config` +
//! `create_transform` (resize by crop percentage, center crop, interpolation, mean and std).
//!
//! The architecture's dimensions come from `model_args` where given, else from the weights (width,
//! depth, patch, MLP width, tokens, norms, layer scale) and, for the head count the weights do not
//! show, from the size in the architecture's name (`tiny`: 3, `small`: 6, `base`: 12, ...).

use super::config::{Family, Head, Layout, ModelConfig};
use super::naming::timm as names;
use super::preprocess::{PreprocessorConfig, Resample, ResizeTo};
use crate::error::{Error, Result};
use serde_json::Value;

/// Whether `config.json` is `timm`'s (an `architecture` and no `model_type`).
pub fn is_timm(json: &[u8]) -> bool {
    serde_json::from_slice::<Value>(json).is_ok_and(|v| v.get("architecture").is_some_and(Value::is_string) && v.get("model_type").is_none())
}

/// The architectures read: ViTs on `timm`'s `VisionTransformer` blocks.
const FAMILIES: [&str; 4] = ["vit_", "deit_", "deit3_", "flexivit_"];

/// Heads per size word in `timm`'s architecture names.
const HEADS: [(&str, usize); 14] = [
    ("tiny", 3),
    ("small", 6),
    ("base", 12),
    ("large", 16),
    ("huge", 16),
    ("giant", 16),
    ("gigantic", 16),
    ("medium", 8),
    ("mediumd", 8),
    ("betwixt", 10),
    ("little", 5),
    ("wee", 4),
    ("pwee", 4),
    ("so400m", 16),
];

/// Parses `timm`'s `config.json` against the weights (`shape` gives a tensor's shape by name);
/// `file` names config.json in errors.
pub fn parse(json: &[u8], file: &str, shape: &dyn Fn(&str) -> Option<Vec<usize>>) -> Result<(ModelConfig, PreprocessorConfig)> {
    let v: Value = serde_json::from_slice(json).map_err(|e| Error::model(file, format!("not a valid config.json: {e}")))?;
    let bad = |p: String| Error::model(file, p);
    let arch = v["architecture"].as_str().unwrap_or_default().to_string();
    if !FAMILIES.iter().any(|f| arch.starts_with(f)) {
        return Err(bad(format!("timm architecture `{arch}` is not supported (supported: timm's vit_*, deit_*, deit3_*, flexivit_*)")));
    }
    let args = v.get("model_args").cloned().unwrap_or(Value::Null);
    let pre = v.get("pretrained_cfg").cloned().unwrap_or(Value::Null);
    let arg = |k: &str| args.get(k).filter(|x| !x.is_null());
    let has = |n: &str| shape(n).is_some();
    let weights_bad = |p: String| Error::model(file.replace("config.json", "model.safetensors"), p);

    let pw = shape(&format!("{}.weight", names::PATCH)).ok_or_else(|| weights_bad(format!("no `{}.weight`: not a timm ViT", names::PATCH)))?;
    let [d, c, ph, pw_] = pw[..] else {
        return Err(weights_bad(format!("`{}.weight` has shape {pw:?}, not (D, C, P, P)", names::PATCH)));
    };
    if ph != pw_ || ph == 0 || d == 0 || c == 0 || c > 16 || d > 16384 {
        return Err(weights_bad(format!("`{}.weight` has shape {pw:?}: not square patches of a supported size", names::PATCH)));
    }
    for (k, want) in [("embed_dim", d), ("patch_size", ph), ("in_chans", c)] {
        if let Some(x) = arg(k).and_then(Value::as_u64) {
            if x as usize != want {
                return Err(bad(format!("model_args.{k} = {x}, the weights have {want}")));
            }
        }
    }
    let mut depth = 0;
    while depth < 512 && has(&format!("{}.weight", names::norm(depth, super::naming::Norm::Before))) {
        depth += 1;
    }
    if depth == 0 {
        return Err(weights_bad("no encoder blocks (`blocks.0.norm1.weight`)".into()));
    }
    if has("blocks.0.attn.q_norm.weight") {
        return Err(bad(format!("`{arch}` normalizes queries and keys (qk_norm), which tessera does not run")));
    }
    // Attention pooling (`global_pool="map"`): one learned query, no extras.
    let pool_map = has("attn_pool.latent");
    if pool_map {
        if shape("attn_pool.latent").is_some_and(|s| s.iter().product::<usize>() != d) {
            return Err(bad(format!("`{arch}` pools with several latent queries, which tessera does not run")));
        }
        if has("attn_pool.q_norm.weight") || has("attn_pool.pos_embed") || !has("attn_pool.q.weight") && !has("attn_pool.q.weight_packed") {
            return Err(bad(format!("`{arch}`'s attention pooling has a query norm, position embedding or no query projection, which tessera does not run")));
        }
    }
    // (out, in) as stored, or (out, packed words) where the checkpoint is quantized.
    let fc1_name = names::linear(0, super::naming::Linear::Fc1);
    let fc1 = shape(&format!("{fc1_name}.weight"))
        .or_else(|| shape(&format!("{fc1_name}.weight_packed")))
        .ok_or_else(|| weights_bad("no `blocks.0.mlp.fc1.weight` (a gated MLP is not supported)".into()))?;
    let mlp = fc1[0];
    let heads = match arg("num_heads").and_then(Value::as_u64) {
        Some(h) => h as usize,
        None => arch.split(['_', '.']).find_map(|w| HEADS.iter().find(|(n, _)| *n == w).map(|&(_, h)| h)).unwrap_or(d / 64),
    };
    if heads == 0 || !d.is_multiple_of(heads) || d / heads > crate::ops::attention::MAX_HEAD_DIM {
        return Err(bad(format!("{heads} heads do not fit the width {d} of `{arch}` (give model_args.num_heads)")));
    }
    let size = |x: &Value| -> Option<(usize, usize)> {
        match x {
            Value::Number(n) => n.as_u64().map(|n| (n as usize, n as usize)),
            Value::Array(a) if a.len() == 2 => Some((a[0].as_u64()? as usize, a[1].as_u64()? as usize)),
            Value::Array(a) if a.len() == 3 => Some((a[1].as_u64()? as usize, a[2].as_u64()? as usize)),
            _ => None,
        }
    };
    let image_size = arg("img_size").and_then(size).or_else(|| pre.get("input_size").and_then(size)).unwrap_or((224, 224));
    if image_size.0 == 0 || image_size.1 == 0 || image_size.0 > 16384 || image_size.1 > 16384 || image_size.0 < ph || image_size.1 < ph {
        return Err(bad(format!("image size {image_size:?} is out of range for patch {ph}")));
    }
    let reg_tokens = shape(names::REG_TOKEN).map(|s| s.iter().product::<usize>() / d).unwrap_or(0);
    let (class_token, dist_token) = (has(names::CLS_TOKEN), has(names::DIST_TOKEN));
    let prefix = class_token as usize + dist_token as usize + reg_tokens;
    let pos = shape(names::POSITIONS).ok_or_else(|| weights_bad(format!("no `{}`", names::POSITIONS)))?;
    let rows = pos.iter().product::<usize>() / d;
    let grid = (image_size.0 / ph) * (image_size.1 / ph);
    let pos_prefix = match rows {
        r if r == grid && prefix > 0 => false,
        r if r == grid + prefix => true,
        r => {
            return Err(weights_bad(format!(
                "`{}` has {r} positions; a {}x{} grid of {ph}-pixel patches with {prefix} prefix tokens needs {grid} or {}",
                names::POSITIONS,
                image_size.0,
                image_size.1,
                grid + prefix
            )))
        }
    };
    let fc_norm = has(&format!("{}.weight", names::FC_NORM));
    if !fc_norm && !has(&format!("{}.weight", names::NORM)) {
        return Err(bad(format!("`{arch}` has no final norm (final_norm=False), which tessera does not run")));
    }
    let pool = v.get("global_pool").or_else(|| arg("global_pool")).and_then(Value::as_str).unwrap_or(if pool_map { "map" } else { "token" });
    if (pool == "map") != pool_map {
        return Err(bad(format!("global_pool `{pool}` does not match the weights (attention pooling: {pool_map})")));
    }
    let head_w = shape(&format!("{}.weight", names::HEAD)).or_else(|| shape(&format!("{}.weight_packed", names::HEAD)));
    let num_classes = head_w.as_ref().map(|s| s[0]).unwrap_or(0);
    let head = match pool {
        _ if num_classes == 0 => Head::None,
        "token" if dist_token && has(&format!("{}.weight", names::HEAD_DIST)) => Head::ClsDistilled,
        "token" if class_token => Head::Cls,
        "token" => return Err(bad("global_pool `token` without a class token".into())),
        "avg" => Head::Avg,
        // The classifier reads the pooled features.
        "map" => Head::Cls,
        other => return Err(bad(format!("global_pool `{other}` is not supported (supported: token, avg, map)"))),
    };
    if !["token", "avg", "map"].contains(&pool) {
        return Err(bad(format!("global_pool `{pool}` is not supported (supported: token, avg, map)")));
    }
    let labels = match pre.get("label_names").or_else(|| v.get("label_names")).and_then(Value::as_array) {
        Some(l) if l.len() == num_classes => l.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect(),
        _ => (0..num_classes.min(1 << 20)).map(|i| format!("LABEL_{i}")).collect(),
    };
    let quant = match v.get("quantization_config") {
        None | Some(Value::Null) => None,
        Some(q) => Some(super::quantized::QuantConfig::parse(q, file)?),
    };
    let layout = Layout { class_token, dist_token, reg_tokens, pos_prefix, pre_norm: has(&format!("{}.weight", names::NORM_PRE)), fc_norm, pool_avg: pool == "avg", pool_map, pos_antialias: true };
    let config = ModelConfig {
        family: Family::Timm,
        head: Some(head),
        architecture: Some(arch.clone()),
        hidden_size: d,
        num_layers: depth,
        num_heads: heads,
        intermediate_size: mlp,
        image_size,
        patch_size: ph,
        num_channels: c,
        // timm's ViTs use LayerNorm(eps=1e-6); its CLIP image towers PyTorch's default 1e-5.
        layer_norm_eps: if arch.contains("_clip_") { 1e-5 } else { 1e-6 },
        qkv_bias: has(&format!("{}.bias", names::qkv(0))),
        labels,
        quant,
        layout,
        // timm's *_clip_quickgelu_* towers use CLIP's original activation.
        hidden_act: match arg("act_layer").and_then(Value::as_str) {
            Some("gelu_tanh") => crate::ops::Activation::GeluTanh,
            Some("quick_gelu") => crate::ops::Activation::QuickGelu,
            None | Some("gelu") if !arch.contains("quickgelu") => crate::ops::Activation::Gelu,
            None | Some("gelu") => crate::ops::Activation::QuickGelu,
            Some(other) => return Err(bad(format!("model_args.act_layer `{other}` is not supported (gelu, gelu_tanh, quick_gelu)"))),
        },
        projection_dim: None,
    };
    Ok((config, preprocessing(&pre, image_size, file)?))
}

/// `timm`'s evaluation transform for `pretrained_cfg` at input size (h, w): resize (the shortest
/// edge to `floor(size / crop_pct)` for `crop_mode` center, both sides for squash), center crop to
/// the input size (offsets rounded as torchvision does), scale to [0, 1], normalize; `file` names
/// the config in errors.
pub fn preprocessing(pre: &Value, (h, w): (usize, usize), file: &str) -> Result<PreprocessorConfig> {
    let bad = |p: String| Error::model(file, format!("pretrained_cfg: {p}"));
    let crop_pct = pre.get("crop_pct").and_then(Value::as_f64).unwrap_or(0.875);
    if !(crop_pct.is_finite() && crop_pct > 0.05 && crop_pct <= 4.0) {
        return Err(bad(format!("crop_pct {crop_pct} is out of range")));
    }
    let resample = match pre.get("interpolation").and_then(Value::as_str).unwrap_or("bilinear") {
        "bilinear" => Resample::Bilinear,
        "bicubic" => Resample::Bicubic,
        "lanczos" => Resample::Lanczos,
        "box" => Resample::Box,
        "hamming" => Resample::Hamming,
        other => return Err(bad(format!("interpolation `{other}` is not supported (bilinear, bicubic, lanczos, box, hamming)"))),
    };
    let (sh, sw) = ((h as f64 / crop_pct).floor() as usize, (w as f64 / crop_pct).floor() as usize);
    if sh == 0 || sw == 0 || sh > 16384 || sw > 16384 {
        return Err(bad(format!("crop_pct {crop_pct} resizes to {sh}x{sw}")));
    }
    let resize = match pre.get("crop_mode").and_then(Value::as_str).unwrap_or("center") {
        "center" if sh == sw => ResizeTo::ShortestEdge(sh),
        "squash" => ResizeTo::Exact(sh, sw),
        "center" => return Err(bad(format!("a non-square input ({h}x{w}) with crop_mode center is not supported"))),
        other => return Err(bad(format!("crop_mode `{other}` is not supported (center, squash)"))),
    };
    let channels = |k: &str, default: [f32; 3]| -> Result<Vec<f32>> {
        match pre.get(k).and_then(Value::as_array) {
            None => Ok(default.to_vec()),
            Some(a) if a.len() == 3 => a.iter().map(|x| x.as_f64().map(|x| x as f32).ok_or_else(|| bad(format!("`{k}` holds a non-number")))).collect(),
            Some(a) => Err(bad(format!("`{k}` has {} values, not 3", a.len()))),
        }
    };
    let mean = channels("mean", [0.485, 0.456, 0.406])?;
    let std = channels("std", [0.229, 0.224, 0.225])?;
    if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || mean.iter().any(|m| !m.is_finite()) {
        return Err(bad(format!("mean {mean:?} / std {std:?} are not usable")));
    }
    Ok(PreprocessorConfig { resize: Some((resize, resample)), center_crop: Some((h, w)), rescale: Some(1.0 / 255.0), normalize: Some((mean, std)), crop_round: true })
}
