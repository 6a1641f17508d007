//! The engine's weight names, each written once (as the graph and [`crate::Weights`] know them):
//! every family's loader writes its checkpoint's tensors under these names, and the graph builder
//! reads them. A checkpoint's own names are its family module's.

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

    /// Whether `name` is a layer's fused query-key-value weight.
    pub fn is_qkv(name: &str) -> bool {
        name.starts_with("layer.") && name.ends_with(".qkv.weight")
    }

    /// Whether `name` is a layer's second MLP weight (`fc2`), whose input is the first's output.
    pub fn is_mlp_second(name: &str) -> bool {
        name.starts_with("layer.") && name.ends_with(".fc2.weight")
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
