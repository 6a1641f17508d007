//! The CLIP-style layout of a transformer tower's tensors, which `transformers`' CLIP, SigLIP and
//! SigLIP 2 towers (image and text) all use (modeling_clip.py's `CLIPEncoder`,
//! `CLIPTextEmbeddings`): `encoder.layers.{i}.self_attn.q_proj`, `.layer_norm1`, `.mlp.fc1`, ...,
//! relative to the tower's prefix. Shared by the families that write it, with the loaders of
//! its encoder and of its text tower's embeddings.

use crate::error::Result;
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::names::{engine, Linear, Norm};
use crate::model::shared::reader::{qkv_to, Reader, Sink};
use crate::model::shared::text_spec::TextConfig;

/// The patch convolution.
pub const PATCH: &str = "embeddings.patch_embedding";
/// Position embeddings, `(N, D)` (with the class token's first where the tower has one).
pub const POSITIONS: &str = "embeddings.position_embedding.weight";
/// The norm after the encoder (`post_layernorm`).
pub const POST_NORM: &str = "post_layernorm";

fn layer(i: usize) -> String {
    format!("encoder.layers.{i}")
}

/// Layer `i`'s norms.
pub fn norm(i: usize, which: Norm) -> String {
    format!("{}.{}", layer(i), if which == Norm::Before { "layer_norm1" } else { "layer_norm2" })
}

/// Layer `i`'s query, key or value projection (`part` 0, 1, 2).
pub fn attention(i: usize, part: usize) -> String {
    format!("{}.self_attn.{}", layer(i), ["q_proj", "k_proj", "v_proj"][part.min(2)])
}

/// Layer `i`'s attention output and MLP layers.
pub fn linear(i: usize, which: Linear) -> String {
    let n = match which {
        Linear::Proj => "self_attn.out_proj",
        Linear::Fc1 => "mlp.fc1",
        Linear::Fc2 => "mlp.fc2",
    };
    format!("{}.{n}", layer(i))
}

/// The encoder, image or text: per layer the two norms, query, key and value fused, the output
/// projection and the MLP, into the engine's names.
pub fn encoder_to(rd: &mut Reader, sink: &mut dyn Sink, layers: usize, d: usize, mlp: usize) -> Result<()> {
    for i in 0..layers {
        for which in [Norm::Before, Norm::After] {
            rd.norm_to(sink, &norm(i, which), engine::norm(i, which), d)?;
        }
        qkv_to(rd, sink, [0, 1, 2].map(|j| attention(i, j)), d, true, i)?;
        for (which, dims) in [(Linear::Proj, (d, d)), (Linear::Fc1, (d, mlp)), (Linear::Fc2, (mlp, d))] {
            rd.linear_to(sink, &linear(i, which), engine::linear(i, which), dims, None)?;
        }
    }
    Ok(())
}

/// A text tower (`model::text`): the encoder's weights and final norm into `sink`; returns the
/// token and position embeddings `(V, D)`, `(P, D)` for the host, and the reader (under the tower's
/// prefix: `text_model.`, none in transformers 5's text-model files) for the family's projection.
pub fn text_tower_to<'a>(ck: &'a Checkpoint, cfg: &TextConfig, sink: &mut dyn Sink) -> Result<(Reader<'a>, Vec<f32>, Vec<f32>)> {
    let prefix = if ck.has("text_model.embeddings.token_embedding.weight") { "text_model." } else { "" };
    let mut rd = Reader::new(ck, prefix);
    let d = cfg.hidden_size;
    let tokens = rd.get("embeddings.token_embedding.weight", &[cfg.vocab_size, d])?;
    let positions = rd.get("embeddings.position_embedding.weight", &[cfg.max_positions, d])?;
    encoder_to(&mut rd, sink, cfg.num_layers, d, cfg.intermediate_size)?;
    rd.norm_to(sink, "final_layer_norm", engine::final_norm(), d)?;
    Ok((rd, tokens, positions))
}
