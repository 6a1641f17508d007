// Shared by attention.wgsl and attention_split.wgsl (which define V, DV, NA, BKV and the tiles).

// Loads keys kv0..kv0+BKV of K and V (zero past
// the last token) into the workgroup tiles k_tile and v_tile, as elements of V (DV per key), the
// workgroup's `count` invocations each taking every count-th element from `lid` on. `base` is the
// (batch, head)'s first query in qkv, as in the including kernel.
fn load_kv_tile(kv0: u32, base: u32, lid: u32, count: u32) {
    for (var i = lid; i < BKV * DV; i += count) {
        let key = kv0 + i / DV;
        var kk = V(0.0);
        var vv = V(0.0);
        if (key < P.tokens) {
            let off = base + key * P.row_stride + i % DV;
            kk = V(qkv[off + P.k_off]);
            vv = V(qkv[off + P.v_off]);
        }
        k_tile[i] = kk;
        v_tile[i] = vv;
    }
}

// The online-softmax step of one query over a key tile (flash attention): given the tile's n
// scores s[0..n] and the new running maximum m_new (>= the old one, m), rescales the running sum
// `l` and the accumulator to m_new, then adds exp(s_j - m_new) * v_j for each key j; returns the
// new sum. The accumulator holds NA elements of V: this invocation's slice of the output row,
// starting at element `col` of each row of v_tile.
fn online_softmax_update(acc: ptr<function, array<V, NA>>, l: f32, m: f32, m_new: f32, s: ptr<function, array<f32, BKV>>, n: u32, col: u32) -> f32 {
    let correction = exp(m - m_new);
    var sum = l * correction;
    for (var d = 0u; d < NA; d++) {
        (*acc)[d] *= correction;
    }
    for (var j = 0u; j < n; j++) {
        let p = exp((*s)[j] - m_new);
        sum += p;
        for (var d = 0u; d < NA; d++) {
            (*acc)[d] = fma(V(p), v_tile[j * DV + col + d], (*acc)[d]);
        }
    }
    return sum;
}
