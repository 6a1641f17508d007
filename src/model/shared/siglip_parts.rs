//! What SigLIP and SigLIP 2 share past their patch embeddings (`model/families/siglip.rs`,
//! `siglip2.rs`): the image tower's top (the post-norm of every token, the attention-pooling head,
//! the classifier on the mean token, a two-tower checkpoint's text tensors left for the text side),
//! the heads' graph, and the text tower with its always-projecting head.

use crate::error::{Error, Result};
use crate::graph::ir::Graph;
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::clip_layout as layout;
use crate::model::shared::names::engine;
use crate::model::shared::reader::{check_all_used, map_head_to, project_query, transpose, LinearWeight, Loaded, Positions, Reader, Sink};
use crate::model::shared::spec::Head;
use crate::model::shared::text_spec::{parse_text, text_num, TextConfig, TextDefaults, TextHost, TextKind};
use crate::model::shared::tower::{Heads, Tower};
use serde_json::Value;

/// The image tower after its patch embedding and positions: the encoder, the post-norm as the
/// final norm, then the attention-pooling head and the classifier on the mean token where the
/// checkpoint has them; `text` names the tensors of a two-tower checkpoint's text tower and scores
/// (known, read by the text side). A two-tower model's pooled features are its image embeddings.
pub fn tower_to(ck: &Checkpoint, mut rd: Reader, sink: &mut dyn Sink, text: &[&str], pos: Positions) -> Result<Loaded> {
    let cfg = &ck.config;
    let (d, mlp) = (cfg.hidden_size, cfg.intermediate_size);
    layout::encoder_to(&mut rd, sink, cfg.num_layers, d, mlp)?;
    rd.norm_to(sink, layout::POST_NORM, engine::final_norm(), d)?;
    if cfg.layout.pool_map {
        let probe = rd.get("head.probe", &[d])?;
        let w = rd.get("head.attention.in_proj_weight", &[3 * d, d])?;
        let b = rd.get("head.attention.in_proj_bias", &[3 * d])?;
        let query = project_query(&probe, &transpose(&w[..d * d], d, d), &b[..d]);
        let kv = (LinearWeight::F32(transpose(&w[d * d..], 2 * d, d)), b[d..].to_vec());
        map_head_to(&mut rd, sink, &query, kv, ["head.attention.out_proj", "head.layernorm", "head.mlp.fc1", "head.mlp.fc2"], d, mlp)?;
    }
    let head = cfg.head.unwrap_or(Head::None);
    let mut top = Reader::new(ck, "");
    if head == Head::Avg {
        let n = cfg.labels.len();
        if n == 0 {
            return Err(Error::model(format!("{}/config.json", ck.source), "the model has a classifier but no id2label / num_labels"));
        }
        top.linear_to(sink, "classifier", engine::head(), (d, n), None)?;
    }
    rd.used.extend(top.used);
    let mut two_tower = false;
    for t in ck.tensor_names() {
        if text.iter().any(|p| t.starts_with(p)) {
            two_tower = true;
            rd.used.insert(t);
        }
    }
    check_all_used(ck, &rd.used, head)?;
    Ok(Loaded { head, pooler: false, projection: two_tower && cfg.layout.pool_map, pos })
}

/// The heads' graph: the attention pooling where the tower has it, the classifier on the mean
/// token, and for a two-tower model the pooled features as the image embeddings.
pub fn heads(g: &mut Graph, t: &Tower) -> Result<Heads> {
    let pooled = if t.arch.config.layout.pool_map { Some(t.attention_pool(g)?) } else { None };
    let logits = t.logits(g, None)?;
    let image_embeds = if t.arch.projection { pooled } else { None };
    Ok(Heads { logits, pooled, image_embeds })
}

/// The text tower's config (`text_config` of `t`, the tower's JSON): its head always projects, to
/// `projection_size` (by default the width).
pub fn text_config(t: &Value, defaults: &TextDefaults, file: &str) -> Result<TextConfig> {
    let mut cfg = parse_text(t, TextKind::Siglip, defaults, file)?;
    cfg.projection_dim = Some(text_num(t, "projection_size", Some(cfg.hidden_size as u64), 16384, file)?);
    Ok(cfg)
}

/// The text tower's weights, its head (`head`, with a bias) as the projection.
pub fn load_text(ck: &Checkpoint, cfg: &TextConfig, sink: &mut dyn Sink) -> Result<TextHost> {
    let (mut rd, tokens, positions) = layout::text_tower_to(ck, cfg, sink)?;
    let projection = match cfg.projection_dim {
        Some(p) => {
            let (w, b) = rd.linear("head", cfg.hidden_size, p, true, None)?;
            Some((w.into_f32(), b))
        }
        None => None,
    };
    Ok((tokens, positions, projection))
}
