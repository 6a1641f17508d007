//! Depth Anything's neck and depth head (`model::shared::dpt`) against `transformers`: random-weight
//! checkpoints (`scripts/make_depth_fixtures.py`: relative V1-style and metric V2-style heads,
//! neck widths not multiples of 4), fed the backbone's feature maps that transformers computed
//! for two photos of different aspect ratios (5x8 and 7x5 patch grids: odd maps through the
//! stride-2 reassemble convolution), on the GPU adapter and the CPU backend: `predicted_depth`
//! within 1e-4 of transformers'.

mod common;

use std::path::{Path, PathBuf};
use tessera::model::shared::dpt::{self, DepthHead};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/depth").join(name)
}

/// The depth of one case on one device, and transformers'.
fn run(name: &str, case: &str, device: &tessera::Device) -> (Vec<f32>, Vec<f32>, Vec<usize>) {
    let dir = fixture(name);
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let spec = DepthHead::from_config(&config, "config.json").expect("the neck's config");
    spec.check(4, "config.json").expect("a consistent neck");
    let model = common::tensors(&dir.join("model.safetensors"));
    let expected = common::tensors(&dir.join(format!("expected-{case}.safetensors")));
    let mut weights = tessera::Weights::new(device);
    let mut get = |n: &str, shape: &[usize]| -> tessera::Result<Vec<f32>> {
        let (s, d) = model.get(n).unwrap_or_else(|| panic!("{name}: no tensor {n}"));
        assert_eq!(s, shape, "{n}");
        Ok(d.clone())
    };
    dpt::load(&spec, 32, &mut get, &mut weights).expect("the neck's weights");
    let (px_shape, _) = &expected["pixel_values"];
    let (h, w) = (px_shape[2], px_shape[3]);
    let grid = (h / 14, w / 14);
    let mut g = tessera::Graph::new();
    let mut feeds = Vec::new();
    let mut ids = Vec::new();
    for i in 0..spec.out_indices.len() {
        let key = format!("feature.{i}");
        let (shape, data) = &expected[&key];
        ids.push(g.input(&key, shape));
        feeds.push((key, data.clone()));
    }
    let depth = dpt::build(&mut g, &spec, &ids, grid, 14).expect("the neck's graph");
    g.output(depth);
    let exe = pollster::block_on(tessera::Compiled::compile(device, &g, &weights, &Default::default())).expect("compile");
    let feeds: Vec<(&str, &[f32])> = feeds.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let out = pollster::block_on(exe.run(&feeds)).expect("run");
    let (want_shape, want) = &expected["predicted_depth"];
    (out[0].data.clone(), want.clone(), [out[0].shape.clone(), want_shape.clone()].concat())
}

#[test]
fn depth_anything_heads_match_transformers() {
    for (device, d) in common::devices() {
        for name in ["depth-anything-v1", "depth-anything-v2-metric"] {
            for case in ["chelsea", "portrait"] {
                let (got, want, shapes) = run(name, case, &d);
                assert_eq!(got.len(), want.len(), "{device} {name} {case}: shapes {shapes:?}");
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
                let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                eprintln!("{device} {name} {case}: max |tessera - transformers| {err:.2e} (depth up to {scale:.2})");
                assert!(err <= 1e-4, "{device} {name} {case}: predicted_depth differs by {err} (largest depth {scale})");
            }
        }
    }
}

