// Concatenation along the last dimension.
//   a (R, D1), b (R, D2) -> out (R, D1 + D2)
struct Params { rows: u32, d1: u32, d2: u32, _pad: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S>;
@group(0) @binding(_) var<storage, read_write> a: array<S>;
@group(0) @binding(_) var<storage, read_write> b: array<S>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    let width = P.d1 + P.d2;
    if (i >= P.rows * width) {
        return;
    }
    let r = i / width;
    let c = i % width;
    if (c < P.d1) {
        out[i] = a[r * P.d1 + c];
    } else {
        out[i] = b[r * P.d2 + c - P.d1];
    }
}
