// Tiled GEMM core: C[M, N] = A[M, K] * B[K, N], shared by matmul and patch_embed.
// The including kernel supplies the data access:
//   load_a4(row, k)   -> A[row, k..k+4]   (zero outside M x K)
//   load_b4(k, col)   -> B[k, col..col+4] (zero outside K x N)
//   store_c4(row, col, acc) stores C[row, col..col+4] with its epilogue (skipping out-of-range parts)
// and the uniform `P` with fields m, n, k (and kc, with SPLITK).
// Tiling: a workgroup of (BN/TN) x (BM/TM) invocations computes a BM x BN tile of C; each
// invocation holds a TM x TN register block (TN a multiple of 4, kept as TN/4 vec4s per row).
// K advances in steps of BK through two workgroup tiles: A transposed ([k][m], so a column of A
// is contiguous) and B as vec4 rows ([k][n/4]).
// SPLITK: workgroup z covers only K range z*kc..min((z+1)*kc, k) (kc a multiple of BK) and sets
// `split_z` for store_c4.
const VN: u32 = TN / 4u;
const WG_X: u32 = BN / TN;
const WG_Y: u32 = BM / TM;
const WG_SIZE: u32 = WG_X * WG_Y;

#ifdef UNROLL
// UNROLL (the 4x4 and 8x8 register blocks, flags UNROLL_4X4 / UNROLL_8X8): A's tile holds four
// consecutive rows of one k per vec4, and the block update is written out with constant register
// indices: no loop or dynamic index per multiply-add, so it stays fast where shaders keep bounds
// checks (browsers). Not combined with PREFETCH.
var<workgroup> a_tile: array<vec4<f32>, BK * BM / 4u>;
#else
var<workgroup> a_tile: array<f32, BK * BM>;
#endif
var<workgroup> b_tile: array<vec4<f32>, BK * BN / 4u>;

#ifdef PREFETCH
// acc += this K step's A tile x B tile, for this invocation's TM x TN block.
fn multiply(acc: ptr<function, array<vec4<f32>, TM * VN>>, lxy: vec3<u32>) {
    for (var kk = 0u; kk < BK; kk++) {
        let a_base = kk * BM + lxy.y * TM;
        for (var j = 0u; j < VN; j++) {
            let b = b_tile[kk * (BN / 4u) + lxy.x * VN + j];
            for (var i = 0u; i < TM; i++) {
                (*acc)[i * VN + j] = fma(vec4<f32>(a_tile[a_base + i]), b, (*acc)[i * VN + j]);
            }
        }
    }
}

// vec4 loads per invocation per K step, for A and for B.
const NA: u32 = (BM * BK / 4u + WG_SIZE - 1u) / WG_SIZE;
const NB: u32 = (BK * BN / 4u + WG_SIZE - 1u) / WG_SIZE;

fn fetch(ra: ptr<function, array<vec4<f32>, NA>>, rb: ptr<function, array<vec4<f32>, NB>>, m0: u32, n0: u32, k0: u32, lid: u32) {
    for (var r = 0u; r < NA; r++) {
        let i = lid + r * WG_SIZE;
        if (i < BM * BK / 4u) {
            (*ra)[r] = load_a4(m0 + i / (BK / 4u), k0 + (i % (BK / 4u)) * 4u);
        }
    }
    for (var r = 0u; r < NB; r++) {
        let i = lid + r * WG_SIZE;
        if (i < BK * BN / 4u) {
            (*rb)[r] = load_b4(k0 + i / (BN / 4u), n0 + (i % (BN / 4u)) * 4u);
        }
    }
}
#endif

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_id) lxy: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
#ifdef SPLITK
    split_z = wid.z;
    let k_begin = wid.z * P.kc;
    let k_end = min(k_begin + P.kc, P.k);
#else
    let k_begin = 0u;
    let k_end = P.k;
#endif
    var acc: array<vec4<f32>, TM * VN>;
    for (var i = 0u; i < TM * VN; i++) {
        acc[i] = vec4<f32>(0.0);
    }
#ifdef PREFETCH
    // The next K step's global loads are issued into registers before this step's arithmetic,
    // so their latency hides behind it; the registers go to workgroup memory after a barrier.
    var ra: array<vec4<f32>, NA>;
    var rb: array<vec4<f32>, NB>;
    fetch(&ra, &rb, m0, n0, k_begin, lid);
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        for (var r = 0u; r < NA; r++) {
            let i = lid + r * WG_SIZE;
            if (i < BM * BK / 4u) {
                let row = i / (BK / 4u);
                let kk = (i % (BK / 4u)) * 4u;
                a_tile[kk * BM + row] = ra[r].x;
                a_tile[(kk + 1u) * BM + row] = ra[r].y;
                a_tile[(kk + 2u) * BM + row] = ra[r].z;
                a_tile[(kk + 3u) * BM + row] = ra[r].w;
            }
        }
        for (var r = 0u; r < NB; r++) {
            let i = lid + r * WG_SIZE;
            if (i < BK * BN / 4u) {
                b_tile[i] = rb[r];
            }
        }
        workgroupBarrier();
        if (k0 + BK < k_end) {
            fetch(&ra, &rb, m0, n0, k0 + BK, lid);
        }
        multiply(&acc, lxy);
        workgroupBarrier();
    }
