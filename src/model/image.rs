//! The `Model` facade: a checkpoint's image tower loaded onto a device, run at any input size,
//! with the tasks built on a run (classification, embeddings, attention maps). Loading is the
//! checkpoint's family's (`FamilyDef::load`), graph building `build.rs`'s, running `runner.rs`'s.

use crate::error::{Error, Result};
use crate::model::runner::Runner;
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::preprocess::PreprocessorConfig;
use crate::model::shared::spec::{Head, ModelConfig};
use crate::model::shared::tower::{Arch, RunOptions};
use crate::quant::Arithmetic;
use crate::tensor::DType;
use crate::{lock, Device, HostTensor, PlanReport, Profile, Weights};

/// A depth map at an image's size ([`Model::depth`]).
#[derive(Clone, Debug)]
pub struct DepthMap {
    /// `height * width` values, row by row.
    pub data: Vec<f32>,
    /// The image's width.
    pub width: usize,
    /// The image's height.
    pub height: usize,
    /// The size of the image the model ran on, (height, width) (its depth map may be larger:
    /// DPT's head doubles past the input).
    pub model_size: (usize, usize),
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
    /// `(B, heads, 1, N)`: last-layer attention of the CLS token over the N patches, when asked
    /// for; for a model without a class token, `(B, heads, N)`: its attention-pooling query's.
    pub cls_attention: Option<HostTensor>,
    /// `(B, P)`: CLIP's image embeddings (the pooled output projected; not normalized), where the
    /// model has a projection.
    pub image_embeds: Option<HostTensor>,
    /// The patch grid (rows, columns) of this input.
    pub grid: (usize, usize),
    /// With token merging and an attention map: `(B, T0)`, for each original token (prefix
    /// tokens first, then the patches), the row it went into among the tokens the map covers,
    /// and `(B, T')` their sizes (ToMe's source tracking).
    pub merge_groups: Option<(HostTensor, HostTensor)>,
    /// With token merging: each encoder layer's tokens and merge.
    pub merge: Vec<crate::model::LayerMerge>,
    /// `(B, H, W)`: the depth at the input's size, where the model has a depth head (Depth
    /// Anything's `predicted_depth`).
    pub predicted_depth: Option<HostTensor>,
    /// Per-op GPU times, when profiling.
    pub profile: Option<Profile>,
}

/// Attention over the patch grid: the class token's in the last layer, or for a model without
/// one (SigLIP, SigLIP 2) its attention-pooling query's, which makes the embedding.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttentionMap {
    /// Whose attention: `"cls"` (the class token's, last layer) or `"pool"` (the pooling head's query).
    pub source: &'static str,
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
    /// With token merging: for each patch, the merged token it is part of where the attention
    /// was taken (patches of one token share a number; ToMe's visualisation colours them
    /// alike). Each patch then holds its token's attention divided by the token's size, so the
    /// map still sums to what the patches took together. Empty without merging.
    pub groups: Vec<u32>,
}

/// Attention over merged tokens `att (heads, T' - prefix)` spread back over the `n` patches:
/// each patch its token's attention over the token's size; and each patch's token (ToMe's source
/// tracking). `groups (prefix + n)`: each original token's row; `sizes (T')`.
fn unmerge_attention(att: &[f32], heads: usize, prefix: usize, n: usize, groups: &[f32], sizes: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let keys = att.len() / heads.max(1);
    let rows: Vec<usize> = (0..n).map(|p| (groups.get(prefix + p).copied().unwrap_or(0.0).round().max(0.0) as usize).clamp(prefix, prefix + keys.max(1) - 1)).collect();
    let mut out = vec![0f32; heads * n];
    for h in 0..heads {
        for (p, &row) in rows.iter().enumerate() {
            out[h * n + p] = att[h * keys + row - prefix] / sizes.get(row).copied().unwrap_or(1.0).max(1.0);
        }
    }
    (out, rows.iter().map(|&r| (r - prefix) as u32).collect())
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

/// `v` scaled to unit length (in f64), as image-text embeddings are compared.
pub fn unit_length(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
    v.iter().map(|x| (*x as f64 / n) as f32).collect()
}

/// What [`Model::arithmetic`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArithmeticReport {
    /// Quantized layers.
    pub quantized: usize,
    /// Of them, multiplied in int8 arithmetic.
    pub int8: usize,
    /// The CPU's integer kernel, where any are (`avx512-vnni`, `avx-vnni`, `avx2`, `portable`).
    pub kernel: Option<&'static str>,
}

