// The GEMM's B operand for gemm.wgsl: B (K, N) row-major in the including kernel's `b` (stored
// as S4 with VEC4, else S), four columns at a time, zero outside K x N. VEC4 (N a multiple of 4)
// reads one vec4; otherwise each element is bounds-checked.
#ifdef QUANT
// Quantized B (crate::quant), QBITS bits per value: words (ceil(K / QPW), N), word (kw, n) holding
// B[kw * QPW + i][n] in bits QBITS * i.., stored unsigned with offset 2^(QBITS - 1); from word
// P.qso the f32 scales (ceil(K / P.qgroup), N). Dequantized here, in registers.
const QPW: u32 = 32u / QBITS;
const QMASK: u32 = (1u << QBITS) - 1u;
const QOFF: f32 = f32(1u << (QBITS - 1u));
#ifdef VEC4
fn load_b4(k: u32, col: u32) -> vec4<f32> {
    if (k < P.k && col < P.n) {
        let w = b[((k / QPW) * P.n + col) / 4u];
        let s = bitcast<vec4<f32>>(b[(P.qso + (k / P.qgroup) * P.n + col) / 4u]);
        let f = (w >> vec4<u32>((k % QPW) * QBITS)) & vec4<u32>(QMASK);
        return (vec4<f32>(f) - QOFF) * s;
    }
    return vec4<f32>(0.0);
}
#else
fn load_b4(k: u32, col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (k < P.k) {
        let row = (k / QPW) * P.n;
        let srow = P.qso + (k / P.qgroup) * P.n;
        let shift = (k % QPW) * QBITS;
        for (var j = 0u; j < 4u; j++) {
            if (col + j < P.n) {
                v[j] = (f32((b[row + col + j] >> shift) & QMASK) - QOFF) * bitcast<f32>(b[srow + col + j]);
            }
        }
    }
    return v;
}
#endif
#else
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
#endif
