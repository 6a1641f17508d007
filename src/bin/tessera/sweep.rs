//! `tessera sweep`: one checkpoint at several patch sizes (its patch kernel PI-resized to each),
//! or a NaFlex checkpoint at several patch budgets: accuracy on the Fashion-MNIST test set
//! (10-class models), tokens, throughput and latency per setting, and a chart of accuracy against
//! throughput.

use crate::eval::{check_ten_classes, evaluate, read_test_set, TestSet};
use crate::models;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Instant;
use tessera::{Device, Model, RunOptions};

#[derive(clap::Args)]
pub struct SweepArgs {
    /// Checkpoint folder, hub id or built-in config (as for `classify`); the embedded
    /// Fashion-MNIST ViT when omitted.
    #[arg(long, short)]
    model: Option<String>,
    /// Store weights and activations as f16 on a GPU (see `classify --help`).
    #[arg(long)]
    f16: bool,
    /// Patch sizes to run, comma-separated. Default: the sizes the embedded model was trained
    /// for, else the divisors of the checkpoint's image size from its own patch size down to
    /// the one that doubles each side of the token grid, and up to a 2x2 grid.
    #[arg(long, value_delimiter = ',', value_name = "P,P,..")]
    patch_sizes: Vec<usize>,
    /// Patch budgets to run a NaFlex checkpoint (SigLIP 2) at, comma-separated (e.g.
    /// 64,128,256,576): each image gets the aspect-preserving grid that fits the budget.
    #[arg(long, value_delimiter = ',', value_name = "N,N,..", conflicts_with = "patch_sizes")]
    max_patches: Vec<usize>,
    /// With --max-patches: the size of the image the budgets are timed on, WxH (its grid at each
    /// budget sets the tokens).
    #[arg(long, default_value = "640x480", value_name = "WxH")]
    image_size: String,
    /// Token merging (ToMe) settings to run, comma-separated r per layer (e.g. 0,4,8,12,16), at
    /// each --patch-sizes size (default: the checkpoint's own): accuracy where labels exist, the
    /// top-1 agreement with r = 0, the tokens after the last layer, latency and throughput.
    #[arg(long, value_delimiter = ',', value_name = "R,R,..", conflicts_with = "max_patches")]
    merge: Vec<usize>,
    /// With --merge: `constant` or `decreasing` (see `classify --help`).
    #[arg(long, value_name = "S", default_value = "constant", value_parser = crate::models::parse_schedule)]
    merge_schedule: tessera::MergeSchedule,
    /// With --merge: images (files or folders) on which to compare each r with r = 0 for any
    /// model: the top-1 agreement for a classifier, the cosine of the pooled features otherwise.
    #[arg(long, value_name = "PATH")]
    images: Vec<PathBuf>,
    /// Folder with Fashion-MNIST's t10k files (accuracy is measured for 10-class models).
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    data: PathBuf,
    /// Only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    /// Images per run, for the accuracy and the throughput.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Single-image runs timed for the latency (median).
    #[arg(long, default_value_t = 20)]
    latency_runs: usize,
    /// Where to write the chart (SVG): accuracy against throughput, or throughput per patch size
    /// where there is no accuracy.
    #[arg(long, default_value = "sweep.svg")]
    chart: PathBuf,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize, Clone, Debug)]
pub struct SweepRow {
    pub patch_size: usize,
    /// The patch budget (NaFlex sweeps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_patches: Option<usize>,
    /// The patch grid (rows, columns) of the timed image.
    pub grid: (usize, usize),
    pub tokens: usize,
    pub accuracy: Option<f64>,
    pub pytorch_accuracy: Option<f64>,
    pub fixed_patch_baseline: Option<f64>,
    pub images_per_s: f64,
    pub latency_ms: f64,
    /// Token merging: r per layer (merge sweeps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<usize>,
    /// Token merging: the tokens after the last layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<usize>,
    /// Token merging: the share of images whose top-1 class equals the unmerged model's (on the
    /// test set, else on --images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
    /// Token merging, models without a classifier: the mean cosine of the pooled features with
    /// the unmerged model's on --images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cosine: Option<f64>,
}