impl std::fmt::Display for ArithmeticReport {
    /// `int8 x int8 -> int32 (avx512-vnni kernel, activations quantized per token) in 48 of 48
    /// quantized layers` or `f32 (weights dequantized)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kernel {
            Some(k) => write!(f, "int8 x int8 -> int32 ({k} kernel, activations quantized per token) in {} of {} quantized layers", self.int8, self.quantized)?,
            None => write!(f, "f32")?,
        }
        if self.quantized > self.int8 {
            write!(f, "{}weights dequantized to f32", if self.kernel.is_some() { "; the rest: " } else { " (" })?;
            if self.kernel.is_none() {
                write!(f, ")")?;
            }
        }
        Ok(())
    }
}

/// How a checkpoint is loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// How weights and activations are stored (see [`Model::load_as`]).
    pub storage: DType,
    /// Run at this patch size instead of the checkpoint's: its patch kernel is PI-resized
    /// (FlexiViT) from the checkpoint's own weights and the position embeddings follow the new
    /// grid. None (or the checkpoint's own size) loads it as it is.
    pub patch_size: Option<usize>,
    /// How products with quantized weights compute ([`Arithmetic::Int8`]: int8 x int8 on the CPU
    /// backend for 8-bit per-channel weights; see [`Model::arithmetic`] for what runs).
    pub arithmetic: Arithmetic,
    /// A NaFlex checkpoint's (SigLIP 2's) budget of patches per image instead of its
    /// `preprocessor_config.json`'s `max_num_patches` (an error for other checkpoints).
    pub max_patches: Option<usize>,
    /// Token merging (ToMe) in every run that does not ask otherwise ([`RunOptions::merge`]).
    pub merge: crate::model::Merge,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { storage: DType::F32, patch_size: None, arithmetic: Arithmetic::Dequantized, max_patches: None, merge: crate::model::Merge::NONE }
    }
}

/// A checkpoint uploaded to the GPU, ready to run at any input size (each size is compiled once).
pub struct Model {
    /// The model config (its `patch_size` is the size the model runs at).
    pub config: ModelConfig,
    /// The preprocessing the checkpoint asks for.
    pub preprocessor: PreprocessorConfig,
    /// Where it came from.
    pub source: String,
    head: Head,
    pooler: bool,
    projection: bool,
    storage: DType,
    original_patch: usize,
    merge: crate::model::Merge,
    runner: Runner,
}

/// A run's outputs by name.
fn model_output(mut ran: crate::model::runner::Ran, grid: (usize, usize)) -> ModelOutput {
    let o = ran.outputs.clone();
    // Without a final norm over the tokens (timm's fc_norm), the last hidden state is the
    // last layer's output: one tensor, read back once.
    let last_hidden_state = ran.take(o.last_hidden_state);
    let hidden_states = o
        .hidden_states
        .iter()
        .filter_map(|&t| if Some(t) == o.last_hidden_state { last_hidden_state.clone() } else { ran.take(Some(t)) })
        .collect();
    // SiglipModel's image embeddings are its pooler output: one tensor, read back once.
    let pooler_output = ran.take(o.pooler_output);
    let image_embeds = if o.image_embeds.is_some() && o.image_embeds == o.pooler_output { pooler_output.clone() } else { ran.take(o.image_embeds) };
    ModelOutput {
        logits: ran.take(o.logits),
        last_hidden_state,
        pooler_output,
        hidden_states,
        cls_attention: ran.take(o.cls_attention),
        image_embeds,
        merge_groups: o.merge_groups.and_then(|(g, s)| Some((ran.take(Some(g))?, ran.take(Some(s))?))),
        merge: o.merge.clone(),
        predicted_depth: ran.take(o.predicted_depth).map(|mut t| {
            t.shape.truncate(3);
            t
        }),
        grid,
        profile: ran.profile,
    }
}

