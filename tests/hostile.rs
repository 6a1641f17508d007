//! The committed corpus of hostile inputs (tests/fixtures/hostile, written by
//! scripts/make_hostile.py): each case replaces one file of a test checkpoint or is an image for
//! it (classified by the base model, or by one with the case's `preprocessor` config), and must
//! fail with the manifest's error kind and a message naming the problem (or, for the valid
//! oddities, succeed). A case with a `base` replaces a file of that checkpoint instead (the
//! quantized cases: truncated packed words, scales of the wrong shape, NaN or zero scales, bit
//! widths and group sizes that do not match the data, schemes tessera does not read). The browser tests run the same manifest through the wasm API.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use tessera::{Checkpoint, Model};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_hostile_input_gets_its_error_kind() {
    for (name, device) in devices() {
        eprintln!("-- on {name}");
        hostile_on(&device);
    }
}

fn hostile_on(gpu: &tessera::Device) {
    let dir = root().join("tests/fixtures/hostile");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let base = root().join(manifest["base"].as_str().unwrap());
    let read = |p: &Path| std::fs::read(p).unwrap();
    let (config, weights, pre) = (read(&base.join("config.json")), read(&base.join("model.safetensors")), read(&base.join("preprocessor_config.json")));
    let model = Model::load(gpu, &Checkpoint::from_bytes("hostile", &config, weights.clone(), Some(&pre)).unwrap()).unwrap();
    let cases = manifest["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "the corpus lost cases");
    let mut report = Vec::new();
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let (kind, needle) = (case["kind"].as_str().unwrap(), case["needle"].as_str().unwrap());
        let bytes = read(&dir.join(file));
        let result: Result<(), tessera::Error> = match case["role"].as_str().unwrap() {
            // An image, classified by the base model or by one loaded with the case's
            // preprocessor config.
            "image" => tessera::model::decode_image(&bytes, file).and_then(|img| match case["preprocessor"].as_str() {
                None => pollster::block_on(model.classify(&[&img], 1)).map(|_| ()),
                Some(p) => {
                    let ck = Checkpoint::from_bytes("hostile", &config, weights.clone(), Some(&read(&dir.join(p))))?;
                    pollster::block_on(Model::load(gpu, &ck)?.classify(&[&img], 1)).map(|_| ())
                }
            }),
            role => {
                // A case may replace a file of another checkpoint (the quantized cases).
                let own = case["base"].as_str().map(|b| {
                    let b = root().join(b);
                    (read(&b.join("config.json")), read(&b.join("model.safetensors")), read(&b.join("preprocessor_config.json")))
                });
                let (config, weights, pre) = own.as_ref().map(|(c, w, p)| (c, w, p)).unwrap_or((&config, &weights, &pre));
                let (c, w, p) = match role {
                    "weights" => (config.clone(), bytes, pre.clone()),
                    "config" => (bytes, weights.clone(), pre.clone()),
                    "preprocessor" => (config.clone(), weights.clone(), bytes),
                    other => panic!("{file}: unknown role {other}"),
                };
                Checkpoint::from_bytes("hostile", &c, w, Some(&p)).and_then(|ck| Model::load(gpu, &ck).map(|_| ()))
            }
        };
        match (kind, result) {
            ("ok", Ok(())) => report.push(format!("{file}: ok")),
            ("ok", Err(e)) => panic!("{file} should be accepted, got: {e}"),
            (_, Ok(())) => panic!("{file} was accepted; expected a `{kind}` error"),
            (_, Err(e)) => {
                let msg = e.to_string();
                assert_eq!(e.kind(), kind, "{file}: {msg}");
                assert!(msg.contains(needle), "{file}: `{needle}` not in: {msg}");
                report.push(format!("{file}: [{}] {msg}", e.kind()));
            }
        }
    }
    assert!(gpu.gpu().is_none_or(|g| !g.is_lost()));
    eprintln!("{}", report.join("\n"));
}
