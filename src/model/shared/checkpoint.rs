//! A checkpoint as the hub lays it out: `config.json`, `model.safetensors` (f32, f16 or bf16),
//! `preprocessor_config.json` and a text tower's tokenizer files. The weights file is read once and
//! its header validated before any tensor is touched; tensors are converted to f32 one at a time
//! as the model uploads them. Which family reads the config is the family table's business
//! (`model::checkpoint` opens checkpoints through it); this file holds what every family reads.

use crate::error::{Error, Result};
use crate::model::shared::preprocess::PreprocessorConfig;
use crate::model::shared::spec::{Family, ModelConfig};
use safetensors::tensor::{Metadata, SafeTensors};
use safetensors::Dtype;
use std::borrow::Cow;

/// A weights file read a range at a time where it lives (the browser's worker threads read one
/// shared copy of the file, each copying only the tensors it uploads).
pub trait ByteSource: Send + Sync {
    /// Bytes in the file.
    fn len(&self) -> usize;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes `start..end` (within `len`).
    fn read(&self, start: usize, end: usize) -> Vec<u8>;
}

/// The weights file: in memory, or read by range.
enum Stored {
    Bytes(Vec<u8>),
    Source(Box<dyn ByteSource>),
}

impl Stored {
    fn len(&self) -> usize {
        match self {
            Stored::Bytes(b) => b.len(),
            Stored::Source(s) => s.len(),
        }
    }

    fn range(&self, start: usize, end: usize) -> Cow<'_, [u8]> {
        match self {
            Stored::Bytes(b) => Cow::Borrowed(&b[start..end]),
            Stored::Source(s) => Cow::Owned(s.read(start, end)),
        }
    }
}

/// A loaded (not yet uploaded) checkpoint.
pub struct Checkpoint {
    /// Where it came from (a folder, a hub id, `embedded`), for messages.
    pub source: String,
    /// The model config.
    pub config: ModelConfig,
    /// The preprocessing config (defaults where the file is absent).
    pub preprocessor: PreprocessorConfig,
    read_by: Family,
    weights_name: String,
    config_json: Vec<u8>,
    preprocessor_json: Option<Vec<u8>>,
    tokenizer_json: Option<Vec<u8>>,
    tokenizer_config: Option<Vec<u8>>,
    sentencepiece: Option<Vec<u8>>,
    bytes: Stored,
    data_start: usize,
    metadata: Metadata,
}

impl Checkpoint {
    /// A checkpoint from its files' contents and the config that family `read_by` read from
    /// `config`; the
    /// safetensors header (`header` bytes, `metadata`) already read from `weights`, which must hold
    /// exactly the tensor data it describes. `source` names it in errors.
    pub(crate) fn assemble(source: &str, read_by: Family, config: ModelConfig, config_json: &[u8], preprocessor: (PreprocessorConfig, Option<Vec<u8>>), weights: Vec<u8>, header: (usize, Metadata)) -> Result<Self> {
        Self::assemble_stored(source, read_by, config, config_json, preprocessor, Stored::Bytes(weights), header)
    }

    /// [`Checkpoint::assemble`] over a weights file read by range.
    pub(crate) fn assemble_source(source: &str, read_by: Family, config: ModelConfig, config_json: &[u8], preprocessor: (PreprocessorConfig, Option<Vec<u8>>), weights: Box<dyn ByteSource>, header: (usize, Metadata)) -> Result<Self> {
        Self::assemble_stored(source, read_by, config, config_json, preprocessor, Stored::Source(weights), header)
    }

    fn assemble_stored(source: &str, read_by: Family, config: ModelConfig, config_json: &[u8], preprocessor: (PreprocessorConfig, Option<Vec<u8>>), weights: Stored, (header, metadata): (usize, Metadata)) -> Result<Self> {
        let weights_name = format!("{source}/model.safetensors");
        let data_start = 8 + header;
        let data_len = weights.len().saturating_sub(data_start);
        if metadata.data_len() != data_len {
            return Err(Error::model(
                &weights_name,
                format!(
                    "the header describes {} bytes of tensor data but the file holds {data_len} (truncated or corrupt)",
                    metadata.data_len()
                ),
            ));
        }
        let (preprocessor, preprocessor_json) = preprocessor;
        Ok(Checkpoint { source: source.into(), config, preprocessor, read_by, weights_name, config_json: config_json.to_vec(), preprocessor_json, tokenizer_json: None, tokenizer_config: None, sentencepiece: None, bytes: weights, data_start, metadata })
    }

    /// The safetensors header of `weights` (its length and the tensors it describes); `file` names
    /// the file in errors.
    pub(crate) fn read_header(weights: &[u8], file: &str) -> Result<(usize, Metadata)> {
        SafeTensors::read_metadata(weights).map_err(|e| Error::model(file, format!("not a valid safetensors file: {e}")))
    }

