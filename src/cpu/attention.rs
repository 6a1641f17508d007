//! Multi-head self-attention as a blocked product with an online softmax (flash attention on the
//! CPU): no T x T matrix per head is ever stored.
//!
//! Per (batch, head), K is packed transposed into GEMM panels (in parallel over the heads); V is
//! read in place (packed too where the head dim is not a multiple of the panel width). Then each
//! task takes a block of QB queries of one head: for each block of KB keys it forms the QB x KB
//! scores with the GEMM micro-kernel, updates the running maxima and sums, rescales its QB x dh
//! accumulator and adds P x V for the block. The scores, the accumulator and the statistics live
//! on the task's stack. QB = 2 MR of the instruction set's tile; KB = 256 keys, so a ViT's 197 or
//! 257 tokens take one or two blocks.

use super::gemm::{block_generic, tile, Epilogue, Gemm};
use super::math;
use super::simd::{Isa, Portable, Simd};
#[cfg(target_arch = "x86_64")]
use super::simd::{Avx2, Avx512};
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use super::simd::Wasm128;
use super::{Cpu, SyncPtr};

/// Largest head dim.
pub const MAX_HEAD_DIM: usize = 128;
/// Largest query block of any instruction set (QB = 2 MR), and the key block.
const MAX_QB: usize = 24;
const KB: usize = 256;

/// Where Q, K and V of each (batch, head) sit in a qkv tensor, in elements: Q of token t at
/// `b * batch + h * head + t * row`, K `k_off` and V `v_off` further.
#[derive(Clone, Copy, Debug)]
pub struct Qkv {
    /// Batch size.
    pub b: usize,
    /// Tokens.
    pub t: usize,
    /// Heads.
    pub heads: usize,
    /// Head dim.
    pub dh: usize,
    /// Stride between batch items.
    pub batch: usize,
    /// Stride between heads.
    pub head: usize,
    /// Stride between tokens.
    pub row: usize,
    /// Offset of K from Q.
    pub k_off: usize,
    /// Offset of V from Q.
    pub v_off: usize,
    /// Each query attends only to keys at or before its position (a text encoder's mask).
    pub causal: bool,
}

impl Qkv {
    fn base(&self, b: usize, h: usize) -> usize {
        b * self.batch + h * self.head
    }
}

/// Scratch (f32 elements) for [`attention`]: the packed K and V of every head.
pub fn scratch_len(isa: Isa, l: &Qkv) -> usize {
    l.b * l.heads * per_head(att_tile(isa, l.dh).1, l)
}

/// The attention's register tile (MR, NR): the GEMM's, except that on AVX-512 narrow heads take
/// narrower panels (16 or 32 columns, which the GEMM's 64 would mostly pad) with more rows, to keep
/// enough independent accumulators in flight.
fn att_tile(isa: Isa, dh: usize) -> (usize, usize) {
    match isa {
        Isa::Avx512 if dh <= 16 => (12, 16),
        Isa::Avx512 if dh <= 32 => (8, 32),
        _ => tile(isa),
    }
}

/// Packed K, then packed V where it is not read in place, of one head.
fn per_head(nr: usize, l: &Qkv) -> usize {
    l.t.div_ceil(nr) * l.dh * nr + if v_in_place(nr, l) { 0 } else { l.dh.div_ceil(nr) * l.t * nr }
}

/// Whether V's rows split into whole panels (then it is read where it is).
fn v_in_place(nr: usize, l: &Qkv) -> bool {
    l.dh.is_multiple_of(nr)
}

