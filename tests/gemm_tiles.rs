//! Every GEMM tile (64x64 / 4x4, 128x128 / 8x8, 32x64 and 32x32 / 2x4 per invocation, and the
//! first two with the next K step prefetched into registers or with the block update unrolled),
//! forced natively with
//! TESSERA_GEMM_TILE, against the f64 reference: ragged edges in M and N, vec4 and scalar paths,
//! every epilogue; and the split-K kernels (K in 2, 4 or 8 ranges, then a reduction with the
//! epilogue), f32 and f16. Each tile is forced as `TESSERA_GEMM_TILE` would (`GpuOptions::forced_kernels`).

mod common;
use common::*;
use tessera::reference::{self as r, Rng};
use tessera::{Activation, Op};

/// Every tile by its TESSERA_GEMM_TILE name, with the text its shader variant's key shows.
const TILES: [(&str, &str); 8] = [
    ("small", "BM=64,BN=64"),
    ("large", "BM=128,BN=128"),
    ("narrow", "BM=32,BN=64"),
    ("tiny", "BM=32,BN=32"),
    ("small-prefetch", "PREFETCH,BM=64,BN=64"),
    ("large-prefetch", "PREFETCH,BM=128,BN=128"),
    ("64x64-unrolled", "UNROLL_4X4,BM=64,BN=64"),
    ("128x128-unrolled", "UNROLL_8X8,BM=128,BN=128"),
];

/// One matmul node with the given epilogue, compiled and run; returns the kernels it ran and its
/// output, and the f64 reference output. With f16 storage every tensor is an f16 weight (graph
/// inputs are f32).
#[allow(clippy::too_many_arguments)]
fn run_matmul(gpu: &std::sync::Arc<tessera::Gpu>, m: usize, k: usize, n: usize, bias: bool, act: Activation, residual: bool, seed: u64, f16: bool) -> (Vec<(String, String)>, Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let round = |v: Vec<f32>| if f16 { v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect() } else { v };
    let a = round(rng.vec(m * k, 1.0));
    let b = round(rng.vec(k * n, 1.0 / (k as f32).sqrt()));
    let bv = round(rng.vec(n, 0.5));
    let rv = round(rng.vec(m * n, 1.0));
    let data = if f16 { weight } else { input };
    let mut args = vec![data("a", &[m, k], &a), weight("b", &[k, n], &b)];
    if bias {
        args.push(weight("bias", &[n], &bv));
    }
    if residual {
        args.push(data("residual", &[m, n], &rv));
    }
    let (kernels, out) = run_op_on(gpu, Op::MatMul { bias, act, residual }, &args, f16).expect("compile and run");
    let want = r::matmul(&a, &b, m, k, n, bias.then_some(&bv[..]), act, residual.then_some(&rv[..]));
    (kernels, out.data, want)
}

/// The head-major QKV projection with every tile (and the tile's prefetch variant): `x (B, T, K)`
/// times `w (K, 3*H*dh)` plus bias, compared as (3, B, H, T, dh) with the reference product
/// rearranged. Called from the one test below (the variable is process-wide).
fn head_major_projection_every_tile() {
    for (tile, marker) in TILES {
        let gpu = gpu_forcing("matmul", tile);
        for (b, t, k, heads, dh, bias, f16, seed) in
            [(2, 37, 36, 3, 8, true, false, 40), (1, 197, 768, 12, 64, true, false, 41), (3, 20, 64, 2, 4, false, true, 42)]
        {
            let d = heads * dh;
            let mut rng = Rng::new(seed);
            let round = |v: Vec<f32>| if f16 { v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect() } else { v };
            let x = round(rng.vec(b * t * k, 1.0));
            let w = round(rng.vec(k * 3 * d, 1.0 / (k as f32).sqrt()));
            let bv = round(rng.vec(3 * d, 0.5));
            let data = if f16 { weight } else { input };
            let mut args = vec![data("x", &[b, t, k], &x), weight("w", &[k, 3 * d], &w)];
            if bias {
                args.push(weight("bias", &[3 * d], &bv));
            }
            let (kernels, out) = run_op_on(&gpu, Op::MatMulHeads { heads, bias }, &args, f16).expect("compile and run");
            assert_eq!(out.shape, vec![3, b, heads, t, dh]);
            let variant = &kernels[0].1;
            let dims = marker.trim_start_matches("PREFETCH,").trim_start_matches("UNROLL_4X4,").trim_start_matches("UNROLL_8X8,");
            let prefetch = marker.starts_with("PREFETCH");
            assert!(variant.contains(dims) && variant.contains("HEADS"), "TESSERA_GEMM_TILE={tile} ran {variant}");
            assert_eq!(variant.contains("PREFETCH"), prefetch, "TESSERA_GEMM_TILE={tile} ran {variant}");
            let got = out.data;
            let flat = r::matmul(&x, &w, b * t, k, 3 * d, bias.then_some(&bv[..]), Activation::None, None);
            let mut want = vec![0f32; flat.len()];
            for (i, &v) in flat.iter().enumerate() {
                let (row, c) = (i / (3 * d), i % (3 * d));
                let (bb, tt, part, h, dd) = (row / t, row % t, c / d, (c % d) / dh, c % dh);
                want[(((part * b + bb) * heads + h) * t + tt) * dh + dd] = v;
            }
            let tol = if f16 { 1e-2 } else { 1e-5 };
            assert_close(&format!("{tile} head-major {b}x{t}x{k} -> 3x{heads}x{dh} f16={f16}"), &got, &want, tol, tol.max(1e-4));
        }
    }
}

