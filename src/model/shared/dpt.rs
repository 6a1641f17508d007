//! The DPT neck and depth head as Depth Anything defines them (`transformers`'
//! `modeling_depth_anything.py`: `DepthAnythingNeck`, `DepthAnythingDepthEstimationHead`) and as
//! DPT does over a ViT (`modeling_dpt.py`: `DPTNeck`, `DPTDepthEstimationHead`), built on the
//! engine's map ops over the backbone's hidden states, and the reading of their weights.
//!
//! The neck reassembles four hidden states into maps (class token dropped, tokens to a
//! `(B, h, w, D)` map, a 1x1 projection, then a transposed convolution for factors above 1 or a
//! strided 3x3 convolution below), a 3x3 convolution to the fusion width each, then fuses them
//! from the coarsest up (pre-activation residual units, a bilinear resize with aligned corners to
//! the next map's size or 2x, a 1x1 projection). The head: a 3x3 convolution to half the width, a
//! bilinear resize to the input's size, a 3x3 convolution with ReLU, a 1x1 convolution to one
//! channel with ReLU (relative depth) or a sigmoid (metric), times `max_depth`.
//!
//! DPT's differs: the class token is read out into each patch first (dropped, added, or appended
//! and projected back with a linear layer and GELU), the residual units may carry batch norms
//! (folded into their convolutions at load), each fused map is doubled rather than resized to the
//! next map (which is resized to it where their sizes differ: odd grids), and the head doubles
//! once more between its first two convolutions (a 32-channel one, then one channel with ReLU).

use crate::error::{Error, Result};
use crate::graph::ir::Graph;
use crate::model::shared::reader::Sink;
pub use crate::model::shared::spec::{DepthHead, DepthStyle, DptReadout};
use crate::ops::spatial::{conv_transpose_weight, conv_weight, ConvAct};
use crate::ops::{Activation, Op, Readout};
use crate::tensor::TensorId;

/// Reads a checkpoint tensor by name, checking its shape.
pub type Getter<'a> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>> + 'a;

/// A reassemble layer's resampling.
enum Resample {
    Up(usize),
    Same,
    Down(usize),
}

fn resample(factor: f64, file: &str) -> Result<Resample> {
    if factor >= 1.0 && factor.fract() == 0.0 && factor <= 16.0 {
        return Ok(if factor == 1.0 { Resample::Same } else { Resample::Up(factor as usize) });
    }
    let down = 1.0 / factor;
    if factor > 0.0 && factor < 1.0 && (down - down.round()).abs() < 1e-9 && down.round() <= 16.0 {
        return Ok(Resample::Down(down.round() as usize));
    }
    Err(Error::model(file, format!("reassemble factor {factor}: expected a whole number from 1 to 16 or its inverse")))
}

/// Reads the fields of a depth `config.json` (`file` names it), absent or null fields as absent.
struct Fields<'a> {
    config: &'a serde_json::Value,
    file: &'a str,
}

impl Fields<'_> {
    fn get(&self, field: &str) -> Option<&serde_json::Value> {
        self.config.get(field).filter(|v| !v.is_null())
    }

    fn bad(&self, field: &str, want: &str) -> Error {
        Error::model(self.file, format!("`{field}` must be {want}"))
    }

    fn uints_of(&self, v: &serde_json::Value, field: &str) -> Result<Vec<usize>> {
        v.as_array()
            .ok_or_else(|| self.bad(field, "a list of whole numbers"))?
            .iter()
            .map(|x| x.as_u64().filter(|&n| n <= 1 << 20).map(|n| n as usize).ok_or_else(|| self.bad(field, "a list of whole numbers")))
            .collect()
    }

    fn uints(&self, field: &str, default: &[usize]) -> Result<Vec<usize>> {
        self.get(field).map_or_else(|| Ok(default.to_vec()), |v| self.uints_of(v, field))
    }

    fn floats(&self, field: &str, default: &[f64]) -> Result<Vec<f64>> {
        match self.get(field) {
            Some(v) => v
                .as_array()
                .ok_or_else(|| self.bad(field, "a list of numbers"))?
                .iter()
                .map(|x| x.as_f64().ok_or_else(|| self.bad(field, "a list of numbers")))
                .collect(),
            None => Ok(default.to_vec()),
        }
    }

    fn uint(&self, field: &str, default: usize) -> Result<usize> {
        match self.get(field) {
            Some(v) => v.as_u64().filter(|&n| n <= 1 << 20).map(|n| n as usize).ok_or_else(|| self.bad(field, "a whole number")),
            None => Ok(default),
        }
    }

    fn flag(&self, field: &str) -> Result<Option<bool>> {
        self.get(field).map(|v| v.as_bool().ok_or_else(|| self.bad(field, "true or false"))).transpose()
    }

    fn head_in_index(&self) -> Result<isize> {
        match self.get("head_in_index") {
            Some(v) => Ok(v.as_i64().filter(|n| n.abs() <= 64).ok_or_else(|| self.bad("head_in_index", "a small integer"))? as isize),
            None => Ok(-1),
        }
    }
}

