//! The text towers of CLIP and SigLIP (`transformers`' CLIPTextTransformer, SiglipTextTransformer)
//! from token ids: token and position embeddings summed on the host, the encoder on the device
//! (pre-norm layers; CLIP's causal with quick GELU, SigLIP's bidirectional with tanh GELU), the
//! final layer norm; pooled (CLIP: at the end-of-text token; SigLIP: the last position) and
//! projected into the image-text space on the host (a few rows: f64 accumulation). Their configs
//! and weight names are their family modules'.

use crate::error::{Error, Result};
use crate::model::families;
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::names::engine;
pub use crate::model::shared::text_spec::{TextConfig, TextKind};
use crate::model::shared::tower::{encoder_layer, LayerSpec};
use crate::graph::compiled::Compiled;
use crate::graph::device::Device;
use crate::graph::ir::Graph;
use crate::graph::report::{CompileOptions, HostTensor};
use crate::graph::weights::Weights;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

impl TextConfig {
    /// The text config of a CLIPModel's or SiglipModel's config.json (`text_config`,
    /// `projection_dim`), or of a text model's own, through the family that reads it; `file`
    /// names it in errors.
    pub fn parse(json: &[u8], file: &str) -> Result<TextConfig> {
        let v: Value = serde_json::from_slice(json).map_err(|e| Error::model(file, format!("not a valid config.json: {e}")))?;
        families::reading_text(&v, file)?.text_config(&v, file)
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
        weights.set_heads(config.num_heads);
        let host = ck.family_def()?.load_text(ck, &config, &mut weights)?;
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
            let pos = if cfg.kind.pools_last() {
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
        let pooler_output = match &text_embeds {
            Some(e) if cfg.kind.pools_last() => HostTensor { name: "pooler_output".into(), ..e.clone() },
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
        causal: cfg.kind.causal(),
        qkv_heads: false,
        lengths: None,
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
