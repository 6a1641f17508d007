// Layer normalization over the last dimension, two passes in f32 (mean, then centred variance).
//   x     (R, C)
//   gamma (C), beta (C)
//   out   (R, C) = (x - mean) / sqrt(var + eps) * gamma + beta
// One workgroup of WG invocations per row; rows beyond 65535 workgroups spill into y.
struct Params { rows: u32, cols: u32, eps: f32, _pad: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S>;
@group(0) @binding(_) var<storage, read_write> x: array<S>;
@group(0) @binding(_) var<storage, read> gamma: array<S>;
@group(0) @binding(_) var<storage, read> beta: array<S>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wid, nwg);
    if (row >= P.rows) {
        return;
    }
    let base = row * P.cols;
    var sum = 0.0;
    for (var c = lid; c < P.cols; c += WG) {
        sum += f32(x[base + c]);
    }
    let mean = reduce_sum(sum, lid) / f32(P.cols);
    var sq = 0.0;
    for (var c = lid; c < P.cols; c += WG) {
        let d = f32(x[base + c]) - mean;
        sq = fma(d, d, sq);
    }
    let inv_std = inverseSqrt(reduce_sum(sq, lid) / f32(P.cols) + P.eps);
    for (var c = lid; c < P.cols; c += WG) {
        out[base + c] = S((f32(x[base + c]) - mean) * inv_std * f32(gamma[c]) + f32(beta[c]));
    }
}
