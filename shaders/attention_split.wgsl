// Fused multi-head self-attention, G invocations per query: the same online softmax as
// attention.wgsl, but each of a query's G invocations holds only DH/G of its q and output row,
// so registers stay small and a workgroup covers BQ queries with G*BQ invocations. Per key tile,
// each invocation writes its partial dot products to workgroup memory; after a barrier every
// invocation of the query sums the G partials in the same order (so the G copies of the running
// max and sum agree exactly) and updates its slice of the output.
//   qkv                 as for attention.wgsl (either layout); DH a multiple of 4 (vec4 storage)
//   out (B, T, H*DH)
// Storage is S4 (f32 or f16); arithmetic is f32.
// SUBGROUP (native only, adapters whose subgroups hold at least G invocations): the G partials are
// summed with subgroup shuffles (a butterfly, so all G lanes get the same sum) instead of through
// workgroup memory; a query's G lanes have consecutive invocation indices. The shuffles run for
// every invocation (invalid queries use a zero q) so control flow stays uniform.
alias V = vec4<f32>;
const DV: u32 = DH / 4u;
const DG: u32 = DV / G;
// This invocation's accumulator: its DG elements of the query's output row.
const NA: u32 = DG;

struct Params { tokens: u32, heads: u32, scale: f32, batch_stride: u32, head_stride: u32, row_stride: u32, k_off: u32, v_off: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S4>;
@group(0) @binding(_) var<storage, read_write> qkv: array<S4>;

var<workgroup> k_tile: array<V, BKV * DV>;
var<workgroup> v_tile: array<V, BKV * DV>;
#ifndef SUBGROUP
var<workgroup> part: array<f32, BQ * G * BKV>;
#endif

@compute @workgroup_size(G, BQ, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_id) lxy: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let b = wid.z;
    let h = wid.y;
    let g = lxy.x;
    let ql = lxy.y;
    let query = wid.x * BQ + ql;
    let valid = query < P.tokens;
    let dim = P.heads * DV;
    let base = b * P.batch_stride + h * P.head_stride;

    var q: array<V, DG>;
    var acc: array<V, NA>;
    for (var d = 0u; d < DG; d++) {
        q[d] = V(0.0);
        acc[d] = V(0.0);
    }
    if (valid) {
        let q_off = base + query * P.row_stride + g * DG;
        for (var d = 0u; d < DG; d++) {
            q[d] = V(qkv[q_off + d]) * P.scale;
        }
    }
    var m = -3.0e38;
    var l = 0.0;
    var s: array<f32, BKV>;

    for (var kv0 = 0u; kv0 < P.tokens; kv0 += BKV) {
        load_kv_tile(kv0, base, lid, BQ * G);
        workgroupBarrier();
        let n = min(BKV, P.tokens - kv0);
#ifdef SUBGROUP
        var m_new = m;
        for (var j = 0u; j < n; j++) {
            var partial = V(0.0);
            for (var d = 0u; d < DG; d++) {
                partial = fma(q[d], k_tile[j * DV + g * DG + d], partial);
            }
            var score = partial.x + partial.y + partial.z + partial.w;
            for (var o = 1u; o < G; o <<= 1u) {
                score += subgroupShuffleXor(score, o);
            }
            s[j] = score;
            m_new = max(m_new, score);
        }
        if (valid) {
#else
        if (valid) {
            for (var j = 0u; j < n; j++) {
                var partial = V(0.0);
                for (var d = 0u; d < DG; d++) {
                    partial = fma(q[d], k_tile[j * DV + g * DG + d], partial);
                }
                part[(ql * G + g) * BKV + j] = partial.x + partial.y + partial.z + partial.w;
            }
        }
        workgroupBarrier();
        if (valid) {
            var m_new = m;
            for (var j = 0u; j < n; j++) {
                var score = 0.0;
                for (var gg = 0u; gg < G; gg++) {
                    score += part[(ql * G + gg) * BKV + j];
                }
                s[j] = score;
                m_new = max(m_new, score);
            }
#endif
            l = online_softmax_update(&acc, l, m, m_new, &s, n, g * DG);
            m = m_new;
        }
        workgroupBarrier();
    }
    if (valid) {
        let o = (b * P.tokens + query) * dim + h * DV + g * DG;
        let inv = 1.0 / l;
        for (var d = 0u; d < DG; d++) {
            out[o + d] = S4(acc[d] * inv);
        }
    }
}
