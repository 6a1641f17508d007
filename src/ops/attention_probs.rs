//! Attention probabilities of a few query tokens (CLS attention maps), for inspection.

use super::shader::specialize;
use super::{attention, invalid, uniforms, Binding, Kernel, KernelDecl, OpDef, ROW_WORKGROUPS};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::TensorInfo;

uniforms!(Params {
    tokens: u32, heads: u32, scale: f32, first_key: u32, queries: u32, head_dim: u32,
    batch_stride: u32, head_stride: u32, row_stride: u32, k_off: u32, _pad0: u32, _pad1: u32,
});

pub(crate) struct AttentionProbs {
    pub heads: usize,
    pub scale: f32,
    pub queries: usize,
    pub first_key: usize,
    /// A second input, `sizes (B, T)`: proportional attention (`log(size)` on each key's logit).
    pub sized: bool,
}

fn decl(wg: u32, sized: bool) -> KernelDecl {
    let mut bindings = vec![Binding::output("out"), Binding::activation(0, "qkv")];
    if sized {
        bindings.push(Binding::activation(1, "sizes"));
    }
    let flags: &[&str] = if sized { &["SIZED"] } else { &[] };
    KernelDecl::new::<Params>(specialize(&["attention_probs", "reduce"], &[("WG", wg)], flags), bindings)
}

impl OpDef for AttentionProbs {
    fn kind(&self) -> &'static str {
        "attention_probs"
    }

    fn arity(&self) -> usize {
        1 + self.sized as usize
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let s = attention::Attention { heads: self.heads, scale: self.scale, causal: false, masked: false, sized: self.sized }.output_shape(node, inputs)?;
        let t = s[1];
        let (queries, first_key) = (self.queries, self.first_key);
        if queries == 0 || queries > t || first_key >= t {
            return Err(invalid(node, format!("queries 0..{queries} and keys {first_key}.. must lie within the {t} tokens")));
        }
        Ok(vec![s[0], self.heads, queries, t - first_key])
    }

    fn kernels(&self, inputs: &[&TensorInfo], _output: &TensorInfo) -> Vec<Kernel> {
        let l = attention::QkvLayout::of(&inputs[0].shape, self.heads);
        let (b, t, dh) = (l.b, l.t, l.dh);
        let [batch_stride, head_stride, row_stride, k_off, _] = l.words(1);
        let params = Params {
            tokens: t as u32,
            heads: self.heads as u32,
            scale: self.scale,
            first_key: self.first_key as u32,
            queries: self.queries as u32,
            head_dim: dh as u32,
            batch_stride,
            head_stride,
            row_stride,
            k_off,
            ..Default::default()
        };
        let flops = 6.0 * (b * self.heads as u64 * self.queries as u64 * t * dh) as f64;
        let groups = [self.queries as u32, self.heads as u32, b as u32];
        vec![Kernel::new(self.kind(), decl(super::row_workgroup(t as usize), self.sized), params, groups, flops)]
    }

    fn cpu_kernel(&self, _cpu: &Cpu, _node: &str, inputs: &[&TensorInfo], _output: &TensorInfo, _weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        let l = attention::QkvLayout::of(&inputs[0].shape, self.heads).cpu();
        Ok(Box::new(AttentionProbsCpu { l, scale: self.scale, queries: self.queries, first_key: self.first_key, sized: self.sized }))
    }
}

pub(crate) fn decls() -> Vec<KernelDecl> {
    ROW_WORKGROUPS.iter().flat_map(|&wg| [decl(wg, false), decl(wg, true)]).collect()
}

struct AttentionProbsCpu {
    l: crate::cpu::attention::Qkv,
    scale: f32,
    queries: usize,
    first_key: usize,
    sized: bool,
}

impl CpuKernel for AttentionProbsCpu {
    fn name(&self) -> &'static str {
        "attention_probs"
    }

    fn run(&self, _cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], _scratch: &mut [f32]) {
        let sizes = if self.sized { ins[1] } else { &[] };
        crate::cpu::kernels::attention_probs(ins[0], &self.l, sizes, self.scale, self.queries, self.first_key, out);
    }
}
