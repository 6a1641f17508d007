//! Reading a checkpoint's weights into the engine's, for every family: a [`Reader`] over the
//! checkpoint's names (a prefix, the tensors read so far), Linear layers transposed to (in, out)
//! (float, or packed where the checkpoint is quantized), query, key and value fused into one
//! (D, 3D) projection, layer scales folded into the projection they scale, position embeddings
//! kept on the host, an attention-pooling head's query projected once. Each engine weight goes to
//! a [`Sink`] (the device upload) one at a time, so no second copy of the whole model is held.
//! Every checkpoint tensor must be used: one the config does not explain is an error.

use crate::error::{Error, Result};
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::names::engine;
use crate::model::shared::spec::{Head, ModelConfig};
use crate::quant::{per_word, QuantWeight};
use safetensors::Dtype;
use std::collections::BTreeSet;

/// What loading found besides the weights.
pub struct Loaded {
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
pub struct Positions {
    /// The prefix tokens' positions, `(P, D)`.
    pub prefix: Vec<f32>,
    /// The patch positions, `(side * side, D)`.
    pub patches: Vec<f32>,
    /// The side of the checkpoint's square grid.
    pub side: usize,
    /// How they are resampled to another grid.
    pub resample: PosResample,
}

/// How a checkpoint's position grid is resampled to an input's grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PosResample {
    /// As `transformers`' ViT, DeiT, DINOv2, CLIP and SigLIP interpolate: bicubic, where the grid
    /// or the image's shape differs.
    Bicubic,
    /// As `timm`'s `resample_abs_pos_embed`: bicubic with antialiasing, where the grid differs.
    BicubicAntialias,
    /// As SigLIP 2 resizes its grid per image: bilinear with antialiasing, to every grid.
    BilinearAntialias,
    /// As DPT resizes its grid: bilinear without antialiasing, to every grid.
    Bilinear,
}

/// Receives each engine weight: float (name, shape, values) or quantized.
pub trait Sink {
    /// A float weight.
    fn f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()>;
    /// A quantized weight, packed.
    fn quant(&mut self, name: &str, q: &QuantWeight) -> Result<()>;
    /// A float matrix that is only ever a matrix product's B (a Linear layer's `(in, out)`):
    /// the device may keep it in the product's layout alone.
    fn matrix(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.f32(name, shape, data)
    }
    /// A float matrix that is only ever a product's B which every rank of a split backend runs
    /// whole (the patch embedding's kernel): kept in the product's layout alone, unsplit.
    fn packed(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.f32(name, shape, data)
    }
    /// A float matrix whose product a split backend may split along its depth (its rows): the
    /// MLP's second layer, whose input the first layer leaves split by columns.
    fn matrix_rows(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.matrix(name, shape, data)
    }
    /// A fused query-key-value matrix `(D, 3 D)`: a split backend may split it by heads (each
    /// rank its heads' query, key and value columns).
    fn qkv(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.matrix(name, shape, data)
    }
    /// A quantized fused query-key-value weight (split by heads as [`Sink::qkv`]).
    fn quant_qkv(&mut self, name: &str, q: &QuantWeight) -> Result<()> {
        self.quant(name, q)
    }
}

impl Sink for crate::graph::weights::Weights {
    fn f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert(name, shape, data)
    }

    fn quant(&mut self, name: &str, q: &QuantWeight) -> Result<()> {
        self.insert_quant(name, q)
    }

    fn matrix(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert_matrix(name, shape, data)
    }

    fn packed(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert_packed(name, shape, data)
    }

    fn matrix_rows(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert_matrix_rows(name, shape, data)
    }

    fn qkv(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert_qkv(name, shape, data)
    }

    fn quant_qkv(&mut self, name: &str, q: &QuantWeight) -> Result<()> {
        self.insert_quant_qkv(name, q)
    }
}

/// A Linear layer's weight as the engine takes it, `(in, out)`: float, or quantized as stored.
pub enum LinearWeight {
    /// Float `(in, out)`.
    F32(Vec<f32>),
    /// Packed as stored.
    Quant(QuantWeight),
}

impl LinearWeight {
    /// Scales output column j by s[j].
    pub fn scale_columns(&mut self, s: &[f32]) {
        match self {
            LinearWeight::F32(wt) => {
                for row in wt.chunks_mut(s.len()) {
                    row.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
                }
            }
            LinearWeight::Quant(q) => q.scale_columns(s),
        }
    }

    /// Into `sink` as engine weight `name` of `shape`.
    pub fn to_sink(&self, sink: &mut dyn Sink, name: &str, shape: &[usize]) -> Result<()> {
        match self {
            LinearWeight::F32(w) if engine::is_mlp_second(name) => sink.matrix_rows(name, shape, w),
            LinearWeight::F32(w) if engine::is_qkv(name) => sink.qkv(name, shape, w),
            LinearWeight::F32(w) => sink.matrix(name, shape, w),
            LinearWeight::Quant(q) if engine::is_qkv(name) => sink.quant_qkv(name, q),
            LinearWeight::Quant(q) => sink.quant(name, q),
        }
    }

