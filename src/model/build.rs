//! The graph of an image tower: the shared encoder (`model::shared::tower::encode`), then what
//! the model's family puts on top (`FamilyDef::heads`: pooling, classifier, projection), then the
//! outputs asked for, by name. Nothing here touches a device.

use crate::error::{Error, Result};
use crate::graph::ir::Graph;
use crate::model::families;
use crate::model::shared::tower::{encode, Arch, Encoded, RunOptions};
use crate::tensor::TensorId;

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
    /// `(B, heads, 1, N)` (the class token over the N patches), or `(B, heads, N)` (the
    /// attention-pooling query over them, for models without a class token), when asked for.
    pub cls_attention: Option<TensorId>,
    /// `(B, P)`: the pooled features projected into the image-text space (CLIP), unless only the
    /// logits are read.
    pub image_embeds: Option<TensorId>,
    /// With token merging and attention maps: `(B, T0)`, the row of the tokens the attention map
    /// covers that each original token (prefix first) went into, and `(B, T')` those tokens'
    /// sizes (None where no merge came before the map).
    pub merge_groups: Option<(TensorId, TensorId)>,
    /// With token merging: each layer's tokens and merge.
    pub merge: Vec<crate::model::LayerMerge>,
    /// `(B, H, W, 1)`: the depth head's output at the input's size, where the model has one.
    pub predicted_depth: Option<TensorId>,
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
    let def = families::of(cfg.family).ok_or_else(|| Error::model(format!("{:?}", cfg.family), "no image tower to build a graph for"))?;
    let mut g = Graph::new();
    let Encoded { tower, hidden, last_qkv, positions, merge } = encode(&mut g, arch, batch, h, w, opts)?;
    let heads = def.heads(&mut g, &tower)?;
    let mut outputs = Outputs { logits: heads.logits, ..Default::default() };
    if let Some(spec) = &cfg.depth {
        // The neck reads the hidden states at `out_indices` (through the final norm where its
        // spec says).
        if merge.is_some() {
            return Err(Error::Input { name: "merge".into(), problem: "a depth head reads every patch of its hidden states: token merging does not apply".into() });
        }
        if cfg.prefix_tokens() != 1 {
            return Err(Error::model(format!("{:?}", cfg.family), "the depth neck drops exactly one class token"));
        }
        let (nw, nb) = tower.final_norm;
        let mut features = Vec::new();
        for (k, &i) in spec.out_indices.iter().enumerate() {
            features.push(if !spec.normed {
                hidden[i]
            } else if i == cfg.num_layers && !cfg.layout.fc_norm {
                // The last layer's normed output is the last hidden state, already computed.
                tower.seq
            } else {
                g.layer_norm(&format!("depth.feature.{k}"), hidden[i], nw, nb, cfg.layer_norm_eps)?
            });
        }
        let p = cfg.patch_size;
        outputs.predicted_depth = Some(crate::model::shared::dpt::build(&mut g, spec, &features, (h / p, w / p), p)?);
    }
    if !(opts.logits_only && (heads.logits.is_some() || outputs.predicted_depth.is_some())) {
        outputs.last_hidden_state = Some(tower.seq);
        outputs.pooler_output = heads.pooled;
        outputs.image_embeds = heads.image_embeds;
    }
    if opts.hidden_states {
        outputs.hidden_states = hidden;
    }
    let (at_last_layer, at_end) = merge.as_ref().map_or((None, None), |m| (m.at_last_layer, m.at_end));
    if opts.attention && cfg.layout.class_token {
        if let Some(qkv) = last_qkv {
            let scale = 1.0 / (cfg.head_dim() as f32).sqrt();
            let (heads, prefix) = (cfg.num_heads, cfg.prefix_tokens());
            // The last layer's attention with proportional attention where tokens merged before it.
            outputs.cls_attention = Some(match at_last_layer {
                Some((_, sizes)) => g.sized_attention_probs("cls_attention", qkv, sizes, heads, scale, 1, prefix)?,
                None => g.attention_probs("cls_attention", qkv, heads, scale, 1, prefix)?,
            });
            outputs.merge_groups = at_last_layer;
        }
    } else if opts.attention {
        // Without a class token (SigLIP, SigLIP 2, timm's map pooling), what the pooling query
        // attends to: the attention that makes the embedding (over the tokens the encoder left).
        outputs.cls_attention = tower.pool_attention(&mut g)?;
        outputs.merge_groups = at_end.filter(|_| outputs.cls_attention.is_some());
    }
    outputs.merge = merge.map(|m| m.layers).unwrap_or_default();
    let marked = [outputs.logits, outputs.last_hidden_state, outputs.pooler_output, outputs.image_embeds, outputs.predicted_depth];
    let groups = outputs.merge_groups.into_iter().flat_map(|(a, b)| [a, b]);
    for t in marked.into_iter().flatten().chain(outputs.hidden_states.iter().copied()).chain(outputs.cls_attention).chain(groups) {
        g.output(t);
    }
    Ok(Built { graph: g, outputs, positions })
}