/// The hidden states a `Dinov2Backbone` hands DPT's neck: its `backbone_config`'s `out_indices`
/// (stage i: the output of layer i, 0 the embeddings), or the stages its `out_features` name
/// (`"stage3"`); without either, transformers' default: the last stage alone (which DPT's four
/// maps refuse). The layer count is checked with the neck.
fn dinov2_stages(f: &Fields) -> Result<Vec<usize>> {
    let b = f.get("backbone_config").expect("checked by the caller");
    if let Some(v) = b.get("out_indices").filter(|v| !v.is_null()) {
        return f.uints_of(v, "backbone_config.out_indices");
    }
    let layers = b.get("num_hidden_layers").and_then(serde_json::Value::as_u64).unwrap_or(12).min(1 << 20) as usize;
    let Some(v) = b.get("out_features").filter(|v| !v.is_null()) else {
        return Ok(vec![layers]);
    };
    let bad = || f.bad("backbone_config.out_features", "a list of stage names (\"stem\", \"stage1\", ...)");
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|s| match s.as_str() {
            Some("stem") => Ok(0),
            Some(s) => s.strip_prefix("stage").and_then(|n| n.parse::<usize>().ok()).filter(|&n| n <= 1 << 20).ok_or_else(bad),
            None => Err(bad()),
        })
        .collect()
}

/// Whether a `Dinov2Backbone` hands the neck its hidden states through the final norm
/// (`apply_layernorm`, true by default).
fn applies_layernorm(f: &Fields, backbone: &serde_json::Value) -> Result<bool> {
    match backbone.get("apply_layernorm").filter(|v| !v.is_null()) {
        None => Ok(true),
        Some(v) => v.as_bool().ok_or_else(|| f.bad("backbone_config.apply_layernorm", "true or false")),
    }
}

impl DepthHead {
    /// The neck and head of a depth `config.json` (`file` names it): a `DepthAnythingConfig`
    /// (`out_indices` from its `backbone_config`), or a `DPTConfig` (`model_type: "dpt"`, its
    /// own `backbone_out_indices`), with transformers' defaults for absent fields. The readout's
    /// activation is GELU until the family sets the backbone's.
    pub fn from_config(config: &serde_json::Value, file: &str) -> Result<DepthHead> {
        let f = Fields { config, file };
        if config.get("model_type").and_then(serde_json::Value::as_str) == Some("dpt") {
            return Self::from_dpt(&f);
        }
        let backbone = f.get("backbone_config").ok_or_else(|| Error::model(file, "no `backbone_config` (a DINOv2 backbone is needed)"))?;
        let out_indices = match backbone.get("out_indices").filter(|v| !v.is_null()) {
            Some(v) => f.uints_of(v, "backbone_config.out_indices")?,
            None => vec![9, 10, 11, 12],
        };
        let normed = applies_layernorm(&f, backbone)?;
        let metric = match f.get("depth_estimation_type").map(|v| v.as_str()) {
            None | Some(Some("relative")) => false,
            Some(Some("metric")) => true,
            Some(_) => return Err(f.bad("depth_estimation_type", "\"relative\" or \"metric\"")),
        };
        let max_depth = match f.get("max_depth") {
            Some(v) => v.as_f64().ok_or_else(|| f.bad("max_depth", "a number"))? as f32,
            None => 1.0,
        };
        Ok(DepthHead {
            style: DepthStyle::DepthAnything,
            out_indices,
            layer_indices: false,
            normed,
            readout: DptReadout::Ignore,
            readout_act: Activation::Gelu,
            reassemble_factors: f.floats("reassemble_factors", &[4.0, 2.0, 1.0, 0.5])?,
            neck_hidden_sizes: f.uints("neck_hidden_sizes", &[48, 96, 192, 384])?,
            fusion_hidden_size: f.uint("fusion_hidden_size", 64)?,
            batch_norm: false,
            fusion_bias: true,
            head_hidden_size: f.uint("head_hidden_size", 32)?,
            head_in_index: f.head_in_index()?,
            projection: false,
            metric,
            max_depth,
        })
    }

