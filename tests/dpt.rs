//! DPT with a plain ViT backbone (`DPTForDepthEstimation`, Intel/dpt-large's layout) against
//! `transformers`: random-weight checkpoints (`scripts/make_dpt_fixtures.py`: readout "project",
//! "add" and "ignore", batch norm in the fusion's residual units with and without conv biases,
//! hidden states listed out of order, neck widths not multiples of 4), on two photos through
//! the checkpoint's processor (a 6x6 grid, the 4x4 position grid resized bilinearly) and an odd
//! 5x5 grid, on the GPU adapter and the CPU backend: the hidden states and `predicted_depth`
//! within 1e-4 of transformers'; `Model::depth` at the photos' own sizes.

mod common;

use std::path::{Path, PathBuf};
use tessera::model::{Checkpoint, Model, RunOptions};

const CHECKPOINTS: [&str; 3] = ["dpt-project", "dpt-add-bn", "dpt-ignore"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dpt").join(name)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// The whole checkpoint from its folder on transformers' pixel values: every hidden state (the
/// embeddings with their bilinearly resized positions, each layer) and the depth.
#[test]
fn dpt_checkpoints_match_transformers_end_to_end() {
    for (device, d) in common::devices() {
        for name in CHECKPOINTS {
            let ck = Checkpoint::from_dir(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let model = Model::load(&d, &ck).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(model.labels().is_empty(), "{name}: a depth model has no classes");
            for case in ["chelsea", "portrait", "odd"] {
                let expected = common::tensors(&fixture(name).join(format!("expected-{case}.safetensors")));
                let (dims, pixels) = &expected["pixel_values"];
                let opts = RunOptions { hidden_states: true, ..Default::default() };
                let out = model.run_blocking(pixels, [dims[0], dims[1], dims[2], dims[3]], opts).unwrap_or_else(|e| panic!("{name} {case}: {e}"));
                assert_eq!(out.hidden_states.len(), 5, "{name} {case}: the embeddings and 4 layers");
                for (i, h) in out.hidden_states.iter().enumerate() {
                    let (shape, want) = &expected[&format!("hidden.{i}")];
                    assert_eq!(&h.shape, shape, "{name} {case} hidden state {i}");
                    let err = max_diff(&h.data, want);
                    assert!(err <= 1e-4, "{name} {case} on {device}: hidden state {i} differs by {err}");
                }
                let depth = out.predicted_depth.unwrap_or_else(|| panic!("{name} {case} on {device}: no predicted_depth"));
                let (want_shape, want) = &expected["predicted_depth"];
                assert_eq!(&depth.shape, want_shape, "{name} {case} on {device}");
                let top = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(top > 0.5, "{name} {case}: a depth map of zeros tests nothing");
                let err = max_diff(&depth.data, want);
                eprintln!("{device} {name} {case} ({}x{} -> {:?}): max |tessera - transformers| {err:.2e} (depth up to {top:.2})", dims[2], dims[3], want_shape);
                assert!(err <= 1e-4, "{name} {case} on {device}: predicted_depth differs by {err}");
            }
        }
    }
}

/// `Model::depth` on the photos themselves: the checkpoint's processor (a fixed square, bicubic),
/// the model and the bicubic resize back to the photo's size, against transformers' PIL backend
/// and `post_process_depth_estimation`.
#[test]
fn dpt_depth_at_the_image_size_matches_transformers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (device, d) in common::devices() {
        for name in CHECKPOINTS {
            let model = Model::load(&d, &Checkpoint::from_dir(&fixture(name)).unwrap()).unwrap();
            for (case, file) in [("chelsea", root.join("photos/chelsea.png")), ("portrait", root.join("depth/portrait-150x220.png"))] {
                let img = tessera::model::decode_image(&std::fs::read(&file).unwrap(), "photo").unwrap();
                let got = model.depth_blocking(&img).unwrap_or_else(|e| panic!("{name} {case}: {e}"));
                let (shape, want) = &common::tensors(&fixture(name).join(format!("expected-{case}.safetensors")))["depth_at_input"];
                assert_eq!([got.height, got.width], [shape[0], shape[1]], "{name} {case}: the photo's size");
                assert_eq!(got.model_size, (48, 48), "{name} {case}: the processor's square");
                let err = max_diff(&got.data, want);
                eprintln!("{device} {name} {case} at the photo's size: max |tessera - transformers| {err:.2e}");
                // predicted_depth's own 1e-4, through the bicubic resize.
                assert!(err <= 2e-4, "{name} {case} on {device}: depth differs by {err}");
            }
        }
    }
}

/// Hostile DPT configs and checkpoints refused naming the field or tensor: DPT-Hybrid, another
/// backbone, an unknown readout, a layer listed twice or past the backbone, a missing readout
/// projection, batch norm claimed where the checkpoint has none.
#[test]
fn bad_dpt_checkpoints_are_refused_naming_the_problem() {
    let h = common::Hostile::new(fixture("dpt-project"), "dpt");
    let e = h.with("is_hybrid", true.into());
    assert!(e.contains("DPT-Hybrid") && e.contains("config.json"), "{e}");
    let e = h.with("backbone_config", serde_json::json!({"model_type": "swinv2"}));
    assert!(e.contains("swinv2"), "{e}");
    let e = h.with("readout_type", "mean".into());
    assert!(e.contains("readout_type"), "{e}");
    let e = h.with("backbone_out_indices", serde_json::json!([0, 1, 1, 3]));
    assert!(e.contains("backbone_out_indices"), "{e}");
    let e = h.with("backbone_out_indices", serde_json::json!([0, 1, 2, 4]));
    assert!(e.contains("backbone_out_indices names layer 4"), "{e}");
    let e = h.with("add_projection", true.into());
    assert!(e.contains("add_projection"), "{e}");
    let e = h.with("use_batch_norm_in_fusion_residual", true.into());
    assert!(e.contains("batch_norm1"), "{e}");
    // The readout projection of one stage missing.
    let gone = "neck.reassemble_stage.readout_projects.2.0.weight";
    let e = h.without(gone);
    assert!(e.contains(gone), "{e}");
}
