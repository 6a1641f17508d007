//! Token ops on `(B, T, D)` sequences: a slice of tokens (or the patch tokens as a map, with
//! DPT's readout of the class token), the mean of a range of tokens, and concatenation along the
//! last dim.

use super::shader::specialize;
use super::{grid, invalid, last, rows_of, shape_err, uniforms, Binding, Kernel, KernelDecl, OpDef, Readout, ELEMENT_WG};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::TensorInfo;

uniforms!(Params { batch: u32, tokens: u32, dim: u32, start: u32, count: u32, _pad0: u32, _pad1: u32, _pad2: u32 });
uniforms!(ConcatParams { rows: u32, d1: u32, d2: u32, _pad: u32 });

/// Tokens `start..start + count`, kept (`(B, count, D)`) or averaged (`(B, D)`); `masked` (a
/// mean only): a second input, `lengths (B)`, caps each item's count (padded sequences: the mean
/// of its first `lengths[b]` tokens from `start`).
pub(crate) struct Tokens {
    pub start: usize,
    pub count: usize,
    pub mean: bool,
    pub masked: bool,
    /// The kept tokens as a `(B, h, w, D)` map (the same values), with the first token read out
    /// into each (`(B, h, w, 2D)` when concatenated).
    pub map: Option<(usize, usize, Readout)>,
}

fn decl(mean: bool, masked: bool, readout: Readout) -> KernelDecl {
    let mut flags = vec![if mean { "MEAN" } else { "SLICE" }];
    match readout {
        Readout::Ignore => {}
        Readout::Add => flags.push("READOUT_ADD"),
        Readout::Concat => flags.push("READOUT_CONCAT"),
    }
    let mut bindings = vec![Binding::output("out"), Binding::activation(0, "x")];
    if masked {
        flags.push("MASKED");
        bindings.push(Binding::activation(1, "lengths"));
    }
    KernelDecl::new::<Params>(specialize(&["tokens"], &[("WG", ELEMENT_WG)], &flags), bindings)
}

impl OpDef for Tokens {
    fn kind(&self) -> &'static str {
        if self.map.is_some() {
            "tokens_to_map"
        } else if self.mean {
            "mean_tokens"
        } else {
            "slice_tokens"
        }
    }

    fn arity(&self) -> usize {
        1 + self.masked as usize
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let x = inputs[0];
        if x.shape.len() != 3 {
            return Err(shape_err(node, x, "[B, T, D]"));
        }
        if self.masked && (!self.mean || inputs[1].shape != [x.shape[0]]) {
            return Err(shape_err(node, inputs[1], format!("[{}] (the tokens of each batch item, for a mean)", x.shape[0])));
        }
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2]);
        let (start, count) = (self.start, self.count);
        if let Some((h, w, _)) = self.map {
            if start.checked_add(count) != Some(t) || h.checked_mul(w) != Some(count) {
                return Err(invalid(node, format!("{start} prefix tokens and a {h}x{w} grid do not make the {t} tokens of the sequence")));
            }
        }
        if count == 0 || start.checked_add(count).is_none_or(|end| end > t) {
            return Err(invalid(node, format!("tokens {start}..{} are not within the {t} tokens", start.saturating_add(count))));
        }
        if let Some((h, w, readout)) = self.map {
            if readout != Readout::Ignore && start == 0 {
                return Err(invalid(node, "a readout of the first token needs it among the prefix tokens"));
            }
            return Ok(vec![b, h, w, if readout == Readout::Concat { 2 * d } else { d }]);
        }
        Ok(if self.mean { vec![b, d] } else { vec![b, count, d] })
    }

    fn kernels(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Vec<Kernel> {
        let s = &inputs[0].shape;
        let n = output.numel() as u64;
        let params = Params {
            batch: s[0] as u32,
            tokens: s[1] as u32,
            dim: s[2] as u32,
            start: self.start as u32,
            count: self.count as u32,
            ..Default::default()
        };
        let flops = if self.mean { (n * self.count as u64) as f64 } else { 0.0 };
        let readout = self.map.map_or(Readout::Ignore, |m| m.2);
        vec![Kernel::new(self.kind(), decl(self.mean, self.masked, readout), params, grid(n.div_ceil(ELEMENT_WG as u64)), flops)]
    }

    fn cpu_kernel(&self, _cpu: &Cpu, _node: &str, inputs: &[&TensorInfo], _output: &TensorInfo, _weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        let s = &inputs[0].shape;
        let readout = self.map.map_or(Readout::Ignore, |m| m.2);
        Ok(Box::new(TokensCpu { b: s[0], t: s[1], d: s[2], start: self.start, count: self.count, mean: self.mean, masked: self.masked, readout }))
    }
}