    /// `DPTConfig`'s neck and head over its own ViT backbone, or over a DINOv2 `backbone_config`
    /// (`Dinov2Backbone`: its `out_indices` stages through the final norm, class token kept).
    fn from_dpt(f: &Fields) -> Result<DepthHead> {
        let dinov2 = f.get("backbone_config").and_then(|b| b.get("model_type")).and_then(serde_json::Value::as_str) == Some("dinov2");
        let (mut out_indices, field) = if dinov2 {
            (dinov2_stages(f)?, "backbone_config.out_indices")
        } else {
            // DPT keeps the hidden states after the layers `backbone_out_indices` names (0: the
            // first layer's output), in layer order whatever the list's order.
            (f.uints("backbone_out_indices", &[2, 5, 8, 11])?.into_iter().map(|i| i + 1).collect(), "backbone_out_indices")
        };
        out_indices.sort_unstable();
        let listed = out_indices.len();
        out_indices.dedup();
        if out_indices.len() != listed {
            return Err(f.bad(field, "a list of different layers"));
        }
        let readout = match f.get("readout_type").map(|v| v.as_str()) {
            None | Some(Some("project")) => DptReadout::Project,
            Some(Some("add")) => DptReadout::Add,
            Some(Some("ignore")) => DptReadout::Ignore,
            Some(_) => return Err(f.bad("readout_type", "\"ignore\", \"add\" or \"project\"")),
        };
        let batch_norm = f.flag("use_batch_norm_in_fusion_residual")?.unwrap_or(false);
        Ok(DepthHead {
            style: DepthStyle::Dpt,
            out_indices,
            layer_indices: !dinov2,
            normed: match f.get("backbone_config") {
                Some(b) if dinov2 => applies_layernorm(f, b)?,
                _ => false,
            },
            readout,
            readout_act: Activation::Gelu,
            reassemble_factors: f.floats("reassemble_factors", &[4.0, 2.0, 1.0, 0.5])?,
            neck_hidden_sizes: f.uints("neck_hidden_sizes", &[96, 192, 384, 768])?,
            fusion_hidden_size: f.uint("fusion_hidden_size", 256)?,
            batch_norm,
            fusion_bias: f.flag("use_bias_in_fusion_residual")?.unwrap_or(!batch_norm),
            head_hidden_size: 32,
            head_in_index: f.head_in_index()?,
            projection: f.flag("add_projection")?.unwrap_or(false),
            metric: false,
            max_depth: 1.0,
        })
    }