    /// The safetensors header of a file read by range, validated as [`Checkpoint::read_header`]
    /// validates it (tensors back to back, each its shape's size; the data length is checked when
    /// the checkpoint is assembled).
    pub(crate) fn read_header_of(weights: &dyn ByteSource, file: &str) -> Result<(usize, Metadata)> {
        let bad = |p: String| Error::model(file, format!("not a valid safetensors file: {p}"));
        if weights.len() < 8 {
            return Err(bad("shorter than its 8-byte header length".into()));
        }
        let n = u64::from_le_bytes(weights.read(0, 8).try_into().map_err(|_| bad("unreadable".into()))?);
        if n > 100_000_000 || n as usize > weights.len() - 8 {
            return Err(bad(format!("a header of {n} bytes does not fit the file's {}", weights.len())));
        }
        let text = weights.read(8, 8 + n as usize);
        let text = std::str::from_utf8(&text).map_err(|e| bad(format!("the header is not UTF-8 ({e})")))?;
        let metadata: Metadata = serde_json::from_str(text).map_err(|e| bad(format!("the header is not valid ({e})")))?;
        let mut spans: Vec<(usize, usize, usize, String)> = metadata
            .tensors()
            .into_iter()
            .map(|(name, i)| {
                let numel = i.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                let bytes = numel.and_then(|n| n.checked_mul(i.dtype.bitsize()).map(|b| b.div_ceil(8)));
                (i.data_offsets.0, i.data_offsets.1, bytes.unwrap_or(usize::MAX), name)
            })
            .collect();
        spans.sort();
        let mut end = 0;
        for (s, e, bytes, name) in spans {
            if s != end || e < s || e - s != bytes {
                return Err(bad(format!("tensor `{name}`'s data offsets [{s}, {e}) do not follow the previous tensor's or fit its shape")));
            }
            end = e;
        }
        Ok((n as usize, metadata))
    }

    /// The family that read its config (for a text tower's own checkpoint, the family whose text
    /// tower it is; `model::families::of` finds its module).
    pub fn read_by(&self) -> Family {
        self.read_by
    }

    /// Whether it has an image tower (a text tower's own checkpoint has none).
    pub fn has_image_tower(&self) -> bool {
        self.config.family != Family::TextOnly
    }

    /// `preprocessor_config.json` as read, where the checkpoint has one.
    pub fn preprocessor_file(&self) -> Option<&[u8]> {
        self.preprocessor_json.as_deref()
    }

    /// Names of all tensors in the weights file.
    pub fn tensor_names(&self) -> Vec<String> {
        self.metadata.offset_keys()
    }

    /// Whether the weights file has this tensor.
    pub fn has(&self, name: &str) -> bool {
        self.metadata.info(name).is_some()
    }

    /// A tensor's shape as stored.
    pub fn tensor_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.metadata.info(name).map(|i| i.shape.clone())
    }

    /// The weights file's name, for messages.
    pub fn weights_name(&self) -> &str {
        &self.weights_name
    }

    /// The checkpoint with its `tokenizer.json` (text towers), where it has one.
    pub fn with_tokenizer(mut self, json: Option<Vec<u8>>) -> Self {
        self.tokenizer_json = json;
        self
    }

    /// The checkpoint with its `tokenizer_config.json` (which side texts are padded on), where it
    /// has one.
    pub fn with_tokenizer_config(mut self, json: Option<Vec<u8>>) -> Self {
        self.tokenizer_config = json;
        self
    }

    /// The checkpoint with its SentencePiece model (`spiece.model`: SigLIP's tokenizer where it
    /// has no `tokenizer.json`), where it has one.
    pub fn with_sentencepiece(mut self, model: Option<Vec<u8>>) -> Self {
        self.sentencepiece = model;
        self
    }

    /// `spiece.model` as read, where the checkpoint has one.
    pub fn sentencepiece(&self) -> Option<&[u8]> {
        self.sentencepiece.as_deref()
    }

    /// `tokenizer_config.json` as read, where the checkpoint has one.
    pub fn tokenizer_config_json(&self) -> Option<&[u8]> {
        self.tokenizer_config.as_deref()
    }

    /// `tokenizer.json` as read, where the checkpoint has one.
    pub fn tokenizer_json(&self) -> Option<&[u8]> {
        self.tokenizer_json.as_deref()
    }

    /// `config.json` as read.
    pub fn config_json(&self) -> &[u8] {
        &self.config_json
    }

    /// Bytes of the weights file.
    pub fn weights_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// A tensor's dtype, shape and stored bytes, without reading it.
    pub fn stored(&self, name: &str) -> Option<(Dtype, Vec<usize>, usize)> {
        self.metadata.info(name).map(|i| (i.dtype, i.shape.clone(), i.data_offsets.1 - i.data_offsets.0))
    }

    /// A tensor's dtype, shape and bytes as stored.
    pub fn raw(&self, name: &str) -> Result<(Dtype, Vec<usize>, Cow<'_, [u8]>)> {
        let info = self.metadata.info(name).ok_or_else(|| Error::model(&self.weights_name, format!("tensor `{name}` is missing")))?;
        let (s, e) = info.data_offsets;
        Ok((info.dtype, info.shape.clone(), self.bytes.range(self.data_start + s, self.data_start + e)))
    }

    /// One tensor as f32, checked against the shape the model needs.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let info = self
            .metadata
            .info(name)
            .ok_or_else(|| Error::model(&self.weights_name, format!("tensor `{name}` is missing")))?;
        let want: usize = shape.iter().product();
        let got: usize = info.shape.iter().product();
        if got != want || info.shape.iter().filter(|&&d| d != 1).ne(shape.iter().filter(|&&d| d != 1)) {
            return Err(Error::model(
                &self.weights_name,
                format!("tensor `{name}` has shape {:?}, the config implies {:?}", info.shape, shape),
            ));
        }
        self.tensor_any(name)
    }

    /// One float tensor as f32, whatever its shape.
    pub fn tensor_any(&self, name: &str) -> Result<Vec<f32>> {
        let (dtype, _, raw) = self.raw(name)?;
        let values: Vec<f32> = match dtype {
            Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => {
                return Err(Error::model(
                    &self.weights_name,
                    format!("tensor `{name}` has dtype {other:?} (supported: F32, F16, BF16)"),
                ));
            }
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::model(
                &self.weights_name,
                format!("tensor `{name}` holds a non-finite value ({}) at index {i}", values[i]),
            ));
        }
        Ok(values)
    }
}
