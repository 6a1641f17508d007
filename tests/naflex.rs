//! SigLIP 2 NaFlex (tests/fixtures/siglip2, scripts/make_siglip2_fixtures.py: random weights,
//! `transformers` on CPU): every case (an image at a patch budget, grids from 1x16 to 36x4)
//! against transformers on both devices (the pooling head's attention map included), the preprocessing against `Siglip2ImageProcessor`, a
//! batch of mixed grids against each image alone, zero-shot, budgets and configs.

mod common;
use common::*;
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use tessera::{Checkpoint, LoadOptions, Model, RunOptions};

const ATOL: f32 = 1e-4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/siglip2")
}

fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .filter(|(_, t)| t.dtype() == safetensors::Dtype::F32)
        .map(|(n, t)| (n, t.shape().to_vec(), t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// (case, image path, budget, processed size (h, w), grid (rows, columns)) of a checkpoint.
fn cases(model: &str) -> Vec<(String, PathBuf, usize, (usize, usize), (usize, usize))> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(root().join(model).join("cases.json")).unwrap()).unwrap();
    let u = |x: &serde_json::Value| x.as_u64().unwrap() as usize;
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(c["image"].as_str().unwrap());
            (c["case"].as_str().unwrap().to_string(), p, u(&c["budget"]), (u(&c["size"][0]), u(&c["size"][1])), (u(&c["grid"][0]), u(&c["grid"][1])))
        })
        .collect()
}

fn pixels(case: &str) -> (Vec<usize>, Vec<f32>) {
    let t = tensors(&root().join("pixels").join(format!("{case}.safetensors")));
    let (_, shape, data) = t.into_iter().find(|(n, _, _)| n == "pixel_values").expect("pixel_values");
    (shape, data)
}

/// The output a fixture tensor is named after.
fn output_named(out: &tessera::model::ModelOutput, name: &str) -> Option<tessera::HostTensor> {
    match name {
        "last_hidden_state" => out.last_hidden_state.clone(),
        "pooler_output" => out.pooler_output.clone(),
        "image_embeds" => out.image_embeds.clone(),
        "logits" => out.logits.clone(),
        // What the pooling head attends to: the model's attention map.
        "pool_attention" => out.cls_attention.clone(),
        n => n.strip_prefix("hidden_state.").map(|i| out.hidden_states[i.parse::<usize>().unwrap()].clone()),
    }
}

