//! The model families, one module each, and the one table that lists them. A family module
//! implements `model::shared::family::FamilyDef` and imports only `model::shared` (never another
//! family); everything above this table (opening checkpoints, building graphs, the facades, the
//! CLI and the package) reaches a family only through it. Adding a family adds its module and
//! one line to [`TABLE`] (ARCHITECTURE.md, "How to add a model family").

pub mod clip;
pub mod siglip;
pub mod siglip2;
pub mod timm;
pub mod vit;

use crate::error::{Error, Result};
use crate::model::shared::family::FamilyDef;
use crate::model::shared::spec::Family;
use serde_json::Value;

/// Every family, in the order `config.json` is offered to them (the first that claims it reads
/// it) and in which messages list them.
pub const TABLE: &[&dyn FamilyDef] = &[&vit::VIT, &vit::DEIT, &vit::DINOV2, &vit::DEPTH_ANYTHING, &vit::DPT_DINOV2, &vit::DPT, &clip::CLIP, &siglip::SIGLIP, &siglip2::SIGLIP2, &timm::TIMM];

/// The family that reads `config` (`file` names it in errors), or an error listing the
/// `model_type`s that are read.
pub fn reading(config: &Value, file: &str) -> Result<&'static dyn FamilyDef> {
    if let Some(def) = TABLE.iter().find(|d| d.claims(config)) {
        return Ok(*def);
    }
    let known: Vec<&str> = TABLE.iter().flat_map(|d| d.model_types().iter().copied()).collect();
    Err(Error::model(
        file,
        match config.get("model_type").and_then(Value::as_str) {
            Some(other) => format!("model_type `{other}` is not supported (supported: {}, or timm's config.json without one)", known.join(", ")),
            None => format!("no `model_type` (expected one of {}) and no timm `architecture`", known.join(", ")),
        },
    ))
}

/// The family whose image towers report `family` (None for a text tower alone).
pub fn of(family: Family) -> Option<&'static dyn FamilyDef> {
    TABLE.iter().find(|d| d.family() == family).copied()
}

/// The family that reads the text tower of `config` (`file` names it in errors), or an error
/// listing the `model_type`s with one.
pub fn reading_text(config: &Value, file: &str) -> Result<&'static dyn FamilyDef> {
    let model_type = config.get("model_type").and_then(Value::as_str);
    if let Some(def) = TABLE.iter().find(|d| model_type.is_some_and(|m| d.text_model_types().contains(&m))) {
        return Ok(*def);
    }
    let known: Vec<&str> = TABLE.iter().flat_map(|d| d.text_model_types().iter().copied()).collect();
    Err(Error::model(file, format!("model_type {model_type:?} has no text tower ({})", known.join(", "))))
}
