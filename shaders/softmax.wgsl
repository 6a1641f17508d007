// Numerically stable softmax over the last dimension.
//   x (R, C) -> out (R, C) = exp(x - max) / sum(exp(x - max))
// One workgroup of WG invocations per row; rows beyond 65535 workgroups spill into y.
struct Params { rows: u32, cols: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S>;
@group(0) @binding(_) var<storage, read_write> x: array<S>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wid, nwg);
    if (row >= P.rows) {
        return;
    }
    let base = row * P.cols;
    var mx = -3.0e38;
    for (var c = lid; c < P.cols; c += WG) {
        mx = max(mx, f32(x[base + c]));
    }
    mx = reduce_max(mx, lid);
    var sum = 0.0;
    for (var c = lid; c < P.cols; c += WG) {
        sum += exp(f32(x[base + c]) - mx);
    }
    let inv = 1.0 / reduce_sum(sum, lid);
    for (var c = lid; c < P.cols; c += WG) {
        out[base + c] = S(exp(f32(x[base + c]) - mx) * inv);
    }
}