impl SweepRow {
    /// The setting a row ran at, as the chart labels it.
    fn label(&self) -> String {
        match (self.max_patches, self.merge) {
            (Some(n), _) => format!("budget {n}"),
            (None, Some(r)) => format!("P={} r={r}", self.patch_size),
            (None, None) => format!("P={}", self.patch_size),
        }
    }
}

/// The default patch sizes for a checkpoint trained at `image` with patch `p`.
fn default_patch_sizes(embedded: bool, image: (usize, usize), p: usize) -> Vec<usize> {
    if embedded {
        let v = tessera::model::embedded::reference_patch_sizes();
        if !v.is_empty() {
            return v;
        }
    }
    let side = image.0.min(image.1);
    let grid = side / p.max(1);
    (1..=side / 2).filter(|q| side.is_multiple_of(*q) && side / q <= 2 * grid && side / q >= 2).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Latency (median of `runs` single images, ms) and throughput (images/s in batches of `batch`,
/// for at least a second) on random pixels of `h` x `w` (as preprocessed).
fn time_model(model: &Model, (h, w): (usize, usize), batch: usize, runs: usize) -> Result<(f64, f64)> {
    let c = model.config.num_channels;
    let mut rng = tessera::reference::Rng::new(7);
    let one = rng.vec(c * h * w, 1.0);
    let opts = RunOptions { logits_only: true, ..Default::default() };
    model.run_blocking(&one, [1, c, h, w], opts)?;
    let mut lat = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        model.run_blocking(&one, [1, c, h, w], opts)?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        crate::interrupt::check(0, 1)?;
    }
    let many = rng.vec(batch * c * h * w, 1.0);
    model.run_blocking(&many, [batch, c, h, w], opts)?;
    let (mut images, start) = (0usize, Instant::now());
    while images < 2 * batch || start.elapsed().as_secs_f64() < 1.0 {
        model.run_blocking(&many, [batch, c, h, w], opts)?;
        images += batch;
        crate::interrupt::check(0, 1)?;
    }
    Ok((median(lat), images as f64 / start.elapsed().as_secs_f64()))
}

pub fn run(device: &Device, args: &SweepArgs) -> Result<()> {
    let embedded = args.model.is_none() || matches!(args.model.as_deref(), Some("default" | "embedded"));
    let ck = models::checkpoint(args.model.as_deref())?;
    if !args.max_patches.is_empty() {
        return run_budgets(device, args, &ck);
    }
    if !args.merge.is_empty() {
        return run_merges(device, args, &ck, embedded);
    }
    let own = ck.config.patch_size;
    let mut sizes = if args.patch_sizes.is_empty() { default_patch_sizes(embedded, ck.config.image_size, own) } else { args.patch_sizes.clone() };
    sizes.dedup();
    if sizes.is_empty() {
        bail!("no patch sizes to run: give --patch-sizes");
    }
    let batch = args.batch.max(1);
    // Refused before anything runs: every size must load.
    for &q in &sizes {
        tessera::model::flexi::check_patch_size(&ck.source, own, q, ck.config.image_size)?;
    }
    let ten = ck.config.labels.len() == 10;
    let (set, per, bar) = test_set_and_bar(args, &ck.source, ten, sizes.len())?;
    let mut rows = Vec::new();
    for &q in &sizes {
        let model = Model::load_with(
            device,
            &ck,
            tessera::LoadOptions { storage: if args.f16 { tessera::DType::F16 } else { tessera::DType::F32 }, patch_size: Some(q), ..Default::default() },
        )?;
        let (h, w) = model.config.image_size;
        let tokens = model.config.prefix_tokens() + (h / q) * (w / q);
        let accuracy = match &set {
            Some(set) => {
                check_ten_classes(&model)?;
                bar.set_message(format!("patch {q}: accuracy"));
                Some(evaluate(&model, set, batch, &bar)?.accuracy())
            }
            None => None,
        };
        bar.set_message(format!("patch {q}: timing"));
        let (latency_ms, images_per_s) = time_model(&model, (h, w), batch, args.latency_runs)?;
        if !ten {
            bar.inc(1);
        }
        let full = set.as_ref().is_some_and(|s| s.0 .0 == 10_000);
        let (pytorch_accuracy, fixed_patch_baseline) = if embedded && full {
            (tessera::model::embedded::reference_accuracy_at(q), tessera::model::embedded::fixed_patch_baseline_at(q))
        } else {
            (None, None)
        };
        rows.push(SweepRow { patch_size: q, max_patches: None, grid: (h / q, w / q), tokens, accuracy, pytorch_accuracy, fixed_patch_baseline, images_per_s, latency_ms, merge: None, tokens_out: None, agreement: None, cosine: None });
    }
    bar.finish_and_clear();
    report(device, args, &ck.source, ("original_patch_size", own), batch, per, rows)
}

/// For a 10-class model the test set and its image count, else a note that only the timing runs;
/// and a progress bar over `settings` runs of the set (a step per setting without one).
fn test_set_and_bar(args: &SweepArgs, source: &str, ten: bool, settings: usize) -> Result<(Option<TestSet>, usize, indicatif::ProgressBar)> {
    let set = if ten { Some(read_test_set(&args.data, args.limit).with_context(|| format!("{}: the test set for the accuracy", args.data.display()))?) } else { None };
    if !ten {
        eprintln!("note: {source} is not a 10-class model: timing only, no accuracy");
    }
    let per = set.as_ref().map_or(0, |s| s.0 .0);
    let bar = indicatif::ProgressBar::new(if ten { (per * settings) as u64 } else { settings as u64 });
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>24} {bar:40} {pos}/{len} images  eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Ok((set, per, bar))
}

