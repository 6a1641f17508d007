//! Weight names, each written once: the engine's (as the graph and [`crate::Weights`] know them)
//! and the checkpoint's (as `transformers` writes them, relative to the model's prefix such as
//! `vit.`). Loading, graph building and the built-in random checkpoints all use these functions.

use super::config::Family;

/// The two layer norms of an encoder layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// Before attention.
    Before,
    /// Before the MLP.
    After,
}

/// The linear layers of an encoder layer besides the fused QKV projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linear {
    /// Attention output projection.
    Proj,
    /// MLP up-projection.
    Fc1,
    /// MLP down-projection.
    Fc2,
}

/// `(weight, bias)` names of a layer with prefix `p`.
fn pair(p: &str) -> (String, String) {
    (format!("{p}.weight"), format!("{p}.bias"))
}

/// The engine's names.
pub mod engine {
    use super::{pair, Linear, Norm};

    /// Patch projection `(C*p*p, D)` and its bias `(D)`.
    pub fn patch() -> (String, String) {
        pair("patch")
    }

    /// Prefix tokens (class, distillation) `(P, D)`.
    pub fn prefix() -> &'static str {
        "prefix"
    }

    /// Position embeddings `(P + gh*gw, D)` for a `gh` x `gw` grid of a square or other image
    /// (interpolated per graph).
    pub fn positions(gh: usize, gw: usize, square: bool) -> String {
        format!("pos.{gh}x{gw}.{}", if square { "sq" } else { "rect" })
    }

    /// Layer `i`'s norm.
    pub fn norm(i: usize, which: Norm) -> (String, String) {
        pair(&format!("layer.{i}.{}", if which == Norm::Before { "ln1" } else { "ln2" }))
    }

    /// Layer `i`'s fused query-key-value projection `(D, 3D)` and bias `(3D)`.
    pub fn qkv(i: usize) -> (String, String) {
        pair(&format!("layer.{i}.qkv"))
    }

    /// Layer `i`'s other linear layers, as `(in, out)` and `(out)`.
    pub fn linear(i: usize, which: Linear) -> (String, String) {
        let l = match which {
            Linear::Proj => "proj",
            Linear::Fc1 => "fc1",
            Linear::Fc2 => "fc2",
        };
        pair(&format!("layer.{i}.{l}"))
    }

    /// The final layer norm.
    pub fn final_norm() -> (String, String) {
        pair("final_ln")
    }

    /// The layer norm before the encoder (`timm`'s `norm_pre`).
    pub fn pre_norm() -> (String, String) {
        pair("pre_ln")
    }

    /// The layer norm after pooling (`timm`'s `fc_norm`).
    pub fn fc_norm() -> (String, String) {
        pair("fc_ln")
    }

    /// The projection into an image-text space (CLIP's `visual_projection`).
    pub fn projection() -> (String, String) {
        pair("image_proj")
    }

    /// The attention-pooling head: `query` (its learned query already projected, `(1, D)`),
    /// `kv` (`(D, 2D)`), `proj`, `ln`, `fc1`, `fc2`.
    pub fn map(part: &str) -> (String, String) {
        pair(&format!("map.{part}"))
    }

    /// The pooler's dense layer.
    pub fn pooler() -> (String, String) {
        pair("pooler")
    }

    /// The classifier (for DeiT with a teacher: the class-token head).
    pub fn head() -> (String, String) {
        pair("head")
    }

    /// DeiT's distillation-token head.
    pub fn head_dist() -> (String, String) {
        pair("head_dist")
    }
}

/// The checkpoint's names, relative to the model prefix (`vit.`, `deit.`, `dinov2.` or none);
/// heads sit at the top level.
pub mod hf {
    use super::{Family, Linear, Norm};

    /// Class token.
    pub const CLS_TOKEN: &str = "embeddings.cls_token";
    /// DeiT's distillation token.
    pub const DISTILLATION_TOKEN: &str = "embeddings.distillation_token";
    /// Mask token (masked image modeling only; never used here).
    pub const MASK_TOKEN: &str = "embeddings.mask_token";
    /// Position embeddings.
    pub const POSITIONS: &str = "embeddings.position_embeddings";
    /// The patch projection (a `Conv2d`).
    pub const PATCH: &str = "embeddings.patch_embeddings.projection";
    /// The final layer norm.
    pub const FINAL_NORM: &str = "layernorm";
    /// The pooler's dense layer.
    pub const POOLER: &str = "pooler.dense";
    /// The classifier.
    pub const CLASSIFIER: &str = "classifier";
    /// DeiT with a teacher: the class-token head.
    pub const CLS_CLASSIFIER: &str = "cls_classifier";
    /// DeiT with a teacher: the distillation-token head.
    pub const DISTILLATION_CLASSIFIER: &str = "distillation_classifier";

