//! Ops on channels-last feature maps `(B, H, W, C)`, for dense prediction heads (DPT): 2-D
//! convolution (any odd or even kernel, stride and zero padding, bias, ReLU on the input as it is
//! read, ReLU or sigmoid after the bias, a scale, a residual), the transposed convolution with
//! kernel = stride (DPT's reassemble upsampling) and the bilinear resize with and without
//! `align_corners`.
//!
//! Channels last because a ViT's tokens already are: the patch tokens `(B, h*w, C)` are the map
//! `(B, h, w, C)` without a transpose, and a convolution over them is a GEMM over patch rows with
//! the channels contiguous (the CPU backend gathers bands of patch rows and runs its packed GEMM;
//! a 1x1 convolution is the GEMM on the map itself).

use super::shader::specialize;
use super::{grid, invalid, shape_err, uniforms, Binding, Kernel, KernelDecl, OpDef, ELEMENT_WG};
use crate::cpu::gemm::Act;
use crate::cpu::spatial::{ConvEpilogue, ConvShape};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::TensorInfo;

uniforms!(Params {
    batch: u32, in_h: u32, in_w: u32, in_c: u32, out_h: u32, out_w: u32, out_c: u32, kernel: u32,
    stride: u32, pad: u32, scale: f32, ratio_h: f32, ratio_w: f32, _pad0: u32, _pad1: u32, _pad2: u32,
});

/// The activation after a convolution's bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConvAct {
    /// Identity.
    #[default]
    None,
    /// max(x, 0).
    Relu,
    /// 1 / (1 + exp(-x)).
    Sigmoid,
}

impl ConvAct {
    fn cpu(self) -> Act {
        match self {
            ConvAct::None => Act::None,
            ConvAct::Relu => Act::Relu,
            ConvAct::Sigmoid => Act::Sigmoid,
        }
    }
}

/// A PyTorch `Conv2d` weight `(Co, Ci, k, k)` as [`crate::Op::Conv2d`] takes it: `(k*k*Ci, Co)`,
/// rows in (ky, kx, ci) order.
pub fn conv_weight(w: &[f32], co: usize, ci: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; k * k * ci * co];
    for o in 0..co {
        for i in 0..ci {
            for ky in 0..k {
                for kx in 0..k {
                    out[((ky * k + kx) * ci + i) * co + o] = w[((o * ci + i) * k + ky) * k + kx];
                }
            }
        }
    }
    out
}

/// A PyTorch `ConvTranspose2d` weight `(Ci, Co, k, k)` as [`crate::Op::ConvTranspose2d`] takes
/// it: `(Ci, k*k*Co)`, columns in (ky, kx, co) order.
pub fn conv_transpose_weight(w: &[f32], ci: usize, co: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; ci * k * k * co];
    for i in 0..ci {
        for o in 0..co {
            for ky in 0..k {
                for kx in 0..k {
                    out[i * k * k * co + (ky * k + kx) * co + o] = w[((i * co + o) * k + ky) * k + kx];
                }
            }
        }
    }
    out
}

/// PyTorch's source-coordinate ratio of a bilinear resize from `n` to `m` samples.
fn ratio(n: usize, m: usize, align: bool) -> f32 {
    if align {
        if m > 1 {
            (n as f32 - 1.0) / (m as f32 - 1.0)
        } else {
            0.0
        }
    } else {
        n as f32 / m as f32
    }
}

/// The ops of this module.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Spatial {
    Conv { kernel: usize, stride: usize, pad: usize, bias: bool, pre_relu: bool, act: ConvAct, scale: f32, residual: bool },
    Deconv { kernel: usize, bias: bool },
    Resize { height: usize, width: usize, align: bool },
}

fn flags_of(op: &Spatial) -> Vec<&'static str> {
    match *op {
        Spatial::Conv { bias, pre_relu, act, residual, .. } => {
            let mut f = vec!["CONV"];
            if bias {
                f.push("BIAS");
            }
            if pre_relu {
                f.push("PRE_RELU");
            }
            match act {
                ConvAct::None => {}
                ConvAct::Relu => f.push("RELU"),
                ConvAct::Sigmoid => f.push("SIGMOID"),
            }
            if residual {
                f.push("RESIDUAL");
            }
            f
        }
        Spatial::Deconv { bias, .. } => {
            if bias {
                vec!["DECONV", "BIAS"]
            } else {
                vec!["DECONV"]
            }
        }
        Spatial::Resize { align, .. } => {
            if align {
                vec!["RESIZE", "ALIGN"]
            } else {
                vec!["RESIZE"]
            }
        }
    }
}

