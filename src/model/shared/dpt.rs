//! The DPT neck and depth head as Depth Anything defines them (`transformers`'
//! `modeling_depth_anything.py`: `DepthAnythingNeck`, `DepthAnythingDepthEstimationHead`), built on
//! the engine's map ops over the backbone's hidden states, and the reading of their weights.
//!
//! The neck reassembles four hidden states into maps (class token dropped, tokens to a
//! `(B, h, w, D)` map, a 1x1 projection, then a transposed convolution for factors above 1 or a
//! strided 3x3 convolution below), a 3x3 convolution to the fusion width each, then fuses them
//! from the coarsest up (pre-activation residual units, a bilinear resize with aligned corners to
//! the next map's size or 2x, a 1x1 projection). The head: a 3x3 convolution to half the width, a
//! bilinear resize to the input's size, a 3x3 convolution with ReLU, a 1x1 convolution to one
//! channel with ReLU (relative depth) or a sigmoid (metric), times `max_depth`.

use crate::error::{Error, Result};
use crate::graph::ir::Graph;
use crate::model::shared::reader::Sink;
pub use crate::model::shared::spec::DepthHead;
use crate::ops::spatial::{conv_transpose_weight, conv_weight, ConvAct};
use crate::ops::{Op, Readout};
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

impl DepthHead {
    /// The neck and head of a `DepthAnythingConfig` (`config.json`; `file` names it), with
    /// transformers' defaults for absent fields; `out_indices` from its `backbone_config`.
    pub fn from_config(config: &serde_json::Value, file: &str) -> Result<DepthHead> {
        use serde_json::Value;
        let bad = |field: &str, want: &str| Error::model(file, format!("`{field}` must be {want}"));
        let uints = |v: &Value, field: &str| -> Result<Vec<usize>> {
            v.as_array()
                .ok_or_else(|| bad(field, "a list of whole numbers"))?
                .iter()
                .map(|x| x.as_u64().filter(|&n| n <= 1 << 20).map(|n| n as usize).ok_or_else(|| bad(field, "a list of whole numbers")))
                .collect()
        };
        let get = |field: &str| config.get(field).filter(|v| !v.is_null());
        let backbone = get("backbone_config").ok_or_else(|| Error::model(file, "no `backbone_config` (a DINOv2 backbone is needed)"))?;
        let out_indices = match backbone.get("out_indices").filter(|v| !v.is_null()) {
            Some(v) => uints(v, "backbone_config.out_indices")?,
            None => vec![9, 10, 11, 12],
        };
        let reassemble_factors = match get("reassemble_factors") {
            Some(v) => v
                .as_array()
                .ok_or_else(|| bad("reassemble_factors", "a list of numbers"))?
                .iter()
                .map(|x| x.as_f64().ok_or_else(|| bad("reassemble_factors", "a list of numbers")))
                .collect::<Result<_>>()?,
            None => vec![4.0, 2.0, 1.0, 0.5],
        };
        let neck_hidden_sizes = match get("neck_hidden_sizes") {
            Some(v) => uints(v, "neck_hidden_sizes")?,
            None => vec![48, 96, 192, 384],
        };
        let uint = |field: &str, default: usize| -> Result<usize> {
            match get(field) {
                Some(v) => v.as_u64().filter(|&n| n <= 1 << 20).map(|n| n as usize).ok_or_else(|| bad(field, "a whole number")),
                None => Ok(default),
            }
        };
        let head_in_index = match get("head_in_index") {
            Some(v) => v.as_i64().filter(|n| n.abs() <= 64).ok_or_else(|| bad("head_in_index", "a small integer"))? as isize,
            None => -1,
        };
        let metric = match get("depth_estimation_type").map(|v| v.as_str()) {
            None | Some(Some("relative")) => false,
            Some(Some("metric")) => true,
            Some(_) => return Err(bad("depth_estimation_type", "\"relative\" or \"metric\"")),
        };
        let max_depth = match get("max_depth") {
            Some(v) => v.as_f64().ok_or_else(|| bad("max_depth", "a number"))? as f32,
            None => 1.0,
        };
        Ok(DepthHead {
            out_indices,
            reassemble_factors,
            neck_hidden_sizes,
            fusion_hidden_size: uint("fusion_hidden_size", 64)?,
            head_hidden_size: uint("head_hidden_size", 32)?,
            head_in_index,
            metric,
            max_depth,
        })
    }

