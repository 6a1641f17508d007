//! The engine's description of a text tower ([`TextConfig`]), and the fields every
//! `transformers` text config shares, read once; the families with text towers (CLIP, SigLIP)
//! give their defaults and their own fields.

use crate::error::{Error, Result};
use crate::model::shared::spec::{Family, Head, Layout, ModelConfig};
use crate::ops::Activation;
use serde_json::Value;

/// How a text tower runs, pools and is fed: the two layouts the hub's image-text models use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// CLIP: causal mask, pooled at the end-of-text token, projection without bias; texts padded
    /// to the longest; scores a softmax over the labels.
    Clip,
    /// SigLIP: no mask, pooled at the last position through a head with bias; texts padded to
    /// every position, as its processor does (`padding="max_length"`); scores a sigmoid per label.
    Siglip,
}

impl TextKind {
    /// Each token attends only to itself and those before it.
    pub fn causal(self) -> bool {
        self == TextKind::Clip
    }

    /// Pooled at the last position (else at the end-of-text token), through the tower's own head,
    /// whose output is also the pooler output.
    pub fn pools_last(self) -> bool {
        self == TextKind::Siglip
    }

    /// Texts padded to every position (else to the longest).
    pub fn pads_to_max(self) -> bool {
        self == TextKind::Siglip
    }

    /// May tokenize with a SentencePiece `spiece.model` where the checkpoint has no
    /// `tokenizer.json`.
    pub fn reads_sentencepiece(self) -> bool {
        self == TextKind::Siglip
    }

    /// Zero-shot scores are each label's sigmoid (with a learned bias), else a softmax over the
    /// labels.
    pub fn sigmoid_scores(self) -> bool {
        self == TextKind::Siglip
    }
}

/// The text tower's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct TextConfig {
    /// CLIP's or SigLIP's.
    pub kind: TextKind,
    /// The padding token (`pad_token_id`).
    pub pad_token_id: u32,
    /// Model width D.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Token vocabulary.
    pub vocab_size: usize,
    /// Positions (the longest text, in tokens).
    pub max_positions: usize,
    /// Layer norm epsilon.
    pub layer_norm_eps: f32,
    /// The MLP's activation.
    pub hidden_act: Activation,
    /// The end-of-text token: the pooled position is its first occurrence; with id 2 (configs
    /// written before transformers fixed it) the position of the largest id, as transformers does.
    pub eos_token_id: u32,
    /// Width of the image-text space, where the model has a projection.
    pub projection_dim: Option<usize>,
}

/// A text tower's host-side tensors: token embeddings `(V, D)`, position embeddings `(P, D)`, and
/// the projection `(D, P)` with its bias, where the model has one.
pub type TextHost = (Vec<f32>, Vec<f32>, Option<(Vec<f32>, Option<Vec<f32>>)>);

/// A text config class's defaults for the fields a hub config may leave out.
pub struct TextDefaults {
    /// `hidden_size`.
    pub hidden_size: u64,
    /// `num_attention_heads`.
    pub heads: u64,
    /// `intermediate_size`.
    pub intermediate_size: u64,
    /// `vocab_size`.
    pub vocab_size: u64,
    /// `max_position_embeddings`.
    pub positions: u64,
    /// `hidden_act`.
    pub act: &'static str,
    /// `layer_norm_eps`.
    pub eps: f64,
}

/// The text config `t` of kind `kind` with its class's `defaults`; the projection width is the
/// family's to set. `file` names config.json in errors.
pub fn parse_text(t: &Value, kind: TextKind, defaults: &TextDefaults, file: &str) -> Result<TextConfig> {
    let bad = |p: String| Error::model(file, p);
    let hidden_size = text_num(t, "hidden_size", Some(defaults.hidden_size), 16384, file)?;
    let num_heads = text_num(t, "num_attention_heads", Some(defaults.heads), 1024, file)?;
    if !hidden_size.is_multiple_of(num_heads) || hidden_size / num_heads > crate::ops::attention::MAX_HEAD_DIM {
        return Err(bad(format!("text config: {num_heads} heads do not fit the width {hidden_size}")));
    }
    let hidden_act = match t.get("hidden_act").and_then(Value::as_str).unwrap_or(defaults.act) {
        "quick_gelu" => Activation::QuickGelu,
        "gelu" => Activation::Gelu,
        "gelu_pytorch_tanh" | "gelu_new" => Activation::GeluTanh,
        other => return Err(bad(format!("text config: hidden_act `{other}` is not supported (quick_gelu, gelu, gelu_pytorch_tanh)"))),
    };
    let eps = t.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(defaults.eps);
    if !(eps.is_finite() && (0.0..1.0).contains(&eps)) {
        return Err(bad(format!("text config: layer_norm_eps {eps} is out of range")));
    }
    Ok(TextConfig {
        kind,
        pad_token_id: t.get("pad_token_id").and_then(Value::as_u64).unwrap_or(1).min(u32::MAX as u64) as u32,
        hidden_size,
        num_layers: text_num(t, "num_hidden_layers", Some(12), 512, file)?,
        num_heads,
        intermediate_size: text_num(t, "intermediate_size", Some(defaults.intermediate_size), 131072, file)?,
        vocab_size: text_num(t, "vocab_size", Some(defaults.vocab_size), 1 << 22, file)?,
        max_positions: text_num(t, "max_position_embeddings", Some(defaults.positions), 65536, file)?,
        layer_norm_eps: eps as f32,
        hidden_act,
        eos_token_id: t.get("eos_token_id").and_then(Value::as_u64).unwrap_or(49407) as u32,
        projection_dim: None,
    })
}

/// A positive number field `k` of text config `t` (or its default), at most `max`.
pub fn text_num(t: &Value, k: &str, default: Option<u64>, max: u64, file: &str) -> Result<usize> {
    match t.get(k).and_then(Value::as_u64).or(default) {
        None => Err(Error::model(file, format!("text config: `{k}` is missing"))),
        Some(0) => Err(Error::model(file, format!("text config: `{k}` is 0"))),
        Some(n) if n > max => Err(Error::model(file, format!("text config: `{k}` = {n} is over the supported maximum {max}"))),
        Some(n) => Ok(n as usize),
    }
}

/// A text tower's own checkpoint (`config`: its `config.json`) as a [`ModelConfig`]: the shape
/// of its encoder, and no image tower ([`Family::TextOnly`]: the image fields are 0).
pub fn text_only_config(t: &TextConfig, config: &Value) -> ModelConfig {
    ModelConfig {
        family: Family::TextOnly,
        head: Some(Head::None),
        architecture: config["architectures"][0].as_str().map(String::from),
        hidden_size: t.hidden_size,
        num_layers: t.num_layers,
        num_heads: t.num_heads,
        intermediate_size: t.intermediate_size,
        image_size: (0, 0),
        patch_size: 0,
        num_channels: 0,
        layer_norm_eps: t.layer_norm_eps,
        qkv_bias: true,
        labels: Vec::new(),
        quant: None,
        layout: Layout::default(),
        hidden_act: t.hidden_act,
        projection_dim: t.projection_dim,
        depth: None,
    }
}
