// Attention probabilities of the first QUERIES query tokens, for inspection (e.g. CLS attention
// maps): softmax(q k^T * scale) over all keys, written from key `first_key` on.
//   qkv                 as for attention.wgsl (either layout; strides in elements)
//   sizes (B, T)        SIZED: proportional attention, log(size) added to each key's logit
//   out (B, H, QUERIES, T - first_key)
// One workgroup of WG invocations per (query, head, batch); scores are recomputed per pass
// instead of stored, since T is small next to the model's work.
struct Params { tokens: u32, heads: u32, scale: f32, first_key: u32, queries: u32, head_dim: u32,
                batch_stride: u32, head_stride: u32, row_stride: u32, k_off: u32, _pad0: u32, _pad1: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S>;
@group(0) @binding(_) var<storage, read_write> qkv: array<S>;
#ifdef SIZED
@group(0) @binding(_) var<storage, read_write> sizes: array<S>;
#endif

fn score(b: u32, base: u32, q_off: u32, key: u32) -> f32 {
    let k_off = base + key * P.row_stride + P.k_off;
    var dot = 0.0;
    for (var d = 0u; d < P.head_dim; d++) {
        dot = fma(f32(qkv[q_off + d]), f32(qkv[k_off + d]), dot);
    }
#ifdef SIZED
    return dot * P.scale + log(f32(sizes[b * P.tokens + key]));
#else
    return dot * P.scale;
#endif
}

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let query = wid.x;
    let h = wid.y;
    let b = wid.z;
    let base = b * P.batch_stride + h * P.head_stride;
    let q_off = base + query * P.row_stride;
    var mx = -3.0e38;
    for (var key = lid; key < P.tokens; key += WG) {
        mx = max(mx, score(b, base, q_off, key));
    }
    mx = reduce_max(mx, lid);
    var sum = 0.0;
    for (var key = lid; key < P.tokens; key += WG) {
        sum += exp(score(b, base, q_off, key) - mx);
    }
    let inv = 1.0 / reduce_sum(sum, lid);
    let width = P.tokens - P.first_key;
    let o = ((b * P.heads + h) * P.queries + query) * width;
    for (var key = P.first_key + lid; key < P.tokens; key += WG) {
        out[o + key - P.first_key] = S(exp(score(b, base, q_off, key) - mx) * inv);
    }
}
