//! The autotuner: with tuning on, each new GEMM shape is timed once per adapter (its tiles on the
//! graph's own buffers), the choice is written to the cache file and reused by later compiles and
//! later devices; a choice in the cache is what runs; every tile gives the reference's result.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessera::reference::{self as r, Rng};
use tessera::{Activation, CompileOptions, Executable, Gpu, GpuOptions, Graph, Weights};

fn tuned_gpu(cache: &Path) -> Arc<Gpu> {
    let mut opts = GpuOptions::from_env().unwrap();
    opts.tune = true;
    opts.tune_cache = Some(cache.to_path_buf());
    Gpu::new_blocking(&opts).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-tune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("tuning.json")
}

/// Two matmuls of one shape (so the second reuses the first's timing) with bias and GELU, then a
/// checked result against the f64 reference.
fn run(gpu: &Arc<Gpu>, m: usize, k: usize, n: usize) -> Executable {
    let mut rng = Rng::new(5);
    let a = rng.vec(m * k, 1.0);
    let b1 = rng.vec(k * n, 1.0 / (k as f32).sqrt());
    let b2 = rng.vec(n * n, 1.0 / (n as f32).sqrt());
    let bias = rng.vec(n, 0.5);
    let mut g = Graph::new();
    let x = g.input("a", &[m, k]);
    let w1 = g.weight("b1", &[k, n]);
    let w2 = g.weight("b2", &[n, n]);
    let bb = g.weight("bias", &[n]);
    let h = g.matmul("first", x, w1, Some(bb), Activation::Gelu, None).unwrap();
    let y = g.matmul("second", h, w2, Some(bb), Activation::Gelu, None).unwrap();
    let z = g.matmul("third", y, w2, Some(bb), Activation::Gelu, None).unwrap();
    g.output(z);
    let mut w = Weights::new(gpu);
    w.insert("b1", &[k, n], &b1).unwrap();
    w.insert("b2", &[n, n], &b2).unwrap();
    w.insert("bias", &[n], &bias).unwrap();
    let exe = pollster::block_on(Executable::compile(gpu, &g, &w, &CompileOptions::default())).unwrap();
    let got = exe.run_blocking(&[("a", &a)]).unwrap().remove(0).data;
    let h = r::matmul(&a, &b1, m, k, n, Some(&bias), Activation::Gelu, None);
    let y = r::matmul(&h, &b2, m, n, n, Some(&bias), Activation::Gelu, None);
    let want = r::matmul(&y, &b2, m, n, n, Some(&bias), Activation::Gelu, None);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-4 + 1e-4 * w.abs(), "element {i}: {g} vs {w} ({:?})", exe.kernels());
    }
    exe
}

#[test]
fn tuning_times_each_shape_once_and_caches_the_choice() {
    let path = tmp("cache");
    let gpu = tuned_gpu(&path);
    run(&gpu, 70, 36, 96);
    let stats = gpu.tuning_stats();
    // Two shapes (70x36x96 and 70x96x96): each timed once; the third matmul reuses the second's.
    assert_eq!((stats.measured, stats.reused), (2, 1), "{stats:?}");
    assert!(stats.cache_error.is_none(), "{stats:?}");
    let choices = gpu.tuning_choices();
    assert_eq!(choices.len(), 2, "{choices:?}");
    assert!(choices.iter().all(|(k, e)| k.starts_with("matmul 70x") && e.ms.contains_key(&e.choice)), "{choices:?}");
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("cache file written")).unwrap();
    let entries = file["entries"].as_object().unwrap();
    assert_eq!(entries.len(), 2);
    let adapter = &gpu.report().name;
    for (key, e) in entries {
        assert!(key.starts_with(adapter.as_str()) && key.contains("matmul 70x"), "{key}");
        let ms = e["ms"].as_object().unwrap();
        assert_eq!(ms.len(), 8, "every tile timed: {e}");
        let choice = e["choice"].as_str().unwrap();
        let best = ms.iter().min_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap())).unwrap().0;
        assert_eq!(choice, best, "the fastest tile is chosen: {e}");
    }
    // Another device on the same adapter reuses the file without timing.
    let again = tuned_gpu(&path);
    run(&again, 70, 36, 96);
    let stats = again.tuning_stats();
    assert_eq!((stats.measured, stats.reused), (0, 3), "{stats:?}");
}

