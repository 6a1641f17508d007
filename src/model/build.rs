//! One graph builder for ViT, DeiT and DINOv2 (`transformers`' modeling_vit.py, modeling_deit.py,
//! modeling_dinov2.py): patch embedding with prefix tokens and position embeddings, pre-norm
//! encoder blocks, final layer norm, then the family's pooler or head. The graph's outputs are
//! returned by name.

use super::config::{Family, Head, ModelConfig};
use super::naming::{engine, Linear, Norm};
use crate::error::Result;
use crate::graph::ir::Graph;
use crate::ops::Activation;
use crate::tensor::{DType, TensorId};

/// What a run computes besides the model's own outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RunOptions {
    /// Every layer's output (`hidden_states` in transformers: the embeddings, then each layer).
    pub hidden_states: bool,
    /// The last layer's attention of the CLS token over the patches, per head.
    pub attention: bool,
    /// Per-op GPU timestamps (where the adapter supports them).
    pub profile: bool,
    /// Let the QKV projection write Q, K and V head-major, `(3, B, heads, T, head_dim)`, for the
    /// attention kernels; the same results through another memory layout. Needs the head dim and
    /// hidden size to be multiples of 4 (an error otherwise).
    pub qkv_heads: bool,
    /// Read back only the logits (models with a classifier head): no last hidden state or pooler
    /// output, which classification does not need (for ViT-B/16 at batch 64 the hidden state is
    /// 38 MB per run). Ignored for models without a head.
    pub logits_only: bool,
}

/// The graph's outputs by name (the tensors marked as outputs, read back after a run).
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    /// `(B, num_labels)`, where the model has a head.
    pub logits: Option<TensorId>,
    /// `(B, T, D)` after the final norm, unless only the logits are read.
    pub last_hidden_state: Option<TensorId>,
    /// `(B, D)`, where the model has a pooler (or is DINOv2), unless only the logits are read.
    pub pooler_output: Option<TensorId>,
    /// `(B, T, D)` each: the embeddings, then each layer, when asked for.
    pub hidden_states: Vec<TensorId>,
    /// `(B, heads, 1, N)`, when asked for.
    pub cls_attention: Option<TensorId>,
    /// `(B, P)`: the pooled features projected into the image-text space (CLIP), unless only the
    /// logits are read.
    pub image_embeds: Option<TensorId>,
}

/// The shape of a model's graph: its config, head, pooler and storage.
#[derive(Clone, Copy)]
pub struct Arch<'a> {
    /// The config.
    pub config: &'a ModelConfig,
    /// The head it runs.
    pub head: Head,
    /// Whether it has a pooler.
    pub pooler: bool,
    /// Whether it has a projection into an image-text space (CLIP).
    pub projection: bool,
    /// How weights and activations are stored.
    pub storage: DType,
}

/// A built graph: the graph, its outputs by name, and its position-embedding weight (per input
/// size, interpolated when the graph is compiled).
pub struct Built {
    /// The graph.
    pub graph: Graph,
    /// Its outputs.
    pub outputs: Outputs,
    /// The name of its position-embedding weight.
    pub positions: String,
}

