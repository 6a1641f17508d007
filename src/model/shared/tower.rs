//! The transformer encoder every image tower shares, as a graph: patch embedding with prefix
//! tokens and position embeddings, an optional norm before the encoder, pre-norm encoder layers,
//! the final norm ([`encode`]); and the pieces the families' heads are made of (attention
//! pooling, pooled features, classifier logits, projections). A family's `heads` adds what its
//! architecture puts on top (`FamilyDef::heads`). Nothing here touches a device.

use crate::error::Result;
use crate::graph::ir::Graph;
use crate::model::shared::merge::{LayerMerge, Merge};
use crate::model::shared::names::{engine, Linear, Norm};
use crate::model::shared::spec::{Head, ModelConfig};
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
    /// Read back only the head's output (the logits of a classifier, the depth of a depth model):
    /// no last hidden state or pooler output, which classification does not need (for ViT-B/16 at
    /// batch 64 the hidden state is 38 MB per run). Ignored for models without a head.
    pub logits_only: bool,
    /// Padded patch sequences (SigLIP 2 NaFlex batches of mixed grids, [`crate::Model::run_patches`]):
    /// the input holds each image's patches as one row of patches, padded to the longest; the
    /// graph adds a `positions (B, T, D)` input (each image's own) and a `lengths (B)` input, and
    /// attention and pooling skip each image's padding. Set by `run_patches`.
    pub masked: bool,
    /// Token merging (ToMe) in every encoder layer; None: the model's own setting
    /// ([`crate::LoadOptions::merge`]). As the graph sees it: None or `r = 0` merges nothing.
    pub merge: Option<Merge>,
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

/// The encoder's graph so far, as the family's heads see it.
pub struct Tower<'a> {
    /// The model.
    pub arch: Arch<'a>,
    /// The tokens after the encoder, `(B, T, D)`: normed by the final norm, except where the
    /// layout norms after pooling (`fc_norm`), where they are the last layer's output.
    pub seq: TensorId,
    /// The final norm's weight and bias (`fc_norm`'s where the layout norms after pooling).
    pub final_norm: (TensorId, TensorId),
    /// Tokens per image, prefix tokens included.
    pub tokens: usize,
    /// The attention-pooling head's query and keys/values once [`Tower::attention_pool`] has
    /// built them (for [`Tower::pool_attention`]).
    map_qkv: std::cell::Cell<Option<(TensorId, TensorId)>>,
    /// Padded sequences ([`RunOptions::masked`]): each image's tokens, `(B)`.
    pub lengths: Option<TensorId>,
}

/// What a family's heads add: the outputs besides the hidden states.
#[derive(Default)]
pub struct Heads {
    /// `(B, num_labels)`, where the model has a classifier.
    pub logits: Option<TensorId>,
    /// `(B, D)` (or the projection's width for SigLIP's two-tower model): `pooler_output`.
    pub pooled: Option<TensorId>,
    /// `(B, P)`: the image embeddings in an image-text space (before unit length).
    pub image_embeds: Option<TensorId>,
}

/// The encoder's outputs besides what [`Tower`] holds.
pub struct Encoded<'a> {
    /// What the heads see.
    pub tower: Tower<'a>,
    /// The embeddings, then each layer's output.
    pub hidden: Vec<TensorId>,
    /// The last layer's fused QKV tensor (for attention maps).
    pub last_qkv: Option<TensorId>,
    /// The name of the position-embedding weight of this input size.
    pub positions: String,
    /// Where tokens merge: each layer's share, and the maps behind attention maps.
    pub merge: Option<Merged>,
}

/// What merging tokens left, for attention maps.
pub struct Merged {
    /// Each layer's tokens and merge.
    pub layers: Vec<LayerMerge>,
    /// `(B, T0)`: each original token's row entering the last layer, and `(B, T_last)` the
    /// sizes there (None where nothing merged before it), when attention maps are asked for.
    pub at_last_layer: Option<(TensorId, TensorId)>,
    /// The same after the last layer.
    pub at_end: Option<(TensorId, TensorId)>,
}

