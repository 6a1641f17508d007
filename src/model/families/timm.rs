//! `timm` Vision Transformer checkpoints: `config.json` as `timm` writes it (`architecture`,
//! `num_classes`, `global_pool`, `model_args`, `pretrained_cfg`) with the weights' shapes, to a
//! [`ModelConfig`] and the evaluation preprocessing of `timm.data.resolve_data_config` +
//! `create_transform` (resize by crop percentage, center crop, interpolation, mean and std).
//!
//! The architecture's dimensions come from `model_args` where given, else from the weights (width,
//! depth, patch, MLP width, tokens, norms, layer scale) and, for the head count the weights do not
//! show, from the size in the architecture's name (`tiny`: 3, `small`: 6, `base`: 12, ...).
//!
//! Mirrors `timm`'s
//! <https://github.com/huggingface/pytorch-image-models/blob/main/timm/models/vision_transformer.py>
//! (`VisionTransformer`, `AttentionPoolLatent`; `deit.py` for the distilled heads) and
//! `timm/data/config.py` + `transforms_factory.py` for the preprocessing. The fused QKV projection
//! is read as it is ((3D, D) is query, key and value in the engine's order); layer scales fold into
//! the projections they scale; prefix positions are zero where timm's position embeddings cover
//! only the patches.

use crate::error::{Error, Result};
use crate::graph::ir::Graph;
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::family::{FamilyDef, Shapes};
use crate::model::shared::hf_config::quantization;
use crate::model::shared::names::{engine, Linear, Norm};
use crate::model::shared::preprocess::{PreprocessorConfig, Resample, ResizeTo};
use crate::model::shared::reader::{check_all_used, map_head_to, project_query, Loaded, PosResample, Positions, Reader, Sink};
use crate::model::shared::spec::{Family, Head, Layout, ModelConfig};
use crate::model::shared::tower::{Heads, Tower};
use serde_json::Value;

#[allow(non_upper_case_globals)]
impl Family {
    /// A `timm` Vision Transformer (`vit_*`, `deit_*`, `deit3_*`, `flexivit_*`, ...): class token
    /// or none, register tokens, position embeddings with or without the prefix tokens, an
    /// optional pre-norm, token, average or attention pooling with `fc_norm`.
    pub const Timm: Family = Family::named("Timm");
}

/// The timm family.
pub struct TimmFamily;

/// timm.
pub const TIMM: TimmFamily = TimmFamily;

impl FamilyDef for TimmFamily {
    fn family(&self) -> Family {
        Family::Timm
    }

