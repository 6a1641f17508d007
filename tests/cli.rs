//! The `tessera` binary end to end: `run` against transformers' outputs, the embedded model
//! against PyTorch's predictions, the hub download from a local server, and clear errors.

use safetensors::SafeTensors;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tessera(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tessera"));
    c.args(args).current_dir(root());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run tessera")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "tessera failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails_with(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn read_tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
        .collect()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Both devices: the CPU backend and the machine's wgpu adapter (lavapipe where there is no GPU).
const DEVICES: [&str; 2] = ["cpu", "gpu"];

#[test]
fn run_matches_transformers_outputs() {
    for (device, fixture) in DEVICES.iter().flat_map(|d| ["vit-classifier", "deit-distilled-bf16", "dinov2-classifier", "vit-base-nobias-f16"].map(|f| (*d, f))) {
        let dir = root().join("tests/fixtures").join(fixture);
        let out_file = tmp(&format!("{fixture}-{device}")).join("out.safetensors");
        let out = tessera(
            &["run", "--device", device, "--model", dir.to_str().unwrap(), "--pixels", dir.join("expected.safetensors").to_str().unwrap(), "--out", out_file.to_str().unwrap()],
            &[],
        );
        ok(&out);
        let got = read_tensors(&out_file);
        let want = read_tensors(&dir.join("expected.safetensors"));
        for name in ["logits", "last_hidden_state", "pooler_output"] {
            let w = want.iter().find(|(n, _)| n == name);
            let g = got.iter().find(|(n, _)| n == name);
            match (w, g) {
                (Some((_, w)), Some((_, g))) => {
                    if let Err(e) = tessera::reference::compare(&format!("{device}: {fixture} {name}"), g, w, 1e-4, 0.0) {
                        panic!("{e}");
                    }
                }
                (None, None) => {}
                _ => panic!("{fixture}: `{name}` present in one output only"),
            }
        }
    }
}

fn sample_images() -> Vec<(usize, PathBuf)> {
    let dir = root().join("models/fashion-vit/samples");
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_str().unwrap()[..4].parse().unwrap(), p))
        .collect();
    v.sort();
    assert_eq!(v.len(), 10, "one sample per class");
    v
}

#[test]
fn classify_with_the_embedded_model_agrees_with_pytorch() {
    let reference = tessera::model::embedded::reference_predictions().expect("reference.json");
    let labels: Vec<String> = serde_json::from_slice::<serde_json::Value>(&std::fs::read(root().join("models/fashion-vit/config.json")).unwrap())
        .unwrap()["id2label"]
        .as_object()
        .map(|m| (0..m.len()).map(|i| m[&i.to_string()].as_str().unwrap().to_string()).collect())
        .unwrap();
    let samples = sample_images();
    let mut args = vec!["classify", "--json", "--top", "3", "--batch", "4"];
    let paths: Vec<String> = samples.iter().map(|(_, p)| p.display().to_string()).collect();
    args.extend(paths.iter().map(|s| s.as_str()));
    let doc: serde_json::Value = serde_json::from_str(&ok(&tessera(&args, &[]))).unwrap();
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), samples.len());
    for ((idx, path), r) in samples.iter().zip(results) {
        assert_eq!(r["image"].as_str().unwrap(), path.display().to_string());
        let top = r["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let top1 = top[0]["index"].as_u64().unwrap() as usize;
        assert_eq!(top1, reference[*idx] as usize, "{}: PyTorch predicted {}", path.display(), labels[reference[*idx] as usize]);
        assert_eq!(top[0]["label"].as_str().unwrap(), labels[top1]);
        let s: Vec<f64> = top.iter().map(|t| t["score"].as_f64().unwrap()).collect();
        assert!(s[0] >= s[1] && s[1] >= s[2] && s[0] <= 1.0 && s[2] >= 0.0);
    }
    // A folder works too, with the text output, and nothing on stderr (no display-server noise
    // on a headless machine).
    let out = tessera(&["classify", "models/fashion-vit/samples", "--top", "1"], &[]);
    let text = ok(&out);
    assert_eq!(text.lines().filter(|l| l.starts_with("  ")).count(), 10);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "a successful run prints nothing on stderr");
}

#[test]
fn eval_subset_agrees_with_pytorch_predictions() {
    if !Path::new("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").exists() {
        panic!("Fashion-MNIST is missing: apt-get install dataset-fashion-mnist");
    }
    let theirs = tessera::model::embedded::reference_predictions().unwrap();
    for device in DEVICES {
        let doc: serde_json::Value =
            serde_json::from_str(&ok(&tessera(&["eval", "--device", device, "--limit", "1000", "--batch", "250", "--json"], &[]))).unwrap();
        let ours: Vec<u8> = doc["predictions"].as_str().unwrap().bytes().map(|b| b - b'0').collect();
        assert_eq!(ours.len(), 1000);
        let agree = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
        eprintln!("{device}: agreement with PyTorch on 1000 test images: {agree}/1000, accuracy {}", doc["accuracy"]);
        // f32 on a different device: only near-ties may flip.
        assert!(agree >= 997, "{device}: only {agree}/1000 predictions agree with PyTorch");
    }

    // f16 storage (GPU adapters with shader-f16): rounding may flip a few more near-ties.
    let doc: serde_json::Value =
        serde_json::from_str(&ok(&tessera(&["eval", "--device", "gpu", "--f16", "--limit", "500", "--batch", "250", "--json"], &[]))).unwrap();
    let ours: Vec<u8> = doc["predictions"].as_str().unwrap().bytes().map(|b| b - b'0').collect();
    let agree = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
    eprintln!("f16 storage: agreement with PyTorch on 500 test images: {agree}/500, accuracy {}", doc["accuracy"]);
    assert!(agree >= 495, "f16: only {agree}/500 predictions agree with PyTorch");
}

#[test]
fn embed_and_attention_outputs() {
    let (_, sample) = &sample_images()[0];
    let lines = ok(&tessera(&["embed", sample.to_str().unwrap(), "--pool", "cls"], &[]));
    let v: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(v["embedding"].as_array().unwrap().len(), 64);
    let heat = tmp("attention").join("heat.png");
    ok(&tessera(&["attention", sample.to_str().unwrap(), "--out", heat.to_str().unwrap()], &[]));
    let img = image::open(&heat).unwrap();
    // 28x28 input, enlarged 10x for readability.
    assert_eq!((img.width(), img.height()), (280, 280));
}

