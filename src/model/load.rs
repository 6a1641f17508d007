//! A checkpoint's weights rearranged for the engine, handed one tensor at a time to a sink (the
//! device upload), so that no second copy of the whole model is held:
//! Linear weights transposed to (in, out); query, key and value fused into one (D, 3D)
//! projection; DINOv2's layer scale folded into the projection it scales; DeiT's two heads
//! pre-scaled by 1/2 so their sum is the average. Every checkpoint tensor must be used: one the
//! config does not explain is an error.

use super::checkpoint::Checkpoint;
use super::config::{Family, Head};
use super::naming::{engine, hf, Linear, Norm};
use crate::error::{Error, Result};
use crate::quant::QuantWeight;
use std::collections::BTreeSet;

/// What loading found besides the weights.
pub(crate) struct Loaded {
    /// The head the model runs.
    pub head: Head,
    /// Whether it has a pooler.
    pub pooler: bool,
    /// Whether it has a projection into an image-text space.
    pub projection: bool,
    /// Position embeddings of the prefix tokens, then of the checkpoint's square patch grid.
    pub pos: Positions,
}

/// A checkpoint's position embeddings, kept on the host to interpolate per input size.
pub(crate) struct Positions {
    pub prefix: Vec<f32>,
    pub patches: Vec<f32>,
    pub side: usize,
    /// Resampled as `timm` does (antialiased, only where the grid differs).
    pub antialias: bool,
}

/// Receives each engine weight: float (name, shape, values) or quantized.
pub(crate) trait Sink {
    fn f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()>;
    fn quant(&mut self, name: &str, q: &QuantWeight) -> Result<()>;
}

impl Sink for crate::graph::weights::Weights {
    fn f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert(name, shape, data)
    }

    fn quant(&mut self, name: &str, q: &QuantWeight) -> Result<()> {
        self.insert_quant(name, q)
    }
}

/// A Linear layer's weight as the engine takes it, `(in, out)`: float, or quantized as stored.
enum LinearWeight {
    F32(Vec<f32>),
    Quant(QuantWeight),
}

impl LinearWeight {
    fn scale_columns(&mut self, s: &[f32]) {
        match self {
            LinearWeight::F32(wt) => {
                for row in wt.chunks_mut(s.len()) {
                    row.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
                }
            }
            LinearWeight::Quant(q) => q.scale_columns(s),
        }
    }

    fn to_sink(&self, sink: &mut dyn Sink, name: &str, shape: &[usize]) -> Result<()> {
        match self {
            LinearWeight::F32(w) => sink.f32(name, shape, w),
            LinearWeight::Quant(q) => sink.quant(name, q),
        }
    }

    fn into_f32(self) -> Vec<f32> {
        match self {
            LinearWeight::F32(w) => w,
            LinearWeight::Quant(q) => q.dequantize(),
        }
    }
}

/// (out, in) row-major to (in, out) row-major.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

struct Reader<'a> {
    ck: &'a Checkpoint,
    prefix: String,
    used: BTreeSet<String>,
}

impl Reader<'_> {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        self.used.insert(full.clone());
        self.ck.tensor(&full, shape)
    }

    fn has(&self, name: &str) -> bool {
        self.ck.has(&format!("{}{name}", self.prefix))
    }

    /// Whether Linear layer `name` has a weight (float or packed).
    fn has_linear(&self, name: &str) -> bool {
        self.has(&format!("{name}.weight")) || self.has(&format!("{name}.weight_packed"))
    }

    /// A Linear layer (weight (out, in), bias (out)) as (in, out) and bias, optionally scaled
    /// per output channel; a packed weight stays quantized.
    fn linear(&mut self, name: &str, inp: usize, out: usize, bias: bool, scale: Option<&[f32]>) -> Result<(LinearWeight, Option<Vec<f32>>)> {
        let full = format!("{}{name}", self.prefix);
        let mut wt = if super::quantized::is_packed(self.ck, &full) {
            let (q, names) = super::quantized::read_linear(self.ck, &full, out, inp)?;
            self.used.extend(names);
            LinearWeight::Quant(q)
        } else {
            LinearWeight::F32(transpose(&self.get(&format!("{name}.weight"), &[out, inp])?, out, inp))
        };
        let mut b = if bias { Some(self.get(&format!("{name}.bias"), &[out])?) } else { None };
        if let Some(s) = scale {
            wt.scale_columns(s);
            if let Some(b) = &mut b {
                b.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
            }
        }
        Ok((wt, b))
    }

    /// The patch convolution `{conv}.weight`, `(D, C, p, p)`, PI-resized to `patch` and stored as the
    /// engine's `(C * patch * patch, D)` patch weight (the bias is the caller's: required, optional
    /// or absent by family).
    fn patch_weight_to(&mut self, sink: &mut dyn Sink, conv: &str, cfg: &super::config::ModelConfig, patch: usize) -> Result<()> {
        let (d, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
        let k = c * patch * patch;
        let conv = super::flexi::pi_resize(&self.get(&format!("{conv}.weight"), &[d, c, p, p])?, d * c, p, patch);
        sink.f32(&engine::patch().0, &[k, d], &transpose(&conv, d, k))
    }

    /// A Linear layer into `sink` as (in, out) weight and bias (zeros where it has none).
    fn linear_to(&mut self, sink: &mut dyn Sink, src: &str, dst: (String, String), (inp, out): (usize, usize), scale: Option<&[f32]>) -> Result<()> {
        let (wt, b) = self.linear(src, inp, out, true, scale)?;
        wt.to_sink(sink, &dst.0, &[inp, out])?;
        sink.f32(&dst.1, &[out], &b.unwrap_or_default())
    }

    /// A layer norm's weight and bias into `sink`.
    fn norm_to(&mut self, sink: &mut dyn Sink, src: &str, dst: (String, String), d: usize) -> Result<()> {
        sink.f32(&dst.0, &[d], &self.get(&format!("{src}.weight"), &[d])?)?;
        sink.f32(&dst.1, &[d], &self.get(&format!("{src}.bias"), &[d])?)
    }
}

