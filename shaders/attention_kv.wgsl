// Shared by attention.wgsl and attention_split.wgsl: loads keys kv0..kv0+BKV of K and V (zero past
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