#[test]
fn short_soak_shows_no_memory_growth() {
    let out = ok(&tessera(&["soak", "--runs", "200", "--reloads", "10", "--max-growth-mib", "16"], &[]));
    assert!(out.contains("200 runs") && out.contains("10 loads and drops"), "{out}");
}

/// Images are prepared on worker threads ahead of the GPU: results still come in the order given,
/// each image's own, and a bad file stops the run there with nothing printed.
#[test]
fn many_images_keep_their_order_and_a_bad_one_stops_the_run() {
    let reference = tessera::model::embedded::reference_predictions().expect("reference.json");
    let samples = sample_images();
    // 60 images: the samples in a scrambled repeating order, and two photos of other sizes.
    let mut paths: Vec<(Option<usize>, String)> = (0..58).map(|i| samples[(i * 7) % 10].clone()).map(|(c, p)| (Some(c), p.display().to_string())).collect();
    paths.insert(20, (None, "tests/fixtures/photos/chelsea.png".into()));
    paths.insert(41, (None, "tests/fixtures/photos/coffee-crop.png".into()));
    let mut args = vec!["classify", "--json", "--top", "1", "--batch", "4"];
    args.extend(paths.iter().map(|(_, p)| p.as_str()));
    let doc: serde_json::Value = serde_json::from_str(&ok(&tessera(&args, &[]))).unwrap();
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), paths.len());
    for ((class, path), r) in paths.iter().zip(results) {
        assert_eq!(r["image"].as_str().unwrap(), path);
        if let Some(c) = class {
            assert_eq!(r["top"][0]["index"].as_u64().unwrap(), reference[*c] as u64, "{path}");
        }
    }
    // A broken file at position 33: the error names it, exit 1, no output.
    let bad = tmp("order").join("broken.png");
    std::fs::write(&bad, b"\x89PNG not really").unwrap();
    let bad = bad.display().to_string();
    let mut args = vec!["classify", "--json", "--batch", "4"];
    args.extend(paths.iter().take(33).map(|(_, p)| p.as_str()));
    args.push(&bad);
    args.extend(paths.iter().skip(33).map(|(_, p)| p.as_str()));
    let out = tessera(&args, &[]);
    fails_with(&out, &["broken.png"]);
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    fails_with(&tessera(&["classify", "Cargo.toml"], &[]), &["Cargo.toml", "not an image"]);
    fails_with(&tessera(&["classify", "--model", "no/such-dir-xyz", "x.png"], &[("HF_ENDPOINT", "http://127.0.0.1:9"), ("HF_HOME", tmp("nohub").to_str().unwrap())]), &["no/such-dir-xyz"]);
    fails_with(&tessera(&["classify", "--model", "./missing-folder", "x.png"], &[]), &["missing-folder", "no such checkpoint folder"]);

    // A truncated weights file.
    let dir = tmp("truncated");
    let src = root().join("tests/fixtures/vit-classifier");
    for f in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let w = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &w[..w.len() - 100]).unwrap();
    let sample = sample_images()[0].1.display().to_string();
    fails_with(&tessera(&["classify", "--model", dir.to_str().unwrap(), &sample], &[]), &["model.safetensors", "truncated"]);

    // An unknown model type.
    std::fs::write(dir.join("model.safetensors"), &w).unwrap();
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap().replace("\"model_type\": \"vit\"", "\"model_type\": \"swin\"");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    fails_with(&tessera(&["classify", "--model", dir.to_str().unwrap(), &sample], &[]), &["config.json", "swin"]);

    // A config that contradicts the weights.
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap().replace("\"intermediate_size\": 64", "\"intermediate_size\": 65");
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    fails_with(&tessera(&["classify", "--model", dir.to_str().unwrap(), &sample], &[]), &["intermediate.dense.weight", "shape"]);

    // A memory budget too small for the model, and one that is not a size.
    fails_with(&tessera(&["classify", &sample], &[("TESSERA_MEMORY_BUDGET", "64KiB")]), &["fashion-vit", "budget", "TESSERA_MEMORY_BUDGET"]);
    fails_with(&tessera(&["classify", &sample], &[("TESSERA_MEMORY_BUDGET", "lots")]), &["TESSERA_MEMORY_BUDGET", "not a size"]);

    // Forced kernels: an unknown name lists the valid ones; bench sizes must be positive.
    fails_with(&tessera(&["classify", &sample], &[("TESSERA_GEMM_TILE", "lage")]), &["TESSERA_GEMM_TILE", "`lage`", "128x128-unrolled"]);
    fails_with(&tessera(&["classify", &sample], &[("TESSERA_ATTENTION_KERNEL", "tiled")]), &["TESSERA_ATTENTION_KERNEL", "tiled-32x32"]);
    fails_with(&tessera(&["bench", "--batch", "0"], &[]), &["--batch 0"]);
    fails_with(&tessera(&["bench", "--gemm", "0x16x16"], &[]), &["--gemm 0x16x16", "positive"]);

    // pixel_values of the wrong channel count.
    fails_with(
        &tessera(&["run", "--pixels", "tests/fixtures/photos/expected.safetensors", "--out", "/tmp/never.safetensors"], &[]),
        &["expected.safetensors"],
    );
}

/// Serves `files` (repo id -> folder) in the hub's URL layout: /{repo}/resolve/main/{file}, with
/// the ETag, X-Repo-Commit and Range support the hub client needs. Answers a bounded number of
/// requests.
fn hub_server(repo: &'static str, folder: PathBuf) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut range: Option<(usize, Option<usize>)> = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(r) = lower.strip_prefix("range: bytes=") {
                    let (a, b) = r.trim().split_once('-').unwrap_or(("0", ""));
                    range = Some((a.parse().unwrap_or(0), b.parse().ok()));
                }
            }
            let prefix = format!("/{repo}/resolve/main/");
            let file = path.strip_prefix(&prefix).map(|f| folder.join(f)).filter(|p| p.is_file());
            let response = match file {
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                Some(p) => {
                    let mut data = Vec::new();
                    std::fs::File::open(&p).unwrap().read_to_end(&mut data).unwrap();
                    let etag = format!("{:016x}", data.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3)));
                    let (status, body, extra) = match range {
                        Some((a, b)) => {
                            let end = b.unwrap_or(data.len() - 1).min(data.len() - 1);
                            (
                                "206 Partial Content",
                                data[a..=end].to_vec(),
                                format!("Content-Range: bytes {a}-{end}/{}\r\n", data.len()),
                            )
                        }
                        None => ("200 OK", data.clone(), String::new()),
                    };
                    let mut r = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: \"{etag}\"\r\nX-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\nAccept-Ranges: bytes\r\n{extra}Connection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend(body);
                    r
                }
            };
            let _ = stream.write_all(&response);
        }
    });
    (addr, handle)
}

