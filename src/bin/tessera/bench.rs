//! `tessera bench`: kernel throughput on the shapes of ViT-B/16, timed on the GPU with timestamp
//! queries where the adapter has them (wall clock otherwise).

use std::time::Instant;
use tessera::reference::Rng;
use tessera::{CompileOptions, Compiled, Device, Gpu, Graph, Weights};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Timed runs per case (after warm-up), fewer if --max-seconds runs out first.
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Untimed runs before timing.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Stop timing a case after this many seconds (at least one timed run).
    #[arg(long, default_value_t = 5.0)]
    max_seconds: f64,
    /// Back-to-back runs per timed submit (GPU time = first begin to last end, over the runs), so
    /// the GPU does not idle between runs; 1 times each run alone. With --model: the "GPU ms/run"
    /// column (fewer runs where one takes over 200 ms).
    #[arg(long, default_value_t = 10)]
    repeat: u32,
    /// Batch sizes for the ViT-B/16 shapes (197 tokens per image).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    batch: Vec<usize>,
    /// Extra GEMM shapes, MxKxN (e.g. 4096x4096x4096).
    #[arg(long, value_delimiter = ',')]
    gemm: Vec<String>,
    /// Only cases whose name contains this (e.g. `gemm`, `attention`, `1024`).
    #[arg(long)]
    only: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Benchmark this model end to end instead of the kernels (checkpoint folder, hub id,
    /// `default` for the embedded model, or a built-in config with random weights: vit-b16,
    /// deit-s16, deit-ti16): latency, throughput and a per-op GPU profile.
    #[arg(long)]
    model: Option<String>,
    /// With --model: store weights and activations as f16 (f32 arithmetic; needs shader-f16).
    #[arg(long)]
    f16: bool,
    /// With --model: the QKV projection writes Q, K and V head-major for the attention kernels.
    #[arg(long)]
    qkv_heads: bool,
    /// With --model: run at this patch size (the patch kernel PI-resized; see `classify --help`).
    #[arg(long, value_name = "P")]
    patch_size: Option<usize>,
    /// With --model and an 8-bit checkpoint on the CPU backend: int8 x int8 arithmetic (see
    /// `classify --help`).
    #[arg(long)]
    int8: bool,
    /// With --model and a NaFlex checkpoint (SigLIP 2): the budget of patches; the benchmark's
    /// input is the grid a square image gets at that budget.
    #[arg(long, value_name = "N")]
    max_patches: Option<usize>,
    /// With --model: token merging, R tokens per layer (see `classify --help`).
    #[arg(long, value_name = "R")]
    merge: Option<usize>,
    /// With --model: the image size, WxH, the benchmark's input is preprocessed from (default:
    /// the checkpoint's training size); the input is the size the model's processor resizes it
    /// to (a depth model keeps the aspect ratio).
    #[arg(long, value_name = "WxH")]
    image_size: Option<String>,
    /// With --merge: `constant` or `decreasing`.
    #[arg(long, value_name = "S", default_value = "constant", value_parser = crate::models::parse_schedule)]
    merge_schedule: tessera::MergeSchedule,
}

struct Case {
    name: String,
    shape: String,
    graph: Graph,
    weights: Vec<(String, Vec<usize>)>,
    inputs: Vec<(String, Vec<usize>)>,
    flops: f64,
}

fn gemm_case(m: usize, k: usize, n: usize, label: &str) -> Case {
    let mut g = Graph::new();
    let a = g.input("a", &[m, k]);
    let b = g.weight("b", &[k, n]);
    let c = g.matmul("gemm", a, b, None, tessera::Activation::None, None).expect("valid shape");
    g.output(c);
    Case {
        name: format!("gemm {label}"),
        shape: format!("{m}x{k}x{n}"),
        graph: g,
        weights: vec![("b".into(), vec![k, n])],
        inputs: vec![("a".into(), vec![m, k])],
        flops: 2.0 * (m * n * k) as f64,
    }
}

