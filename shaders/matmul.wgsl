// Matrix multiply with a fused epilogue: out = act(a * b + bias) + residual.
//   a        (M, K)  row-major
//   b        (K, N)  row-major (a Linear layer's weight, transposed once at load)
//   bias     (N)      when BIAS
//   residual (M, N)   when RESIDUAL, added after the activation
//   out      (M, N)
// GELU applies exact (erf) GELU, TANH applies tanh. VEC4 (set when K % 4 == 0 and N % 4 == 0) reads and writes vec4s;
// otherwise scalars with per-element bounds. Tiling lives in gemm.wgsl, appended after this file.
struct Params { m: u32, n: u32, k: u32, _pad: u32 }
@group(0) @binding(0) var<uniform> P: Params;
#ifdef VEC4
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> a: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> b: array<vec4<f32>>;
#ifdef BIAS
@group(0) @binding(4) var<storage, read_write> bias: array<vec4<f32>>;
#endif
#ifdef RESIDUAL
@group(0) @binding(5) var<storage, read_write> residual: array<vec4<f32>>;
#endif
#else
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> b: array<f32>;
#ifdef BIAS
@group(0) @binding(4) var<storage, read_write> bias: array<f32>;
#endif
#ifdef RESIDUAL
@group(0) @binding(5) var<storage, read_write> residual: array<f32>;
#endif
#endif

#ifdef VEC4
fn load_a4(row: u32, k: u32) -> vec4<f32> {
    if (row < P.m && k < P.k) {
        return a[(row * P.k + k) / 4u];
    }
    return vec4<f32>(0.0);
}

fn load_b4(k: u32, col: u32) -> vec4<f32> {
    if (k < P.k && col < P.n) {
        return b[(k * P.n + col) / 4u];
    }
    return vec4<f32>(0.0);
}

fn store_c4(row: u32, col: u32, acc: vec4<f32>) {
    if (row >= P.m || col >= P.n) {
        return;
    }
    var v = acc;
#ifdef BIAS
    v += bias[col / 4u];
#endif
#ifdef GELU
    v = vec4<f32>(gelu_erf(v.x), gelu_erf(v.y), gelu_erf(v.z), gelu_erf(v.w));
#endif
#ifdef TANH
    v = tanh(v);
#endif
    let o = (row * P.n + col) / 4u;
#ifdef RESIDUAL
    v += residual[o];
#endif
    out[o] = v;
}
#else
fn load_a4(row: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (row < P.m) {
        for (var j = 0u; j < 4u; j++) {
            if (k + j < P.k) {
                v[j] = a[row * P.k + k + j];
            }
        }
    }
    return v;
}

fn load_b4(k: u32, col: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (k < P.k) {
        for (var j = 0u; j < 4u; j++) {
            if (col + j < P.n) {
                v[j] = b[k * P.n + col + j];
            }
        }
    }
    return v;
}

fn store_c4(row: u32, col: u32, acc: vec4<f32>) {
    if (row >= P.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let c = col + j;
        if (c < P.n) {
            var v = acc[j];
#ifdef BIAS
            v += bias[c];
#endif
#ifdef GELU
            v = gelu_erf(v);
#endif
#ifdef TANH
            v = tanh(v);
#endif
            let o = row * P.n + c;
#ifdef RESIDUAL
            v += residual[o];
#endif
            out[o] = v;
        }
    }
}
#endif
