//! A checkpoint as the hub lays it out: `config.json`, `model.safetensors` (f32, f16 or bf16) and
//! `preprocessor_config.json`. The weights file is read once and its header validated before any
//! tensor is touched; tensors are converted to f32 one at a time as the model uploads them.

use super::config::ModelConfig;
use super::preprocess::PreprocessorConfig;
use crate::error::{Error, Result};
use safetensors::tensor::{Metadata, SafeTensors};
use safetensors::Dtype;

/// A loaded (not yet uploaded) checkpoint.
pub struct Checkpoint {
    /// Where it came from (a folder, a hub id, `embedded`), for messages.
    pub source: String,
    /// The model config.
    pub config: ModelConfig,
    /// The preprocessing config (defaults where the file is absent).
    pub preprocessor: PreprocessorConfig,
    weights_name: String,
    config_json: Vec<u8>,
    preprocessor_json: Option<Vec<u8>>,
    tokenizer_json: Option<Vec<u8>>,
    tokenizer_config: Option<Vec<u8>>,
    sentencepiece: Option<Vec<u8>>,
    bytes: Vec<u8>,
    data_start: usize,
    metadata: Metadata,
}

impl Checkpoint {
    /// From the three files' contents. `source` names the checkpoint in errors.
    pub fn from_bytes(source: &str, config: &[u8], weights: Vec<u8>, preprocessor: Option<&[u8]>) -> Result<Self> {
        let config_bytes = config;
        let config_name = format!("{source}/config.json");
        let weights_name = format!("{source}/model.safetensors");
        let timm = super::timm::is_timm(config);
        // transformers' configs are checked before the weights; timm's need the weights' shapes.
        let hf = if timm { None } else { Some(ModelConfig::parse(config, &config_name)?) };
        let (header, metadata) = SafeTensors::read_metadata(&weights)
            .map_err(|e| Error::model(&weights_name, format!("not a valid safetensors file: {e}")))?;
        let (config, default_pre) = match hf {
            Some(c) => {
                let pre = PreprocessorConfig::default_for(&c);
                (c, pre)
            }
            None => super::timm::parse(config, &config_name, &|n: &str| metadata.info(n).map(|i| i.shape.clone()))?,
        };
        let preprocessor_json = preprocessor.map(|p| p.to_vec());
        let preprocessor = match preprocessor {
            Some(p) => PreprocessorConfig::parse(p, &format!("{source}/preprocessor_config.json"))?,
            None => default_pre,
        };
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
        Ok(Checkpoint { source: source.into(), config, preprocessor, weights_name, config_json: config_bytes.to_vec(), preprocessor_json, tokenizer_json: None, tokenizer_config: None, sentencepiece: None, bytes: weights, data_start, metadata })
    }

    /// From a folder holding the three files (`preprocessor_config.json` is optional).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        let source = dir.display().to_string();
        let read = |name: &str| -> Result<Vec<u8>> {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| Error::model(p.display().to_string(), format!("cannot read: {e}")))
        };
        let config = read("config.json")?;
        let weights = read("model.safetensors")?;
        let pre = dir.join("preprocessor_config.json");
        let pre = if pre.exists() { Some(read("preprocessor_config.json")?) } else { None };
        let tok = if dir.join("tokenizer.json").exists() { Some(read("tokenizer.json")?) } else { None };
        let optional = |name: &str| -> Result<Option<Vec<u8>>> { if dir.join(name).exists() { Ok(Some(read(name)?)) } else { Ok(None) } };
        let ck = Self::from_bytes(&source, &config, weights, pre.as_deref())?;
        Ok(ck.with_tokenizer(tok).with_tokenizer_config(optional("tokenizer_config.json")?).with_sentencepiece(optional("spiece.model")?))
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

    /// `preprocessor_config.json` as read; where the checkpoint has none, the one that describes
    /// the defaults it runs with (`ViTImageProcessor`'s); None for a `timm` checkpoint without
    /// one (its `pretrained_cfg` in config.json describes the preprocessing).
    pub fn preprocessor_json(&self) -> Option<Vec<u8>> {
        if let Some(p) = &self.preprocessor_json {
            return Some(p.clone());
        }
        if self.config.family == super::config::Family::Timm {
            return None;
        }
        let (h, w) = self.config.image_size;
        let siglip = self.config.family == super::config::Family::Siglip;
        let doc = serde_json::json!({
            "image_processor_type": if siglip { "SiglipImageProcessor" } else { "ViTImageProcessor" },
            "do_resize": true, "size": { "height": h, "width": w }, "resample": if siglip { 3 } else { 2 },
            "do_rescale": true, "rescale_factor": 1.0 / 255.0,
            "do_normalize": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        });
        serde_json::to_vec_pretty(&doc).ok()
    }

    /// Bytes of the weights file.
    pub fn weights_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// A tensor's dtype, shape and bytes as stored.
    pub fn raw(&self, name: &str) -> Result<(Dtype, Vec<usize>, &[u8])> {
        let info = self.metadata.info(name).ok_or_else(|| Error::model(&self.weights_name, format!("tensor `{name}` is missing")))?;
        let (s, e) = info.data_offsets;
        Ok((info.dtype, info.shape.clone(), &self.bytes[self.data_start + s..self.data_start + e]))
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