/// `WxH` as (height, width), each side at least 1.
fn parse_size(s: &str) -> Result<(usize, usize)> {
    let parts: Vec<Option<usize>> = s.split('x').map(|v| v.trim().parse().ok().filter(|&v: &usize| v > 0)).collect();
    match parts[..] {
        [Some(w), Some(h)] => Ok((h, w)),
        _ => bail!("--image-size {s}: expected WxH with two positive numbers (e.g. 640x480)"),
    }
}

/// A NaFlex checkpoint at each budget: the grid an `--image-size` image gets, its tokens, its
/// latency and throughput, and the accuracy on Fashion-MNIST for a 10-class classifier.
fn run_budgets(device: &Device, args: &SweepArgs, ck: &tessera::Checkpoint) -> Result<()> {
    let (ih, iw) = parse_size(&args.image_size)?;
    let mut model = Model::load_with(
        device,
        ck,
        tessera::LoadOptions { storage: if args.f16 { tessera::DType::F16 } else { tessera::DType::F32 }, ..Default::default() },
    )?;
    let own = model.preprocessor.max_patches().with_context(|| {
        format!("{}: --max-patches sweeps a NaFlex checkpoint (SigLIP 2, Siglip2ImageProcessor); this one resizes to a fixed size: sweep --patch-sizes", ck.source)
    })?;
    let mut budgets = args.max_patches.clone();
    budgets.dedup();
    // Refused before anything runs: every budget must be in range.
    let pres: Vec<_> = budgets
        .iter()
        .map(|&n| model.preprocessor.with_max_patches(n).map_err(|e| anyhow::anyhow!("--max-patches {n}: {e}")))
        .collect::<Result<_>>()?;
    let batch = args.batch.max(1);
    let ten = model.labels().len() == 10;
    let (set, per, bar) = test_set_and_bar(args, &ck.source, ten, budgets.len())?;
    let p = model.patch_size();
    let mut rows = Vec::new();
    for (&n, pre) in budgets.iter().zip(pres) {
        model.preprocessor = pre;
        let (h, w) = model.preprocessor.output_size(ih, iw);
        let grid = (h / p, w / p);
        let accuracy = match &set {
            Some(set) => {
                bar.set_message(format!("budget {n}: accuracy"));
                Some(evaluate(&model, set, batch, &bar)?.accuracy())
            }
            None => None,
        };
        bar.set_message(format!("budget {n}: timing"));
        let (latency_ms, images_per_s) = time_model(&model, (h, w), batch, args.latency_runs)?;
        if !ten {
            bar.inc(1);
        }
        let tokens = model.config.prefix_tokens() + grid.0 * grid.1;
        rows.push(SweepRow { patch_size: p, max_patches: Some(n), grid, tokens, accuracy, pytorch_accuracy: None, fixed_patch_baseline: None, images_per_s, latency_ms, merge: None, tokens_out: None, agreement: None, cosine: None });
    }
    bar.finish_and_clear();
    report(device, args, &ck.source, ("original_max_patches", own), batch, per, rows)
}