/// The shared encoder for `batch` images of `h` x `w`: patch embedding (with the prefix tokens
/// and this grid's position embeddings, interpolated when the graph is compiled), the norm before
/// the encoder where the layout has one, the layers, then the final norm.
pub fn encode<'a>(g: &mut Graph, arch: Arch<'a>, batch: usize, h: usize, w: usize, opts: RunOptions) -> Result<Encoded<'a>> {
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
    // Padded sequences: `pos` is zeros, each image's own positions an input.
    let lengths = if opts.masked {
        if prefix > 0 {
            return Err(crate::Error::model("masked", "padded patch sequences are for models without prefix tokens (SigLIP 2 NaFlex)"));
        }
        let own = g.input("positions", &[batch, gh * gw, d]);
        hs = g.add("embeddings.positions", hs, own)?;
        Some(g.input("lengths", &[batch]))
    } else {
        None
    };
    if layout.pre_norm {
        let (nw, nb) = engine::pre_norm();
        let (nw, nb) = (g.weight(&nw, &[d]), g.weight(&nb, &[d]));
        hs = g.layer_norm("pre_norm", hs, nw, nb, cfg.layer_norm_eps)?;
    }
    let mut hidden = vec![hs];
    let mut last_qkv: Option<TensorId> = None;
    let tokens0 = prefix + gh * gw;
    let merge = opts.merge.filter(Merge::is_on);
    let layers = merge.map(|m| m.plan(cfg.num_layers, tokens0, prefix));
    if merge.is_some() {
        check_merge(arch, tokens0, opts)?;
    }
    let spec = LayerSpec {
        d,
        heads: cfg.num_heads,
        mlp: cfg.intermediate_size,
        eps: cfg.layer_norm_eps,
        act: cfg.hidden_act,
        qkv_bias: cfg.qkv_bias,
        causal: false,
        qkv_heads: opts.qkv_heads,
        lengths,
    };
    // Merging: each token's size, and each original token's row (for attention maps).
    let (mut sizes, mut groups): (Option<TensorId>, Option<TensorId>) = (None, None);
    let mut at_last_layer = None;
    for i in 0..cfg.num_layers {
        if i + 1 == cfg.num_layers {
            at_last_layer = groups.zip(sizes);
        }
        let r = layers.as_ref().map_or(0, |l| l[i].r);
        let (out, qkv, merged) = encoder_layer_merging(g, &spec, i, hs, sizes, (r, prefix))?;
        if let Some((dest, new_sizes)) = merged {
            sizes = Some(new_sizes);
            if opts.attention {
                groups = Some(match groups {
                    Some(before) => g.merge_compose(&format!("layer.{i}.merge.groups"), before, dest)?,
                    None => dest,
                });
            }
        }
        hs = out;
        hidden.push(hs);
        last_qkv = Some(qkv);
    }
    let tokens = g.info(hs).shape[1];
    let merge = layers.map(|layers| Merged { layers, at_last_layer, at_end: groups.zip(sizes) });
    // With fc_norm the tokens stay unnormed and the norm follows the pooling.
    let (fw, fb) = if layout.fc_norm { engine::fc_norm() } else { engine::final_norm() };
    let (fw, fb) = (g.weight(&fw, &[d]), g.weight(&fb, &[d]));
    let seq = if layout.fc_norm { hs } else { g.layer_norm("last_hidden_state", hs, fw, fb, cfg.layer_norm_eps)? };
    let tower = Tower { arch, seq, final_norm: (fw, fb), tokens, map_qkv: Default::default(), lengths };
    Ok(Encoded { tower, hidden, last_qkv, positions: pos_name, merge })
}

