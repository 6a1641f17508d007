//! One graph builder for ViT, DeiT and DINOv2 (`transformers`' modeling_vit.py, modeling_deit.py,
//! modeling_dinov2.py): patch embedding with prefix tokens and position embeddings, pre-norm
//! encoder blocks, final layer norm, then the family's pooler or head.
//!
//! Weights are rearranged once at load: Linear weights transposed to (in, out); query, key and
//! value fused into one (D, 3D) projection; DINOv2's layer scale folded into the projection it
//! scales; DeiT's two heads pre-scaled by 1/2 so their sum is the average.

use super::checkpoint::Checkpoint;
use super::config::{Family, Head, ModelConfig};
use super::interp::bicubic;
use super::preprocess::PreprocessorConfig;
use crate::error::{Error, Result};
use crate::graph::exec::{CompileOptions, Executable, HostTensor, PlanReport, Profile, Weights};
use crate::graph::ir::{DType, Graph, TensorId};
use crate::ops::Activation;
use crate::{lock, Gpu};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// What to compute besides the model's own outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RunOptions {
    /// Every layer's output (`hidden_states` in transformers: the embeddings, then each layer).
    pub hidden_states: bool,
    /// The last layer's attention of the CLS token over the patches, per head.
    pub attention: bool,
    /// Per-op GPU timestamps (where the adapter supports them).
    pub profile: bool,
    /// Let the QKV projection write Q, K and V head-major, `(3, B, heads, T, head_dim)`, for the
    /// attention kernels (where the head dim and hidden size are multiples of 4); the same results
    /// through another memory layout.
    pub qkv_heads: bool,
    /// Read back only the logits (models with a classifier head): no last hidden state or pooler
    /// output, which classification does not need (for ViT-B/16 at batch 64 the hidden state is
    /// 38 MB per run). Ignored for models without a head.
    pub logits_only: bool,
}

/// Outputs of one run, shaped as `transformers` returns them.
#[derive(Clone, Debug)]
pub struct ModelOutput {
    /// `(B, num_labels)` where the model has a head.
    pub logits: Option<HostTensor>,
    /// `(B, T, D)`, after the final layer norm (None with [`RunOptions::logits_only`]).
    pub last_hidden_state: Option<HostTensor>,
    /// `(B, D)`: the pooler (ViT/DeiT with a pooler) or the normed CLS token (DINOv2).
    pub pooler_output: Option<HostTensor>,
    /// `(B, T, D)` each: embeddings, then each layer (before the final norm), when asked for.
    pub hidden_states: Vec<HostTensor>,
    /// `(B, heads, 1, N)`: last-layer attention of the CLS token over the N patches, when asked for.
    pub cls_attention: Option<HostTensor>,
    /// The patch grid (rows, columns) of this input.
    pub grid: (usize, usize),
    /// Per-op GPU times, when profiling.
    pub profile: Option<Profile>,
}

/// CLS attention over the patch grid.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttentionMap {
    /// Patch grid rows.
    pub rows: usize,
    /// Patch grid columns.
    pub cols: usize,
    /// Heads.
    pub heads: usize,
    /// `(heads, rows * cols)`, each row a probability distribution restricted to the patches.
    pub per_head: Vec<f32>,
    /// Mean over heads, `rows * cols`.
    pub mean: Vec<f32>,
}

/// One top-k entry.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TopK {
    /// Class index.
    pub index: usize,
    /// Class name from `id2label`.
    pub label: String,
    /// Softmax probability.
    pub score: f32,
}

struct Pos {
    prefix: Vec<f32>,
    patches: Vec<f32>,
    side: usize,
}

/// A checkpoint uploaded to the GPU, ready to run at any input size (each size is compiled once).
pub struct Model {
    gpu: Arc<Gpu>,
    /// The model config.
    pub config: ModelConfig,
    /// The preprocessing the checkpoint asks for.
    pub preprocessor: PreprocessorConfig,
    /// Where it came from.
    pub source: String,
    head: Head,
    pooler: bool,
    weights: Mutex<Weights>,
    pos: Pos,
    compiled: Mutex<Compiled>,
    storage: DType,
}

type GraphKey = (usize, usize, usize, RunOptions);

/// Compiled graphs by (batch, height, width, options), least recently used dropped beyond
/// [`MAX_COMPILED`] (each holds an activation arena), and the largest batch known to fit per size.
#[derive(Default)]
struct Compiled {
    graphs: HashMap<GraphKey, (Arc<Executable>, u64)>,
    tick: u64,
    max_batch: HashMap<(usize, usize, RunOptions), usize>,
}

