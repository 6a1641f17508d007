//! The ops: for each, the same sequence — check inputs and infer the output shape, choose the
//! shader variant, fill the uniforms, size the dispatch. One module per kernel, named like its
//! shader.

pub mod attention;
pub mod attention_probs;
pub mod elementwise;
pub mod layernorm;
pub mod matmul;
pub mod patch_embed;
pub mod shader;
pub mod softmax;
pub mod tokens;

use crate::error::{Error, Result};
use crate::graph::ir::{fmt_shape, DType, TensorInfo};
pub use shader::ShaderVariant;

/// Activation fused into a matmul epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Identity.
    None,
    /// Exact GELU, `0.5 x (1 + erf(x / sqrt 2))` (PyTorch's default `nn.GELU`).
    Gelu,
    /// `tanh` (the ViT / DeiT pooler).
    Tanh,
}

/// An operation of the graph. Parameters that follow from input shapes are not stored.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `a (.., K) x b (K, N)` with optional bias, activation and residual, in that order.
    /// Inputs: `a, b, [bias (N)], [residual (.., N)]`.
    MatMul {
        /// A bias input follows `b`.
        bias: bool,
        /// Activation after the bias.
        act: Activation,
        /// A residual input comes last, added after the activation.
        residual: bool,
    },
    /// The fused QKV projection written head-major for attention: `a (B, T, K) x b (K, 3*D)
    /// [+ bias (3*D)]` as `(3, B, heads, T, D / heads)` (K and the head dim multiples of 4).
    /// Inputs: `a, b, [bias]`.
    MatMulHeads {
        /// Number of heads.
        heads: usize,
        /// A bias input follows `b`.
        bias: bool,
    },
    /// Patchify + projection + prefix tokens + position embeddings.
    /// Inputs: `image (B, C, H, W), weight (C*p*p, D), bias (D), pos (T, D), [prefix (P, D)]`.
    PatchEmbed {
        /// Patch size p (kernel = stride).
        patch: usize,
        /// Number of prefix tokens P (0 when there is no prefix input).
        prefix: usize,
    },
    /// Multi-head self-attention on a fused `qkv (B, T, 3*D)`, or the head-major
    /// `(3, B, heads, T, D / heads)` of [`Op::MatMulHeads`].
    Attention {
        /// Number of heads (D / heads is the head dim, at most [`attention::MAX_HEAD_DIM`]).
        heads: usize,
        /// Scale applied to scores, usually `1/sqrt(head_dim)`.
        scale: f32,
    },
    /// Attention probabilities of the first `queries` tokens over keys `first_key..T`, from a
    /// fused `qkv (B, T, 3*D)`, giving `(B, heads, queries, T - first_key)`.
    AttentionProbs {
        /// Number of heads.
        heads: usize,
        /// Score scale.
        scale: f32,
        /// Query tokens 0..queries (1: the CLS token).
        queries: usize,
        /// First key token kept in the output (the number of prefix tokens, for patch maps).
        first_key: usize,
    },
    /// Layer norm over the last dim. Inputs: `x, gamma, beta`.
    LayerNorm {
        /// Added to the variance.
        eps: f32,
    },
    /// Softmax over the last dim.
    Softmax,
    /// Element-wise sum of two tensors of one shape.
    Add,
    /// `a * b` with `b (C)` broadcast over `a (.., C)`.
    MulRow,
    /// `x (B, T, D)[:, start..start+count, :]`.
    SliceTokens {
        /// First token.
        start: usize,
        /// Number of tokens.
        count: usize,
    },
    /// Mean of `x (B, T, D)[:, start..start+count, :]` over tokens, giving `(B, D)`.
    MeanTokens {
        /// First token.
        start: usize,
        /// Number of tokens.
        count: usize,
    },
    /// Concatenation along the last dim.
    Concat,
}

/// What the executor needs to run one node.
pub(crate) struct Kernel {
    pub shader: ShaderVariant,
    /// Uniform words (u32 or f32 bits), padded to 16 bytes.
    pub params: Vec<u32>,
    pub workgroups: [u32; 3],
    /// Binding number of each input, in the node's input order (binding 0 is the uniform,
    /// binding 1 the output); 0 for an input this dispatch does not read (in a [`Finish`]).
    pub input_bindings: Vec<u32>,
    /// Floating-point operations, for the profile.
    pub flops: f64,
    /// A second dispatch that completes the node (split-K): this kernel then writes f32 partial
    /// results to a scratch buffer at binding 1 instead of the node's output.
    pub finish: Option<Box<Finish>>,
}

/// The second dispatch of a two-dispatch kernel: it reads the scratch (binding 2) and the node
/// inputs its `input_bindings` name, and writes the node's output (binding 1).
pub(crate) struct Finish {
    /// Bytes of scratch the first dispatch writes.
    pub scratch: u64,
    pub kernel: Kernel,
}

impl Kernel {
    /// The same kernel storing its tensors as f16.
    pub(crate) fn f16(mut self) -> Kernel {
        self.shader = self.shader.f16();
        if let Some(f) = self.finish.as_mut() {
            f.kernel.shader = f.kernel.shader.f16();
        }
        self
    }

