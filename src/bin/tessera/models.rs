//! Model sources (the embedded default, a checkpoint folder, a hub id) and image batches.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use tessera::{Checkpoint, Device, Model};

#[derive(clap::Args)]
pub struct ModelArg {
    /// Checkpoint folder (config.json, model.safetensors, preprocessor_config.json), hub id
    /// (org/name), or a built-in config with random weights (vit-b16, deit-s16, deit-ti16); the
    /// embedded Fashion-MNIST ViT when omitted.
    #[arg(long, short)]
    pub model: Option<String>,
    /// Store weights and activations as f16 (f32 arithmetic): half the GPU memory and bandwidth,
    /// outputs within about 1e-2 of f32. Needs an adapter with shader-f16.
    #[arg(long)]
    pub f16: bool,
    /// Run at this patch size instead of the checkpoint's own: its patch kernel is PI-resized
    /// (FlexiViT) and the position embeddings follow the new grid. Smaller patches mean more
    /// tokens: finer detail, more time. The embedded model was trained for 2, 4, 7 and 14.
    #[arg(long, value_name = "P")]
    pub patch_size: Option<usize>,
    /// With an 8-bit checkpoint (`tessera quantize --bits 8`) on the CPU backend: int8 x int8
    /// arithmetic, the activations quantized per token as each product runs (VNNI where the CPU
    /// has it): faster, within the rounding of the activations. `tessera info --int8` says which
    /// layers run it.
    #[arg(long)]
    pub int8: bool,
    /// With a NaFlex checkpoint (SigLIP 2): the budget of 16-pixel patches per image instead of
    /// its preprocessor_config.json's max_num_patches. Each image keeps its aspect ratio at the
    /// largest scale whose grid fits: fewer patches, faster and coarser.
    #[arg(long, value_name = "N")]
    pub max_patches: Option<usize>,
    /// Token merging (ToMe): merge R of the most similar tokens in every encoder layer, between
    /// attention and MLP, weighted by the tokens each stands for (class, distillation and
    /// register tokens never merge; a layer merges at most half its tokens). Fewer tokens,
    /// faster, a little less accurate. `tessera info --merge R` prints the tokens per layer.
    #[arg(long, value_name = "R")]
    pub merge: Option<usize>,
    /// How --merge spreads over the layers: `constant` (R each) or `decreasing` (2R in the
    /// first layer down to 0 in the last: ToMe's decreasing schedule).
    #[arg(long, value_name = "S", default_value = "constant", value_parser = parse_schedule)]
    pub merge_schedule: tessera::MergeSchedule,
}

pub fn parse_schedule(s: &str) -> std::result::Result<tessera::MergeSchedule, String> {
    s.parse()
}

/// How a model is loaded: the options of `--model` besides the checkpoint.
#[derive(Clone, Copy, Default)]
pub struct Choices {
    pub f16: bool,
    pub patch: Option<usize>,
    pub int8: bool,
    pub max_patches: Option<usize>,
    pub merge: tessera::Merge,
}

impl ModelArg {
    /// Its load options.
    pub fn choices(&self) -> Choices {
        Choices { f16: self.f16, patch: self.patch_size, int8: self.int8, max_patches: self.max_patches, merge: tessera::Merge { r: self.merge.unwrap_or(0), schedule: self.merge_schedule } }
    }
}

/// Loads `--model` (nothing for the embedded default, a folder, or a hub id), f16 with `--f16`,
/// at `--patch-size`.
pub fn load(device: &Device, arg: &ModelArg) -> Result<Model> {
    load_spec(device, arg.model.as_deref(), arg.choices())
}

pub fn load_spec(device: &Device, spec: Option<&str>, choices: Choices) -> Result<Model> {
    let ck = checkpoint(spec)?;
    load_checkpoint(device, &ck, choices)
}

/// The checkpoint a `--model` value names.
pub fn checkpoint(spec: Option<&str>) -> Result<Checkpoint> {
    Ok(match spec {
        None | Some("default") | Some("embedded") => tessera::model::embedded::checkpoint()?,
        Some(s) if tessera::model::synthetic::NAMES.contains(&s) => tessera::model::synthetic::checkpoint(s)?,
        Some(s) if Path::new(s).is_dir() => Checkpoint::from_dir(Path::new(s))?,
        Some(s) if Path::new(s).exists() => bail!("{s}: --model takes a checkpoint folder (config.json, model.safetensors), not a file"),
        Some(s) if looks_like_hub_id(s) => crate::hub::checkpoint(s)?,
        Some(s) => bail!("{s}: no such checkpoint folder (a hub id looks like `org/name`)"),
    })
}