    fn model_types(&self) -> &'static [&'static str] {
        &[]
    }

    /// timm's `config.json`: an `architecture` and no `model_type`.
    fn claims(&self, config: &Value) -> bool {
        config.get("architecture").is_some_and(Value::is_string) && config.get("model_type").is_none()
    }

    fn reads_shapes(&self) -> bool {
        true
    }

    fn parse(&self, config: &Value, file: &str, shapes: Shapes) -> Result<(ModelConfig, PreprocessorConfig)> {
        parse(config, file, shapes)
    }

    /// Its `pretrained_cfg` in config.json describes the preprocessing.
    fn preprocessor_json(&self, _config: &ModelConfig) -> Option<Value> {
        None
    }

    fn load(&self, ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
        load(ck, patch, sink)
    }

    fn heads(&self, g: &mut Graph, t: &Tower) -> Result<Heads> {
        // The pooled features (forward_head's pre-logits): the class token (the mean of the class
        // and distillation tokens for DeiT distilled), the mean of the patch tokens or the
        // attention pooling, then fc_norm where the model has it.
        let map = if t.arch.config.layout.pool_map { Some(t.attention_pool(g)?) } else { None };
        let pooled = t.pooled_features(g, map)?;
        let logits = t.logits(g, Some(pooled))?;
        Ok(Heads { logits, pooled: Some(pooled), image_embeds: None })
    }

    fn float_layers(&self) -> &'static [&'static str] {
        &[names::HEAD, names::HEAD_DIST]
    }
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
fn parse(v: &Value, file: &str, shape: Shapes) -> Result<(ModelConfig, PreprocessorConfig)> {
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
    while depth < 512 && has(&format!("{}.weight", names::norm(depth, Norm::Before))) {
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
    let fc1_name = names::linear(0, Linear::Fc1);
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
    let quant = quantization(v.get("quantization_config"), file)?;
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
        depth: None,
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
    Ok(PreprocessorConfig { resize: Some((resize, resample)), center_crop: Some((h, w)), rescale: Some(1.0 / 255.0), normalize: Some((mean, std)), crop_round: true, pad_to: None })
}

/// `timm`'s names (vision_transformer.py, deit.py), at the top level of the state dict.
pub mod names {
    use crate::model::shared::names::{Linear, Norm};

    /// The class token, `(1, 1, D)`.
    pub const CLS_TOKEN: &str = "cls_token";
    /// The distillation token (DeiT distilled).
    pub const DIST_TOKEN: &str = "dist_token";
    /// Register tokens, `(1, R, D)`.
    pub const REG_TOKEN: &str = "reg_token";
    /// Position embeddings, `(1, L, D)`.
    pub const POSITIONS: &str = "pos_embed";
    /// The patch convolution.
    pub const PATCH: &str = "patch_embed.proj";
    /// The norm before the encoder.
    pub const NORM_PRE: &str = "norm_pre";
    /// The final norm.
    pub const NORM: &str = "norm";
    /// The norm after pooling.
    pub const FC_NORM: &str = "fc_norm";
    /// The classifier.
    pub const HEAD: &str = "head";
    /// The distillation classifier.
    pub const HEAD_DIST: &str = "head_dist";

    /// Block `i`'s layer norm before attention or before the MLP.
    pub fn norm(i: usize, which: Norm) -> String {
        format!("blocks.{i}.{}", if which == Norm::Before { "norm1" } else { "norm2" })
    }

    /// Block `i`'s fused query-key-value projection, `(3 * D, D)`.
    pub fn qkv(i: usize) -> String {
        format!("blocks.{i}.attn.qkv")
    }

    /// Block `i`'s attention output projection or MLP layers.
    pub fn linear(i: usize, which: Linear) -> String {
        let n = match which {
            Linear::Proj => "attn.proj",
            Linear::Fc1 => "mlp.fc1",
            Linear::Fc2 => "mlp.fc2",
        };
        format!("blocks.{i}.{n}")
    }

    /// Block `i`'s layer scale after attention (`ls1`) or after the MLP (`ls2`).
    pub fn layer_scale(i: usize, which: Norm) -> String {
        format!("blocks.{i}.ls{}.gamma", if which == Norm::Before { 1 } else { 2 })
    }
}

/// A `timm` checkpoint: the engine weights from timm's names.
fn load(ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
    use names as t;
    let cfg = &ck.config;
    let layout = &cfg.layout;
    let mut rd = Reader::new(ck, "");
    let (d, p) = (cfg.hidden_size, cfg.patch_size);
    rd.patch_weight_to(sink, t::PATCH, cfg, patch)?;
    let pb = engine::patch().1;
    // CLIP-style towers (pre-norm) have no patch bias.
    let bias = if rd.has(&format!("{}.bias", t::PATCH)) { rd.get(&format!("{}.bias", t::PATCH), &[d])? } else { vec![0.0; d] };
    sink.f32(&pb, &[d], &bias)?;
    let prefix = cfg.prefix_tokens();
    let mut toks = Vec::with_capacity(prefix * d);
    if layout.class_token {
        toks.extend(rd.get(t::CLS_TOKEN, &[d])?);
    }
    if layout.dist_token {
        toks.extend(rd.get(t::DIST_TOKEN, &[d])?);
    }
    if layout.reg_tokens > 0 {
        toks.extend(rd.get(t::REG_TOKEN, &[layout.reg_tokens, d])?);
    }
    if prefix > 0 {
        sink.f32(engine::prefix(), &[prefix, d], &toks)?;
    }
    let (gh, gw) = (cfg.image_size.0 / p, cfg.image_size.1 / cfg.patch_size);
    if gh != gw {
        return Err(Error::model(format!("{}/config.json", ck.source), format!("a {gh}x{gw} position grid: only square grids are supported")));
    }
    let rows = gh * gw + if layout.pos_prefix { prefix } else { 0 };
    let all = rd.get(t::POSITIONS, &[rows, d])?;
    let (pre, patches) = if layout.pos_prefix { (all[..prefix * d].to_vec(), all[prefix * d..].to_vec()) } else { (vec![0.0; prefix * d], all) };
    let pos = Positions { prefix: pre, patches, side: gh, resample: PosResample::BicubicAntialias };
    if layout.pre_norm {
        rd.norm_to(sink, t::NORM_PRE, engine::pre_norm(), d)?;
    }
    let mlp = cfg.intermediate_size;
    for i in 0..cfg.num_layers {
        for which in [Norm::Before, Norm::After] {
            rd.norm_to(sink, &t::norm(i, which), engine::norm(i, which), d)?;
        }
        let (wt, b) = rd.linear(&t::qkv(i), d, 3 * d, cfg.qkv_bias, None)?;
        let (qw, qb) = engine::qkv(i);
        wt.to_sink(sink, &qw, &[d, 3 * d])?;
        if let Some(b) = b {
            sink.f32(&qb, &[3 * d], &b)?;
        }
        let scale = |rd: &mut Reader, which| -> Result<Option<Vec<f32>>> {
            let n = t::layer_scale(i, which);
            if rd.has(&n) { Ok(Some(rd.get(&n, &[d])?)) } else { Ok(None) }
        };
        let (ls1, ls2) = (scale(&mut rd, Norm::Before)?, scale(&mut rd, Norm::After)?);
        for (which, dims, s) in [(Linear::Proj, (d, d), ls1), (Linear::Fc1, (d, mlp), None), (Linear::Fc2, (mlp, d), ls2)] {
            rd.linear_to(sink, &t::linear(i, which), engine::linear(i, which), dims, s.as_deref())?;
        }
    }
    if layout.fc_norm {
        rd.norm_to(sink, t::FC_NORM, engine::fc_norm(), d)?;
    } else {
        rd.norm_to(sink, t::NORM, engine::final_norm(), d)?;
    }
    if layout.pool_map {
        let latent = rd.get("attn_pool.latent", &[d])?;
        let (qw, qb) = rd.linear("attn_pool.q", d, d, true, None)?;
        let query = project_query(&latent, &qw.into_f32(), &qb.unwrap_or_else(|| vec![0.0; d]));
        let (kw, kb) = rd.linear("attn_pool.kv", d, 2 * d, true, None)?;
        let kv = (kw, kb.unwrap_or_else(|| vec![0.0; 2 * d]));
        map_head_to(&mut rd, sink, &query, kv, ["attn_pool.proj", "attn_pool.norm", "attn_pool.mlp.fc1", "attn_pool.mlp.fc2"], d, mlp)?;
    }
    let head = cfg.head.unwrap_or(Head::None);
    let n = cfg.labels.len();
    match head {
        Head::None => {}
        Head::ClsDistilled => {
            let half = vec![0.5f32; n];
            rd.linear_to(sink, t::HEAD, engine::head(), (d, n), Some(&half))?;
            rd.linear_to(sink, t::HEAD_DIST, engine::head_dist(), (d, n), Some(&half))?;
        }
        Head::Cls | Head::Avg | Head::ClsMeanPatch => rd.linear_to(sink, t::HEAD, engine::head(), (d, n), None)?,
    }
    check_all_used(ck, &rd.used, head)?;
    Ok(Loaded { head, pooler: false, projection: false, pos })
}