#[test]
fn every_tile_matches_the_reference() {
    head_major_projection_every_tile();
    // Split K: the partial products, then the reduction with the epilogue, as two dispatches.
    // (M, K, N): ragged M and N edges, a K that leaves the last range short, batch-1 fc2's shape.
    for split in ["64x64-split2", "64x64-split4", "64x64-split8"] {
        let gpu = gpu_forcing("matmul", split);
        for (m, k, n, bias, act, residual, seed, f16) in [
            (300, 1040, 260, true, Activation::Gelu, true, 30, false),
            (70, 2048, 132, true, Activation::QuickGelu, false, 31, false),
            (197, 3072, 768, true, Activation::None, true, 32, false),
            (130, 1024, 68, true, Activation::Tanh, false, 33, true),
        ] {
            let (kernels, got, want) = run_matmul(&gpu, m, k, n, bias, act, residual, seed, f16);
            let what = format!("{split} {m}x{k}x{n} bias={bias} act={act:?} residual={residual} f16={f16}");
            assert_eq!(kernels.len(), 2, "{what}: {kernels:?}");
            assert!(kernels[0].1.contains("SPLITK"), "{what}: {kernels:?}");
            assert!(kernels[1].0 == "op (reduce)" && kernels[1].1.starts_with("splitk_reduce"), "{what}: {kernels:?}");
            assert_eq!(kernels[1].1.contains("F16"), f16, "{what}: {kernels:?}");
            let tol = if f16 { 1e-2 } else { 1e-5 };
            assert_close(&what, &got, &want, tol, if f16 { 1e-2 } else { 1e-4 });
        }
        // Where K is too short to split, forcing a split kernel is an error that says so.
        let a = vec![0.5f32; 64 * 64];
        let e = run_op_on(&gpu, Op::MatMul { bias: false, act: Activation::None, residual: false }, &[input("a", &[64, 64], &a), weight("b", &[64, 64], &a)], false)
            .expect_err("a split of K = 64 does not apply");
        assert!(e.to_string().contains(&format!("`{split}` does not apply")), "{e}");
    }
    for (tile, marker) in TILES {
        let gpu = gpu_forcing("matmul", tile);
        for (m, k, n, bias, act, residual, seed) in [
            (300, 64, 260, true, Activation::Gelu, true, 20),
            (129, 33, 131, true, Activation::None, false, 21),
            (1, 8, 4, false, Activation::Tanh, false, 22),
        ] {
            let (kernels, got, want) = run_matmul(&gpu, m, k, n, bias, act, residual, seed, false);
            let variant = &kernels[0].1;
            assert!(variant.contains(marker), "TESSERA_GEMM_TILE={tile} ran {variant}");
            assert_close(&format!("{tile} tile {m}x{k}x{n} bias={bias} act={act:?} residual={residual}"), &got, &want, 1e-5, 1e-4);
        }
    }
}
