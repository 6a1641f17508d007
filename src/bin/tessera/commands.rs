//! The model subcommands: run, classify, embed, attention, eval.

use crate::models::{self, row};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use tessera::{Device, RunOptions};

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
}

#[derive(clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArg,
}

/// With `--model` or `--patch-size`: the model as it would run.
pub fn info_model(device: &Device, args: &InfoArgs) -> Result<()> {
    let m = &args.model;
    if m.model.is_none() && m.patch_size.is_none() {
        return Ok(());
    }
    let ck = models::checkpoint(m.model.as_deref())?;
    if ck.config.family == tessera::model::Family::TextOnly {
        // A text tower alone: its shape and tokenizer, no image side.
        let t = tessera::model::TextConfig::parse(ck.config_json(), &format!("{}/config.json", ck.source))?;
        let tokenizer = if ck.tokenizer_json().is_some() { "tokenizer.json" } else if ck.sentencepiece().is_some() { "spiece.model" } else { "none" };
        println!(
            "\nmodel: {} (a {:?} text tower alone, {} layers, width {}, {} heads, {} positions, {} tokens; projection: {}; tokenizer: {tokenizer})",
            ck.source,
            t.kind,
            t.num_layers,
            t.hidden_size,
            t.num_heads,
            t.max_positions,
            t.vocab_size,
            t.projection_dim.map_or("none".into(), |p| format!("{p} wide")),
        );
        return Ok(());
    }
    let model = models::load_checkpoint(device, &ck, m.f16, m.patch_size)?;
    let c = &model.config;
    let (h, w) = c.image_size;
    let (p, own) = (model.patch_size(), model.original_patch_size());
    println!("\nmodel: {} ({:?}, {} layers, width {}, {} heads, {} classes)", model.source, c.family, c.num_layers, c.hidden_size, c.num_heads, c.labels.len());
    println!(
        "patch size: {p}{}; at {h}x{w}: a {}x{} grid, {} tokens",
        if p != own { format!(" (PI-resized from the checkpoint's {own})") } else { " (the checkpoint's own)".into() },
        h / p,
        w / p,
        c.prefix_tokens() + (h / p) * (w / p)
    );
    let quant = model.config.quant.as_ref().map(|q| format!(" (Linear layers {q}, the rest {})", model.storage())).unwrap_or_else(|| format!(" as {}", model.storage()));
    println!("weights: {:.2} MiB{quant} on {}", model.weight_bytes() as f64 / 1048576.0, device.name());
    Ok(())
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    model: ModelArg,
    /// safetensors file with `pixel_values` (B, C, H, W), f32.
    #[arg(long)]
    pixels: PathBuf,
    /// Where to write logits, last_hidden_state and pooler_output (f32 safetensors).
    #[arg(long)]
    out: PathBuf,
    /// Also write every layer's hidden state (hidden_state.0 = embeddings, hidden_state.i = layer i).
    #[arg(long)]
    hidden_states: bool,
}

#[derive(clap::Args)]
pub struct ClassifyArgs {
    /// Image files or folders of images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArg,
    /// Zero-shot with a CLIP or SigLIP model: classify into these labels (comma-separated)
    /// instead of the model's classes. CLIP's scores are a softmax over the labels; SigLIP's each
    /// label's own sigmoid (they need not sum to 100%).
    #[arg(long, value_delimiter = ',', conflicts_with = "labels_file")]
    labels: Vec<String>,
    /// Zero-shot labels from a file, one per line.
    #[arg(long, value_name = "FILE")]
    labels_file: Option<PathBuf>,
    /// Zero-shot prompt: `{}` is replaced by each label.
    #[arg(long, default_value = "a photo of a {}.")]
    template: String,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Images per GPU run.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Print JSON (see README, "JSON output").
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Image files or folders of images.
    #[arg(required_unless_present = "text")]
    images: Vec<PathBuf>,
    /// With a CLIP or SigLIP model (or a text tower alone): embed this text (repeatable) in the
    /// image-text space, unit length (a text tower without projection: its pooled features),
    /// tokenized with the checkpoint's tokenizer.json (cut to the model's positions, said on
    /// stderr).
    #[arg(long, conflicts_with = "images")]
    text: Vec<String>,
    #[command(flatten)]
    model: ModelArg,
    /// Which embedding: the model's pooler output (ViT/DeiT pooler, DINOv2 normed CLS, timm's
    /// pre-logits features; CLIP: the image embedding in the image-text space, unit length), the
    /// CLS token of the last hidden state, or the mean of its patch tokens.
    #[arg(long, value_enum, default_value = "pooler")]
    pool: Pool,
    /// Images per GPU run.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Write the embeddings as a (N, D) f32 safetensors tensor `embeddings` instead of JSON lines.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Pooler,
    Cls,
    Mean,
}

