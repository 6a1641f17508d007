// The GEMM's B operand for gemm.wgsl: B (K, N) row-major in the including kernel's `b` (stored
// as S4 with VEC4, else S), four columns at a time, zero outside K x N. VEC4 (N a multiple of 4)
// reads one vec4; otherwise each element is bounds-checked.
#ifdef VEC4
fn load_b4(k: u32, col: u32) -> vec4<f32> {
    if (k < P.k && col < P.n) {
        return vec4<f32>(b[(k * P.n + col) / 4u]);
    }
    return vec4<f32>(0.0);
}
#else
fn load_b4(k: u32, col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (k < P.k) {
        for (var j = 0u; j < 4u; j++) {
            if (col + j < P.n) {
                v[j] = f32(b[k * P.n + col + j]);
            }
        }
    }
    return v;
}
#endif
