//! Token merging (ToMe, Bolya et al. 2023): bipartite soft matching between attention and MLP,
//! as five ops, so that a merging layer never leaves the device.
//!
//! - [`Op::MergeMetric`]: the keys averaged over heads, at unit length (ToMe's `k.mean(1)`,
//!   normalized).
//! - [`Op::MergeMatch`]: the tokens taken alternately into sets A (even) and B (odd); each A
//!   token's best cosine over B and where (the first of equal scores). The first `protected`
//!   tokens (class, distillation, registers) score -3e38 in A and are no target in B.
//! - [`Op::MergeDest`]: the `r` A tokens of highest score (equal scores: lower index first) are
//!   merged into their B match; every token's output row. With protected tokens: those first in
//!   their order, then the unmerged A tokens in index order, then the B tokens in index order
//!   (ToMe's order for a class token, and for a class and a distillation token); without: the
//!   unmerged A tokens by descending score, then B (ToMe's order too).
//! - [`Op::MergeTokens`]: each output row the size-weighted mean of its tokens; [`Op::MergeSizes`]:
//!   the sizes summed (the first merge counts every token as 1).
//! - [`Op::MergeCompose`]: each original token's row after one more merge (ToMe's source
//!   tracking, as a map instead of a matrix).
//!
//! Indices travel as f32 values (exact to 2^24; f16 storage holds them exactly to 2048 tokens,
//! which the model builder checks).

use super::shader::specialize;
use super::{attention, grid, invalid, shape_err, uniforms, Binding, Kernel, KernelDecl, OpDef, ELEMENT_WG};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::TensorInfo;

uniforms!(Params {
    batch: u32, tokens: u32, out_tokens: u32, dim: u32, heads: u32, r: u32, protected_: u32, batch_stride: u32,
    head_stride: u32, row_stride: u32, k_off: u32, _pad: u32,
});

/// Most tokens a merge takes (the DEST kernel keeps each A token's rank in workgroup memory).
pub const MAX_TOKENS: usize = 4096;
const MAXA: u32 = (MAX_TOKENS as u32).div_ceil(2);
/// Workgroup of the one-workgroup-per-image DEST kernel.
const DEST_WG: u32 = 256;

pub use crate::cpu::merge::PROTECTED_SCORE;

/// One of the merge ops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Merge {
    Metric { heads: usize },
    Match { protected: usize },
    Dest { tokens: usize, r: usize, protected: usize },
    Tokens { tokens: usize, sized: bool },
    Sizes { tokens: usize, sized: bool },
    Compose,
}

fn flag(m: &Merge) -> &'static str {
    match m {
        Merge::Metric { .. } => "METRIC",
        Merge::Match { .. } => "MATCH",
        Merge::Dest { .. } => "DEST",
        Merge::Tokens { .. } => "TOKENS",
        Merge::Sizes { .. } => "SIZES",
        Merge::Compose => "COMPOSE",
    }
}

fn decl(m: &Merge) -> KernelDecl {
    let out = Binding::output("out");
    let a = |i, n| Binding::activation(i, n);
    let (bindings, sized) = match *m {
        Merge::Metric { .. } => (vec![out, a(0, "qkv")], false),
        Merge::Match { .. } => (vec![out, a(0, "metric")], false),
        Merge::Dest { .. } => (vec![out, a(0, "best")], false),
        Merge::Tokens { sized, .. } => {
            let mut v = vec![out, a(0, "x"), a(1, "dest")];
            v.extend(sized.then(|| a(2, "sizes")));
            (v, sized)
        }
        Merge::Sizes { sized, .. } => {
            let mut v = vec![out, a(0, "dest")];
            v.extend(sized.then(|| a(1, "sizes")));
            (v, sized)
        }
        Merge::Compose => (vec![out, a(0, "groups"), a(1, "dest")], false),
    };
    let mut flags = vec![flag(m)];
    if sized {
        flags.push("SIZED");
    }
    let wg = if matches!(m, Merge::Dest { .. }) { DEST_WG } else { ELEMENT_WG };
    KernelDecl::new::<Params>(specialize(&["merge"], &[("WG", wg), ("MAXA", MAXA)], &flags), bindings)
}