/// Compiled graphs (input sizes) a model keeps.
pub const MAX_COMPILED: usize = 8;

impl Compiled {
    fn get(&mut self, key: &GraphKey) -> Option<Arc<Executable>> {
        self.tick += 1;
        let tick = self.tick;
        self.graphs.get_mut(key).map(|(e, t)| {
            *t = tick;
            e.clone()
        })
    }

    fn insert(&mut self, key: GraphKey, exe: Arc<Executable>) {
        self.tick += 1;
        self.graphs.insert(key, (exe, self.tick));
        while self.graphs.len() > MAX_COMPILED {
            let oldest = self.graphs.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k);
            match oldest {
                Some(k) => self.graphs.remove(&k),
                None => break,
            };
        }
    }
}

/// (out, in) row-major to (in, out) row-major.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

struct Loader<'a> {
    ck: &'a Checkpoint,
    prefix: String,
    used: BTreeSet<String>,
}

impl Loader<'_> {
    fn get(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        self.used.insert(full.clone());
        self.ck.tensor(&full, shape)
    }

    fn has(&self, name: &str) -> bool {
        self.ck.has(&format!("{}{name}", self.prefix))
    }

    /// A Linear layer (weight (out, in), bias (out)) as (in, out) and bias, optionally scaled
    /// per output channel.
    fn linear(&mut self, name: &str, inp: usize, out: usize, bias: bool, scale: Option<&[f32]>) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let w = self.get(&format!("{name}.weight"), &[out, inp])?;
        let mut wt = transpose(&w, out, inp);
        let mut b = if bias { Some(self.get(&format!("{name}.bias"), &[out])?) } else { None };
        if let Some(s) = scale {
            for row in wt.chunks_mut(out) {
                row.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
            }
            if let Some(b) = &mut b {
                b.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
            }
        }
        Ok((wt, b))
    }
}

impl Model {
    /// Uploads a checkpoint's weights (converted to f32) to the GPU.
    pub fn load(gpu: &Arc<Gpu>, ck: &Checkpoint) -> Result<Model> {
        Self::load_as(gpu, ck, DType::F32)
    }

