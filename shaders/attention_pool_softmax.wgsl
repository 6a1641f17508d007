// Shared by attention_pool.wgsl and attention_pool_probs.wgsl (which declare P, query and kv): the
// learned query's scores and their softmax over one (head, batch item), a workgroup each.
// MASKED: the tokens each batch item pools (padded sequences), the rest skipped.
#ifdef MASKED
@group(0) @binding(_) var<storage, read_write> lengths: array<f32>;
var<workgroup> wg_tokens: u32;
#endif

// The query of head slice q_off against the key at kv[row..].
fn score(q_off: u32, row: u32) -> f32 {
    var dot = 0.0;
    for (var e = 0u; e < P.head_dim; e++) {
        dot = fma(f32(query[q_off + e]), f32(kv[row + e]), dot);
    }
    return dot * P.scale;
}

// The tokens batch item b pools: all of them, or (MASKED) its length, at least one; the same for
// the whole workgroup.
fn pooled_tokens(b: u32, lid: u32) -> u32 {
#ifdef MASKED
    if (lid == 0u) {
        wg_tokens = clamp(u32(lengths[b] + 0.5), 1u, P.tokens);
    }
    return workgroupUniformLoad(&wg_tokens);
#else
    return P.tokens;
#endif
}

// The maximum score and the reciprocal of the sum of exp(score - max) over the first `tokens` keys
// from `base` (rows of 2 * d), the workgroup's WG invocations striding over them.
fn softmax_stats(q_off: u32, base: u32, d: u32, tokens: u32, lid: u32) -> vec2<f32> {
    var mx = -3.0e38;
    for (var t = lid; t < tokens; t += WG) {
        mx = max(mx, score(q_off, base + t * 2u * d));
    }
    mx = reduce_max(mx, lid);
    var sum = 0.0;
    for (var t = lid; t < tokens; t += WG) {
        sum += exp(score(q_off, base + t * 2u * d) - mx);
    }
    return vec2<f32>(mx, 1.0 / reduce_sum(sum, lid));
}

// One workgroup's (head h, batch item b): its width d, the query's offset, its first key in kv
// (key of token t at kv[base + t * 2d], its value d further on), the tokens it pools, and the
// softmax's maximum and reciprocal sum.
struct Pool { h: u32, b: u32, d: u32, q_off: u32, base: u32, tokens: u32, mx: f32, inv: f32 }

fn pool_softmax(wid: vec3<u32>, lid: u32) -> Pool {
    let h = wid.x;
    let b = wid.y;
    let d = P.heads * P.head_dim;
    let q_off = h * P.head_dim;
    let base = b * P.tokens * 2u * d + h * P.head_dim;
    let tokens = pooled_tokens(b, lid);
    let stats = softmax_stats(q_off, base, d, tokens, lid);
    return Pool(h, b, d, q_off, base, tokens, stats.x, stats.y);
}

// The probability of token t (below pl.tokens).
fn pool_prob(pl: Pool, t: u32) -> f32 {
    return exp(score(pl.q_off, pl.base + t * 2u * pl.d) - pl.mx) * pl.inv;
}