/// The graph that runs `batch` images of `h` x `w`. Needs no device: with [`crate::plan_graph`] it
/// tells how much memory a run would take.
pub fn build_graph(arch: Arch, batch: usize, h: usize, w: usize, opts: RunOptions) -> Result<Built> {
    let cfg = arch.config;
    let (d, p) = (cfg.hidden_size, cfg.patch_size);
    if opts.qkv_heads && !(cfg.head_dim().is_multiple_of(4) && d.is_multiple_of(4)) {
        return Err(crate::Error::Input {
            name: "qkv_heads".into(),
            problem: format!("the head-major QKV layout needs the head dim and hidden size to be multiples of 4 (this model: {} and {d})", cfg.head_dim()),
        });
    }
    let (gh, gw) = (h / p, w / p);
    let prefix = cfg.prefix_tokens();
    let mut g = Graph::new();
    g.set_storage(arch.storage);
    let x = g.input("pixel_values", &[batch, cfg.num_channels, h, w]);
    let pos_name = engine::positions(gh, gw, h == w);
    let (pw, pb) = engine::patch();
    let patch_w = g.weight(&pw, &[cfg.num_channels * p * p, d]);
    let patch_b = g.weight(&pb, &[d]);
    let pos = g.weight(&pos_name, &[prefix + gh * gw, d]);
    let layout = &cfg.layout;
    let toks = (prefix > 0).then(|| g.weight(engine::prefix(), &[prefix, d]));
    let mut hs = g.patch_embed("embeddings", x, patch_w, patch_b, pos, toks, p)?;
    if layout.pre_norm {
        let (nw, nb) = engine::pre_norm();
        let (nw, nb) = (g.weight(&nw, &[d]), g.weight(&nb, &[d]));
        hs = g.layer_norm("pre_norm", hs, nw, nb, cfg.layer_norm_eps)?;
    }
    let mut hidden = vec![hs];
    let scale = 1.0 / (cfg.head_dim() as f32).sqrt();
    let mut last_qkv: Option<TensorId> = None;
    let linear = |g: &mut Graph, (wn, bn): (String, String), (inp, out): (usize, usize), x: TensorId, act: Activation, residual: Option<TensorId>| {
        let (wt, b) = (g.weight(&wn, &[inp, out]), g.weight(&bn, &[out]));
        let name = wn.trim_end_matches(".weight").to_string();
        g.matmul(&name, x, wt, Some(b), act, residual)
    };
    let spec = LayerSpec {
        d,
        heads: cfg.num_heads,
        mlp: cfg.intermediate_size,
        eps: cfg.layer_norm_eps,
        act: cfg.hidden_act,
        qkv_bias: cfg.qkv_bias,
        causal: false,
        qkv_heads: opts.qkv_heads,
    };
    for i in 0..cfg.num_layers {
        let (out, qkv) = encoder_layer(&mut g, &spec, i, hs)?;
        hs = out;
        hidden.push(hs);
        last_qkv = Some(qkv);
    }
    // With fc_norm the tokens stay unnormed and the norm follows the pooling.
    let (fw, fb) = if layout.fc_norm { engine::fc_norm() } else { engine::final_norm() };
    let (fw, fb) = (g.weight(&fw, &[d]), g.weight(&fb, &[d]));
    let seq = if layout.fc_norm { hs } else { g.layer_norm("last_hidden_state", hs, fw, fb, cfg.layer_norm_eps)? };
    let tokens = prefix + gh * gw;
    let n = cfg.labels.len();
    // Attention pooling (SigLIP's head, timm's `map`) over the normed patch tokens: the learned
    // query against keys and values of every token, the output projection, then a pre-norm MLP
    // with a residual.
    let map_pooled = if layout.pool_map {
        let patches = if prefix > 0 { g.slice_tokens("map.patches", seq, prefix, tokens - prefix)? } else { seq };
        let query = g.weight(&engine::map("query").0, &[1, d]);
        let kv = linear(&mut g, engine::map("kv"), (d, 2 * d), patches, Activation::None, None)?;
        let att = g.attention_pool("map.attention", query, kv, cfg.num_heads, scale)?;
        let x = linear(&mut g, engine::map("proj"), (d, d), att, Activation::None, None)?;
        let (nw, nb) = engine::map("ln");
        let (nw, nb) = (g.weight(&nw, &[d]), g.weight(&nb, &[d]));
        let h = g.layer_norm("map.ln", x, nw, nb, cfg.layer_norm_eps)?;
        let m = linear(&mut g, engine::map("fc1"), (d, cfg.intermediate_size), h, cfg.hidden_act, None)?;
        Some(linear(&mut g, engine::map("fc2"), (cfg.intermediate_size, d), m, Activation::None, Some(x))?)
    } else {
        None
    };
    // timm: the pooled features (forward_head's pre-logits): the class token (the mean of the
    // class and distillation tokens for DeiT distilled), the mean of the patch tokens or the
    // attention pooling, then fc_norm where the model has it.
    let timm_pooled = if matches!(cfg.family, Family::Timm | Family::Clip) {
        let pooled = if let Some(p) = map_pooled {
            p
        } else if layout.pool_avg {
            g.mean_tokens("pool", seq, prefix, tokens - prefix)?
        } else {
            g.mean_tokens("pool", seq, 0, 1 + layout.dist_token as usize)?
        };
        Some(if layout.fc_norm { g.layer_norm("fc_norm", pooled, fw, fb, cfg.layer_norm_eps)? } else { pooled })
    } else {
        None
    };

    // A token is selected as the mean of one token: (B, D), and an exact copy.
    let logits = match arch.head {
        Head::None => None,
        Head::Cls | Head::Avg if timm_pooled.is_some() => {
            Some(linear_named(&mut g, "logits", engine::head(), (d, n), timm_pooled.expect("pooled"), None)?)
        }
        Head::Avg => {
            let mean = g.mean_tokens("patch_mean", seq, prefix, tokens - prefix)?;
            Some(linear_named(&mut g, "logits", engine::head(), (d, n), mean, None)?)
        }
        Head::Cls => {
            let cls = g.mean_tokens("cls", seq, 0, 1)?;
            Some(linear_named(&mut g, "logits", engine::head(), (d, n), cls, None)?)
        }
        Head::ClsDistilled => {
            let cls = g.mean_tokens("cls", seq, 0, 1)?;
            let dist = g.mean_tokens("dist", seq, 1, 1)?;
            let half = linear_named(&mut g, "cls_logits", engine::head(), (d, n), cls, None)?;
            Some(linear_named(&mut g, "logits", engine::head_dist(), (d, n), dist, Some(half))?)
        }
        Head::ClsMeanPatch => {
            let cls = g.mean_tokens("cls", seq, 0, 1)?;
            let mean = g.mean_tokens("patch_mean", seq, prefix, tokens - prefix)?;
            let both = g.concat("cls_and_mean", cls, mean)?;
            Some(linear_named(&mut g, "logits", engine::head(), (2 * d, n), both, None)?)
        }
    };
    let pooled = if arch.pooler {
        let cls = g.mean_tokens("pooler_cls", seq, 0, 1)?;
        let (pw, pb) = engine::pooler();
        let (pw, pb) = (g.weight(&pw, &[d, d]), g.weight(&pb, &[d]));
        Some(g.matmul("pooler_output", cls, pw, Some(pb), Activation::Tanh, None)?)
    } else if cfg.family == Family::Dinov2 {
        Some(g.mean_tokens("pooler_output", seq, 0, 1)?)
    } else {
        timm_pooled.or(map_pooled)
    };
    let mut outputs = Outputs { logits, ..Default::default() };
    if !(opts.logits_only && logits.is_some()) {
        outputs.last_hidden_state = Some(seq);
        outputs.pooler_output = pooled;
        if let (Some(pd), Some(pooled)) = (cfg.projection_dim.filter(|_| arch.projection), pooled) {
            outputs.image_embeds = Some(linear_named(&mut g, "image_embeds", engine::projection(), (d, pd), pooled, None)?);
        } else if cfg.family == Family::Siglip && arch.projection {
            // SiglipModel: the pooled features are the image embeddings.
            outputs.image_embeds = pooled;
        }
    }
    if opts.hidden_states {
        outputs.hidden_states = hidden;
    }
    if opts.attention && layout.class_token {
        if let Some(qkv) = last_qkv {
            outputs.cls_attention = Some(g.attention_probs("cls_attention", qkv, cfg.num_heads, scale, 1, prefix)?);
        }
    }
    let marked = [outputs.logits, outputs.last_hidden_state, outputs.pooler_output, outputs.image_embeds];
    for t in marked.into_iter().flatten().chain(outputs.hidden_states.iter().copied()).chain(outputs.cls_attention) {
        g.output(t);
    }
    Ok(Built { graph: g, outputs, positions: pos_name })
}

