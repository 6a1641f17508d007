//! tessera's CPU GEMM (packed B, fused epilogue) against two well-kept Rust GEMM crates, `gemm`
//! (runtime-dispatched AVX-512 / AVX2 / NEON kernels, rayon threads) and `matrixmultiply`
//! (AVX2/FMA kernels, its own threads), on the matrix products of DeiT-S/16 and ViT-B/16 at batch 1
//! and 8: `C = A (M x K) x B (K x N)`, row-major f32, the same threads for all three. Prints the
//! minimum over rounds of the median ms per product, and GFLOP/s.
//!
//!     cargo run --release -- [threads]

use std::time::Instant;
use tessera::cpu::gemm::{gemm as tessera_gemm, tile, Act, Epilogue, Gemm, PackedB};
use tessera::cpu::{Cpu, CpuOptions};

fn median_ms(mut f: impl FnMut(), iters: usize) -> f64 {
    f();
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[iters / 2]
}

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let cpu = Cpu::new(&CpuOptions { threads: Some(threads), ..CpuOptions::from_env().expect("TESSERA_* variables") }).expect("cpu");
    let par = gemm::Parallelism::Rayon(threads);
    rayon_pool(threads);
    std::env::set_var("MATMUL_NUM_THREADS", threads.to_string());
    println!("threads {threads}, tessera kernels {}", cpu.isa().name());
    println!("{:<22} {:>12} {:>12} {:>16}   GFLOP/s (tessera / gemm / matrixmultiply)", "M x K x N", "tessera ms", "gemm ms", "matrixmultiply ms");
    let only: Option<Vec<(usize, usize, usize)>> = std::env::var("SHAPES").ok().map(|v| {
        v.split(',').map(|s| {
            let d: Vec<usize> = s.split('x').map(|x| x.parse().unwrap()).collect();
            (d[0], d[1], d[2])
        }).collect()
    });
    let shapes = only.unwrap_or_else(|| vec![
        (197, 384, 1152), (197, 384, 384), (197, 384, 1536), (197, 1536, 384),
        (197, 768, 2304), (197, 768, 768), (197, 768, 3072), (197, 3072, 768),
        (1576, 384, 1152), (1576, 384, 1536), (1576, 1536, 384),
        (1576, 768, 2304), (1576, 768, 3072), (1576, 3072, 768),
    ]);
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5).collect();
        let mut c = vec![0f32; m * n];
        let packed = PackedB::pack(&b, k, n, n, tile(cpu.isa()).1);
        let iters = 10;
        let mut best = [f64::INFINITY; 3];
        for _ in 0..4 {
            let bias = vec![0.1f32; n];
            let epi = match std::env::var("EPI").as_deref() {
                Ok("gelu") => Epilogue { bias: Some(&bias), act: Act::Gelu, residual: None, accumulate: false },
                Ok("bias") => Epilogue { bias: Some(&bias), act: Act::None, residual: None, accumulate: false },
                _ => Epilogue::NONE,
            };
            best[0] = best[0].min(median_ms(|| tessera_gemm(&cpu, &Gemm::new(m, &a, k, &packed, n), &mut c, &epi), iters));
            if let Ok(kname) = std::env::var("INT8") {
                // tessera's int8 arithmetic on the same product (B quantized per channel, A per row
                // as it runs): the time goes in the gemm column.
                use tessera::cpu::gemm_int8::{gemm_int8, scratch_len, Int8Panels, IntKernel};
                let kernel = IntKernel::ALL.into_iter().find(|k| k.name() == kname).unwrap_or(IntKernel::detect(cpu.isa()));
                let q = tessera::quant::QuantWeight::quantize(&b, k, n, 8, k, false);
                let ib = Int8Panels::pack(&q, kernel).expect("int8 panels");
                let mut scratch = vec![0f32; scratch_len(m, &ib)];
                best[1] = best[1].min(median_ms(|| gemm_int8(&cpu, m, &a, k, &ib, &mut c, n, &epi, &mut scratch), iters));
                if std::env::var("MIX").is_ok() {
                    // f32 right after each int8 product: does the int8 kernel slow what follows?
                    let mut c2 = c.clone();
                    let mixed = median_ms(|| {
                        gemm_int8(&cpu, m, &a, k, &ib, &mut c2, n, &epi, &mut scratch);
                        let t = Instant::now();
                        tessera_gemm(&cpu, &Gemm::new(m, &a, k, &packed, n), &mut c, &epi);
                        MIXED.with(|x| x.set(t.elapsed().as_secs_f64() * 1e3));
                    }, iters);
                    let _ = mixed;
                    best[2] = best[2].min(MIXED.with(|x| x.get()));
                }
                continue;
            }
            if std::env::var("ONLY_TESSERA").is_ok() {
                continue;
            }
            best[1] = best[1].min(median_ms(
                || unsafe {
                    gemm::gemm(m, n, k, c.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), 1, k as isize, b.as_ptr(), 1, n as isize, 0.0, 1.0, false, false, false, par)
                },
                iters,
            ));
            best[2] = best[2].min(median_ms(
                || unsafe { matrixmultiply::sgemm(m, k, n, 1.0, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1, 0.0, c.as_mut_ptr(), n as isize, 1) },
                iters,
            ));
        }
        let gf = |ms: f64| 2.0 * (m * n * k) as f64 / (ms * 1e6);
        println!(
            "{:<22} {:>12.3} {:>12.3} {:>16.3}   {:.0} / {:.0} / {:.0}",
            format!("{m}x{k}x{n}"),
            best[0],
            best[1],
            best[2],
            gf(best[0]),
            gf(best[1]),
            gf(best[2])
        );
    }
}

std::thread_local! { static MIXED: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) }; }

fn rayon_pool(threads: usize) {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
}