fn attention_case(batch: usize, tokens: usize, heads: usize, dh: usize) -> Case {
    let mut g = Graph::new();
    let d = heads * dh;
    let qkv = g.input("qkv", &[batch, tokens, 3 * d]);
    let o = g.attention("attention", qkv, heads, 1.0 / (dh as f32).sqrt()).expect("valid shape");
    g.output(o);
    Case {
        name: format!("attention b={batch}"),
        shape: format!("{batch}x{heads}x{tokens}x{dh}"),
        graph: g,
        weights: vec![],
        inputs: vec![("qkv".into(), vec![batch, tokens, 3 * d])],
        flops: 4.0 * (batch * heads * tokens * tokens * dh) as f64,
    }
}

/// Checks the sizes given on the command line: every batch and GEMM dimension a positive number.
fn check_args(args: &BenchArgs) -> anyhow::Result<()> {
    if args.patch_size.is_some() && args.model.is_none() {
        anyhow::bail!("--patch-size applies to a model benchmark: add --model (e.g. --model default)");
    }
    if let Some(b) = args.batch.iter().find(|&&b| b == 0) {
        anyhow::bail!("--batch {b}: a batch holds at least one image");
    }
    for g in &args.gemm {
        gemm_dims(g)?;
    }
    Ok(())
}

/// `MxKxN` as three positive numbers.
fn gemm_dims(g: &str) -> anyhow::Result<[usize; 3]> {
    let dims: Vec<Option<usize>> = g.split('x').map(|d| d.trim().parse().ok().filter(|&v: &usize| v > 0)).collect();
    match dims[..] {
        [Some(m), Some(k), Some(n)] => Ok([m, k, n]),
        _ => anyhow::bail!("--gemm {g}: expected MxKxN with three positive numbers (e.g. 4096x4096x4096)"),
    }
}

fn cases(args: &BenchArgs) -> Vec<Case> {
    let mut v = Vec::new();
    for &b in &args.batch {
        let m = 197 * b;
        let tag = |what: &str| format!("{what} b={b}");
        v.push(gemm_case(m, 768, 2304, &tag("qkv")));
        v.push(gemm_case(m, 768, 768, &tag("proj")));
        v.push(gemm_case(m, 768, 3072, &tag("fc1")));
        v.push(gemm_case(m, 3072, 768, &tag("fc2")));
    }
    v.push(gemm_case(1024, 1024, 1024, "1024^3"));
    for g in &args.gemm {
        if let Ok([m, k, n]) = gemm_dims(g) {
            v.push(gemm_case(m, k, n, g));
        }
    }
    for &b in &args.batch {
        v.push(attention_case(b, 197, 12, 64));
    }
    if let Some(only) = &args.only {
        v.retain(|c| c.name.contains(only.as_str()) || c.shape.contains(only.as_str()));
    }
    v
}

