//! The graph IR: tensors (shape + dtype + kind) and nodes (an op reading tensors, writing one).
//! Builders check shapes as nodes are added; `add_node` adds a node as given, and the compiler
//! checks everything again (cycles, dangling tensors, shapes).

use crate::error::Result;
use crate::ops::{Activation, Op};
pub use crate::tensor::{DType, TensorId, TensorInfo, TensorKind};

/// One op application.
#[derive(Clone, Debug)]
pub struct Node {
    /// Name used in errors and profiles.
    pub name: String,
    /// The op.
    pub op: Op,
    /// Inputs in the op's order.
    pub inputs: Vec<TensorId>,
    /// The tensor it writes.
    pub output: TensorId,
}

/// A model as a graph of ops.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    tensors: Vec<TensorInfo>,
    nodes: Vec<Node>,
    outputs: Vec<TensorId>,
    storage: Option<DType>,
}


impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    fn declare(&mut self, name: &str, shape: &[usize], dtype: DType, kind: TensorKind) -> TensorId {
        self.tensors.push(TensorInfo { name: name.to_string(), shape: shape.to_vec(), dtype, kind, quant: None });
        TensorId(self.tensors.len() - 1)
    }

    /// This graph with each weight that `weights` holds quantized marked so (its kernels read the
    /// quantized form); None where no weight is quantized. A quantized weight may only be a
    /// matrix product's B: anywhere else it is an error naming the node.
    pub(crate) fn with_quant(&self, weights: &super::weights::Weights) -> crate::error::Result<Option<Graph>> {
        let marks: Vec<(usize, crate::tensor::QuantShape)> =
            self.tensors.iter().enumerate().filter(|(_, t)| t.kind == TensorKind::Weight).filter_map(|(i, t)| weights.quant_shape(&t.name).map(|q| (i, q))).collect();
        if marks.is_empty() {
            return Ok(None);
        }
        for n in &self.nodes {
            let kind = n.op.def().kind();
            for (slot, t) in n.inputs.iter().enumerate() {
                let reads_quant = matches!(kind, "matmul" | "matmul_heads") && slot == 1;
                if !reads_quant && marks.iter().any(|&(i, _)| i == t.index()) {
                    return Err(crate::error::Error::Weight {
                        name: self.tensors[t.index()].name.clone(),
                        problem: format!("is quantized, but node `{}` ({kind}) reads it as input {slot}; only a matrix product's B may be quantized", n.name),
                    });
                }
            }
        }
        let mut g = self.clone();
        for (i, q) in marks {
            g.tensors[i].quant = Some(q);
        }
        Ok(Some(g))
    }

    /// Declares an f32 input, written on every run.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.declare(name, shape, DType::F32, TensorKind::Input)
    }

    /// Declares a weight in the graph's storage dtype (f32 unless [`Graph::set_storage`]), bound
    /// by name at compile time.
    pub fn weight(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.declare(name, shape, self.storage(), TensorKind::Weight)
    }

    /// Stores weights and activations as `dtype` from now on (f16: half the memory and bandwidth,
    /// arithmetic still in f32; needs `shader-f16`). Inputs stay f32, and outputs are read back
    /// as f32.
    pub fn set_storage(&mut self, dtype: DType) {
        self.storage = Some(dtype);
    }

    /// The storage dtype of weights (and so of the activations computed from them).
    pub fn storage(&self) -> DType {
        self.storage.unwrap_or(DType::F32)
    }

    /// Declares a tensor of any kind and dtype (for [`Graph::add_node`]).
    pub fn tensor(&mut self, name: &str, shape: &[usize], dtype: DType, kind: TensorKind) -> TensorId {
        self.declare(name, shape, dtype, kind)
    }

    /// Adds a node as given; nothing is checked until compile.
    pub fn add_node(&mut self, name: &str, op: Op, inputs: &[TensorId], output: TensorId) {
        self.nodes.push(Node { name: name.to_string(), op, inputs: inputs.to_vec(), output });
    }

    /// Adds a node, checking its inputs and creating its output tensor (named like the node).
    pub fn op(&mut self, name: &str, op: Op, inputs: &[TensorId]) -> Result<TensorId> {
        let infos: Vec<&TensorInfo> = inputs.iter().map(|t| &self.tensors[t.0]).collect();
        let shape = op.output_shape(name, &infos)?;
        let dtype = op.storage_dtype(&infos);
        let out = self.declare(name, &shape, dtype, TensorKind::Activation);
        self.add_node(name, op, inputs, out);
        Ok(out)
    }

    /// Marks a tensor to be read back after each run (in the order marked).
    pub fn output(&mut self, t: TensorId) {
        if !self.outputs.contains(&t) {
            self.outputs.push(t);
        }
    }

    /// All tensors.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// One tensor's description.
    pub fn info(&self, t: TensorId) -> &TensorInfo {
        &self.tensors[t.0]
    }

    /// The first tensor declared with this name.
    pub fn find(&self, name: &str) -> Option<TensorId> {
        self.tensors.iter().position(|t| t.name == name).map(TensorId)
    }

    /// Nodes in insertion order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Tensors marked as outputs.
    pub fn outputs(&self) -> &[TensorId] {
        &self.outputs
    }

    // Builders for the ops, each checking shapes as it adds the node.

    /// `a (.., K) x b (K, N) [+ bias (N)] [activation] [+ residual (.., N)]`.
    pub fn matmul(
        &mut self,
        name: &str,
        a: TensorId,
        b: TensorId,
        bias: Option<TensorId>,
        act: Activation,
        residual: Option<TensorId>,
    ) -> Result<TensorId> {
        let mut inputs = vec![a, b];
        inputs.extend(bias);
        inputs.extend(residual);
        self.op(name, Op::MatMul { bias: bias.is_some(), act, residual: residual.is_some() }, &inputs)
    }

    /// The fused QKV projection `a (B, T, K) x b (K, 3*D) [+ bias]`, written head-major as
    /// `(3, B, heads, T, D / heads)` for [`Graph::attention`].
    pub fn matmul_heads(&mut self, name: &str, a: TensorId, b: TensorId, bias: Option<TensorId>, heads: usize) -> Result<TensorId> {
        let mut inputs = vec![a, b];
        inputs.extend(bias);
        self.op(name, Op::MatMulHeads { heads, bias: bias.is_some() }, &inputs)
    }

    /// Patch embedding of `image (B, C, H, W)` with `weight (C*p*p, D)`, `bias (D)`, optional
    /// `prefix (P, D)` tokens (class, distillation) and `pos (P + N, D)`.
    #[allow(clippy::too_many_arguments)]
    pub fn patch_embed(
        &mut self,
        name: &str,
        image: TensorId,
        weight: TensorId,
        bias: TensorId,
        pos: TensorId,
        prefix: Option<TensorId>,
        patch: usize,
    ) -> Result<TensorId> {
        let mut inputs = vec![image, weight, bias, pos];
        inputs.extend(prefix);
        let prefix_len = prefix.map(|p| self.info(p).shape.first().copied().unwrap_or(0)).unwrap_or(0);
        self.op(name, Op::PatchEmbed { patch, prefix: prefix_len }, &inputs)
    }

    /// Multi-head self-attention over a fused `qkv (B, T, 3*D)` (or the head-major output of
    /// [`Graph::matmul_heads`]), giving `(B, T, D)`.
    pub fn attention(&mut self, name: &str, qkv: TensorId, heads: usize, scale: f32) -> Result<TensorId> {
        self.op(name, Op::Attention { heads, scale }, &[qkv])
    }

    /// Causal multi-head self-attention (each token attends to itself and the tokens before it).
    pub fn causal_attention(&mut self, name: &str, qkv: TensorId, heads: usize, scale: f32) -> Result<TensorId> {
        self.op(name, Op::CausalAttention { heads, scale }, &[qkv])
    }

    /// Attention probabilities of tokens `0..queries` over keys `first_key..T`.
    pub fn attention_probs(
        &mut self,
        name: &str,
        qkv: TensorId,
        heads: usize,
        scale: f32,
        queries: usize,
        first_key: usize,
    ) -> Result<TensorId> {
        self.op(name, Op::AttentionProbs { heads, scale, queries, first_key }, &[qkv])
    }

    /// Attention pooling: the learned `query (1, D)` (a weight) over `kv (B, T, 2*D)`, giving `(B, D)`.
    pub fn attention_pool(&mut self, name: &str, query: TensorId, kv: TensorId, heads: usize, scale: f32) -> Result<TensorId> {
        self.op(name, Op::AttentionPool { heads, scale }, &[query, kv])
    }

    /// [`Graph::attention`] over padded sequences: item b's queries attend to its first
    /// `lengths[b]` keys (`lengths`: a `(B)` input).
    pub fn masked_attention(&mut self, name: &str, qkv: TensorId, lengths: TensorId, heads: usize, scale: f32) -> Result<TensorId> {
        self.op(name, Op::MaskedAttention { heads, scale }, &[qkv, lengths])
    }

    /// [`Graph::attention_pool`] over padded sequences: item b pools its first `lengths[b]` tokens.
    pub fn masked_attention_pool(&mut self, name: &str, query: TensorId, kv: TensorId, lengths: TensorId, heads: usize, scale: f32) -> Result<TensorId> {
        self.op(name, Op::MaskedAttentionPool { heads, scale }, &[query, kv, lengths])
    }

    /// [`Graph::attention_pool_probs`] over padded sequences (0 past each item's length).
    pub fn masked_attention_pool_probs(&mut self, name: &str, query: TensorId, kv: TensorId, lengths: TensorId, heads: usize, scale: f32) -> Result<TensorId> {
        self.op(name, Op::MaskedAttentionPoolProbs { heads, scale }, &[query, kv, lengths])
    }

    /// What [`Graph::attention_pool`] attends to: `(B, heads, T)` probabilities.
    pub fn attention_pool_probs(&mut self, name: &str, query: TensorId, kv: TensorId, heads: usize, scale: f32) -> Result<TensorId> {
        self.op(name, Op::AttentionPoolProbs { heads, scale }, &[query, kv])
    }

    /// Layer norm over the last dimension.
    pub fn layer_norm(
        &mut self,
        name: &str,
        x: TensorId,
        gamma: TensorId,
        beta: TensorId,
        eps: f32,
    ) -> Result<TensorId> {
        self.op(name, Op::LayerNorm { eps }, &[x, gamma, beta])
    }

    /// Softmax over the last dimension.
    pub fn softmax(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.op(name, Op::Softmax, &[x])
    }

    /// `a + b` (same shapes).
    pub fn add(&mut self, name: &str, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.op(name, Op::Add, &[a, b])
    }

    /// `a * scale` with `scale` broadcast over the last dimension (layer scale).
    pub fn mul_row(&mut self, name: &str, a: TensorId, scale: TensorId) -> Result<TensorId> {
        self.op(name, Op::MulRow, &[a, scale])
    }

    /// Tokens `start..start+count` of `x (B, T, D)`, giving `(B, count, D)`.
    pub fn slice_tokens(&mut self, name: &str, x: TensorId, start: usize, count: usize) -> Result<TensorId> {
        self.op(name, Op::SliceTokens { start, count }, &[x])
    }

    /// Mean of tokens `start..start+count` of `x (B, T, D)`, giving `(B, D)`.
    pub fn mean_tokens(&mut self, name: &str, x: TensorId, start: usize, count: usize) -> Result<TensorId> {
        self.op(name, Op::MeanTokens { start, count }, &[x])
    }

    /// [`Graph::mean_tokens`] over padded sequences: item b's mean over its first
    /// `min(count, lengths[b])` tokens from `start`.
    pub fn masked_mean_tokens(&mut self, name: &str, x: TensorId, lengths: TensorId, start: usize, count: usize) -> Result<TensorId> {
        self.op(name, Op::MaskedMeanTokens { start, count }, &[x, lengths])
    }

    /// [`Graph::attention`] with ToMe's proportional attention: `log(sizes[b, key])` added to
    /// each logit (`sizes (B, T)`: the tokens each token stands for).
    pub fn sized_attention(&mut self, name: &str, qkv: TensorId, sizes: TensorId, heads: usize, scale: f32) -> Result<TensorId> {
        self.op(name, Op::SizedAttention { heads, scale }, &[qkv, sizes])
    }

    /// [`Graph::attention_probs`] with proportional attention.
    #[allow(clippy::too_many_arguments)]
    pub fn sized_attention_probs(&mut self, name: &str, qkv: TensorId, sizes: TensorId, heads: usize, scale: f32, queries: usize, first_key: usize) -> Result<TensorId> {
        self.op(name, Op::SizedAttentionProbs { heads, scale, queries, first_key }, &[qkv, sizes])
    }

    /// ToMe's bipartite soft matching of `x (B, T, D)` by the keys of `qkv` (averaged over
    /// heads), merging `r` tokens into others by their size-weighted mean; the first `protected`
    /// tokens are never merged. `sizes`: each token's size so far (None: 1 each). Returns the
    /// merged tokens `(B, T - r, D)`, each token's output row `(B, T)` and the new sizes
    /// `(B, T - r)` (see [`crate::ops::merge`]).
    #[allow(clippy::too_many_arguments)]
    pub fn merge(&mut self, name: &str, x: TensorId, qkv: TensorId, sizes: Option<TensorId>, heads: usize, r: usize, protected: usize) -> Result<(TensorId, TensorId, TensorId)> {
        let t = self.info(x).shape.get(1).copied().unwrap_or(0);
        let metric = self.op(&format!("{name}.metric"), Op::MergeMetric { heads }, &[qkv])?;
        let best = self.op(&format!("{name}.match"), Op::MergeMatch { protected }, &[metric])?;
        let dest = self.op(&format!("{name}.dest"), Op::MergeDest { tokens: t, r, protected }, &[best])?;
        let sized = sizes.is_some();
        let mut ins = vec![dest];
        ins.extend(sizes);
        let new_sizes = self.op(&format!("{name}.sizes"), Op::MergeSizes { tokens: t - r, sized }, &ins)?;
        let mut ins = vec![x, dest];
        ins.extend(sizes);
        let merged = self.op(name, Op::MergeTokens { tokens: t - r, sized }, &ins)?;
        Ok((merged, dest, new_sizes))
    }

    /// `groups (B, N)` (each original token's row) after one more merge's `dest (B, T)`.
    pub fn merge_compose(&mut self, name: &str, groups: TensorId, dest: TensorId) -> Result<TensorId> {
        self.op(name, Op::MergeCompose, &[groups, dest])
    }

    /// Concatenation along the last dimension.
    pub fn concat(&mut self, name: &str, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.op(name, Op::Concat, &[a, b])
    }
}
