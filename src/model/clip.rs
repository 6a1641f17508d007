//! CLIP as one model: the image tower ([`Model`]), the text tower ([`TextModel`]), the checkpoint's
//! tokenizer and its learned temperature; image and text embeddings in the shared space (unit
//! length) and zero-shot classification (softmax over `exp(logit_scale)` times the cosine
//! similarities, as `CLIPModel`'s `logits_per_image`).

use super::checkpoint::Checkpoint;
use super::text::TextModel;
use super::tokenize::TextTokenizer;
use super::vit::Model;
use crate::error::{Error, Result};
use crate::graph::device::Device;

/// A CLIPModel checkpoint on a device.
pub struct Clip {
    /// The image tower (with its projection).
    pub vision: Model,
    /// The text tower.
    pub text: TextModel,
    tokenizer: TextTokenizer,
    /// `exp(logit_scale)`.
    pub scale: f32,
}

/// Text embeddings, and which texts were cut to the model's positions.
pub struct TextEmbeddings {
    /// One unit-length embedding per text.
    pub embeddings: Vec<Vec<f32>>,
    /// Whether each text was truncated.
    pub truncated: Vec<bool>,
}

/// One label's zero-shot result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LabelScore {
    /// The label as given.
    pub label: String,
    /// Softmax probability over the labels.
    pub score: f32,
    /// `exp(logit_scale)` times the cosine similarity (CLIP's `logits_per_image`).
    pub logit: f32,
}

/// The most labels one zero-shot call takes.
pub const MAX_LABELS: usize = 4096;


impl Clip {
    /// A CLIPModel checkpoint with its `tokenizer.json`.
    pub fn load(device: impl Into<Device>, ck: &Checkpoint) -> Result<Clip> {
        let device = device.into();
        let tok_file = format!("{}/tokenizer.json", ck.source);
        let json = ck.tokenizer_json().ok_or_else(|| Error::model(&tok_file, "is missing: a CLIP text tower needs the checkpoint's tokenizer.json"))?;
        let vision = Model::load(&device, ck)?;
        if vision.config.projection_dim.is_none() {
            return Err(Error::model(format!("{}/config.json", ck.source), "not a CLIPModel (no projection_dim): no shared image-text space"));
        }
        let text = TextModel::load(&device, ck)?;
        let tokenizer = TextTokenizer::from_bytes(json, &tok_file, text.config.max_positions)?;
        let ls = ck.tensor("logit_scale", &[1])?[0];
        if !(ls.is_finite() && ls < 100.0) {
            return Err(Error::model(ck.weights_name(), format!("logit_scale {ls} is not usable")));
        }
        Ok(Clip { vision, text, tokenizer, scale: ls.exp() })
    }

    /// Unit-length embeddings of `texts` in the image-text space (one run, padded with the end
    /// token to the longest).
    pub async fn embed_texts(&self, texts: &[&str]) -> Result<TextEmbeddings> {
        if texts.is_empty() {
            return Err(Error::Input { name: "texts".into(), problem: "no texts".into() });
        }
        let enc = texts.iter().map(|t| self.tokenizer.encode(t)).collect::<Result<Vec<_>>>()?;
        let len = enc.iter().map(|e| e.ids.len()).max().unwrap_or(1);
        let pad = self.text.config.eos_token_id;
        let ids: Vec<Vec<u32>> = enc.iter().map(|e| e.ids.iter().copied().chain(std::iter::repeat(pad)).take(len).collect()).collect();
        let out = self.text.run(&ids).await?;
        let e = out.text_embeds.ok_or_else(|| Error::model("text", "the text tower has no projection"))?;
        let p = e.shape[1];
        Ok(TextEmbeddings { embeddings: e.data.chunks(p).map(super::vit::unit_length).collect(), truncated: enc.iter().map(|e| e.truncated).collect() })
    }

    /// Zero-shot classification of one image into `labels`, each put into `template` (`{}` marks
    /// the label; `"{}"` uses the label alone): sorted by score.
    pub async fn zero_shot(&self, image: &image::RgbImage, labels: &[&str], template: &str) -> Result<Vec<LabelScore>> {
        if labels.is_empty() || labels.len() > MAX_LABELS {
            return Err(Error::Input { name: "labels".into(), problem: format!("{} labels (give 1 to {MAX_LABELS})", labels.len()) });
        }
        if !template.contains("{}") {
            return Err(Error::Input { name: "template".into(), problem: format!("`{template}` has no `{{}}` for the label") });
        }
        let texts: Vec<String> = labels.iter().map(|l| template.replace("{}", l)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let mut t = Vec::new();
        // Long label lists in batches of 256 texts.
        for chunk in refs.chunks(256) {
            t.extend(self.embed_texts(chunk).await?.embeddings);
        }
        let img = self.vision.embed(&[image]).await?.remove(0);
        let logits: Vec<f32> = t.iter().map(|e| self.scale * e.iter().zip(&img).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() as f32).collect();
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f64> = logits.iter().map(|l| ((l - max) as f64).exp()).collect();
        let sum: f64 = exps.iter().sum();
        let mut out: Vec<LabelScore> = labels.iter().zip(&logits).zip(&exps).map(|((l, &logit), e)| LabelScore { label: l.to_string(), score: (e / sum) as f32, logit }).collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(out)
    }
}