#[derive(clap::Args)]
pub struct AttentionArgs {
    /// The image.
    image: PathBuf,
    #[command(flatten)]
    model: ModelArg,
    /// Output PNG: the image with the CLS attention of the last layer overlaid, patch grid drawn.
    #[arg(long, default_value = "attention.png")]
    out: PathBuf,
    /// One head instead of the mean over heads.
    #[arg(long)]
    head: Option<usize>,
}

#[derive(clap::Args)]
pub struct SoakArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Inferences in the loop.
    #[arg(long, default_value_t = 10_000)]
    runs: usize,
    /// Times the model is loaded and dropped afterwards.
    #[arg(long, default_value_t = 100)]
    reloads: usize,
    /// Fail if resident memory grows by more than this many MiB after the warm-up.
    #[arg(long, default_value_t = 64.0)]
    max_growth_mib: f64,
}

fn rss_mib() -> f64 {
    // Resident set size from /proc (Linux); on CPU adapters this includes "GPU" memory.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<f64>().ok()))
        .map(|pages| pages * 4096.0 / 1048576.0)
        .unwrap_or(f64::NAN)
}

pub fn soak(device: &Device, args: &SoakArgs) -> Result<()> {
    let mut model = models::load(device, &args.model)?;
    let (h, w) = model.config.image_size;
    let pixels = tessera::reference::Rng::new(1).vec(model.config.num_channels * h * w, 1.0);
    let dims = [1, model.config.num_channels, h, w];
    let first = model.run_blocking(&pixels, dims, RunOptions::default())?.last_hidden_state.context("no last hidden state")?.data;
    let warmup = (args.runs / 10).max(1);
    let mut base = f64::NAN;
    let mut peak: f64 = 0.0;
    let start = std::time::Instant::now();
    for i in 0..args.runs {
        let out = model.run_blocking(&pixels, dims, RunOptions::default())?;
        if out.last_hidden_state.as_ref().map(|t| &t.data) != Some(&first) {
            bail!("run {i} gave a different result from the first run");
        }
        if i + 1 == warmup {
            base = rss_mib();
        }
        crate::interrupt::check(i + 1, args.runs)?;
        if (i + 1) % (args.runs / 10).max(1) == 0 {
            let rss = rss_mib();
            peak = peak.max(rss);
            println!("run {:>6}: resident {rss:.1} MiB", i + 1);
        }
    }
    let runs_growth = peak - base;
    println!("{} runs in {:.1} s; growth after warm-up {runs_growth:.1} MiB", args.runs, start.elapsed().as_secs_f64());
    let mut reload_base = f64::NAN;
    let mut reload_peak: f64 = 0.0;
    for i in 0..args.reloads {
        drop(model);
        model = models::load(device, &args.model)?;
        model.run_blocking(&pixels, dims, RunOptions::default())?;
        if i == (args.reloads / 10).max(1) - 1 {
            reload_base = rss_mib();
        }
        reload_peak = reload_peak.max(rss_mib());
    }
    let reload_growth = if args.reloads > 0 { reload_peak - reload_base } else { 0.0 };
    println!("{} loads and drops; growth after warm-up {reload_growth:.1} MiB", args.reloads);
    if runs_growth > args.max_growth_mib || reload_growth > args.max_growth_mib {
        bail!("resident memory grew by more than {} MiB", args.max_growth_mib);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Folder with Fashion-MNIST's t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    data: PathBuf,
    /// Images per GPU run.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    /// Print JSON: accuracy, count, and the predicted class of every image.
    #[arg(long)]
    json: bool,
}

fn tensor_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes f32 tensors given as (name, shape, values).
fn write_safetensors(path: &Path, tensors: &[(&str, &[usize], &[f32])]) -> Result<()> {
    use safetensors::tensor::TensorView;
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, data)| tensor_bytes(data)).collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, shape, _), b)| Ok((n.to_string(), TensorView::new(safetensors::Dtype::F32, shape.to_vec(), b)?)))
        .collect::<Result<_>>()?;
    // Written next to the target and renamed, so an interrupted run never leaves a partial file.
    let tmp = partial_path(path);
    safetensors::serialize_to_file(views, None, &tmp).with_context(|| format!("{}: cannot write", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

pub fn run(device: &Device, args: &RunArgs) -> Result<()> {
    let model = models::load(device, &args.model)?;
    let name = args.pixels.display().to_string();
    let bytes = std::fs::read(&args.pixels).with_context(|| format!("{name}: cannot read"))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| anyhow::anyhow!("{name}: not a valid safetensors file: {e}"))?;
    let names = st.names();
    let key = if names.contains(&"pixel_values") {
        "pixel_values".to_string()
    } else if names.len() == 1 {
        names[0].to_string()
    } else {
        bail!("{name}: no tensor `pixel_values` (found: {})", names.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "));
    };
    let view = st.tensor(&key)?;
    if view.dtype() != safetensors::Dtype::F32 || view.shape().len() != 4 {
        bail!("{name}: `{key}` must be f32 with shape [B, C, H, W], got {:?} {:?}", view.dtype(), view.shape());
    }
    let s = view.shape();
    let pixels: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let out = model.run_blocking(&pixels, [s[0], s[1], s[2], s[3]], RunOptions { hidden_states: args.hidden_states, ..Default::default() })?;
    let mut tensors: Vec<(String, &tessera::HostTensor)> = Vec::new();
    if let Some(l) = &out.logits {
        tensors.push(("logits".into(), l));
    }
    if let Some(t) = &out.last_hidden_state {
        tensors.push(("last_hidden_state".into(), t));
    }
    if let Some(p) = &out.pooler_output {
        tensors.push(("pooler_output".into(), p));
    }
    if let Some(p) = &out.image_embeds {
        tensors.push(("image_embeds".into(), p));
    }
    for (i, h) in out.hidden_states.iter().enumerate() {
        tensors.push((format!("hidden_state.{i}"), h));
    }
    let refs: Vec<(&str, &[usize], &[f32])> = tensors.iter().map(|(n, t)| (n.as_str(), &t.shape[..], &t.data[..])).collect();
    write_safetensors(&args.out, &refs)?;
    eprintln!("wrote {} ({})", args.out.display(), tensors.iter().map(|(n, t)| format!("{n} {:?}", t.shape)).collect::<Vec<_>>().join(", "));
    Ok(())
}

pub fn classify(device: &Device, args: &ClassifyArgs) -> Result<()> {
    if !args.labels.is_empty() || args.labels_file.is_some() {
        return zero_shot(device, args);
    }
    let model = models::load(device, &args.model)?;
    if model.labels().is_empty() {
        if model.arch().projection {
            bail!("{}: a CLIP or SigLIP model has no fixed classes: give --labels \"a cat,a dog\" for zero-shot, or use `tessera embed`", model.source);
        }
        bail!("{}: this is a base model without a classifier head; use `tessera embed`", model.source);
    }
    let paths = models::collect_images(&args.images)?;
    let mut results = Vec::new();
    let opts = RunOptions { logits_only: true, ..Default::default() };
    models::run_batches(&model, &paths, args.batch.max(1), opts, |p, out, i| {
        let logits = out.logits.as_ref().context("no logits")?;
        let one = tessera::HostTensor { id: logits.id, name: logits.name.clone(), shape: vec![1, logits.shape[1]], data: row(logits, i).to_vec() };
        let top = model.top_k(&one, args.top).remove(0);
        results.push((p.path.display().to_string(), top));
        Ok(())
    })?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({
            "model": model.source,
            "patch_size": model.patch_size(),
            "original_patch_size": model.original_patch_size(),
            "results": results.iter().map(|(img, top)| serde_json::json!({"image": img, "top": top})).collect::<Vec<_>>(),
        });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        for (img, top) in &results {
            writeln!(stdout, "{img}")?;
            for t in top {
                writeln!(stdout, "  {:>6.2}%  {}", t.score * 100.0, t.label)?;
            }
        }
    }
    Ok(())
}

/// A CLIP or SigLIP checkpoint with its text tower (`--model` must name one).
fn load_clip(device: &Device, arg: &ModelArg) -> Result<tessera::model::clip::Clip> {
    let spec = arg.model.as_deref().context("zero-shot and text embeddings need a CLIP or SigLIP checkpoint: give --model")?;
    let ck = models::checkpoint(Some(spec))?;
    Ok(tessera::model::clip::Clip::load(device, &ck)?)
}

/// `classify --labels`: each image against the labels through the template.
fn zero_shot(device: &Device, args: &ClassifyArgs) -> Result<()> {
    let labels: Vec<String> = match &args.labels_file {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("{}: cannot read", f.display()))?.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
        None => args.labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect(),
    };
    if labels.is_empty() {
        bail!("no labels: give --labels \"a cat,a dog\" or --labels-file FILE");
    }
    let clip = load_clip(device, &args.model)?;
    let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    let paths = models::collect_images(&args.images)?;
    let mut results = Vec::new();
    for p in &paths {
        let img = tessera::model::decode_image(&std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?, &p.display().to_string())?;
        let mut scores = pollster::block_on(clip.zero_shot(&img, &refs, &args.template))?;
        scores.truncate(args.top.max(1));
        results.push((p.display().to_string(), scores));
        crate::interrupt::check(results.len(), paths.len())?;
    }
    if args.json {
        let doc = serde_json::json!({
            "model": clip.vision.source, "template": args.template, "scores": if clip.bias.is_some() { "sigmoid" } else { "softmax" },
            "results": results.iter().map(|(img, s)| serde_json::json!({"image": img, "top": s})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        if clip.bias.is_some() {
            println!("(SigLIP: each score is that label's own probability)");
        }
        for (img, scores) in &results {
            println!("{img}");
            for s in scores {
                println!("  {:>6.2}%  {}", s.score * 100.0, s.label);
            }
        }
    }
    Ok(())
}

/// `embed --text`: text embeddings of a CLIP or SigLIP model, or of a text tower alone (only the
/// text tower is loaded).
fn embed_texts(device: &Device, args: &EmbedArgs) -> Result<()> {
    let spec = args.model.model.as_deref().context("text embeddings need a CLIP or SigLIP checkpoint (or a text tower's): give --model")?;
    let ck = models::checkpoint(Some(spec))?;
    let text = tessera::model::clip::TextEncoder::load(device, &ck)?;
    let refs: Vec<&str> = args.text.iter().map(String::as_str).collect();
    let out = pollster::block_on(text.embed_texts(&refs))?;
    for (t, cut) in args.text.iter().zip(&out.truncated) {
        if *cut {
            eprintln!("note: {t:?} was cut to the model's {} tokens, as its processor does", text.model.config.max_positions);
        }
    }
    let rows: Vec<(String, Vec<f32>)> = args.text.iter().cloned().zip(out.embeddings).collect();
    write_embeddings(args, &rows, "text")
}

pub fn embed(device: &Device, args: &EmbedArgs) -> Result<()> {
    if !args.text.is_empty() {
        return embed_texts(device, args);
    }
    let model = models::load(device, &args.model)?;
    let paths = models::collect_images(&args.images)?;
    let prefix = model.config.prefix_tokens();
    let d = model.config.hidden_size;
    let mut rows: Vec<(String, Vec<f32>)> = Vec::new();
    models::run_batches(&model, &paths, args.batch.max(1), RunOptions::default(), |p, out, i| {
        let seq = row(out.last_hidden_state.as_ref().context("no last hidden state")?, i);
        let v = match (args.pool, &out.pooler_output) {
            // CLIP: the image embedding in the image-text space, unit length.
            (Pool::Pooler, _) if out.image_embeds.is_some() => {
                tessera::model::unit_length(row(out.image_embeds.as_ref().expect("image embeds"), i))
            }
            (Pool::Pooler, Some(po)) => row(po, i).to_vec(),
            (Pool::Pooler, None) | (Pool::Cls, _) => seq[..d].to_vec(),
            (Pool::Mean, _) => {
                let n = seq.len() / d - prefix;
                (0..d).map(|j| (0..n).map(|t| seq[(prefix + t) * d + j] as f64).sum::<f64>() as f32 / n as f32).collect()
            }
        };
        rows.push((p.path.display().to_string(), v));
        Ok(())
    })?;
    write_embeddings(args, &rows, "image")
}

/// `--out` safetensors (N, D) or JSON lines `{key: source, "embedding": [...]}`.
fn write_embeddings(args: &EmbedArgs, rows: &[(String, Vec<f32>)], key: &str) -> Result<()> {
    let d = rows.first().map_or(0, |r| r.1.len());
    match &args.out {
        Some(path) => {
            let data: Vec<f32> = rows.iter().flat_map(|(_, v)| v.iter().copied()).collect();
            write_safetensors(path, &[("embeddings", &[rows.len(), d], &data)])?;
            eprintln!("wrote {} ({} x {d})", path.display(), rows.len());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            for (src, v) in rows {
                writeln!(stdout, "{}", serde_json::json!({key: src, "embedding": v}))?;
            }
        }
    }
    Ok(())
}

/// A perceptual colormap (dark blue -> red -> yellow), for heatmaps.
fn heat_color(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    let stops = [[0.05, 0.03, 0.3], [0.55, 0.1, 0.55], [0.9, 0.3, 0.2], [1.0, 0.85, 0.2]];
    let x = t * 3.0;
    let i = (x.floor() as usize).min(2);
    let f = x - i as f32;
    let (a, b) = (stops[i], stops[i + 1]);
    [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f]
}

pub fn attention(device: &Device, args: &AttentionArgs) -> Result<()> {
    let model = models::load(device, &args.model)?;
    let (p, original) = models::prepare_image(&model, &args.image)?;
    let (h, w) = p.size;
    let out = model.run_blocking(&p.pixels, [1, model.config.num_channels, h, w], RunOptions { attention: true, ..Default::default() })?;
    let att = out.cls_attention.context("no attention output")?;
    let heads = att.shape[1];
    let (gh, gw) = out.grid;
    let n = gh * gw;
    let map: Vec<f32> = match args.head {
        Some(k) if k >= heads => bail!("--head {k}: the model has heads 0..{}", heads - 1),
        Some(k) => att.data[k * n..(k + 1) * n].to_vec(),
        None => (0..n).map(|j| (0..heads).map(|k| att.data[k * n + j]).sum::<f32>() / heads as f32).collect(),
    };
    let (lo, hi) = map.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let norm: Vec<f32> = map.iter().map(|v| if hi > lo { (v - lo) / (hi - lo) } else { 0.0 }).collect();
    // Upsample the grid bilinearly over the original image and blend; small images are enlarged
    // (pixel replication) to at least 256 px on the longer side so the map stays readable.
    let img = &original;
    let scale = 256u32.div_ceil(img.width().max(img.height())).max(1);
    let (iw, ih) = (img.width() * scale, img.height() * scale);
    let mut outimg = image::RgbImage::new(iw, ih);
    for y in 0..ih {
        for x in 0..iw {
            let gy = ((y as f32 + 0.5) / ih as f32 * gh as f32 - 0.5).clamp(0.0, (gh - 1) as f32);
            let gx = ((x as f32 + 0.5) / iw as f32 * gw as f32 - 0.5).clamp(0.0, (gw - 1) as f32);
            let (y0, x0) = (gy.floor() as usize, gx.floor() as usize);
            let (y1, x1) = ((y0 + 1).min(gh - 1), (x0 + 1).min(gw - 1));
            let (fy, fx) = (gy - y0 as f32, gx - x0 as f32);
            let v = norm[y0 * gw + x0] * (1.0 - fy) * (1.0 - fx)
                + norm[y0 * gw + x1] * (1.0 - fy) * fx
                + norm[y1 * gw + x0] * fy * (1.0 - fx)
                + norm[y1 * gw + x1] * fy * fx;
            let c = heat_color(v);
            let src = img.get_pixel(x / scale, y / scale).0;
            let on_grid = (x * gw as u32 / iw) != ((x + 1) * gw as u32 / iw).min(gw as u32 - 1) && x + 1 < iw
                || (y * gh as u32 / ih) != ((y + 1) * gh as u32 / ih).min(gh as u32 - 1) && y + 1 < ih;
            let mut px = [0u8; 3];
            for k in 0..3 {
                let blended = 0.45 * src[k] as f32 / 255.0 + 0.55 * c[k];
                px[k] = ((if on_grid { 0.7 * blended + 0.3 } else { blended }) * 255.0).round().clamp(0.0, 255.0) as u8;
            }
            outimg.put_pixel(x, y, image::Rgb(px));
        }
    }
    let tmp = partial_path(&args.out);
    outimg
        .save_with_format(&tmp, image::ImageFormat::Png)
        .and_then(|_| std::fs::rename(&tmp, &args.out).map_err(image::ImageError::IoError))
        .with_context(|| format!("{}: cannot write", args.out.display()))?;
    let best = map.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
    eprintln!(
        "wrote {} ({}x{} patch grid, {}; strongest patch row {} col {})",
        args.out.display(),
        gh,
        gw,
        args.head.map(|k| format!("head {k}")).unwrap_or_else(|| format!("mean of {heads} heads")),
        best / gw,
        best % gw
    );
    Ok(())
}

fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>)> {
    use std::io::Read;
    let name = path.display().to_string();
    let f = std::fs::File::open(path).with_context(|| {
        format!("{name}: cannot open (on Debian: `apt-get install dataset-fashion-mnist`, or pass --data)")
    })?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(f).take(200 << 20).read_to_end(&mut bytes).with_context(|| format!("{name}: not a gzip file"))?;
    if bytes.len() < 8 || u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) != magic {
        bail!("{name}: not an IDX file of the expected kind");
    }
    let dims = (magic & 0xff) as usize;
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        bail!("{name}: truncated header");
    }
    let shape: Vec<usize> = (0..dims).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap_or([0; 4])) as usize).collect();
    let n: usize = shape.iter().product();
    if bytes.len() != header + n {
        bail!("{name}: holds {} data bytes, its header says {n}", bytes.len() - header);
    }
    Ok((shape, bytes[header..].to_vec()))
}

