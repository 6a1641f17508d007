//! The text towers of CLIP and SigLIP (`transformers`' CLIPTextTransformer, SiglipTextTransformer)
//! from token ids: token and position embeddings summed on the host, the encoder on the device
//! (pre-norm layers; CLIP's causal with quick GELU, SigLIP's bidirectional with tanh GELU), the
//! final layer norm; pooled (CLIP: at the end-of-text token; SigLIP: the last position) and
//! projected into the image-text space on the host (a few rows: f64 accumulation).

use super::checkpoint::Checkpoint;
use super::build::{encoder_layer, LayerSpec};
use super::naming::engine;
use crate::error::{Error, Result};
use crate::graph::compiled::Compiled;
use crate::graph::device::Device;
use crate::graph::ir::Graph;
use crate::graph::report::{CompileOptions, HostTensor};
use crate::graph::weights::Weights;
use crate::ops::Activation;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Which text tower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// CLIP: causal mask, pooled at the end-of-text token, projection without bias; texts padded
    /// to the longest.
    Clip,
    /// SigLIP: no mask, pooled at the last position through a head with bias; texts padded to
    /// every position, as its processor does (`padding="max_length"`).
    Siglip,
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

impl TextConfig {
    /// The text config of a CLIPModel's or SiglipModel's config.json (`text_config`,
    /// `projection_dim`), or of a text model's own; `file` names it in errors.
    pub fn parse(json: &[u8], file: &str) -> Result<TextConfig> {
        let v: Value = serde_json::from_slice(json).map_err(|e| Error::model(file, format!("not a valid config.json: {e}")))?;
        let bad = |p: String| Error::model(file, p);
        let (t, top, kind) = match v.get("model_type").and_then(Value::as_str) {
            Some(m @ ("clip" | "siglip")) => {
                let t = v.get("text_config").cloned().filter(Value::is_object).ok_or_else(|| bad(format!("a `{m}` config without `text_config`")))?;
                (t, &v, if m == "clip" { TextKind::Clip } else { TextKind::Siglip })
            }
            Some("clip_text_model") => (v.clone(), &v, TextKind::Clip),
            Some("siglip_text_model") => (v.clone(), &v, TextKind::Siglip),
            other => return Err(bad(format!("model_type {other:?} has no text tower (clip, clip_text_model, siglip, siglip_text_model)"))),
        };
        let siglip = kind == TextKind::Siglip;
        let num = |k: &str, default: Option<u64>, max: u64| -> Result<usize> {
            match t.get(k).and_then(Value::as_u64).or(default) {
                None => Err(bad(format!("text config: `{k}` is missing"))),
                Some(0) => Err(bad(format!("text config: `{k}` is 0"))),
                Some(n) if n > max => Err(bad(format!("text config: `{k}` = {n} is over the supported maximum {max}"))),
                Some(n) => Ok(n as usize),
            }
        };
        // transformers' CLIPTextConfig and SiglipTextConfig defaults.
        let hidden_size = num("hidden_size", Some(if siglip { 768 } else { 512 }), 16384)?;
        let num_heads = num("num_attention_heads", Some(if siglip { 12 } else { 8 }), 1024)?;
        if !hidden_size.is_multiple_of(num_heads) || hidden_size / num_heads > crate::ops::attention::MAX_HEAD_DIM {
            return Err(bad(format!("text config: {num_heads} heads do not fit the width {hidden_size}")));
        }
        let hidden_act = match t.get("hidden_act").and_then(Value::as_str).unwrap_or(if siglip { "gelu_pytorch_tanh" } else { "quick_gelu" }) {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::Gelu,
            "gelu_pytorch_tanh" | "gelu_new" => Activation::GeluTanh,
            other => return Err(bad(format!("text config: hidden_act `{other}` is not supported (quick_gelu, gelu, gelu_pytorch_tanh)"))),
        };
        let eps = t.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(if siglip { 1e-6 } else { 1e-5 });
        if !(eps.is_finite() && (0.0..1.0).contains(&eps)) {
            return Err(bad(format!("text config: layer_norm_eps {eps} is out of range")));
        }
        // SigLIP's head always projects (to `projection_size`, by default the width).
        let projection_dim = if siglip {
            Some(num("projection_size", Some(hidden_size as u64), 16384)?)
        } else {
            // A CLIPTextModel's config carries CLIP's projection_dim without the projection.
            let plain = top["architectures"][0].as_str() == Some("CLIPTextModel");
            top.get("projection_dim").and_then(Value::as_u64).map(|p| p as usize).filter(|&p| p > 0 && p <= 16384 && !plain)
        };
        Ok(TextConfig {
            kind,
            pad_token_id: t.get("pad_token_id").and_then(Value::as_u64).unwrap_or(1).min(u32::MAX as u64) as u32,
            hidden_size,
            num_layers: num("num_hidden_layers", Some(12), 512)?,
            num_heads,
            intermediate_size: num("intermediate_size", Some(if siglip { 3072 } else { 2048 }), 131072)?,
            vocab_size: num("vocab_size", Some(if siglip { 32000 } else { 49408 }), 1 << 22)?,
            max_positions: num("max_position_embeddings", Some(if siglip { 64 } else { 77 }), 65536)?,
            layer_norm_eps: eps as f32,
            hidden_act,
            eos_token_id: t.get("eos_token_id").and_then(Value::as_u64).unwrap_or(49407) as u32,
            projection_dim,
        })
    }
}

