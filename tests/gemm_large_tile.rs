//! The 128x128 / 8x8-per-invocation GEMM variant (opt-in natively with TESSERA_GEMM_TILE=large)
//! against the f64 reference: ragged edges in M and N, vec4 and scalar paths. Its own test binary,
//! so that the variable is set before anything reads it and no other test runs beside it.

mod common;
use common::*;
use tessera::reference::{self as r, Rng};
use tessera::{Activation, Op};

#[test]
fn large_tile_matmul_matches_the_reference() {
    std::env::set_var("TESSERA_GEMM_TILE", "large");
    for (m, k, n, bias, act, residual, seed) in
        [(300, 64, 260, true, Activation::Gelu, true, 20), (129, 33, 131, true, Activation::None, false, 21), (1, 8, 4, false, Activation::Tanh, false, 22)]
    {
        let mut rng = Rng::new(seed);
        let a = rng.vec(m * k, 1.0);
        let b = rng.vec(k * n, 1.0 / (k as f32).sqrt());
        let bv = rng.vec(n, 0.5);
        let rv = rng.vec(m * n, 1.0);
        let mut args = vec![input("a", &[m, k], &a), weight("b", &[k, n], &b)];
        if bias {
            args.push(weight("bias", &[n], &bv));
        }
        if residual {
            args.push(input("residual", &[m, n], &rv));
        }
        let got = run_op(Op::MatMul { bias, act, residual }, &args);
        let want = r::matmul(&a, &b, m, k, n, bias.then_some(&bv[..]), act, residual.then_some(&rv[..]));
        assert_close(&format!("large-tile matmul {m}x{k}x{n}"), &got, &want, 1e-5, 1e-4);
    }
}
