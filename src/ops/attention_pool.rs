//! Attention pooling with a learned query (SigLIP's multihead attention pooling head, `timm`'s
//! `AttentionPoolLatent`): one query per head, shared by the batch, attends over every token of
//! a sequence whose keys and values come from one fused projection.

use super::shader::specialize;
use super::{invalid, shape_err, uniforms, Binding, Kernel, KernelDecl, OpDef, ROW_WORKGROUPS};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::{TensorInfo, TensorKind};

uniforms!(Params { tokens: u32, heads: u32, head_dim: u32, scale: f32 });

/// `query (1, D)` (a weight: the learned query already projected), `kv (B, T, 2*D)` (keys in
/// columns `0..D`, values in `D..2D`, head `h` at `h*D/heads` in each) to `(B, D)`; with `probs`
/// the attention probabilities instead, `(B, heads, T)` (what the query looks at). `masked`: a
/// third input, `lengths (B)`, gives the tokens each item pools (padded sequences; the rest are
/// skipped, and their probabilities are 0).
pub(crate) struct AttentionPool {
    pub heads: usize,
    pub scale: f32,
    pub probs: bool,
    pub masked: bool,
}

fn decl(wg: u32, probs: bool, masked: bool) -> KernelDecl {
    let mut bindings = vec![Binding::output("out"), Binding::weight(0, "query"), Binding::activation(1, "kv")];
    let shader = if probs { "attention_pool_probs" } else { "attention_pool" };
    let flags: &[&str] = if masked { &["MASKED"] } else { &[] };
    if masked {
        bindings.push(Binding::activation(2, "lengths"));
    }
    KernelDecl::new::<Params>(specialize(&[shader, "attention_pool_softmax", "reduce"], &[("WG", wg)], flags), bindings)
}

impl OpDef for AttentionPool {
    fn kind(&self) -> &'static str {
        if self.probs {
            "attention_pool_probs"
        } else {
            "attention_pool"
        }
    }

    fn arity(&self) -> usize {
        2 + self.masked as usize
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let (q, kv) = (inputs[0], inputs[1]);
        if kv.shape.len() != 3 || kv.shape[2] % 2 != 0 {
            return Err(shape_err(node, kv, "[B, T, 2*D]"));
        }
        let d = kv.shape[2] / 2;
        if q.shape != [1, d] {
            return Err(shape_err(node, q, format!("[1, {d}]")));
        }
        if q.kind != TensorKind::Weight {
            return Err(invalid(node, "the query must be a weight"));
        }
        if self.heads == 0 || d % self.heads != 0 || d / self.heads > super::attention::MAX_HEAD_DIM {
            return Err(invalid(node, format!("{} heads do not divide the width {d} into heads of at most {}", self.heads, super::attention::MAX_HEAD_DIM)));
        }
        if self.masked && inputs[2].shape != [kv.shape[0]] {
            return Err(shape_err(node, inputs[2], format!("[{}] (the tokens of each batch item)", kv.shape[0])));
        }
        Ok(if self.probs { vec![kv.shape[0], self.heads, kv.shape[1]] } else { vec![kv.shape[0], d] })
    }

    fn kernels(&self, inputs: &[&TensorInfo], _output: &TensorInfo) -> Vec<Kernel> {
        let s = &inputs[1].shape;
        let (b, t, d) = (s[0], s[1], s[2] / 2);
        let dh = d / self.heads;
        let params = Params { tokens: t as u32, heads: self.heads as u32, head_dim: dh as u32, scale: self.scale };
        let flops = 4.0 * (b * t * d) as f64;
        let groups = [self.heads as u32, b as u32, 1];
        vec![Kernel::new(self.kind(), decl(super::row_workgroup(t), self.probs, self.masked), params, groups, flops)]
    }

    fn cpu_kernel(&self, _cpu: &Cpu, _node: &str, inputs: &[&TensorInfo], _output: &TensorInfo, _weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        let s = &inputs[1].shape;
        Ok(Box::new(AttentionPoolCpu { b: s[0], t: s[1], heads: self.heads, dh: s[2] / 2 / self.heads, scale: self.scale, probs: self.probs, masked: self.masked }))
    }
}

pub(crate) fn decls() -> Vec<KernelDecl> {
    ROW_WORKGROUPS.iter().flat_map(|&wg| [decl(wg, false, false), decl(wg, true, false), decl(wg, false, true), decl(wg, true, true)]).collect()
}

struct AttentionPoolCpu {
    b: usize,
    t: usize,
    heads: usize,
    dh: usize,
    scale: f32,
    probs: bool,
    masked: bool,
}

impl CpuKernel for AttentionPoolCpu {
    fn name(&self) -> &'static str {
        if self.probs {
            "attention_pool_probs"
        } else {
            "attention_pool"
        }
    }

    fn run(&self, _cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], _scratch: &mut [f32]) {
        let lengths = if self.masked { ins[2] } else { &[] };
        if self.probs {
            crate::cpu::kernels::attention_pool_probs(ins[0], ins[1], lengths, self.b, self.t, self.heads, self.dh, self.scale, out);
        } else {
            crate::cpu::kernels::attention_pool(ins[0], ins[1], lengths, self.b, self.t, self.heads, self.dh, self.scale, out);
        }
    }
}