/// Loads a checkpoint onto the device, f16 where asked, at `patch` (PI-resized from the
/// checkpoint's own kernel) where given, in int8 arithmetic where asked.
pub fn load_checkpoint(device: &Device, ck: &Checkpoint, choices: Choices) -> Result<Model> {
    let Choices { f16, patch, int8, max_patches, merge } = choices;
    let merge = tessera::Merge::new(merge.r, merge.schedule)?;
    let storage = if f16 { tessera::DType::F16 } else { tessera::DType::F32 };
    if f16 && device.cpu().is_some() {
        eprintln!("note: the CPU backend stores and computes f32; --f16 applies to GPU adapters (--device gpu)");
    }
    let arithmetic = if int8 { tessera::quant::Arithmetic::Int8 } else { tessera::quant::Arithmetic::Dequantized };
    let model = Model::load_with(device, ck, tessera::LoadOptions { storage, patch_size: patch, arithmetic, max_patches, merge })?;
    if merge.is_on() {
        let (h, w) = model.config.image_size;
        let plan = model.merge_plan(h, w, merge);
        if let Some(l) = plan.iter().find(|l| l.r < l.asked) {
            eprintln!("note: --merge {}: at {h}x{w} a layer merges at most half its unprotected tokens, so layers from {} merge fewer ({} there); `tessera info --merge {}` prints each layer's", merge.r, plan.iter().position(|x| x == l).unwrap_or(0), l.r, merge.r);
        }
    }
    if int8 {
        let a = model.arithmetic();
        if a.quantized == 0 {
            eprintln!("note: --int8 applies to 8-bit checkpoints (`tessera quantize --bits 8`); {} has no quantized layers, it runs in f32", model.source);
        } else if device.cpu().is_none() {
            eprintln!("note: --int8 runs on the CPU backend (--device cpu); on a GPU the weights are dequantized");
        } else if a.int8 < a.quantized {
            eprintln!("note: --int8: {} of {} quantized layers run in int8 (the others are 4-bit or have grouped scales)", a.int8, a.quantized);
        }
    }
    if model.patch_size() != model.original_patch_size() {
        eprintln!(
            "note: running {} at patch size {} (its own is {}): patch kernel PI-resized, position embeddings interpolated",
            model.source,
            model.patch_size(),
            model.original_patch_size()
        );
    }
    Ok(model)
}

fn looks_like_hub_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            p.starts_with(|c: char| c.is_ascii_alphanumeric())
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"];

/// Expands folders (their image files, sorted) and keeps files as given.
pub fn collect_images(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(a)
                .with_context(|| format!("{}: cannot list the folder", a.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("{}: the folder has no images ({})", a.display(), IMAGE_EXTENSIONS.join(", "));
            }
            out.extend(files);
        } else {
            out.push(a.clone());
        }
    }
    if out.is_empty() {
        bail!("no images given");
    }
    Ok(out)
}

/// One preprocessed image.
pub struct Prepared {
    pub path: PathBuf,
    pub pixels: Vec<f32>,
    pub size: (usize, usize),
}

pub fn prepare(model: &Model, path: &Path) -> Result<Prepared> {
    Ok(prepare_image(model, path)?.0)
}

/// [`prepare`], also returning the decoded image.
pub fn prepare_image(model: &Model, path: &Path) -> Result<(Prepared, image::RgbImage)> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("{name}: cannot read"))?;
    let img = tessera::model::decode_image(&bytes, &name)?;
    let (pixels, h, w) = model.preprocessor.apply(&img).with_context(|| name.clone())?;
    if h < model.config.patch_size || w < model.config.patch_size {
        bail!("{name}: preprocessed to {h}x{w}, smaller than one {0}x{0} patch", model.config.patch_size);
    }
    if pixels.len() != model.config.num_channels * h * w {
        bail!("{name}: the model takes {} channels", model.config.num_channels);
    }
    Ok((Prepared { path: path.to_path_buf(), pixels, size: (h, w) }, img))
}