#[test]
fn naflex_towers_match_transformers_at_every_grid() {
    let mut checked = 0;
    for model in ["siglip2-vision", "siglip2-classifier", "siglip2-model"] {
        let ck = Checkpoint::from_dir(&root().join(model)).unwrap();
        assert_eq!(format!("{:?}", ck.config.family), "Siglip2");
        for (device, d) in devices() {
            let m = Model::load(&d, &ck).unwrap_or_else(|e| panic!("{model} on {device}: {e}"));
            for (case, _, _, (h, w), (gh, gw)) in cases(model) {
                let (shape, px) = pixels(&case);
                assert_eq!(shape, [1, 3, h, w], "{case}");
                let out = m.run_blocking(&px, [1, 3, h, w], RunOptions { hidden_states: true, attention: true, ..Default::default() }).unwrap();
                assert_eq!(out.grid, (gh, gw), "{model} {case}: grid");
                let exp = tensors(&root().join(model).join(format!("expected-{case}.safetensors")));
                let label = format!("{model} {case} on {device}");
                for (name, eshape, want) in &exp {
                    let got = output_named(&out, name).unwrap_or_else(|| panic!("{label}: no {name}"));
                    assert_eq!(&got.shape, eshape, "{label} {name}");
                    assert_close(&format!("{label} {name}"), &got.data, want, ATOL, 0.0);
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 3 * 2 * 15, "checked {checked} cases");
}

/// The processor's sizes exactly (the same grid for every case, extreme aspect ratios and a
/// 20x13 image scaled up included), and its pixels: both resize with PIL's bilinear filter in
/// fixed point, passes in Pillow 13's order (the column's height shrinks most: vertical first),
/// so they agree to the f32 rounding of the rescale.
#[test]
fn naflex_preprocessing_matches_siglip2_image_processor() {
    let ck = Checkpoint::from_dir(&root().join("siglip2-vision")).unwrap();
    assert_eq!(ck.preprocessor.max_patches(), Some(64));
    for (case, image, budget, (h, w), _) in cases("siglip2-vision") {
        let img = tessera::model::decode_image(&std::fs::read(&image).unwrap(), &case).unwrap();
        let pre = ck.preprocessor.with_max_patches(budget).unwrap();
        assert_eq!(pre.output_size(img.height() as usize, img.width() as usize), (h, w), "{case}: size");
        let (got, gh, gw) = pre.apply(&img).unwrap();
        assert_eq!((gh, gw), (h, w), "{case}");
        let (_, want) = pixels(&case);
        assert_close(&format!("{case} pixels"), &got, &want, 1e-6, 0.0);
    }
}

/// Images of different aspect ratios in one call run as one batch per grid: the same embeddings
/// and classes as each image alone.
#[test]
fn a_batch_of_mixed_grids_equals_each_image_alone() {
    let names = ["chelsea.png", "strip-600x32.png", "column-30x300.png", "tiny-20x13.png"];
    let load = |n: &str| {
        let p = if n == "chelsea.png" { Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/photos").join(n) } else { root().join(n) };
        tessera::model::decode_image(&std::fs::read(&p).unwrap(), n).unwrap()
    };
    let imgs: Vec<image::RgbImage> = names.iter().map(|n| load(n)).collect();
    // The strip twice, so that one batch has two images of a grid.
    let batch: Vec<&image::RgbImage> = vec![&imgs[0], &imgs[1], &imgs[2], &imgs[1], &imgs[3]];
    for (device, d) in devices() {
        let m = Model::load(&d, &Checkpoint::from_dir(&root().join("siglip2-classifier")).unwrap()).unwrap();
        let together = pollster::block_on(m.embed(&batch)).unwrap();
        let classes = pollster::block_on(m.classify(&batch, 3)).unwrap();
        for (i, img) in batch.iter().enumerate() {
            let alone = pollster::block_on(m.embed(&[img])).unwrap().remove(0);
            assert_close(&format!("{device} image {i}"), &together[i], &alone, 1e-5, 0.0);
            let top = pollster::block_on(m.classify(&[img], 3)).unwrap().remove(0);
            assert_eq!(classes[i].iter().map(|t| t.index).collect::<Vec<_>>(), top.iter().map(|t| t.index).collect::<Vec<_>>(), "{device} image {i}");
        }
    }
}

/// A padded batch as transformers runs it: the processor's `pixel_values` (B, 64, 768) of four
/// images of different grids, with `spatial_shapes`, in one run (`Model::run_patches`: attention
/// and pooling skip each image's padding) against transformers on the same padded batch — the
/// whole last hidden state, padded rows included — on both devices; each image's valid tokens and
/// pooled output equal to the image run alone, unpadded (1e-5).
#[test]
fn a_padded_batch_of_mixed_grids_matches_transformers_and_each_image_alone() {
    let bytes = std::fs::read(root().join("pixels/padded-64.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let shapes = st.tensor("spatial_shapes").unwrap();
    let grids: Vec<(usize, usize)> = shapes.data().chunks_exact(16).map(|c| (i64::from_le_bytes(c[..8].try_into().unwrap()) as usize, i64::from_le_bytes(c[8..].try_into().unwrap()) as usize)).collect();
    let (_, pshape, patches) = tensors(&root().join("pixels/padded-64.safetensors")).into_iter().find(|t| t.0 == "pixel_values").unwrap();
    let (b, n, k) = (pshape[0], pshape[1], pshape[2]);
    assert!(grids.len() == 4 && grids.iter().collect::<std::collections::HashSet<_>>().len() >= 3, "three different grids: {grids:?}");
    assert!(grids.iter().any(|g| g.0 * g.1 < n), "some image is padded: {grids:?}");
    for model in ["siglip2-vision", "siglip2-classifier", "siglip2-model"] {
        let ck = Checkpoint::from_dir(&root().join(model)).unwrap();
        let exp = tensors(&root().join(model).join("expected-padded-64.safetensors"));
        for (device, d) in devices() {
            let m = Model::load(&d, &ck).unwrap();
            let out = pollster::block_on(m.run_patches(&patches, [b, n, k], &grids, RunOptions { attention: true, ..Default::default() })).unwrap();
            let label = format!("{model} padded batch on {device}");
            for (name, eshape, want) in &exp {
                let got = output_named(&out, name).unwrap_or_else(|| panic!("{label}: no {name}"));
                assert_eq!(&got.shape, eshape, "{label} {name}");
                assert_close(&format!("{label} {name}"), &got.data, want, ATOL, 0.0);
            }
            // Each image alone: its valid patches back into an image, run unpadded.
            let hidden = out.last_hidden_state.as_ref().unwrap();
            let dm = hidden.shape[2];
            for (i, &(gh, gw)) in grids.iter().enumerate() {
                let mut px = vec![0f32; 3 * gh * 16 * gw * 16];
                for (j, patch) in patches[i * n * k..].chunks(k).take(gh * gw).enumerate() {
                    let (r, c) = (j / gw, j % gw);
                    for (e, &v) in patch.iter().enumerate() {
                        let (ky, kx, ch) = (e / 48, e / 3 % 16, e % 3);
                        px[(ch * gh * 16 + r * 16 + ky) * gw * 16 + c * 16 + kx] = v;
                    }
                }
                let alone = m.run_blocking(&px, [1, 3, gh * 16, gw * 16], RunOptions::default()).unwrap();
                let t = gh * gw;
                assert_close(&format!("{label} image {i} tokens"), &hidden.data[i * n * dm..(i * n + t) * dm], &alone.last_hidden_state.unwrap().data, 1e-5, 0.0);
                if let (Some(p), Some(a)) = (&out.pooler_output, &alone.pooler_output) {
                    let w = p.shape[1];
                    assert_close(&format!("{label} image {i} pooled"), &p.data[i * w..(i + 1) * w], &a.data, 1e-5, 0.0);
                }
            }
        }
    }
    // A grid that does not fit its patches, and a model whose positions do not follow the grid.
    let m = Model::load(&tessera::Device::Cpu(cpu()), &Checkpoint::from_dir(&root().join("siglip2-vision")).unwrap()).unwrap();
    let e = pollster::block_on(m.run_patches(&patches, [b, n, k], &[(9, 9), grids[1], grids[2], grids[3]], RunOptions::default())).unwrap_err();
    assert!(e.to_string().contains("spatial_shapes") && e.to_string().contains("9 x 9"), "{e}");
    let fixed = Model::load(&tessera::Device::Cpu(cpu()), &Checkpoint::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/siglip/siglip-vision")).unwrap()).unwrap();
    let e = pollster::block_on(fixed.run_patches(&patches, [b, n, k], &grids, RunOptions::default())).unwrap_err();
    assert!(e.to_string().contains("NaFlex"), "{e}");
}

/// Siglip2Model: zero-shot logits (the checkpoint's own budget), their sigmoids and the text and
/// image embeddings of transformers, on both devices.
#[test]
fn naflex_zero_shot_matches_transformers() {
    let dir = root().join("siglip2-model");
    let zs: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("zero-shot.json")).unwrap()).unwrap();
    let exp: std::collections::HashMap<String, Vec<f32>> = tensors(&dir.join("zero-shot.safetensors")).into_iter().map(|(n, _, d)| (n, d)).collect();
    let labels: Vec<&str> = zs["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let template = zs["template"].as_str().unwrap();
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join(zs["image"].as_str().unwrap());
    let img = tessera::model::decode_image(&std::fs::read(&photo).unwrap(), "chelsea.png").unwrap();
    let unit = |v: &[f32], rows: usize| -> Vec<f32> { v.chunks(v.len() / rows).flat_map(tessera::model::unit_length).collect() };
    let ck = Checkpoint::from_dir(&dir).unwrap();
    for (device, d) in devices() {
        let clip = tessera::model::clip::Clip::load(&d, &ck).unwrap_or_else(|e| panic!("{device}: {e}"));
        assert!(clip.bias.is_some(), "SigLIP 2 scores with a sigmoid and a bias");
        let scores = pollster::block_on(clip.zero_shot(&img, &labels, template)).unwrap();
        for (i, label) in labels.iter().enumerate() {
            let got = scores.iter().find(|s| s.label == *label).unwrap();
            assert!((got.logit - exp["logits_per_image"][i]).abs() < 1e-4, "{device} {label}: logit {} against {}", got.logit, exp["logits_per_image"][i]);
            assert!((got.score - exp["probs"][i]).abs() < 1e-5, "{device} {label}: sigmoid");
        }
        let texts: Vec<String> = labels.iter().map(|l| template.replace("{}", l)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let te = pollster::block_on(clip.embed_texts(&refs)).unwrap().embeddings.concat();
        assert_close(&format!("text_embeds on {device}"), &te, &unit(&exp["text_embeds"], labels.len()), ATOL, 0.0);
        let ie = pollster::block_on(clip.vision.embed(&[&img])).unwrap().concat();
        assert_close(&format!("image_embeds on {device}"), &ie, &unit(&exp["image_embeds"], 1), ATOL, 0.0);
    }
}

/// Budgets: another budget at load changes the grid; 0 or past the limit, or a budget for a
/// model that resizes to a fixed size, is refused with the reason; a processor config without
/// `max_num_patches` takes Siglip2ImageProcessor's 256; extreme inputs are inputs.
#[test]
fn budgets_are_checked_and_extreme_shapes_run() {
    let ck = Checkpoint::from_dir(&root().join("siglip2-vision")).unwrap();
    let cpu = cpu();
    let m = Model::load_with(&cpu, &ck, LoadOptions { max_patches: Some(16), ..Default::default() }).unwrap();
    assert_eq!(m.preprocessor.max_patches(), Some(16));
    for bad in [0, 1 << 20] {
        let e = Model::load_with(&cpu, &ck, LoadOptions { max_patches: Some(bad), ..Default::default() }).err().expect("refused");
        assert!(e.kind() == "input" && e.to_string().contains("budget"), "{bad}: {e}");
    }
    let vit = Checkpoint::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit-classifier")).unwrap();
    let e = Model::load_with(&cpu, &vit, LoadOptions { max_patches: Some(64), ..Default::default() }).err().expect("not NaFlex");
    assert!(e.to_string().contains("NaFlex"), "{e}");
    // Without max_num_patches: the processor's default budget.
    let dir = root().join("siglip2-vision");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let mut pre: serde_json::Value = serde_json::from_slice(&read("preprocessor_config.json")).unwrap();
    pre.as_object_mut().unwrap().remove("max_num_patches");
    let ck2 = Checkpoint::from_bytes("no-budget", &read("config.json"), read("model.safetensors"), Some(pre.to_string().as_bytes())).unwrap();
    assert_eq!(ck2.preprocessor.max_patches(), Some(256));
    // Extreme shapes: a 1 x 16384 strip and a 3 x 2 dot run, at a grid within the budget.
    let m = Model::load(&cpu, &ck).unwrap();
    for (w, h) in [(16384u32, 1u32), (1, 16384), (3, 2)] {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([120, 30, 200]));
        let (oh, ow) = m.preprocessor.output_size(h as usize, w as usize);
        assert!((oh / 16) * (ow / 16) <= 64 && oh >= 16 && ow >= 16, "{w}x{h}: {ow}x{oh}");
        let e = pollster::block_on(m.embed(&[&img])).unwrap();
        assert_eq!(e[0].len(), 32);
    }
}

/// Configs as the hub writes them (SigLIP 2's defaults left out) get transformers' defaults; a
/// position count that is not a square grid is refused.
#[test]
fn siglip2_configs_get_transformers_defaults() {
    let json = br#"{"model_type": "siglip2_vision_model"}"#;
    let c = tessera::model::ModelConfig::parse(json, "config.json").unwrap();
    assert_eq!((c.hidden_size, c.num_layers, c.num_heads, c.intermediate_size, c.patch_size), (768, 12, 12, 3072, 16));
    assert_eq!(c.image_size, (256, 256), "16 x 16 positions of 16 pixels");
    let two = br#"{"model_type": "siglip2", "text_config": {}, "vision_config": {"num_patches": 1024, "hidden_size": 1152, "num_attention_heads": 16, "intermediate_size": 4304, "num_hidden_layers": 27}}"#;
    let c = tessera::model::ModelConfig::parse(two, "config.json").unwrap();
    assert_eq!((c.hidden_size, c.num_layers, c.image_size), (1152, 27, (512, 512)));
    let t = tessera::model::TextConfig::parse(two, "config.json").unwrap();
    assert_eq!(t.kind, tessera::model::text::TextKind::Siglip);
    let e = tessera::model::ModelConfig::parse(br#"{"model_type": "siglip2_vision_model", "num_patches": 200}"#, "config.json").unwrap_err();
    assert!(e.to_string().contains("square"), "{e}");
}

fn tessera(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The CLI: `run` on an already resized `pixel_values` runs its own grid (transformers'
/// `spatial_shapes`), `classify --max-patches` resizes each image under the budget, `info` tells
/// the grid an image size gets, and a bad budget is refused with the reason.
#[test]
fn the_cli_runs_any_grid_and_takes_a_budget() {
    let model = root().join("siglip2-model");
    let out = std::env::temp_dir().join(format!("tessera-naflex-run-{}.safetensors", std::process::id()));
    for case in ["strip-600x32-64", "column-30x300-16"] {
        let px = root().join("pixels").join(format!("{case}.safetensors"));
        let (ok, _, stderr) = tessera(&["run", "--device", "cpu", "--model", model.to_str().unwrap(), "--pixels", px.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert!(ok, "{stderr}");
        assert!(stderr.contains("image_embeds"), "{stderr}");
        let got: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> = tensors(&out).into_iter().map(|(n, s, d)| (n, (s, d))).collect();
        for (name, shape, want) in tensors(&model.join(format!("expected-{case}.safetensors"))) {
            if name.starts_with("hidden_state.") {
                continue;
            }
            let (gshape, g) = got.get(&name).unwrap_or_else(|| panic!("{case}: run wrote no {name}"));
            assert_eq!(gshape, &shape, "{case} {name}");
            assert_close(&format!("run {case} {name}"), g, &want, ATOL, 0.0);
        }
    }
    // The processor's padded batch of mixed grids (pixel_values [B, N, 768], spatial_shapes).
    let px = root().join("pixels/padded-64.safetensors");
    let (ok, _, stderr) = tessera(&["run", "--device", "cpu", "--model", model.to_str().unwrap(), "--pixels", px.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let got: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> = tensors(&out).into_iter().map(|(n, s, d)| (n, (s, d))).collect();
    for (name, shape, want) in tensors(&model.join("expected-padded-64.safetensors")) {
        if name == "pool_attention" {
            continue;
        }
        let (gshape, g) = got.get(&name).unwrap_or_else(|| panic!("padded: run wrote no {name}"));
        assert_eq!(gshape, &shape, "padded {name}");
        assert_close(&format!("run padded {name}"), g, &want, ATOL, 0.0);
    }
    std::fs::remove_file(&out).ok();

    // classify under a budget: transformers' logits for that case, softmaxed.
    let classifier = root().join("siglip2-classifier");
    let image = root().join("column-30x300.png");
    let (ok, stdout, stderr) = tessera(&["classify", "--device", "cpu", "--model", classifier.to_str().unwrap(), "--max-patches", "16", "--top", "1", image.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let exp = tensors(&classifier.join("expected-column-30x300-16.safetensors"));
    let logits = &exp.iter().find(|(n, _, _)| n == "logits").unwrap().2;
    let (best, _) = logits.iter().enumerate().fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
    let z: f32 = logits.iter().map(|v| (v - logits[best]).exp()).sum();
    let line = stdout.lines().find(|l| l.contains('%')).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains(&format!("LABEL_{best}")), "{line}");
    let pct: f32 = line.trim().split('%').next().unwrap().trim().parse().unwrap();
    assert!((pct - 100.0 / z).abs() < 0.01, "{line}: transformers gives {}%", 100.0 / z);

    // info: the grid of a 30x300 image at 16 patches is the processor's (cases.json).
    let (_, _, _, (h, w), (gh, gw)) = cases("siglip2-classifier").into_iter().find(|c| c.0 == "column-30x300-16").unwrap();
    let (ok, stdout, stderr) = tessera(&["info", "--device", "cpu", "--model", classifier.to_str().unwrap(), "--max-patches", "16", "--image-size", "30x300"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("resized to {w}x{h}, a grid of {gh} rows x {gw} columns, {} tokens", gh * gw)), "{stdout}");

    for (budget, why) in [("0", "out of range"), ("100000000", "out of range")] {
        let (ok, _, stderr) = tessera(&["classify", "--device", "cpu", "--model", classifier.to_str().unwrap(), "--max-patches", budget, image.to_str().unwrap()]);
        assert!(!ok && stderr.contains(why) && !stderr.contains("panicked"), "--max-patches {budget}: {stderr}");
    }
    let fixed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/siglip/siglip-vision");
    let (ok, _, stderr) = tessera(&["embed", "--device", "cpu", "--model", fixed.to_str().unwrap(), "--max-patches", "16", image.to_str().unwrap()]);
    assert!(!ok && stderr.contains("NaFlex"), "{stderr}");
}

/// `tessera sweep --max-patches`: one row per budget with the grid `Siglip2ImageProcessor` gives
/// the image size at that budget (cases.json), its tokens and timings, a chart with a bar per
/// budget; a budget out of range and a fixed-size checkpoint are refused before anything runs.
#[test]
fn the_sweep_runs_each_budget_at_its_grid() {
    let model = root().join("siglip2-vision");
    let chart = std::env::temp_dir().join(format!("tessera-naflex-sweep-{}.svg", std::process::id()));
    let args = ["sweep", "--device", "cpu", "--model", model.to_str().unwrap(), "--max-patches", "16,64,144", "--image-size", "30x300", "--batch", "2", "--latency-runs", "2", "--chart", chart.to_str().unwrap(), "--json"];
    let (ok, stdout, stderr) = tessera(&args);
    assert!(ok, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(doc["original_max_patches"], 64);
    let rows = doc["results"].as_array().unwrap();
    let want = cases("siglip2-vision");
    assert_eq!(rows.len(), 3);
    for (row, budget) in rows.iter().zip([16, 64, 144]) {
        let case = want.iter().find(|c| c.0 == format!("column-30x300-{budget}")).unwrap();
        let grid = (row["grid"][0].as_u64().unwrap() as usize, row["grid"][1].as_u64().unwrap() as usize);
        assert_eq!(row["max_patches"], budget);
        assert_eq!(grid, case.4, "budget {budget}: the processor's grid");
        assert_eq!(row["tokens"].as_u64().unwrap() as usize, grid.0 * grid.1, "budget {budget}: no class token, a token per patch");
        assert!(row["latency_ms"].as_f64().unwrap() > 0.0 && row["images_per_s"].as_f64().unwrap() > 0.0, "{row}");
    }
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert_eq!(svg.matches("<rect x=").count(), 1 + 3, "frame and a bar per budget");
    assert!(svg.contains("patch budget"), "{svg}");
    std::fs::remove_file(&chart).ok();

    let (ok, _, stderr) = tessera(&["sweep", "--device", "cpu", "--model", model.to_str().unwrap(), "--max-patches", "64,0", "--chart", chart.to_str().unwrap()]);
    assert!(!ok && stderr.contains("--max-patches 0") && stderr.contains("out of range"), "{stderr}");
    assert!(!chart.exists(), "refused before it ran");
    let fixed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/siglip/siglip-vision");
    let (ok, _, stderr) = tessera(&["sweep", "--device", "cpu", "--model", fixed.to_str().unwrap(), "--max-patches", "64"]);
    assert!(!ok && stderr.contains("NaFlex") && stderr.contains("--patch-sizes"), "{stderr}");
}

/// A grid past what the device holds is refused with the reason, not run out of memory: a GPU
/// with a 4 MiB budget takes the model and a 64-patch grid, and refuses the 16384-patch grid of a
/// 2048 x 2048 image with an out-of-memory error naming the budget; the smaller grid still runs
/// after it.
#[test]
fn a_grid_past_the_device_memory_is_refused() {
    let mut opts = tessera::GpuOptions::from_env().unwrap();
    opts.memory_budget = Some(4 << 20);
    let gpu = tessera::Gpu::new_blocking(&opts).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
    let ck = Checkpoint::from_dir(&root().join("siglip2-vision")).unwrap();
    let img = image::RgbImage::from_pixel(2048, 2048, image::Rgb([90, 160, 30]));
    let small = Model::load(&tessera::Device::Gpu(gpu.clone()), &ck).unwrap();
    assert_eq!(pollster::block_on(small.embed(&[&img])).unwrap()[0].len(), 32);
    let big = Model::load_with(&tessera::Device::Gpu(gpu.clone()), &ck, LoadOptions { max_patches: Some(16384), ..Default::default() }).unwrap();
    let e = pollster::block_on(big.embed(&[&img])).unwrap_err();
    assert_eq!(e.kind(), "out_of_memory", "{e}");
    assert!(e.to_string().contains("budget"), "{e}");
    assert_eq!(pollster::block_on(small.embed(&[&img])).unwrap()[0].len(), 32);
}