    /// Uploads a checkpoint's weights stored as `storage`: f16 halves the weights' and the
    /// activations' memory and bandwidth while every kernel still computes in f32 (needs the
    /// adapter's `shader-f16`; results differ from f32 by f16 rounding, about 1e-3 relative).
    pub fn load_as(gpu: &Arc<Gpu>, ck: &Checkpoint, storage: DType) -> Result<Model> {
        if storage == DType::F16 && !gpu.report().shader_f16 {
            return Err(Error::UnsupportedDtype {
                op: "load".into(),
                tensor: ck.weights_name().into(),
                dtype: "f16".into(),
                supported: "f32 only: the adapter lacks the shader-f16 feature".into(),
            });
        }
        let cfg = ck.config.clone();
        let file = ck.weights_name().to_string();
        let cls_name = ck
            .tensor_names()
            .into_iter()
            .find(|n| n.ends_with("embeddings.cls_token"))
            .ok_or_else(|| Error::model(&file, "no `embeddings.cls_token` tensor: not a ViT, DeiT or DINOv2 checkpoint"))?;
        let prefix = cls_name[..cls_name.len() - "embeddings.cls_token".len()].to_string();
        // Refused before anything is uploaded if the weights (stored as `storage`) cannot fit the
        // budget.
        let need: u64 = ck
            .tensor_names()
            .iter()
            .filter_map(|n| ck.tensor_shape(n))
            .map(|s| s.iter().fold(storage.size() as u64, |a, &d| a.saturating_mul(d as u64)))
            .fold(0u64, u64::saturating_add);
        gpu.check_memory(&format!("{file} (its weights as {storage})"), need)?;
        let mut ld = Loader { ck, prefix: prefix.clone(), used: BTreeSet::new() };
        let (d, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
        let mut w = Weights::new_as(gpu, storage);

        // Embeddings.
        let k = c * p * p;
        let conv = ld.get("embeddings.patch_embeddings.projection.weight", &[d, c, p, p])?;
        w.insert("patch.weight", &[k, d], &transpose(&conv, d, k))?;
        w.insert("patch.bias", &[d], &ld.get("embeddings.patch_embeddings.projection.bias", &[d])?)?;
        let prefix_tokens = cfg.prefix_tokens();
        let mut toks = ld.get("embeddings.cls_token", &[d])?;
        if cfg.family == Family::Deit {
            toks.extend(ld.get("embeddings.distillation_token", &[d])?);
        }
        w.insert("prefix", &[prefix_tokens, d], &toks)?;
        if ld.has("embeddings.mask_token") {
            // Only used for masked image modeling; marked as known.
            ld.used.insert(format!("{prefix}embeddings.mask_token"));
        }
        let pos_name = format!("{prefix}embeddings.position_embeddings");
        let pos_len = ck
            .tensor_names()
            .contains(&pos_name)
            .then(|| ck_shape_len(ck, &pos_name))
            .flatten()
            .ok_or_else(|| Error::model(&file, format!("tensor `{pos_name}` is missing")))?;
        if pos_len % d != 0 || pos_len / d <= prefix_tokens {
            return Err(Error::model(&file, format!("tensor `{pos_name}` does not hold {prefix_tokens} prefix + patch positions of width {d}")));
        }
        let positions = pos_len / d - prefix_tokens;
        let side = (positions as f64).sqrt().round() as usize;
        if side * side != positions {
            return Err(Error::model(&file, format!("`{pos_name}` has {positions} patch positions, not a square grid")));
        }
        let pos_all = ld.get("embeddings.position_embeddings", &[prefix_tokens + positions, d])?;
        let pos = Pos { prefix: pos_all[..prefix_tokens * d].to_vec(), patches: pos_all[prefix_tokens * d..].to_vec(), side };

        // Encoder.
        let mlp = cfg.intermediate_size;
        for i in 0..cfg.num_layers {
            let l = format!("encoder.layer.{i}.");
            let (ln1, ln2) = match cfg.family {
                Family::Dinov2 => ("norm1", "norm2"),
                _ => ("layernorm_before", "layernorm_after"),
            };
            for (src, dst) in [(ln1, "ln1"), (ln2, "ln2")] {
                w.insert(&format!("layer.{i}.{dst}.weight"), &[d], &ld.get(&format!("{l}{src}.weight"), &[d])?)?;
                w.insert(&format!("layer.{i}.{dst}.bias"), &[d], &ld.get(&format!("{l}{src}.bias"), &[d])?)?;
            }
            let mut qkv_w = vec![0f32; d * 3 * d];
            let mut qkv_b = vec![0f32; 3 * d];
            for (j, part) in ["query", "key", "value"].iter().enumerate() {
                let (wt, b) = ld.linear(&format!("{l}attention.attention.{part}"), d, d, cfg.qkv_bias, None)?;
                for r in 0..d {
                    qkv_w[r * 3 * d + j * d..r * 3 * d + (j + 1) * d].copy_from_slice(&wt[r * d..(r + 1) * d]);
                }
                if let Some(b) = b {
                    qkv_b[j * d..(j + 1) * d].copy_from_slice(&b);
                }
            }
            w.insert(&format!("layer.{i}.qkv.weight"), &[d, 3 * d], &qkv_w)?;
            if cfg.qkv_bias {
                w.insert(&format!("layer.{i}.qkv.bias"), &[3 * d], &qkv_b)?;
            }
            let (ls1, ls2) = if cfg.family == Family::Dinov2 {
                (Some(ld.get(&format!("{l}layer_scale1.lambda1"), &[d])?), Some(ld.get(&format!("{l}layer_scale2.lambda1"), &[d])?))
            } else {
                (None, None)
            };
            let (fc1, fc2) = match cfg.family {
                Family::Dinov2 => ("mlp.fc1".to_string(), "mlp.fc2".to_string()),
                _ => ("intermediate.dense".to_string(), "output.dense".to_string()),
            };
            let layers = [
                ("proj", format!("{l}attention.output.dense"), d, d, ls1),
                ("fc1", format!("{l}{fc1}"), d, mlp, None),
                ("fc2", format!("{l}{fc2}"), mlp, d, ls2),
            ];
            for (dst, src, inp, out, scale) in layers {
                let (wt, b) = ld.linear(&src, inp, out, true, scale.as_deref())?;
                w.insert(&format!("layer.{i}.{dst}.weight"), &[inp, out], &wt)?;
                w.insert(&format!("layer.{i}.{dst}.bias"), &[out], &b.unwrap_or_default())?;
            }
        }
        w.insert("final_ln.weight", &[d], &ld.get("layernorm.weight", &[d])?)?;
        w.insert("final_ln.bias", &[d], &ld.get("layernorm.bias", &[d])?)?;

        // Pooler and head. The prefix is dropped for head names (they sit at the top level).
        let pooler = cfg.family != Family::Dinov2 && ld.has("pooler.dense.weight");
        if pooler {
            let (wt, b) = ld.linear("pooler.dense", d, d, true, None)?;
            w.insert("pooler.weight", &[d, d], &wt)?;
            w.insert("pooler.bias", &[d], &b.unwrap_or_default())?;
        }
        let mut top = Loader { ck, prefix: String::new(), used: BTreeSet::new() };
        let head = match cfg.head {
            Some(h) => h,
            None if top.has("cls_classifier.weight") => Head::ClsDistilled,
            None if top.has("classifier.weight") => {
                if cfg.family == Family::Dinov2 { Head::ClsMeanPatch } else { Head::Cls }
            }
            None => Head::None,
        };
        let n = cfg.labels.len();
        if head != Head::None && n == 0 {
            return Err(Error::model(format!("{}/config.json", ck.source), "the model has a classifier but no id2label / num_labels"));
        }
        match head {
            Head::None => {}
            Head::Cls => {
                let (wt, b) = top.linear("classifier", d, n, true, None)?;
                w.insert("head.weight", &[d, n], &wt)?;
                w.insert("head.bias", &[n], &b.unwrap_or_default())?;
            }
            Head::ClsMeanPatch => {
                let (wt, b) = top.linear("classifier", 2 * d, n, true, None)?;
                w.insert("head.weight", &[2 * d, n], &wt)?;
                w.insert("head.bias", &[n], &b.unwrap_or_default())?;
            }
            Head::ClsDistilled => {
                // logits = (cls_head(t0) + dist_head(t1)) / 2; halving is exact in floating point.
                let half = vec![0.5f32; n];
                for (src, dst) in [("cls_classifier", "head"), ("distillation_classifier", "head_dist")] {
                    let (wt, b) = top.linear(src, d, n, true, Some(&half))?;
                    w.insert(&format!("{dst}.weight"), &[d, n], &wt)?;
                    w.insert(&format!("{dst}.bias"), &[n], &b.unwrap_or_default())?;
                }
            }
        }
        ld.used.extend(top.used);
        let extra: Vec<String> = ck.tensor_names().into_iter().filter(|t| !ld.used.contains(t)).collect();
        if !extra.is_empty() {
            let shown: Vec<&str> = extra.iter().take(5).map(|s| s.as_str()).collect();
            return Err(Error::model(
                &file,
                format!(
                    "{} tensor(s) that a {:?} model with this config does not use, e.g. {} (is the config for another architecture?)",
                    extra.len(),
                    head,
                    shown.join(", ")
                ),
            ));
        }
        Ok(Model {
            gpu: gpu.clone(),
            config: cfg,
            preprocessor: ck.preprocessor.clone(),
            source: ck.source.clone(),
            head,
            pooler,
            weights: Mutex::new(w),
            pos,
            compiled: Mutex::new(Compiled::default()),
            storage,
        })
    }

    /// How weights and activations are stored (f32, or f16 from [`Model::load_as`]).
    pub fn storage(&self) -> DType {
        self.storage
    }

    /// The head this model runs.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Class names (empty for base models).
    pub fn labels(&self) -> &[String] {
        &self.config.labels
    }

    /// Bytes of weights on the GPU.
    pub fn weight_bytes(&self) -> u64 {
        lock(&self.weights).bytes()
    }

    /// Position embeddings for a (rows, cols) patch grid, interpolated as transformers does when
    /// the grid differs from the checkpoint's (or the image is not square).
    fn positions(&self, gh: usize, gw: usize, h: usize, w: usize) -> Vec<f32> {
        let d = self.config.hidden_size;
        let s = self.pos.side;
        let mut out = self.pos.prefix.clone();
        if gh * gw == s * s && h == w {
            out.extend_from_slice(&self.pos.patches);
        } else {
            out.extend(bicubic(&self.pos.patches, s, s, d, gh, gw));
        }
        out
    }

    fn build(&self, batch: usize, h: usize, w: usize, opts: RunOptions) -> Result<(Graph, String)> {
        build_graph(&self.config, self.head, self.pooler, self.storage, batch, h, w, opts)
    }

    async fn executable(&self, batch: usize, h: usize, w: usize, opts: RunOptions) -> Result<Arc<Executable>> {
        let key = (batch, h, w, opts);
        if let Some(e) = lock(&self.compiled).get(&key) {
            return Ok(e);
        }
        let (graph, pos_name) = self.build(batch, h, w, opts)?;
        let p = self.config.patch_size;
        // The position embeddings for this grid belong to this graph alone (freed with it), so
        // inputs of ever new sizes do not accumulate. No lock is held across the await:
        // concurrent calls (from JS too) must not block.
        let mut weights = lock(&self.weights).clone();
        let d = self.config.hidden_size;
        let rows = self.config.prefix_tokens() + (h / p) * (w / p);
        weights.insert(&pos_name, &[rows, d], &self.positions(h / p, w / p, h, w))?;
        let exe = Executable::compile(&self.gpu, &graph, &weights, &CompileOptions { profile: opts.profile }).await?;
        let exe = Arc::new(exe);
        lock(&self.compiled).insert(key, exe.clone());
        Ok(exe)
    }

    /// The graph for the largest batch up to `batch` that the device takes (its limits and the
    /// memory budget), halving on `limit_exceeded` / `out_of_memory`; cached graphs of other
    /// sizes are dropped first when memory is short.
    async fn executable_fitting(&self, batch: usize, h: usize, w: usize, opts: RunOptions) -> Result<(Arc<Executable>, usize)> {
        let known = lock(&self.compiled).max_batch.get(&(h, w, opts)).copied();
        let mut chunk = known.map_or(batch, |m| m.min(batch));
        let mut evicted = false;
        loop {
            match self.executable(chunk, h, w, opts).await {
                Ok(e) => {
                    if chunk < batch {
                        lock(&self.compiled).max_batch.insert((h, w, opts), chunk);
                    }
                    return Ok((e, chunk));
                }
                Err(Error::OutOfMemory { .. }) if !evicted && !lock(&self.compiled).graphs.is_empty() => {
                    lock(&self.compiled).graphs.clear();
                    evicted = true;
                }
                Err(Error::OutOfMemory { .. } | Error::LimitExceeded { .. }) if chunk > 1 => chunk = chunk.div_ceil(2),
                Err(e) => return Err(e),
            }
        }
    }

    /// How the activation arena of the graph that runs `batch` images of `h` x `w` was packed
    /// (after a run of that size), and the batch that graph takes (smaller when the batch was
    /// split to fit the device).
    pub fn plan(&self, batch: usize, h: usize, w: usize, opts: RunOptions) -> Option<(usize, PlanReport)> {
        let mut c = lock(&self.compiled);
        let chunk = c.max_batch.get(&(h, w, opts)).map_or(batch, |m| (*m).min(batch));
        c.get(&(chunk, h, w, opts)).map(|e| (chunk, e.plan().clone()))
    }

    /// GPU time of one run of the graph for `batch` images of `h` x `w`, in ms: `repeats` runs
    /// back to back in one submit on an input written once (no upload, readback or host gap
    /// between them, so the GPU's clocks stay up), timed with timestamp queries. Set against the
    /// wall-clock latency of [`Model::run`], it separates the GPU's work from the host's. None
    /// where the adapter has no timestamps or the batch runs in chunks.
    pub async fn gpu_time_per_run(&self, pixels: &[f32], dims: [usize; 4], opts: RunOptions, repeats: u32) -> Result<Option<f64>> {
        let [b, _, h, w] = dims;
        if !self.gpu.has_timestamps() {
            return Ok(None);
        }
        let (exe, chunk) = self.executable_fitting(b, h, w, opts).await?;
        if chunk < b {
            return Ok(None);
        }
        Ok(Some(exe.gpu_time_per_run(&[("pixel_values", pixels)], repeats).await?))
    }

    /// Number of compiled graphs held (at most [`MAX_COMPILED`]).
    pub fn compiled_graphs(&self) -> usize {
        lock(&self.compiled).graphs.len()
    }

    /// Runs on `pixel_values` `(B, C, H, W)` exactly as `model(pixel_values=...)` does.
    pub async fn run(&self, pixels: &[f32], dims: [usize; 4], opts: RunOptions) -> Result<ModelOutput> {
        let cfg = &self.config;
        let [b, c, h, w] = dims;
        let bad = |p: String| Error::Input { name: "pixel_values".into(), problem: p };
        if c != cfg.num_channels {
            return Err(bad(format!("has {c} channels, the model takes {}", cfg.num_channels)));
        }
        if b == 0 || h < cfg.patch_size || w < cfg.patch_size {
            return Err(bad(format!("shape [{b}, {c}, {h}, {w}] is smaller than one {0}x{0} patch", cfg.patch_size)));
        }
        if b.checked_mul(c).and_then(|v| v.checked_mul(h)).and_then(|v| v.checked_mul(w)) != Some(pixels.len()) {
            return Err(bad(format!("{} values do not make shape [{b}, {c}, {h}, {w}]", pixels.len())));
        }
        if let Some(i) = pixels.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("value {} at index {i} is not finite", pixels[i])));
        }
        // A batch too large for the device runs in chunks that fit.
        let (exe, chunk) = self.executable_fitting(b, h, w, opts).await?;
        let per_image = c * h * w;
        let mut outs: Vec<HostTensor> = Vec::new();
        let mut profile = None;
        for start in (0..b).step_by(chunk) {
            let n = chunk.min(b - start);
            let exe = if n == chunk { exe.clone() } else { self.executable(n, h, w, opts).await? };
            let input = &pixels[start * per_image..(start + n) * per_image];
            let part = if opts.profile {
                let (o, p) = exe.run_profiled(&[("pixel_values", input)]).await?;
                profile.get_or_insert(p);
                o
            } else {
                exe.run(&[("pixel_values", input)]).await?
            };
            if outs.is_empty() {
                outs = part;
            } else {
                for (o, p) in outs.iter_mut().zip(part) {
                    o.data.extend(p.data);
                    o.shape[0] += p.shape[0];
                }
            }
        }
        let mut it = outs.into_iter();
        let mut next = || it.next().ok_or_else(|| Error::gpu("", "the graph returned fewer outputs than it declares"));
        let logits = if self.head != Head::None { Some(next()?) } else { None };
        let full = reads_hidden_state(opts, self.head);
        let last_hidden_state = if full { Some(next()?) } else { None };
        let pooler_output = if full && (self.pooler || cfg.family == Family::Dinov2) { Some(next()?) } else { None };
        let mut hidden_states = Vec::new();
        if opts.hidden_states {
            for _ in 0..=cfg.num_layers {
                hidden_states.push(next()?);
            }
        }
        let cls_attention = if opts.attention { Some(next()?) } else { None };
        Ok(ModelOutput {
            logits,
            last_hidden_state,
            pooler_output,
            hidden_states,
            cls_attention,
            grid: (h / cfg.patch_size, w / cfg.patch_size),
            profile,
        })
    }

    /// Native convenience: [`Model::run`] blocking on the current thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_blocking(&self, pixels: &[f32], dims: [usize; 4], opts: RunOptions) -> Result<ModelOutput> {
        pollster::block_on(self.run(pixels, dims, opts))
    }

    /// Preprocesses RGB images as the checkpoint asks and runs them as one batch (they must
    /// preprocess to one size, as fixed-size resizes and crops do).
    pub async fn run_images(&self, images: &[&image::RgbImage], opts: RunOptions) -> Result<ModelOutput> {
        let mut pixels = Vec::new();
        let mut size = None;
        for (i, img) in images.iter().enumerate() {
            let (p, h, w) = self.preprocessor.apply(img);
            if size.is_some_and(|s| s != (h, w)) {
                return Err(Error::Input {
                    name: format!("image {i}"),
                    problem: format!("preprocesses to {h}x{w}, the batch's first image to {:?}", size),
                });
            }
            size = Some((h, w));
            pixels.extend(p);
        }
        let Some((h, w)) = size else {
            return Err(Error::Input { name: "images".into(), problem: "no images".into() });
        };
        self.run(&pixels, [images.len(), 3, h, w], opts).await
    }

    /// Top-k classes of each image.
    pub async fn classify(&self, images: &[&image::RgbImage], k: usize) -> Result<Vec<Vec<TopK>>> {
        if self.head == Head::None {
            return Err(Error::model(&self.source, "this is a base model without a classifier head"));
        }
        let out = self.run_images(images, RunOptions { logits_only: true, ..Default::default() }).await?;
        let logits = out.logits.ok_or_else(|| Error::gpu("", "no logits"))?;
        Ok(self.top_k(&logits, k))
    }

    /// One embedding per image: the pooler output where the model has one, else the CLS token.
    pub async fn embed(&self, images: &[&image::RgbImage]) -> Result<Vec<Vec<f32>>> {
        let out = self.run_images(images, RunOptions::default()).await?;
        let d = self.config.hidden_size;
        Ok(match out.pooler_output {
            Some(p) => p.data.chunks(d).map(|c| c.to_vec()).collect(),
            None => {
                let seq = out.last_hidden_state.ok_or_else(|| Error::gpu("", "no last hidden state"))?;
                let t = seq.shape[1];
                seq.data.chunks(t * d).map(|c| c[..d].to_vec()).collect()
            }
        })
    }

    /// The last layer's attention of the CLS token over the patch grid: per head and the mean.
    pub async fn attention_map(&self, img: &image::RgbImage) -> Result<AttentionMap> {
        let out = self.run_images(&[img], RunOptions { attention: true, ..Default::default() }).await?;
        let att = out.cls_attention.ok_or_else(|| Error::gpu("", "no attention output"))?;
        let heads = att.shape[1];
        let n = out.grid.0 * out.grid.1;
        let mean = (0..n).map(|j| (0..heads).map(|k| att.data[k * n + j]).sum::<f32>() / heads as f32).collect();
        Ok(AttentionMap { rows: out.grid.0, cols: out.grid.1, heads, per_head: att.data, mean })
    }

    /// Top-k classes per image from logits `(B, N)`, with softmax probabilities.
    pub fn top_k(&self, logits: &HostTensor, k: usize) -> Vec<Vec<TopK>> {
        let n = logits.shape.last().copied().unwrap_or(0).max(1);
        logits
            .data
            .chunks(n)
            .map(|row| {
                let mx = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let sum: f64 = row.iter().map(|&v| ((v - mx) as f64).exp()).sum();
                let mut idx: Vec<usize> = (0..row.len()).collect();
                idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
                idx.into_iter()
                    .take(k)
                    .map(|i| TopK {
                        index: i,
                        label: self.config.labels.get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}")),
                        score: ((((row[i] - mx) as f64).exp()) / sum) as f32,
                    })
                    .collect()
            })
            .collect()
    }
}