/// Whether this run can merge tokens: not over padded sequences (padding would merge), and with
/// f16 storage only where f16 holds every token index exactly.
fn check_merge(arch: Arch, tokens: usize, opts: RunOptions) -> Result<()> {
    let bad = |p: String| Err(crate::Error::Input { name: "merge".into(), problem: p });
    if opts.masked {
        return bad("token merging runs on images each on its own grid, not on padded patch sequences".into());
    }
    if tokens > crate::ops::merge::MAX_TOKENS {
        return bad(format!("token merging takes at most {} tokens per image; this input has {tokens}", crate::ops::merge::MAX_TOKENS));
    }
    if arch.storage == DType::F16 && tokens > 2048 {
        return bad(format!("token merging with f16 storage takes at most 2048 tokens per image (f16 holds the token indices exactly up to there); this input has {tokens}"));
    }
    Ok(())
}

impl Tower<'_> {
    fn config(&self) -> &ModelConfig {
        self.arch.config
    }

    /// Attention pooling (SigLIP's head, timm's `map`) over the normed patch tokens: the learned
    /// query against keys and values of every token, the output projection, then a pre-norm MLP
    /// with a residual (the engine's `map.*` weights).
    pub fn attention_pool(&self, g: &mut Graph) -> Result<TensorId> {
        let cfg = self.config();
        let (d, prefix) = (cfg.hidden_size, cfg.prefix_tokens());
        let patches = if prefix > 0 { g.slice_tokens("map.patches", self.seq, prefix, self.tokens - prefix)? } else { self.seq };
        let query = g.weight(&engine::map("query").0, &[1, d]);
        let kv = linear(g, engine::map("kv"), (d, 2 * d), patches, Activation::None, None)?;
        let scale = 1.0 / (cfg.head_dim() as f32).sqrt();
        let att = match self.lengths {
            Some(lengths) => g.masked_attention_pool("map.attention", query, kv, lengths, cfg.num_heads, scale)?,
            None => g.attention_pool("map.attention", query, kv, cfg.num_heads, scale)?,
        };
        self.map_qkv.set(Some((query, kv)));
        let x = linear(g, engine::map("proj"), (d, d), att, Activation::None, None)?;
        let (nw, nb) = engine::map("ln");
        let (nw, nb) = (g.weight(&nw, &[d]), g.weight(&nb, &[d]));
        let h = g.layer_norm("map.ln", x, nw, nb, cfg.layer_norm_eps)?;
        let m = linear(g, engine::map("fc1"), (d, cfg.intermediate_size), h, cfg.hidden_act, None)?;
        linear(g, engine::map("fc2"), (cfg.intermediate_size, d), m, Activation::None, Some(x))
    }

    /// What the attention-pooling head's query attends to, `(B, heads, patches)`, where the
    /// heads pooled that way; None otherwise.
    pub fn pool_attention(&self, g: &mut Graph) -> Result<Option<TensorId>> {
        let Some((query, kv)) = self.map_qkv.get() else { return Ok(None) };
        let cfg = self.config();
        let scale = 1.0 / (cfg.head_dim() as f32).sqrt();
        Ok(Some(match self.lengths {
            Some(lengths) => g.masked_attention_pool_probs("pool_attention", query, kv, lengths, cfg.num_heads, scale)?,
            None => g.attention_pool_probs("pool_attention", query, kv, cfg.num_heads, scale)?,
        }))
    }

    /// The mean of the patch tokens (of each image's own, for padded sequences).
    pub fn mean_patches(&self, g: &mut Graph, name: &str) -> Result<TensorId> {
        let prefix = self.config().prefix_tokens();
        match self.lengths {
            Some(lengths) => g.masked_mean_tokens(name, self.seq, lengths, prefix, self.tokens - prefix),
            None => g.mean_tokens(name, self.seq, prefix, self.tokens - prefix),
        }
    }

    /// The pooled features as `timm`'s `forward_head` computes them before the classifier: the
    /// attention pooling where given, else the mean of the patch tokens (`pool_avg`) or the class
    /// token (the mean of the class and distillation tokens for DeiT distilled), then `fc_norm`
    /// where the layout norms after pooling.
    pub fn pooled_features(&self, g: &mut Graph, map_pooled: Option<TensorId>) -> Result<TensorId> {
        let cfg = self.config();
        let layout = &cfg.layout;
        let pooled = if let Some(p) = map_pooled {
            p
        } else if layout.pool_avg {
            self.mean_patches(g, "pool")?
        } else {
            g.mean_tokens("pool", self.seq, 0, 1 + layout.dist_token as usize)?
        };
        let (fw, fb) = self.final_norm;
        Ok(if layout.fc_norm { g.layer_norm("fc_norm", pooled, fw, fb, cfg.layer_norm_eps)? } else { pooled })
    }

    /// The classifier's logits for `head`: from `pooled` features where the family pools before
    /// its classifier (`Cls`, `Avg`), else from the tokens (the class token; the class and
    /// distillation heads summed, each pre-scaled by 1/2; the class token and the patch mean
    /// concatenated; the patch mean).
    pub fn logits(&self, g: &mut Graph, pooled: Option<TensorId>) -> Result<Option<TensorId>> {
        let cfg = self.config();
        let (d, n, seq) = (cfg.hidden_size, cfg.labels.len(), self.seq);
        // A token is selected as the mean of one token: (B, D), and an exact copy.
        Ok(match self.arch.head {
            Head::None => None,
            Head::Cls | Head::Avg if pooled.is_some() => Some(linear_named(g, "logits", engine::head(), (d, n), pooled.expect("pooled"), None)?),
            Head::Avg => {
                let mean = self.mean_patches(g, "patch_mean")?;
                Some(linear_named(g, "logits", engine::head(), (d, n), mean, None)?)
            }
            Head::Cls => {
                let cls = g.mean_tokens("cls", seq, 0, 1)?;
                Some(linear_named(g, "logits", engine::head(), (d, n), cls, None)?)
            }
            Head::ClsDistilled => {
                let cls = g.mean_tokens("cls", seq, 0, 1)?;
                let dist = g.mean_tokens("dist", seq, 1, 1)?;
                let half = linear_named(g, "cls_logits", engine::head(), (d, n), cls, None)?;
                Some(linear_named(g, "logits", engine::head_dist(), (d, n), dist, Some(half))?)
            }
            Head::ClsMeanPatch => {
                let cls = g.mean_tokens("cls", seq, 0, 1)?;
                let mean = self.mean_patches(g, "patch_mean")?;
                let both = g.concat("cls_and_mean", cls, mean)?;
                Some(linear_named(g, "logits", engine::head(), (2 * d, n), both, None)?)
            }
        })
    }

    /// `pooled` projected into the image-text space (the engine's `image_proj` weights), where the
    /// model has a projection and the config its width.
    pub fn projection(&self, g: &mut Graph, pooled: TensorId) -> Result<Option<TensorId>> {
        let cfg = self.config();
        match cfg.projection_dim.filter(|_| self.arch.projection) {
            Some(pd) => Ok(Some(linear_named(g, "image_embeds", engine::projection(), (cfg.hidden_size, pd), pooled, None)?)),
            None => Ok(None),
        }
    }
}

