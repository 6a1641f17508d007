//! DPT with a plain ViT backbone (`DPTForDepthEstimation`, Intel/dpt-large's layout) against
//! `transformers`: random-weight checkpoints (`scripts/make_dpt_fixtures.py`: readout "project",
//! "add" and "ignore", batch norm in the fusion's residual units with and without conv biases,
//! hidden states listed out of order, neck widths not multiples of 4), on two photos through
//! the checkpoint's processor (a 6x6 grid, the 4x4 position grid resized bilinearly) and an odd
//! 5x5 grid, on the GPU adapter and the CPU backend: the hidden states and `predicted_depth`
//! within 1e-4 of transformers'; `Model::depth` at the photos' own sizes. DPT over a DINOv2
//! `backbone_config` (`scripts/make_dpt_dinov2_fixtures.py`, facebook/dpt-dinov2-*'s layout) the
//! same way, on photos run at their own sizes zero-padded to the patch.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tessera::model::{Checkpoint, Model, RunOptions};

const CHECKPOINTS: [&str; 3] = ["dpt-project", "dpt-add-bn", "dpt-ignore"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dpt").join(name)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// `model` on a fixture's `pixel_values`: its 5 hidden states (the embeddings and 4 layers) and
/// `predicted_depth` within 1e-4 of transformers'.
fn check_run(model: &Model, expected: &HashMap<String, (Vec<usize>, Vec<f32>)>, what: &str) {
    let (dims, pixels) = &expected["pixel_values"];
    let opts = RunOptions { hidden_states: true, ..Default::default() };
    let out = model.run_blocking(pixels, [dims[0], dims[1], dims[2], dims[3]], opts).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(out.hidden_states.len(), 5, "{what}: the embeddings and 4 layers");
    for (i, h) in out.hidden_states.iter().enumerate() {
        let (shape, want) = &expected[&format!("hidden.{i}")];
        assert_eq!(&h.shape, shape, "{what}: hidden state {i}");
        let err = max_diff(&h.data, want);
        assert!(err <= 1e-4, "{what}: hidden state {i} differs by {err}");
    }
    let depth = out.predicted_depth.unwrap_or_else(|| panic!("{what}: no predicted_depth"));
    let (want_shape, want) = &expected["predicted_depth"];
    assert_eq!(&depth.shape, want_shape, "{what}");
    let top = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(top > 0.5, "{what}: a depth map of zeros tests nothing");
    let err = max_diff(&depth.data, want);
    eprintln!("{what} ({}x{} -> {:?}): max |tessera - transformers| {err:.2e} (depth up to {top:.2})", dims[2], dims[3], want_shape);
    assert!(err <= 1e-4, "{what}: predicted_depth differs by {err}");
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
                check_run(&model, &expected, &format!("{name} {case} on {device}"));
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
    // add_projection claimed by a checkpoint without its convolution.
    let e = h.with("add_projection", true.into());
    assert!(e.contains("head.projection.weight"), "{e}");
    let e = h.with("use_batch_norm_in_fusion_residual", true.into());
    assert!(e.contains("batch_norm1"), "{e}");
    // The readout projection of one stage missing.
    let gone = "neck.reassemble_stage.readout_projects.2.0.weight";
    let e = h.without(gone);
    assert!(e.contains(gone), "{e}");
}

const DINOV2: [&str; 2] = ["dpt-dinov2", "dpt-dinov2-normed"];

fn dinov2_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dpt-dinov2").join(name)
}