    /// Checks the spec against a backbone of `layers` layers; `file` names the config.
    pub fn check(&self, layers: usize, file: &str) -> Result<()> {
        let n = self.out_indices.len();
        if n == 0 || self.reassemble_factors.len() != n || self.neck_hidden_sizes.len() != n {
            return Err(Error::model(
                file,
                format!(
                    "the neck needs as many reassemble_factors and neck_hidden_sizes as out_indices (got {}, {} and {})",
                    self.reassemble_factors.len(),
                    self.neck_hidden_sizes.len(),
                    n
                ),
            ));
        }
        if let Some(i) = self.out_indices.iter().find(|&&i| i > layers) {
            return Err(Error::model(file, format!("out_indices names hidden state {i}, but the backbone has {layers} layers")));
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

/// Reads the neck and head weights (`get(name, shape)`: the checkpoint's tensor) into `sink`, the
/// convolutions in the map ops' layouts. `d`: the backbone's width.
pub fn load(spec: &DepthHead, d: usize, get: &mut Getter, sink: &mut dyn Sink) -> Result<()> {
    let f = spec.fusion_hidden_size;
    /// A convolution's weight (and bias) in the map op's layout.
    fn conv(get: &mut Getter, name: &str, co: usize, ci: usize, k: usize, bias: bool, sink: &mut dyn Sink) -> Result<()> {
        let w = get(&format!("{name}.weight"), &[co, ci, k, k])?;
        sink.packed(&engine_name(&format!("{name}.weight")), &[k * k * ci, co], &conv_weight(&w, co, ci, k))?;
        if bias {
            sink.f32(&engine_name(&format!("{name}.bias")), &[co], &get(&format!("{name}.bias"), &[co])?)?;
        }
        Ok(())
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
            for c in ["convolution1", "convolution2"] {
                conv(get, &format!("{layer}.{unit}.{c}"), f, f, 3, true, sink)?;
            }
        }
    }
    conv(get, "head.conv1", f / 2, f, 3, true, sink)?;
    conv(get, "head.conv2", spec.head_hidden_size, f / 2, 3, true, sink)?;
    conv(get, "head.conv3", 1, spec.head_hidden_size, 1, true, sink)?;
    Ok(())
}

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
fn residual_unit(g: &mut Graph, name: &str, x: TensorId, f: usize, extra: Option<TensorId>) -> Result<TensorId> {
    let h = conv(g, &format!("{name}.convolution1"), x, (f, f), (3, 1, 1), true, true, ConvAct::Relu, 1.0, None)?;
    let res = match extra {
        Some(e) => g.add(&format!("{name}.sum"), x, e)?,
        None => x,
    };
    conv(g, &format!("{name}.convolution2"), h, (f, f), (3, 1, 1), true, false, ConvAct::None, 1.0, Some(res))
}

fn map_size(g: &Graph, x: TensorId) -> (usize, usize) {
    let s = &g.info(x).shape;
    (s[1], s[2])
}

/// The neck and head over `features` (the backbone's hidden states at `out_indices`, after its
/// final norm, `(B, 1 + gh * gw, D)` each with the class token first) for a `gh` x `gw` grid of
/// `patch`-pixel patches: `predicted_depth (B, gh * patch, gw * patch, 1)`.
pub fn build(g: &mut Graph, spec: &DepthHead, features: &[TensorId], (gh, gw): (usize, usize), patch: usize) -> Result<TensorId> {
    let f = spec.fusion_hidden_size;
    let mut maps = Vec::new();
    for (i, (&x, (&c, &factor))) in features.iter().zip(spec.neck_hidden_sizes.iter().zip(&spec.reassemble_factors)).enumerate() {
        let d = g.info(x).shape[2];
        let layer = format!("neck.reassemble_stage.layers.{i}");
        let m = g.op(&format!("{layer}.map"), Op::TokensToMap { prefix: 1, height: gh, width: gw, readout: Readout::Ignore }, &[x])?;
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
    // Fusion, from the coarsest map up.
    let n = maps.len();
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
                residual_unit(g, &format!("{layer}.residual_layer1"), res, f, Some(prev))?
            }
        };
        h = residual_unit(g, &format!("{layer}.residual_layer2"), h, f, None)?;
        let (th, tw) = if idx + 1 < n {
            map_size(g, maps[n - 2 - idx])
        } else {
            let (a, b) = map_size(g, h);
            (2 * a, 2 * b)
        };
        h = g.op(&format!("{layer}.resize"), Op::Resize { height: th, width: tw, align_corners: true }, &[h])?;
        h = conv(g, &format!("{layer}.projection"), h, (f, f), (1, 1, 0), true, false, ConvAct::None, 1.0, None)?;
        fused = Some(h);
        outs.push(h);
    }
    let x = outs[spec.head_index()];
    let x = conv(g, "head.conv1", x, (f, f / 2), (3, 1, 1), true, false, ConvAct::None, 1.0, None)?;
    let x = g.op("head.resize", Op::Resize { height: gh * patch, width: gw * patch, align_corners: true }, &[x])?;
    let x = conv(g, "head.conv2", x, (f / 2, spec.head_hidden_size), (3, 1, 1), true, false, ConvAct::Relu, 1.0, None)?;
    let act = if spec.metric { ConvAct::Sigmoid } else { ConvAct::Relu };
    conv(g, "head.conv3", x, (spec.head_hidden_size, 1), (1, 1, 0), true, false, act, spec.max_depth, None)
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