/// What the text tower computes for a batch of token sequences.
#[derive(Debug)]
pub struct TextOutput {
    /// `(B, T, D)` after the final layer norm.
    pub last_hidden_state: HostTensor,
    /// `(B, D)`: the end-of-text token's state (CLIP); `(B, P)`: the last position through the
    /// head (SigLIP, as transformers' `pooler_output`).
    pub pooler_output: HostTensor,
    /// `(B, P)`: the pooled state projected into the image-text space (not normalized), where
    /// the model has a projection.
    pub text_embeds: Option<HostTensor>,
}

/// A CLIP or SigLIP text tower on a device.
pub struct TextModel {
    /// Its shape.
    pub config: TextConfig,
    /// Where it was loaded from.
    pub source: String,
    device: Device,
    weights: Weights,
    /// `(vocab, D)` and `(positions, D)`, on the host.
    token_embedding: Vec<f32>,
    positions: Vec<f32>,
    /// `(D, P)` and its bias, where the model has a projection.
    projection: Option<(Vec<f32>, Option<Vec<f32>>)>,
    compiled: Mutex<HashMap<(usize, usize), Arc<Compiled>>>,
}

impl TextModel {
    /// The text tower of a CLIPModel or SiglipModel checkpoint, or of a text model's own.
    pub fn load(device: impl Into<Device>, ck: &Checkpoint) -> Result<TextModel> {
        let config = TextConfig::parse(ck.config_json(), &format!("{}/config.json", ck.source))?;
        Self::load_with(device, ck, config)
    }

    /// [`TextModel::load`] with the checkpoint's text config already parsed.
    pub(crate) fn load_with(device: impl Into<Device>, ck: &Checkpoint, config: TextConfig) -> Result<TextModel> {
        let device = device.into();
        let mut weights = Weights::new(&device);
        let host = super::load::load_text(ck, &config, &mut weights)?;
        Ok(TextModel { config, source: ck.source.clone(), device, weights, token_embedding: host.0, positions: host.1, projection: host.2, compiled: Mutex::new(HashMap::new()) })
    }

    /// Whether it projects into an image-text space (else its embeddings are its pooled features).
    pub fn projects(&self) -> bool {
        self.projection.is_some()
    }

