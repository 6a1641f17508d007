//! What a model family provides: its module implements [`FamilyDef`] once, and the family table
//! (`model::families`) lists it. Everything that differs from family to family goes through this
//! trait: which `config.json` it reads and how, its default image processor, how its checkpoint
//! maps onto the engine's weights, what its graph adds to the shared encoder, its text tower.
//! Everything else (the encoder, preprocessing, running, the facades) is written once.

use crate::error::{Error, Result};
use crate::graph::ir::Graph;
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::preprocess::PreprocessorConfig;
use crate::model::shared::reader::{Loaded, Sink};
use crate::model::shared::spec::{Family, ModelConfig};
use crate::model::shared::text_spec::{TextConfig, TextHost, TextKind};
use crate::model::shared::tower::{Heads, Tower};
use serde_json::Value;

/// A tensor's shape by name, from the weights file's header (None: no such tensor).
pub type Shapes<'a> = &'a dyn Fn(&str) -> Option<Vec<usize>>;

/// One model family: the mirror of its `config.json`, its weight names and their mapping onto the
/// engine's, its graph's pooling and heads, its image processor and, where it has one, its text
/// tower. Implemented by a unit struct in the family's module.
pub trait FamilyDef: Sync {
    /// The family its image towers report ([`ModelConfig::family`]).
    fn family(&self) -> Family;

    /// The `model_type`s it reads, for messages listing what is supported.
    fn model_types(&self) -> &'static [&'static str];

    /// Whether it reads this `config.json` (by default: its `model_type` is one of
    /// [`FamilyDef::model_types`]).
    fn claims(&self, config: &Value) -> bool {
        config.get("model_type").and_then(Value::as_str).is_some_and(|m| self.model_types().contains(&m))
    }

    /// Whether completing its config needs the weights' shapes. Where it does not, the config is
    /// checked before the weights file is read.
    fn reads_shapes(&self) -> bool {
        false
    }

    /// `config.json` (parsed; `file` names it in errors) as the engine's config, and the
    /// preprocessing the checkpoint runs with where it has no `preprocessor_config.json`.
    /// `shapes` gives the weights' shapes where [`FamilyDef::reads_shapes`] says so (else it
    /// knows no tensor).
    fn parse(&self, config: &Value, file: &str, shapes: Shapes) -> Result<(ModelConfig, PreprocessorConfig)>;

    /// The `preprocessor_config.json` that describes that default preprocessing, for the package
    /// and the demo; None where the family's `config.json` describes its preprocessing itself.
    fn preprocessor_json(&self, config: &ModelConfig) -> Option<Value>;

    /// A quick check of the weights before anything is uploaded (by default none).
    fn check(&self, _ck: &Checkpoint) -> Result<()> {
        Ok(())
    }

    /// Reads every weight of the image tower, rearranged for the engine, into `sink`; the patch
    /// kernel PI-resized to `patch` where that differs from the checkpoint's own. Every tensor of
    /// the file must be used or known (a text tower's, left for the text side).
    fn load(&self, ck: &Checkpoint, patch: usize, sink: &mut dyn Sink) -> Result<Loaded>;

    /// What its graph adds after the shared encoder: pooling, heads, the projection into an
    /// image-text space.
    fn heads(&self, g: &mut Graph, t: &Tower) -> Result<Heads>;

    /// The `model_type`s whose configs hold a text tower (a two-tower model's, a text tower's
    /// own); none where the family has no text tower.
    fn text_model_types(&self) -> &'static [&'static str] {
        &[]
    }

    /// The kind of text tower its checkpoints carry, where they can carry one.
    fn text_kind(&self) -> Option<TextKind> {
        None
    }

    /// Its text tower's config from `config.json` (one of [`FamilyDef::text_model_types`]).
    fn text_config(&self, _config: &Value, file: &str) -> Result<TextConfig> {
        Err(Error::model(file, "this family has no text tower"))
    }

    /// Reads the text tower's encoder weights into `sink` and returns the tensors it keeps on the
    /// host (token and position embeddings, projection).
    fn load_text(&self, ck: &Checkpoint, _cfg: &TextConfig, _sink: &mut dyn Sink) -> Result<TextHost> {
        Err(Error::model(format!("{}/config.json", ck.source), "this family has no text tower"))
    }

    /// Its classifier heads' Linear layers (weight names without `.weight`), kept in float when a
    /// checkpoint is quantized.
    fn float_layers(&self) -> &'static [&'static str] {
        &[]
    }
}
