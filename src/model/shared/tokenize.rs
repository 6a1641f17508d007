//! A checkpoint's `tokenizer.json` (as `transformers` writes it for CLIP: byte-level BPE with its
//! normalizer, split pattern and start/end tokens), through the `tokenizers` library, truncated
//! to the text tower's positions as the model's processor does (`truncation=True`, the end token
//! kept).

use crate::error::{Error, Result};

/// A tokenizer and the longest sequence the text tower takes.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    /// SigLIP's SentencePiece tokenizer: each text gets its `▁` prefix first.
    siglip_prefix: bool,
    /// The padding token the file names, if it does.
    pad_id: Option<u32>,
    max_len: usize,
    file: String,
}

/// One text's token ids, and whether it was cut to fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Ids with the start and end tokens.
    pub ids: Vec<u32>,
    /// Whether the text had more tokens than the model's positions (the rest was dropped).
    pub truncated: bool,
}

impl TextTokenizer {
    /// From `tokenizer.json`'s bytes; `file` names it in errors; `max_len`: the text tower's
    /// positions.
    pub fn from_bytes(json: &[u8], file: &str, max_len: usize) -> Result<TextTokenizer> {
        check_charsmaps(json).map_err(|p| Error::model(file, format!("not a usable tokenizer.json: {p}")))?;
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(|e| Error::model(file, format!("not a usable tokenizer.json: {e}")))?;
        Self::new(inner, file, max_len, false)
    }

    /// SigLIP's tokenizer from its SentencePiece model (`spiece.model`'s bytes, see
    /// [`super::spm`]); `file` names it in errors.
    pub fn from_sentencepiece(bytes: &[u8], file: &str, max_len: usize) -> Result<TextTokenizer> {
        Self::new(super::spm::siglip_tokenizer(bytes, file)?, file, max_len, true)
    }

    fn new(mut inner: tokenizers::Tokenizer, file: &str, max_len: usize, siglip_prefix: bool) -> Result<TextTokenizer> {
        let trunc = tokenizers::TruncationParams { max_length: max_len, ..Default::default() };
        inner.with_truncation(Some(trunc)).map_err(|e| Error::model(file, format!("cannot truncate to {max_len} tokens: {e}")))?;
        let pad_id = inner.get_padding().map(|p| p.pad_id);
        inner.with_padding(None);
        Ok(TextTokenizer { inner, siglip_prefix, pad_id, max_len, file: file.into() })
    }

    /// The padding token `tokenizer.json` names (its `padding` section), if any.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// Token ids of `text` with the start and end tokens the file adds, at most the model's
    /// positions (none at all for an empty text where the file adds none).
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let prefixed;
        let text = if self.siglip_prefix {
            prefixed = super::spm::siglip_prefix(text);
            prefixed.as_str()
        } else {
            text
        };
        let enc = self.inner.encode(text, true).map_err(|e| Error::Input { name: "text".into(), problem: format!("{}: cannot tokenize: {e}", self.file) })?;
        let ids = enc.get_ids().to_vec();
        if ids.len() > self.max_len {
            return Err(Error::Input { name: "text".into(), problem: format!("{}: {} tokens for a model of {} positions", self.file, ids.len(), self.max_len) });
        }
        Ok(Encoded { ids, truncated: !enc.get_overflowing().is_empty() })
    }
}

/// Every SentencePiece character map in a tokenizer.json's normalizers (`Precompiled`, as files
/// converted from a SentencePiece model carry) must be one the normalizer can walk without
/// leaving it ([`super::spm`]); other problems are the `tokenizers` library's to report.
fn check_charsmaps(json: &[u8]) -> std::result::Result<(), String> {
    fn walk(v: &serde_json::Value) -> std::result::Result<(), String> {
        match v {
            serde_json::Value::Object(o) => {
                if o.get("type").and_then(|t| t.as_str()) == Some("Precompiled") {
                    let map = o.get("precompiled_charsmap").and_then(|m| m.as_str()).and_then(super::spm::base64_decode).ok_or("a Precompiled normalizer without a readable character map")?;
                    if !map.is_empty() {
                        super::spm::check_charsmap(&map).map_err(|e| format!("its character map is damaged: {e}"))?;
                    }
                }
                o.values().try_for_each(walk)
            }
            serde_json::Value::Array(a) => a.iter().try_for_each(walk),
            _ => Ok(()),
        }
    }
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(v) => walk(v.get("normalizer").unwrap_or(&serde_json::Value::Null)),
        // Not JSON: the tokenizers library says so.
        Err(_) => Ok(()),
    }
}
