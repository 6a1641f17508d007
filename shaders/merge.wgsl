// Token merging (ToMe's bipartite soft matching) as five small kernels, one per flag:
//   METRIC   metric (B, T, DH)   = the keys of qkv averaged over heads, at unit length
//   MATCH    best (B, A, 2)      = each set-A token's (even tokens) best cosine over the set-B
//                                  tokens (odd ones) and that token's B index (the first of equal
//                                  scores); protected tokens score -3e38 (never merged, never a target)
//   DEST     dest (B, T)         = the output row of each token (see merge.rs: prefix rows, the
//                                  unmerged A tokens, the B tokens; a merged A token its target's row)
//   TOKENS   out (B, T', D)      = sum of x * size over the tokens of each output row / the sizes' sum
//   SIZES    out (B, T')         = sum of the sizes of each output row's tokens
//   COMPOSE  out (B, N)          = dest[groups[b, n]]: each original token's row after one more merge
// SIZED: a `sizes (B, T)` input (absent: every token has size 1). Indices travel as f32 values.
struct Params { batch: u32, tokens: u32, out_tokens: u32, dim: u32, heads: u32, r: u32, protected_: u32, batch_stride: u32,
                head_stride: u32, row_stride: u32, k_off: u32, _pad: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S>;

#ifdef METRIC
@group(0) @binding(_) var<storage, read_write> qkv: array<S>;

fn mean_key(base: u32, j: u32) -> f32 {
    var s = 0.0;
    for (var h = 0u; h < P.heads; h++) {
        s += f32(qkv[base + h * P.head_stride + j]);
    }
    return s / f32(P.heads);
}

// One invocation per token: the mean key, then scaled to unit length.
@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= P.batch * P.tokens) {
        return;
    }
    let b = i / P.tokens;
    let t = i % P.tokens;
    let base = b * P.batch_stride + t * P.row_stride + P.k_off;
    var sq = 0.0;
    for (var j = 0u; j < P.dim; j++) {
        let m = mean_key(base, j);
        sq = fma(m, m, sq);
    }
    let inv = 1.0 / sqrt(sq);
    for (var j = 0u; j < P.dim; j++) {
        out[i * P.dim + j] = S(mean_key(base, j) * inv);
    }
}
#endif

#ifdef MATCH
@group(0) @binding(_) var<storage, read_write> metric: array<S>;

// One invocation per set-A token.
@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let na = (P.tokens + 1u) / 2u;
    let nb = P.tokens / 2u;
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= P.batch * na) {
        return;
    }
    let b = i / na;
    let a = i % na;
    var best = -3.0e38;
    var at = 0u;
    if (2u * a >= P.protected_) {
        let ra = (b * P.tokens + 2u * a) * P.dim;
        for (var j = 0u; j < nb; j++) {
            if (2u * j + 1u < P.protected_) {
                continue;
            }
            let rb = (b * P.tokens + 2u * j + 1u) * P.dim;
            var dot = 0.0;
            for (var d = 0u; d < P.dim; d++) {
                dot = fma(f32(metric[ra + d]), f32(metric[rb + d]), dot);
            }
            if (dot > best) {
                best = dot;
                at = j;
            }
        }
    }
    out[2u * i] = S(best);
    out[2u * i + 1u] = S(f32(at));
}
#endif

#ifdef DEST
@group(0) @binding(_) var<storage, read_write> best: array<S>;
// Each set-A token's rank by score (descending; equal scores by index), then whether it is merged.
var<workgroup> rank: array<u32, MAXA>;

// One workgroup per batch item.
@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.x;
    let na = (P.tokens + 1u) / 2u;
    let nb = P.tokens / 2u;
    let pa = (P.protected_ + 1u) / 2u;
    let pb = P.protected_ / 2u;
    let unmerged = na - pa - P.r;
    let bb = b * na * 2u;
    for (var i = lid; i < na; i += WG) {
        let s = f32(best[bb + 2u * i]);
        var n = 0u;
        for (var k = 0u; k < na; k++) {
            let o = f32(best[bb + 2u * k]);
            if (o > s || (o == s && k < i)) {
                n++;
            }
        }
        rank[i] = n;
    }
    workgroupBarrier();
    let ob = b * P.tokens;
    for (var i = lid; i < na; i += WG) {
        var row = 0u;
        if (i < pa) {
            row = 2u * i;
        } else if (rank[i] < P.r) {
            let j = clamp(u32(f32(best[bb + 2u * i + 1u]) + 0.5), pb, nb - 1u);
            row = P.protected_ + unmerged + j - pb;
        } else if (P.protected_ == 0u) {
            row = rank[i] - P.r;
        } else {
            var n = 0u;
            for (var k = pa; k < i; k++) {
                if (rank[k] >= P.r) {
                    n++;
                }
            }
            row = P.protected_ + n;
        }
        out[ob + 2u * i] = S(f32(row));
    }
    for (var j = lid; j < nb; j += WG) {
        var row = 2u * j + 1u;
        if (j >= pb) {
            row = P.protected_ + unmerged + j - pb;
        }
        out[ob + 2u * j + 1u] = S(f32(row));
    }
}
#endif

#ifdef TOKENS
@group(0) @binding(_) var<storage, read_write> x: array<S>;
@group(0) @binding(_) var<storage, read_write> dest: array<S>;
#ifdef SIZED
@group(0) @binding(_) var<storage, read_write> sizes: array<S>;
#endif

// One invocation per output element, its tokens summed in order.
@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= P.batch * P.out_tokens * P.dim) {
        return;
    }
    let d = i % P.dim;
    let row = (i / P.dim) % P.out_tokens;
    let b = i / (P.dim * P.out_tokens);
    var acc = 0.0;
    var w = 0.0;
    for (var t = 0u; t < P.tokens; t++) {
        if (u32(f32(dest[b * P.tokens + t]) + 0.5) == row) {
#ifdef SIZED
            let s = f32(sizes[b * P.tokens + t]);
#else
            let s = 1.0;
#endif
            acc = fma(f32(x[(b * P.tokens + t) * P.dim + d]), s, acc);
            w += s;
        }
    }
    out[i] = S(acc / w);
}
#endif

#ifdef SIZES
@group(0) @binding(_) var<storage, read_write> dest: array<S>;
#ifdef SIZED
@group(0) @binding(_) var<storage, read_write> sizes: array<S>;
#endif

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= P.batch * P.out_tokens) {
        return;
    }
    let row = i % P.out_tokens;
    let b = i / P.out_tokens;
    var w = 0.0;
    for (var t = 0u; t < P.tokens; t++) {
        if (u32(f32(dest[b * P.tokens + t]) + 0.5) == row) {
#ifdef SIZED
            w += f32(sizes[b * P.tokens + t]);
#else
            w += 1.0;
#endif
        }
    }
    out[i] = S(w);
}
#endif

#ifdef COMPOSE
@group(0) @binding(_) var<storage, read_write> groups: array<S>;
@group(0) @binding(_) var<storage, read_write> dest: array<S>;

// P.dim: the original tokens N; P.tokens: the tokens dest maps.
@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
    if (i >= P.batch * P.dim) {
        return;
    }
    let b = i / P.dim;
    let t = min(u32(f32(groups[i]) + 0.5), P.tokens - 1u);
    out[i] = dest[b * P.tokens + t];
}
#endif
