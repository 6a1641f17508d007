// Matrix multiply with a fused epilogue: out = act(a * b + bias) + residual.
//   a        (M, K)  row-major
//   b        (K, N)  row-major (a Linear layer's weight, transposed once at load)
//   bias     (N)      when BIAS
//   residual (M, N)   when RESIDUAL, added after the activation
//   out      (M, N)
// Tensors are stored as S (f32 or f16), computed in f32.
// GELU applies exact (erf) GELU, TANH applies tanh. VEC4 (set when K % 4 == 0 and N % 4 == 0) reads and writes vec4s;
// otherwise scalars with per-element bounds. B is loaded by gemm_load_b.wgsl; tiling lives in
// gemm.wgsl, appended after this file.
// SPLITK (with VEC4, no epilogue flags): workgroup z multiplies only K range z*kc..(z+1)*kc and
// writes its f32 partial product to out as (splits, M, N); splitk_reduce.wgsl sums the parts
// and applies the epilogue.
// HEADS (with VEC4; the QKV projection of attention): a is (B, T, K) with T = tokens, N = 3*D,
// and C is written head-major as (3, B, D / dh, T, dh) instead of (B*T, N).
// QUANT: b is a quantized weight (crate::quant; read by gemm_load_b.wgsl): packed words, then
// from word qso its f32 scales, one per qgroup values of K and column.
#ifdef HEADS
#ifdef QUANT
struct Params { m: u32, n: u32, k: u32, kc: u32, tokens: u32, dh: u32, qgroup: u32, qso: u32 }
#else
struct Params { m: u32, n: u32, k: u32, kc: u32, tokens: u32, dh: u32, _pad0: u32, _pad1: u32 }
#endif
#else
#ifdef QUANT
struct Params { m: u32, n: u32, k: u32, kc: u32, qgroup: u32, qso: u32, _pad0: u32, _pad1: u32 }
#else
struct Params { m: u32, n: u32, k: u32, kc: u32 }
#endif
#endif
@group(0) @binding(_) var<uniform> P: Params;
#ifdef VEC4
#ifdef SPLITK
@group(0) @binding(_) var<storage, read_write> out: array<vec4<f32>>;
var<private> split_z: u32;
#else
@group(0) @binding(_) var<storage, read_write> out: array<S4>;
#endif
@group(0) @binding(_) var<storage, read_write> a: array<S4>;
#ifdef QUANT
@group(0) @binding(_) var<storage, read> b: array<vec4<u32>>;
#else
@group(0) @binding(_) var<storage, read> b: array<S4>;
#endif
#ifdef BIAS
@group(0) @binding(_) var<storage, read> bias: array<S4>;
#endif
#ifdef RESIDUAL
@group(0) @binding(_) var<storage, read_write> residual: array<S4>;
#endif
#else
@group(0) @binding(_) var<storage, read_write> out: array<S>;
@group(0) @binding(_) var<storage, read_write> a: array<S>;
#ifdef QUANT
@group(0) @binding(_) var<storage, read> b: array<u32>;
#else
@group(0) @binding(_) var<storage, read> b: array<S>;
#endif
#ifdef BIAS
@group(0) @binding(_) var<storage, read> bias: array<S>;
#endif
#ifdef RESIDUAL
@group(0) @binding(_) var<storage, read_write> residual: array<S>;
#endif
#endif

#ifdef VEC4
fn load_a4(row: u32, k: u32) -> vec4<f32> {
    if (row < P.m && k < P.k) {
        return vec4<f32>(a[(row * P.k + k) / 4u]);
    }
    return vec4<f32>(0.0);
}

fn store_c4(row: u32, col: u32, acc: vec4<f32>) {
    if (row >= P.m || col >= P.n) {
        return;
    }
    let o = (row * P.n + col) / 4u;
#ifdef SPLITK
    out[split_z * (P.m * P.n / 4u) + o] = acc;
#else
#ifdef HEADS
    // Part (q, k or v), batch item, head, token, dim; a vec4 never straddles two heads (dh % 4 == 0).
    let d = P.n / 3u;
    let c = col % d;
    let dst = (col / d) * P.m * d + ((row / P.tokens) * (d / P.dh) + c / P.dh) * P.tokens * P.dh
        + (row % P.tokens) * P.dh + c % P.dh;
    out[dst / 4u] = S4(epilogue4(acc, col, o));
#else
    out[o] = S4(epilogue4(acc, col, o));
#endif
#endif
}
#else
fn load_a4(row: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (row < P.m) {
        for (var j = 0u; j < 4u; j++) {
            if (k + j < P.k) {
                v[j] = f32(a[row * P.k + k + j]);
            }
        }
    }
    return v;
}

fn store_c4(row: u32, col: u32, acc: vec4<f32>) {
    if (row >= P.m) {
        return;
    }
    // The epilogue's bias and residual, zero past the last column.
    var bv = vec4<f32>(0.0);
    var rv = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (col + j < P.n) {
#ifdef BIAS
            bv[j] = f32(bias[col + j]);
#endif
#ifdef RESIDUAL
            rv[j] = f32(residual[row * P.n + col + j]);
#endif
        }
    }
    let v = epilogue(acc, bv, rv);
    for (var j = 0u; j < 4u; j++) {
        if (col + j < P.n) {
            out[row * P.n + col + j] = S(v[j]);
        }
    }
}
#endif
