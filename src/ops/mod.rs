//! The ops: for each, the same sequence — check inputs and infer the output shape, choose the
//! shader variant, fill the uniforms, size the dispatch. One module per kernel, named like its
//! shader.

pub mod attention;
pub mod attention_pool;
pub mod attention_probs;
pub mod elementwise;
pub mod layernorm;
pub mod matmul;
pub mod matmul_heads;
pub mod merge;
pub mod patch_embed;
pub mod shader;
pub mod softmax;
pub mod spatial;
pub mod tokens;

use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::{Error, Result};
use crate::tensor::{fmt_shape, DType, TensorInfo};
pub use shader::ShaderVariant;

/// A weight input a CPU kernel needs, or an error naming the node and the input.
pub(crate) fn need_weight<'a>(node: &str, weights: &[Option<&'a HostWeight>], i: usize, what: &str) -> Result<&'a HostWeight> {
    weights.get(i).copied().flatten().ok_or_else(|| invalid(node, format!("its {what} (input {i}) must be a weight")))
}

/// Activation fused into a matmul epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Identity.
    None,
    /// Exact GELU, `0.5 x (1 + erf(x / sqrt 2))` (PyTorch's default `nn.GELU`).
    Gelu,
    /// `tanh` (the ViT / DeiT pooler).
    Tanh,
    /// Quick GELU, `x * sigmoid(1.702 x)` (CLIP's `quick_gelu`).
    QuickGelu,
    /// The tanh approximation of GELU, `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`
    /// (`gelu_pytorch_tanh`, SigLIP's).
    GeluTanh,
}

impl Activation {
    /// Every activation.
    pub const ALL: [Activation; 5] = [Activation::None, Activation::Gelu, Activation::Tanh, Activation::QuickGelu, Activation::GeluTanh];

