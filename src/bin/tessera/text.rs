//! Zero-shot classification and text embeddings with CLIP and SigLIP checkpoints (or a text
//! tower alone).

use crate::commands::{write_embeddings, ClassifyArgs, EmbedArgs};
use crate::models::{self, ModelArg};
use anyhow::{bail, Context, Result};
use tessera::Device;

/// A CLIP or SigLIP checkpoint with its text tower (`--model` must name one).
fn load_clip(device: &Device, arg: &ModelArg) -> Result<tessera::model::clip::Clip> {
    let spec = arg.model.as_deref().context("zero-shot and text embeddings need a CLIP or SigLIP checkpoint: give --model")?;
    let ck = models::checkpoint(Some(spec))?;
    let c = arg.choices();
    let opts = tessera::LoadOptions { max_patches: c.max_patches, patch_size: c.patch, merge: tessera::Merge::new(c.merge.r, c.merge.schedule)?, ..Default::default() };
    Ok(tessera::model::clip::Clip::load_with(device, &ck, opts)?)
}

/// `classify --labels`: each image against the labels through the template.
pub(crate) fn zero_shot(device: &Device, args: &ClassifyArgs) -> Result<()> {
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
pub(crate) fn embed_texts(device: &Device, args: &EmbedArgs) -> Result<()> {
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
