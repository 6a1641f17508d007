//! The model subcommands: info, run, classify, embed, attention (zero-shot and text embeddings in
//! `text.rs`, eval in `eval.rs`, soak in `soak.rs`).

use crate::models::{self, row, ModelArg};
use crate::out::{partial_path, write_safetensors};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;
use tessera::{Device, RunOptions};

#[derive(clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub(crate) model: ModelArg,
    /// With a NaFlex checkpoint: the grid an image of this size (WxH pixels) gets at the budget.
    #[arg(long, value_name = "WxH")]
    pub(crate) image_size: Option<String>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub(crate) model: ModelArg,
    /// safetensors file with `pixel_values` (B, C, H, W), f32; or, for SigLIP 2 NaFlex, what
    /// Siglip2ImageProcessor returns: `pixel_values` (B, N, P*P*C) patches padded to N,
    /// `spatial_shapes` (B, 2) each image's grid (int64 or int32; `pixel_attention_mask`, if
    /// there, is implied by it) — images of different grids in one batch.
    #[arg(long)]
    pub(crate) pixels: PathBuf,
    /// Where to write logits, last_hidden_state and pooler_output (f32 safetensors).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Also write every layer's hidden state (hidden_state.0 = embeddings, hidden_state.i = layer i).
    #[arg(long)]
    pub(crate) hidden_states: bool,
}

#[derive(clap::Args)]
pub struct ClassifyArgs {
    /// Image files or folders of images.
    #[arg(required = true)]
    pub(crate) images: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) model: ModelArg,
    /// Zero-shot with a CLIP or SigLIP model: classify into these labels (comma-separated)
    /// instead of the model's classes. CLIP's scores are a softmax over the labels; SigLIP's each
    /// label's own sigmoid (they need not sum to 100%).
    #[arg(long, value_delimiter = ',', conflicts_with = "labels_file")]
    pub(crate) labels: Vec<String>,
    /// Zero-shot labels from a file, one per line.
    #[arg(long, value_name = "FILE")]
    pub(crate) labels_file: Option<PathBuf>,
    /// Zero-shot prompt: `{}` is replaced by each label.
    #[arg(long, default_value = "a photo of a {}.")]
    pub(crate) template: String,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    pub(crate) top: usize,
    /// Images per GPU run.
    #[arg(long, default_value_t = 16)]
    pub(crate) batch: usize,
    /// Print JSON (see README, "JSON output").
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Image files or folders of images.
    #[arg(required_unless_present = "text")]
    pub(crate) images: Vec<PathBuf>,
    /// With a CLIP or SigLIP model (or a text tower alone): embed this text (repeatable) in the
    /// image-text space, unit length (a text tower without projection: its pooled features),
    /// tokenized with the checkpoint's tokenizer.json (cut to the model's positions, said on
    /// stderr).
    #[arg(long, conflicts_with = "images")]
    pub(crate) text: Vec<String>,
    #[command(flatten)]
    pub(crate) model: ModelArg,
    /// Which embedding: the model's pooler output (ViT/DeiT pooler, DINOv2 normed CLS, timm's
    /// pre-logits features; CLIP: the image embedding in the image-text space, unit length), the
    /// CLS token of the last hidden state, or the mean of its patch tokens.
    #[arg(long, value_enum, default_value = "pooler")]
    pub(crate) pool: Pool,
    /// Images per GPU run.
    #[arg(long, default_value_t = 16)]
    pub(crate) batch: usize,
    /// Write the embeddings as a (N, D) f32 safetensors tensor `embeddings` instead of JSON lines.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
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
    pub(crate) image: PathBuf,
    #[command(flatten)]
    pub(crate) model: ModelArg,
    /// Output PNG: the image with the CLS attention of the last layer overlaid, patch grid drawn.
    #[arg(long, default_value = "attention.png")]
    pub(crate) out: PathBuf,
    /// One head instead of the mean over heads.
    #[arg(long)]
    pub(crate) head: Option<usize>,
}