#[test]
fn the_cached_choice_is_what_runs_and_every_tile_is_correct() {
    let path = tmp("forced");
    for ((tile, marker), (m, k, n)) in [("32x64", "BM=32,BN=64"), ("128x128", "BM=128"), ("64x64", "BM=64"), ("32x32", "BN=32"), ("128x128-prefetch", "PREFETCH,BM=128"), ("128x128-unrolled", "UNROLL_8X8,BM=128"), ("64x64-unrolled", "UNROLL_4X4,BM=64")]
        .into_iter()
        .flat_map(|t| [(t, (45, 20, 68)), (t, (33, 7, 13))])
    {
        // Tune once to learn the keys, then rewrite every choice to `tile`.
        let _ = std::fs::remove_file(&path);
        run(&tuned_gpu(&path), m, k, n);
        let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for (_, e) in file["entries"].as_object_mut().unwrap() {
            e["choice"] = serde_json::Value::from(tile);
        }
        std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
        let gpu = tuned_gpu(&path);
        let exe = run(&gpu, m, k, n);
        for (node, variant) in exe.kernels() {
            assert!(variant.contains(marker), "{node} runs {variant}, the cache says {tile}");
        }
        assert_eq!(gpu.tuning_stats().measured, 0);
    }
}

#[test]
fn tuning_off_uses_the_heuristic() {
    let mut opts = GpuOptions::from_env().unwrap();
    opts.tune = false;
    let path = tmp("off");
    opts.tune_cache = Some(path.clone());
    let gpu = Gpu::new_blocking(&opts).unwrap();
    let exe = run(&gpu, 45, 20, 68);
    // The adapter's heuristic: the large tile on CPU adapters (measured faster there), else 64x64.
    let marker = if gpu.report().device_type == "Cpu" { "BM=128" } else { "BM=64" };
    assert!(exe.kernels().iter().all(|(_, v)| v.contains(marker)), "{:?}", exe.kernels());
    assert!(!path.exists(), "nothing written with tuning off");
    assert_eq!(gpu.tuning_stats().measured, 0);
}

/// One attention op on `qkv` (an f32 input, or an f16 weight with f16 storage), compiled on `gpu`.
fn attention(gpu: &Arc<Gpu>, b: usize, t: usize, heads: usize, dh: usize, f16: bool) -> (Executable, Vec<f32>, Vec<f32>) {
    attention_in(gpu, b, t, heads, dh, f16, false)
}

/// The same, with `qkv` laid out head-major, (3, B, heads, T, dh), when `head_major`.
fn attention_in(gpu: &Arc<Gpu>, b: usize, t: usize, heads: usize, dh: usize, f16: bool, head_major: bool) -> (Executable, Vec<f32>, Vec<f32>) {
    let d = heads * dh;
    let mut qkv = Rng::new(9).vec(b * t * 3 * d, 1.0);
    if f16 {
        qkv = qkv.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    }
    let (shape, data) = if head_major {
        let mut hm = vec![0f32; qkv.len()];
        for (i, &v) in qkv.iter().enumerate() {
            let (bt, c) = (i / (3 * d), i % (3 * d));
            let (bb, tt, part, h, dd) = (bt / t, bt % t, c / d, (c % d) / dh, c % dh);
            hm[(((part * b + bb) * heads + h) * t + tt) * dh + dd] = v;
        }
        (vec![3, b, heads, t, dh], hm)
    } else {
        (vec![b, t, 3 * d], qkv.clone())
    };
    let scale = 1.0 / (dh as f32).sqrt();
    let mut g = Graph::new();
    let mut w = Weights::new(gpu);
    let x = if f16 {
        g.set_storage(tessera::DType::F16);
        w = Weights::new_as(gpu, tessera::DType::F16);
        w.insert("qkv", &shape, &data).unwrap();
        g.weight("qkv", &shape)
    } else {
        g.input("qkv", &shape)
    };
    let o = g.attention("attention", x, heads, scale).unwrap();
    g.output(o);
    let exe = pollster::block_on(Executable::compile(gpu, &g, &w, &CompileOptions::default())).unwrap();
    let feeds: Vec<(&str, &[f32])> = if f16 { vec![] } else { vec![("qkv", &data[..])] };
    let got = exe.run_blocking(&feeds).unwrap().remove(0).data;
    (exe, got, r::attention(&qkv, b, t, heads, dh, scale))
}