impl OpDef for Merge {
    fn kind(&self) -> &'static str {
        match self {
            Merge::Metric { .. } => "merge_metric",
            Merge::Match { .. } => "merge_match",
            Merge::Dest { .. } => "merge_dest",
            Merge::Tokens { .. } => "merge_tokens",
            Merge::Sizes { .. } => "merge_sizes",
            Merge::Compose => "merge_compose",
        }
    }

    fn arity(&self) -> usize {
        match *self {
            Merge::Metric { .. } | Merge::Match { .. } | Merge::Dest { .. } => 1,
            Merge::Tokens { sized, .. } => 2 + sized as usize,
            Merge::Sizes { sized, .. } => 1 + sized as usize,
            Merge::Compose => 2,
        }
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let x = inputs[0];
        let s = &x.shape;
        // A (B, T) map or sizes input `i` beside a batch of `b` and `t` tokens.
        let per_token = |i: usize, b: usize, t: usize| -> Result<()> {
            if inputs[i].shape != [b, t] {
                return Err(shape_err(node, inputs[i], format!("[{b}, {t}] (one value per token)")));
            }
            Ok(())
        };
        match *self {
            Merge::Metric { heads } => {
                let shape = attention::Attention { heads, scale: 1.0, causal: false, masked: false, sized: false }.output_shape(node, inputs)?;
                Ok(vec![shape[0], shape[1], shape[2] / heads])
            }
            Merge::Match { protected } => {
                if s.len() != 3 {
                    return Err(shape_err(node, x, "[B, T, D]"));
                }
                if protected >= s[1] {
                    return Err(invalid(node, format!("{protected} protected tokens leave none of the {} to merge", s[1])));
                }
                Ok(vec![s[0], s[1].div_ceil(2), 2])
            }
            Merge::Dest { tokens, r, protected } => {
                if s.len() != 3 || s[1] != tokens.div_ceil(2) || s[2] != 2 {
                    return Err(shape_err(node, x, format!("[B, {}, 2] (each even token's best match)", tokens.div_ceil(2))));
                }
                if tokens > MAX_TOKENS {
                    return Err(invalid(node, format!("merging takes at most {MAX_TOKENS} tokens per image; this image has {tokens}")));
                }
                let cap = tokens.saturating_sub(protected) / 2;
                if r == 0 || r > cap {
                    return Err(invalid(node, format!("r = {r} is not within 1..={cap} (half the {tokens} tokens less the {protected} protected)")));
                }
                Ok(vec![s[0], tokens])
            }
            Merge::Tokens { tokens, sized } => {
                if s.len() != 3 {
                    return Err(shape_err(node, x, "[B, T, D]"));
                }
                per_token(1, s[0], s[1])?;
                if sized {
                    per_token(2, s[0], s[1])?;
                }
                if tokens == 0 || tokens > s[1] {
                    return Err(invalid(node, format!("{tokens} output tokens from {}", s[1])));
                }
                Ok(vec![s[0], tokens, s[2]])
            }
            Merge::Sizes { tokens, sized } => {
                if s.len() != 2 {
                    return Err(shape_err(node, x, "[B, T]"));
                }
                if sized {
                    per_token(1, s[0], s[1])?;
                }
                if tokens == 0 || tokens > s[1] {
                    return Err(invalid(node, format!("{tokens} output tokens from {}", s[1])));
                }
                Ok(vec![s[0], tokens])
            }
            Merge::Compose => {
                if s.len() != 2 {
                    return Err(shape_err(node, x, "[B, N]"));
                }
                let d = &inputs[1].shape;
                if d.len() != 2 || d[0] != s[0] {
                    return Err(shape_err(node, inputs[1], format!("[{}, T]", s[0])));
                }
                Ok(s.clone())
            }
        }
    }

    fn kernels(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Vec<Kernel> {
        let s = &inputs[0].shape;
        let mut p = Params { batch: s[0] as u32, ..Default::default() };
        let (groups, flops) = match *self {
            Merge::Metric { heads } => {
                let l = attention::QkvLayout::of(s, heads);
                let [batch_stride, head_stride, row_stride, k_off, _] = l.words(1);
                p = Params { batch: l.b as u32, tokens: l.t as u32, dim: l.dh as u32, heads: heads as u32, batch_stride, head_stride, row_stride, k_off, ..p };
                let n = l.b * l.t;
                (grid(n.div_ceil(ELEMENT_WG as u64)), 2.0 * (n * l.heads * l.dh) as f64)
            }
            Merge::Match { protected } => {
                p = Params { tokens: s[1] as u32, dim: s[2] as u32, protected_: protected as u32, ..p };
                let a = (s[0] * s[1].div_ceil(2)) as u64;
                (grid(a.div_ceil(ELEMENT_WG as u64)), 2.0 * (a * (s[1] / 2) as u64 * s[2] as u64) as f64)
            }
            Merge::Dest { tokens, r, protected } => {
                p = Params { tokens: tokens as u32, r: r as u32, protected_: protected as u32, ..p };
                ([s[0] as u32, 1, 1], (s[0] * s[1] * s[1]) as f64)
            }
            Merge::Tokens { tokens, .. } => {
                p = Params { tokens: s[1] as u32, out_tokens: tokens as u32, dim: s[2] as u32, ..p };
                let n = output.numel() as u64;
                (grid(n.div_ceil(ELEMENT_WG as u64)), 2.0 * n as f64)
            }
            Merge::Sizes { tokens, .. } => {
                p = Params { tokens: s[1] as u32, out_tokens: tokens as u32, ..p };
                let n = output.numel() as u64;
                (grid(n.div_ceil(ELEMENT_WG as u64)), n as f64)
            }
            Merge::Compose => {
                p = Params { tokens: inputs[1].shape[1] as u32, dim: s[1] as u32, ..p };
                let n = output.numel() as u64;
                (grid(n.div_ceil(ELEMENT_WG as u64)), 0.0)
            }
        };
        vec![Kernel::new(self.kind(), decl(self), p, groups, flops)]
    }

    fn cpu_kernel(&self, _cpu: &Cpu, _node: &str, inputs: &[&TensorInfo], output: &TensorInfo, _weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        let qkv = match *self {
            Merge::Metric { heads } => Some(attention::QkvLayout::of(&inputs[0].shape, heads).cpu()),
            _ => None,
        };
        Ok(Box::new(MergeCpu { op: *self, input: inputs[0].shape.clone(), output: output.shape.clone(), qkv }))
    }
}