#[test]
fn hub_id_downloads_into_the_cache_and_works_offline() {
    let home = tmp("hfhome");
    let (endpoint, _server) = hub_server("tessera-test/vit-classifier", root().join("tests/fixtures/vit-classifier"));
    let photo = root().join("tests/fixtures/photos/chelsea.png");
    let env = [("HF_ENDPOINT", endpoint.as_str()), ("HF_HOME", home.to_str().unwrap())];
    let first = ok(&tessera(&["classify", "--model", "tessera-test/vit-classifier", photo.to_str().unwrap(), "--json"], &env));
    let snapshot = home.join("hub/models--tessera-test--vit-classifier/snapshots");
    assert!(snapshot.exists(), "nothing cached under {}", snapshot.display());
    // The server is not asked again: an unreachable endpoint still works from the cache.
    let offline = [("HF_ENDPOINT", "http://127.0.0.1:9"), ("HF_HOME", home.to_str().unwrap())];
    let second = ok(&tessera(&["classify", "--model", "tessera-test/vit-classifier", photo.to_str().unwrap(), "--json"], &offline));
    let strip = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()["results"].clone();
    assert_eq!(strip(&first), strip(&second));
    // HF_HUB_OFFLINE: the cache alone, the server never asked (it answers a bounded number of
    // requests and would show a download in the cache).
    let cache_only = [("HF_ENDPOINT", endpoint.as_str()), ("HF_HOME", home.to_str().unwrap()), ("HF_HUB_OFFLINE", "1")];
    let third = ok(&tessera(&["classify", "--model", "tessera-test/vit-classifier", photo.to_str().unwrap(), "--json"], &cache_only));
    assert_eq!(strip(&first), strip(&third));
    let out = tessera(&["classify", "--model", "tessera-test/other", photo.to_str().unwrap()], &cache_only);
    fails_with(&out, &["tessera-test/other", "config.json", "not in the Hugging Face cache", "HF_HUB_OFFLINE"]);
    assert!(!home.join("hub/models--tessera-test--other").exists(), "HF_HUB_OFFLINE must not download");
    // A repo the server does not have: what failed, said once.
    let out = tessera(&["classify", "--model", "tessera-test/missing", photo.to_str().unwrap()], &env);
    fails_with(&out, &["tessera-test/missing", "cannot download config.json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.matches("resolve/main/config.json").count() <= 1, "the URL repeated: {err}");
    // An unreachable endpoint: the resolver's words once.
    let out = tessera(&["classify", "--model", "tessera-test/away", photo.to_str().unwrap()], &[("HF_ENDPOINT", "http://127.0.0.1:9"), ("HF_HOME", home.to_str().unwrap())]);
    fails_with(&out, &["tessera-test/away", "cannot download config.json from http://127.0.0.1:9"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Starts `tessera` on 3,000 images, presses Ctrl-C (SIGINT) once it is running, and returns
/// what it printed.
#[cfg(unix)]
fn interrupted_run(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    child.wait_with_output().unwrap()
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_a_batch_run_without_writing_output() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tmp("ctrl-c");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (label, path) in sample_images() {
        for i in 0..300 {
            std::os::unix::fs::symlink(&path, images.join(format!("{i:03}-{label}.png"))).unwrap();
        }
    }
    let images = images.to_str().unwrap();
    let out_file = dir.join("embeddings.safetensors");
    for (args, what) in [
        (vec!["classify", images, "--json"], "classify --json"),
        (vec!["embed", images, "--out", out_file.to_str().unwrap()], "embed --out"),
    ] {
        let out = interrupted_run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{what}: status {:?} (signal {:?}); stderr: {err}", out.status, out.status.signal());
        assert!(err.contains("interrupted after") && err.contains("of 3000 images"), "{what}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(out.stdout.is_empty(), "{what} printed output for an unfinished run: {}", String::from_utf8_lossy(&out.stdout));
    }
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("images")], "files left by an interrupted run");
}

#[test]
fn bench_model_writes_latency_memory_and_profile_json() {
    for device in DEVICES {
        let dir = tmp(&format!("bench-{device}"));
        let json = dir.join("bench.json");
        ok(&tessera(&["bench", "--device", device, "--model", "default", "--batch", "1,4", "--iters", "2", "--json", json.to_str().unwrap()], &[]));
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(doc["device"], device, "{doc}");
        let results = doc["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "{doc}");
        for r in results {
            let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("no {k}: {r}"));
            assert!(f("p50_ms") > 0.0 && f("p90_ms") >= f("p50_ms") && f("images_per_s") > 0.0, "{r}");
            assert!(f("weight_bytes") > 500_000.0, "{r}");
            let (arena, peak) = (f("arena_bytes"), f("peak_live_bytes"));
            assert!(arena >= peak && arena <= 1.2 * peak, "arena {arena} vs peak live {peak}");
            assert!(f("device_memory_bytes") >= f("weight_bytes") + arena, "{r}");
        }
        // The CPU backend always times its ops; an adapter where it has timestamp queries.
        if device == "cpu" {
            assert!(!doc["profile"].is_null(), "no per-op profile on the CPU backend: {doc}");
        }
        if !doc["profile"].is_null() {
            let ops = doc["profile"]["ops"].as_array().unwrap();
            assert!(ops.iter().any(|o| o["kind"] == "matmul") && ops.iter().any(|o| o["kind"] == "attention"), "{doc}");
            let total: f64 = ops.iter().map(|o| o["ms"].as_f64().unwrap()).sum();
            assert!(total > 0.0 && (total - doc["profile"]["total_ms"].as_f64().unwrap()).abs() < 1e-6 * total.max(1.0));
        }
    }
}

// ---- the patch size dial (PI-resize) ----

/// `eval --patch-size P` reproduces PyTorch's predictions of the embedded model at every patch
/// size it was trained for (scripts/train_flexi.py measured them with the kernel PI-resized by
/// scripts/flexi.py).
#[test]
fn eval_at_each_patch_size_agrees_with_pytorch() {
    let sizes = tessera::model::embedded::reference_patch_sizes();
    assert_eq!(sizes, vec![2, 4, 7, 14], "reference.json lacks PyTorch's results per patch size");
    for (device, p, n) in [("cpu", 2, 1000), ("cpu", 4, 1000), ("cpu", 7, 1000), ("cpu", 14, 1000), ("gpu", 7, 300), ("gpu", 2, 100)] {
        let theirs = tessera::model::embedded::reference_predictions_at(p).unwrap();
        let (ps, ns) = (p.to_string(), n.to_string());
        let out = tessera(&["eval", "--device", device, "--patch-size", &ps, "--limit", &ns, "--batch", "100", "--json"], &[]);
        let doc: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
        assert_eq!(doc["patch_size"].as_u64(), Some(p as u64));
        assert_eq!(doc["original_patch_size"].as_u64(), Some(4));
        let ours: Vec<u8> = doc["predictions"].as_str().unwrap().bytes().map(|b| b - b'0').collect();
        assert_eq!(ours.len(), n);
        let agree = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
        eprintln!("{device} at patch {p}: {agree}/{n} agree with PyTorch, accuracy {}", doc["accuracy"]);
        assert!(agree * 1000 >= n * 997, "{device} at patch {p}: only {agree}/{n} predictions agree with PyTorch");
        if p != 4 {
            assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("at patch size {p} (its own is 4)")));
        }
    }
}

#[test]
fn sweep_prints_a_row_per_patch_size_and_draws_the_chart() {
    let dir = tmp("sweep");
    let chart = dir.join("sweep.svg");
    let out = tessera(
        &["sweep", "--device", "cpu", "--limit", "300", "--batch", "100", "--latency-runs", "2", "--chart", chart.to_str().unwrap(), "--json"],
        &[],
    );
    let doc: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let rows = doc["results"].as_array().unwrap();
    let sizes: Vec<u64> = rows.iter().map(|r| r["patch_size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, vec![2, 4, 7, 14]);
    let tokens: Vec<u64> = rows.iter().map(|r| r["tokens"].as_u64().unwrap()).collect();
    assert_eq!(tokens, vec![197, 50, 17, 5]);
    for r in rows {
        let acc = r["accuracy"].as_f64().unwrap();
        assert!(acc > 0.1 && acc <= 1.0, "{r}");
        assert!(r["images_per_s"].as_f64().unwrap() > 0.0 && r["latency_ms"].as_f64().unwrap() > 0.0);
    }
    // The accuracy is the eval's on the same images.
    let ev: serde_json::Value =
        serde_json::from_str(&ok(&tessera(&["eval", "--device", "cpu", "--patch-size", "7", "--limit", "300", "--json"], &[]))).unwrap();
    assert_eq!(rows[2]["accuracy"].as_f64(), ev["accuracy"].as_f64());
    let svg = std::fs::read_to_string(&chart).unwrap();
    for p in [2, 4, 7, 14] {
        assert!(svg.contains(&format!(">P={p} (")), "chart lacks patch {p}");
    }
    // A patch size the checkpoint cannot take is refused before anything runs.
    fails_with(&tessera(&["sweep", "--device", "cpu", "--patch-sizes", "4,29"], &[]), &["patch size 29", "larger than the checkpoint's 28x28 image"]);
}

#[test]
fn info_classify_and_attention_at_another_patch_size() {
    let text = ok(&tessera(&["info", "--device", "cpu", "--patch-size", "7"], &[]));
    assert!(text.contains("patch size: 7 (PI-resized from the checkpoint's 4)") && text.contains("a 4x4 grid, 17 tokens"), "{text}");
    let (_, sample) = &sample_images()[3];
    let s = sample.to_str().unwrap();
    let doc: serde_json::Value = serde_json::from_str(&ok(&tessera(&["classify", "--device", "cpu", "--json", "--patch-size", "2", s], &[]))).unwrap();
    assert_eq!(doc["patch_size"].as_u64(), Some(2));
    assert_eq!(doc["original_patch_size"].as_u64(), Some(4));
    // The attention map follows the patch grid: 14x14 patches at patch 2, 2x2 at patch 14.
    let dir = tmp("flexi-attention");
    for p in ["2", "14"] {
        let png = dir.join(format!("att{p}.png"));
        ok(&tessera(&["attention", "--device", "cpu", "--patch-size", p, s, "--out", png.to_str().unwrap()], &[]));
        assert!(png.exists());
    }
    let a = image::open(dir.join("att2.png")).unwrap().to_rgb8();
    let b = image::open(dir.join("att14.png")).unwrap().to_rgb8();
    assert_ne!(a.as_raw(), b.as_raw(), "the overlay changes with the patch grid");
    fails_with(&tessera(&["classify", "--device", "cpu", "--patch-size", "0", s], &[]), &["patch size 0"]);
    fails_with(&tessera(&["bench", "--device", "cpu", "--patch-size", "2"], &[]), &["--patch-size applies to a model benchmark"]);
}

/// `tessera quantize` on the embedded model: a complete checkpoint folder, its sizes and fidelity
/// printed, that loads like any other and classifies the samples as the float model does;
/// arguments and inputs it cannot take are refused with a message.
#[test]
fn quantize_writes_a_checkpoint_that_classifies_like_the_original() {
    let samples = root().join("models/fashion-vit/samples");
    for (bits, group) in [("8", None), ("4", Some("32"))] {
        let out = tmp(&format!("quant-{bits}"));
        let dir = out.join("ck");
        let mut args = vec!["--device", "cpu", "quantize", "--model", "embedded", "--bits", bits, "--out", dir.to_str().unwrap()];
        if let Some(g) = group {
            args.extend(["--group-size", g]);
        }
        let text = ok(&tessera(&args, &[]));
        for needle in ["compressed-tensors pack-quantized", "model.safetensors:", "MB ->", "embedding cosine mean", "top-1 the same on"] {
            assert!(text.contains(needle), "`{needle}` not in:\n{text}");
        }
        for f in ["config.json", "model.safetensors", "preprocessor_config.json"] {
            assert!(dir.join(f).is_file(), "{f} not written");
        }
        let ratio = std::fs::metadata(dir.join("model.safetensors")).unwrap().len() as f64 / std::fs::metadata(root().join("models/fashion-vit/model.safetensors")).unwrap().len() as f64;
        assert!(ratio < if bits == "8" { 0.4 } else { 0.3 }, "int{bits}: {ratio}");
        let config: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"], bits.parse::<u32>().unwrap());
        // The same top-1 as the float model on the bundled samples, on both devices.
        for device in DEVICES {
            let top = |model: Option<&str>| -> Vec<String> {
                let mut a = vec!["--device", device, "classify", "--json", "--top", "1"];
                if let Some(m) = model {
                    a.extend(["--model", m]);
                }
                let s = samples.to_str().unwrap();
                a.push(s);
                let v: serde_json::Value = serde_json::from_str(&ok(&tessera(&a, &[]))).unwrap();
                v["results"].as_array().unwrap().iter().map(|r| r["top"][0]["label"].as_str().unwrap().to_string()).collect()
            };
            let (float, quant) = (top(None), top(Some(dir.to_str().unwrap())));
            let same = float.iter().zip(&quant).filter(|(a, b)| a == b).count();
            assert!(float.len() >= 10 && same * 10 >= float.len() * 9, "int{bits} on {device}: {same}/{} the same", float.len());
        }
        let info = ok(&tessera(&["--device", "cpu", "info", "--model", dir.to_str().unwrap()], &[]));
        assert!(info.contains(&format!("Linear layers int{bits}")), "{info}");
        assert!(info.contains("arithmetic: f32 (weights dequantized to f32)"), "{info}");
        // --int8: int8 arithmetic for the 8-bit checkpoint (the same top-1 on nine in ten), the
        // weight-only path kept for the 4-bit one, as `info` says.
        let d = dir.to_str().unwrap();
        let info = tessera(&["--device", "cpu", "info", "--model", d, "--int8"], &[]);
        let (text, err) = (ok(&info), String::from_utf8_lossy(&info.stderr).to_string());
        if bits == "8" {
            assert!(text.contains("arithmetic: int8 x int8 -> int32") && text.contains("kernel, activations quantized per token) in 16 of 16 quantized layers"), "{text}");
            let top = |extra: &[&str]| -> Vec<String> {
                let mut a = vec!["--device", "cpu", "classify", "--json", "--top", "1", "--model", d];
                a.extend(extra);
                a.push(samples.to_str().unwrap());
                let v: serde_json::Value = serde_json::from_str(&ok(&tessera(&a, &[]))).unwrap();
                v["results"].as_array().unwrap().iter().map(|r| r["top"][0]["label"].as_str().unwrap().to_string()).collect()
            };
            let (exact, int8) = (top(&[]), top(&["--int8"]));
            let same = exact.iter().zip(&int8).filter(|(a, b)| a == b).count();
            assert!(exact.len() >= 10 && same * 10 >= exact.len() * 9, "--int8: {same}/{} the same", exact.len());
        } else {
            assert!(text.contains("arithmetic: f32 (weights dequantized to f32)"), "{text}");
            assert!(err.contains("0 of 16 quantized layers run in int8"), "{err}");
        }
    }
    let out = tmp("quant-bad");
    let o = out.to_str().unwrap();
    fails_with(&tessera(&["quantize", "--model", "embedded", "--bits", "3", "--out", o], &[]), &["--bits 3"]);
    fails_with(&tessera(&["quantize", "--model", "embedded", "--bits", "4", "--group-size", "0", "--out", o], &[]), &["--group-size 0"]);
    let q = root().join("tests/fixtures/quant/vit-classifier-int8");
    fails_with(&tessera(&["quantize", "--model", q.to_str().unwrap(), "--bits", "4", "--out", o], &[]), &["already quantized"]);
}

/// Zero-shot and text embeddings through the CLI with a CLIP checkpoint: the scores are the
/// softmax of transformers' logits_per_image for the same photo, labels and template; text
/// embeddings are unit length, and a text past the positions is said to be cut.
#[test]
fn zero_shot_and_text_embeddings_from_the_cli() {
    let dir = root().join("tests/fixtures/clip/clip-zero-shot");
    let zs: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("zero-shot.json")).unwrap()).unwrap();
    let labels: Vec<&str> = zs["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let want = read_tensors(&dir.join("zero-shot.safetensors")).into_iter().find(|(n, _)| n == "logits_per_image").unwrap().1;
    let max = want.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = want.iter().map(|l| ((l - max) as f64).exp()).sum();
    for device in DEVICES {
        let out = ok(&tessera(
            &["--device", device, "classify", "--json", "--top", "10", "--model", dir.to_str().unwrap(), "--labels", &labels.join(","), "--template", zs["template"].as_str().unwrap(), zs["image"].as_str().unwrap()],
            &[],
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let top = v["results"][0]["top"].as_array().unwrap();
        assert_eq!(top.len(), labels.len());
        for t in top {
            let i = labels.iter().position(|l| *l == t["label"].as_str().unwrap()).unwrap();
            let p = ((want[i] - max) as f64).exp() / sum;
            assert!((t["score"].as_f64().unwrap() - p).abs() < 1e-4, "{device} {}: {} against {p}", labels[i], t["score"]);
        }
        let long = "word ".repeat(100);
        let o = tessera(&["--device", device, "embed", "--model", dir.to_str().unwrap(), "--text", "a photo of a cat", "--text", &long], &[]);
        let text = ok(&o);
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        for l in &lines {
            let n: f64 = l["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap().powi(2)).sum();
            assert!((n - 1.0).abs() < 1e-4, "not unit length: {n}");
        }
        assert!(String::from_utf8_lossy(&o.stderr).contains("was cut to the model's 77 tokens"));
    }
    fails_with(&tessera(&["classify", "--model", dir.to_str().unwrap(), "--labels", " , ", "tests/fixtures/photos/chelsea.png"], &[]), &["no labels"]);
    fails_with(&tessera(&["embed", "--model", "tests/fixtures/vit-classifier", "--text", "a cat"], &[]), &["has no text tower"]);
}

/// SigLIP zero-shot from the CLI, with a tokenizer.json and with only spiece.model: each label's
/// sigmoid as SiglipModel gives it (the scores do not sum to one), said in the JSON.
#[test]
fn siglip_zero_shot_from_the_cli() {
    for fixture in ["siglip-zero-shot", "siglip-spm-zero-shot"] {
        siglip_zero_shot_from_the_cli_with(fixture);
    }
}

fn siglip_zero_shot_from_the_cli_with(fixture: &str) {
    let dir = root().join("tests/fixtures").join(fixture);
    let zs: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("zero-shot.json")).unwrap()).unwrap();
    let labels: Vec<&str> = zs["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let want = read_tensors(&dir.join("zero-shot.safetensors")).into_iter().find(|(n, _)| n == "probs").unwrap().1;
    for device in DEVICES {
        let out = ok(&tessera(
            &["--device", device, "classify", "--json", "--top", "10", "--model", dir.to_str().unwrap(), "--labels", &labels.join(","), "--template", zs["template"].as_str().unwrap(), zs["image"].as_str().unwrap()],
            &[],
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["scores"], "sigmoid");
        let top = v["results"][0]["top"].as_array().unwrap();
        assert_eq!(top.len(), labels.len());
        for t in top {
            let i = labels.iter().position(|l| *l == t["label"].as_str().unwrap()).unwrap();
            assert!((t["score"].as_f64().unwrap() - want[i] as f64).abs() < 1e-5, "{device} {}: {} against {}", labels[i], t["score"], want[i]);
        }
        let text = ok(&tessera(&["--device", device, "classify", "--model", dir.to_str().unwrap(), "--labels", "cat,dog", zs["image"].as_str().unwrap()], &[]));
        assert!(text.contains("own probability"), "{text}");
    }
}

/// A text tower alone (CLIPTextModelWithProjection, tests/fixtures/text/clip-text-projection):
/// `embed --text` gives transformers' unit-length embeddings; image commands say it has no image
/// tower.
#[test]
fn text_tower_alone_from_the_cli() {
    let dir = root().join("tests/fixtures/text/clip-text-projection");
    let d = dir.to_str().unwrap();
    let want: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("expected-texts.json")).unwrap()).unwrap();
    let texts: Vec<&str> = want["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for device in DEVICES {
        let mut args = vec!["--device", device, "embed", "--model", d];
        for t in &texts {
            args.extend(["--text", t]);
        }
        let out = ok(&tessera(&args, &[]));
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), texts.len());
        for (l, w) in lines.iter().zip(want["embeddings"].as_array().unwrap()) {
            for (a, b) in l["embedding"].as_array().unwrap().iter().zip(w.as_array().unwrap()) {
                assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-4, "{device}: {a} against {b}");
            }
        }
    }
    let info = ok(&tessera(&["--device", "cpu", "info", "--model", d], &[]));
    assert!(info.contains("text tower alone") && info.contains("projection: 24 wide") && info.contains("tokenizer: tokenizer.json"), "{info}");
    fails_with(&tessera(&["classify", "--model", d, "tests/fixtures/photos/chelsea.png"], &[]), &["text tower alone"]);
    fails_with(&tessera(&["classify", "--model", d, "--labels", "a,b", "tests/fixtures/photos/chelsea.png"], &[]), &["text tower alone"]);
}

/// `tessera search`: a folder ranked by the cosine of each image's and the query's embeddings
/// (as `embed` gives them), the image embeddings cached in the folder for the next query, and
/// re-embedded where a file changed.
#[test]
fn search_ranks_a_folder_by_a_text_query_and_caches_the_images() {
    let model = root().join("tests/fixtures/clip/clip-zero-shot");
    let m = model.to_str().unwrap();
    let dir = tmp("search");
    for f in ["tests/fixtures/photos/chelsea.png", "tests/fixtures/photos/coffee-crop.png", "models/fashion-vit/samples/0000-ankle-boot.png"] {
        std::fs::copy(root().join(f), dir.join(Path::new(f).file_name().unwrap())).unwrap();
    }
    let d = dir.to_str().unwrap();
    let search = |q: &str| {
        let o = tessera(&["--device", "cpu", "search", d, "--model", m, "--query", q, "--json"], &[]);
        let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
        (v, String::from_utf8_lossy(&o.stderr).to_string())
    };
    let (first, err) = search("a photo of a cat");
    assert!(err.contains("3 embedded now, 0 from"), "{err}");
    // The scores are the dot products of embed's unit vectors.
    let text: serde_json::Value = serde_json::from_str(ok(&tessera(&["--device", "cpu", "embed", "--model", m, "--text", "a photo of a cat"], &[])).lines().next().unwrap()).unwrap();
    let t: Vec<f64> = text["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let images = ok(&tessera(&["--device", "cpu", "embed", "--model", m, d], &[]));
    let results = first["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for line in images.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let dot: f64 = v["embedding"].as_array().unwrap().iter().zip(&t).map(|(a, b)| a.as_f64().unwrap() * b).sum();
        let r = results.iter().find(|r| r["image"] == v["image"]).unwrap();
        assert!((r["score"].as_f64().unwrap() - dot).abs() < 1e-4, "{}: {} against {dot}", v["image"], r["score"]);
    }
    let scores: Vec<f64> = results.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "not sorted: {scores:?}");
    // The second query reads the cache; a changed file is embedded again.
    let (again, err) = search("a cup of coffee");
    assert!(err.contains("0 embedded now, 3 from"), "{err}");
    assert_eq!(again["results"].as_array().unwrap().len(), 3);
    std::fs::copy(root().join("models/fashion-vit/samples/0001-pullover.png"), dir.join("0000-ankle-boot.png")).unwrap();
    let (_, err) = search("a cup of coffee");
    assert!(err.contains("1 embedded now, 2 from"), "{err}");
    fails_with(&tessera(&["search", d, "--model", m, "--query", "  "], &[]), &["--query is empty"]);
    fails_with(&tessera(&["search", "no-such-folder", "--model", m, "--query", "x"], &[]), &["not a folder"]);
}

/// `tessera search` with a SigLIP model (its SentencePiece tokenizer): the ranking is by the dot
/// products of `embed`'s unit vectors, as for CLIP.
#[test]
fn search_with_a_siglip_model() {
    let model = root().join("tests/fixtures/siglip-spm-zero-shot");
    let m = model.to_str().unwrap();
    let dir = tmp("search-siglip");
    for f in ["tests/fixtures/photos/chelsea.png", "tests/fixtures/photos/coffee-crop.png"] {
        std::fs::copy(root().join(f), dir.join(Path::new(f).file_name().unwrap())).unwrap();
    }
    let d = dir.to_str().unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&tessera(&["--device", "cpu", "search", d, "--model", m, "--query", "a cup of coffee", "--json"], &[]))).unwrap();
    let text: serde_json::Value = serde_json::from_str(ok(&tessera(&["--device", "cpu", "embed", "--model", m, "--text", "a cup of coffee"], &[])).lines().next().unwrap()).unwrap();
    let t: Vec<f64> = text["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for line in ok(&tessera(&["--device", "cpu", "embed", "--model", m, d], &[])).lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let dot: f64 = e["embedding"].as_array().unwrap().iter().zip(&t).map(|(a, b)| a.as_f64().unwrap() * b).sum();
        let r = results.iter().find(|r| r["image"] == e["image"]).unwrap();
        assert!((r["score"].as_f64().unwrap() - dot).abs() < 1e-4, "{}: {} against {dot}", e["image"], r["score"]);
    }
}