impl Model {
    /// Uploads a checkpoint's weights (converted to f32) to a device: a GPU (`&Arc<Gpu>`), the CPU
    /// backend (`&Arc<Cpu>`) or a [`Device`].
    pub fn load(device: impl Into<Device>, ck: &Checkpoint) -> Result<Model> {
        Self::load_as(device, ck, DType::F32)
    }

    /// Uploads a checkpoint's weights stored as `storage`: on a GPU, f16 halves the weights' and
    /// the activations' memory and bandwidth while every kernel still computes in f32 (needs the
    /// adapter's `shader-f16`; results differ from f32 by f16 rounding, about 1e-3 relative). The
    /// CPU backend stores f32 whatever is asked ([`Model::storage`] says which).
    pub fn load_as(device: impl Into<Device>, ck: &Checkpoint, storage: DType) -> Result<Model> {
        Self::load_with(device, ck, LoadOptions { storage, ..Default::default() })
    }

    /// Uploads a checkpoint as `opts` asks: storage dtype and patch size.
    pub fn load_with(device: impl Into<Device>, ck: &Checkpoint, opts: LoadOptions) -> Result<Model> {
        let device = device.into();
        if !ck.has_image_tower() {
            return Err(Error::model(
                format!("{}/config.json", ck.source),
                "a text tower alone (no image tower): it gives text embeddings (`tessera embed --text`, TextEncoder), not image outputs",
            ));
        }
        let storage = opts.storage;
        let preprocessor = match opts.max_patches {
            Some(n) => ck.preprocessor.with_max_patches(n).map_err(|p| Error::Input { name: "max_patches".into(), problem: p })?,
            None => ck.preprocessor.clone(),
        };
        let from = ck.config.patch_size;
        let patch = opts.patch_size.unwrap_or(from);
        crate::model::shared::flexi::check_patch_size(&ck.source, from, patch, ck.config.image_size)?;
        let storage = if device.cpu().is_some() { DType::F32 } else { storage };
        if storage == DType::F16 && !device.has_f16() {
            return Err(Error::UnsupportedDtype {
                op: "load".into(),
                tensor: ck.weights_name().into(),
                dtype: "f16".into(),
                supported: "f32 only: the adapter lacks the shader-f16 feature".into(),
            });
        }
        let def = ck.family_def()?;
        def.check(ck)?;
        // Refused before anything is uploaded if the weights (stored as `storage`) cannot fit the
        // budget.
        let need: u64 = ck
            .tensor_names()
            .iter()
            .filter_map(|n| ck.stored(n))
            .map(|(dt, s, len)| match dt {
                // Floats are converted to the storage type; packed words and integers kept as they are.
                safetensors::Dtype::F32 | safetensors::Dtype::F16 | safetensors::Dtype::BF16 => s.iter().fold(storage.size() as u64, |a, &d| a.saturating_mul(d as u64)),
                _ => len as u64,
            })
            .fold(0u64, u64::saturating_add);
        // A resized patch kernel is larger or smaller than the checkpoint's.
        let (d, c) = (ck.config.hidden_size as u64, ck.config.num_channels as u64);
        let kernel = |p: usize| d * c * (p as u64) * (p as u64) * storage.size() as u64;
        let need = need.saturating_sub(kernel(from)).saturating_add(kernel(patch));
        device.check_memory(&format!("{} (its weights as {storage})", ck.weights_name()), need)?;
        let mut w = Weights::new_as(&device, storage);
        w.set_arithmetic(opts.arithmetic);
        w.set_heads(ck.config.num_heads);
        let loaded = def.load(ck, patch, &mut w)?;
        let mut config = ck.config.clone();
        config.patch_size = patch;
        Ok(Model {
            config,
            preprocessor,
            source: ck.source.clone(),
            head: loaded.head,
            pooler: loaded.pooler,
            projection: loaded.projection,
            storage,
            original_patch: from,
            merge: opts.merge,
            runner: Runner::new(&device, w, loaded.pos),
        })
    }

    /// The token merging runs get unless they ask otherwise.
    pub fn merge(&self) -> crate::model::Merge {
        self.merge
    }

    /// Sets the token merging runs get unless they ask otherwise.
    pub fn set_merge(&mut self, merge: crate::model::Merge) {
        self.merge = merge;
    }