/// Whether a run reads back the last hidden state and pooler output: unless only the logits are
/// asked for and the model has a head to give them.
fn reads_hidden_state(opts: RunOptions, head: Head) -> bool {
    !(opts.logits_only && head != Head::None)
}

/// The graph that runs `batch` images of `h` x `w` through a model of this config, head and
/// pooler, storing `storage`; also the name of its position-embedding weight. Needs no GPU: with
/// [`crate::graph::exec::plan_graph`] it tells how much memory a run would take.
#[allow(clippy::too_many_arguments)]
pub fn build_graph(
    cfg: &ModelConfig,
    head: Head,
    pooler: bool,
    storage: DType,
    batch: usize,
    h: usize,
    w: usize,
    opts: RunOptions,
) -> Result<(Graph, String)> {
    let (d, p) = (cfg.hidden_size, cfg.patch_size);
    let (gh, gw) = (h / p, w / p);
    let prefix = cfg.prefix_tokens();
    let mut g = Graph::new();
    g.set_storage(storage);
    let wt = |g: &mut Graph, name: &str, shape: &[usize]| g.weight(name, shape);
    let x = g.input("pixel_values", &[batch, cfg.num_channels, h, w]);
    let pos_name = format!("pos.{gh}x{gw}.{}", if h == w { "sq" } else { "rect" });
    let patch_w = wt(&mut g, "patch.weight", &[cfg.num_channels * p * p, d]);
    let patch_b = wt(&mut g, "patch.bias", &[d]);
    let pos = wt(&mut g, &pos_name, &[prefix + gh * gw, d]);
    let toks = wt(&mut g, "prefix", &[prefix, d]);
    let mut hs = g.patch_embed("embeddings", x, patch_w, patch_b, pos, Some(toks), p)?;
    let mut hidden = vec![hs];
    let scale = 1.0 / (cfg.head_dim() as f32).sqrt();
    let mut last_qkv: Option<TensorId> = None;
    for i in 0..cfg.num_layers {
        let n = |s: &str| format!("layer.{i}.{s}");
        let ln = |g: &mut Graph, which: &str, input: TensorId| -> Result<TensorId> {
            let gw_ = g.weight(&n(&format!("{which}.weight")), &[d]);
            let gb = g.weight(&n(&format!("{which}.bias")), &[d]);
            g.layer_norm(&n(which), input, gw_, gb, cfg.layer_norm_eps)
        };
        let h1 = ln(&mut g, "ln1", hs)?;
        let qkv_w = wt(&mut g, &n("qkv.weight"), &[d, 3 * d]);
        let qkv_b = if cfg.qkv_bias { Some(wt(&mut g, &n("qkv.bias"), &[3 * d])) } else { None };
        let qkv = if opts.qkv_heads && cfg.head_dim().is_multiple_of(4) && d.is_multiple_of(4) {
            g.matmul_heads(&n("qkv"), h1, qkv_w, qkv_b, cfg.num_heads)?
        } else {
            g.matmul(&n("qkv"), h1, qkv_w, qkv_b, Activation::None, None)?
        };
        let att = g.attention(&n("attention"), qkv, cfg.num_heads, scale)?;
        let proj_w = wt(&mut g, &n("proj.weight"), &[d, d]);
        let proj_b = wt(&mut g, &n("proj.bias"), &[d]);
        let x1 = g.matmul(&n("proj"), att, proj_w, Some(proj_b), Activation::None, Some(hs))?;
        let h2 = ln(&mut g, "ln2", x1)?;
        let mlp = cfg.intermediate_size;
        let fc1_w = wt(&mut g, &n("fc1.weight"), &[d, mlp]);
        let fc1_b = wt(&mut g, &n("fc1.bias"), &[mlp]);
        let m = g.matmul(&n("fc1"), h2, fc1_w, Some(fc1_b), Activation::Gelu, None)?;
        let fc2_w = wt(&mut g, &n("fc2.weight"), &[mlp, d]);
        let fc2_b = wt(&mut g, &n("fc2.bias"), &[d]);
        hs = g.matmul(&n("fc2"), m, fc2_w, Some(fc2_b), Activation::None, Some(x1))?;
        hidden.push(hs);
        last_qkv = Some(qkv);
    }
    let fw = wt(&mut g, "final_ln.weight", &[d]);
    let fb = wt(&mut g, "final_ln.bias", &[d]);
    let seq = g.layer_norm("last_hidden_state", hs, fw, fb, cfg.layer_norm_eps)?;
    let tokens = prefix + gh * gw;

    // A token is selected as the mean of one token: (B, D), and an exact copy.
    let logits = match head {
        Head::None => None,
        Head::Cls => {
            let cls = g.mean_tokens("cls", seq, 0, 1)?;
            let (hw, hb) = (wt(&mut g, "head.weight", &[d, cfg.labels.len()]), wt(&mut g, "head.bias", &[cfg.labels.len()]));
            Some(g.matmul("logits", cls, hw, Some(hb), Activation::None, None)?)
        }
        Head::ClsDistilled => {
            let n = cfg.labels.len();
            let cls = g.mean_tokens("cls", seq, 0, 1)?;
            let dist = g.mean_tokens("dist", seq, 1, 1)?;
            let (hw, hb) = (wt(&mut g, "head.weight", &[d, n]), wt(&mut g, "head.bias", &[n]));
            let half = g.matmul("cls_logits", cls, hw, Some(hb), Activation::None, None)?;
            let (dw, db) = (wt(&mut g, "head_dist.weight", &[d, n]), wt(&mut g, "head_dist.bias", &[n]));
            Some(g.matmul("logits", dist, dw, Some(db), Activation::None, Some(half))?)
        }
        Head::ClsMeanPatch => {
            let n = cfg.labels.len();
            let cls = g.mean_tokens("cls", seq, 0, 1)?;
            let mean = g.mean_tokens("patch_mean", seq, prefix, tokens - prefix)?;
            let both = g.concat("cls_and_mean", cls, mean)?;
            let (hw, hb) = (wt(&mut g, "head.weight", &[2 * d, n]), wt(&mut g, "head.bias", &[n]));
            Some(g.matmul("logits", both, hw, Some(hb), Activation::None, None)?)
        }
    };
    let pooled = if pooler {
        let cls = g.mean_tokens("pooler_cls", seq, 0, 1)?;
        let (pw, pb) = (wt(&mut g, "pooler.weight", &[d, d]), wt(&mut g, "pooler.bias", &[d]));
        Some(g.matmul("pooler_output", cls, pw, Some(pb), Activation::Tanh, None)?)
    } else if cfg.family == Family::Dinov2 {
        Some(g.mean_tokens("pooler_output", seq, 0, 1)?)
    } else {
        None
    };
    let full = reads_hidden_state(opts, head);
    if let Some(l) = logits {
        g.output(l);
    }
    if full {
        g.output(seq);
        if let Some(p) = pooled {
            g.output(p);
        }
    }
    if opts.hidden_states {
        for t in hidden {
            g.output(t);
        }
    }
    if opts.attention {
        if let Some(qkv) = last_qkv {
            let a = g.attention_probs("cls_attention", qkv, cfg.num_heads, scale, 1, prefix)?;
            g.output(a);
        }
    }
    Ok((g, pos_name))
}

fn ck_shape_len(ck: &Checkpoint, name: &str) -> Option<usize> {
    ck.tensor_shape(name).map(|s| s.iter().product())
}
