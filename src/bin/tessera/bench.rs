//! `tessera bench`: kernel throughput on the shapes of ViT-B/16, timed on the GPU with timestamp
//! queries where the adapter has them (wall clock otherwise).

use std::sync::Arc;
use std::time::Instant;
use tessera::reference::Rng;
use tessera::{CompileOptions, Executable, Gpu, Graph, Weights};

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
    /// Batch sizes for the ViT-B/16 shapes (197 tokens per image).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    batch: Vec<usize>,
    /// Only cases whose name contains this (e.g. `gemm`, `attention`, `1024`).
    #[arg(long)]
    only: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
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

fn measure(gpu: &Arc<Gpu>, case: &Case, args: &BenchArgs) -> anyhow::Result<(usize, Option<f64>, f64)> {
    let mut rng = Rng::new(1);
    let mut weights = Weights::new(gpu);
    for (name, shape) in &case.weights {
        weights.insert(name, shape, &rng.vec(shape.iter().product(), 0.1))?;
    }
    let data: Vec<(String, Vec<f32>)> =
        case.inputs.iter().map(|(n, s)| (n.clone(), rng.vec(s.iter().product(), 1.0))).collect();
    let feeds: Vec<(&str, &[f32])> = data.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let profile = gpu.report().timestamp_query;
    let exe = pollster::block_on(Executable::compile(gpu, &case.graph, &weights, &CompileOptions { profile }))?;
    for _ in 0..args.warmup {
        exe.run_blocking(&feeds)?;
    }
    let (mut gpu_ms, mut wall_ms) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while wall_ms.len() < args.iters.max(1) && (wall_ms.is_empty() || start.elapsed().as_secs_f64() < args.max_seconds) {
        let t = Instant::now();
        if profile {
            let (_, p) = pollster::block_on(exe.run_profiled(&feeds))?;
            gpu_ms.push(p.total_ms());
        } else {
            exe.run_blocking(&feeds)?;
        }
        wall_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let runs = wall_ms.len();
    let gpu = if gpu_ms.is_empty() { None } else { Some(median(&mut gpu_ms)) };
    Ok((runs, gpu, median(&mut wall_ms)))
}

pub fn run(gpu: &Arc<Gpu>, args: &BenchArgs) -> anyhow::Result<()> {
    println!("{}", gpu.report());
    let timing = if gpu.report().timestamp_query { "GPU timestamps" } else { "wall clock (no timestamp-query)" };
    println!("timing: {timing}; median of up to {} runs after {} warm-up\n", args.iters, args.warmup);
    println!("{:<22} {:<18} {:>9} {:>5} {:>11} {:>11} {:>10}", "case", "shape", "GFLOP", "runs", "GPU ms", "wall ms", "GFLOP/s");
    let mut rows = Vec::new();
    for case in cases(args) {
        let gflop = case.flops / 1e9;
        let row = match measure(gpu, &case, args) {
            Ok((runs, gpu_ms, wall_ms)) => {
                let t = gpu_ms.unwrap_or(wall_ms);
                Row {
                    case: case.name.clone(),
                    shape: case.shape.clone(),
                    gflop,
                    runs,
                    gpu_ms_median: gpu_ms,
                    wall_ms_median: wall_ms,
                    gflops: case.flops / (t * 1e6),
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
                error: Some(format!("{e:#}")),
            },
        };
        match &row.error {
            None => println!(
                "{:<22} {:<18} {:>9.3} {:>5} {:>11} {:>11.3} {:>10.1}",
                row.case,
                row.shape,
                row.gflop,
                row.runs,
                row.gpu_ms_median.map(|m| format!("{m:.3}")).unwrap_or_else(|| "-".into()),
                row.wall_ms_median,
                row.gflops
            ),
            Some(e) => println!("{:<22} {:<18} {:>9.3}  skipped: {e}", row.case, row.shape, row.gflop),
        }
        rows.push(row);
    }
    if let Some(path) = &args.json {
        let r = gpu.report();
        let doc = serde_json::json!({
            "adapter": r.name, "backend": r.backend, "device_type": r.device_type, "driver": r.driver,
            "timing": timing, "results": rows,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}