/// timm and CLIP checkpoints quantize too: the folder loads (timm's config keeps its own format,
/// CLIP and SigLIP keep their tokenizer files) and give nearly the float model's outputs at 8 bits.
#[test]
fn timm_and_clip_checkpoints_quantize_and_load() {
    let out = tmp("quant-timm-clip");
    let q = out.join("timm");
    let src = root().join("tests/fixtures/timm/vit-token");
    ok(&tessera(&["--device", "cpu", "quantize", "--model", src.to_str().unwrap(), "--bits", "8", "--out", q.to_str().unwrap(), "--check-images", "0"], &[]));
    let pixels = src.join("expected.safetensors");
    let run = |model: &Path, name: &str| -> Vec<f32> {
        let o = out.join(format!("{name}.safetensors"));
        ok(&tessera(&["--device", "cpu", "run", "--model", model.to_str().unwrap(), "--pixels", pixels.to_str().unwrap(), "--out", o.to_str().unwrap()], &[]));
        read_tensors(&o).into_iter().find(|(n, _)| n == "logits").unwrap().1
    };
    let (f, qv) = (run(&src, "float"), run(&q, "int8"));
    let max = f.iter().zip(&qv).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max < 0.1 && max > 0.0, "timm int8 logits differ by {max}");
    // CLIP, SigLIP with tokenizer.json and SigLIP with spiece.model: the tokenizer files kept, the
    // same top label (SigLIP: its score within 1%).
    let labels = ["cat", "dog", "cup of coffee"].join(",");
    let top = |m: &Path| -> (String, f64) {
        let v: serde_json::Value = serde_json::from_str(&ok(&tessera(&["--device", "cpu", "classify", "--json", "--model", m.to_str().unwrap(), "--labels", &labels, "tests/fixtures/photos/chelsea.png"], &[]))).unwrap();
        let t = &v["results"][0]["top"][0];
        (t["label"].as_str().unwrap().to_string(), t["score"].as_f64().unwrap())
    };
    for (fixture, tokenizer) in [("clip/clip-zero-shot", "tokenizer.json"), ("siglip-zero-shot", "tokenizer.json"), ("siglip-spm-zero-shot", "spiece.model")] {
        let c = out.join(fixture.replace('/', "-"));
        let src = root().join("tests/fixtures").join(fixture);
        ok(&tessera(&["--device", "cpu", "quantize", "--model", src.to_str().unwrap(), "--bits", "8", "--out", c.to_str().unwrap(), "--check-images", "0"], &[]));
        assert!(c.join(tokenizer).is_file(), "{fixture}: {tokenizer} not kept");
        let ((fl, fs), (ql, qs)) = (top(&src), top(&c));
        assert_eq!(fl, ql, "{fixture}");
        if fixture.starts_with("siglip") {
            assert!((fs - qs).abs() < 0.01, "{fixture}: {fs} against {qs}");
        }
    }
}