fn decl(op: &Spatial) -> KernelDecl {
    let flags = flags_of(op);
    let mut bindings = vec![Binding::output("out"), Binding::activation(0, "x")];
    match *op {
        Spatial::Conv { bias, residual, .. } => {
            bindings.push(Binding::weight(1, "w"));
            if bias {
                bindings.push(Binding::weight(2, "bias"));
            }
            if residual {
                bindings.push(Binding::activation(2 + bias as usize, "residual"));
            }
        }
        Spatial::Deconv { bias, .. } => {
            bindings.push(Binding::weight(1, "w"));
            if bias {
                bindings.push(Binding::weight(2, "bias"));
            }
        }
        Spatial::Resize { .. } => {}
    }
    KernelDecl::new::<Params>(specialize(&["spatial"], &[("WG", ELEMENT_WG)], &flags), bindings)
}

/// `(B, H, W, C)` of a 4-D map.
fn map_of(node: &str, t: &TensorInfo) -> Result<[usize; 4]> {
    match t.shape[..] {
        [b, h, w, c] => Ok([b, h, w, c]),
        _ => Err(shape_err(node, t, "[B, H, W, C] (a channels-last feature map)")),
    }
}

impl OpDef for Spatial {
    fn kind(&self) -> &'static str {
        match self {
            Spatial::Conv { .. } => "conv2d",
            Spatial::Deconv { .. } => "conv_transpose2d",
            Spatial::Resize { .. } => "resize",
        }
    }

    fn arity(&self) -> usize {
        match *self {
            Spatial::Conv { bias, residual, .. } => 2 + bias as usize + residual as usize,
            Spatial::Deconv { bias, .. } => 2 + bias as usize,
            Spatial::Resize { .. } => 1,
        }
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let [b, h, w, c] = map_of(node, inputs[0])?;
        match *self {
            Spatial::Conv { kernel: k, stride, pad, bias, residual, scale, .. } => {
                if k == 0 || stride == 0 {
                    return Err(invalid(node, format!("a {k}x{k} kernel at stride {stride}: both must be at least 1")));
                }
                if !scale.is_finite() {
                    return Err(invalid(node, format!("scale {scale} is not finite")));
                }
                let (hp, wp) = (h + 2 * pad, w + 2 * pad);
                if hp < k || wp < k {
                    return Err(invalid(node, format!("a {k}x{k} kernel does not fit a {h}x{w} map padded by {pad}")));
                }
                let wt = inputs[1];
                if wt.shape.len() != 2 || wt.shape[0] != k * k * c {
                    return Err(shape_err(node, wt, format!("[{}, Co] (kernel {k} x {k} x {c} input channels)", k * k * c)));
                }
                let co = wt.shape[1];
                if bias && inputs[2].shape != [co] {
                    return Err(shape_err(node, inputs[2], format!("[{co}]")));
                }
                let out = vec![b, (hp - k) / stride + 1, (wp - k) / stride + 1, co];
                if residual && inputs[2 + bias as usize].shape != out {
                    return Err(shape_err(node, inputs[2 + bias as usize], format!("{out:?} (the output's shape)")));
                }
                Ok(out)
            }
            Spatial::Deconv { kernel: k, bias } => {
                if k == 0 {
                    return Err(invalid(node, "a transposed convolution needs a kernel of at least 1"));
                }
                let wt = inputs[1];
                if wt.shape.len() != 2 || wt.shape[0] != c || !wt.shape[1].is_multiple_of(k * k) {
                    return Err(shape_err(node, wt, format!("[{c}, {k} * {k} * Co]")));
                }
                let co = wt.shape[1] / (k * k);
                if bias && inputs[2].shape != [co] {
                    return Err(shape_err(node, inputs[2], format!("[{co}]")));
                }
                Ok(vec![b, h * k, w * k, co])
            }
            Spatial::Resize { height, width, .. } => {
                if height == 0 || width == 0 {
                    return Err(invalid(node, format!("cannot resize to {height}x{width}")));
                }
                Ok(vec![b, height, width, c])
            }
        }
    }

    fn kernels(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Vec<Kernel> {
        let s = &inputs[0].shape;
        let o = &output.shape;
        let mut p = Params {
            batch: s[0] as u32,
            in_h: s[1] as u32,
            in_w: s[2] as u32,
            in_c: s[3] as u32,
            out_h: o[1] as u32,
            out_w: o[2] as u32,
            out_c: o[3] as u32,
            scale: 1.0,
            ..Default::default()
        };
        let n = output.numel() as u64;
        let flops = match *self {
            Spatial::Conv { kernel, stride, pad, scale, .. } => {
                (p.kernel, p.stride, p.pad, p.scale) = (kernel as u32, stride as u32, pad as u32, scale);
                2.0 * (n * (kernel * kernel * s[3]) as u64) as f64
            }
            Spatial::Deconv { kernel, .. } => {
                p.kernel = kernel as u32;
                2.0 * (n * s[3] as u64) as f64
            }
            Spatial::Resize { align, .. } => {
                (p.ratio_h, p.ratio_w) = (ratio(s[1], o[1], align), ratio(s[2], o[2], align));
                8.0 * n as f64
            }
        };
        // A convolution's invocation computes 4 pixels of a row x 4 channels.
        let invocations = match self {
            Spatial::Conv { .. } => (o[0] * o[1] * o[2].div_ceil(4) * o[3].div_ceil(4)) as u64,
            _ => n,
        };
        vec![Kernel::new(self.kind(), decl(self), p, grid(invocations.div_ceil(ELEMENT_WG as u64)), flops)]
    }

    fn cpu_kernel(&self, cpu: &Cpu, node: &str, inputs: &[&TensorInfo], output: &TensorInfo, weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        let s = &inputs[0].shape;
        let o = &output.shape;
        let nr = crate::cpu::gemm::tile(cpu.isa()).1;
        Ok(match *self {
            Spatial::Conv { kernel, stride, pad, .. } => {
                let w = super::need_weight(node, weights, 1, "weight")?.packed(nr)?;
                let shape = ConvShape { b: s[0], h: s[1], w: s[2], ci: s[3], ho: o[1], wo: o[2], co: o[3], k: kernel, stride, pad };
                Box::new(ConvCpu { op: *self, shape, w })
            }
            Spatial::Deconv { kernel, bias } => {
                let w = super::need_weight(node, weights, 1, "weight")?.packed(nr)?;
                // The bias of each output channel, once per kernel position (the GEMM's columns).
                let bias = if bias { Some(super::need_weight(node, weights, 2, "bias")?.data.repeat(kernel * kernel)) } else { None };
                Box::new(DeconvCpu { map: (s[0], s[1], s[2], s[3]), k: kernel, w, bias })
            }
            Spatial::Resize { align, .. } => {
                let ratios = (ratio(s[1], o[1], align), ratio(s[2], o[2], align));
                Box::new(ResizeCpu { map: (s[0], s[1], s[2], s[3]), out: (o[1], o[2]), ratios, align })
            }
        })
    }
}

