// The attention probabilities of attention pooling (what the learned query looks at):
//   query (1, D)            the query, already projected
//   kv    (B, T, 2*D)       keys in columns 0..D (head h at h*head_dim), values after them
//   out   (B, heads, T)     per head: softmax(q k^T * scale)
// One workgroup of WG invocations per (head, batch), as attention_pool.wgsl.
struct Params { tokens: u32, heads: u32, head_dim: u32, scale: f32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S>;
@group(0) @binding(_) var<storage, read> query: array<S>;
@group(0) @binding(_) var<storage, read_write> kv: array<S>;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let b = wid.y;
    let d = P.heads * P.head_dim;
    let q_off = h * P.head_dim;
    let base = b * P.tokens * 2u * d + h * P.head_dim;
    let tokens = pooled_tokens(b, lid);
    let stats = softmax_stats(q_off, base, d, tokens, lid);
    let mx = stats.x;
    let inv = stats.y;
    let o = (b * P.heads + h) * P.tokens;
    for (var t = lid; t < P.tokens; t += WG) {
        var p = 0.0;
        if (t < tokens) {
            p = exp(score(q_off, base + t * 2u * d) - mx) * inv;
        }
        out[o + t] = S(p);
    }
}
