//! Built-in configs with random weights, for benchmarks without a download: ViT-B/16, DeiT-S/16
//! and DeiT-Ti/16 at 224 px with 1000 classes, laid out exactly as their hub checkpoints.

use crate::model::families::vit::names as hf;
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::names::{Linear, Norm};
use crate::model::shared::spec::{Family, ModelConfig};
use crate::error::{Error, Result};
use crate::reference::Rng;

/// The built-in names.
pub const NAMES: &[&str] = &["vit-b16", "deit-s16", "deit-ti16"];

fn spec(name: &str) -> Option<(&'static str, usize, usize)> {
    // (model_type, hidden size, heads); 12 layers, MLP 4x, patch 16, 224 px.
    match name {
        "vit-b16" => Some(("vit", 768, 12)),
        "deit-s16" => Some(("deit", 384, 6)),
        "deit-ti16" => Some(("deit", 192, 3)),
        _ => None,
    }
}

fn config_json(name: &str) -> Result<serde_json::Value> {
    let (kind, d, heads) = spec(name).ok_or_else(|| Error::model(name, format!("unknown built-in config (known: {})", NAMES.join(", "))))?;
    let arch = if kind == "vit" { "ViTForImageClassification" } else { "DeiTForImageClassification" };
    let labels: serde_json::Map<String, serde_json::Value> =
        (0..1000).map(|i| (i.to_string(), serde_json::Value::String(format!("class {i}")))).collect();
    Ok(serde_json::json!({
        "model_type": kind, "architectures": [arch], "hidden_size": d, "num_hidden_layers": 12,
        "num_attention_heads": heads, "intermediate_size": 4 * d, "image_size": 224, "patch_size": 16,
        "num_channels": 3, "layer_norm_eps": 1e-12, "qkv_bias": true, "hidden_act": "gelu", "id2label": labels,
    }))
}

/// The config of a built-in model (no weights), e.g. to plan its graphs.
pub fn config(name: &str) -> Result<ModelConfig> {
    ModelConfig::parse(config_json(name)?.to_string().as_bytes(), &format!("builtin:{name}/config.json"))
}

/// A checkpoint of a built-in config with seeded random weights.
pub fn checkpoint(name: &str) -> Result<Checkpoint> {
    let config = config_json(name)?;
    let (kind, d, _) = spec(name).ok_or_else(|| Error::model(name, "unknown built-in config"))?;
    let (layers, mlp, patch, image, classes) = (12usize, 4 * d, 16usize, 224usize, 1000usize);
    let p = if kind == "vit" { "vit." } else { "deit." };
    let prefix = if kind == "vit" { 1 } else { 2 };
    let tokens = prefix + (image / patch) * (image / patch);
    let family = if kind == "vit" { Family::Vit } else { Family::Deit };
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (format!("{p}{}", hf::CLS_TOKEN), vec![1, 1, d]),
        (format!("{p}{}", hf::POSITIONS), vec![1, tokens, d]),
        (format!("{p}{}.weight", hf::PATCH), vec![d, 3, patch, patch]),
        (format!("{p}{}.bias", hf::PATCH), vec![d]),
        (format!("{p}{}.weight", hf::FINAL_NORM), vec![d]),
        (format!("{p}{}.bias", hf::FINAL_NORM), vec![d]),
        (format!("{}.weight", hf::CLASSIFIER), vec![classes, d]),
        (format!("{}.bias", hf::CLASSIFIER), vec![classes]),
    ];
    if kind == "deit" {
        shapes.push((format!("{p}{}", hf::DISTILLATION_TOKEN), vec![1, 1, d]));
    }
    for i in 0..layers {
        for part in 0..3 {
            shapes.push((format!("{p}{}.weight", hf::attention(i, part)), vec![d, d]));
            shapes.push((format!("{p}{}.bias", hf::attention(i, part)), vec![d]));
        }
        for (which, out, inp) in [(Linear::Proj, d, d), (Linear::Fc1, mlp, d), (Linear::Fc2, d, mlp)] {
            let l = hf::linear(family, i, which);
            shapes.push((format!("{p}{l}.weight"), vec![out, inp]));
            shapes.push((format!("{p}{l}.bias"), vec![out]));
        }
        for which in [Norm::Before, Norm::After] {
            let l = hf::norm(family, i, which);
            shapes.push((format!("{p}{l}.weight"), vec![d]));
            shapes.push((format!("{p}{l}.bias"), vec![d]));
        }
    }
    let mut rng = Rng::new(0x7e55e7a);
    let data: Vec<Vec<u8>> = shapes
        .iter()
        .map(|(n, s)| {
            let numel: usize = s.iter().product();
            let scale = if n.ends_with("norm.weight") || n.contains("layernorm_") && n.ends_with("weight") { 0.0 } else { 0.02 };
            let v = rng.vec(numel, scale);
            let v: Vec<f32> = if scale == 0.0 { vec![1.0; numel] } else { v };
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = shapes
        .iter()
        .zip(&data)
        .map(|((n, s), b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::model(name, e.to_string()))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| Error::model(name, e.to_string()))?;
    Checkpoint::from_bytes(&format!("builtin:{name}"), config.to_string().as_bytes(), bytes, None)
}
