// Shared by attention_pool.wgsl and attention_pool_probs.wgsl (which declare P, query and kv): the
// learned query's scores and their softmax statistics over one (head, batch item).
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
