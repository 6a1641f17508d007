// Element-wise binary ops over N elements, one element per invocation.
//   ADD:     out = a + b            a, b (N)
//   MUL_ROW: out = a * b[i % C]     a (N), b (C): a per-channel scale such as layer scale
struct Params { n: u32, cols: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S>;
@group(0) @binding(_) var<storage, read_write> a: array<S>;
#ifdef MUL_ROW
@group(0) @binding(_) var<storage, read> b: array<S>;
#else
@group(0) @binding(_) var<storage, read_write> b: array<S>;
#endif

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= P.n) {
        return;
    }
#ifdef ADD
    out[i] = S(f32(a[i]) + f32(b[i]));
#endif
#ifdef MUL_ROW
    out[i] = S(f32(a[i]) * f32(b[i % P.cols]));
#endif
}
