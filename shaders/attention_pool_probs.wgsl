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
    let pl = pool_softmax(wid, lid);
    let o = (pl.b * P.heads + pl.h) * P.tokens;
    for (var t = lid; t < P.tokens; t += WG) {
        var p = 0.0;
        if (t < pl.tokens) {
            p = pool_prob(pl, t);
        }
        out[o + t] = S(p);
    }
}