    /// Checks the spec against a backbone of `layers` layers; `file` names the config.
    pub fn check(&self, layers: usize, file: &str) -> Result<()> {
        let n = self.out_indices.len();
        // DPT's own ViT names layers (0: the first layer's output); DINOv2 backbones name hidden states.
        let own_vit = self.layer_indices;
        let field = if own_vit { "backbone_out_indices" } else { "out_indices" };
        if n == 0 || self.reassemble_factors.len() != n || self.neck_hidden_sizes.len() != n {
            return Err(Error::model(
                file,
                format!(
                    "the neck needs as many reassemble_factors and neck_hidden_sizes as {field} (got {}, {} and {})",
                    self.reassemble_factors.len(),
                    self.neck_hidden_sizes.len(),
                    n
                ),
            ));
        }
        if let Some(i) = self.out_indices.iter().find(|&&i| i > layers) {
            return Err(Error::model(
                file,
                if own_vit {
                    format!("backbone_out_indices names layer {}, but the backbone has layers 0 to {}", i - 1, layers.saturating_sub(1))
                } else {
                    format!("out_indices names hidden state {i}, but the backbone has {layers} layers")
                },
            ));
        }
        for &f in &self.reassemble_factors {
            resample(f, file)?;
        }
        if self.fusion_hidden_size < 2 || self.head_hidden_size == 0 || self.neck_hidden_sizes.contains(&0) {
            return Err(Error::model(file, "the neck and head widths must be positive (the fusion width at least 2)"));
        }
        let k = if self.head_in_index < 0 { n as isize + self.head_in_index } else { self.head_in_index };
        if !(0..n as isize).contains(&k) {
            return Err(Error::model(file, format!("head_in_index {} is outside the {n} fused maps", self.head_in_index)));
        }
        if !self.max_depth.is_finite() {
            return Err(Error::model(file, format!("max_depth {} is not finite", self.max_depth)));
        }
        Ok(())
    }

    fn head_index(&self) -> usize {
        let n = self.out_indices.len() as isize;
        (if self.head_in_index < 0 { n + self.head_in_index } else { self.head_in_index }) as usize
    }
}

/// The engine's name of a neck or head weight (the checkpoint's, under `depth.`).
pub fn engine_name(hf: &str) -> String {
    format!("depth.{hf}")
}

/// BatchNorm2d's default epsilon, which DPT's residual units keep.
const BATCH_NORM_EPS: f64 = 1e-5;

/// The Linear layer (`2D` to `D`) of `"project"`'s readout in reassemble stage `i`: the
/// checkpoint's name (without `.weight`), and the engine's weight and bias. The family reads it as
/// any Linear layer (quantized where the checkpoint is).
pub fn readout_projection(i: usize) -> (String, (String, String)) {
    let name = format!("neck.reassemble_stage.readout_projects.{i}.0");
    let engine = (engine_name(&format!("{name}.weight")), engine_name(&format!("{name}.bias")));
    (name, engine)
}