struct ConvCpu {
    op: Spatial,
    shape: ConvShape,
    w: std::sync::Arc<crate::cpu::gemm::PackedB>,
}

impl CpuKernel for ConvCpu {
    fn name(&self) -> &'static str {
        "conv_gemm"
    }

    fn scratch(&self) -> usize {
        self.shape.scratch(matches!(self.op, Spatial::Conv { pre_relu: true, .. }))
    }

    fn run(&self, cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], scratch: &mut [f32]) {
        let Spatial::Conv { bias, pre_relu, act, scale, residual, .. } = self.op else { unreachable!("a convolution") };
        let epi = ConvEpilogue {
            bias: bias.then(|| ins[2]),
            act: act.cpu(),
            scale,
            residual: residual.then(|| ins[2 + bias as usize]),
            pre_relu,
        };
        crate::cpu::spatial::conv2d(cpu, ins[0], &self.shape, &self.w, &epi, out, scratch);
    }
}

struct DeconvCpu {
    map: (usize, usize, usize, usize),
    k: usize,
    w: std::sync::Arc<crate::cpu::gemm::PackedB>,
    bias: Option<Vec<f32>>,
}

impl CpuKernel for DeconvCpu {
    fn name(&self) -> &'static str {
        "deconv_gemm"
    }

    fn scratch(&self) -> usize {
        let (_, h, w, _) = self.map;
        let co = self.w.n / (self.k * self.k);
        crate::cpu::spatial::deconv_band_rows(w, self.k, co, h) * w * self.w.n
    }

    fn run(&self, cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], scratch: &mut [f32]) {
        crate::cpu::spatial::deconv(cpu, ins[0], self.map, self.k, &self.w, self.bias.as_deref(), out, scratch);
    }
}

struct ResizeCpu {
    map: (usize, usize, usize, usize),
    out: (usize, usize),
    ratios: (f32, f32),
    align: bool,
}

impl CpuKernel for ResizeCpu {
    fn name(&self) -> &'static str {
        "resize"
    }

    fn run(&self, cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], _scratch: &mut [f32]) {
        crate::cpu::spatial::resize(cpu, ins[0], self.map, self.out, self.ratios, self.align, out);
    }
}

pub(crate) fn decls() -> Vec<KernelDecl> {
    let mut v = Vec::new();
    for bias in [false, true] {
        for pre_relu in [false, true] {
            for act in [ConvAct::None, ConvAct::Relu, ConvAct::Sigmoid] {
                for residual in [false, true] {
                    v.push(decl(&Spatial::Conv { kernel: 1, stride: 1, pad: 0, bias, pre_relu, act, scale: 1.0, residual }));
                }
            }
        }
        v.push(decl(&Spatial::Deconv { kernel: 2, bias }));
    }
    for align in [false, true] {
        v.push(decl(&Spatial::Resize { height: 1, width: 1, align }));
    }
    v
}