/// Predictions of a 10-class model on the Fashion-MNIST test set.
pub struct Evaluated {
    pub preds: Vec<u8>,
    pub labels: Vec<u8>,
    pub seconds: f64,
}

impl Evaluated {
    pub fn correct(&self) -> usize {
        self.preds.iter().zip(&self.labels).filter(|(p, l)| p == l).count()
    }

    pub fn accuracy(&self) -> f64 {
        self.correct() as f64 / self.preds.len().max(1) as f64
    }
}

/// The Fashion-MNIST test set: `(count, height, width)`, the images and the labels.
pub type TestSet = ((usize, usize, usize), Vec<u8>, Vec<u8>);

pub fn read_test_set(data: &Path, limit: Option<usize>) -> Result<TestSet> {
    let (ishape, images) = read_idx(&data.join("t10k-images-idx3-ubyte.gz"), 0x0803)?;
    let (_, labels) = read_idx(&data.join("t10k-labels-idx1-ubyte.gz"), 0x0801)?;
    let (count, ih, iw) = (ishape[0], ishape[1], ishape[2]);
    let count = limit.unwrap_or(count).min(count).min(labels.len());
    Ok(((count, ih, iw), images, labels[..count].to_vec()))
}

pub fn check_ten_classes(model: &tessera::Model) -> Result<()> {
    if model.labels().len() != 10 {
        bail!("{}: eval runs Fashion-MNIST, which needs a 10-class model", model.source);
    }
    Ok(())
}

