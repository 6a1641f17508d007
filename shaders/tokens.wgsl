// Token selection over a sequence, one output element per invocation.
//   x   (B, T, D)
//   SLICE: out (B, COUNT, D) = x[:, start:start+count, :]   (count 1 at start 0: the CLS token)
//          READOUT_ADD: + x[:, 0, :] on every token; READOUT_CONCAT: out (B, COUNT, 2D), each
//          token's channels then x[:, 0, :]'s (DPT's readout of the class token)
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
#ifdef READOUT_CONCAT
    let od = 2u * P.dim;
#else
    let od = P.dim;
#endif
    if (i >= P.batch * P.count * od) {
        return;
    }
    let d = i % od;
    let t = (i / od) % P.count;
    let b = i / (od * P.count);
#ifdef READOUT_CONCAT
    // Channels D.. 2D: the first token's.
    if (d >= P.dim) {
        out[i] = x[b * P.tokens * P.dim + d - P.dim];
        return;
    }
#endif
#ifdef READOUT_ADD
    out[i] = S(f32(x[(b * P.tokens + P.start + t) * P.dim + d]) + f32(x[b * P.tokens * P.dim + d]));
#else
    out[i] = x[(b * P.tokens + P.start + t) * P.dim + d];
#endif
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