/// The top-1 class (a classifier) or the pooled features of each of `images`.
fn outputs_on(model: &Model, images: &[image::RgbImage]) -> Result<Vec<Vec<f32>>> {
    let refs: Vec<&image::RgbImage> = images.iter().collect();
    if !model.labels().is_empty() && model.head() != tessera::model::Head::None {
        let top = pollster::block_on(model.classify(&refs, 1))?;
        Ok(top.iter().map(|t| vec![t.first().map_or(0.0, |k| k.index as f32)]).collect())
    } else {
        Ok(pollster::block_on(model.embed(&refs))?)
    }
}

/// A checkpoint at each `--merge` r, at each patch size: accuracy and agreement with r = 0.
fn run_merges(device: &Device, args: &SweepArgs, ck: &tessera::Checkpoint, embedded: bool) -> Result<()> {
    let own = ck.config.patch_size;
    let sizes = if args.patch_sizes.is_empty() { vec![own] } else { args.patch_sizes.clone() };
    for &q in &sizes {
        tessera::model::flexi::check_patch_size(&ck.source, own, q, ck.config.image_size)?;
    }
    let merges: Vec<tessera::Merge> = args.merge.iter().map(|&r| tessera::Merge::new(r, args.merge_schedule)).collect::<tessera::Result<_>>()?;
    let photos: Vec<image::RgbImage> = if args.images.is_empty() {
        Vec::new()
    } else {
        models::collect_images(&args.images)?
            .iter()
            .map(|p| {
                let name = p.display().to_string();
                let bytes = std::fs::read(p).with_context(|| format!("{name}: cannot read"))?;
                Ok(tessera::model::decode_image(&bytes, &name)?)
            })
            .collect::<Result<_>>()?
    };
    let batch = args.batch.max(1);
    let ten = ck.config.labels.len() == 10;
    let (set, per, bar) = test_set_and_bar(args, &ck.source, ten, sizes.len() * merges.len())?;
    let mut rows = Vec::new();
    for &q in &sizes {
        let storage = if args.f16 { tessera::DType::F16 } else { tessera::DType::F32 };
        let mut model = Model::load_with(device, ck, tessera::LoadOptions { storage, patch_size: Some(q), ..Default::default() })?;
        let (h, w) = model.preprocessor.output_size(model.config.image_size.0, model.config.image_size.1);
        let tokens = model.config.prefix_tokens() + (h / q) * (w / q);
        // The unmerged model's answers, to agree with.
        let mut base_preds = match &set {
            Some(set) if !merges.iter().any(|m| m.r == 0) => Some(evaluate(&model, set, batch, &indicatif::ProgressBar::hidden())?.preds),
            _ => None,
        };
        let base_photos = if photos.is_empty() { None } else { Some(outputs_on(&model, &photos)?) };
        for &m in &merges {
            model.set_merge(m);
            let plan = model.merge_plan(h, w, m);
            let tokens_out = plan.last().map_or(tokens, |l| l.tokens - l.r);
            let (accuracy, mut agreement) = match &set {
                Some(set) => {
                    check_ten_classes(&model)?;
                    bar.set_message(format!("patch {q} r={}: accuracy", m.r));
                    let e = evaluate(&model, set, batch, &bar)?;
                    if m.r == 0 && base_preds.is_none() {
                        base_preds = Some(e.preds.clone());
                    }
                    let agree = base_preds.as_ref().map(|b| b.iter().zip(&e.preds).filter(|(a, b)| a == b).count() as f64 / b.len().max(1) as f64);
                    (Some(e.accuracy()), agree)
                }
                None => (None, None),
            };
            let mut cosine = None;
            if let Some(base) = &base_photos {
                let got = outputs_on(&model, &photos)?;
                if base.first().is_some_and(|v| v.len() == 1) {
                    agreement.get_or_insert(base.iter().zip(&got).filter(|(a, b)| a == b).count() as f64 / base.len() as f64);
                } else {
                    let cos = |a: &[f32], b: &[f32]| {
                        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
                        let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                        dot / (n(a) * n(b)).max(1e-30)
                    };
                    cosine = Some(base.iter().zip(&got).map(|(a, b)| cos(a, b)).sum::<f64>() / base.len() as f64);
                }
            }
            bar.set_message(format!("patch {q} r={}: timing", m.r));
            let (latency_ms, images_per_s) = time_model(&model, (h, w), batch, args.latency_runs)?;
            if !ten {
                bar.inc(1);
            }
            let full = set.as_ref().is_some_and(|s| s.0 .0 == 10_000);
            let pytorch_accuracy = if embedded && full && m.r == 0 { tessera::model::embedded::reference_accuracy_at(q) } else { None };
            rows.push(SweepRow {
                patch_size: q,
                max_patches: None,
                grid: (h / q, w / q),
                tokens,
                accuracy,
                pytorch_accuracy,
                fixed_patch_baseline: None,
                images_per_s,
                latency_ms,
                merge: Some(m.r),
                tokens_out: Some(tokens_out),
                agreement,
                cosine,
            });
        }
    }
    bar.finish_and_clear();
    report(device, args, &ck.source, ("original_patch_size", own), batch, per, rows)
}

