// Fused multi-head self-attention as two register-tiled products per key tile (flash-attention
// style, online softmax, no score matrix in memory):
//   qkv                 as for attention.wgsl (either layout); DH a multiple of 4*CG (vec4 storage)
//   out (B, T, H*DH)
// A workgroup owns BQ queries of one (batch, head), with BQ/4 x CG invocations: invocation
// (cg, qg) holds queries 4qg..4qg+4. Per tile of BKV = 4*CG keys it computes a 4 x 4 block of
// scores (its queries x keys 4cg..4cg+4) from Q and K in workgroup memory, so each value read
// there feeds four multiply-adds instead of one; then, for the same queries, a 4 x DH/CG block of
// the output (dims cg*DH/CG..) from the probabilities and V. The row maxima of a tile are combined
// through workgroup memory, and every invocation of a query derives the same running max and sum
// in the same order. Storage is S4 (f32 or f16); arithmetic is f32.
const QG: u32 = BQ / 4u;
const D4: u32 = DH / 4u;
const TD4: u32 = D4 / CG;

struct Params { tokens: u32, heads: u32, scale: f32, batch_stride: u32, head_stride: u32, row_stride: u32, k_off: u32, v_off: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S4>;
@group(0) @binding(_) var<storage, read_write> qkv: array<S4>;

// Q, scaled and transposed: [d][query group], a vec4 over the group's four queries.
var<workgroup> qs: array<vec4<f32>, DH * QG>;
// K transposed ([d][key group], a vec4 over four keys), then after a barrier the probabilities
// transposed ([key][query group], a vec4 over four queries).
var<workgroup> kp: array<vec4<f32>, KP4>;
// V: [key][d / 4].
var<workgroup> vs: array<vec4<f32>, BKV * D4>;
// Each invocation's maximum score per query in the tile: [query][cg].
var<workgroup> red: array<f32, BQ * CG>;

// The vec4 at `offset` (in vec4s) of tokens first..first+4 (zero past the last token), transposed:
// element c holds component c of each of the four.
fn transposed4(first: u32, offset: u32) -> array<vec4<f32>, 4> {
    var r: array<vec4<f32>, 4>;
    for (var j = 0u; j < 4u; j++) {
        r[j] = vec4<f32>(0.0);
        if (first + j < P.tokens) {
            r[j] = vec4<f32>(qkv[offset + (first + j) * P.row_stride]);
        }
    }
    return array<vec4<f32>, 4>(vec4<f32>(r[0].x, r[1].x, r[2].x, r[3].x), vec4<f32>(r[0].y, r[1].y, r[2].y, r[3].y),
                               vec4<f32>(r[0].z, r[1].z, r[2].z, r[3].z), vec4<f32>(r[0].w, r[1].w, r[2].w, r[3].w));
}

@compute @workgroup_size(CG, QG, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_id) lxy: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let b = wid.z;
    let h = wid.y;
    let cg = lxy.x;
    let qg = lxy.y;
    let q0 = wid.x * BQ;
    // In vec4 units: the model dim (of the output), this (batch, head)'s first query.
    let dim = P.heads * D4;
    let base = b * P.batch_stride + h * P.head_stride;

    // Q tile: each (query group, d/4) pair reads four query rows and writes four transposed vec4s.
    for (var i = lid; i < QG * D4; i += QG * CG) {
        let g = i / D4;
        let d4 = i % D4;
        let r = transposed4(q0 + g * 4u, base + d4);
        for (var c = 0u; c < 4u; c++) {
            qs[(d4 * 4u + c) * QG + g] = r[c] * P.scale;
        }
    }