/// The model prefix (`vit.`, `deit.`, `dinov2.` or none): what precedes the class token's name.
pub(crate) fn model_prefix(ck: &Checkpoint) -> Result<String> {
    if matches!(ck.config.family, Family::Timm | Family::Clip | Family::Siglip) {
        return Ok(String::new());
    }
    let cls = ck
        .tensor_names()
        .into_iter()
        .find(|n| n.ends_with(hf::CLS_TOKEN))
        .ok_or_else(|| Error::model(ck.weights_name(), format!("no `{}` tensor: not a ViT, DeiT or DINOv2 checkpoint", hf::CLS_TOKEN)))?;
    Ok(cls[..cls.len() - hf::CLS_TOKEN.len()].to_string())
}

/// Reads every weight of `ck`, rearranged, into `sink`, its patch kernel PI-resized to `patch`
/// (from the checkpoint's own weights) where that differs from the checkpoint's patch size.
pub(crate) fn load(ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
    if ck.config.family == Family::Timm {
        return load_timm(ck, patch, sink);
    }
    if ck.config.family == Family::Clip {
        return load_clip_vision(ck, patch, sink);
    }
    if ck.config.family == Family::Siglip {
        return load_siglip_vision(ck, patch, sink);
    }
    let cfg = &ck.config;
    let prefix = model_prefix(ck)?;
    let mut rd = Reader { ck, prefix: prefix.clone(), used: BTreeSet::new() };
    let d = cfg.hidden_size;

    // Embeddings.
    rd.patch_weight_to(sink, hf::PATCH, cfg, patch)?;
    sink.f32(&engine::patch().1, &[d], &rd.get(&format!("{}.bias", hf::PATCH), &[d])?)?;
    let prefix_tokens = cfg.prefix_tokens();
    let mut toks = rd.get(hf::CLS_TOKEN, &[d])?;
    if cfg.family == Family::Deit {
        toks.extend(rd.get(hf::DISTILLATION_TOKEN, &[d])?);
    }
    sink.f32(engine::prefix(), &[prefix_tokens, d], &toks)?;
    if rd.has(hf::MASK_TOKEN) {
        // Only used for masked image modeling; marked as known.
        rd.used.insert(format!("{prefix}{}", hf::MASK_TOKEN));
    }
    let pos = positions_named(ck, &mut rd, hf::POSITIONS, prefix_tokens)?;

    // Encoder.
    let mlp = cfg.intermediate_size;
    for i in 0..cfg.num_layers {
        for which in [Norm::Before, Norm::After] {
            rd.norm_to(sink, &hf::norm(cfg.family, i, which), engine::norm(i, which), d)?;
        }
        qkv_to(&mut rd, sink, [0, 1, 2].map(|j| hf::attention(i, j)), d, cfg.qkv_bias, i)?;
        let (ls1, ls2) = if cfg.family == Family::Dinov2 {
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
    let pooler = cfg.family != Family::Dinov2 && rd.has_linear(hf::POOLER);
    if pooler {
        rd.linear_to(sink, hf::POOLER, engine::pooler(), (d, d), None)?;
    }
    let mut top = Reader { ck, prefix: String::new(), used: BTreeSet::new() };
    let head = match cfg.head {
        Some(h) => h,
        None if top.has_linear(hf::CLS_CLASSIFIER) => Head::ClsDistilled,
        None if top.has_linear(hf::CLASSIFIER) => {
            if cfg.family == Family::Dinov2 {
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

/// Every tensor of the file must have been read: one the config does not explain is an error.
fn check_all_used(ck: &Checkpoint, used: &BTreeSet<String>, head: Head) -> Result<()> {
    let file = ck.weights_name();
    let extra: Vec<String> = ck.tensor_names().into_iter().filter(|t| !used.contains(t)).collect();
    if !extra.is_empty() {
        let shown: Vec<&str> = extra.iter().take(5).map(|s| s.as_str()).collect();
        return Err(Error::model(
            file,
            format!(
                "{} tensor(s) that a {:?} model with this config does not use, e.g. {} (is the config for another architecture?)",
                extra.len(),
                head,
                shown.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The position embeddings: prefix positions, then a square grid of patch positions.
/// The position embeddings in tensor `name` (under the reader's prefix): `prefix_tokens`
/// positions, then a square grid.
fn positions_named(ck: &Checkpoint, rd: &mut Reader, name: &str, prefix_tokens: usize) -> Result<Positions> {
    let file = ck.weights_name();
    let d = ck.config.hidden_size;
    let pos_name = format!("{}{name}", rd.prefix);
    let pos_len = ck
        .tensor_shape(&pos_name)
        .map(|s| s.iter().product::<usize>())
        .ok_or_else(|| Error::model(file, format!("tensor `{pos_name}` is missing")))?;
    if pos_len % d != 0 || pos_len / d <= prefix_tokens {
        return Err(Error::model(file, format!("tensor `{pos_name}` does not hold {prefix_tokens} prefix + patch positions of width {d}")));
    }
    let count = pos_len / d - prefix_tokens;
    let side = (count as f64).sqrt().round() as usize;
    if side * side != count {
        return Err(Error::model(file, format!("`{pos_name}` has {count} patch positions, not a square grid")));
    }
    let all = rd.get(name, &[prefix_tokens + count, d])?;
    Ok(Positions { prefix: all[..prefix_tokens * d].to_vec(), patches: all[prefix_tokens * d..].to_vec(), side, antialias: false })
}

/// A `timm` checkpoint (`model::timm`): the same engine weights from timm's names. The fused QKV
/// projection is read as it is ((3D, D) is query, key and value in the engine's order); layer
/// scales fold into the projections they scale; prefix positions are zero where timm's position
/// embeddings cover only the patches.
fn load_timm(ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
    use super::naming::timm as t;
    let cfg = &ck.config;
    let layout = &cfg.layout;
    let mut rd = Reader { ck, prefix: String::new(), used: BTreeSet::new() };
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
    let pos = Positions { prefix: pre, patches, side: gh, antialias: true };
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

/// Query, key and value (Linear layers `parts`, each (D, D)) fused into the engine's (D, 3D)
/// projection of layer `i`: packed side by side where all three are quantized alike, else in f32.
fn qkv_to(rd: &mut Reader, sink: &mut dyn Sink, parts_names: [String; 3], d: usize, bias: bool, i: usize) -> Result<()> {
    let mut parts = Vec::with_capacity(3);
    let mut qkv_b = vec![0f32; 3 * d];
    for (j, name) in parts_names.iter().enumerate() {
        let (wt, b) = rd.linear(name, d, d, bias, None)?;
        parts.push(wt);
        if let Some(b) = b {
            qkv_b[j * d..(j + 1) * d].copy_from_slice(&b);
        }
    }
    let (qw, qb) = engine::qkv(i);
    let quant: Vec<&QuantWeight> = parts.iter().filter_map(|p| if let LinearWeight::Quant(q) = p { Some(q) } else { None }).collect();
    match QuantWeight::concat_columns(&quant).filter(|_| quant.len() == 3) {
        // Query, key and value quantized alike: one packed (D, 3D) weight.
        Some(q) => sink.quant(&qw, &q)?,
        // Float (or mixed: dequantized and fused in f32).
        None => {
            let mut qkv_w = vec![0f32; d * 3 * d];
            for (j, wt) in parts.into_iter().enumerate() {
                let wt = wt.into_f32();
                for r in 0..d {
                    qkv_w[r * 3 * d + j * d..r * 3 * d + (j + 1) * d].copy_from_slice(&wt[r * d..(r + 1) * d]);
                }
            }
            sink.f32(&qw, &[d, 3 * d], &qkv_w)?;
        }
    }
    if bias {
        sink.f32(&qb, &[3 * d], &qkv_b)?;
    }
    Ok(())
}

/// The encoder of CLIP's and SigLIP's towers, image or text (`model::naming::clip`'s names): per
/// layer the two norms, query, key and value fused, the output projection and the MLP.
fn clip_encoder_to(rd: &mut Reader, sink: &mut dyn Sink, layers: usize, d: usize, mlp: usize) -> Result<()> {
    use super::naming::clip as c;
    for i in 0..layers {
        for which in [Norm::Before, Norm::After] {
            rd.norm_to(sink, &c::norm(i, which), engine::norm(i, which), d)?;
        }
        qkv_to(rd, sink, [0, 1, 2].map(|j| c::attention(i, j)), d, true, i)?;
        for (which, dims) in [(Linear::Proj, (d, d)), (Linear::Fc1, (d, mlp)), (Linear::Fc2, (mlp, d))] {
            rd.linear_to(sink, &c::linear(i, which), engine::linear(i, which), dims, None)?;
        }
    }
    Ok(())
}

/// CLIP's image tower (`model::naming::clip`): class embedding, patch convolution without bias,
/// position embeddings, pre-norm, the encoder (quick GELU), the post-norm of the class token as
/// `fc_norm`, and the projection where the checkpoint has one. A CLIPModel's text tower is known
/// and left for the text side.
fn load_clip_vision(ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
    use super::naming::clip as c;
    let cfg = &ck.config;
    let prefix = if ck.has(&format!("vision_model.{}", c::CLASS)) { "vision_model." } else { "" };
    let mut rd = Reader { ck, prefix: prefix.into(), used: BTreeSet::new() };
    let d = cfg.hidden_size;
    rd.patch_weight_to(sink, c::PATCH, cfg, patch)?;
    sink.f32(&engine::patch().1, &[d], &vec![0.0; d])?;
    sink.f32(engine::prefix(), &[1, d], &rd.get(c::CLASS, &[d])?)?;
    let pos = positions_named(ck, &mut rd, c::POSITIONS, 1)?;
    rd.norm_to(sink, c::PRE_NORM, engine::pre_norm(), d)?;
    let mlp = cfg.intermediate_size;
    clip_encoder_to(&mut rd, sink, cfg.num_layers, d, mlp)?;
    rd.norm_to(sink, c::POST_NORM, engine::fc_norm(), d)?;
    let mut top = Reader { ck, prefix: String::new(), used: BTreeSet::new() };
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

/// The attention-pooling head's query: the learned `latent (D)` through `w (in, out)` and `b`,
/// in f64 (it is the same for every image, so computed once here).
fn project_query(latent: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let d = b.len();
    (0..d).map(|j| (latent.iter().enumerate().map(|(e, &x)| x as f64 * w[e * d + j] as f64).sum::<f64>() + b[j] as f64) as f32).collect()
}

/// The rest of an attention-pooling head into `sink`: the projected query, the key-value
/// projection `(D, 2D)` and its bias, then the output projection, norm and MLP read from the
/// checkpoint's `names` (proj, norm, fc1, fc2).
fn map_head_to(rd: &mut Reader, sink: &mut dyn Sink, query: &[f32], kv: (LinearWeight, Vec<f32>), names: [&str; 4], d: usize, mlp: usize) -> Result<()> {
    let (qn, _) = engine::map("query");
    sink.f32(&qn, &[1, d], query)?;
    let (kw, kb) = engine::map("kv");
    kv.0.to_sink(sink, &kw, &[d, 2 * d])?;
    sink.f32(&kb, &[2 * d], &kv.1)?;
    let [proj, norm, fc1, fc2] = names;
    rd.linear_to(sink, proj, engine::map("proj"), (d, d), None)?;
    rd.norm_to(sink, norm, engine::map("ln"), d)?;
    rd.linear_to(sink, fc1, engine::map("fc1"), (d, mlp), None)?;
    rd.linear_to(sink, fc2, engine::map("fc2"), (mlp, d), None)
}

/// SigLIP's image tower (`transformers`' SiglipVisionModel, the image side of SiglipModel, and
/// SiglipForImageClassification): patch convolution with bias, position embeddings for the patches
/// only, the encoder (CLIP's names), the post-norm of every token as the final norm, then the
/// attention-pooling head (its `nn.MultiheadAttention` packs query, key and value in one
/// `in_proj`) and the classifier on the mean token, where the checkpoint has them. A SiglipModel's
/// text tower is known and left for the text side.
fn load_siglip_vision(ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded> {
    use super::naming::clip as c;
    let cfg = &ck.config;
    let prefix = if ck.has(&format!("vision_model.{}.weight", c::PATCH)) { "vision_model." } else { "" };
    let mut rd = Reader { ck, prefix: prefix.into(), used: BTreeSet::new() };
    let d = cfg.hidden_size;
    rd.patch_weight_to(sink, c::PATCH, cfg, patch)?;
    sink.f32(&engine::patch().1, &[d], &rd.get(&format!("{}.bias", c::PATCH), &[d])?)?;
    let pos = positions_named(ck, &mut rd, c::POSITIONS, 0)?;
    let mlp = cfg.intermediate_size;
    clip_encoder_to(&mut rd, sink, cfg.num_layers, d, mlp)?;
    rd.norm_to(sink, c::POST_NORM, engine::final_norm(), d)?;
    if cfg.layout.pool_map {
        let probe = rd.get("head.probe", &[d])?;
        let w = rd.get("head.attention.in_proj_weight", &[3 * d, d])?;
        let b = rd.get("head.attention.in_proj_bias", &[3 * d])?;
        let query = project_query(&probe, &transpose(&w[..d * d], d, d), &b[..d]);
        let kv = (LinearWeight::F32(transpose(&w[d * d..], 2 * d, d)), b[d..].to_vec());
        map_head_to(&mut rd, sink, &query, kv, ["head.attention.out_proj", "head.layernorm", "head.mlp.fc1", "head.mlp.fc2"], d, mlp)?;
    }
    let head = cfg.head.unwrap_or(Head::None);
    let mut top = Reader { ck, prefix: String::new(), used: BTreeSet::new() };
    if head == Head::Avg {
        let n = cfg.labels.len();
        if n == 0 {
            return Err(Error::model(format!("{}/config.json", ck.source), "the model has a classifier but no id2label / num_labels"));
        }
        top.linear_to(sink, "classifier", engine::head(), (d, n), None)?;
    }
    rd.used.extend(top.used);
    let mut two_tower = false;
    for t in ck.tensor_names() {
        if ["text_model.", "logit_scale", "logit_bias"].iter().any(|p| t.starts_with(p)) {
            two_tower = true;
            rd.used.insert(t);
        }
    }
    check_all_used(ck, &rd.used, head)?;
    // A SiglipModel's pooled features are its image embeddings.
    Ok(Loaded { head, pooler: false, projection: two_tower && cfg.layout.pool_map, pos })
}

/// A text tower's host-side tensors: token embeddings, position embeddings, projection and its
/// bias.
pub(crate) type TextHost = (Vec<f32>, Vec<f32>, Option<(Vec<f32>, Option<Vec<f32>>)>);

/// CLIP's or SigLIP's text tower (`model::text`): the encoder's weights into `sink` (Q/K/V fused,
/// as for the image towers); the token and position embeddings `(V, D)`, `(P, D)` and the
/// projection `(D, P)` (CLIP's `text_projection` at the top level; SigLIP's `head`, with a bias,
/// in the tower), where the model has one, returned for the host. Tensors under `text_model.`
/// (and without the prefix in transformers 5's text-model files).
pub(crate) fn load_text(ck: &Checkpoint, cfg: &super::text::TextConfig, sink: &mut dyn Sink) -> Result<TextHost> {
    let prefix = if ck.has("text_model.embeddings.token_embedding.weight") { "text_model." } else { "" };
    let mut rd = Reader { ck, prefix: prefix.into(), used: BTreeSet::new() };
    let d = cfg.hidden_size;
    let tokens = rd.get("embeddings.token_embedding.weight", &[cfg.vocab_size, d])?;
    let positions = rd.get("embeddings.position_embedding.weight", &[cfg.max_positions, d])?;
    clip_encoder_to(&mut rd, sink, cfg.num_layers, d, cfg.intermediate_size)?;
    rd.norm_to(sink, "final_layer_norm", engine::final_norm(), d)?;
    let mut top = Reader { ck, prefix: String::new(), used: BTreeSet::new() };
    let projection = match cfg.projection_dim {
        Some(p) if cfg.kind == super::text::TextKind::Siglip => {
            let (w, b) = rd.linear("head", d, p, true, None)?;
            Some((w.into_f32(), b))
        }
        Some(p) if top.has_linear("text_projection") => Some((top.linear("text_projection", d, p, false, None)?.0.into_f32(), None)),
        _ => None,
    };
    Ok((tokens, positions, projection))
}
