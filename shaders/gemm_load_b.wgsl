// The GEMM's B operand for gemm.wgsl: B (K, N) row-major in the including kernel's `b` (stored
// as S4 with VEC4, else S), four columns at a time, zero outside K x N. VEC4 (N a multiple of 4)
// reads one vec4; otherwise each element is bounds-checked.
#ifdef QUANT
// Quantized B (crate::quant), QBITS bits per value: words (ceil(K / QPW), N), word (kw, n) holding
// B[kw * QPW + i][n] in bits QBITS * i.., stored unsigned with offset 2^(QBITS - 1); from word
// P.qso the scales (ceil(K / P.qgroup), N): f32, or with QSCALE16 f16 pairs (scale 2i in the low
// half of word P.qso + i). Dequantized here, in registers.
const QPW: u32 = 32u / QBITS;
const QMASK: u32 = (1u << QBITS) - 1u;
const QOFF: f32 = f32(1u << (QBITS - 1u));
#ifdef QSCALE16
// f16 bits (in the low 16 of each lane) to f32, for finite values; by hand, since
// unpack2x16float needs a capability some native backends lack.
fn half4(h: vec4<u32>) -> vec4<f32> {
    let e = (h >> vec4<u32>(10u)) & vec4<u32>(0x1fu);
    let m = h & vec4<u32>(0x3ffu);
    let sign = (h >> vec4<u32>(15u)) << vec4<u32>(31u);
    let normal = bitcast<vec4<f32>>(sign | ((e + vec4<u32>(112u)) << vec4<u32>(23u)) | (m << vec4<u32>(13u)));
    let sub = vec4<f32>(m) * 5.9604645e-8 * select(vec4<f32>(1.0), vec4<f32>(-1.0), sign != vec4<u32>(0u));
    return select(normal, sub, e == vec4<u32>(0u));
}
#endif
#ifdef VEC4
fn load_b4(k: u32, col: u32) -> vec4<f32> {
    if (k < P.k && col < P.n) {
        let w = b[((k / QPW) * P.n + col) / 4u];
        let si = (k / P.qgroup) * P.n + col;
#ifdef QSCALE16
        // Four f16 scales: two words, the first or second half of a vec4 (si % 4 == 0).
        let sw = b[(P.qso + si / 2u) / 4u];
        let pair = select(sw.xy, sw.zw, ((si / 2u) % 4u) != 0u);
        let s = half4(vec4<u32>(pair.x, pair.x >> 16u, pair.y, pair.y >> 16u) & vec4<u32>(0xffffu));
#else
        let s = bitcast<vec4<f32>>(b[(P.qso + si) / 4u]);
#endif
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
#ifdef QSCALE16
                let si = srow - P.qso + col + j;
                let s = half4(vec4<u32>((b[P.qso + si / 2u] >> (16u * (si % 2u))) & 0xffffu)).x;
#else
                let s = bitcast<f32>(b[srow + col + j]);
#endif
                v[j] = (f32((b[row + col + j] >> shift) & QMASK) - QOFF) * s;
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