/// One pre-norm encoder layer's shape: the image towers' and the text towers' alike.
pub(crate) struct LayerSpec {
    /// Width D.
    pub d: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP width.
    pub mlp: usize,
    /// Layer norm epsilon.
    pub eps: f32,
    /// The MLP's activation.
    pub act: Activation,
    /// Whether the fused QKV projection has a bias.
    pub qkv_bias: bool,
    /// Each token attends only to itself and the tokens before it (CLIP's text tower).
    pub causal: bool,
    /// The QKV projection writes head-major Q, K and V ([`RunOptions::qkv_heads`]).
    pub qkv_heads: bool,
}

/// Layer `i` (the engine's weight names) over `hs (B, T, D)`: `x1 = hs + proj(attention(ln1(hs)))`,
/// then `x1 + fc2(act(fc1(ln2(x1))))`. Returns the layer's output and its fused QKV tensor.
pub(crate) fn encoder_layer(g: &mut Graph, s: &LayerSpec, i: usize, hs: TensorId) -> Result<(TensorId, TensorId)> {
    let d = s.d;
    let ln = |g: &mut Graph, which: Norm, input: TensorId| -> Result<TensorId> {
        let (wn, bn) = engine::norm(i, which);
        let (w, b) = (g.weight(&wn, &[d]), g.weight(&bn, &[d]));
        g.layer_norm(wn.trim_end_matches(".weight"), input, w, b, s.eps)
    };
    let linear = |g: &mut Graph, (wn, bn): (String, String), (inp, out): (usize, usize), x: TensorId, act: Activation, residual: Option<TensorId>| {
        let (w, b) = (g.weight(&wn, &[inp, out]), g.weight(&bn, &[out]));
        g.matmul(wn.trim_end_matches(".weight"), x, w, Some(b), act, residual)
    };
    let h1 = ln(g, Norm::Before, hs)?;
    let (qw, qb) = engine::qkv(i);
    let qkv_w = g.weight(&qw, &[d, 3 * d]);
    let qkv_b = if s.qkv_bias { Some(g.weight(&qb, &[3 * d])) } else { None };
    let qkv_name = format!("layer.{i}.qkv");
    let qkv = if s.qkv_heads { g.matmul_heads(&qkv_name, h1, qkv_w, qkv_b, s.heads)? } else { g.matmul(&qkv_name, h1, qkv_w, qkv_b, Activation::None, None)? };
    let scale = 1.0 / ((d / s.heads) as f32).sqrt();
    let name = format!("layer.{i}.attention");
    let att = if s.causal { g.causal_attention(&name, qkv, s.heads, scale)? } else { g.attention(&name, qkv, s.heads, scale)? };
    let x1 = linear(g, engine::linear(i, Linear::Proj), (d, d), att, Activation::None, Some(hs))?;
    let h2 = ln(g, Norm::After, x1)?;
    let m = linear(g, engine::linear(i, Linear::Fc1), (d, s.mlp), h2, s.act, None)?;
    let out = linear(g, engine::linear(i, Linear::Fc2), (s.mlp, d), m, Activation::None, Some(x1))?;
    Ok((out, qkv))
}

/// A head's linear layer, `x (B, in) x W + b [+ residual]`, as node `name`.
fn linear_named(g: &mut Graph, name: &str, (wn, bn): (String, String), (inp, out): (usize, usize), x: TensorId, residual: Option<TensorId>) -> Result<TensorId> {
    let (wt, b) = (g.weight(&wn, &[inp, out]), g.weight(&bn, &[out]));
    g.matmul(name, x, wt, Some(b), Activation::None, residual)
}