/// One pre-norm encoder layer's shape: the image towers' and the text towers' alike.
pub struct LayerSpec {
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
    /// Padded sequences: each sequence's tokens, `(B)`; attention skips the keys past them.
    pub lengths: Option<TensorId>,
}

/// Layer `i` (the engine's weight names) over `hs (B, T, D)`: `x1 = hs + proj(attention(ln1(hs)))`,
/// then `x1 + fc2(act(fc1(ln2(x1))))`. Returns the layer's output and its fused QKV tensor.
pub fn encoder_layer(g: &mut Graph, s: &LayerSpec, i: usize, hs: TensorId) -> Result<(TensorId, TensorId)> {
    let (out, qkv, _) = encoder_layer_merging(g, s, i, hs, None, (0, 0))?;
    Ok((out, qkv))
}

/// [`encoder_layer`] with ToMe (a ToMe block): attention with `log(size)` on each key's logit
/// where `sizes` are given, then, where `r > 0`, `r` tokens merged between attention and MLP
/// (the first `protected` never). Returns the output, the QKV tensor and, where it merged, each
/// token's output row and the new sizes.
#[allow(clippy::type_complexity)]
pub fn encoder_layer_merging(
    g: &mut Graph,
    s: &LayerSpec,
    i: usize,
    hs: TensorId,
    sizes: Option<TensorId>,
    (r, protected): (usize, usize),
) -> Result<(TensorId, TensorId, Option<(TensorId, TensorId)>)> {
    let d = s.d;
    let ln = |g: &mut Graph, which: Norm, input: TensorId| -> Result<TensorId> {
        let (wn, bn) = engine::norm(i, which);
        let (w, b) = (g.weight(&wn, &[d]), g.weight(&bn, &[d]));
        g.layer_norm(wn.trim_end_matches(".weight"), input, w, b, s.eps)
    };
    let h1 = ln(g, Norm::Before, hs)?;
    let (qw, qb) = engine::qkv(i);
    let qkv_w = g.weight(&qw, &[d, 3 * d]);
    let qkv_b = if s.qkv_bias { Some(g.weight(&qb, &[3 * d])) } else { None };
    let qkv_name = format!("layer.{i}.qkv");
    let qkv = if s.qkv_heads { g.matmul_heads(&qkv_name, h1, qkv_w, qkv_b, s.heads)? } else { g.matmul(&qkv_name, h1, qkv_w, qkv_b, Activation::None, None)? };
    let scale = 1.0 / ((d / s.heads) as f32).sqrt();
    let name = format!("layer.{i}.attention");
    let att = match (s.lengths, sizes) {
        (Some(lengths), _) => g.masked_attention(&name, qkv, lengths, s.heads, scale)?,
        (None, Some(sizes)) => g.sized_attention(&name, qkv, sizes, s.heads, scale)?,
        (None, None) if s.causal => g.causal_attention(&name, qkv, s.heads, scale)?,
        (None, None) => g.attention(&name, qkv, s.heads, scale)?,
    };
    let mut x1 = linear(g, engine::linear(i, Linear::Proj), (d, d), att, Activation::None, Some(hs))?;
    let mut merged = None;
    if r > 0 {
        let (x, dest, new_sizes) = g.merge(&format!("layer.{i}.merge"), x1, qkv, sizes, s.heads, r, protected)?;
        x1 = x;
        merged = Some((dest, new_sizes));
    }
    let h2 = ln(g, Norm::After, x1)?;
    let m = linear(g, engine::linear(i, Linear::Fc1), (d, s.mlp), h2, s.act, None)?;
    let out = linear(g, engine::linear(i, Linear::Fc2), (s.mlp, d), m, Activation::None, Some(x1))?;
    Ok((out, qkv, merged))
}

/// A linear layer with the engine's weights `(wn, bn)`, `x (.., in) x W + b`, through `act`,
/// plus `residual`, as a node named after the weight.
pub fn linear(g: &mut Graph, (wn, bn): (String, String), (inp, out): (usize, usize), x: TensorId, act: Activation, residual: Option<TensorId>) -> Result<TensorId> {
    let (w, b) = (g.weight(&wn, &[inp, out]), g.weight(&bn, &[out]));
    g.matmul(wn.trim_end_matches(".weight"), x, w, Some(b), act, residual)
}

/// A head's linear layer, `x (B, in) x W + b [+ residual]`, as node `name`.
pub fn linear_named(g: &mut Graph, name: &str, (wn, bn): (String, String), (inp, out): (usize, usize), x: TensorId, residual: Option<TensorId>) -> Result<TensorId> {
    let (wt, b) = (g.weight(&wn, &[inp, out]), g.weight(&bn, &[out]));
    g.matmul(name, x, wt, Some(b), Activation::None, residual)
}
