//! `tessera eval`: accuracy on the Fashion-MNIST test set, read from its IDX files, through the
//! engine in batches (also used by `tessera sweep`).

use crate::models::{self, row, ModelArg};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tessera::{Device, RunOptions};

#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub(crate) model: ModelArg,
    /// Folder with Fashion-MNIST's t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    pub(crate) data: PathBuf,
    /// Images per GPU run.
    #[arg(long, default_value_t = 500)]
    pub(crate) batch: usize,
    /// Only the first N test images.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Print JSON: accuracy, count, and the predicted class of every image.
    #[arg(long)]
    pub(crate) json: bool,
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
