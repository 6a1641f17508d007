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

fn score(q_off: u32, row: u32) -> f32 {
    var dot = 0.0;
    for (var e = 0u; e < P.head_dim; e++) {
        dot = fma(f32(query[q_off + e]), f32(kv[row + e]), dot);
    }
    return dot * P.scale;
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let b = wid.y;
    let d = P.heads * P.head_dim;
    let q_off = h * P.head_dim;
    let base = b * P.tokens * 2u * d + h * P.head_dim;
    var mx = -3.0e38;
    for (var t = lid; t < P.tokens; t += WG) {
        mx = max(mx, score(q_off, base + t * 2u * d));
    }
    mx = reduce_max(mx, lid);
    var sum = 0.0;
    for (var t = lid; t < P.tokens; t += WG) {
        sum += exp(score(q_off, base + t * 2u * d) - mx);
    }
    let inv = 1.0 / reduce_sum(sum, lid);
    let o = (b * P.heads + h) * P.tokens;
    for (var t = lid; t < P.tokens; t += WG) {
        out[o + t] = S(exp(score(q_off, base + t * 2u * d) - mx) * inv);
    }
}