/// With `--model` or `--patch-size`: the model as it would run.
pub fn info_model(device: &Device, args: &InfoArgs) -> Result<()> {
    let m = &args.model;
    if m.model.is_none() && m.patch_size.is_none() && !m.int8 && m.max_patches.is_none() && m.merge.is_none() {
        return Ok(());
    }
    let ck = models::checkpoint(m.model.as_deref())?;
    if !ck.has_image_tower() {
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
    let model = models::load_checkpoint(device, &ck, m.choices())?;
    let c = &model.config;
    let (h, w) = c.image_size;
    let (p, own) = (model.patch_size(), model.original_patch_size());
    println!("\nmodel: {} ({:?}, {} layers, width {}, {} heads, {} classes)", model.source, c.family, c.num_layers, c.hidden_size, c.num_heads, c.labels.len());
    if let Some(d) = &c.depth {
        use tessera::model::shared::dpt::{DepthStyle, DptReadout};
        let (style, head) = match d.style {
            DepthStyle::DepthAnything => ("Depth Anything's DPT", format!("head width {}", d.head_hidden_size)),
            DepthStyle::Dpt if d.projection => ("DPT's", "a 3x3 projection and ReLU, then the head doubling past the last fused map".to_string()),
            DepthStyle::Dpt => ("DPT's", "head doubling past the last fused map".to_string()),
        };
        let readout = match d.readout {
            DptReadout::Ignore => "class token dropped",
            DptReadout::Add => "class token added to each patch",
            DptReadout::Project => "class token appended to each patch and projected",
        };
        println!(
            "depth head: {} (x {}), {style} neck over hidden states {:?}{} ({readout}; widths {:?}, factors {:?}, fusion {}{}), {head}",
            if d.metric { "metric, sigmoid" } else { "relative, ReLU" },
            d.max_depth,
            d.out_indices,
            if d.normed { " through the final norm" } else { "" },
            d.neck_hidden_sizes,
            d.reassemble_factors,
            d.fusion_hidden_size,
            if d.batch_norm { ", batch norms folded" } else { "" },
        );
        let pre = &model.preprocessor;
        let (ih, iw) = pre.output_size(480, 640);
        let how = match (&pre.resize, pre.pad_to) {
            (None, Some(m)) => format!(" (its own size, zero-padded to a multiple of {m})"),
            (None, None) => " (its own size)".into(),
            _ if ih != iw => ", its aspect ratio kept".into(),
            _ => String::new(),
        };
        println!("  a 640x480 image (width x height) runs at {iw}x{ih}{how}");
    }
    let own_note = if p != own { format!(" (PI-resized from the checkpoint's {own})") } else { " (the checkpoint's own)".into() };
    match model.preprocessor.max_patches() {
        Some(budget) => {
            // NaFlex: the grid follows each image.
            let from = if m.max_patches.is_some() { "--max-patches" } else { "the checkpoint's preprocessor config" };
            println!("patch size: {p}{own_note}; a budget of {budget} patches per image ({from}), each image at its own aspect ratio");
            let sizes: Vec<(usize, usize)> = match &args.image_size {
                Some(s) => vec![parse_wxh(s)?],
                None => vec![(640, 480), (480, 640), (1024, 256), (w, h)],
            };
            for (iw, ih) in sizes {
                let (oh, ow) = model.preprocessor.output_size(ih, iw);
                println!("  a {iw}x{ih} image (width x height): resized to {ow}x{oh}, a grid of {} rows x {} columns, {} tokens", oh / p, ow / p, c.prefix_tokens() + (oh / p) * (ow / p));
            }
        }
        None => println!("patch size: {p}{own_note}; at {h}x{w}: a {}x{} grid, {} tokens", h / p, w / p, c.prefix_tokens() + (h / p) * (w / p)),
    }
    let quant = model.config.quant.as_ref().map(|q| format!(" (Linear layers {q}, the rest {})", model.storage())).unwrap_or_else(|| format!(" as {}", model.storage()));
    println!("weights: {:.2} MiB{quant} on {}", model.weight_bytes() as f64 / 1048576.0, device.name());
    if model.config.quant.is_some() {
        println!("arithmetic: {}", model.arithmetic());
    }
    let merge = model.merge();
    if merge.is_on() {
        let (ih, iw) = match (&args.image_size, model.preprocessor.max_patches()) {
            (Some(s), _) => parse_wxh(s).map(|(iw, ih)| model.preprocessor.output_size(ih, iw))?,
            (None, _) => model.preprocessor.output_size(h, w),
        };
        let plan = model.merge_plan(ih, iw, merge);
        let sched = match merge.schedule {
            tessera::MergeSchedule::Constant => "constant",
            tessera::MergeSchedule::Decreasing => "decreasing",
        };
        println!("token merging (ToMe): r = {} per layer, {sched} schedule, at {iw}x{ih} ({}):", merge.r, match c.prefix_tokens() { 0 => "every token may merge".to_string(), 1 => "the class token never merges".to_string(), n => format!("the {n} prefix tokens never merge") });
        for (i, l) in plan.iter().enumerate() {
            let capped = if l.r < l.asked { format!(" (asked {}, capped at half the unprotected tokens)", l.asked) } else { String::new() };
            println!("  layer {i:>2}: {:>5} tokens in, {:>4} merged{capped}, {:>5} out", l.tokens, l.r, l.tokens - l.r);
        }
        let first = plan.first().map_or(0, |l| l.tokens);
        let last = plan.last().map_or(0, |l| l.tokens - l.r);
        println!("  tokens after the last layer: {last} of {first}");
    }
    Ok(())
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
    let rank = view.shape().len();
    if view.dtype() != safetensors::Dtype::F32 || !(rank == 4 || rank == 3 && names.contains(&"spatial_shapes")) {
        bail!("{name}: `{key}` must be f32 with shape [B, C, H, W] (or [B, N, P*P*C] with `spatial_shapes`), got {:?} {:?}", view.dtype(), view.shape());
    }
    let s = view.shape();
    let pixels: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let opts = RunOptions { hidden_states: args.hidden_states, ..Default::default() };
    let out = if rank == 3 {
        let grids = spatial_shapes(&name, &st, s[0])?;
        pollster::block_on(model.run_patches(&pixels, [s[0], s[1], s[2]], &grids, opts))?
    } else {
        model.run_blocking(&pixels, [s[0], s[1], s[2], s[3]], opts)?
    };
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
    if let Some(d) = &out.predicted_depth {
        tensors.push(("predicted_depth".into(), d));
    }
    for (i, h) in out.hidden_states.iter().enumerate() {
        tensors.push((format!("hidden_state.{i}"), h));
    }
    let refs: Vec<(&str, &[usize], &[f32])> = tensors.iter().map(|(n, t)| (n.as_str(), &t.shape[..], &t.data[..])).collect();
    write_safetensors(&args.out, &refs)?;
    eprintln!("wrote {} ({})", args.out.display(), tensors.iter().map(|(n, t)| format!("{n} {:?}", t.shape)).collect::<Vec<_>>().join(", "));
    Ok(())
}

/// `spatial_shapes` `(B, 2)` (int64 or int32, as transformers writes it): each image's (rows,
/// columns).
fn spatial_shapes(name: &str, st: &safetensors::SafeTensors, b: usize) -> Result<Vec<(usize, usize)>> {
    let v = st.tensor("spatial_shapes")?;
    if v.shape() != [b, 2] {
        bail!("{name}: `spatial_shapes` must have shape [{b}, 2] (rows and columns of each image), got {:?}", v.shape());
    }
    let values: Vec<i64> = match v.dtype() {
        safetensors::Dtype::I64 => v.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
        safetensors::Dtype::I32 => v.data().chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64).collect(),
        d => bail!("{name}: `spatial_shapes` must be int64 or int32, got {d:?}"),
    };
    values
        .chunks(2)
        .enumerate()
        .map(|(i, g)| match (usize::try_from(g[0]), usize::try_from(g[1])) {
            (Ok(r), Ok(c)) => Ok((r, c)),
            _ => bail!("{name}: `spatial_shapes` of image {i} is {:?}: rows and columns are not negative", g),
        })
        .collect()
}