/// Reads the neck and head weights (`get(name, shape)`: the checkpoint's tensor) into `sink`, the
/// convolutions in the map ops' layouts, batch norms folded into the convolutions before them;
/// all but the readout projections ([`readout_projection`]). `d`: the backbone's width.
pub fn load(spec: &DepthHead, d: usize, get: &mut Getter, sink: &mut dyn Sink) -> Result<()> {
    let f = spec.fusion_hidden_size;
    /// A convolution's weight and bias (where `bias`; `bn`: the batch norm after it, folded in)
    /// in the map op's layout. Writes a bias where either is.
    fn conv_bn(get: &mut Getter, name: &str, (co, ci, k): (usize, usize, usize), bias: bool, bn: Option<&str>, sink: &mut dyn Sink) -> Result<()> {
        let mut w = get(&format!("{name}.weight"), &[co, ci, k, k])?;
        let mut b = if bias { Some(get(&format!("{name}.bias"), &[co])?) } else { None };
        if let Some(bn) = bn {
            let [gamma, beta, mean, var] = ["weight", "bias", "running_mean", "running_var"].map(|p| get(&format!("{bn}.{p}"), &[co]));
            let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
            let mut folded = vec![0f32; co];
            for o in 0..co {
                let s = gamma[o] as f64 / (var[o] as f64 + BATCH_NORM_EPS).sqrt();
                w[o * ci * k * k..(o + 1) * ci * k * k].iter_mut().for_each(|v| *v = (*v as f64 * s) as f32);
                let b0 = b.as_ref().map_or(0.0, |b| b[o] as f64);
                folded[o] = ((b0 - mean[o] as f64) * s + beta[o] as f64) as f32;
            }
            b = Some(folded);
        }
        sink.packed(&engine_name(&format!("{name}.weight")), &[k * k * ci, co], &conv_weight(&w, co, ci, k))?;
        if let Some(b) = b {
            sink.f32(&engine_name(&format!("{name}.bias")), &[co], &b)?;
        }
        Ok(())
    }
    fn conv(get: &mut Getter, name: &str, co: usize, ci: usize, k: usize, bias: bool, sink: &mut dyn Sink) -> Result<()> {
        conv_bn(get, name, (co, ci, k), bias, None, sink)
    }
    for (i, (&c, &factor)) in spec.neck_hidden_sizes.iter().zip(&spec.reassemble_factors).enumerate() {
        let layer = format!("neck.reassemble_stage.layers.{i}");
        conv(get, &format!("{layer}.projection"), c, d, 1, true, sink)?;
        match resample(factor, "config.json")? {
            Resample::Up(k) => {
                let name = format!("{layer}.resize");
                let w = get(&format!("{name}.weight"), &[c, c, k, k])?;
                sink.packed(&engine_name(&format!("{name}.weight")), &[c, k * k * c], &conv_transpose_weight(&w, c, c, k))?;
                sink.f32(&engine_name(&format!("{name}.bias")), &[c], &get(&format!("{name}.bias"), &[c])?)?;
            }
            Resample::Same => {}
            Resample::Down(_) => conv(get, &format!("{layer}.resize"), c, c, 3, true, sink)?,
        }
        conv(get, &format!("neck.convs.{i}"), f, c, 3, false, sink)?;
    }
    for i in 0..spec.out_indices.len() {
        let layer = format!("neck.fusion_stage.layers.{i}");
        conv(get, &format!("{layer}.projection"), f, f, 1, true, sink)?;
        for unit in ["residual_layer1", "residual_layer2"] {
            if i == 0 && unit == "residual_layer1" {
                continue; // never run (`unread`)
            }
            for j in [1, 2] {
                let bn = spec.batch_norm.then(|| format!("{layer}.{unit}.batch_norm{j}"));
                conv_bn(get, &format!("{layer}.{unit}.convolution{j}"), (f, f, 3), spec.fusion_bias, bn.as_deref(), sink)?;
            }
        }
    }
    if spec.projection {
        conv(get, "head.projection", f, f, 3, true, sink)?;
    }
    let [c1, c2, c3] = head_names(spec.style);
    conv(get, c1, f / 2, f, 3, true, sink)?;
    conv(get, c2, spec.head_hidden_size, f / 2, 3, true, sink)?;
    conv(get, c3, 1, spec.head_hidden_size, 1, true, sink)?;
    Ok(())
}

/// The head's three convolutions' names.
fn head_names(style: DepthStyle) -> [&'static str; 3] {
    match style {
        DepthStyle::DepthAnything => ["head.conv1", "head.conv2", "head.conv3"],
        DepthStyle::Dpt => ["head.head.0", "head.head.2", "head.head.4"],
    }
}

/// Whether a checkpoint tensor is one a depth head holds but never reads: a batch norm's count
/// of training batches, and the first fusion layer's residual unit for a previous fused map it
/// does not have (transformers builds it; facebook/dpt-dinov2-*'s checkpoints lack it).
pub fn unread(name: &str) -> bool {
    name.starts_with("neck.") && name.ends_with(".num_batches_tracked") || name.starts_with(FIRST_RESIDUAL)
}

/// The residual unit of the first fusion layer, which has no previous map to add.
const FIRST_RESIDUAL: &str = "neck.fusion_stage.layers.0.residual_layer1.";