/// Images prepared on worker threads, handed out in order: decoding and resizing (the CPU side of
/// a run, often slower than the GPU's) run in parallel and ahead of the GPU, at most `ahead`
/// images ahead of the consumer so memory stays bounded.
struct Prefetch<'a> {
    state: std::sync::Mutex<PrefetchState>,
    ready: std::sync::Condvar,
    next: std::sync::atomic::AtomicUsize,
    paths: &'a [PathBuf],
    ahead: usize,
}

struct PrefetchState {
    done: std::collections::BTreeMap<usize, Result<Prepared>>,
    consumed: usize,
    stop: bool,
}

impl<'a> Prefetch<'a> {
    fn new(paths: &'a [PathBuf], ahead: usize) -> Self {
        Prefetch {
            state: std::sync::Mutex::new(PrefetchState { done: Default::default(), consumed: 0, stop: false }),
            ready: std::sync::Condvar::new(),
            next: Default::default(),
            paths,
            ahead: ahead.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PrefetchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A worker: prepares the next unclaimed image, waiting while it would run too far ahead.
    fn work(&self, model: &Model) {
        loop {
            let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= self.paths.len() {
                return;
            }
            let mut st = self.lock();
            while !st.stop && i >= st.consumed + self.ahead {
                st = self.ready.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.stop {
                return;
            }
            drop(st);
            // A decoder that panics fails this image instead of leaving the consumer waiting.
            let path = &self.paths[i];
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare(model, path)))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("{}: the image decoder failed", path.display())));
            self.lock().done.insert(i, r);
            self.ready.notify_all();
        }
    }

    /// Image `i`, once a worker has it (images are taken in order).
    fn take(&self, i: usize) -> Result<Prepared> {
        let mut st = self.lock();
        loop {
            if let Some(r) = st.done.remove(&i) {
                st.consumed = i + 1;
                self.ready.notify_all();
                return r;
            }
            st = self.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Lets the workers go (after an error or at the end).
    fn stop(&self) {
        self.lock().stop = true;
        self.ready.notify_all();
    }
}

/// Runs images through the model in batches of `batch` (consecutive images of one size share a
/// batch), calling `each` with every image and its row of the outputs. Images are prepared on
/// worker threads ahead of the GPU (see [`Prefetch`]).
pub fn run_batches(
    model: &Model,
    paths: &[PathBuf],
    batch: usize,
    opts: tessera::RunOptions,
    mut each: impl FnMut(&Prepared, &tessera::ModelOutput, usize) -> Result<()>,
) -> Result<()> {
    let bar = if paths.len() > batch {
        let b = ProgressBar::new(paths.len() as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut pending: Vec<Prepared> = Vec::new();
    let done = std::cell::Cell::new(0);
    let flush = |pending: &mut Vec<Prepared>, each: &mut dyn FnMut(&Prepared, &tessera::ModelOutput, usize) -> Result<()>| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let (h, w) = pending[0].size;
        let c = model.config.num_channels;
        let pixels: Vec<f32> = pending.iter().flat_map(|p| p.pixels.iter().copied()).collect();
        let out = model.run_blocking(&pixels, [pending.len(), c, h, w], opts)?;
        for (i, p) in pending.iter().enumerate() {
            each(p, &out, i)?;
        }
        bar.inc(pending.len() as u64);
        done.set(done.get() + pending.len());
        pending.clear();
        crate::interrupt::check(done.get(), paths.len())
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8).min(paths.len());
    let prefetch = Prefetch::new(paths, 2 * batch.max(workers));
    let result = std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| prefetch.work(model));
        }
        let result = (|| -> Result<()> {
            for i in 0..paths.len() {
                crate::interrupt::check(done.get(), paths.len())?;
                let p = prefetch.take(i)?;
                if pending.first().is_some_and(|q| q.size != p.size) || pending.len() == batch {
                    flush(&mut pending, &mut each)?;
                }
                pending.push(p);
            }
            flush(&mut pending, &mut each)
        })();
        prefetch.stop();
        result
    });
    bar.finish_and_clear();
    result
}

/// Row `i` of a `(B, ...)` tensor.
pub fn row(t: &tessera::HostTensor, i: usize) -> &[f32] {
    let n = t.data.len() / t.shape[0].max(1);
    &t.data[i * n..(i + 1) * n]
}