#else
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        for (var i = lid; i < BM * BK / 4u; i += WG_SIZE) {
            let r = i / (BK / 4u);
            let kk = (i % (BK / 4u)) * 4u;
            let v = load_a4(m0 + r, k0 + kk);
#ifdef UNROLL
            let c = r % 4u;
            a_tile[(kk * BM + r) / 4u][c] = v.x;
            a_tile[((kk + 1u) * BM + r) / 4u][c] = v.y;
            a_tile[((kk + 2u) * BM + r) / 4u][c] = v.z;
            a_tile[((kk + 3u) * BM + r) / 4u][c] = v.w;
#else
            a_tile[kk * BM + r] = v.x;
            a_tile[(kk + 1u) * BM + r] = v.y;
            a_tile[(kk + 2u) * BM + r] = v.z;
            a_tile[(kk + 3u) * BM + r] = v.w;
#endif
        }
        for (var i = lid; i < BK * BN / 4u; i += WG_SIZE) {
            let kk = i / (BN / 4u);
            let c = (i % (BN / 4u)) * 4u;
            b_tile[i] = load_b4(k0 + kk, n0 + c);
        }
        workgroupBarrier();
#ifdef UNROLL
        for (var kk = 0u; kk < BK; kk++) {
            let ab = (kk * BM + lxy.y * TM) / 4u;
            let bb = kk * (BN / 4u) + lxy.x * VN;
            let a0 = a_tile[ab];
            let b0 = b_tile[bb];
#ifdef UNROLL_4X4
            acc[0] = fma(vec4<f32>(a0.x), b0, acc[0]);
            acc[1] = fma(vec4<f32>(a0.y), b0, acc[1]);
            acc[2] = fma(vec4<f32>(a0.z), b0, acc[2]);
            acc[3] = fma(vec4<f32>(a0.w), b0, acc[3]);
#endif
#ifdef UNROLL_8X8
            let a1 = a_tile[ab + 1u];
            let b1 = b_tile[bb + 1u];
            acc[0] = fma(vec4<f32>(a0.x), b0, acc[0]);
            acc[1] = fma(vec4<f32>(a0.x), b1, acc[1]);
            acc[2] = fma(vec4<f32>(a0.y), b0, acc[2]);
            acc[3] = fma(vec4<f32>(a0.y), b1, acc[3]);
            acc[4] = fma(vec4<f32>(a0.z), b0, acc[4]);
            acc[5] = fma(vec4<f32>(a0.z), b1, acc[5]);
            acc[6] = fma(vec4<f32>(a0.w), b0, acc[6]);
            acc[7] = fma(vec4<f32>(a0.w), b1, acc[7]);
            acc[8] = fma(vec4<f32>(a1.x), b0, acc[8]);
            acc[9] = fma(vec4<f32>(a1.x), b1, acc[9]);
            acc[10] = fma(vec4<f32>(a1.y), b0, acc[10]);
            acc[11] = fma(vec4<f32>(a1.y), b1, acc[11]);
            acc[12] = fma(vec4<f32>(a1.z), b0, acc[12]);
            acc[13] = fma(vec4<f32>(a1.z), b1, acc[13]);
            acc[14] = fma(vec4<f32>(a1.w), b0, acc[14]);
            acc[15] = fma(vec4<f32>(a1.w), b1, acc[15]);
#endif
        }
#else
        for (var kk = 0u; kk < BK; kk++) {
            let a_base = kk * BM + lxy.y * TM;
            for (var j = 0u; j < VN; j++) {
                let b = b_tile[kk * (BN / 4u) + lxy.x * VN + j];
                for (var i = 0u; i < TM; i++) {
                    acc[i * VN + j] = fma(vec4<f32>(a_tile[a_base + i]), b, acc[i * VN + j]);
                }
            }
        }
#endif
        workgroupBarrier();
    }
#endif
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < VN; j++) {
            store_c4(m0 + lxy.y * TM + i, n0 + (lxy.x * VN + j) * 4u, acc[i * VN + j]);
        }
    }
}
