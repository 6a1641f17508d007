//! CLIP or SigLIP as one model: the image tower ([`Model`]), the text tower with the checkpoint's
//! tokenizer ([`TextEncoder`], which also serves a text tower alone) and the learned temperature
//! (and SigLIP's bias); image and text embeddings in the shared space (unit length) and zero-shot
//! classification: the logits are `exp(logit_scale)` times the cosine similarities (plus
//! `logit_bias` for SigLIP), as `CLIPModel`'s and `SiglipModel`'s `logits_per_image`; the scores
//! their softmax over the labels (CLIP) or each label's sigmoid (SigLIP, trained so that every
//! label is a yes/no question).

use crate::error::{Error, Result};
use crate::model::image::{unit_length, Model};
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::text_spec::TextConfig;
use crate::model::shared::tokenize::TextTokenizer;
use crate::model::text::TextModel;
use crate::graph::device::Device;

/// A CLIPModel or SiglipModel checkpoint on a device.
pub struct Clip {
    /// The image tower (with its projection).
    pub vision: Model,
    /// The text tower and its tokenizer.
    pub text: TextEncoder,
    /// `exp(logit_scale)`.
    pub scale: f32,
    /// SigLIP's `logit_bias` (its scores are sigmoids); None for CLIP (softmax).
    pub bias: Option<f32>,
}

/// A text tower with the checkpoint's tokenizer: texts in, embeddings out. From a CLIPModel or
/// SiglipModel checkpoint, or a text tower's alone (CLIPTextModel, CLIPTextModelWithProjection,
/// SiglipTextModel).
pub struct TextEncoder {
    /// The text tower.
    pub model: TextModel,
    tokenizer: TextTokenizer,
    /// How texts are padded.
    pad: Padding,
}

/// How a model's processor pads a batch of texts.
#[derive(Clone, Copy, Debug)]
struct Padding {
    id: u32,
    /// To every position (SigLIP), else to the longest text.
    to_max: bool,
    /// Before the tokens (`padding_side: left`).
    left: bool,
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
    /// Softmax probability over the labels (CLIP), or this label's sigmoid (SigLIP).
    pub score: f32,
    /// `exp(logit_scale)` times the cosine similarity, plus SigLIP's bias (`logits_per_image`).
    pub logit: f32,
}

/// The most labels one zero-shot call takes.
pub const MAX_LABELS: usize = 4096;


impl TextEncoder {
    /// The text tower of `ck` with its `tokenizer.json` (SigLIP: or its SentencePiece
    /// `spiece.model`).
    pub fn load(device: impl Into<Device>, ck: &Checkpoint) -> Result<TextEncoder> {
        let device = device.into();
        let config = TextConfig::parse(ck.config_json(), &format!("{}/config.json", ck.source))?;
        let kind = config.kind;
        let file = tokenizer_file(ck, kind.reads_sentencepiece())?;
        let model = TextModel::load_with(&device, ck, config)?;
        let max = model.config.max_positions;
        let tokenizer = match file {
            TokenizerFile::Json(json) => TextTokenizer::from_bytes(json, &format!("{}/tokenizer.json", ck.source), max)?,
            TokenizerFile::SentencePiece(spm) => TextTokenizer::from_sentencepiece(spm, &format!("{}/spiece.model", ck.source), max)?,
        };
        // CLIP pools at the end token: padding after it changes nothing, so texts are padded to
        // the longest with it. SigLIP reads the last position: padded to every position with the
        // tokenizer's pad token (the config's where the tokenizer names none).
        let left = padding_left(ck.tokenizer_config_json());
        let pad = if kind.pads_to_max() {
            Padding { id: tokenizer.pad_id().unwrap_or(model.config.pad_token_id), to_max: true, left }
        } else {
            Padding { id: model.config.eos_token_id, to_max: false, left: false }
        };
        Ok(TextEncoder { model, tokenizer, pad })
    }

    /// The embeddings of `texts` (one run, padded as the model's processor pads: CLIP to the
    /// longest, SigLIP to every position): unit length in the image-text space where the model
    /// projects into one; a CLIPTextModel's pooled features as they are.
    pub async fn embed_texts(&self, texts: &[&str]) -> Result<TextEmbeddings> {
        if texts.is_empty() {
            return Err(Error::Input { name: "texts".into(), problem: "no texts".into() });
        }
        let enc = texts.iter().map(|t| self.tokenizer.encode(t)).collect::<Result<Vec<_>>>()?;
        let Padding { id: pad, to_max, left } = self.pad;
        if let Some(i) = enc.iter().position(|e| e.ids.is_empty() && !to_max) {
            return Err(Error::Input { name: "texts".into(), problem: format!("text {i} ({:?}) gives no tokens", texts[i]) });
        }
        let len = if to_max { self.model.config.max_positions } else { enc.iter().map(|e| e.ids.len()).max().unwrap_or(1) };
        let ids: Vec<Vec<u32>> = enc
            .iter()
            .map(|e| {
                let fill = std::iter::repeat_n(pad, len - e.ids.len());
                if left { fill.chain(e.ids.iter().copied()).collect() } else { e.ids.iter().copied().chain(fill).collect() }
            })
            .collect();
        let out = self.model.run(&ids).await?;
        let truncated = enc.iter().map(|e| e.truncated).collect();
        Ok(match out.text_embeds {
            Some(e) => TextEmbeddings { embeddings: e.data.chunks(e.shape[1]).map(unit_length).collect(), truncated },
            None => {
                let p = out.pooler_output;
                TextEmbeddings { embeddings: p.data.chunks(p.shape[1]).map(<[f32]>::to_vec).collect(), truncated }
            }
        })
    }
}