    /// The CPU kernels' form.
    pub(crate) fn cpu(self) -> crate::cpu::gemm::Act {
        match self {
            Activation::None => crate::cpu::gemm::Act::None,
            Activation::Gelu => crate::cpu::gemm::Act::Gelu,
            Activation::Tanh => crate::cpu::gemm::Act::Tanh,
            Activation::QuickGelu => crate::cpu::gemm::Act::QuickGelu,
            Activation::GeluTanh => crate::cpu::gemm::Act::GeluTanh,
        }
    }
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
    /// [`Op::Attention`] with a causal mask: each query attends only to keys at or before it.
    CausalAttention {
        /// Number of heads.
        heads: usize,
        /// Scale applied to scores.
        scale: f32,
    },
    /// [`Op::Attention`] over padded sequences. Inputs: `qkv, lengths (B)`: every query of batch
    /// item b attends to its first `lengths[b]` keys only; the keys past them are skipped.
    MaskedAttention {
        /// Number of heads.
        heads: usize,
        /// Scale applied to scores.
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
    /// Attention pooling with a learned query: `query (1, D)` (a weight, already projected) over
    /// `kv (B, T, 2*D)` (keys, then values), per head, giving `(B, D)`. Inputs: `query, kv`.
    AttentionPool {
        /// Number of heads.
        heads: usize,
        /// Score scale.
        scale: f32,
    },
    /// The attention probabilities of [`Op::AttentionPool`]: `(B, heads, T)`, what the learned
    /// query attends to (attention maps of models pooled this way). Inputs: `query, kv`.
    AttentionPoolProbs {
        /// Number of heads.
        heads: usize,
        /// Score scale.
        scale: f32,
    },
    /// [`Op::AttentionPool`] over padded sequences. Inputs: `query, kv, lengths (B)`: item b
    /// pools its first `lengths[b]` tokens.
    MaskedAttentionPool {
        /// Number of heads.
        heads: usize,
        /// Score scale.
        scale: f32,
    },
    /// [`Op::AttentionPoolProbs`] over padded sequences (0 past each item's length). Inputs:
    /// `query, kv, lengths (B)`.
    MaskedAttentionPoolProbs {
        /// Number of heads.
        heads: usize,
        /// Score scale.
        scale: f32,
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
    /// [`Op::MeanTokens`] over padded sequences. Inputs: `x, lengths (B)`: item b's mean over its
    /// first `min(count, lengths[b])` tokens from `start`.
    MaskedMeanTokens {
        /// First token.
        start: usize,
        /// Most tokens.
        count: usize,
    },
    /// Concatenation along the last dim.
    Concat,
    /// [`Op::Attention`] with ToMe's proportional attention. Inputs: `qkv, sizes (B, T)`: each
    /// key's logit gains `log(size)` (the tokens it stands for).
    SizedAttention {
        /// Number of heads.
        heads: usize,
        /// Scale applied to scores.
        scale: f32,
    },
    /// [`Op::AttentionProbs`] with proportional attention. Inputs: `qkv, sizes (B, T)`.
    SizedAttentionProbs {
        /// Number of heads.
        heads: usize,
        /// Score scale.
        scale: f32,
        /// Query tokens 0..queries.
        queries: usize,
        /// First key token kept in the output.
        first_key: usize,
    },
    /// Token merging: the keys of `qkv` averaged over heads at unit length, `(B, T, D / heads)`
    /// (see [`merge`]).
    MergeMetric {
        /// Number of heads.
        heads: usize,
    },
    /// Token merging: each even token's best cosine over the odd tokens and where, `(B,
    /// ceil(T/2), 2)`, from `metric (B, T, C)`; the first `protected` tokens take no part.
    MergeMatch {
        /// Tokens never merged (class, distillation, registers).
        protected: usize,
    },
    /// Token merging: every token's output row, `(B, tokens)`, from the best matches, merging `r`.
    MergeDest {
        /// Tokens before the merge.
        tokens: usize,
        /// Tokens merged away.
        r: usize,
        /// Tokens never merged.
        protected: usize,
    },
    /// Token merging: `x (B, T, D)` to `(B, tokens, D)`, each row the size-weighted mean of the
    /// tokens `dest (B, T)` sends there. Inputs: `x, dest, [sizes (B, T)]` (all 1 where absent).
    MergeTokens {
        /// Tokens after the merge.
        tokens: usize,
        /// A sizes input follows.
        sized: bool,
    },
    /// Token merging: the sizes summed per output row, `(B, tokens)`. Inputs: `dest, [sizes]`.
    MergeSizes {
        /// Tokens after the merge.
        tokens: usize,
        /// A sizes input follows.
        sized: bool,
    },
    /// Token merging: `groups (B, N)` (each original token's row) through one more `dest (B, T)`.
    MergeCompose,
    /// 2-D convolution on channels-last maps ([`spatial`]). Inputs: `x (B, H, W, Ci)`,
    /// `weight (k*k*Ci, Co)` (a weight, rows in (ky, kx, ci) order: [`spatial::conv_weight`]
    /// from PyTorch's layout), `[bias (Co)]`, `[residual (B, Ho, Wo, Co)]`. Output
    /// `act(x * w + bias) * scale + residual`, `(B, (H + 2 pad - k) / stride + 1, .., Co)`.
    Conv2d {
        /// Kernel side k.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding on every side.
        pad: usize,
        /// A bias input follows the weight.
        bias: bool,
        /// ReLU on the input as it is read (DPT's pre-activation residual units).
        pre_relu: bool,
        /// Activation after the bias.
        act: spatial::ConvAct,
        /// Multiplies the activation's output (a metric depth head's maximum depth).
        scale: f32,
        /// A residual input comes last, added after the scale.
        residual: bool,
    },
    /// Transposed 2-D convolution with kernel = stride and no padding, on channels-last maps.
    /// Inputs: `x (B, H, W, Ci)`, `weight (Ci, k*k*Co)` (a weight:
    /// [`spatial::conv_transpose_weight`]), `[bias (Co)]`. Output `(B, H*k, W*k, Co)`.
    ConvTranspose2d {
        /// Kernel side = stride.
        kernel: usize,
        /// A bias input follows the weight.
        bias: bool,
    },
    /// Bilinear resize of `x (B, H, W, C)` to `(B, height, width, C)`, as PyTorch's
    /// `interpolate(mode="bilinear")` without antialiasing.
    Resize {
        /// Output height.
        height: usize,
        /// Output width.
        width: usize,
        /// PyTorch's `align_corners`.
        align_corners: bool,
    },
    /// The patch tokens as a map: `x (B, prefix + height*width, C)` to `(B, height, width, C)`,
    /// dropping the prefix tokens, with the first token read out into every patch as `readout`
    /// says (`(B, height, width, 2C)` for [`Readout::Concat`]).
    TokensToMap {
        /// Prefix tokens to drop.
        prefix: usize,
        /// Grid rows.
        height: usize,
        /// Grid columns.
        width: usize,
        /// What the map takes of the first (class) token.
        readout: Readout,
    },
}

/// What a map made of tokens ([`Op::TokensToMap`]) takes of the first (class) token: DPT's
/// readout, before `"project"`'s linear layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Readout {
    /// Nothing (`"ignore"`).
    #[default]
    Ignore,
    /// Added to every patch token (`"add"`).
    Add,
    /// Appended to every patch token's channels (`"project"`'s concatenation).
    Concat,
}

/// How a kernel's shader accesses a storage binding. Weights are `read`. Activations are
/// `read_write` even where only read: they share one arena buffer with the node's output, and
/// WebGPU forbids a buffer bound both read-only and writable in one dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// What a storage binding holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The node's output.
    Output,
    /// The node's input at this position.
    Input(usize),
    /// The scratch buffer between the two dispatches of a split kernel.
    Scratch,
}

