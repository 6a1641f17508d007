//! `tessera search DIR --query "..."`: a folder of images ranked by a text query with a CLIP
//! model. The image embeddings are kept in `DIR/.tessera-search.safetensors` (with the model and
//! each file's size and modification time), so that later queries over the same folder only embed
//! the text.

use crate::models;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tessera::Device;

#[derive(clap::Args)]
pub struct SearchArgs {
    /// The folder of images.
    folder: PathBuf,
    /// What to look for, in words.
    #[arg(long, short)]
    query: String,
    /// A CLIPModel checkpoint (folder or hub id, with its tokenizer.json).
    #[arg(long, short)]
    model: String,
    /// With a NaFlex checkpoint (SigLIP 2): the budget of patches per image (see `classify --help`).
    #[arg(long, value_name = "N")]
    max_patches: Option<usize>,
    /// How many images to show.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Embed every image again instead of reading the cache.
    #[arg(long)]
    no_cache: bool,
    /// Print JSON: {"query", "model", "results": [{"image", "score"}]} (score: cosine similarity).
    #[arg(long)]
    json: bool,
}

const CACHE: &str = ".tessera-search.safetensors";

/// What identifies a cached embedding: the model and the file's path, size and modification time.
fn stamp(model: &str, path: &Path) -> Result<String> {
    let m = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let t = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    Ok(format!("{model}|{}|{}|{t}", path.display(), m.len()))
}

/// The cached embeddings by stamp (none where the file is missing or unreadable).
fn read_cache(path: &Path) -> HashMap<String, Vec<f32>> {
    let Ok(bytes) = std::fs::read(path) else { return HashMap::new() };
    let Ok((_, meta)) = safetensors::SafeTensors::read_metadata(&bytes) else { return HashMap::new() };
    let Ok(st) = safetensors::SafeTensors::deserialize(&bytes) else { return HashMap::new() };
    let stamps: Vec<String> = meta.metadata().as_ref().and_then(|m| m.get("stamps")).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    let Ok(t) = st.tensor("embeddings") else { return HashMap::new() };
    let (n, d) = match t.shape() {
        [n, d] if *n == stamps.len() => (*n, *d),
        _ => return HashMap::new(),
    };
    let data: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    (0..n).map(|i| (stamps[i].clone(), data[i * d..(i + 1) * d].to_vec())).collect()
}

fn write_cache(path: &Path, stamps: &[String], rows: &[Vec<f32>]) -> Result<()> {
    let d = rows.first().map_or(0, Vec::len);
    let data: Vec<u8> = rows.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![rows.len(), d], &data)?;
    let meta = HashMap::from([("stamps".to_string(), serde_json::to_string(stamps)?)]);
    let tmp = path.with_extension("partial");
    safetensors::serialize_to_file([("embeddings", view)], Some(meta), &tmp).with_context(|| format!("{}: cannot write", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

pub fn run(device: &Device, args: &SearchArgs) -> Result<()> {
    if !args.folder.is_dir() {
        bail!("{}: not a folder", args.folder.display());
    }
    if args.query.trim().is_empty() {
        bail!("--query is empty: say what to look for");
    }
    let ck = models::checkpoint(Some(&args.model))?;
    let clip = tessera::model::clip::Clip::load_with(device, &ck, tessera::LoadOptions { max_patches: args.max_patches, ..Default::default() })?;
    let paths = models::collect_images(std::slice::from_ref(&args.folder))?;
    let cache_path = args.folder.join(CACHE);
    let cached = if args.no_cache { HashMap::new() } else { read_cache(&cache_path) };
    // Embeddings at another patch budget are other embeddings.
    let model_key = match clip.vision.preprocessor.max_patches() {
        Some(n) => format!("{} (max {n} patches)", ck.source),
        None => ck.source.clone(),
    };
    let stamps: Vec<String> = paths.iter().map(|p| stamp(&model_key, p)).collect::<Result<_>>()?;
    let mut rows: Vec<Option<Vec<f32>>> = stamps.iter().map(|s| cached.get(s).cloned()).collect();
    let missing: Vec<usize> = (0..paths.len()).filter(|&i| rows[i].is_none()).collect();
    if !missing.is_empty() {
        let bar = indicatif::ProgressBar::new(missing.len() as u64);
        bar.set_style(indicatif::ProgressStyle::with_template("embedding {bar:40} {pos}/{len} images").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
        for &i in &missing {
            let p = &paths[i];
            let img = std::fs::read(p).with_context(|| format!("{}: cannot read", p.display())).and_then(|b| Ok(tessera::model::decode_image(&b, &p.display().to_string())?));
            match img {
                Ok(img) => rows[i] = Some(pollster::block_on(clip.vision.embed(&[&img]))?.remove(0)),
                Err(e) => bar.suspend(|| eprintln!("note: skipped {}: {e:#}", p.display())),
            }
            bar.inc(1);
            crate::interrupt::check(i + 1, paths.len())?;
        }
        bar.finish_and_clear();
    }
    let kept: Vec<usize> = (0..paths.len()).filter(|&i| rows[i].is_some()).collect();
    if kept.is_empty() {
        bail!("{}: no image could be read", args.folder.display());
    }
    if !missing.is_empty() {
        let s: Vec<String> = kept.iter().map(|&i| stamps[i].clone()).collect();
        let r: Vec<Vec<f32>> = kept.iter().map(|&i| rows[i].clone().expect("embedded")).collect();
        if let Err(e) = write_cache(&cache_path, &s, &r) {
            eprintln!("note: the embeddings were not cached: {e:#}");
        }
    }
    let from_cache = paths.len() - missing.len();
    eprintln!("{} images: {} embedded now, {from_cache} from {}", kept.len(), kept.len() - from_cache, cache_path.display());
    let q = pollster::block_on(clip.embed_texts(&[&args.query]))?;
    if q.truncated[0] {
        eprintln!("note: the query was cut to the model's {} tokens", clip.text.model.config.max_positions);
    }
    let qv = &q.embeddings[0];
    let mut scored: Vec<(String, f32)> = kept
        .iter()
        .map(|&i| (paths[i].display().to_string(), rows[i].as_ref().expect("embedded").iter().zip(qv).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() as f32))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(args.top.max(1));
    if args.json {
        let doc = serde_json::json!({"query": args.query, "model": ck.source,
            "results": scored.iter().map(|(img, s)| serde_json::json!({"image": img, "score": s})).collect::<Vec<_>>()});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for (img, s) in &scored {
            println!("{s:>8.4}  {img}");
        }
    }
    Ok(())
}