/// Runs the test set through `model` in batches of `batch`, advancing `bar`.
pub fn evaluate(model: &tessera::Model, set: &TestSet, batch: usize, bar: &indicatif::ProgressBar) -> Result<Evaluated> {
    let ((count, ih, iw), images, labels) = set;
    let (count, ih, iw) = (*count, *ih, *iw);
    let start = std::time::Instant::now();
    let mut preds: Vec<u8> = Vec::with_capacity(count);
    let batch = batch.max(1);
    for b0 in (0..count).step_by(batch) {
        let b1 = (b0 + batch).min(count);
        let mut pixels = Vec::new();
        let mut size = (0, 0);
        for i in b0..b1 {
            let gray = image::GrayImage::from_raw(iw as u32, ih as u32, images[i * ih * iw..(i + 1) * ih * iw].to_vec())
                .context("image size")?;
            let rgb = image::DynamicImage::ImageLuma8(gray).to_rgb8();
            let (p, h, w) = model.preprocessor.apply(&rgb)?;
            size = (h, w);
            pixels.extend(p);
        }
        let opts = RunOptions { logits_only: true, ..Default::default() };
        let out = model.run_blocking(&pixels, [b1 - b0, model.config.num_channels, size.0, size.1], opts)?;
        let logits = out.logits.context("no logits")?;
        for i in 0..b1 - b0 {
            let r = row(&logits, i);
            let best = r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0))).map(|(k, _)| k).unwrap_or(0);
            preds.push(best as u8);
        }
        bar.inc((b1 - b0) as u64);
        crate::interrupt::check(b1, count)?;
    }
    Ok(Evaluated { preds, labels: labels.clone(), seconds: start.elapsed().as_secs_f64() })
}