    /// Scratch bytes the kernel needs (0 for one dispatch).
    pub(crate) fn scratch(&self) -> u64 {
        self.finish.as_ref().map_or(0, |f| f.scratch)
    }

    /// The dispatches that run this kernel, in order, each with where it binds the scratch
    /// (binding, bytes): the kernel alone; or its first half writing the scratch at binding 1 in
    /// place of the output, then the finish reading it at binding 2.
    pub(crate) fn dispatches(&self) -> Vec<(&Kernel, Option<(u32, u64)>)> {
        match &self.finish {
            None => vec![(self, None)],
            Some(f) => vec![(self, Some((1, f.scratch))), (&f.kernel, Some((2, f.scratch)))],
        }
    }
}

impl Op {
    /// Short name of the op kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::MatMul { .. } => "matmul",
            Op::MatMulHeads { .. } => "matmul_heads",
            Op::PatchEmbed { .. } => "patch_embed",
            Op::Attention { .. } => "attention",
            Op::AttentionProbs { .. } => "attention_probs",
            Op::LayerNorm { .. } => "layernorm",
            Op::Softmax => "softmax",
            Op::Add => "add",
            Op::MulRow => "mul_row",
            Op::SliceTokens { .. } => "slice_tokens",
            Op::MeanTokens { .. } => "mean_tokens",
            Op::Concat => "concat",
        }
    }

    fn arity(&self) -> usize {
        match self {
            Op::MatMul { bias, residual, .. } => 2 + *bias as usize + *residual as usize,
            Op::MatMulHeads { bias, .. } => 2 + *bias as usize,
            Op::PatchEmbed { prefix, .. } => 4 + (*prefix > 0) as usize,
            Op::Attention { .. } | Op::AttentionProbs { .. } | Op::Softmax | Op::SliceTokens { .. } | Op::MeanTokens { .. } => 1,
            Op::LayerNorm { .. } => 3,
            Op::Add | Op::MulRow | Op::Concat => 2,
        }
    }

    /// Checks the inputs (count, dtype, shapes) and returns the output shape.
    pub fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        if inputs.len() != self.arity() {
            return Err(Error::InvalidOp {
                op: node.into(),
                problem: format!("{} takes {} inputs, got {}", self.kind(), self.arity(), inputs.len()),
            });
        }
        let dtype = self.storage_dtype(inputs);
        for (i, t) in inputs.iter().enumerate() {
            // The patch embedding's image is the graph's f32 input; everything else is stored in
            // the node's dtype.
            let want = if matches!(self, Op::PatchEmbed { .. }) && i == 0 { DType::F32 } else { dtype };
            if t.dtype != want {
                return Err(Error::UnsupportedDtype {
                    op: node.into(),
                    tensor: t.name.clone(),
                    dtype: t.dtype.to_string(),
                    supported: format!("{want} (as the node's other tensors)"),
                });
            }
            if t.shape.is_empty() || t.shape.contains(&0) {
                return Err(shape_err(node, t, "a non-empty shape with no zero dimension"));
            }
        }
        match self {
            Op::MatMul { bias, residual, .. } => matmul::output_shape(node, inputs, *bias, *residual),
            Op::MatMulHeads { heads, bias } => matmul::heads_output_shape(node, inputs, *heads, *bias),
            Op::PatchEmbed { patch, prefix } => patch_embed::output_shape(node, inputs, *patch, *prefix),
            Op::Attention { heads, scale } => attention::output_shape(node, inputs, *heads, *scale),
            Op::AttentionProbs { heads, scale, queries, first_key } => {
                attention_probs::output_shape(node, inputs, *heads, *scale, *queries, *first_key)
            }
            Op::LayerNorm { eps } => layernorm::output_shape(node, inputs, *eps),
            Op::Softmax => Ok(inputs[0].shape.clone()),
            Op::Add | Op::MulRow => elementwise::output_shape(node, inputs, self),
            Op::SliceTokens { start, count } | Op::MeanTokens { start, count } => {
                tokens::output_shape(node, inputs, *start, *count, matches!(self, Op::MeanTokens { .. }))
            }
            Op::Concat => tokens::concat_shape(node, inputs),
        }
    }

    /// Alternative kernels the autotuner may time for this node (the first is [`Op::kernel`]'s
    /// choice), with a key naming the shape; None where there is one kernel only.
    pub(crate) fn kernel_candidates(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Option<(String, Vec<(&'static str, Kernel)>)> {
        let (key, cands) = match self {
            Op::MatMul { bias, act, residual } => matmul::candidates(inputs, output, *bias, *act, *residual),
            Op::MatMulHeads { heads, bias } => matmul::heads_candidates(inputs, *heads, *bias),
            Op::Attention { heads, scale } => attention::candidates(inputs, *heads, *scale),
            _ => return None,
        };
        if self.storage_dtype(inputs) != DType::F16 {
            return Some((key, cands));
        }
        let cands = cands.into_iter().map(|(name, k)| (name, k.f16())).collect();
        Some((format!("{key} f16"), cands))
    }

    /// The op's result as a matrix (rows, columns), for kernel heuristics: a head-major projection
    /// is the (B*T, 3*D) product it computes; other ops their output's rows and last dim.
    pub(crate) fn result_matrix(&self, output: &TensorInfo) -> (usize, usize) {
        let s = &output.shape;
        match self {
            Op::MatMulHeads { .. } => (s[1] * s[3], 3 * s[2] * s[4]),
            _ => (rows_of(s), last(s)),
        }
    }

    /// The dtype this node stores its tensors (and its output) in: that of its first stored
    /// input (the weight, for the patch embedding, whose image is always f32).
    pub fn storage_dtype(&self, inputs: &[&TensorInfo]) -> DType {
        let i = if matches!(self, Op::PatchEmbed { .. }) { 1 } else { 0 };
        inputs.get(i).map_or(DType::F32, |t| t.dtype)
    }

    /// The kernel for inputs already checked by [`Op::output_shape`].
    pub(crate) fn kernel(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Kernel {
        let k = self.kernel_f32(inputs, output);
        if self.storage_dtype(inputs) == DType::F16 {
            return k.f16();
        }
        k
    }

    fn kernel_f32(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Kernel {
        match self {
            Op::MatMul { bias, act, residual } => matmul::kernel(inputs, output, *bias, *act, *residual),
            Op::MatMulHeads { heads, bias } => matmul::heads_kernel(inputs, *heads, *bias, matmul::SMALL),
            Op::PatchEmbed { patch, prefix } => patch_embed::kernel(inputs, output, *patch, *prefix),
            Op::Attention { heads, scale } => attention::kernel(inputs, *heads, *scale),
            Op::AttentionProbs { heads, scale, queries, first_key } => {
                attention_probs::kernel(inputs, *heads, *scale, *queries, *first_key)
            }
            Op::LayerNorm { eps } => layernorm::kernel(inputs, *eps),
            Op::Softmax => softmax::kernel(inputs),
            Op::Add | Op::MulRow => elementwise::kernel(inputs, self),
            Op::SliceTokens { start, count } | Op::MeanTokens { start, count } => {
                tokens::kernel(inputs, output, *start, *count, matches!(self, Op::MeanTokens { .. }))
            }
            Op::Concat => tokens::concat_kernel(inputs, output),
        }
    }
}

/// Every shader variant the engine can produce (f32, then the same storing f16), for validation
/// without a GPU.
pub fn all_shader_variants() -> Vec<ShaderVariant> {
    let v = all_f32_variants();
    let f16: Vec<ShaderVariant> = v.iter().map(|s| s.f16()).collect();
    v.into_iter().chain(f16).collect()
}

fn all_f32_variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    v.extend(matmul::variants());
    v.extend(patch_embed::variants());
    v.extend(attention::variants());
    v.extend(attention_probs::variants());
    v.extend(layernorm::variants());
    v.extend(softmax::variants());
    v.extend(elementwise::variants());
    v.extend(tokens::variants());
    v
}

pub(crate) fn shape_err(node: &str, t: &TensorInfo, expected: impl Into<String>) -> Error {
    Error::Shape {
        op: node.into(),
        tensor: t.name.clone(),
        expected: expected.into(),
        actual: fmt_shape(&t.shape),
    }
}

pub(crate) fn invalid(node: &str, problem: impl Into<String>) -> Error {
    Error::InvalidOp { op: node.into(), problem: problem.into() }
}

/// Widest dispatch in one dimension that every WebGPU device accepts.
pub(crate) const MAX_GROUPS_PER_DIM: u64 = 65535;

/// Spreads `groups` workgroups over x, then y (kernels recover the index with `linear_workgroup`).
pub(crate) fn grid(groups: u64) -> [u32; 3] {
    let x = groups.clamp(1, MAX_GROUPS_PER_DIM);
    let y = groups.div_ceil(x);
    [x as u32, y.min(u32::MAX as u64) as u32, 1]
}

/// Workgroup size for one-row-per-workgroup kernels: about four columns per invocation,
/// a power of two in 32..=256 (256 is the WebGPU minimum for invocations per workgroup).
pub(crate) fn row_workgroup(cols: usize) -> u32 {
    (cols.div_ceil(4).next_power_of_two()).clamp(32, 256) as u32
}

pub(crate) const ROW_WORKGROUPS: [u32; 4] = [32, 64, 128, 256];

/// Workgroup size of the one-element-per-invocation kernels.
pub(crate) const ELEMENT_WG: u32 = 256;

pub(crate) fn pad_params(mut words: Vec<u32>) -> Vec<u32> {
    while !words.len().is_multiple_of(4) {
        words.push(0);
    }
    words
}

pub(crate) fn rows_of(shape: &[usize]) -> usize {
    shape[..shape.len() - 1].iter().product()
}

pub(crate) fn last(shape: &[usize]) -> usize {
    shape[shape.len() - 1]
}
