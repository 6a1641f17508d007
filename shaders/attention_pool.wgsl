// Attention pooling with one learned query per head, shared by the batch:
//   query (1, D)            the query, already projected
//   kv    (B, T, 2*D)       keys in columns 0..D, values in D..2D (head h at h*head_dim)
//   out   (B, D)            per head: softmax(q k^T * scale) v
// One workgroup of WG invocations per (head, batch). Scores are recomputed per pass (T is small
// next to the encoder's work); the weighted sum of values goes WG keys at a time through
// workgroup memory, each invocation owning output columns lid, lid + WG, ...
struct Params { tokens: u32, heads: u32, head_dim: u32, scale: f32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S>;
@group(0) @binding(_) var<storage, read> query: array<S>;
@group(0) @binding(_) var<storage, read_write> kv: array<S>;

var<workgroup> probs: array<f32, WG>;


@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let b = wid.y;
    let d = P.heads * P.head_dim;
    let q_off = h * P.head_dim;
    // Key of token t: kv[(b * T + t) * 2D + h * head_dim], its value D further on.
    let base = b * P.tokens * 2u * d + h * P.head_dim;
    let tokens = pooled_tokens(b, lid);
    let stats = softmax_stats(q_off, base, d, tokens, lid);
    let mx = stats.x;
    let inv = stats.y;
    // At most MAX_HEAD_DIM (128) columns over at least 32 invocations: four accumulators each.
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var t0 = 0u; t0 < tokens; t0 += WG) {
        let t = t0 + lid;
        var p = 0.0;
        if (t < tokens) {
            p = exp(score(q_off, base + t * 2u * d) - mx) * inv;
        }
        probs[lid] = p;
        workgroupBarrier();
        let n = min(WG, tokens - t0);
        for (var j = 0u; j < 4u; j++) {
            let e = lid + j * WG;
            if (e < P.head_dim) {
                var a = acc[j];
                for (var k = 0u; k < n; k++) {
                    a = fma(probs[k], f32(kv[base + (t0 + k) * 2u * d + d + e]), a);
                }
                acc[j] = a;
            }
        }
        workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
        let e = lid + j * WG;
        if (e < P.head_dim) {
            out[b * d + h * P.head_dim + e] = S(acc[j]);
        }
    }
}
