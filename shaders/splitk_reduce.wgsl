// Second half of a split-K GEMM: out = epilogue(sum over s of partial[s]), four outputs per
// invocation. The first half (matmul.wgsl with SPLITK) wrote `splits` f32 partial products, each
// over its own range of K, as (splits, M, N); they are summed in order, so results do not depend
// on scheduling. epilogue.wgsl follows this file.
struct Params { m: u32, n: u32, splits: u32, _pad: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S4>;
@group(0) @binding(_) var<storage, read> partial: array<vec4<f32>>;
#ifdef BIAS
@group(0) @binding(_) var<storage, read> bias: array<S4>;
#endif
#ifdef RESIDUAL
@group(0) @binding(_) var<storage, read_write> residual: array<S4>;
#endif

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    let total = P.m * P.n / 4u;
    if (i >= total) {
        return;
    }
    var v = partial[i];
    for (var s = 1u; s < P.splits; s++) {
        v += partial[s * total + i];
    }
    out[i] = S4(epilogue4(v, (i * 4u) % P.n, i));
}