/// A convolution over `x` with the weights `name.weight` and (where `bias`) `name.bias`.
#[allow(clippy::too_many_arguments)]
fn conv(g: &mut Graph, name: &str, x: TensorId, (ci, co): (usize, usize), (k, stride, pad): (usize, usize, usize), bias: bool, pre_relu: bool, act: ConvAct, scale: f32, residual: Option<TensorId>) -> Result<TensorId> {
    let w = g.weight(&engine_name(&format!("{name}.weight")), &[k * k * ci, co]);
    let mut ins = vec![x, w];
    if bias {
        ins.push(g.weight(&engine_name(&format!("{name}.bias")), &[co]));
    }
    ins.extend(residual);
    g.op(name, Op::Conv2d { kernel: k, stride, pad, bias, pre_relu, act, scale, residual: residual.is_some() }, &ins)
}

/// `conv2(relu(conv1(relu(x)))) + x` (+ `extra`, added to the residual first).
fn residual_unit(g: &mut Graph, name: &str, x: TensorId, f: usize, bias: bool, extra: Option<TensorId>) -> Result<TensorId> {
    let h = conv(g, &format!("{name}.convolution1"), x, (f, f), (3, 1, 1), bias, true, ConvAct::Relu, 1.0, None)?;
    let res = match extra {
        Some(e) => g.add(&format!("{name}.sum"), x, e)?,
        None => x,
    };
    conv(g, &format!("{name}.convolution2"), h, (f, f), (3, 1, 1), bias, false, ConvAct::None, 1.0, Some(res))
}

fn map_size(g: &Graph, x: TensorId) -> (usize, usize) {
    let s = &g.info(x).shape;
    (s[1], s[2])
}

/// The neck and head over `features` (the backbone's hidden states at `out_indices`, through its
/// final norm where the spec says, `(B, 1 + gh * gw, D)` each with the class token first) for a
/// `gh` x `gw` grid of `patch`-pixel patches: `predicted_depth (B, H, W, 1)`, at the input's size
/// for Depth Anything, at 2^(maps + 1) times the coarsest map for DPT.
pub fn build(g: &mut Graph, spec: &DepthHead, features: &[TensorId], (gh, gw): (usize, usize), patch: usize) -> Result<TensorId> {
    let f = spec.fusion_hidden_size;
    let readout = match spec.readout {
        DptReadout::Ignore => Readout::Ignore,
        DptReadout::Add => Readout::Add,
        DptReadout::Project => Readout::Concat,
    };
    let mut maps = Vec::new();
    for (i, (&x, (&c, &factor))) in features.iter().zip(spec.neck_hidden_sizes.iter().zip(&spec.reassemble_factors)).enumerate() {
        let d = g.info(x).shape[2];
        let layer = format!("neck.reassemble_stage.layers.{i}");
        let mut m = g.op(&format!("{layer}.map"), Op::TokensToMap { prefix: 1, height: gh, width: gw, readout }, &[x])?;
        if spec.readout == DptReadout::Project {
            let (name, (w, b)) = readout_projection(i);
            let (w, b) = (g.weight(&w, &[2 * d, d]), g.weight(&b, &[d]));
            m = g.matmul(&name, m, w, Some(b), spec.readout_act, None)?;
        }
        let mut m = conv(g, &format!("{layer}.projection"), m, (d, c), (1, 1, 0), true, false, ConvAct::None, 1.0, None)?;
        m = match resample(factor, "config.json")? {
            Resample::Up(k) => {
                let name = format!("{layer}.resize");
                let w = g.weight(&engine_name(&format!("{name}.weight")), &[c, k * k * c]);
                let b = g.weight(&engine_name(&format!("{name}.bias")), &[c]);
                g.op(&name, Op::ConvTranspose2d { kernel: k, bias: true }, &[m, w, b])?
            }
            Resample::Same => m,
            Resample::Down(s) => conv(g, &format!("{layer}.resize"), m, (c, c), (3, s, 1), true, false, ConvAct::None, 1.0, None)?,
        };
        maps.push(conv(g, &format!("neck.convs.{i}"), m, (c, f), (3, 1, 1), false, false, ConvAct::None, 1.0, None)?);
    }
    // Fusion, from the coarsest map up; a map whose size differs from the fused one is resized
    // to it.
    let n = maps.len();
    let bias = spec.fusion_bias || spec.batch_norm;
    let mut fused: Option<TensorId> = None;
    let mut outs = Vec::new();
    for idx in 0..n {
        let layer = format!("neck.fusion_stage.layers.{idx}");
        let x = maps[n - 1 - idx];
        let mut h = match fused {
            None => x,
            Some(prev) => {
                let (ph, pw) = map_size(g, prev);
                let res = if map_size(g, x) != (ph, pw) {
                    g.op(&format!("{layer}.residual_resize"), Op::Resize { height: ph, width: pw, align_corners: false }, &[x])?
                } else {
                    x
                };
                residual_unit(g, &format!("{layer}.residual_layer1"), res, f, bias, Some(prev))?
            }
        };
        h = residual_unit(g, &format!("{layer}.residual_layer2"), h, f, bias, None)?;
        let (a, b) = map_size(g, h);
        let (th, tw) = match spec.style {
            DepthStyle::DepthAnything if idx + 1 < n => map_size(g, maps[n - 2 - idx]),
            _ => (2 * a, 2 * b),
        };
        h = g.op(&format!("{layer}.resize"), Op::Resize { height: th, width: tw, align_corners: true }, &[h])?;
        h = conv(g, &format!("{layer}.projection"), h, (f, f), (1, 1, 0), true, false, ConvAct::None, 1.0, None)?;
        fused = Some(h);
        outs.push(h);
    }
    let [c1, c2, c3] = head_names(spec.style);
    let mut x = outs[spec.head_index()];
    if spec.projection {
        x = conv(g, "head.projection", x, (f, f), (3, 1, 1), true, false, ConvAct::Relu, 1.0, None)?;
    }
    let x = conv(g, c1, x, (f, f / 2), (3, 1, 1), true, false, ConvAct::None, 1.0, None)?;
    let (th, tw) = match spec.style {
        DepthStyle::DepthAnything => (gh * patch, gw * patch),
        DepthStyle::Dpt => {
            let (a, b) = map_size(g, x);
            (2 * a, 2 * b)
        }
    };
    let x = g.op("head.resize", Op::Resize { height: th, width: tw, align_corners: true }, &[x])?;
    let x = conv(g, c2, x, (f / 2, spec.head_hidden_size), (3, 1, 1), true, false, ConvAct::Relu, 1.0, None)?;
    let act = if spec.metric { ConvAct::Sigmoid } else { ConvAct::Relu };
    conv(g, c3, x, (spec.head_hidden_size, 1), (1, 1, 0), true, false, act, spec.max_depth, None)
}