/// One storage binding of a kernel: its WGSL name, what it holds and how it is accessed.
/// Bindings are numbered in order, after the uniforms `P` at binding 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The WGSL variable's name.
    pub name: &'static str,
    /// What the executor binds to it.
    pub slot: Slot,
    /// Its WGSL access mode.
    pub access: Access,
}

impl Binding {
    /// The node's output.
    pub(crate) const fn output(name: &'static str) -> Binding {
        Binding { name, slot: Slot::Output, access: Access::ReadWrite }
    }
    /// An activation (arena) input.
    pub(crate) const fn activation(i: usize, name: &'static str) -> Binding {
        Binding { name, slot: Slot::Input(i), access: Access::ReadWrite }
    }
    /// A weight input (read-only; the executor checks that a weight is bound to it).
    pub(crate) const fn weight(i: usize, name: &'static str) -> Binding {
        Binding { name, slot: Slot::Input(i), access: Access::Read }
    }
    /// The split kernels' scratch.
    pub(crate) const fn scratch(name: &'static str, access: Access) -> Binding {
        Binding { name, slot: Slot::Scratch, access }
    }
}

/// A uniform struct shared with a shader's `struct Params`: `#[repr(C)]`, 4-byte fields, declared
/// with [`uniforms!`] so that its field names and types are known for the layout test.
pub trait Uniforms: bytemuck::Pod {
    /// (name, type) of each field, in order.
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// Declares a kernel's uniform struct (mirroring the WGSL `struct Params` field for field).
macro_rules! uniforms {
    ($(#[$m:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name { $(pub $field: $ty),* }
        impl $crate::ops::Uniforms for $name {
            const FIELDS: &'static [(&'static str, &'static str)] = &[$((stringify!($field), stringify!($ty))),*];
        }
    };
}
pub(crate) use uniforms;

/// A shader variant with the interface the executor binds: its uniform fields and its storage
/// bindings in binding order. Made by the same function that fills the kernel's uniforms, so the
/// two cannot drift; `tests/shaders.rs` checks it against the WGSL with naga.
#[derive(Clone, Debug)]
pub struct KernelDecl {
    /// The WGSL.
    pub shader: ShaderVariant,
    /// The uniform struct's fields (binding 0).
    pub uniforms: &'static [(&'static str, &'static str)],
    /// Storage bindings 1, 2, ... in order.
    pub bindings: Vec<Binding>,
}

impl KernelDecl {
    pub(crate) fn new<U: Uniforms>(shader: ShaderVariant, bindings: Vec<Binding>) -> KernelDecl {
        KernelDecl { shader, uniforms: U::FIELDS, bindings }
    }

    /// The same declaration storing f16.
    pub fn f16(&self) -> KernelDecl {
        KernelDecl { shader: self.shader.f16(), uniforms: self.uniforms, bindings: self.bindings.clone() }
    }
}

/// What the executor needs to run one node.
#[derive(Debug)]
pub(crate) struct Kernel {
    /// The candidate's name (`64x64`, `tiled-32x32`, ...), or the op kind where it has one kernel.
    pub name: &'static str,
    pub decl: KernelDecl,
    /// The uniform bytes, padded to 16.
    pub params: Vec<u8>,
    pub workgroups: [u32; 3],
    /// Floating-point operations, for the profile.
    pub flops: f64,
    /// A second dispatch that completes the node (split-K): this kernel then writes f32 partial
    /// results to the scratch buffer, which the second reads.
    pub finish: Option<Box<Finish>>,
}

/// The second dispatch of a two-dispatch kernel.
#[derive(Debug)]
pub(crate) struct Finish {
    /// Bytes of scratch the first dispatch writes.
    pub scratch: u64,
    pub kernel: Kernel,
}

impl Kernel {
    pub(crate) fn new<U: Uniforms>(name: &'static str, decl: KernelDecl, params: U, workgroups: [u32; 3], flops: f64) -> Kernel {
        debug_assert_eq!(decl.uniforms, U::FIELDS);
        let mut bytes = bytemuck::bytes_of(&params).to_vec();
        bytes.resize(bytes.len().next_multiple_of(16).max(16), 0);
        Kernel { name, decl, params: bytes, workgroups, flops, finish: None }
    }

    /// The same kernel storing its tensors as f16.
    pub(crate) fn f16(mut self) -> Kernel {
        self.decl = self.decl.f16();
        if let Some(f) = self.finish.as_mut() {
            f.kernel.decl = f.kernel.decl.f16();
        }
        self
    }

    /// The shader.
    pub(crate) fn shader(&self) -> &ShaderVariant {
        &self.decl.shader
    }

    /// Scratch bytes the kernel needs (0 for one dispatch).
    pub(crate) fn scratch(&self) -> u64 {
        self.finish.as_ref().map_or(0, |f| f.scratch)
    }

    /// The dispatches that run this kernel, in order: the kernel alone, or its first half then
    /// the finishing one (both bind the scratch where they declare it).
    pub(crate) fn dispatches(&self) -> Vec<&Kernel> {
        match &self.finish {
            None => vec![self],
            Some(f) => vec![self, &f.kernel],
        }
    }
}

/// What every op defines, in its own module: its inputs and output shape, its GPU kernels (the
/// default first, then the alternatives the selector may force, prefer or time) and the heuristic
/// that picks among them per adapter kind. [`Op::def`] is the one table from op to definition.
pub(crate) trait OpDef {
    /// Short name of the op kind.
    fn kind(&self) -> &'static str;
    /// Number of inputs.
    fn arity(&self) -> usize;
    /// The input whose dtype is the node's storage dtype (the patch embedding's image is always
    /// f32, so it is its weight).
    fn storage_input(&self) -> usize {
        0
    }
    /// Checks the shapes of inputs of the right count and dtype; returns the output shape.
    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>>;
    /// The GPU kernels for checked inputs, the op's default first.
    fn kernels(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Vec<Kernel>;
    /// The family whose forced kernel (`GpuOptions::forced_kernels`) applies, for ops with a
    /// choice of kernels.
    fn family(&self) -> Option<&'static str> {
        None
    }
    /// Key naming the shape class for the autotuner, for ops with a choice of kernels.
    fn tuning_key(&self, _inputs: &[&TensorInfo], _output: &TensorInfo) -> Option<String> {
        None
    }
    /// The kernel measured best on this kind of adapter, where it is not the default.
    fn heuristic(&self, _device: wgpu::DeviceType, _inputs: &[&TensorInfo], _output: &TensorInfo) -> Option<&'static str> {
        None
    }
    /// The CPU kernel for checked inputs; `weights[i]` is input i where it is a weight.
    fn cpu_kernel(&self, cpu: &Cpu, node: &str, inputs: &[&TensorInfo], output: &TensorInfo, weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>>;
}

impl Op {
    /// Whether input `i` is a matrix product's B (the patch embedding's kernel too), which the CPU
    /// backend reads from its GEMM panels alone (a weight kept only packed may be bound there and nowhere else).
    pub fn packed_input(&self, i: usize) -> bool {
        matches!(self, Op::MatMul { .. } | Op::MatMulHeads { .. } | Op::PatchEmbed { .. } | Op::Conv2d { .. } | Op::ConvTranspose2d { .. }) && i == 1
    }
}

impl Op {
    /// The op's definition (the one table entry per op).
    pub(crate) fn def(&self) -> Box<dyn OpDef> {
        match *self {
            Op::MatMul { bias, act, residual } => Box::new(matmul::MatMul { bias, act, residual }),
            Op::MatMulHeads { heads, bias } => Box::new(matmul_heads::MatMulHeads { heads, bias }),
            Op::PatchEmbed { patch, prefix } => Box::new(patch_embed::PatchEmbed { patch, prefix }),
            Op::Attention { heads, scale } => Box::new(attention::Attention { heads, scale, causal: false, masked: false, sized: false }),
            Op::CausalAttention { heads, scale } => Box::new(attention::Attention { heads, scale, causal: true, masked: false, sized: false }),
            Op::MaskedAttention { heads, scale } => Box::new(attention::Attention { heads, scale, causal: false, masked: true, sized: false }),
            Op::AttentionProbs { heads, scale, queries, first_key } => {
                Box::new(attention_probs::AttentionProbs { heads, scale, queries, first_key, sized: false })
            }
            Op::AttentionPool { heads, scale } => Box::new(attention_pool::AttentionPool { heads, scale, probs: false, masked: false }),
            Op::AttentionPoolProbs { heads, scale } => Box::new(attention_pool::AttentionPool { heads, scale, probs: true, masked: false }),
            Op::MaskedAttentionPool { heads, scale } => Box::new(attention_pool::AttentionPool { heads, scale, probs: false, masked: true }),
            Op::MaskedAttentionPoolProbs { heads, scale } => Box::new(attention_pool::AttentionPool { heads, scale, probs: true, masked: true }),
            Op::LayerNorm { eps } => Box::new(layernorm::LayerNorm { eps }),
            Op::Softmax => Box::new(softmax::Softmax),
            Op::Add => Box::new(elementwise::Elementwise::Add),
            Op::MulRow => Box::new(elementwise::Elementwise::MulRow),
            Op::SliceTokens { start, count } => Box::new(tokens::Tokens { start, count, mean: false, masked: false, map: None }),
            Op::MeanTokens { start, count } => Box::new(tokens::Tokens { start, count, mean: true, masked: false, map: None }),
            Op::MaskedMeanTokens { start, count } => Box::new(tokens::Tokens { start, count, mean: true, masked: true, map: None }),
            Op::Concat => Box::new(tokens::Concat),
            Op::SizedAttention { heads, scale } => Box::new(attention::Attention { heads, scale, causal: false, masked: false, sized: true }),
            Op::SizedAttentionProbs { heads, scale, queries, first_key } => {
                Box::new(attention_probs::AttentionProbs { heads, scale, queries, first_key, sized: true })
            }
            Op::MergeMetric { heads } => Box::new(merge::Merge::Metric { heads }),
            Op::MergeMatch { protected } => Box::new(merge::Merge::Match { protected }),
            Op::MergeDest { tokens, r, protected } => Box::new(merge::Merge::Dest { tokens, r, protected }),
            Op::MergeTokens { tokens, sized } => Box::new(merge::Merge::Tokens { tokens, sized }),
            Op::MergeSizes { tokens, sized } => Box::new(merge::Merge::Sizes { tokens, sized }),
            Op::MergeCompose => Box::new(merge::Merge::Compose),
            Op::Conv2d { kernel, stride, pad, bias, pre_relu, act, scale, residual } => {
                Box::new(spatial::Spatial::Conv { kernel, stride, pad, bias, pre_relu, act, scale, residual })
            }
            Op::ConvTranspose2d { kernel, bias } => Box::new(spatial::Spatial::Deconv { kernel, bias }),
            Op::Resize { height, width, align_corners } => Box::new(spatial::Spatial::Resize { height, width, align: align_corners }),
            Op::TokensToMap { prefix, height, width, readout } => Box::new(tokens::Tokens {
                start: prefix,
                count: height.saturating_mul(width),
                mean: false,
                masked: false,
                map: Some((height, width, readout)),
            }),
        }
    }

    /// Short name of the op kind.
    pub fn kind(&self) -> &'static str {
        self.def().kind()
    }

    /// Checks the inputs (count, dtype, shapes) and returns the output shape.
    pub fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let def = self.def();
        if inputs.len() != def.arity() {
            return Err(Error::InvalidOp {
                op: node.into(),
                problem: format!("{} takes {} inputs, got {}", def.kind(), def.arity(), inputs.len()),
            });
        }
        let dtype = self.storage_dtype(inputs);
        for (i, t) in inputs.iter().enumerate() {
            // The patch embedding's image is the graph's f32 input; everything else is stored in
            // the node's dtype.
            let want = if def.storage_input() > i { DType::F32 } else { dtype };
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
        def.output_shape(node, inputs)
    }

    /// The dtype this node stores its tensors (and its output) in: that of its first stored
    /// input (the weight, for the patch embedding, whose image is always f32).
    pub fn storage_dtype(&self, inputs: &[&TensorInfo]) -> DType {
        inputs.get(self.def().storage_input()).map_or(DType::F32, |t| t.dtype)
    }

    /// The kernels for inputs already checked by [`Op::output_shape`], the default first, each
    /// storing the node's dtype.
    pub(crate) fn kernels(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Vec<Kernel> {
        let ks = self.def().kernels(inputs, output);
        if self.storage_dtype(inputs) == DType::F16 {
            return ks.into_iter().map(Kernel::f16).collect();
        }
        ks
    }

    /// The node's CPU kernel (`weights[i]` is input i where it is a weight).
    pub(crate) fn cpu_kernel(&self, cpu: &Cpu, node: &str, inputs: &[&TensorInfo], output: &TensorInfo, weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        self.def().cpu_kernel(cpu, node, inputs, output, weights)
    }

    /// The autotuner's key for this node (None: one kernel, nothing to tune).
    pub(crate) fn tuning_key(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Option<String> {
        let key = self.def().tuning_key(inputs, output)?;
        Some(if self.storage_dtype(inputs) == DType::F16 { format!("{key} f16") } else { key })
    }
}

/// Every kernel declaration the engine can produce (f32, then the same storing f16), for
/// validation without a GPU.
pub fn all_kernel_decls() -> Vec<KernelDecl> {
    let v = all_f32_decls();
    let f16: Vec<KernelDecl> = v.iter().map(KernelDecl::f16).collect();
    v.into_iter().chain(f16).collect()
}

/// Every shader variant the engine can produce (see [`all_kernel_decls`]).
pub fn all_shader_variants() -> Vec<ShaderVariant> {
    all_kernel_decls().into_iter().map(|d| d.shader).collect()
}

fn all_f32_decls() -> Vec<KernelDecl> {
    let mut v = Vec::new();
    v.extend(matmul::decls());
    v.extend(matmul_heads::decls());
    v.extend(patch_embed::decls());
    v.extend(attention::decls());
    v.extend(attention_probs::decls());
    v.extend(attention_pool::decls());
    v.extend(layernorm::decls());
    v.extend(softmax::decls());
    v.extend(elementwise::decls());
    v.extend(tokens::decls());
    v.extend(merge::decls());
    v.extend(spatial::decls());
    v
}

/// The kernel names of each family that can be forced (`GpuOptions::forced_kernels`), with
/// the aliases each family accepts: (family, names, aliases).
pub fn forcible_kernels() -> Vec<(&'static str, Vec<&'static str>, &'static [(&'static str, &'static str)])> {
    vec![("matmul", matmul::kernel_names(), matmul::ALIASES), ("attention", attention::kernel_names(), &[])]
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

pub(crate) fn rows_of(shape: &[usize]) -> usize {
    shape[..shape.len() - 1].iter().product()
}

pub(crate) fn last(shape: &[usize]) -> usize {
    shape[shape.len() - 1]
}