    /// As f32 (dequantized where packed).
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            LinearWeight::F32(w) => w,
            LinearWeight::Quant(q) => q.dequantize(),
        }
    }
}

/// (out, in) row-major to (in, out) row-major.
pub fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// Reads tensors of a checkpoint under a name prefix and remembers which it read.
pub struct Reader<'a> {
    /// The checkpoint.
    pub ck: &'a Checkpoint,
    /// What precedes every name read (`vit.`, `vision_model.`, or none).
    pub prefix: String,
    /// The full names read so far.
    pub used: BTreeSet<String>,
}

impl<'a> Reader<'a> {
    /// A reader of `ck`'s tensors under `prefix`.
    pub fn new(ck: &'a Checkpoint, prefix: &str) -> Reader<'a> {
        Reader { ck, prefix: prefix.into(), used: BTreeSet::new() }
    }

    /// Tensor `name` (under the prefix) as f32, checked against `shape`.
    pub fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        self.used.insert(full.clone());
        self.ck.tensor(&full, shape)
    }

    /// Whether tensor `name` (under the prefix) exists.
    pub fn has(&self, name: &str) -> bool {
        self.ck.has(&format!("{}{name}", self.prefix))
    }

    /// Whether Linear layer `name` has a weight (float or packed).
    pub fn has_linear(&self, name: &str) -> bool {
        self.has(&format!("{name}.weight")) || self.has(&format!("{name}.weight_packed"))
    }