impl Clip {
    /// A CLIPModel or SiglipModel checkpoint with its `tokenizer.json` (SigLIP: or its
    /// SentencePiece `spiece.model`).
    pub fn load(device: impl Into<Device>, ck: &Checkpoint) -> Result<Clip> {
        Self::load_with(device, ck, crate::model::image::LoadOptions::default())
    }

    /// [`Clip::load`] with the image tower loaded as `opts` asks (a NaFlex budget, int8
    /// arithmetic, another patch size).
    pub fn load_with(device: impl Into<Device>, ck: &Checkpoint, opts: crate::model::image::LoadOptions) -> Result<Clip> {
        let device = device.into();
        if !ck.has_image_tower() {
            return Err(Error::model(format!("{}/config.json", ck.source), "a text tower alone: no image tower for zero-shot or image embeddings (its text embeddings: TextEncoder, `tessera embed --text`)"));
        }
        let kind = ck.family_def()?.text_kind();
        let sigmoid = kind.is_some_and(|k| k.sigmoid_scores());
        // Said before the towers are loaded.
        tokenizer_file(ck, kind.is_some_and(|k| k.reads_sentencepiece()))?;
        let vision = Model::load_with(&device, ck, opts)?;
        if !vision.arch().projection {
            return Err(Error::model(format!("{}/config.json", ck.source), "not a CLIPModel or SiglipModel: no shared image-text space"));
        }
        let text = TextEncoder::load(&device, ck)?;
        let ls = ck.tensor("logit_scale", &[1])?[0];
        if !(ls.is_finite() && ls < 100.0) {
            return Err(Error::model(ck.weights_name(), format!("logit_scale {ls} is not usable")));
        }
        let bias = if sigmoid {
            let b = ck.tensor("logit_bias", &[1])?[0];
            if !b.is_finite() {
                return Err(Error::model(ck.weights_name(), format!("logit_bias {b} is not usable")));
            }
            Some(b)
        } else {
            None
        };
        Ok(Clip { vision, text, scale: ls.exp(), bias })
    }

    /// Unit-length embeddings of `texts` in the image-text space ([`TextEncoder::embed_texts`]).
    pub async fn embed_texts(&self, texts: &[&str]) -> Result<TextEmbeddings> {
        self.text.embed_texts(texts).await
    }

    /// Zero-shot classification of one image into `labels`, each put into `template` (`{}` marks
    /// the label; `"{}"` uses the label alone): sorted by score.
    pub async fn zero_shot(&self, image: &image::RgbImage, labels: &[&str], template: &str) -> Result<Vec<LabelScore>> {
        self.zero_shot_with(image, labels, template, &self.vision.preprocessor, None).await
    }

    /// [`Clip::zero_shot`] with the image preprocessed by `pre` (another patch budget of a NaFlex
    /// checkpoint, from [`Model::preprocessor_with_budget`]).
    pub async fn zero_shot_with(&self, image: &image::RgbImage, labels: &[&str], template: &str, pre: &crate::model::PreprocessorConfig, merge: Option<crate::model::Merge>) -> Result<Vec<LabelScore>> {
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
        let img = self.vision.embed_with(&[image], pre, merge).await?.remove(0);
        let bias = self.bias.unwrap_or(0.0);
        let logits: Vec<f32> = t.iter().map(|e| self.scale * e.iter().zip(&img).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() as f32 + bias).collect();
        let scores: Vec<f32> = if self.bias.is_some() {
            logits.iter().map(|&l| (1.0 / (1.0 + (-(l as f64)).exp())) as f32).collect()
        } else {
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f64> = logits.iter().map(|l| ((l - max) as f64).exp()).collect();
            let sum: f64 = exps.iter().sum();
            exps.iter().map(|e| (e / sum) as f32).collect()
        };
        let mut out: Vec<LabelScore> = labels.iter().zip(&logits).zip(&scores).map(|((l, &logit), &score)| LabelScore { label: l.to_string(), score, logit }).collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(out)
    }
}

/// A checkpoint's tokenizer file.
enum TokenizerFile<'a> {
    /// `tokenizer.json`.
    Json(&'a [u8]),
    /// SigLIP's `spiece.model`.
    SentencePiece(&'a [u8]),
}

/// The tokenizer a text tower uses: `tokenizer.json` where there is one (CLIP, SigLIP 2), else
/// `spiece.model` where the tower reads one (SigLIP); else an error naming the file.
fn tokenizer_file(ck: &Checkpoint, spm_too: bool) -> Result<TokenizerFile<'_>> {
    match (ck.tokenizer_json(), ck.sentencepiece()) {
        (Some(json), _) => Ok(TokenizerFile::Json(json)),
        (None, Some(spm)) if spm_too => Ok(TokenizerFile::SentencePiece(spm)),
        _ => {
            let file = format!("{}/tokenizer.json", ck.source);
            Err(if spm_too {
                Error::model(file, "is missing (and so is spiece.model): the text tower needs the checkpoint's tokenizer")
            } else {
                Error::model(file, "is missing: a CLIP text tower needs the checkpoint's tokenizer.json")
            })
        }
    }
}

/// Whether a tokenizer pads on the left: `padding_side` in its `tokenizer_config.json`, else the
/// default of the class it names (transformers' Gemma and SigLIP 2 tokenizers pad left; the rest
/// right).
fn padding_left(config: Option<&[u8]>) -> bool {
    let Some(v) = config.and_then(|c| serde_json::from_slice::<serde_json::Value>(c).ok()) else {
        return false;
    };
    match v.get("padding_side").and_then(|s| s.as_str()) {
        Some(side) => side == "left",
        None => matches!(v.get("tokenizer_class").and_then(|s| s.as_str()), Some("GemmaTokenizer" | "GemmaTokenizerFast" | "Siglip2Tokenizer")),
    }
}
