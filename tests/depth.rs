//! Depth Anything's neck and depth head (`model::shared::dpt`) against `transformers`: random-weight
//! checkpoints (`scripts/make_depth_fixtures.py`: relative V1-style and metric V2-style heads,
//! neck widths not multiples of 4), fed the backbone's feature maps that transformers computed
//! for two photos of different aspect ratios (5x8 and 7x5 patch grids: odd maps through the
//! stride-2 reassemble convolution), on the GPU adapter and the CPU backend: `predicted_depth`
//! within 1e-4 of transformers'.

mod common;

use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tessera::model::shared::dpt::{self, DepthHead};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/depth").join(name)
}

/// Every tensor of a safetensors file (f32), by name.
fn tensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("a safetensors file");
    st.tensors()
        .into_iter()
        .map(|(n, t)| (n, (t.shape().to_vec(), t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())))
        .collect()
}

/// The depth of one case on one device, and transformers'.
fn run(name: &str, case: &str, device: &tessera::Device) -> (Vec<f32>, Vec<f32>, Vec<usize>) {
    let dir = fixture(name);
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let spec = DepthHead::from_config(&config, "config.json").expect("the neck's config");
    spec.check(4, "config.json").expect("a consistent neck");
    let model = tensors(&dir.join("model.safetensors"));
    let expected = tensors(&dir.join(format!("expected-{case}.safetensors")));
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
