// Patch embedding as an implicit GEMM: a strided convolution (kernel = stride = patch) whose
// im2col matrix is gathered inside the tile loader, never stored.
//   image  (B, C, H, W)  always f32 (the input); the rest are stored as S (f32 or f16)
//   b      (C*p*p, D)   the conv weight (D, C, p, p) flattened and transposed once at load
//   bias   (D)
//   tokens (PREFIX, D)  class (and distillation) token, when PREFIX > 0
//   pos    (T, D)       position embeddings, T = PREFIX + (H/p)*(W/p)
//   out    (B, T, D)    row t < PREFIX: tokens[t] + pos[t]; otherwise patch @ b + bias + pos[t]
// Rows of the GEMM are output tokens (M = B*T), so prefix rows ride along with zero A rows.
struct Params {
    m: u32, n: u32, k: u32, channels: u32,
    height: u32, width: u32, psize: u32, grid_w: u32,
    tokens: u32, prefix: u32, _pad0: u32, _pad1: u32,
}
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S>;
@group(0) @binding(_) var<storage, read_write> image: array<f32>;
@group(0) @binding(_) var<storage, read> b: array<S>;
@group(0) @binding(_) var<storage, read> bias: array<S>;
@group(0) @binding(_) var<storage, read> pos: array<S>;
#ifdef PREFIX
@group(0) @binding(_) var<storage, read> prefix_tokens: array<S>;
#endif

fn pixel(row: u32, k: u32) -> f32 {
    let t = row % P.tokens;
    if (row >= P.m || k >= P.k || t < P.prefix) {
        return 0.0;
    }
    let b = row / P.tokens;
    let p = t - P.prefix;
    let pp = P.psize * P.psize;
    let c = k / pp;
    let r = k % pp;
    let y = (p / P.grid_w) * P.psize + r / P.psize;
    let x = (p % P.grid_w) * P.psize + r % P.psize;
    return image[((b * P.channels + c) * P.height + y) * P.width + x];
}

fn load_a4(row: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(pixel(row, k), pixel(row, k + 1u), pixel(row, k + 2u), pixel(row, k + 3u));
}

fn store_c4(row: u32, col: u32, acc: vec4<f32>) {
    if (row >= P.m) {
        return;
    }
    let t = row % P.tokens;
    for (var j = 0u; j < 4u; j++) {
        let c = col + j;
        if (c < P.n) {
            var v = acc[j] + f32(bias[c]);
#ifdef PREFIX
            if (t < P.prefix) {
                v = f32(prefix_tokens[t * P.n + c]);
            }
#endif
            out[row * P.n + c] = S(v + f32(pos[t * P.n + c]));
        }
    }
}