#[derive(serde::Serialize)]
struct Row {
    case: String,
    shape: String,
    gflop: f64,
    runs: usize,
    gpu_ms_median: Option<f64>,
    wall_ms_median: f64,
    gflops: f64,
    /// The kernel that ran, as the autotuner names it, and how it was chosen.
    kernel: String,
    error: Option<String>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

/// Whether the device times each run itself (GPU timestamps).
fn has_timestamps(device: &Device) -> bool {
    device.gpu().is_some_and(|g| g.report().timestamp_query)
}

fn measure(device: &Device, case: &Case, args: &BenchArgs) -> anyhow::Result<(usize, Option<f64>, f64, String)> {
    let mut rng = Rng::new(1);
    let mut weights = Weights::new(device);
    for (name, shape) in &case.weights {
        weights.insert(name, shape, &rng.vec(shape.iter().product(), 0.1))?;
    }
    let data: Vec<(String, Vec<f32>)> =
        case.inputs.iter().map(|(n, s)| (n.clone(), rng.vec(s.iter().product(), 1.0))).collect();
    let feeds: Vec<(&str, &[f32])> = data.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let profile = has_timestamps(device);
    let exe = pollster::block_on(Compiled::compile(device, &case.graph, &weights, &CompileOptions { profile }))?;
    let kernel = exe.kernel_choices().first().map(|c| format!("{} ({})", c.kernel, c.reason.as_str())).unwrap_or_default();
    for _ in 0..args.warmup {
        pollster::block_on(exe.run(&feeds))?;
    }
    let (mut gpu_ms, mut wall_ms) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while wall_ms.len() < args.iters.max(1) && (wall_ms.is_empty() || start.elapsed().as_secs_f64() < args.max_seconds) {
        let t = Instant::now();
        if profile && args.repeat > 1 {
            gpu_ms.extend(pollster::block_on(exe.gpu_time_per_run(&feeds, args.repeat))?);
        } else if profile {
            let (_, p) = pollster::block_on(exe.run_profiled(&feeds))?;
            gpu_ms.push(p.total_ms());
        } else {
            pollster::block_on(exe.run(&feeds))?;
        }
        wall_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let runs = wall_ms.len();
    let gpu = if gpu_ms.is_empty() { None } else { Some(median(&mut gpu_ms)) };
    Ok((runs, gpu, median(&mut wall_ms), kernel))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn model_bench(device: &Device, spec: &str, args: &BenchArgs) -> anyhow::Result<()> {
    let merge = tessera::Merge { r: args.merge.unwrap_or(0), schedule: args.merge_schedule };
    let choices = crate::models::Choices { f16: args.f16, patch: args.patch_size, int8: args.int8, max_patches: args.max_patches, merge };
    let model = crate::models::load_spec(device, Some(spec), choices)?;
    let cfg = &model.config;
    // A NaFlex model runs the grid a square image of its training size gets at its budget.
    let (ih, iw) = match &args.image_size {
        Some(s) => {
            let (w, h) = crate::commands::parse_wxh(s)?;
            (h, w)
        }
        None => cfg.image_size,
    };
    let (h, w) = model.preprocessor.output_size(ih, iw);
    println!("{}", device.report());
    println!(
        "model: {} ({:?}, {} layers, width {}, {} heads, {}x{} input, patch {}{}), {} weights {:.1} MiB on the device\n",
        model.source, cfg.family, cfg.num_layers, cfg.hidden_size, cfg.num_heads, h, w, cfg.patch_size,
        if model.patch_size() != model.original_patch_size() { format!(" PI-resized from {}", model.original_patch_size()) } else { String::new() },
        match &cfg.quant {
            Some(q) => format!("{} ({q})", model.storage()),
            None => model.storage().to_string(),
        },
        model.weight_bytes() as f64 / 1048576.0
    );
    if cfg.quant.is_some() {
        println!("arithmetic: {}\n", model.arithmetic());
    }
    if args.qkv_heads {
        println!("QKV written head-major for attention\n");
    }
    println!(
        "{:>6} {:>6} {:>12} {:>12} {:>12} {:>12} {:>14}",
        "batch", "runs", "p50 ms", "p90 ms", "ms/image", "images/s", "GPU ms/run"
    );
    let mut rows = Vec::new();
    let mut memory = Vec::new();
    for &b in &args.batch {
        let pixels = Rng::new(b as u64).vec(b * cfg.num_channels * h * w, 1.0);
        let dims = [b, cfg.num_channels, h, w];
        // As PyTorch's comparison does: the logits come back (where the model has a head).
        let opts = tessera::RunOptions { qkv_heads: args.qkv_heads, logits_only: true, ..Default::default() };
        if let Err(e) = model.run_blocking(&pixels, dims, opts) {
            println!("{b:>6}  skipped: {e}");
            continue;
        }
        for _ in 0..args.warmup {
            model.run_blocking(&pixels, dims, opts)?;
        }
        let mut ms = Vec::new();
        let start = Instant::now();
        while ms.len() < args.iters.max(1) && (ms.is_empty() || start.elapsed().as_secs_f64() < args.max_seconds) {
            let t = Instant::now();
            model.run_blocking(&pixels, dims, opts)?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        let (p50, p90) = (percentile(&ms, 0.5), percentile(&ms, 0.9));
        // GPU time with the runs back to back (steady clocks, no host work between them).
        // At most --repeat runs, fewer where a run is slow (about two seconds in all).
        let repeats = args.repeat.clamp(1, (2000.0 / p50).ceil().max(1.0) as u32);
        let gpu_ms = pollster::block_on(model.gpu_time_per_run(&pixels, dims, opts, repeats))?;
        let gpu_col = gpu_ms.map_or("-".to_string(), |g| format!("{g:.3}"));
        println!("{b:>6} {:>6} {p50:>12.3} {p90:>12.3} {:>12.3} {:>12.1} {gpu_col:>14}", ms.len(), p50 / b as f64, 1e3 * b as f64 / p50);
        let mut row = serde_json::json!({"batch": b, "runs": ms.len(), "p50_ms": p50, "p90_ms": p90, "images_per_s": 1e3 * b as f64 / p50,
            "gpu_ms_per_run": gpu_ms, "qkv_heads": args.qkv_heads,
            "device_memory_bytes": device.memory_in_use(), "weight_bytes": model.weight_bytes()});
        if let Some((chunk, plan)) = model.plan(b, h, w, opts) {
            row["graph_batch"] = chunk.into();
            row["arena_bytes"] = plan.arena.into();
            row["peak_live_bytes"] = plan.peak_live.into();
            row["unshared_bytes"] = plan.naive.into();
            memory.push((b, chunk, plan, device.memory_in_use()));
        }
        rows.push(row);
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    println!("\ndevice memory (weights {:.1} MiB):", mib(model.weight_bytes()));
    for (b, chunk, plan, held) in &memory {
        let split = if chunk < b { format!(" (run as batches of {chunk}: the device limits)") } else { String::new() };
        println!(
            "  batch {b:>4}: arena {:.1} MiB = {:.3}x the peak live set {:.1} MiB (unshared {:.1} MiB); held in all {:.1} MiB{split}",
            mib(plan.arena),
            plan.arena as f64 / plan.peak_live.max(1) as f64,
            mib(plan.peak_live),
            mib(plan.naive),
            mib(*held)
        );
    }
    let mut profile_json = serde_json::Value::Null;
    // Per-op times: GPU timestamps, or the CPU backend's clock.
    if has_timestamps(device) || device.cpu().is_some() {
        let b = args.batch.first().copied().unwrap_or(1);
        let pixels = Rng::new(7).vec(b * cfg.num_channels * h * w, 1.0);
        let opts = tessera::RunOptions { profile: true, qkv_heads: args.qkv_heads, logits_only: true, ..Default::default() };
        let out = model.run_blocking(&pixels, [b, cfg.num_channels, h, w], opts)?;
        if let Some(p) = out.profile {
            println!("\nper-op time, batch {b}:\n{p}");
            profile_json = serde_json::json!({
                "batch": b,
                "total_ms": p.total_ms(),
                "ops": p.ops.iter().map(|o| serde_json::json!({"name": o.name, "kind": o.kind, "shape": o.shape, "ms": o.ms, "gflops": o.gflops})).collect::<Vec<_>>(),
            });
            let mut by_kind: Vec<(&str, f64)> = Vec::new();
            for o in &p.ops {
                match by_kind.iter_mut().find(|(k, _)| *k == o.kind) {
                    Some(e) => e.1 += o.ms,
                    None => by_kind.push((o.kind, o.ms)),
                }
            }
            by_kind.sort_by(|a, b| b.1.total_cmp(&a.1));
            println!("\nby kind:");
            for (k, t) in by_kind {
                println!("  {k:<16} {t:>10.3} ms  {:>5.1}%", 100.0 * t / p.total_ms());
            }
        }
    }
    if let Some(g) = device.gpu() {
        print_tuning(g);
    }
    if let Some(path) = &args.json {
        let tuning = device.gpu().is_some_and(|g| g.tuning());
        let doc = serde_json::json!({"adapter": device.name(), "device": if device.cpu().is_some() { "cpu" } else { "gpu" }, "model": model.source, "storage": model.storage().to_string(), "quantization": cfg.quant.as_ref().map(|q| q.to_string()), "arithmetic": model.arithmetic().to_string(), "weight_bytes": model.weight_bytes(), "tuning": tuning, "results": rows, "profile": profile_json});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}

fn print_tuning(gpu: &Gpu) {
    if !gpu.tuning() {
        println!("\ntiles: heuristic (TESSERA_TUNE=1 or --tune times the candidates per shape and caches the choice)");
        return;
    }
    let t = gpu.tuning_stats();
    if let Some(note) = &t.timing_note {
        println!("\ntuning: {note}");
    }
    println!(
        "\ntuning: {} shape(s) timed, {} choice(s) reused; cache {}",
        t.measured,
        t.reused,
        t.path.map(|p| p.display().to_string()).unwrap_or_else(|| "in memory only".into())
    );
    if let Some(e) = t.cache_error {
        println!("tuning cache: {e}");
    }
}

pub fn run(device: &Device, args: &BenchArgs) -> anyhow::Result<()> {
    check_args(args)?;
    if let Some(m) = &args.model {
        return model_bench(device, m, args);
    }
    println!("{}", device.report());
    let timing = if has_timestamps(device) {
        "GPU timestamps"
    } else if device.cpu().is_some() {
        "wall clock (CPU backend)"
    } else {
        "wall clock (no timestamp-query)"
    };
    println!(
        "timing: {timing}; median of up to {} timed submits of {} back-to-back run(s) each, after {} warm-up\n",
        args.iters, args.repeat, args.warmup
    );
    println!(
        "{:<22} {:<18} {:>9} {:>5} {:>11} {:>11} {:>10}  tile",
        "case", "shape", "GFLOP", "runs", "GPU ms", "wall ms", "GFLOP/s"
    );
    let mut rows = Vec::new();
    for case in cases(args) {
        let gflop = case.flops / 1e9;
        let row = match measure(device, &case, args) {
            Ok((runs, gpu_ms, wall_ms, kernel)) => {
                let t = gpu_ms.unwrap_or(wall_ms);
                Row {
                    case: case.name.clone(),
                    shape: case.shape.clone(),
                    gflop,
                    runs,
                    gpu_ms_median: gpu_ms,
                    wall_ms_median: wall_ms,
                    gflops: case.flops / (t * 1e6),
                    kernel,
                    error: None,
                }
            }
            Err(e) => Row {
                case: case.name.clone(),
                shape: case.shape.clone(),
                gflop,
                runs: 0,
                gpu_ms_median: None,
                wall_ms_median: f64::NAN,
                gflops: 0.0,
                kernel: String::new(),
                error: Some(format!("{e:#}")),
            },
        };
        match &row.error {
            None => println!(
                "{:<22} {:<18} {:>9.3} {:>5} {:>11} {:>11.3} {:>10.1}  {}",
                row.case,
                row.shape,
                row.gflop,
                row.runs,
                row.gpu_ms_median.map(|m| format!("{m:.3}")).unwrap_or_else(|| "-".into()),
                row.wall_ms_median,
                row.gflops,
                row.kernel
            ),
            Some(e) => println!("{:<22} {:<18} {:>9.3}  skipped: {e}", row.case, row.shape, row.gflop),
        }
        rows.push(row);
    }
    if let Some(g) = device.gpu() {
        print_tuning(g);
    }
    if let Some(path) = &args.json {
        let doc = match device {
            Device::Gpu(g) => {
                let r = g.report();
                serde_json::json!({
                    "adapter": r.name, "backend": r.backend, "device_type": r.device_type, "driver": r.driver,
                    "timing": timing, "tuning": g.tuning(), "results": rows,
                })
            }
            Device::Cpu(c) => serde_json::json!({
                "adapter": device.name(), "backend": "cpu", "isa": c.isa().name(), "threads": c.threads(),
                "timing": timing, "tuning": false, "results": rows,
            }),
        };
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn gemm_sizes_are_checked() {
        assert_eq!(super::gemm_dims("4096x1024x8").unwrap(), [4096, 1024, 8]);
        for bad in ["0x16x16", "16x16", "axbxc", "16x16x16x16", "-1x2x3"] {
            assert!(super::gemm_dims(bad).unwrap_err().to_string().contains("three positive numbers"), "{bad}");
        }
    }
}
