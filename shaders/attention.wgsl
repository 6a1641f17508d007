// Fused multi-head self-attention with an online softmax (flash-attention style): the T x T score
// matrix is never stored.
//   qkv                 the fused QKV projection, either token-major (B, T, 3*H*DH: q, k, v blocks
//                       of h*DH + d) or head-major (3, B, H, T, DH); the uniform's strides say
//                       which: q of (b, h, t) at b*batch_stride + h*head_stride + t*row_stride,
//                       k and v k_off and v_off further (all in units of V)
//   out (B, T, H*DH)    heads concatenated, ready for the output projection
//   sizes (B, T)        SIZED: ToMe's proportional attention, log(size) added to each key's logit
//   lengths (B)         MASKED: the keys of each batch item (padded sequences: keys from its
//                       length on are not loaded or scored; its padded queries still attend to
//                       its valid keys, as transformers' key mask does)
// A workgroup owns BQ queries of one (batch, head); each invocation owns one query row and keeps
// its output row in registers. Keys and values stream through workgroup memory BKV rows at a
// time; the running max and sum rescale the accumulator when a larger score appears.
// VEC4 (head dim a multiple of 4) works in vec4s: every index below counts elements of V, which is
// vec4<f32> then and f32 otherwise, and a head spans DV of them. Storage is SV (V in f32 or f16);
// scores, softmax and the accumulator are f32.
#ifdef VEC4
alias V = vec4<f32>;
alias SV = S4;
const DV: u32 = DH / 4u;
const NA: u32 = DV;
fn hsum(x: V) -> f32 {
    return x.x + x.y + x.z + x.w;
}
#else
alias V = f32;
alias SV = S;
const DV: u32 = DH;
const NA: u32 = DV;
fn hsum(x: V) -> f32 {
    return x;
}
#endif

struct Params { tokens: u32, heads: u32, scale: f32, batch_stride: u32, head_stride: u32, row_stride: u32, k_off: u32, v_off: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<SV>;
@group(0) @binding(_) var<storage, read_write> qkv: array<SV>;
#ifdef SIZED
@group(0) @binding(_) var<storage, read_write> sizes: array<S>;
#endif
#ifdef MASKED
@group(0) @binding(_) var<storage, read_write> lengths: array<f32>;
var<workgroup> wg_keys: u32;
#endif

var<workgroup> k_tile: array<V, BKV * DV>;
var<workgroup> v_tile: array<V, BKV * DV>;

@compute @workgroup_size(BQ, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.z;
    let h = wid.y;
    let query = wid.x * BQ + lid;
    let valid = query < P.tokens;
    // In units of V: the model dim (of the output), this (batch, head)'s first query.
    let dim = P.heads * DV;
    let base = b * P.batch_stride + h * P.head_stride;

    var q: array<V, DV>;
    var acc: array<V, NA>;
    if (valid) {
        let q_off = base + query * P.row_stride;
        for (var d = 0u; d < DV; d++) {
            q[d] = V(qkv[q_off + d]) * P.scale;
            acc[d] = V(0.0);
        }
    }
    var m = -3.0e38;
    var l = 0.0;
    var s: array<f32, BKV>;

    // MASKED: this batch item's keys (at least one), the same for the whole workgroup.
#ifdef MASKED
    if (lid == 0u) {
        wg_keys = clamp(u32(lengths[b] + 0.5), 1u, P.tokens);
    }
    let keys = workgroupUniformLoad(&wg_keys);
#else
    let keys = P.tokens;
#endif
    // CAUSAL: keys up to the query itself (the tiles still load for the whole workgroup).
#ifdef CAUSAL
    let limit = min(keys, query + 1u);
#else
    let limit = keys;
#endif
    for (var kv0 = 0u; kv0 < keys; kv0 += BKV) {
        load_kv_tile(kv0, base, lid, BQ);
        workgroupBarrier();
        if (valid && kv0 < limit) {
            let n = min(BKV, limit - kv0);
            var m_new = m;
            for (var j = 0u; j < n; j++) {
                var partial = V(0.0);
                for (var d = 0u; d < DV; d++) {
                    partial = fma(q[d], k_tile[j * DV + d], partial);
                }
#ifdef SIZED
                let score = hsum(partial) + log(f32(sizes[b * P.tokens + kv0 + j]));
#else
                let score = hsum(partial);
#endif
                s[j] = score;
                m_new = max(m_new, score);
            }
            l = online_softmax_update(&acc, l, m, m_new, &s, n, 0u);
            m = m_new;
        }
        workgroupBarrier();
    }
    if (valid) {
        let o = (b * P.tokens + query) * dim + h * DV;
        let inv = 1.0 / l;
        for (var d = 0u; d < DV; d++) {
            out[o + d] = SV(acc[d] * inv);
        }
    }
}