    fn layer(i: usize) -> String {
        format!("encoder.layer.{i}")
    }

    /// Layer `i`'s norm.
    pub fn norm(family: Family, i: usize, which: Norm) -> String {
        let n = match (family, which) {
            (Family::Dinov2, Norm::Before) => "norm1",
            (Family::Dinov2, Norm::After) => "norm2",
            (_, Norm::Before) => "layernorm_before",
            (_, Norm::After) => "layernorm_after",
        };
        format!("{}.{n}", layer(i))
    }

    /// Layer `i`'s query, key or value projection (`part` 0, 1, 2).
    pub fn attention(i: usize, part: usize) -> String {
        format!("{}.attention.attention.{}", layer(i), ["query", "key", "value"][part.min(2)])
    }

    /// Layer `i`'s other linear layers.
    pub fn linear(family: Family, i: usize, which: Linear) -> String {
        let n = match (family, which) {
            (_, Linear::Proj) => "attention.output.dense",
            (Family::Dinov2, Linear::Fc1) => "mlp.fc1",
            (Family::Dinov2, Linear::Fc2) => "mlp.fc2",
            (_, Linear::Fc1) => "intermediate.dense",
            (_, Linear::Fc2) => "output.dense",
        };
        format!("{}.{n}", layer(i))
    }

    /// DINOv2's layer scale after attention (1) or the MLP (2).
    pub fn layer_scale(i: usize, which: Norm) -> String {
        format!("{}.layer_scale{}.lambda1", layer(i), if which == Norm::Before { 1 } else { 2 })
    }
}

/// `timm`'s names (vision_transformer.py, deit.py), at the top level of the state dict.
pub mod timm {
    use super::{Linear, Norm};

    /// The class token, `(1, 1, D)`.
    pub const CLS_TOKEN: &str = "cls_token";
    /// The distillation token (DeiT distilled).
    pub const DIST_TOKEN: &str = "dist_token";
    /// Register tokens, `(1, R, D)`.
    pub const REG_TOKEN: &str = "reg_token";
    /// Position embeddings, `(1, L, D)`.
    pub const POSITIONS: &str = "pos_embed";
    /// The patch convolution.
    pub const PATCH: &str = "patch_embed.proj";
    /// The norm before the encoder.
    pub const NORM_PRE: &str = "norm_pre";
    /// The final norm.
    pub const NORM: &str = "norm";
    /// The norm after pooling.
    pub const FC_NORM: &str = "fc_norm";
    /// The classifier.
    pub const HEAD: &str = "head";
    /// The distillation classifier.
    pub const HEAD_DIST: &str = "head_dist";

    /// Block `i`'s layer norm before attention or before the MLP.
    pub fn norm(i: usize, which: Norm) -> String {
        format!("blocks.{i}.{}", if which == Norm::Before { "norm1" } else { "norm2" })
    }

    /// Block `i`'s fused query-key-value projection, `(3 * D, D)`.
    pub fn qkv(i: usize) -> String {
        format!("blocks.{i}.attn.qkv")
    }

    /// Block `i`'s attention output projection or MLP layers.
    pub fn linear(i: usize, which: Linear) -> String {
        let n = match which {
            Linear::Proj => "attn.proj",
            Linear::Fc1 => "mlp.fc1",
            Linear::Fc2 => "mlp.fc2",
        };
        format!("blocks.{i}.{n}")
    }

    /// Block `i`'s layer scale after attention (`ls1`) or after the MLP (`ls2`).
    pub fn layer_scale(i: usize, which: Norm) -> String {
        format!("blocks.{i}.ls{}.gamma", if which == Norm::Before { 1 } else { 2 })
    }
}

/// `transformers`' CLIP image tower (modeling_clip.py), relative to the tower's prefix
/// (`vision_model.` in CLIPModel and CLIPVisionModelWithProjection files, and in CLIPVisionModel
/// files of transformers 4; none in those transformers 5 writes); the projection at the top level.
pub mod clip {
    use super::{Linear, Norm};

    /// The class embedding, `(D)`.
    pub const CLASS: &str = "embeddings.class_embedding";
    /// The patch convolution (no bias).
    pub const PATCH: &str = "embeddings.patch_embedding";
    /// Position embeddings, `(1 + N, D)`.
    pub const POSITIONS: &str = "embeddings.position_embedding.weight";
    /// The norm before the encoder.
    pub const PRE_NORM: &str = "pre_layrnorm";
    /// The norm of the pooled class token.
    pub const POST_NORM: &str = "post_layernorm";
    /// The projection into the image-text space, `(P, D)`, no bias.
    pub const PROJECTION: &str = "visual_projection";
    /// Tensors of a CLIPModel's text tower and similarity scale (read by the text tower).
    pub const TEXT: [&str; 3] = ["text_model.", "text_projection.", "logit_scale"];

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
}