/// `out (B, T, heads * dh)` = softmax(Q K^T * scale) V per head, for the heads in `heads` and
/// the query tokens in `queries` of every batch item (the rest of `out` is left as it is: a split
/// backend's other ranks compute it); `scratch` holds [`scratch_len`] values. `lengths` (empty, or one per batch item): each item's
/// keys, the rest skipped (padded sequences; its padded queries attend to its valid keys).
/// `sizes` (empty, or `(B, T)`): ToMe's proportional attention, `log(size)` added to each key's
/// logit.
#[allow(clippy::too_many_arguments)]
pub fn attention(cpu: &Cpu, qkv: &[f32], l: &Qkv, (heads, queries): (std::ops::Range<usize>, std::ops::Range<usize>), (lengths, sizes): (&[f32], &[f32]), scale: f32, out: &mut [f32], scratch: &mut [f32]) {
    assert!(l.dh <= MAX_HEAD_DIM && l.dh > 0 && l.t > 0, "head dim {} or tokens {} out of range", l.dh, l.t);
    assert!(queries.start <= queries.end && queries.end <= l.t, "queries {queries:?} of {}", l.t);
    assert!(heads.start <= heads.end && heads.end <= l.heads, "heads {heads:?} of {}", l.heads);
    let (h0, nh) = (heads.start, heads.len());
    if queries.is_empty() || nh == 0 {
        return;
    }
    assert!(out.len() >= l.b * l.t * l.heads * l.dh, "output too small");
    assert!(lengths.is_empty() || lengths.len() == l.b, "one length per batch item");
    assert!(sizes.is_empty() || sizes.len() == l.b * l.t, "one size per token");
    assert!(sizes.is_empty() || scale > 0.0, "proportional attention needs a positive scale");
    // At least one key: a softmax over none has no value.
    let keys = |b: usize| lengths.get(b).map_or(l.t, |&n| (n.round().max(1.0) as usize).min(l.t));
    let need = scratch_len(cpu.isa, l);
    assert!(scratch.len() >= need, "attention scratch too small");
    let (mr, nr) = att_tile(cpu.isa, l.dh);
    let ph = per_head(nr, l);
    let packs = SyncPtr(scratch.as_mut_ptr());
    // K transposed (dh x T) and V (T x dh), as GEMM panels, for pair `i` (= b * nh + h - h0).
    let pack = |i: usize| {
        let (b, h) = (i / nh, h0 + i % nh);
        // SAFETY: head i writes its own range of the scratch.
        let dst = unsafe { std::slice::from_raw_parts_mut(packs.ptr().add(i * ph), ph) };
        let (kp, vp) = dst.split_at_mut(l.t.div_ceil(nr) * l.dh * nr);
        let base = l.base(b, h);
        for p in 0..l.t.div_ceil(nr) {
            let keys = nr.min(l.t - p * nr);
            for j in 0..keys {
                let key = base + l.k_off + (p * nr + j) * l.row;
                for d in 0..l.dh {
                    kp[(p * l.dh + d) * nr + j] = qkv[key + d];
                }
            }
            // The last panel's columns past the keys: zeros, not what the scratch held before
            // (another kernel's bytes, as likely as not denormal floats, which the product would
            // multiply at a microcode assist each before its columns are dropped).
            for d in 0..l.dh {
                kp[(p * l.dh + d) * nr + keys..(p * l.dh + d + 1) * nr].fill(0.0);
            }
        }
        if !v_in_place(nr, l) {
            for p in 0..l.dh.div_ceil(nr) {
                let w = nr.min(l.dh - p * nr);
                for t in 0..l.t {
                    let src = base + l.v_off + t * l.row + p * nr;
                    let dst = &mut vp[(p * l.t + t) * nr..(p * l.t + t + 1) * nr];
                    dst[..w].iter_mut().zip(&qkv[src..src + w]).for_each(|(d, s)| *d = *s);
                    // Past the head dim: zeros, as for K's last panel.
                    dst[w..].fill(0.0);
                }
            }
        }
    };
    // Proportional attention's bias, log(size) in units of the unscaled scores, once per token
    // (not once per query block).
    let bias: Vec<f32> = sizes.iter().map(|s| s.ln() / scale).collect();
    let qb = 2 * mr;
    let blocks = queries.len().div_ceil(qb);
    let o = SyncPtr(out.as_mut_ptr());
    let isa = cpu.isa;
    // Query block `blk` of head `bh`, its head packed.
    let block = |bh: usize, blk: usize| {
        let (b, h) = (bh / nh, h0 + bh % nh);
        // SAFETY: the head's pack is complete and only read here; each block writes its own query
        // rows of its own head in `out`.
        let pack = unsafe { std::slice::from_raw_parts(packs.ptr().add(bh * ph) as *const f32, ph) };
        let q0 = queries.start + blk * qb;
        let rows = qb.min(queries.end - q0);
        let dst = SyncPtr(unsafe { o.ptr().add((b * l.t + q0) * l.heads * l.dh + h * l.dh) });
        let bias = if bias.is_empty() { &bias[..] } else { &bias[b * l.t..(b + 1) * l.t] };
        let task = Task { qkv, l, pack, scale, b, h, q0, rows, keys: keys(b), bias, out: dst };
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Cpu` only selects an instruction set the machine has.
            Isa::Avx512 => unsafe { task_avx512(&task, nr) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { task_avx2(&task) },
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Wasm128 => unsafe { attend::<Wasm128, 4, 2>(&task) },
            _ => unsafe { attend::<Portable, 4, 2>(&task) },
        }
    };
    let pairs = l.b * nh;
    if blocks <= 4 {
        // Short sequences: a task takes whole heads (packing and every query block), enough of
        // them for about 2^20 multiply-adds.
        let per = ((1 << 20) / (l.t * l.t * l.dh).max(1)).clamp(1, pairs);
        cpu.pool.run(pairs.div_ceil(per), &|task| {
            for bh in task * per..((task + 1) * per).min(pairs) {
                pack(bh);
                (0..blocks).for_each(|blk| block(bh, blk));
            }
        });
    } else {
        cpu.pool.run(pairs, &pack);
        cpu.pool.run(pairs * blocks, &|task| block(task / blocks, task % blocks));
    }
}

/// A stack buffer on a 64-byte boundary (whole-vector stores never straddle cache lines).
#[repr(C, align(64))]
struct Align64<T>(T);

/// One block of queries of one head.
struct Task<'a> {
    qkv: &'a [f32],
    l: &'a Qkv,
    pack: &'a [f32],
    scale: f32,
    b: usize,
    h: usize,
    q0: usize,
    rows: usize,
    /// The batch item's keys (the first `keys` of its T).
    keys: usize,
    /// The batch item's proportional-attention bias per key, log(size) / scale (empty: none).
    bias: &'a [f32],
    out: SyncPtr,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn task_avx512(t: &Task, nr: usize) {
    match nr {
        16 => unsafe { attend::<Avx512, 12, 1>(t) },
        32 => unsafe { attend::<Avx512, 8, 2>(t) },
        _ => unsafe { attend::<Avx512, 6, 4>(t) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn task_avx2(t: &Task) {
    unsafe { attend::<Avx2, 6, 2>(t) }
}

#[inline(always)]
unsafe fn attend<S: Simd, const MR: usize, const NV: usize>(t: &Task) {
    let l = t.l;
    let (nr, qb) = (NV * S::LANES, 2 * MR);
    let kb = KB;
    let dh = l.dh;
    let (kp, vp) = t.pack.split_at(l.t.div_ceil(nr) * dh * nr);
    // V's panels: packed, or in place (panel p = columns p*nr.. of every V row).
    let base = l.base(t.b, t.h);
    let (v, v_panel, v_ld) = if v_in_place(nr, l) { (&t.qkv[base + l.v_off..], nr, l.row) } else { (vp, l.t * nr, nr) };
    // Scores with a row stride of the key block rounded up to whole panels; only the parts in use
    // are zeroed (the scores are written by the product before they are read).
    let lds = kb.min(t.keys.next_multiple_of(nr));
    let mut s_buf = std::mem::MaybeUninit::<Align64<[f32; MAX_QB * KB]>>::uninit();
    // SAFETY: the first rows * lds values are zeroed here, and only they are used.
    let s = unsafe {
        let p = s_buf.as_mut_ptr() as *mut f32;
        std::ptr::write_bytes(p, 0, t.rows * lds);
        std::slice::from_raw_parts_mut(p, t.rows * lds)
    };
    let mut acc_buf = std::mem::MaybeUninit::<Align64<[f32; MAX_QB * MAX_HEAD_DIM]>>::uninit();
    // SAFETY: the first rows * dh values are zeroed here, and only they are used.
    let acc = unsafe {
        let p = acc_buf.as_mut_ptr() as *mut f32;
        std::ptr::write_bytes(p, 0, t.rows * dh);
        std::slice::from_raw_parts_mut(p, t.rows * dh)
    };
    let mut m = [f32::NEG_INFINITY; MAX_QB];
    let mut sum = [0f32; MAX_QB];
    let q = &t.qkv[l.base(t.b, t.h) + t.q0 * l.row..];
    for k0 in (0..t.keys).step_by(kb) {
        // Causal: no key past this task's last query.
        if l.causal && k0 >= t.q0 + t.rows {
            break;
        }
        let n = kb.min(t.keys - k0);
        // Scores: Q (rows x dh) x K^T (dh x n), panels k0 / nr.. of the packed K.
        let g = Gemm { m: t.rows, a: q, lda: l.row, b: &kp[(k0 / nr) * dh * nr..], k: dh, k0: 0, panel: dh * nr, ldb: nr, n, nr, ldc: lds };
        unsafe { block_generic::<S, MR, NV>(&g, SyncPtr(s.as_mut_ptr()), &Epilogue::NONE, (0, n.div_ceil(nr)), (0, t.rows), 0) };
        // Proportional attention: log(size) on each logit, in units of the unscaled scores.
        if !t.bias.is_empty() {
            let bias = &t.bias[k0..k0 + n];
            for i in 0..t.rows {
                s[i * lds..i * lds + n].iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
        }
        // Online softmax: new maxima, rescaled sums and accumulators, probabilities in place.
        // The maxima are of the unscaled scores (the scale is positive), the scale applied inside
        // the exponent.
        for i in 0..t.rows {
            let row = &mut s[i * lds..i * lds + n];
            // Causal: keys after query q0 + i take no weight (key k0 is at or before it).
            let keep = if l.causal { (t.q0 + i + 1).saturating_sub(k0).min(n) } else { n };
            row[keep..].fill(f32::NEG_INFINITY);
            let m_new = math::max(row).max(m[i]);
            if m[i] > f32::NEG_INFINITY {
                let correction = math::exp_floored((m[i] - m_new) * t.scale);
                sum[i] *= correction;
                acc[i * dh..(i + 1) * dh].iter_mut().for_each(|a| *a *= correction);
            }
            sum[i] += if S::FMA { math::exp_sum::<true>(&mut row[..keep], m_new, t.scale) } else { math::exp_sum::<false>(&mut row[..keep], m_new, t.scale) };
            row[keep..].fill(0.0);
            m[i] = m_new;
        }
        // acc += P (rows x n) x V (n x dh), rows k0.. of the packed V.
        let g = Gemm { m: t.rows, a: s, lda: lds, b: v, k: n, k0, panel: v_panel, ldb: v_ld, n: dh, nr, ldc: dh };
        let add = Epilogue { accumulate: true, ..Epilogue::NONE };
        unsafe { block_generic::<S, MR, NV>(&g, SyncPtr(acc.as_mut_ptr()), &add, (0, dh.div_ceil(nr)), (0, t.rows), 0) };
    }
    let width = l.heads * dh;
    for i in 0..t.rows {
        let inv = 1.0 / sum[i];
        // SAFETY: this task's query row of its head.
        let o = unsafe { std::slice::from_raw_parts_mut(t.out.0.add(i * width), dh) };
        o.iter_mut().zip(&acc[i * dh..(i + 1) * dh]).for_each(|(o, a)| *o = a * inv);
    }
    let _ = qb;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::Rng;

    #[test]
    fn matches_the_f64_softmax_on_every_instruction_set() {
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Wasm128, Isa::Portable] {
            if !isa.available() {
                continue;
            }
            let cpu = Cpu::with(isa, 2);
            for (b, t, heads, dh) in [(1, 1, 1, 1), (2, 37, 3, 5), (1, 197, 2, 64), (1, 300, 1, 128)] {
                let d = heads * dh;
                let mut rng = Rng::new((t * 7 + dh) as u64);
                let qkv = rng.vec(b * t * 3 * d, 1.0);
                let l = Qkv { b, t, heads, dh, batch: t * 3 * d, head: dh, row: 3 * d, k_off: d, v_off: 2 * d, causal: false };
                let scale = 1.0 / (dh as f32).sqrt();
                let mut out = vec![f32::NAN; b * t * d];
                let mut scratch = vec![0f32; scratch_len(isa, &l)];
                attention(&cpu, &qkv, &l, (0..heads, 0..t), (&[], &[]), scale, &mut out, &mut scratch);
                let want = crate::reference::attention(&qkv, b, t, heads, dh, scale);
                for (i, (g, w)) in out.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{isa:?} b={b} t={t} h={heads} dh={dh} at {i}: {g} vs {w}");
                }
            }
        }
    }
}