/// Concatenation along the last dim.
pub(crate) struct Concat;

fn concat_decl() -> KernelDecl {
    let bindings = vec![Binding::output("out"), Binding::activation(0, "a"), Binding::activation(1, "b")];
    KernelDecl::new::<ConcatParams>(specialize(&["concat"], &[("WG", ELEMENT_WG)], &[]), bindings)
}

impl OpDef for Concat {
    fn kind(&self) -> &'static str {
        "concat"
    }

    fn arity(&self) -> usize {
        2
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let (a, b) = (inputs[0], inputs[1]);
        let lead = &a.shape[..a.shape.len() - 1];
        if b.shape.len() != a.shape.len() || &b.shape[..b.shape.len() - 1] != lead {
            let mut want: Vec<String> = lead.iter().map(|d| d.to_string()).collect();
            want.push("D2".into());
            return Err(shape_err(node, b, format!("[{}]", want.join(", "))));
        }
        let mut out = a.shape.clone();
        *out.last_mut().unwrap_or(&mut 0) += last(&b.shape);
        Ok(out)
    }

    fn kernels(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Vec<Kernel> {
        let n = output.numel() as u64;
        let params = ConcatParams {
            rows: rows_of(&inputs[0].shape) as u32,
            d1: last(&inputs[0].shape) as u32,
            d2: last(&inputs[1].shape) as u32,
            _pad: 0,
        };
        vec![Kernel::new(self.kind(), concat_decl(), params, grid(n.div_ceil(ELEMENT_WG as u64)), 0.0)]
    }

    fn cpu_kernel(&self, _cpu: &Cpu, _node: &str, inputs: &[&TensorInfo], _output: &TensorInfo, _weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        Ok(Box::new(ConcatCpu { rows: rows_of(&inputs[0].shape), d1: last(&inputs[0].shape), d2: last(&inputs[1].shape) }))
    }
}

pub(crate) fn decls() -> Vec<KernelDecl> {
    let mut all = vec![decl(false, false, Readout::Ignore), decl(true, false, Readout::Ignore), decl(true, true, Readout::Ignore), concat_decl()];
    all.extend([Readout::Add, Readout::Concat].map(|r| decl(false, false, r)));
    all
}

struct TokensCpu {
    b: usize,
    t: usize,
    d: usize,
    start: usize,
    count: usize,
    mean: bool,
    masked: bool,
    readout: Readout,
}

impl CpuKernel for TokensCpu {
    fn name(&self) -> &'static str {
        if self.mean {
            "mean_tokens"
        } else {
            "slice_tokens"
        }
    }

    fn run(&self, _cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], _scratch: &mut [f32]) {
        if self.readout != Readout::Ignore {
            let (t, d, count) = (self.t, self.d, self.count);
            let concat = self.readout == Readout::Concat;
            let od = if concat { 2 * d } else { d };
            for bi in 0..self.b {
                let x = &ins[0][bi * t * d..(bi + 1) * t * d];
                let (cls, patches) = (&x[..d], &x[self.start * d..(self.start + count) * d]);
                for (o, p) in out[bi * count * od..(bi + 1) * count * od].chunks_exact_mut(od).zip(patches.chunks_exact(d)) {
                    if concat {
                        o[..d].copy_from_slice(p);
                        o[d..].copy_from_slice(cls);
                    } else {
                        o.iter_mut().zip(p.iter().zip(cls)).for_each(|(o, (p, c))| *o = p + c);
                    }
                }
            }
        } else if self.masked {
            // Each item's mean over its own count, at least one token and at most `count`.
            for (bi, &n) in ins[1].iter().enumerate().take(self.b) {
                let count = (n.round().max(1.0) as usize).min(self.count);
                let x = &ins[0][bi * self.t * self.d..(bi + 1) * self.t * self.d];
                crate::cpu::kernels::tokens(x, 1, self.t, self.d, self.start, count, true, &mut out[bi * self.d..(bi + 1) * self.d]);
            }
        } else {
            crate::cpu::kernels::tokens(ins[0], self.b, self.t, self.d, self.start, self.count, self.mean, out);
        }
    }
}

struct ConcatCpu {
    rows: usize,
    d1: usize,
    d2: usize,
}

impl CpuKernel for ConcatCpu {
    fn name(&self) -> &'static str {
        "concat"
    }

    fn run(&self, _cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], _scratch: &mut [f32]) {
        crate::cpu::kernels::concat(ins[0], ins[1], self.rows, self.d1, self.d2, out);
    }
}