/// PyTorch's cubic convolution weights (A = -0.75) of the four taps around a sample at fraction
/// `t` past its floor.
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// A single-channel `h` x `w` map resized to `oh` x `ow` as PyTorch's
/// `interpolate(mode="bicubic", align_corners=False)` (what `post_process_depth_estimation` does
/// to bring a depth map to the image's size): separable, taps clamped at the edges.
pub fn resize_bicubic(x: &[f32], (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<f32> {
    let taps = |n: usize, m: usize| -> Vec<([usize; 4], [f32; 4])> {
        let scale = n as f32 / m as f32;
        (0..m)
            .map(|d| {
                let s = scale * (d as f32 + 0.5) - 0.5;
                let i = s.floor();
                let idx = [-1isize, 0, 1, 2].map(|k| (i as isize + k).clamp(0, n as isize - 1) as usize);
                (idx, cubic_weights(s - i))
            })
            .collect()
    };
    let (ty, tx) = (taps(h, oh), taps(w, ow));
    // Along rows first (each of the h input rows to ow columns), then along columns.
    let mut rows = vec![0f32; h * ow];
    for y in 0..h {
        for (ox, (idx, wt)) in tx.iter().enumerate() {
            rows[y * ow + ox] = (0..4).map(|k| x[y * w + idx[k]] * wt[k]).sum();
        }
    }
    let mut out = vec![0f32; oh * ow];
    for (oy, (idx, wt)) in ty.iter().enumerate() {
        for ox in 0..ow {
            out[oy * ow + ox] = (0..4).map(|k| rows[idx[k] * ow + ox] * wt[k]).sum();
        }
    }
    out
}