#[test]
fn every_attention_kernel_is_a_candidate_and_matches_the_reference() {
    let path = tmp("attention");
    // (shape, f16, the kernels besides the default that apply: split G must divide the head dim's
    // vec4 count, tiled CG slices of whole vec4s; the subgroup ones where the adapter's subgroups
    // hold G lanes, tiled-64x32 (34,816 bytes of workgroup memory at head dim 64) where the
    // device's limit allows it)
    let gpu = tuned_gpu(&path);
    let sub = gpu.subgroup_min_size();
    let storage = gpu.limits().max_compute_workgroup_storage_size;
    eprintln!("subgroup min size: {sub}, workgroup storage: {storage}");
    drop(gpu);
    let fits = |s: &str, dh: usize| {
        if s.ends_with("subgroup") {
            return sub >= s.trim_start_matches("split-").split('-').next().unwrap().parse::<u32>().unwrap();
        }
        !(s == "tiled-64x32" && dh == 64 && storage < 34816)
    };
    let all = &["split-4", "split-8", "split-4-subgroup", "split-8-subgroup", "tiled-32x32", "tiled-64x16", "tiled-64x32"][..];
    // The last two shapes with Q, K, V head-major, (3, B, H, T, dh).
    for (b, t, heads, dh, f16, kernels, head_major) in [
        (2, 37, 2, 16, false, &["split-4", "split-4-subgroup", "tiled-64x16"][..], false),
        (1, 197, 3, 64, false, all, false),
        (2, 50, 2, 32, true, all, false),
        (3, 70, 2, 32, false, all, false),
        (2, 45, 3, 64, false, all, true),
        (2, 50, 2, 32, true, all, true),
    ] {
        let tol = if f16 { 2e-3 } else { 1e-5 };
        let kernels: Vec<&str> = kernels.iter().copied().filter(|s| fits(s, dh)).collect();
        for kernel in &kernels {
            let _ = std::fs::remove_file(&path);
            let (_, got, want) = attention_in(&tuned_gpu(&path), b, t, heads, dh, f16, head_major);
            tessera::reference::compare("tuned attention", &got, &want, tol, tol).unwrap();
            let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let entries = file["entries"].as_object_mut().unwrap();
            assert_eq!(entries.len(), 1);
            for (key, e) in entries.iter_mut() {
                assert!(key.contains(&format!("attention b={b} t={t} heads={heads} dh={dh}")), "{key}");
                assert_eq!(key.contains("head-major"), head_major, "{key}");
                let timed: Vec<&String> = e["ms"].as_object().unwrap().keys().collect();
                assert_eq!(timed.len(), 1 + kernels.len(), "every kernel timed, expected {kernels:?}: {e}");
                e["choice"] = serde_json::Value::from(*kernel);
            }
            std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
            let (exe, got, want) = attention_in(&tuned_gpu(&path), b, t, heads, dh, f16, head_major);
            let variant = &exe.kernels()[0].1;
            if let Some(rest) = kernel.strip_prefix("split-") {
                let g = rest.split('-').next().unwrap();
                assert!(variant.starts_with("attention_split") && variant.contains(&format!("G={g}")), "{variant}");
                assert_eq!(variant.contains("SUBGROUP"), kernel.ends_with("subgroup"), "{variant}");
            } else {
                let (bq, bkv) = kernel.trim_start_matches("tiled-").split_once('x').unwrap();
                assert!(variant.starts_with("attention_tiled") && variant.contains(&format!("BQ={bq},BKV={bkv}")), "{variant}");
            }
            let what = format!("{kernel} attention b={b} t={t} dh={dh} f16={f16} head-major={head_major}");
            match tessera::reference::compare(&what, &got, &want, tol, tol) {
                Ok(max) => eprintln!("{what}: max diff {max:e}"),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

#[test]
fn split_k_is_timed_where_it_applies_and_a_cached_split_runs() {
    let path = tmp("splitk");
    // 45x1024x68: K long enough to split in 2, 4 or 8 ranges of at least 128; 45x68x68: too short.
    run(&tuned_gpu(&path), 45, 1024, 68);
    let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let entries = file["entries"].as_object_mut().unwrap();
    assert_eq!(entries.len(), 2);
    for (key, e) in entries.iter_mut() {
        let ms = e["ms"].as_object().unwrap();
        if key.contains("matmul 45x1024x68") {
            assert_eq!(ms.len(), 11, "eight tiles and three splits timed: {e}");
            for s in ["64x64-split2", "64x64-split4", "64x64-split8"] {
                assert!(ms.contains_key(s), "{s} timed: {e}");
            }
            e["choice"] = serde_json::Value::from("64x64-split4");
        } else {
            assert_eq!(ms.len(), 8, "no split for K = 68: {e}");
        }
    }
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let gpu = tuned_gpu(&path);
    let exe = run(&gpu, 45, 1024, 68);
    assert_eq!(gpu.tuning_stats().measured, 0);
    let kernels = exe.kernels();
    assert!(kernels[0].0 == "first" && kernels[0].1.contains("SPLITK"), "{kernels:?}");
    assert!(kernels[1].0 == "first (reduce)" && kernels[1].1.starts_with("splitk_reduce[VEC4,BIAS,GELU"), "{kernels:?}");
    assert_eq!(kernels.len(), 4, "{kernels:?}");
}

#[test]
fn attention_heuristic_without_tuning() {
    let mut opts = GpuOptions::from_env().unwrap();
    opts.tune = false;
    let gpu = Gpu::new_blocking(&opts).unwrap();
    let (exe, got, want) = attention(&gpu, 2, 45, 2, 64, false);
    // CPU adapters: the register-tiled kernel (measured faster on lavapipe); others the default.
    let marker = if gpu.report().device_type == "Cpu" { "attention_tiled[DH=64,BQ=32,BKV=32" } else { "attention[" };
    let variant = &exe.kernels()[0].1;
    assert!(variant.starts_with(marker), "{variant}");
    tessera::reference::compare("heuristic attention", &got, &want, 1e-5, 1e-5).unwrap();
}

#[test]
fn checked_shaders_are_tuned_apart() {
    let path = tmp("checked");
    run(&tuned_gpu(&path), 40, 24, 36);
    let mut opts = GpuOptions::from_env().unwrap();
    opts.tune = true;
    opts.tune_cache = Some(path.clone());
    opts.checked_shaders = true;
    let checked = Gpu::new_blocking(&opts).unwrap();
    run(&checked, 40, 24, 36);
    // Timed again under runtime checks, not taken from the unchecked entries.
    assert_eq!(checked.tuning_stats().measured, 2);
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let keys: Vec<&String> = file["entries"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k.contains(" | checked shaders | ")).count(), 2, "{keys:?}");
}