    /// `opts` with the merging it runs with: its own, else the model's; None where nothing merges.
    fn resolve(&self, opts: RunOptions) -> RunOptions {
        RunOptions { merge: Some(opts.merge.unwrap_or(self.merge)).filter(|m| m.is_on()), ..opts }
    }

    /// Each encoder layer's tokens and merge for an input of `h` x `w` pixels with `merge`
    /// (ToMe's cap applied: at most half a layer's unprotected tokens).
    pub fn merge_plan(&self, h: usize, w: usize, merge: crate::model::Merge) -> Vec<crate::model::LayerMerge> {
        let cfg = &self.config;
        let tokens = cfg.prefix_tokens() + (h / cfg.patch_size) * (w / cfg.patch_size);
        merge.plan(cfg.num_layers, tokens, cfg.prefix_tokens())
    }

    /// The model's architecture, as the graph builder takes it.
    pub fn arch(&self) -> Arch<'_> {
        Arch { config: &self.config, head: self.head, pooler: self.pooler, projection: self.projection, storage: self.storage }
    }

    /// How weights and activations are stored (f32, or f16 from [`Model::load_as`]).
    pub fn storage(&self) -> DType {
        self.storage
    }

    /// The checkpoint's own patch size ([`Model::patch_size`] is the one it runs at).
    pub fn original_patch_size(&self) -> usize {
        self.original_patch
    }

    /// The patch size the model runs at.
    pub fn patch_size(&self) -> usize {
        self.config.patch_size
    }

    /// The head this model runs.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Class names (empty for base models).
    pub fn labels(&self) -> &[String] {
        &self.config.labels
    }

    /// How its quantized layers compute: `(layers quantized, of them in int8 arithmetic)`, and
    /// the integer kernel where any are.
    pub fn arithmetic(&self) -> ArithmeticReport {
        let (quantized, int8) = lock(&self.runner.weights).quantized_layers();
        let kernel = self.runner.device.cpu().filter(|_| int8 > 0).map(|c| c.report().int8.name());
        ArithmeticReport { quantized, int8, kernel }
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.runner.device
    }

    /// Bytes of weights on the device.
    pub fn weight_bytes(&self) -> u64 {
        lock(&self.runner.weights).bytes()
    }

    /// How the activation arena of the graph that runs `batch` images of `h` x `w` was packed
    /// (after a run of that size), and the batch that graph takes (smaller when the batch was
    /// split to fit the device).
    pub fn plan(&self, batch: usize, h: usize, w: usize, opts: RunOptions) -> Option<(usize, PlanReport)> {
        self.runner.plan(batch, h, w, self.resolve(opts))
    }

    /// The kernel each node of that graph runs, and why (after a run of that size).
    pub fn kernel_choices(&self, batch: usize, h: usize, w: usize, opts: RunOptions) -> Option<Vec<crate::KernelChoice>> {
        self.runner.kernel_choices(batch, h, w, self.resolve(opts))
    }

    /// GPU time of one run of the graph for `batch` images of `h` x `w`, in ms: `repeats` runs
    /// back to back in one submit on an input written once (no upload, readback or host gap
    /// between them, so the GPU's clocks stay up), timed with timestamp queries. Set against the
    /// wall-clock latency of [`Model::run`], it separates the GPU's work from the host's. None
    /// where the adapter has no timestamps or the batch runs in chunks.
    pub async fn gpu_time_per_run(&self, pixels: &[f32], dims: [usize; 4], opts: RunOptions, repeats: u32) -> Result<Option<f64>> {
        let [b, _, h, w] = dims;
        if self.runner.device.gpu().is_none_or(|g| !g.has_timestamps()) {
            return Ok(None);
        }
        let (graph, chunk) = self.runner.fitting(self.arch(), b, h, w, self.resolve(opts)).await?;
        if chunk < b {
            return Ok(None);
        }
        graph.exe.gpu_time_per_run(&[("pixel_values", pixels)], repeats).await
    }

    /// Number of compiled graphs held (at most [`crate::model::MAX_COMPILED`]).
    pub fn compiled_graphs(&self) -> usize {
        self.runner.compiled_graphs()
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
        let ran = self.runner.run(self.arch(), pixels, dims, self.resolve(opts)).await?;
        Ok(model_output(ran, (h / cfg.patch_size, w / cfg.patch_size)))
    }

    /// Runs SigLIP 2 NaFlex's padded input exactly as `model(pixel_values=...,
    /// pixel_attention_mask=..., spatial_shapes=...)` does in transformers: `patches (B, N,
    /// P*P*C)`, each image's patches in row-major grid order, each flattened in (row, column,
    /// channel) order, then padding (what `Siglip2ImageProcessor` returns); `grids[b]` the image's
    /// (rows, columns) (`spatial_shapes`; its first rows * columns patches are valid). Images of
    /// different grids run as one batch: attention and pooling skip each image's padding, so each
    /// result equals the image run alone. `last_hidden_state` is `(B, N, D)` with the padded rows
    /// as transformers computes them; `grid` is (1, N). A model that does not resample its
    /// positions per grid is an error.
    pub async fn run_patches(&self, patches: &[f32], dims: [usize; 3], grids: &[(usize, usize)], opts: RunOptions) -> Result<ModelOutput> {
        let cfg = &self.config;
        let [b, n, k] = dims;
        let (p, c, d) = (cfg.patch_size, cfg.num_channels, cfg.hidden_size);
        let bad = |name: &str, p: String| Error::Input { name: name.into(), problem: p };
        if !self.runner.resamples_per_grid() {
            return Err(Error::model(&self.source, "padded patch sequences (pixel_values [B, N, P*P*C] with spatial_shapes) are SigLIP 2 NaFlex's input; this model takes pixel_values [B, C, H, W]"));
        }
        if self.storage != DType::F32 {
            return Err(bad("pixel_values", "padded patch sequences run with f32 storage".into()));
        }
        if b == 0 || n == 0 || k != p * p * c {
            return Err(bad("pixel_values", format!("shape [{b}, {n}, {k}]: expected [B, N, {}] (patches of {p}x{p}x{c} values) with B and N at least 1", p * p * c)));
        }
        if b.checked_mul(n).and_then(|v| v.checked_mul(k)) != Some(patches.len()) {
            return Err(bad("pixel_values", format!("{} values do not make shape [{b}, {n}, {k}]", patches.len())));
        }
        if n > crate::model::shared::preprocess::MAX_PATCHES {
            return Err(bad("pixel_values", format!("{n} patches per image is over the {} preprocessing holds", crate::model::shared::preprocess::MAX_PATCHES)));
        }
        if grids.len() != b {
            return Err(bad("spatial_shapes", format!("{} grids for {b} images", grids.len())));
        }
        if let Some((i, g)) = grids.iter().enumerate().find(|(_, g)| g.0 == 0 || g.1 == 0 || g.0.saturating_mul(g.1) > n) {
            return Err(bad("spatial_shapes", format!("image {i}: a grid of {} x {} does not fit its {n} patches", g.0, g.1)));
        }
        if let Some(i) = patches.iter().position(|v| !v.is_finite()) {
            return Err(bad("pixel_values", format!("value {} at index {i} is not finite", patches[i])));
        }
        // Each image's patches as one row of N patches, (B, C, P, N*P): the patch embedding reads
        // patch j from columns j*P.. . Its positions: its own grid's; its length.
        let w = n * p;
        let mut strip = vec![0f32; b * c * p * w];
        let mut positions = vec![0f32; b * n * d];
        for (bi, &(gh, gw)) in grids.iter().enumerate() {
            for j in 0..n {
                let src = &patches[(bi * n + j) * k..(bi * n + j + 1) * k];
                for ky in 0..p {
                    for kx in 0..p {
                        for ch in 0..c {
                            strip[((bi * c + ch) * p + ky) * w + j * p + kx] = src[(ky * p + kx) * c + ch];
                        }
                    }
                }
            }
            let own = self.runner.grid_positions(d, gh, gw).unwrap_or_default();
            let rows = &mut positions[bi * n * d..(bi + 1) * n * d];
            rows[..own.len()].copy_from_slice(&own);
            // The padded rows take the first position's embedding, as transformers fills them.
            for pad in rows[own.len()..].chunks_mut(d) {
                pad.copy_from_slice(&own[..d]);
            }
        }
        let lengths: Vec<f32> = grids.iter().map(|g| (g.0 * g.1) as f32).collect();
        let opts = RunOptions { masked: true, ..self.resolve(opts) };
        let extra: [(&str, &[f32]); 2] = [("positions", &positions), ("lengths", &lengths)];
        let ran = self.runner.run_with(self.arch(), &strip, [b, c, p, w], &extra, opts).await?;
        Ok(model_output(ran, (1, n)))
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
            let (p, h, w) = self.preprocessor.apply(img).map_err(|e| match e {
                Error::Input { problem, .. } => Error::Input { name: format!("image {i}"), problem },
                e => e,
            })?;
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

    /// The depth of an image at the image's own size (Depth Anything, DPT): preprocessed as the
    /// checkpoint asks, run, then `predicted_depth` resized back as transformers'
    /// `post_process_depth_estimation` does (bicubic). Relative models give larger values nearer
    /// the camera; metric ones meters.
    pub async fn depth(&self, img: &image::RgbImage) -> Result<DepthMap> {
        if self.config.depth.is_none() {
            return Err(Error::Input { name: self.source.clone(), problem: "this model has no depth head (a Depth Anything or DPT checkpoint has one)".into() });
        }
        let (pixels, h, w) = self.preprocessor.apply(img)?;
        let out = self.run(&pixels, [1, 3, h, w], RunOptions { logits_only: true, ..Default::default() }).await?;
        let d = out.predicted_depth.ok_or_else(|| Error::gpu("", "no predicted_depth"))?;
        let (width, height) = (img.width() as usize, img.height() as usize);
        let data = crate::model::shared::dpt::resize_bicubic(&d.data, (d.shape[1], d.shape[2]), (height, width));
        Ok(DepthMap { data, width, height, model_size: (h, w) })
    }

    /// [`Model::depth`], blocking (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn depth_blocking(&self, img: &image::RgbImage) -> Result<DepthMap> {
        pollster::block_on(self.depth(img))
    }

    /// The model's preprocessing with the patch budget `max_patches` (a NaFlex checkpoint's;
    /// `None`: the model's own), or an input error naming `what` and why.
    pub fn preprocessor_with_budget(&self, max_patches: Option<usize>, what: &str) -> Result<PreprocessorConfig> {
        match max_patches {
            Some(n) => self.preprocessor.with_max_patches(n).map_err(|p| Error::Input { name: what.into(), problem: p }),
            None => Ok(self.preprocessor.clone()),
        }
    }

    /// Top-k classes of each image.
    pub async fn classify(&self, images: &[&image::RgbImage], k: usize) -> Result<Vec<Vec<TopK>>> {
        self.classify_with(images, k, &self.preprocessor, None).await
    }

    /// [`Model::classify`] with the preprocessing `pre` (another patch budget, from
    /// [`PreprocessorConfig::with_max_patches`]). Images that preprocess to different sizes (a
    /// NaFlex model's, of different aspect ratios) run as one batch per size. `merge`: token
    /// merging for this call (None: the model's, [`Model::merge`]).
    pub async fn classify_with(&self, images: &[&image::RgbImage], k: usize, pre: &PreprocessorConfig, merge: Option<crate::model::Merge>) -> Result<Vec<Vec<TopK>>> {
        if self.head == Head::None {
            return Err(Error::model(&self.source, "this is a base model without a classifier head"));
        }
        let mut out: Vec<Vec<TopK>> = vec![Vec::new(); images.len()];
        for (idx, pixels, h, w) in self.preprocess_groups(images, pre)? {
            let ran = self.run(&pixels, [idx.len(), 3, h, w], RunOptions { logits_only: true, merge, ..Default::default() }).await?;
            let logits = ran.logits.ok_or_else(|| Error::gpu("", "no logits"))?;
            for (i, top) in idx.into_iter().zip(self.top_k(&logits, k)) {
                out[i] = top;
            }
        }
        Ok(out)
    }

    /// One embedding per image: for CLIP the image embedding in the image-text space (unit
    /// length), else the pooler output where the model has one, else the CLS token.
    pub async fn embed(&self, images: &[&image::RgbImage]) -> Result<Vec<Vec<f32>>> {
        self.embed_with(images, &self.preprocessor, None).await
    }

    /// [`Model::embed`] with the preprocessing `pre`; images of different sizes run as one batch
    /// per size; `merge` as for [`Model::classify_with`].
    pub async fn embed_with(&self, images: &[&image::RgbImage], pre: &PreprocessorConfig, merge: Option<crate::model::Merge>) -> Result<Vec<Vec<f32>>> {
        let d = self.config.hidden_size;
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); images.len()];
        for (idx, pixels, h, w) in self.preprocess_groups(images, pre)? {
            let ran = self.run(&pixels, [idx.len(), 3, h, w], RunOptions { merge, ..Default::default() }).await?;
            let rows: Vec<Vec<f32>> = if let Some(e) = ran.image_embeds {
                let p = e.shape[1];
                e.data.chunks(p).map(unit_length).collect()
            } else if let Some(p) = ran.pooler_output {
                p.data.chunks(d).map(|c| c.to_vec()).collect()
            } else {
                let seq = ran.last_hidden_state.ok_or_else(|| Error::gpu("", "no last hidden state"))?;
                let t = seq.shape[1];
                seq.data.chunks(t * d).map(|c| c[..d].to_vec()).collect()
            };
            for (i, row) in idx.into_iter().zip(rows) {
                out[i] = row;
            }
        }
        Ok(out)
    }

    /// `images` preprocessed by `pre` and grouped by the size they come to, in order of first
    /// appearance: each group's image indices, pixels `(n, 3, h, w)`, h and w.
    #[allow(clippy::type_complexity)]
    fn preprocess_groups(&self, images: &[&image::RgbImage], pre: &PreprocessorConfig) -> Result<Vec<(Vec<usize>, Vec<f32>, usize, usize)>> {
        if images.is_empty() {
            return Err(Error::Input { name: "images".into(), problem: "no images".into() });
        }
        let mut groups: Vec<(Vec<usize>, Vec<f32>, usize, usize)> = Vec::new();
        for (i, img) in images.iter().enumerate() {
            let (p, h, w) = pre.apply(img).map_err(|e| match e {
                Error::Input { problem, .. } => Error::Input { name: format!("image {i}"), problem },
                e => e,
            })?;
            match groups.iter_mut().find(|g| (g.2, g.3) == (h, w)) {
                Some(g) => {
                    g.0.push(i);
                    g.1.extend(p);
                }
                None => groups.push((vec![i], p, h, w)),
            }
        }
        Ok(groups)
    }

    /// The last layer's attention of the CLS token over the patch grid, per head and the mean; for
    /// a model without a class token, its attention-pooling head's.
    pub async fn attention_map(&self, img: &image::RgbImage) -> Result<AttentionMap> {
        self.attention_map_with(img, &self.preprocessor, None).await
    }

    /// [`Model::attention_map`] with the preprocessing `pre`.
    pub async fn attention_map_with(&self, img: &image::RgbImage, pre: &PreprocessorConfig, merge: Option<crate::model::Merge>) -> Result<AttentionMap> {
        let (pixels, h, w) = pre.apply(img)?;
        let out = self.run(&pixels, [1, 3, h, w], RunOptions { attention: true, merge, ..Default::default() }).await?;
        let att = out.cls_attention.ok_or_else(|| Error::model(&self.source, "this model has neither a class token nor an attention-pooling head: there is no attention map of it to show"))?;
        let source = if self.config.layout.class_token { "cls" } else { "pool" };
        let heads = att.shape[1];
        let n = out.grid.0 * out.grid.1;
        let (per_head, groups) = match &out.merge_groups {
            Some((groups, sizes)) => unmerge_attention(&att.data, heads, self.config.prefix_tokens(), n, &groups.data, &sizes.data),
            None => (att.data, Vec::new()),
        };
        let mean = (0..n).map(|j| (0..heads).map(|k| per_head[k * n + j]).sum::<f32>() / heads as f32).collect();
        Ok(AttentionMap { source, rows: out.grid.0, cols: out.grid.1, heads, per_head, mean, groups })
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