    var m = vec4<f32>(-3.0e38);
    var l = vec4<f32>(0.0);
    var acc: array<vec4<f32>, 4u * TD4>;
    for (var i = 0u; i < 4u * TD4; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var kv0 = 0u; kv0 < P.tokens; kv0 += BKV) {
        // K (transposed) and V tiles; keys past the end are zero (and masked below).
        for (var i = lid; i < CG * D4; i += QG * CG) {
            let g = i / D4;
            let d4 = i % D4;
            let r = transposed4(kv0 + g * 4u, base + P.k_off + d4);
            for (var c = 0u; c < 4u; c++) {
                kp[(d4 * 4u + c) * CG + g] = r[c];
            }
        }
        for (var i = lid; i < BKV * D4; i += QG * CG) {
            let key = kv0 + i / D4;
            var v = vec4<f32>(0.0);
            if (key < P.tokens) {
                v = vec4<f32>(qkv[base + P.v_off + key * P.row_stride + i % D4]);
            }
            vs[i] = v;
        }
        workgroupBarrier();

        // Scores: s[j][i] = q_i . k_j for this invocation's four queries i and four keys j.
        var s: array<vec4<f32>, 4>;
        for (var j = 0u; j < 4u; j++) {
            s[j] = vec4<f32>(0.0);
        }
        for (var d = 0u; d < DH; d++) {
            let qv = qs[d * QG + qg];
            let kv = kp[d * CG + cg];
            s[0] = fma(qv, vec4<f32>(kv.x), s[0]);
            s[1] = fma(qv, vec4<f32>(kv.y), s[1]);
            s[2] = fma(qv, vec4<f32>(kv.z), s[2]);
            s[3] = fma(qv, vec4<f32>(kv.w), s[3]);
        }
        var tile_max = vec4<f32>(-3.0e38);
        for (var j = 0u; j < 4u; j++) {
            if (kv0 + cg * 4u + j >= P.tokens) {
                s[j] = vec4<f32>(-3.0e38);
            }
            tile_max = max(tile_max, s[j]);
        }
        for (var i = 0u; i < 4u; i++) {
            red[(qg * 4u + i) * CG + cg] = tile_max[i];
        }
        workgroupBarrier();

        // The tile's row maxima (every invocation of a query reads the same values in the same
        // order), the rescaling of what came before, and the probabilities.
        var m_new = m;
        for (var c = 0u; c < CG; c++) {
            m_new = max(m_new, vec4<f32>(red[(qg * 4u) * CG + c], red[(qg * 4u + 1u) * CG + c],
                                         red[(qg * 4u + 2u) * CG + c], red[(qg * 4u + 3u) * CG + c]));
        }
        let correction = exp(m - m_new);
        m = m_new;
        l *= correction;
        for (var i = 0u; i < 4u; i++) {
            for (var t = 0u; t < TD4; t++) {
                acc[i * TD4 + t] *= correction[i];
            }
        }
        for (var j = 0u; j < 4u; j++) {
            kp[(cg * 4u + j) * QG + qg] = exp(s[j] - m_new);
        }
        workgroupBarrier();

        // Output block += probabilities x V; the row sums from the same probabilities.
        for (var k = 0u; k < BKV; k++) {
            let p = kp[k * QG + qg];
            l += p;
            for (var t = 0u; t < TD4; t++) {
                let v = vs[k * D4 + cg * TD4 + t];
                acc[t] = fma(vec4<f32>(p.x), v, acc[t]);
                acc[TD4 + t] = fma(vec4<f32>(p.y), v, acc[TD4 + t]);
                acc[2u * TD4 + t] = fma(vec4<f32>(p.z), v, acc[2u * TD4 + t]);
                acc[3u * TD4 + t] = fma(vec4<f32>(p.w), v, acc[3u * TD4 + t]);
            }
        }
        workgroupBarrier();
    }

    let inv = 1.0 / l;
    for (var i = 0u; i < 4u; i++) {
        let q = q0 + qg * 4u + i;
        if (q < P.tokens) {
            let o = (b * P.tokens + q) * dim + h * D4 + cg * TD4;
            for (var t = 0u; t < TD4; t++) {
                out[o + t] = S4(acc[i * TD4 + t] * inv[i]);
            }
        }
    }
}