    /// Runs token sequences of one length (padded by the caller as the model's processor pads).
    /// Ids past the vocabulary, empty or ragged batches and sequences longer than the model's
    /// positions are errors.
    pub async fn run(&self, ids: &[Vec<u32>]) -> Result<TextOutput> {
        let cfg = &self.config;
        let bad = |p: String| Error::Input { name: "input_ids".into(), problem: p };
        let b = ids.len();
        let t = ids.first().map_or(0, Vec::len);
        if b == 0 || t == 0 {
            return Err(bad("no tokens".into()));
        }
        if ids.iter().any(|s| s.len() != t) {
            return Err(bad("sequences of different lengths in one batch".into()));
        }
        if t > cfg.max_positions {
            return Err(bad(format!("{t} tokens, the model has {} positions", cfg.max_positions)));
        }
        if let Some(&id) = ids.iter().flatten().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(bad(format!("token id {id} is past the vocabulary ({})", cfg.vocab_size)));
        }
        let d = cfg.hidden_size;
        let mut x = Vec::with_capacity(b * t * d);
        for seq in ids {
            for (pos, &id) in seq.iter().enumerate() {
                let tok = &self.token_embedding[id as usize * d..][..d];
                let p = &self.positions[pos * d..][..d];
                x.extend(tok.iter().zip(p).map(|(a, b)| a + b));
            }
        }
        let exe = self.compiled(b, t).await?;
        let mut out = exe.run(&[("inputs_embeds", &x)]).await?;
        let last = out.remove(0);
        // Pool at the end-of-text token (transformers' rule) or the last position, then project.
        let mut pooled = Vec::with_capacity(b * d);
        for (i, seq) in ids.iter().enumerate() {
            let pos = if cfg.kind == TextKind::Siglip {
                t - 1
            } else if cfg.eos_token_id == 2 {
                let max = seq.iter().copied().max().unwrap_or(0);
                seq.iter().position(|&v| v == max).unwrap_or(0)
            } else {
                seq.iter().position(|&v| v == cfg.eos_token_id).unwrap_or(0)
            };
            pooled.extend_from_slice(&last.data[(i * t + pos) * d..][..d]);
        }
        let text_embeds = self.projection.as_ref().map(|(w, bias)| {
            let p = w.len() / d;
            let mut e = vec![0f32; b * p];
            for i in 0..b {
                for j in 0..p {
                    let bj = bias.as_ref().map_or(0.0, |bias| bias[j] as f64);
                    e[i * p + j] = ((0..d).map(|k| pooled[i * d + k] as f64 * w[k * p + j] as f64).sum::<f64>() + bj) as f32;
                }
            }
            HostTensor { id: last.id, name: "text_embeds".into(), shape: vec![b, p], data: e }
        });
        let pooler_output = match (&text_embeds, cfg.kind) {
            (Some(e), TextKind::Siglip) => HostTensor { name: "pooler_output".into(), ..e.clone() },
            _ => HostTensor { id: last.id, name: "pooler_output".into(), shape: vec![b, d], data: pooled },
        };
        Ok(TextOutput { last_hidden_state: last, pooler_output, text_embeds })
    }

    /// Native convenience: [`TextModel::run`] blocking on the current thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_blocking(&self, ids: &[Vec<u32>]) -> Result<TextOutput> {
        pollster::block_on(self.run(ids))
    }

    async fn compiled(&self, b: usize, t: usize) -> Result<Arc<Compiled>> {
        if let Some(c) = self.compiled.lock().unwrap_or_else(|e| e.into_inner()).get(&(b, t)) {
            return Ok(c.clone());
        }
        let g = build_text_graph(&self.config, b, t)?;
        let exe = Arc::new(Compiled::compile(&self.device, &g, &self.weights, &CompileOptions::default()).await?);
        self.compiled.lock().unwrap_or_else(|e| e.into_inner()).insert((b, t), exe.clone());
        Ok(exe)
    }
}

/// The encoder (causal for CLIP) over `inputs_embeds (B, T, D)`, then the final layer norm (the
/// graph's one output).
fn build_text_graph(cfg: &TextConfig, b: usize, t: usize) -> Result<Graph> {
    let d = cfg.hidden_size;
    let mut g = Graph::new();
    let mut hs = g.input("inputs_embeds", &[b, t, d]);
    let spec = LayerSpec {
        d,
        heads: cfg.num_heads,
        mlp: cfg.intermediate_size,
        eps: cfg.layer_norm_eps,
        act: cfg.hidden_act,
        qkv_bias: true,
        causal: cfg.kind == TextKind::Clip,
        qkv_heads: false,
    };
    for i in 0..cfg.num_layers {
        hs = encoder_layer(&mut g, &spec, i, hs)?.0;
    }
    let (wn, bn) = engine::final_norm();
    let (w, bias) = (g.weight(&wn, &[d]), g.weight(&bn, &[d]));
    let out = g.layer_norm("last_hidden_state", hs, w, bias, cfg.layer_norm_eps)?;
    g.output(out);
    Ok(g)
}
