//! Every GEMM tile (64x64 / 4x4, 128x128 / 8x8, 32x64 and 32x32 / 2x4 per invocation, and the
//! first two with the next K step prefetched into registers), forced natively with
//! TESSERA_GEMM_TILE, against the f64 reference: ragged edges in M and N, vec4 and scalar paths,
//! every epilogue. Its own test binary, so that setting the variable affects no other test.

mod common;
use common::*;
use tessera::reference::{self as r, Rng};
use tessera::{Activation, CompileOptions, Executable, Graph, Op, Weights};

#[test]
fn every_tile_matches_the_reference() {
    let gpu = gpu();
    for (tile, marker) in [
        ("small", "BM=64,BN=64"),
        ("large", "BM=128,BN=128"),
        ("narrow", "BM=32,BN=64"),
        ("tiny", "BM=32,BN=32"),
        ("small-prefetch", "PREFETCH,BM=64,BN=64"),
        ("large-prefetch", "PREFETCH,BM=128,BN=128"),
    ] {
        std::env::set_var("TESSERA_GEMM_TILE", tile);
        for (m, k, n, bias, act, residual, seed) in [
            (300, 64, 260, true, Activation::Gelu, true, 20),
            (129, 33, 131, true, Activation::None, false, 21),
            (1, 8, 4, false, Activation::Tanh, false, 22),
        ] {
            let mut rng = Rng::new(seed);
            let a = rng.vec(m * k, 1.0);
            let b = rng.vec(k * n, 1.0 / (k as f32).sqrt());
            let bv = rng.vec(n, 0.5);
            let rv = rng.vec(m * n, 1.0);
            let mut g = Graph::new();
            let mut w = Weights::new(&gpu);
            let mut ids = vec![g.input("a", &[m, k]), g.weight("b", &[k, n])];
            w.insert("b", &[k, n], &b).unwrap();
            if bias {
                ids.push(g.weight("bias", &[n]));
                w.insert("bias", &[n], &bv).unwrap();
            }
            let mut feeds: Vec<(&str, &[f32])> = vec![("a", &a)];
            if residual {
                ids.push(g.input("residual", &[m, n]));
                feeds.push(("residual", &rv));
            }
            let out = g.op("gemm", Op::MatMul { bias, act, residual }, &ids).unwrap();
            g.output(out);
            let exe = pollster::block_on(Executable::compile(&gpu, &g, &w, &CompileOptions::default())).unwrap();
            let variant = &exe.kernels()[0].1;
            assert!(variant.contains(marker), "TESSERA_GEMM_TILE={tile} ran {variant}");
            let got = exe.run_blocking(&feeds).unwrap().remove(0).data;
            let want = r::matmul(&a, &b, m, k, n, bias.then_some(&bv[..]), act, residual.then_some(&rv[..]));
            assert_close(&format!("{tile} tile {m}x{k}x{n} bias={bias} act={act:?} residual={residual}"), &got, &want, 1e-5, 1e-4);
        }
    }
}
