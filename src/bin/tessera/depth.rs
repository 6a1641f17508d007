//! `tessera depth`: a depth map per image, at the image's own size, with a depth model (Depth
//! Anything): a colour-mapped PNG, or with `--raw` a 16-bit grayscale PNG of the values.

use crate::models::{self, ModelArg};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tessera::Device;

#[derive(clap::Args)]
pub struct DepthArgs {
    /// Images, or folders of images.
    #[arg(required = true)]
    pub(crate) images: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) model: ModelArg,
    /// Folder for the depth images (created if missing): `<name>-depth.png` per image.
    #[arg(long, default_value = "depth")]
    pub(crate) out: PathBuf,
    /// Colour map of the PNG: inferno, viridis or gray (near is bright for relative depth, far
    /// is bright for metric depth, as the values grow).
    #[arg(long, default_value = "inferno")]
    pub(crate) colormap: Colormap,
    /// Write the values instead, as a 16-bit grayscale PNG: for a metric model millimetres
    /// (depth x 1000, clamped at 65535), for a relative one the image's range stretched over
    /// 0..65535 (the range is in --json's output).
    #[arg(long)]
    pub(crate) raw: bool,
    /// Print each image's depth statistics as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Colormap {
    Inferno,
    Viridis,
    Gray,
}

/// Colour stops of each map at 0, 1/4, .., 1 (sampled from the published maps).
fn stops(c: Colormap) -> [[f32; 3]; 5] {
    match c {
        Colormap::Inferno => [[0.0, 0.0, 4.0], [87.0, 16.0, 110.0], [188.0, 55.0, 84.0], [249.0, 142.0, 9.0], [252.0, 255.0, 164.0]],
        Colormap::Viridis => [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]],
        Colormap::Gray => [[0.0; 3], [63.75; 3], [127.5; 3], [191.25; 3], [255.0; 3]],
    }
}

fn color(c: Colormap, t: f32) -> [u8; 3] {
    let s = stops(c);
    let x = t.clamp(0.0, 1.0) * 4.0;
    let i = (x.floor() as usize).min(3);
    let f = x - i as f32;
    [0, 1, 2].map(|k| (s[i][k] + (s[i + 1][k] - s[i][k]) * f).round() as u8)
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into())
}

pub fn run(device: &Device, args: &DepthArgs) -> Result<()> {
    let model = models::load(device, &args.model)?;
    let Some(spec) = model.config.depth.as_ref() else {
        bail!("{}: this model has no depth head (a Depth Anything or DPT checkpoint, `DepthAnythingForDepthEstimation` or `DPTForDepthEstimation`, has one)", model.source);
    };
    let metric = spec.metric;
    let paths = models::collect_images(&args.images)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create the folder", args.out.display()))?;
    let mut results = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for p in &paths {
        let name = p.display().to_string();
        let bytes = std::fs::read(p).with_context(|| format!("{name}: cannot read"))?;
        let img = tessera::model::decode_image(&bytes, &name)?;
        let t0 = std::time::Instant::now();
        let d = model.depth_blocking(&img).with_context(|| name.clone())?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let (lo, hi) = d.data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let mean = d.data.iter().map(|&v| v as f64).sum::<f64>() / d.data.len().max(1) as f64;
        // Two inputs of the same name in different folders get numbered outputs.
        let mut base = stem(p);
        let mut k = 2;
        while !taken.insert(base.clone()) {
            base = format!("{}-{k}", stem(p));
            k += 1;
        }
        let out = args.out.join(format!("{base}-depth.png"));
        let (w, h) = (d.width as u32, d.height as u32);
        let span = if hi > lo { hi - lo } else { 1.0 };
        if args.raw {
            let v: Vec<u16> = d
                .data
                .iter()
                .map(|&x| if metric { (x * 1000.0).round().clamp(0.0, 65535.0) as u16 } else { ((x - lo) / span * 65535.0).round().clamp(0.0, 65535.0) as u16 })
                .collect();
            let buf = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(w, h, v).context("depth buffer")?;
            buf.save(&out).with_context(|| format!("{}: cannot write", out.display()))?;
        } else {
            let mut buf = image::RgbImage::new(w, h);
            for (px, &x) in buf.pixels_mut().zip(&d.data) {
                *px = image::Rgb(color(args.colormap, (x - lo) / span));
            }
            buf.save(&out).with_context(|| format!("{}: cannot write", out.display()))?;
        }
        results.push(serde_json::json!({
            "image": name, "out": out.display().to_string(), "width": d.width, "height": d.height,
            "model_size": [d.model_size.0, d.model_size.1], "min": lo, "max": hi, "mean": mean, "ms": ms,
        }));
        if !args.json {
            println!("{name}: {w}x{h} (ran at {}x{}), depth {lo:.4} .. {hi:.4}{} -> {} ({ms:.1} ms)", d.model_size.1, d.model_size.0, if metric { " m" } else { "" }, out.display());
        }
    }
    if args.json {
        let doc = serde_json::json!({
            "model": model.source, "kind": if metric { "metric" } else { "relative" },
            "format": if args.raw { if metric { "png16-millimetres" } else { "png16-stretched" } } else { "png-colormap" },
            "results": results,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}
