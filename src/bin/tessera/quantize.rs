//! `tessera quantize`: a checkpoint's Linear layers to 8- or 4-bit integers in the
//! compressed-tensors `pack-quantized` format, written as a complete checkpoint folder, with its
//! size and its fidelity to the original on a built-in check.

use crate::models;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use tessera::reference::Rng;
use tessera::{Device, Model, RunOptions};

#[derive(clap::Args)]
pub struct QuantizeArgs {
    /// Checkpoint to quantize: a folder, a hub id (org/name), a built-in config (vit-b16,
    /// deit-s16, deit-ti16) or `embedded`.
    #[arg(long, short)]
    pub model: String,
    /// Bits per weight: 8 (one scale per output channel) or 4 (a scale per group of inputs).
    #[arg(long)]
    pub bits: u32,
    /// Inputs per scale (4-bit default: 32; 8-bit default: a whole channel).
    #[arg(long, value_name = "G")]
    pub group_size: Option<usize>,
    /// Folder to write config.json, model.safetensors and preprocessor_config.json to (created;
    /// files already there are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Images in the fidelity check (smooth random images at the model's resolution; 0 skips it).
    #[arg(long, default_value_t = 8)]
    pub check_images: usize,
}

pub fn run(device: &Device, args: &QuantizeArgs) -> Result<()> {
    if args.bits != 8 && args.bits != 4 {
        bail!("--bits {}: tessera quantizes to 8 or 4 bits", args.bits);
    }
    let group = match (args.bits, args.group_size) {
        (_, Some(0)) => bail!("--group-size 0: a group holds at least one input"),
        (_, Some(g)) => Some(g),
        (4, None) => Some(32),
        (_, None) => None,
    };
    let ck = models::checkpoint(Some(&args.model))?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template("quantizing {bar:40} {pos}/{len} tensors").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
    let (config, weights, report) = tessera::model::quantize_checkpoint(&ck, args.bits, group, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create the folder", args.out.display()))?;
    let write = |name: &str, data: &[u8]| -> Result<()> {
        let p = args.out.join(name);
        std::fs::write(&p, data).with_context(|| format!("{}: cannot write", p.display()))
    };
    write("config.json", &config)?;
    write("model.safetensors", &weights)?;
    if let Some(p) = ck.preprocessor_json() {
        write("preprocessor_config.json", &p)?;
    }
    // Text towers (CLIP, SigLIP) keep their tokenizer.
    if let Some(t) = ck.tokenizer_config_json() {
        write("tokenizer_config.json", t)?;
    }
    if let Some(t) = ck.sentencepiece() {
        write("spiece.model", t)?;
    }
    if let Some(t) = ck.tokenizer_json() {
        write("tokenizer.json", t)?;
    }

    let scheme = match group {
        None => format!("int{}, one scale per output channel", args.bits),
        Some(g) => format!("int{}, one scale per {g} inputs", args.bits),
    };
    println!("{} -> {} ({scheme}; compressed-tensors pack-quantized)", ck.source, args.out.display());
    println!(
        "  {} Linear layers quantized, {} kept in float{}",
        report.quantized.len(),
        report.kept.len(),
        if report.kept.is_empty() { String::new() } else { format!(" ({})", report.kept.join(", ")) }
    );
    let mb = |b: u64| b as f64 / 1e6;
    println!("  model.safetensors: {:.2} MB -> {:.2} MB ({:.3}x)", mb(report.bytes_before), mb(report.bytes_after), report.bytes_after as f64 / report.bytes_before as f64);
    if args.check_images > 0 {
        let q = tessera::Checkpoint::from_dir(&args.out)?;
        check(device, &ck, &q, args.check_images)?;
    }
    Ok(())
}

/// `n` smooth random RGB images in [0, 1] (bilinear upsampling of a coarse random grid):
/// closer to photographs' statistics than white noise.
fn smooth_images(n: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut rng = Rng::new(2026);
    let g = 6usize;
    let mut out = Vec::with_capacity(n * c * h * w);
    for _ in 0..n * c {
        let grid: Vec<f32> = rng.vec(g * g, 0.5).iter().map(|v| v + 0.5).collect();
        for y in 0..h {
            for x in 0..w {
                let fy = y as f32 / h.max(2) as f32 * (g - 1) as f32;
                let fx = x as f32 / w.max(2) as f32 * (g - 1) as f32;
                let (y0, x0) = (fy as usize, fx as usize);
                let (y1, x1) = ((y0 + 1).min(g - 1), (x0 + 1).min(g - 1));
                let (ty, tx) = (fy - y0 as f32, fx - x0 as f32);
                let top = grid[y0 * g + x0] * (1.0 - tx) + grid[y0 * g + x1] * tx;
                let bottom = grid[y1 * g + x0] * (1.0 - tx) + grid[y1 * g + x1] * tx;
                out.push(top * (1.0 - ty) + bottom * ty);
            }
        }
    }
    out
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(f64::MIN_POSITIVE)
}

fn argmax(r: &[f32]) -> usize {
    r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
}

/// Runs the original and the quantized model on the same images and prints how close they are.
fn check(device: &Device, original: &tessera::Checkpoint, quantized: &tessera::Checkpoint, n: usize) -> Result<()> {
    let a = Model::load(device, original)?;
    let b = Model::load(device, quantized)?;
    println!("  weights on {}: {:.2} MB -> {:.2} MB", device.name(), a.weight_bytes() as f64 / 1e6, b.weight_bytes() as f64 / 1e6);
    let cfg = &a.config;
    let (h, w) = cfg.image_size;
    let c = cfg.num_channels;
    // Preprocessed as the checkpoint normalizes: images in [0, 1] mapped to about [-1, 1].
    let pixels: Vec<f32> = smooth_images(n, c, h, w).iter().map(|v| (v - 0.5) / 0.5).collect();
    let opts = RunOptions::default();
    let (oa, ob) = (a.run_blocking(&pixels, [n, c, h, w], opts)?, b.run_blocking(&pixels, [n, c, h, w], opts)?);
    let d = cfg.hidden_size;
    let embed = |o: &tessera::ModelOutput| -> Vec<Vec<f32>> {
        match (&o.pooler_output, &o.last_hidden_state) {
            (Some(p), _) => p.data.chunks(d).map(|c| c.to_vec()).collect(),
            (None, Some(s)) => s.data.chunks(s.shape[1] * d).map(|c| c[..d].to_vec()).collect(),
            _ => vec![],
        }
    };
    let (ea, eb) = (embed(&oa), embed(&ob));
    let cos: Vec<f64> = ea.iter().zip(&eb).map(|(x, y)| cosine(x, y)).collect();
    if !cos.is_empty() {
        let mean = cos.iter().sum::<f64>() / cos.len() as f64;
        let min = cos.iter().cloned().fold(f64::INFINITY, f64::min);
        println!("  fidelity on {n} smooth random images: embedding cosine mean {mean:.5}, min {min:.5}");
    }
    if let (Some(la), Some(lb)) = (&oa.logits, &ob.logits) {
        let k = la.shape[1];
        let max = la.data.iter().zip(&lb.data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let agree = la.data.chunks(k).zip(lb.data.chunks(k)).filter(|(x, y)| argmax(x) == argmax(y)).count();
        println!("  logits: max difference {max:.4}, top-1 the same on {agree}/{n}");
    }
    Ok(())
}