pub(crate) fn decls() -> Vec<KernelDecl> {
    let mut ops = vec![Merge::Metric { heads: 1 }, Merge::Match { protected: 0 }, Merge::Dest { tokens: 2, r: 1, protected: 0 }, Merge::Compose];
    for sized in [false, true] {
        ops.push(Merge::Tokens { tokens: 1, sized });
        ops.push(Merge::Sizes { tokens: 1, sized });
    }
    ops.iter().map(decl).collect()
}

struct MergeCpu {
    op: Merge,
    input: Vec<usize>,
    output: Vec<usize>,
    qkv: Option<crate::cpu::attention::Qkv>,
}

impl CpuKernel for MergeCpu {
    fn name(&self) -> &'static str {
        self.op.kind()
    }

    fn run(&self, cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], _scratch: &mut [f32]) {
        let k = crate::cpu::merge::Shape { b: self.input[0], t: self.input.get(1).copied().unwrap_or(1) };
        match self.op {
            Merge::Metric { .. } => crate::cpu::merge::metric(cpu, ins[0], self.qkv.as_ref().expect("qkv layout"), out),
            Merge::Match { protected } => crate::cpu::merge::best_matches(cpu, ins[0], k, self.input[2], protected, out),
            Merge::Dest { tokens, r, protected } => crate::cpu::merge::dest(ins[0], k.b, tokens, r, protected, out),
            Merge::Tokens { sized, .. } => {
                let sizes = if sized { Some(ins[2]) } else { None };
                crate::cpu::merge::tokens(cpu, ins[0], ins[1], sizes, k, self.input[2], self.output[1], out)
            }
            Merge::Sizes { sized, .. } => {
                let sizes = if sized { Some(ins[1]) } else { None };
                crate::cpu::merge::sizes(ins[0], sizes, k, self.output[1], out)
            }
            Merge::Compose => crate::cpu::merge::compose(ins[0], ins[1], k.b, out),
        }
    }
}