/// The whole model from its checkpoint folder (the DINOv2 backbone under `backbone.`, its feature
/// maps through the final norm, the neck and head) on transformers' pixel values.
#[test]
fn depth_anything_checkpoints_match_transformers_end_to_end() {
    use tessera::model::{Checkpoint, Model, RunOptions};
    for (device, d) in common::devices() {
        for name in ["depth-anything-v1", "depth-anything-v2-metric"] {
            let ck = Checkpoint::from_dir(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let model = Model::load(&d, &ck).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(model.labels().is_empty(), "{name}: a depth model has no classes");
            for case in ["chelsea", "portrait"] {
                let expected = common::tensors(&fixture(name).join(format!("expected-{case}.safetensors")));
                let (dims, pixels) = &expected["pixel_values"];
                let out = model.run_blocking(pixels, [dims[0], dims[1], dims[2], dims[3]], RunOptions::default()).unwrap_or_else(|e| panic!("{name} {case}: {e}"));
                let depth = out.predicted_depth.unwrap_or_else(|| panic!("{name} {case} on {device}: no predicted_depth"));
                let (want_shape, want) = &expected["predicted_depth"];
                assert_eq!(&depth.shape, want_shape, "{name} {case} on {device}");
                let err = depth.data.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                eprintln!("{device} {name} {case} end to end: max |tessera - transformers| {err:.2e}");
                assert!(err <= 1e-4, "{name} {case} on {device}: predicted_depth differs by {err}");
            }
        }
    }
}

/// Hostile checkpoints: a neck whose widths do not match its weights, a head weight missing, a
/// backbone that is not DINOv2: refused naming the tensor or the field.
#[test]
fn bad_depth_checkpoints_are_refused_naming_the_problem() {
    let h = common::Hostile::new(fixture("depth-anything-v1"), "depth");
    // Neck widths that do not match the weights.
    let e = h.with("neck_hidden_sizes", serde_json::json!([6, 10, 12, 20]));
    assert!(e.contains("neck.reassemble_stage.layers.3.projection.weight"), "{e}");
    // Fewer widths than hidden states.
    let e = h.with("neck_hidden_sizes", serde_json::json!([6, 10, 12]));
    assert!(e.contains("neck_hidden_sizes") && e.contains("config.json"), "{e}");
    // A backbone that is not DINOv2.
    let mut c = h.config.clone();
    c["backbone_config"]["model_type"] = "bit".into();
    let e = h.with_config(&c);
    assert!(e.contains("backbone_config.model_type `bit`"), "{e}");
    // A missing head weight.
    let e = h.without("head.conv2.weight");
    assert!(e.contains("head.conv2.weight"), "{e}");
}

/// DPTImageProcessor's sizes (keep_aspect_ratio on and off, several targets and multiples, ties
/// of Python's half-to-even rounding) as transformers computes them.
#[test]
fn dpt_resize_sizes_are_transformers() {
    use tessera::model::shared::preprocess::multiple_size;
    let sizes: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("sizes.json")).unwrap()).unwrap();
    let n = |v: &serde_json::Value, i: usize| v[i].as_u64().unwrap() as usize;
    let mut checked = 0;
    for case in sizes.as_array().unwrap() {
        let (input, target, output) = (&case["input"], &case["target"], &case["output"]);
        // transformers gives 0 for an image under half a multiple (and then fails to resize);
        // tessera keeps one multiple there.
        if n(output, 0) == 0 || n(output, 1) == 0 {
            continue;
        }
        let got = multiple_size(n(input, 0), n(input, 1), (n(target, 0), n(target, 1)), case["keep_aspect_ratio"].as_bool().unwrap(), case["multiple"].as_u64().unwrap() as usize);
        assert_eq!(got, (n(output, 0), n(output, 1)), "{case}");
        checked += 1;
    }
    assert!(checked > 50, "only {checked} sizes checked");
}

/// The checkpoint's preprocessor_config.json (DPTImageProcessor) on the two photos: the pixel
/// values of transformers' PIL backend.
#[test]
fn dpt_preprocessing_matches_transformers_pil_backend() {
    use tessera::model::PreprocessorConfig;
    let json = std::fs::read(fixture("depth-anything-v1/preprocessor_config.json")).unwrap();
    let pre = PreprocessorConfig::parse(&json, "preprocessor_config.json").expect("DPTImageProcessor's config");
    let want = common::tensors(&fixture("preprocess.safetensors"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (case, file) in [("chelsea", root.join("photos/chelsea.png")), ("portrait", fixture("portrait-150x220.png"))] {
        let bytes = std::fs::read(&file).unwrap();
        let img = tessera::model::decode_image(&bytes, &file.display().to_string()).unwrap();
        let (px, h, w) = pre.apply(&img).unwrap();
        let (shape, data) = &want[&format!("pixel_values.{case}")];
        assert_eq!((h, w), (shape[2], shape[3]), "{case}: size");
        let err = px.iter().zip(data).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-5, "{case}: pixel values differ by {err}");
    }
}

/// `Model::depth` on the photos themselves: preprocessing, the model and the bicubic resize back
/// to the photo's size, against transformers' PIL backend and `post_process_depth_estimation`.
#[test]
fn model_depth_at_the_image_size_matches_transformers() {
    use tessera::model::{Checkpoint, Model};
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (device, d) in common::devices() {
        for name in ["depth-anything-v1", "depth-anything-v2-metric"] {
            let model = Model::load(&d, &Checkpoint::from_dir(&fixture(name)).unwrap()).unwrap();
            for (case, file) in [("chelsea", root.join("photos/chelsea.png")), ("portrait", fixture("portrait-150x220.png"))] {
                let img = tessera::model::decode_image(&std::fs::read(&file).unwrap(), "photo").unwrap();
                let got = model.depth_blocking(&img).unwrap_or_else(|e| panic!("{name} {case}: {e}"));
                let (shape, want) = &common::tensors(&fixture(name).join(format!("expected-{case}.safetensors")))["depth_at_input"];
                assert_eq!([got.height, got.width], [shape[0], shape[1]], "{name} {case}: the photo's size");
                let err = got.data.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                eprintln!("{device} {name} {case} at the photo's size: max |tessera - transformers| {err:.2e}");
                // predicted_depth's own 1e-4, through the bicubic resize (weights up to 1.3 in sum of magnitudes).
                assert!(err <= 2e-4, "{name} {case} on {device}: depth differs by {err}");
            }
        }
    }
    // A model without a depth head says so.
    let ck = Checkpoint::from_dir(&root.join("vit-classifier")).unwrap();
    let m = Model::load(tessera::Device::Cpu(common::cpu()), &ck).unwrap();
    let img = image::RgbImage::new(8, 8);
    assert!(m.depth_blocking(&img).unwrap_err().to_string().contains("no depth head"));
}
