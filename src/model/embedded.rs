//! The embedded default model: a small ViT trained on Fashion-MNIST by
//! `scripts/train_default.py` (files in `models/fashion-vit/`), so that tessera classifies with
//! no download.

use super::Checkpoint;
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
struct Reference {
    accuracy: f64,
    predictions: String,
}

/// Test-set accuracy PyTorch measured for the embedded weights.
pub fn reference_accuracy() -> Option<f64> {
    serde_json::from_slice::<Reference>(REFERENCE).ok().map(|r| r.accuracy)
}

/// PyTorch's predicted class for each of the 10,000 Fashion-MNIST test images.
pub fn reference_predictions() -> Option<Vec<u8>> {
    serde_json::from_slice::<Reference>(REFERENCE)
        .ok()
        .map(|r| r.predictions.bytes().map(|b| b.wrapping_sub(b'0')).collect())
}
