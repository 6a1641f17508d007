//! Opening a checkpoint: its `config.json` is offered to the family table, and the family that
//! claims it reads it (checked before the weights are read, unless the family needs the weights'
//! shapes to complete its config, as `timm`'s does); then the safetensors header, the
//! preprocessing config and the optional tokenizer files. The [`Checkpoint`] itself (what every
//! family reads) is `model::shared::checkpoint`'s.

use crate::error::{Error, Result};
use crate::model::families;
use crate::model::shared::checkpoint::{ByteSource, Checkpoint};
use crate::model::shared::family::FamilyDef;
use crate::model::shared::preprocess::PreprocessorConfig;
use crate::model::shared::spec::ModelConfig;
use serde_json::Value;

/// `config.json`'s bytes as JSON; `file` names it in errors.
fn json(config: &[u8], file: &str) -> Result<Value> {
    serde_json::from_slice(config).map_err(|e| Error::model(file, format!("not a valid config.json: {e}")))
}

impl ModelConfig {
    /// Parses and validates `config.json` through the family that reads it; `file` names it in
    /// errors. (A `timm` config needs its weights' shapes: see [`Checkpoint::from_bytes`].)
    pub fn parse(config: &[u8], file: &str) -> Result<Self> {
        let v = json(config, file)?;
        Ok(families::reading(&v, file)?.parse(&v, file, &|_| None)?.0)
    }
}

impl Checkpoint {
    /// From the three files' contents. `source` names the checkpoint in errors.
    pub fn from_bytes(source: &str, config: &[u8], weights: Vec<u8>, preprocessor: Option<&[u8]>) -> Result<Self> {
        let config_name = format!("{source}/config.json");
        let weights_name = format!("{source}/model.safetensors");
        let v = json(config, &config_name)?;
        let def = families::reading(&v, &config_name)?;
        let (parsed, header) = if def.reads_shapes() {
            let header = Checkpoint::read_header(&weights, &weights_name)?;
            let meta = &header.1;
            (def.parse(&v, &config_name, &|n: &str| meta.info(n).map(|i| i.shape.clone()))?, header)
        } else {
            let parsed = def.parse(&v, &config_name, &|_| None)?;
            (parsed, Checkpoint::read_header(&weights, &weights_name)?)
        };
        let (model_config, default_pre) = parsed;
        let preprocessor = match preprocessor {
            Some(p) => (PreprocessorConfig::parse(p, &format!("{source}/preprocessor_config.json"))?, Some(p.to_vec())),
            None => (default_pre, None),
        };
        Checkpoint::assemble(source, def.family(), model_config, config, preprocessor, weights, header)
    }

    /// [`Checkpoint::from_bytes`] with the weights file read by range where it lives (tensors
    /// are copied one at a time as the model uploads them).
    pub fn from_source(source: &str, config: &[u8], weights: Box<dyn ByteSource>, preprocessor: Option<&[u8]>) -> Result<Self> {
        let config_name = format!("{source}/config.json");
        let weights_name = format!("{source}/model.safetensors");
        let v = json(config, &config_name)?;
        let def = families::reading(&v, &config_name)?;
        let header = Checkpoint::read_header_of(&*weights, &weights_name)?;
        let meta = &header.1;
        let (model_config, default_pre) = if def.reads_shapes() { def.parse(&v, &config_name, &|n: &str| meta.info(n).map(|i| i.shape.clone()))? } else { def.parse(&v, &config_name, &|_| None)? };
        let preprocessor = match preprocessor {
            Some(p) => (PreprocessorConfig::parse(p, &format!("{source}/preprocessor_config.json"))?, Some(p.to_vec())),
            None => (default_pre, None),
        };
        Checkpoint::assemble_source(source, def.family(), model_config, config, preprocessor, weights, header)
    }

    /// The module of the family that read it.
    pub fn family_def(&self) -> Result<&'static dyn FamilyDef> {
        families::of(self.read_by()).ok_or_else(|| Error::model(&self.source, format!("no family module for {:?}", self.read_by())))
    }

    /// Whether its family has text towers (CLIP, SigLIP): its tokenizer files are read where
    /// they exist.
    pub fn has_text_tower(&self) -> bool {
        self.family_def().is_ok_and(|d| d.text_kind().is_some())
    }

    /// `preprocessor_config.json` as read; where the checkpoint has none, the one that describes
    /// the defaults it runs with (its family's image processor); None where the family's
    /// config.json describes the preprocessing itself (`timm`'s `pretrained_cfg`).
    pub fn preprocessor_json(&self) -> Option<Vec<u8>> {
        if let Some(p) = self.preprocessor_file() {
            return Some(p.to_vec());
        }
        let doc = self.family_def().ok()?.preprocessor_json(&self.config)?;
        serde_json::to_vec_pretty(&doc).ok()
    }

    /// From a folder holding the three files (`preprocessor_config.json` is optional) and, where
    /// they are there, a text tower's tokenizer files.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        let source = dir.display().to_string();
        let read = |name: &str| -> Result<Vec<u8>> {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| Error::model(p.display().to_string(), format!("cannot read: {e}")))
        };
        let optional = |name: &str| -> Result<Option<Vec<u8>>> { if dir.join(name).exists() { Ok(Some(read(name)?)) } else { Ok(None) } };
        let config = read("config.json")?;
        let weights = read("model.safetensors")?;
        let pre = optional("preprocessor_config.json")?;
        let tok = optional("tokenizer.json")?;
        let ck = Self::from_bytes(&source, &config, weights, pre.as_deref())?;
        Ok(ck.with_tokenizer(tok).with_tokenizer_config(optional("tokenizer_config.json")?).with_sentencepiece(optional("spiece.model")?))
    }
}