/// `tessera depth`: a PNG per image at the image's own size, colour-mapped or 16-bit with
/// --raw, JSON statistics equal to the library's depth, and clear errors.
#[test]
fn depth_writes_one_map_per_image_at_its_size() {
    let out = std::env::temp_dir().join(format!("tessera-cli-depth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = out.display().to_string();
    let model = "tests/fixtures/depth/depth-anything-v2-metric";
    let photos = ["tests/fixtures/photos/chelsea.png", "tests/fixtures/depth/portrait-150x220.png"];
    let doc: serde_json::Value = serde_json::from_str(&ok(&tessera(&["depth", photos[0], photos[1], "--model", model, "--out", &o, "--json", "--device", "cpu"], &[]))).unwrap();
    assert_eq!(doc["kind"], "metric");
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for (r, (w, h)) in results.iter().zip([(451, 300), (150, 220)]) {
        assert_eq!((r["width"].as_u64().unwrap(), r["height"].as_u64().unwrap()), (w, h), "{r}");
        let png = image::open(r["out"].as_str().unwrap()).unwrap();
        assert_eq!((png.width() as u64, png.height() as u64), (w, h));
        assert!(matches!(png, image::DynamicImage::ImageRgb8(_)), "a colour map is 8-bit RGB");
        // A metric head's sigmoid times max_depth 20.
        let (lo, hi) = (r["min"].as_f64().unwrap(), r["max"].as_f64().unwrap());
        assert!(0.0 <= lo && lo < hi && hi <= 20.5, "{r}");
    }
    // --raw: millimetres in 16 bits, the maximum where --json says.
    let doc: serde_json::Value = serde_json::from_str(&ok(&tessera(&["depth", photos[0], "--model", model, "--out", &o, "--raw", "--json", "--device", "cpu"], &[]))).unwrap();
    let r = &doc["results"][0];
    let png = image::open(r["out"].as_str().unwrap()).unwrap();
    let image::DynamicImage::ImageLuma16(g) = png else { panic!("--raw writes 16-bit grayscale") };
    let top = *g.as_raw().iter().max().unwrap() as f64;
    assert!((top - r["max"].as_f64().unwrap() * 1000.0).abs() <= 0.5, "{top} mm vs {r}");
    // The backbone quantized to 8 bits: the same depth within 1% of its range.
    let q = out.join("q8");
    ok(&tessera(&["quantize", "--model", model, "--bits", "8", "--out", &q.display().to_string()], &[]));
    let doc8: serde_json::Value = serde_json::from_str(&ok(&tessera(&["depth", photos[0], "--model", &q.display().to_string(), "--out", &o, "--json", "--device", "cpu"], &[]))).unwrap();
    let (a, b) = (&doc8["results"][0], &results[0]);
    let range = b["max"].as_f64().unwrap() - b["min"].as_f64().unwrap();
    for k in ["min", "max", "mean"] {
        assert!((a[k].as_f64().unwrap() - b[k].as_f64().unwrap()).abs() <= 0.01 * range, "int8 {k}: {a} vs {b}");
    }
    // Errors: a model without a depth head, an unknown colour map, a missing image.
    fails_with(&tessera(&["depth", photos[0], "--model", "tests/fixtures/vit-classifier", "--out", &o], &[]), &["no depth head"]);
    fails_with(&tessera(&["depth", photos[0], "--model", model, "--colormap", "rainbow"], &[]), &["rainbow"]);
    fails_with(&tessera(&["classify", photos[0], "--model", model], &[]), &["tessera depth"]);
    fails_with(&tessera(&["depth", "no-such.png", "--model", model, "--out", &o], &[]), &["no-such.png"]);
    let _ = std::fs::remove_dir_all(&out);
}

/// A DPT checkpoint (ViT backbone) through the CLI: `info` names its neck, `depth` writes maps at
/// the photos' sizes matching transformers' post-processed depth, `run` writes `predicted_depth`,
/// and its 8-bit quantized backbone gives the same depth within 1%.
/// DPT over a DINOv2 backbone through the CLI: `info` says the image runs at its own size padded
/// to the patch, `depth` on a photo gives transformers' map at the photo's size, and the 8-bit
/// backbone stays close.
#[test]
fn dpt_dinov2_depth_through_the_cli_matches_transformers() {
    let out = std::env::temp_dir().join(format!("tessera-cli-dpt-dinov2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = out.display().to_string();
    let model = "tests/fixtures/dpt-dinov2/dpt-dinov2";
    let info = ok(&tessera(&["info", "--model", model, "--device", "cpu"], &[]));
    assert!(info.contains("DptDinov2") && info.contains("3x3 projection") && info.contains("runs at 644x483 (its own size, zero-padded to a multiple of 7)"), "{info}");
    let photo = "tests/fixtures/dpt-dinov2/photo-wide.png";
    let doc: serde_json::Value = serde_json::from_str(&ok(&tessera(&["depth", photo, "--model", model, "--out", &o, "--json"], &[]))).unwrap();
    let r = &doc["results"][0];
    assert_eq!((r["width"].as_u64(), r["height"].as_u64()), (Some(61), Some(40)), "{r}");
    assert_eq!(r["model_size"], serde_json::json!([42, 63]), "{r}");
    let bytes = std::fs::read(format!("{model}/expected-wide.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let want: Vec<f32> = st.tensor("depth_at_input").unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (lo, hi) = want.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    for (k, v) in [("min", lo), ("max", hi)] {
        assert!((r[k].as_f64().unwrap() - v as f64).abs() <= 2e-4, "{k}: {r} vs transformers' {v}");
    }
    let q = out.join("q8");
    ok(&tessera(&["quantize", "--model", model, "--bits", "8", "--out", &q.display().to_string()], &[]));
    let doc8: serde_json::Value = serde_json::from_str(&ok(&tessera(&["depth", photo, "--model", &q.display().to_string(), "--out", &o, "--json"], &[]))).unwrap();
    let a = &doc8["results"][0];
    for k in ["min", "max", "mean"] {
        assert!((a[k].as_f64().unwrap() - r[k].as_f64().unwrap()).abs() <= 0.02 * (hi - lo) as f64, "int8 {k}: {a} vs {r}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn dpt_depth_through_the_cli_matches_transformers() {
    let out = std::env::temp_dir().join(format!("tessera-cli-dpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = out.display().to_string();
    let model = "tests/fixtures/dpt/dpt-project";
    let info = ok(&tessera(&["info", "--model", model, "--device", "cpu"], &[]));
    assert!(info.contains("DPT's neck") && info.contains("projected") && info.contains("runs at 48x48"), "{info}");
    let photo = "tests/fixtures/photos/chelsea.png";
    let doc: serde_json::Value = serde_json::from_str(&ok(&tessera(&["depth", photo, "--model", model, "--out", &o, "--json", "--raw"], &[]))).unwrap();
    assert_eq!(doc["kind"], "relative");
    let r = &doc["results"][0];
    assert_eq!((r["width"].as_u64(), r["height"].as_u64()), (Some(451), Some(300)), "{r}");
    assert_eq!(r["model_size"], serde_json::json!([48, 48]), "{r}");
    // transformers' depth at the photo's size (scripts/make_dpt_fixtures.py).
    let bytes = std::fs::read(format!("{model}/expected-chelsea.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let want: Vec<f32> = st.tensor("depth_at_input").unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (lo, hi) = want.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    for (k, v) in [("min", lo), ("max", hi)] {
        assert!((r[k].as_f64().unwrap() - v as f64).abs() <= 2e-4, "{k}: {r} vs transformers' {v}");
    }
    // A relative map in 16 bits: the photo's range stretched over 0..65535.
    let image::DynamicImage::ImageLuma16(g) = image::open(r["out"].as_str().unwrap()).unwrap() else { panic!("--raw writes 16-bit grayscale") };
    assert_eq!((g.width(), g.height()), (451, 300));
    assert_eq!(*g.as_raw().iter().max().unwrap(), 65535);
    // `run` on transformers' pixel values writes its predicted_depth (twice the last fused map).
    let written = out.join("run.safetensors");
    ok(&tessera(&["run", "--model", model, "--pixels", &format!("{model}/expected-chelsea.safetensors"), "--out", &written.display().to_string()], &[]));
    let bytes = std::fs::read(&written).unwrap();
    let run = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let got = run.tensor("predicted_depth").unwrap();
    let want = st.tensor("predicted_depth").unwrap();
    assert_eq!(got.shape(), [1, 96, 96]);
    let f = |t: &safetensors::tensor::TensorView| -> Vec<f32> { t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect() };
    let err = f(&got).iter().zip(f(&want)).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= 1e-4, "run's predicted_depth differs from transformers' by {err}");
    // The ViT backbone quantized to 8 bits.
    let q = out.join("q8");
    ok(&tessera(&["quantize", "--model", model, "--bits", "8", "--out", &q.display().to_string()], &[]));
    let doc8: serde_json::Value = serde_json::from_str(&ok(&tessera(&["depth", photo, "--model", &q.display().to_string(), "--out", &o, "--json"], &[]))).unwrap();
    let a = &doc8["results"][0];
    for k in ["min", "max", "mean"] {
        assert!((a[k].as_f64().unwrap() - r[k].as_f64().unwrap()).abs() <= 0.01 * (hi - lo) as f64, "int8 {k}: {a} vs {r}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
