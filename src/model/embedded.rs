//! The embedded default model: a small ViT (patch 4) trained on Fashion-MNIST, FlexiViT-style so
//! that it also works at patch sizes 2, 7 and 14, by `scripts/train_flexi.py` (files in
//! `models/fashion-vit/`), so that tessera classifies with no download.

use crate::model::shared::checkpoint::Checkpoint;
use crate::error::Result;

const CONFIG: &[u8] = include_bytes!("../../models/fashion-vit/config.json");
const WEIGHTS: &[u8] = include_bytes!("../../models/fashion-vit/model.safetensors");
const PREPROCESSOR: &[u8] = include_bytes!("../../models/fashion-vit/preprocessor_config.json");
const REFERENCE: &[u8] = include_bytes!("../../models/fashion-vit/reference.json");

/// The embedded checkpoint.
pub fn checkpoint() -> Result<Checkpoint> {
    Checkpoint::from_bytes("embedded:fashion-vit", CONFIG, WEIGHTS.to_vec(), Some(PREPROCESSOR))
}

#[derive(serde::Deserialize)]
struct Scored {
    accuracy: f64,
    predictions: String,
}

#[derive(serde::Deserialize)]
struct Reference {
    #[serde(flatten)]
    own: Scored,
    #[serde(default)]
    by_patch_size: std::collections::BTreeMap<String, Scored>,
    #[serde(default)]
    fixed_patch_baseline: std::collections::BTreeMap<String, f64>,
}

fn reference() -> Option<Reference> {
    serde_json::from_slice::<Reference>(REFERENCE).ok()
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes().map(|b| b.wrapping_sub(b'0')).collect()
}

/// Test-set accuracy PyTorch measured for the embedded weights.
pub fn reference_accuracy() -> Option<f64> {
    reference().map(|r| r.own.accuracy)
}

/// PyTorch's predicted class for each of the 10,000 Fashion-MNIST test images.
pub fn reference_predictions() -> Option<Vec<u8>> {
    reference().map(|r| digits(&r.own.predictions))
}

/// The patch sizes PyTorch measured the embedded model at (its kernel PI-resized to each).
pub fn reference_patch_sizes() -> Vec<usize> {
    let mut v: Vec<usize> = reference().map(|r| r.by_patch_size.keys().filter_map(|k| k.parse().ok()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// PyTorch's test-set accuracy of the embedded model at `patch` (PI-resized).
pub fn reference_accuracy_at(patch: usize) -> Option<f64> {
    reference()?.by_patch_size.get(&patch.to_string()).map(|s| s.accuracy)
}

/// PyTorch's predictions of the embedded model at `patch` (PI-resized).
pub fn reference_predictions_at(patch: usize) -> Option<Vec<u8>> {
    reference()?.by_patch_size.get(&patch.to_string()).map(|s| digits(&s.predictions))
}

/// What the previous, fixed-patch default scored in PyTorch at `patch` (PI-resized): the
/// comparison that shows what training for the dial buys.
pub fn fixed_patch_baseline_at(patch: usize) -> Option<f64> {
    reference()?.fixed_patch_baseline.get(&patch.to_string()).copied()
}