/// DPT over a DINOv2 `backbone_config` (`scripts/make_dpt_dinov2_fixtures.py`: facebook/dpt-dinov2's
/// layout, the stages without the final norm, readout "project", `add_projection`, the first
/// fusion layer's unused residual unit absent; and the stages normed, readout "add", stages named
/// by `out_features`): on transformers' pixel values (photos at their own sizes, zero-padded to a
/// multiple of the patch), every backbone hidden state and `predicted_depth` within 1e-4 on both
/// devices; `Model::depth` on the photo files (the processor's padding, then the resize back).
#[test]
fn dpt_over_dinov2_matches_transformers() {
    for (device, d) in common::devices() {
        for name in DINOV2 {
            let ck = Checkpoint::from_dir(&dinov2_fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let model = Model::load(&d, &ck).unwrap_or_else(|e| panic!("{name}: {e}"));
            for (case, padded) in [("wide", (42, 63)), ("tall", (49, 35))] {
                let expected = common::tensors(&dinov2_fixture(name).join(format!("expected-{case}.safetensors")));
                let (dims, pixels) = &expected["pixel_values"];
                assert_eq!((dims[2], dims[3]), padded, "{name} {case}: the fixture pads to a multiple of 7");
                check_run(&model, &expected, &format!("{name} {case} on {device}"));

                let file = dinov2_fixture(&format!("photo-{case}.png"));
                let img = tessera::model::decode_image(&std::fs::read(&file).unwrap(), "photo").unwrap();
                // The processor: no resize, ImageNet's statistics in 0..255 units, zeros around.
                let (px, ph, pw) = model.preprocessor.apply(&img).unwrap();
                assert_eq!((ph, pw), padded, "{name} {case}");
                let err = max_diff(&px, pixels);
                assert!(err <= 1e-5, "{name} {case}: pixel_values differ from transformers' by {err}");
                let got = model.depth_blocking(&img).unwrap_or_else(|e| panic!("{name} {case}: {e}"));
                let (shape, want) = &expected["depth_at_input"];
                assert_eq!([got.height, got.width], [shape[0], shape[1]], "{name} {case}: the photo's size");
                assert_eq!(got.model_size, padded, "{name} {case}: the photo padded, not resized");
                let err = max_diff(&got.data, want);
                eprintln!("{device} {name} {case} at the photo's size: max |tessera - transformers| {err:.2e}");
                assert!(err <= 2e-4, "{name} {case} on {device}: depth differs by {err}");
            }
        }
    }
}

/// DINOv2 backbones that DPT's neck cannot read, refused naming the field or tensor.
#[test]
fn bad_dpt_dinov2_checkpoints_are_refused_naming_the_problem() {
    let h = common::Hostile::new(dinov2_fixture("dpt-dinov2"), "dpt-dinov2");
    let with_backbone = |field: &str, v: serde_json::Value| {
        let mut c = h.config.clone();
        c["backbone_config"][field] = v;
        h.with_config(&c)
    };
    let e = with_backbone("out_indices", serde_json::json!([1, 2, 3, 9]));
    assert!(e.contains("out_indices names hidden state 9"), "{e}");
    let e = with_backbone("out_indices", serde_json::json!([1, 2, 2, 4]));
    assert!(e.contains("backbone_config.out_indices"), "{e}");
    let e = with_backbone("reshape_hidden_states", true.into());
    assert!(e.contains("reshape_hidden_states"), "{e}");
    let e = with_backbone("apply_layernorm", "yes".into());
    assert!(e.contains("backbone_config.apply_layernorm"), "{e}");
    let mut c = h.config.clone();
    c["backbone_config"].as_object_mut().unwrap().remove("out_indices");
    c["backbone_config"]["out_features"] = serde_json::json!(["stage1", "layer2", "stage3", "stage4"]);
    let e = h.with_config(&c);
    assert!(e.contains("backbone_config.out_features"), "{e}");
    // The head's projection convolution gone while add_projection says it is there.
    let e = h.without("head.projection.weight");
    assert!(e.contains("head.projection.weight"), "{e}");
}

/// DPTImageProcessor's `do_pad`: the divisor required and in range; other processors refuse it.
#[test]
fn dpt_padding_is_read_or_refused_naming_the_field() {
    use tessera::model::PreprocessorConfig;
    let parse = |j: serde_json::Value| PreprocessorConfig::parse(j.to_string().as_bytes(), "preprocessor_config.json").map(|p| p.pad_to).map_err(|e| e.to_string());
    let dpt = |extra: serde_json::Value| {
        let mut j = serde_json::json!({"image_processor_type": "DPTImageProcessor", "do_resize": false, "do_pad": true});
        j.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        parse(j)
    };
    assert_eq!(dpt(serde_json::json!({"size_divisor": 14})), Ok(Some(14)));
    assert_eq!(dpt(serde_json::json!({"size_divisor": 14, "do_pad": false})), Ok(None));
    let e = dpt(serde_json::json!({})).unwrap_err();
    assert!(e.contains("size_divisor") && e.contains("preprocessor_config.json"), "{e}");
    let e = dpt(serde_json::json!({"size_divisor": 0})).unwrap_err();
    assert!(e.contains("size_divisor"), "{e}");
    let e = parse(serde_json::json!({"image_processor_type": "ViTImageProcessor", "do_pad": true, "size_divisor": 14})).unwrap_err();
    assert!(e.contains("do_pad"), "{e}");
}
