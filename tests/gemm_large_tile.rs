//! The 128x128 / 8x8-per-invocation GEMM variant (opt-in natively with TESSERA_GEMM_TILE=large)
//! against the f64 reference: ragged edges in M and N, vec4 and scalar paths. Its own test binary,
//! so that the variable is set before anything reads it and no other test runs beside it.

mod common;
use common::*;
use tessera::Activation;

#[test]
fn large_tile_matmul_matches_the_reference() {
    std::env::set_var("TESSERA_GEMM_TILE", "large");
    for (m, k, n, bias, act, residual, seed) in
        [(300, 64, 260, true, Activation::Gelu, true, 20), (129, 33, 131, true, Activation::None, false, 21), (1, 8, 4, false, Activation::Tanh, false, 22)]
    {
        check_matmul(m, k, n, bias, act, residual, seed);
    }
}