/// PyTorch's accuracy for the embedded model at the patch size it runs at, where measured.
pub fn embedded_reference(model: &tessera::Model) -> Option<f64> {
    use tessera::model::embedded;
    embedded::reference_accuracy_at(model.patch_size())
        .or_else(|| (model.patch_size() == model.original_patch_size()).then(embedded::reference_accuracy).flatten())
}

pub fn eval(device: &Device, args: &EvalArgs) -> Result<()> {
    let model = models::load(device, &args.model)?;
    check_ten_classes(&model)?;
    let set = read_test_set(&args.data, args.limit)?;
    let count = set.0 .0;
    let bar = indicatif::ProgressBar::new(count as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let ev = evaluate(&model, &set, args.batch, &bar)?;
    bar.finish_and_clear();
    let (correct, accuracy, secs) = (ev.correct(), ev.accuracy(), ev.seconds);
    if args.json {
        let doc = serde_json::json!({
            "model": model.source, "patch_size": model.patch_size(), "original_patch_size": model.original_patch_size(),
            "images": count, "correct": correct, "accuracy": accuracy,
            "seconds": secs, "adapter": device.name(),
            "predictions": ev.preds.iter().map(|p| char::from(b'0' + p)).collect::<String>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("Fashion-MNIST test set: {correct}/{count} correct, accuracy {:.2}% at patch size {}", accuracy * 100.0, model.patch_size());
        println!("{:.1} s on {} ({:.0} images/s)", secs, device.name(), count as f64 / secs);
        if args.model.model.is_none() && count == 10_000 {
            if let Some(reference) = embedded_reference(&model) {
                println!("PyTorch measured {:.2}% for the same weights (difference {:+.2} points)", reference * 100.0, (accuracy - reference) * 100.0);
            }
        }
    }
    Ok(())
}