/// The chart, then the table (or the JSON). `own`: the checkpoint's own setting, named as the
/// JSON names it (`original_patch_size`, `original_max_patches`).
fn report(device: &Device, args: &SweepArgs, source: &str, own: (&str, usize), batch: usize, per: usize, rows: Vec<SweepRow>) -> Result<()> {
    let title = format!("{source} on {}", device.name());
    std::fs::write(&args.chart, chart_svg(&rows, &title)).with_context(|| format!("{}: cannot write the chart", args.chart.display()))?;
    let budgets = rows.iter().any(|r| r.max_patches.is_some());
    if args.json {
        let mut doc = serde_json::json!({
            "model": source, "device": device.name(), "batch": batch,
            "images": per, "chart": args.chart.display().to_string(), "results": rows,
        });
        doc[own.0] = own.1.into();
        if budgets {
            doc["image_size"] = args.image_size.clone().into();
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0));
    if rows.iter().any(|r| r.merge.is_some()) {
        let sched = match args.merge_schedule {
            tessera::MergeSchedule::Constant => "constant",
            tessera::MergeSchedule::Decreasing => "decreasing",
        };
        println!("{title}; token merging ({sched} schedule); throughput in batches of {batch}\n");
        println!("{:>5} {:>4} {:>7} {:>7} {:>9} {:>9} {:>8} {:>10} {:>11}", "patch", "r", "tokens", "left", "accuracy", "agree", "cosine", "images/s", "latency ms");
        for r in &rows {
            let cos = r.cosine.map_or("-".to_string(), |c| format!("{c:.5}"));
            println!(
                "{:>5} {:>4} {:>7} {:>7} {:>9} {:>9} {cos:>8} {:>10.1} {:>11.2}",
                r.patch_size,
                r.merge.unwrap_or(0),
                r.tokens,
                r.tokens_out.unwrap_or(r.tokens),
                pct(r.accuracy),
                pct(r.agreement),
                r.images_per_s,
                r.latency_ms
            );
        }
        println!("\nleft: tokens after the last layer; agree: top-1 equal to r = 0's (cosine: of the pooled features, without a classifier)");
        println!("chart: {}", args.chart.display());
        return Ok(());
    }
    if budgets {
        println!("{title}; a {} image, the checkpoint's own budget {}; throughput in batches of {batch}\n", args.image_size, own.1);
        println!("{:>7} {:>8} {:>7} {:>9} {:>10} {:>11}", "budget", "grid", "tokens", "accuracy", "images/s", "latency ms");
        for r in &rows {
            let grid = format!("{}x{}", r.grid.0, r.grid.1);
            println!("{:>7} {grid:>8} {:>7} {:>9} {:>10.1} {:>11.2}", r.max_patches.unwrap_or(0), r.tokens, pct(r.accuracy), r.images_per_s, r.latency_ms);
        }
        println!("\ngrid: rows x columns of {}-pixel patches", rows.first().map_or(16, |r| r.patch_size));
    } else {
        println!("{title}; own patch size {}; throughput in batches of {batch}\n", own.1);
        println!("{:>5} {:>7} {:>9} {:>9} {:>12} {:>10} {:>11}", "patch", "tokens", "accuracy", "PyTorch", "fixed-patch", "images/s", "latency ms");
        for r in &rows {
            println!(
                "{:>5} {:>7} {:>9} {:>9} {:>12} {:>10.0} {:>11.2}",
                r.patch_size,
                r.tokens,
                pct(r.accuracy),
                pct(r.pytorch_accuracy),
                pct(r.fixed_patch_baseline),
                r.images_per_s,
                r.latency_ms
            );
        }
        if rows.iter().any(|r| r.fixed_patch_baseline.is_some()) {
            println!("\nfixed-patch: the previous default (trained at patch 4 only), PI-resized the same way, in PyTorch");
        }
    }
    println!("chart: {}", args.chart.display());
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Accuracy (%) against images/s (log scale), one labelled point per patch size; where there is
/// no accuracy, images/s per patch size as bars.
pub fn chart_svg(rows: &[SweepRow], title: &str) -> String {
    let (w, h, l, r, t, b) = (720.0, 440.0, 70.0, 30.0, 50.0, 60.0);
    let (pw, ph) = (w - l - r, h - t - b);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n\
         <rect x=\"{l}\" y=\"{t}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>\n",
        w / 2.0,
        esc(title)
    );
    let ips: Vec<f64> = rows.iter().map(|r| r.images_per_s.max(1e-9)).collect();
    if rows.iter().all(|r| r.accuracy.is_some()) && !rows.is_empty() {
        let (lo, hi) = ips.iter().fold((f64::INFINITY, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
        let (x0, x1) = ((lo / 1.5).log10(), (hi * 2.5).log10());
        let accs: Vec<f64> = rows.iter().map(|r| r.accuracy.unwrap_or(0.0) * 100.0).collect();
        let amin = accs.iter().chain(rows.iter().filter_map(|r| r.fixed_patch_baseline).map(|b| b * 100.0).collect::<Vec<_>>().iter()).cloned().fold(100.0, f64::min);
        let y0 = ((amin - 5.0) / 10.0).floor().max(0.0) * 10.0;
        let y1 = 100.0;
        let px = |v: f64| l + (v.log10() - x0) / (x1 - x0) * pw;
        let py = |a: f64| t + (1.0 - (a - y0) / (y1 - y0)) * ph;
        let mut y = y0;
        while y <= y1 + 1e-9 {
            s += &format!("<line x1=\"{l}\" x2=\"{0}\" y1=\"{1}\" y2=\"{1}\" stroke=\"#eee\"/><text x=\"{2}\" y=\"{3}\" text-anchor=\"end\">{y:.0}%</text>\n", l + pw, py(y), l - 6.0, py(y) + 4.0);
            y += 10.0;
        }
        let mut d = 10f64.powf(x0.floor());
        while d.log10() <= x1 {
            for m in [1.0, 2.0, 5.0] {
                let v = d * m;
                if v.log10() >= x0 && v.log10() <= x1 {
                    s += &format!("<line x1=\"{0}\" x2=\"{0}\" y1=\"{t}\" y2=\"{1}\" stroke=\"#eee\"/><text x=\"{0}\" y=\"{2}\" text-anchor=\"middle\">{v}</text>\n", px(v), t + ph, t + ph + 16.0);
                }
            }
            d *= 10.0;
        }
        s += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">images/s (log scale)</text>\n", l + pw / 2.0, h - 16.0);
        s += &format!("<text x=\"18\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {0})\">test accuracy</text>\n", t + ph / 2.0);
        let pts: Vec<String> = rows.iter().zip(&accs).zip(&ips).map(|((_, &a), &v)| format!("{:.1},{:.1}", px(v), py(a))).collect();
        s += &format!("<polyline points=\"{}\" fill=\"none\" stroke=\"#3366cc\" stroke-width=\"2\"/>\n", pts.join(" "));
        for ((row, &a), &v) in rows.iter().zip(&accs).zip(&ips) {
            s += &format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"#3366cc\"><title>{}: {a:.2}%, {v:.0} images/s</title></circle>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{} ({} tokens)</text>\n",
                px(v),
                py(a),
                row.label(),
                px(v) + 8.0,
                py(a) - 8.0,
                row.label(),
                row.tokens_out.unwrap_or(row.tokens)
            );
            if let Some(base) = row.fixed_patch_baseline {
                let b = base * 100.0;
                s += &format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"none\" stroke=\"#cc3333\"><title>fixed-patch default at patch {}: {b:.2}%</title></circle>\n", px(v), py(b), row.patch_size);
            }
        }
        if rows.iter().any(|r| r.fixed_patch_baseline.is_some()) {
            // Legend in the bottom-left corner: slow and inaccurate, where no point falls.
            s += &format!("<circle cx=\"{0}\" cy=\"{1}\" r=\"5\" fill=\"#3366cc\"/><text x=\"{2}\" y=\"{3}\">this model</text>\
                <circle cx=\"{0}\" cy=\"{4}\" r=\"4\" fill=\"none\" stroke=\"#cc3333\"/><text x=\"{2}\" y=\"{5}\">fixed-patch default</text>\n",
                l + 14.0, t + ph - 36.0, l + 26.0, t + ph - 32.0, t + ph - 18.0, t + ph - 14.0);
        }
    } else {
        let hi = ips.iter().cloned().fold(0f64, f64::max) * 1.15;
        let n = rows.len().max(1) as f64;
        let bw = pw / n * 0.6;
        let axis = if rows.iter().any(|r| r.merge.is_some()) {
            "tokens merged per layer (tokens left)"
        } else if rows.iter().any(|r| r.max_patches.is_some()) {
            "patch budget (tokens)"
        } else {
            "patch size (tokens)"
        };
        s += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{axis}</text>\n", l + pw / 2.0, h - 16.0);
        s += &format!("<text x=\"18\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {0})\">images/s</text>\n", t + ph / 2.0);
        for (i, (row, &v)) in rows.iter().zip(&ips).enumerate() {
            let x = l + (i as f64 + 0.5) * pw / n;
            let bh = v / hi * ph;
            // Two significant figures at least (a slow model's 2.3 images/s is not "2").
            let shown = if v < 10.0 { format!("{v:.1}") } else { format!("{v:.0}") };
            s += &format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"#3366cc\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{shown}</text>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} ({})</text>\n",
                x - bw / 2.0,
                t + ph - bh,
                t + ph - bh - 6.0,
                t + ph + 16.0,
                row.merge.map_or_else(|| row.max_patches.unwrap_or(row.patch_size).to_string(), |r| format!("r={r}")),
                row.tokens_out.unwrap_or(row.tokens)
            );
        }
    }
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p: usize, acc: Option<f64>, ips: f64) -> SweepRow {
        SweepRow { patch_size: p, max_patches: None, grid: (28 / p, 28 / p), tokens: 1 + (28 / p) * (28 / p), accuracy: acc, pytorch_accuracy: None, fixed_patch_baseline: Some(0.5), images_per_s: ips, latency_ms: 1.0, merge: None, tokens_out: None, agreement: None, cosine: None }
    }

    #[test]
    fn the_chart_has_a_point_per_patch_size() {
        let rows = [row(2, Some(0.89), 900.0), row(4, Some(0.9), 4000.0), row(14, Some(0.7), 30000.0)];
        let svg = chart_svg(&rows, "a <model>");
        assert_eq!(svg.matches("<circle cx").count(), 3 + 3 + 2, "points, baselines and legend");
        assert!(svg.contains("P=14 (5 tokens)") && svg.contains("a &lt;model&gt;"));
        let bars = chart_svg(&[row(8, None, 10.0), row(16, None, 40.0)], "t");
        assert_eq!(bars.matches("<rect x=").count(), 1 + 2, "frame and a bar per size");
    }

    #[test]
    fn default_sizes_follow_the_checkpoint() {
        assert_eq!(default_patch_sizes(false, (224, 224), 16), vec![8, 14, 16, 28, 32, 56, 112]);
        assert_eq!(default_patch_sizes(false, (28, 28), 4), vec![2, 4, 7, 14]);
    }
}
