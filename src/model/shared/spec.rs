//! The engine's description of a checkpoint's image tower, whatever family wrote it: its shape
//! ([`ModelConfig`]), how its prefix tokens and norms sit around the encoder ([`Layout`]) and its
//! head ([`Head`]). Each family module fills one from its own `config.json`; the graph builder, the
//! runner and the facades read only this.

use crate::model::shared::quantized::QuantConfig;
use crate::ops::Activation;

/// Which family a checkpoint belongs to: the name of an entry of the family table
/// (`model::families`). Each family module defines its own constant (`Family::Vit`, ...); it prints
/// as that name (`Vit`, `Deit`, `Dinov2`, `Clip`, `Siglip`, `Timm`, `TextOnly`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Family(&'static str);

impl Family {
    /// A family named `name` (what `{:?}` prints and the package's `info().family` says).
    pub const fn named(name: &'static str) -> Family {
        Family(name)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        self.0
    }

    /// A text tower alone (CLIPTextModel, CLIPTextModelWithProjection, SiglipTextModel): no
    /// image tower, so the image fields of its config are 0. It loads as a text model
    /// (`model::text::TextModel`, `model::clip::TextEncoder`), not as a `Model`.
    #[allow(non_upper_case_globals)]
    pub const TextOnly: Family = Family("TextOnly");
}

impl std::fmt::Debug for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The head on top of the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// Base model (`ViTModel`, `DeiTModel`, `Dinov2Model`): no logits.
    None,
    /// A linear classifier on the CLS token (`ViTForImageClassification`, `DeiTForImageClassification`).
    Cls,
    /// Class and distillation heads averaged (`DeiTForImageClassificationWithTeacher`).
    ClsDistilled,
    /// A linear classifier on CLS concatenated with the mean patch token (`Dinov2ForImageClassification`).
    ClsMeanPatch,
    /// A linear classifier on the mean of the patch tokens (`timm`'s `global_pool="avg"`).
    Avg,
}

/// How the prefix tokens and norms are laid out around the encoder. `transformers`' ViT families
/// use the default; the other families set what their architecture uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// A class token first.
    pub class_token: bool,
    /// A distillation token after it (DeiT distilled).
    pub dist_token: bool,
    /// Register tokens after those.
    pub reg_tokens: usize,
    /// Whether the position embeddings cover the prefix tokens too (else only the patches; the
    /// prefix tokens get none).
    pub pos_prefix: bool,
    /// A layer norm before the encoder (`norm_pre`, CLIP image towers).
    pub pre_norm: bool,
    /// The final norm applied after pooling (`fc_norm`) instead of to every token.
    pub fc_norm: bool,
    /// Pooled features (`timm`): the mean of the patch tokens instead of the class token.
    pub pool_avg: bool,
    /// Pooled features from attention pooling with a learned query (SigLIP's head, `timm`'s
    /// `global_pool="map"`) over the normed tokens.
    pub pool_map: bool,
    /// Position embeddings resampled with antialiasing (`timm`) rather than as `transformers`
    /// does, and whenever the grid differs from the checkpoint's.
    pub pos_antialias: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Layout { class_token: true, dist_token: false, reg_tokens: 0, pos_prefix: true, pre_norm: false, fc_norm: false, pool_avg: false, pool_map: false, pos_antialias: false }
    }
}

/// The model's shape and options, validated.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Family.
    pub family: Family,
    /// Head, from `architectures` (or from the weights when absent).
    pub head: Option<Head>,
    /// `architectures[0]`, when given.
    pub architecture: Option<String>,
    /// Model width D.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Training resolution (height, width).
    pub image_size: (usize, usize),
    /// Patch size.
    pub patch_size: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Layer norm epsilon.
    pub layer_norm_eps: f32,
    /// Whether query/key/value have biases.
    pub qkv_bias: bool,
    /// Class names by index (`id2label`); empty for base models.
    pub labels: Vec<String>,
    /// How the Linear layers are quantized (`quantization_config`), if they are.
    pub quant: Option<QuantConfig>,
    /// Prefix tokens and norms.
    pub layout: Layout,
    /// The MLP's activation (GELU; quick GELU for CLIP-style towers).
    pub hidden_act: Activation,
    /// Width of the projection into an image-text space (CLIP's `projection_dim`), where the
    /// model has one.
    pub projection_dim: Option<usize>,
    /// A dense-prediction neck and head over the encoder's hidden states (Depth Anything's),
    /// where the model has one.
    pub depth: Option<DepthHead>,
}

impl ModelConfig {
    /// Prefix tokens before the patches: CLS, the distillation token for DeiT, registers.
    pub fn prefix_tokens(&self) -> usize {
        let l = &self.layout;
        l.class_token as usize + l.dist_token as usize + l.reg_tokens
    }

    /// Head dim.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
}

/// The neck and head of a depth checkpoint (`DepthAnythingConfig`, or `DPTConfig` with a ViT or
/// DINOv2 backbone); read, checked and built by `model::shared::dpt`.
#[derive(Clone, Debug, PartialEq)]
pub struct DepthHead {
    /// Whose neck and head: Depth Anything's or DPT's.
    pub style: DepthStyle,
    /// The backbone's hidden states the neck reads (0: the embeddings, i: layer i's output), in
    /// the order the neck takes them.
    pub out_indices: Vec<usize>,
    /// Whether the config named them as DPT's `backbone_out_indices` (its own ViT's layers from
    /// 0) rather than as a DINOv2 backbone's stages (hidden states); for messages.
    pub layer_indices: bool,
    /// Whether the neck reads those hidden states through the backbone's final norm (Depth
    /// Anything, DPT over a DINOv2 backbone) or as the layers left them (DPT's ViT).
    pub normed: bool,
    /// What each reassembled map takes of the class token.
    pub readout: DptReadout,
    /// The activation after `"project"`'s linear layer (the backbone's `hidden_act`).
    pub readout_act: Activation,
    /// Each reassembled map's scale against the patch grid (4, 2, 1, 0.5).
    pub reassemble_factors: Vec<f64>,
    /// Each reassembled map's channels.
    pub neck_hidden_sizes: Vec<usize>,
    /// Channels of the fusion stage.
    pub fusion_hidden_size: usize,
    /// Batch norm after each convolution of the fusion's residual units (folded into it at load).
    pub batch_norm: bool,
    /// Biases on the convolutions of the fusion's residual units.
    pub fusion_bias: bool,
    /// Channels of the head's second convolution.
    pub head_hidden_size: usize,
    /// Which fused map the head reads (negative: from the end).
    pub head_in_index: isize,
    /// DPT's `add_projection`: a 3x3 convolution (fusion width to fusion width, bias) and a ReLU
    /// on the fused map before the head.
    pub projection: bool,
    /// Metric depth (a sigmoid) rather than relative (a ReLU).
    pub metric: bool,
    /// The factor on the head's output.
    pub max_depth: f32,
}

/// Whose neck and head a [`DepthHead`] is (they differ in how the fusion upsamples and in the
/// head).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepthStyle {
    /// Depth Anything's (`modeling_depth_anything.py`): each fused map resized to the next map's
    /// size; the head resizes to the input's size.
    DepthAnything,
    /// DPT's (`modeling_dpt.py`): each fused map doubled (the next map resized to it where they
    /// differ); the head doubles once more.
    Dpt,
}

/// DPT's `readout_type`: what the reassembled maps take of the class token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DptReadout {
    /// Dropped.
    Ignore,
    /// Added to every patch token.
    Add,
    /// Appended to every patch token, then a linear layer back to the width and an activation.
    Project,
}