    /// A Linear layer (weight (out, in), bias (out)) as (in, out) and bias, optionally scaled
    /// per output channel; a packed weight stays quantized.
    pub fn linear(&mut self, name: &str, inp: usize, out: usize, bias: bool, scale: Option<&[f32]>) -> Result<(LinearWeight, Option<Vec<f32>>)> {
        let full = format!("{}{name}", self.prefix);
        let mut wt = if is_packed(self.ck, &full) {
            let (q, names) = read_linear(self.ck, &full, out, inp)?;
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
    pub fn patch_weight_to(&mut self, sink: &mut dyn Sink, conv: &str, cfg: &ModelConfig, patch: usize) -> Result<()> {
        let (d, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
        let kernel = self.get(&format!("{conv}.weight"), &[d, c, p, p])?;
        patch_kernel_to(sink, &kernel, cfg, patch)
    }

    /// A Linear layer into `sink` as (in, out) weight and bias (zeros where it has none).
    pub fn linear_to(&mut self, sink: &mut dyn Sink, src: &str, dst: (String, String), (inp, out): (usize, usize), scale: Option<&[f32]>) -> Result<()> {
        let (wt, b) = self.linear(src, inp, out, true, scale)?;
        wt.to_sink(sink, &dst.0, &[inp, out])?;
        sink.f32(&dst.1, &[out], &b.unwrap_or_default())
    }

    /// A layer norm's weight and bias into `sink`.
    pub fn norm_to(&mut self, sink: &mut dyn Sink, src: &str, dst: (String, String), d: usize) -> Result<()> {
        sink.f32(&dst.0, &[d], &self.get(&format!("{src}.weight"), &[d])?)?;
        sink.f32(&dst.1, &[d], &self.get(&format!("{src}.bias"), &[d])?)
    }
}

/// A patch kernel `(D, C, p, p)` (a `Conv2d`'s weight), PI-resized to `patch`, into `sink` as the
/// engine's `(C * patch * patch, D)` patch weight.
pub fn patch_kernel_to(sink: &mut dyn Sink, kernel: &[f32], cfg: &ModelConfig, patch: usize) -> Result<()> {
    let (d, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
    let k = c * patch * patch;
    let conv = crate::model::shared::flexi::pi_resize(kernel, d * c, p, patch);
    sink.packed(&engine::patch().0, &[k, d], &transpose(&conv, d, k))
}

/// Every tensor of the file must have been read: one the config does not explain is an error.
pub fn check_all_used(ck: &Checkpoint, used: &BTreeSet<String>, head: Head) -> Result<()> {
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

/// The position embeddings in tensor `name` (under the reader's prefix): `prefix_tokens`
/// positions, then a square grid.
pub fn positions_named(ck: &Checkpoint, rd: &mut Reader, name: &str, prefix_tokens: usize) -> Result<Positions> {
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
    Ok(Positions { prefix: all[..prefix_tokens * d].to_vec(), patches: all[prefix_tokens * d..].to_vec(), side, resample: PosResample::Bicubic })
}

/// Query, key and value (Linear layers `parts`, each (D, D)) fused into the engine's (D, 3D)
/// projection of layer `i`: packed side by side where all three are quantized alike, else in f32.
pub fn qkv_to(rd: &mut Reader, sink: &mut dyn Sink, parts_names: [String; 3], d: usize, bias: bool, i: usize) -> Result<()> {
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
        Some(q) => sink.quant_qkv(&qw, &q)?,
        // Float (or mixed: dequantized and fused in f32).
        None => {
            let mut qkv_w = vec![0f32; d * 3 * d];
            for (j, wt) in parts.into_iter().enumerate() {
                let wt = wt.into_f32();
                for r in 0..d {
                    qkv_w[r * 3 * d + j * d..r * 3 * d + (j + 1) * d].copy_from_slice(&wt[r * d..(r + 1) * d]);
                }
            }
            sink.qkv(&qw, &[d, 3 * d], &qkv_w)?;
        }
    }
    if bias {
        sink.f32(&qb, &[3 * d], &qkv_b)?;
    }
    Ok(())
}

/// The attention-pooling head's query: the learned `latent (D)` through `w (in, out)` and `b`,
/// in f64 (it is the same for every image, so computed once here).
pub fn project_query(latent: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let d = b.len();
    (0..d).map(|j| (latent.iter().enumerate().map(|(e, &x)| x as f64 * w[e * d + j] as f64).sum::<f64>() + b[j] as f64) as f32).collect()
}

/// The rest of an attention-pooling head into `sink`: the projected query, the key-value
/// projection `(D, 2D)` and its bias, then the output projection, norm and MLP read from the
/// checkpoint's `names` (proj, norm, fc1, fc2).
pub fn map_head_to(rd: &mut Reader, sink: &mut dyn Sink, query: &[f32], kv: (LinearWeight, Vec<f32>), names: [&str; 4], d: usize, mlp: usize) -> Result<()> {
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

/// Whether Linear layer `name` (a full tensor-name prefix) is stored quantized.
pub fn is_packed(ck: &Checkpoint, name: &str) -> bool {
    ck.has(&format!("{name}.weight_packed"))
}

/// Linear layer `name` (weight `(out, inp)`) of a quantized checkpoint as a K-major
/// [`QuantWeight`] `(inp, out)`, every tensor checked against the config's scheme; returns the
/// three tensor names it read.
pub fn read_linear(ck: &Checkpoint, name: &str, out: usize, inp: usize) -> Result<(QuantWeight, [String; 3])> {
    let file = ck.weights_name().to_string();
    let bad = |p: String| Error::model(&file, p);
    let Some(cfg) = ck.config.quant.clone() else {
        return Err(bad(format!("`{name}.weight_packed` is a packed weight, but config.json has no quantization_config")));
    };
    let names = [format!("{name}.weight_packed"), format!("{name}.weight_scale"), format!("{name}.weight_shape")];
    let [pn, sn, shn] = &names;

    // The shape it claims must be the one the model config implies.
    let (dt, shape, raw) = ck.raw(shn)?;
    let dims: Vec<i64> = match dt {
        Dtype::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::I32 => raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
        other => return Err(bad(format!("tensor `{shn}` has dtype {other:?} (expected I64 or I32)"))),
    };
    if shape.iter().product::<usize>() != 2 || dims != [out as i64, inp as i64] {
        return Err(bad(format!("tensor `{shn}` says the weight is {dims:?}, the config implies [{out}, {inp}]")));
    }

    let (bits, pw) = (cfg.bits, per_word(cfg.bits));
    let kw = inp.div_ceil(pw);
    let (dt, shape, raw) = ck.raw(pn)?;
    if dt != Dtype::I32 {
        return Err(bad(format!("tensor `{pn}` has dtype {dt:?} (expected I32: packed {bits}-bit values)")));
    }
    if shape != [out, kw] {
        return Err(bad(format!("tensor `{pn}` has shape {shape:?}; {out} x {inp} values at {bits} bits (quantization_config) pack into [{out}, {kw}]")));
    }
    let group = cfg.group.unwrap_or(inp).min(inp.max(1));
    let groups = inp.div_ceil(group);
    let scales = ck.tensor_any(sn)?;
    let sshape = ck.tensor_shape(sn).unwrap_or_default();
    if scales.len() != out * groups || sshape.first() != Some(&out) {
        let how = match cfg.group {
            None => "one per output channel".to_string(),
            Some(g) => format!("groups of {g} along {inp} inputs"),
        };
        return Err(bad(format!("tensor `{sn}` has shape {sshape:?}; {how} needs [{out}, {groups}]")));
    }

    let mut words = vec![0u32; kw * out];
    for (n, row) in raw.chunks_exact(kw * 4).enumerate() {
        for (j, c) in row.chunks_exact(4).enumerate() {
            words[j * out + n] = u32::from_le_bytes(c.try_into().unwrap());
        }
    }
    let mut t = vec![0f32; out * groups];
    for n in 0..out {
        for g in 0..groups {
            t[g * out + n] = scales[n * groups + g];
        }
    }
    let q = QuantWeight { bits, group, k: inp, n: out, words, scales: t };
    q.validate_stored(sn).map_err(|e| match e {
        Error::Weight { name, problem } => bad(format!("tensor `{name}`: {problem}")),
        e => e,
    })?;
    Ok((q, names))
}
