// Token selection over a sequence, one output element per invocation.
//   x   (B, T, D)
//   SLICE: out (B, COUNT, D) = x[:, start:start+count, :]   (count 1 at start 0: the CLS token)
//   MEAN:  out (B, D)        = mean of x[:, start:start+count, :] over tokens (mean-pool);
//          MASKED: of x[b, start:start+min(count, lengths[b]), :] for each b
struct Params { batch: u32, tokens: u32, dim: u32, start: u32, count: u32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S>;
@group(0) @binding(_) var<storage, read_write> x: array<S>;
// MASKED (MEAN): each item's count capped by its length (padded sequences).
#ifdef MASKED
@group(0) @binding(_) var<storage, read_write> lengths: array<f32>;
#endif

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
#ifdef SLICE
    if (i >= P.batch * P.count * P.dim) {
        return;
    }
    let d = i % P.dim;
    let t = (i / P.dim) % P.count;
    let b = i / (P.dim * P.count);
    out[i] = x[(b * P.tokens + P.start + t) * P.dim + d];
#endif
#ifdef MEAN
    if (i >= P.batch * P.dim) {
        return;
    }
    let d = i % P.dim;
    let b = i / P.dim;
#ifdef MASKED
    let count = clamp(u32(lengths[b] + 0.5), 1u, P.count);
#else
    let count = P.count;
#endif
    var sum = 0.0;
    for (var t = 0u; t < count; t++) {
        sum += f32(x[(b * P.tokens + P.start + t) * P.dim + d]);
    }
    out[i] = S(sum / f32(count));
#endif
}