/// `WxH` as (width, height).
pub(crate) fn parse_wxh(s: &str) -> Result<(usize, usize)> {
    let bad = || anyhow::anyhow!("--image-size {s}: expected WxH, two numbers from 1 to 16384 (e.g. 640x480)");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h) = (w.trim().parse::<usize>().map_err(|_| bad())?, h.trim().parse::<usize>().map_err(|_| bad())?);
    if !(1..=16384).contains(&w) || !(1..=16384).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

impl ClassifyArgs {
    /// Zero-shot into labels (`text::zero_shot`) rather than the model's classes.
    pub fn zero_shot(&self) -> bool {
        !self.labels.is_empty() || self.labels_file.is_some()
    }
}

impl EmbedArgs {
    /// Texts to embed (`text::embed_texts`) rather than images.
    pub fn texts(&self) -> bool {
        !self.text.is_empty()
    }
}

pub fn classify(device: &Device, args: &ClassifyArgs) -> Result<()> {
    let model = models::load(device, &args.model)?;
    if model.labels().is_empty() {
        if model.arch().projection {
            bail!("{}: a CLIP or SigLIP model has no fixed classes: give --labels \"a cat,a dog\" for zero-shot, or use `tessera embed`", model.source);
        }
        if model.config.depth.is_some() {
            bail!("{}: a depth model has no classes: use `tessera depth`", model.source);
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
        let left = out.merge.last().map(|l| l.tokens - l.r);
        results.push((p.path.display().to_string(), top, left));
        Ok(())
    })?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let result = |(img, top, left): &(String, _, Option<usize>)| {
            let mut r = serde_json::json!({"image": img, "top": top});
            if let Some(n) = left {
                r["tokens_left"] = (*n).into();
            }
            r
        };
        let mut doc = serde_json::json!({
            "model": model.source,
            "patch_size": model.patch_size(),
            "original_patch_size": model.original_patch_size(),
            "results": results.iter().map(result).collect::<Vec<_>>(),
        });
        let m = model.merge();
        if m.r > 0 {
            let schedule = match m.schedule {
                tessera::MergeSchedule::Constant => "constant",
                tessera::MergeSchedule::Decreasing => "decreasing",
            };
            doc["merge"] = serde_json::json!({"r": m.r, "schedule": schedule});
        }
        writeln!(stdout, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        for (img, top, _) in &results {
            writeln!(stdout, "{img}")?;
            for t in top {
                writeln!(stdout, "  {:>6.2}%  {}", t.score * 100.0, t.label)?;
            }
        }
    }
    Ok(())
}

pub fn embed(device: &Device, args: &EmbedArgs) -> Result<()> {
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
pub(crate) fn write_embeddings(args: &EmbedArgs, rows: &[(String, Vec<f32>)], key: &str) -> Result<()> {
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
    let att = out.cls_attention.with_context(|| format!("{}: this model has neither a class token nor an attention-pooling head: there is no attention map of it to show", model.source))?;
    let whose = if model.config.layout.class_token { "the class token's attention" } else { "the pooling head's attention" };
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
        "wrote {} ({whose} over the {}x{} patch grid, {}; strongest patch row {} col {})",
        args.out.display(),
        gh,
        gw,
        args.head.map(|k| format!("head {k}")).unwrap_or_else(|| format!("mean of {heads} heads")),
        best / gw,
        best % gw
    );
    Ok(())
}
