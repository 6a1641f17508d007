//! The CPU forms of the token-merging ops (see `ops::merge` for what each computes and the order
//! of the output rows). Indices travel as f32 values.

use super::attention::Qkv;
use super::{math, Cpu, SyncPtr};

/// The score of a protected token (never merged, never a target); the WGSL kernel uses the same.
pub const PROTECTED_SCORE: f32 = -3.0e38;

/// Batch items and tokens of an op's first input.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Batch items.
    pub b: usize,
    /// Tokens.
    pub t: usize,
}

/// An f32 index read back, clamped below `n`.
fn index(v: f32, n: usize) -> usize {
    if v.is_finite() && v > 0.0 {
        (v.round() as usize).min(n.saturating_sub(1))
    } else {
        0
    }
}

/// `out (B, T, dh)`: each token's keys averaged over the heads, at unit length.
pub fn metric(cpu: &Cpu, qkv: &[f32], l: &Qkv, out: &mut [f32]) {
    // Runs of tokens per task; within one, each head's keys are read as one sequential run.
    let per = (4096 / l.dh.max(1)).clamp(1, l.t.max(1));
    let chunks = l.t.div_ceil(per);
    let o = SyncPtr(out.as_mut_ptr());
    cpu.pool.run(l.b * chunks, &|c| {
        let (b, t0) = (c / chunks, (c % chunks) * per);
        let n = per.min(l.t - t0);
        // SAFETY: each task writes its own rows.
        let m = unsafe { std::slice::from_raw_parts_mut(o.ptr().add((b * l.t + t0) * l.dh), n * l.dh) };
        for h in 0..l.heads {
            for (i, row) in m.chunks_exact_mut(l.dh).enumerate() {
                let k = b * l.batch + h * l.head + (t0 + i) * l.row + l.k_off;
                let keys = &qkv[k..k + l.dh];
                if h == 0 {
                    row.copy_from_slice(keys);
                } else {
                    row.iter_mut().zip(keys).for_each(|(m, v)| *m += v);
                }
            }
        }
        let heads = l.heads as f32;
        for row in m.chunks_exact_mut(l.dh) {
            row.iter_mut().for_each(|v| *v /= heads);
            let inv = 1.0 / math::dot(row, row).sqrt();
            row.iter_mut().for_each(|v| *v *= inv);
        }
    });
}

/// `out (B, ceil(T/2), 2)`: each even token's best cosine over the odd tokens and that token's
/// odd index (the first of equal scores; NaN scores never win); the first `protected` tokens are
/// neither matched nor targets.
pub fn best_matches(cpu: &Cpu, metric: &[f32], s: Shape, dh: usize, protected: usize, out: &mut [f32]) {
    let (na, nb) = (s.t.div_ceil(2), s.t / 2);
    let first = protected / 2; // the first odd token that may be a target
    // Chunks of A rows per batch item; each chunk scores its rows against every B token at once,
    // B transposed to (dh, nb rounded up to whole blocks) so that B tokens run in SIMD lanes.
    let nbp = nb.next_multiple_of(BLOCK);
    let per = (65536 / (nbp * dh).max(1)).clamp(1, na.max(1));
    let chunks = na.div_ceil(per);
    let o = SyncPtr(out.as_mut_ptr());
    let isa = cpu.isa;
    cpu.pool.run(s.b * chunks, &|c| {
        let (b, a0) = (c / chunks, (c % chunks) * per);
        let m = &metric[b * s.t * dh..(b + 1) * s.t * dh];
        let mut bt = vec![0f32; dh * nbp];
        for j in 0..nb {
            for (k, &v) in m[(2 * j + 1) * dh..(2 * j + 2) * dh].iter().enumerate() {
                bt[k * nbp + j] = v;
            }
        }
        let mut scores = vec![0f32; nbp];
        for a in a0..(a0 + per).min(na) {
            let (mut best, mut at) = (PROTECTED_SCORE, 0usize);
            if 2 * a >= protected && first < nb {
                score_row(isa, &m[2 * a * dh..(2 * a + 1) * dh], &bt, &mut scores);
                // The largest score (NaN never wins), then the first token that has it.
                let row = &scores[first..nb];
                let mut lanes = [PROTECTED_SCORE; 16];
                let mut blocks = row.chunks_exact(16);
                for c in &mut blocks {
                    for (m, &v) in lanes.iter_mut().zip(c) {
                        *m = if v > *m { v } else { *m };
                    }
                }
                best = blocks.remainder().iter().chain(&lanes).fold(PROTECTED_SCORE, |m, &v| if v > m { v } else { m });
                if best > PROTECTED_SCORE {
                    at = first + row.iter().position(|&v| v == best).unwrap_or(0);
                }
            }
            let i = b * na + a;
            // SAFETY: each row writes its own two values.
            unsafe {
                *o.ptr().add(2 * i) = best + 0.0;
                *o.ptr().add(2 * i + 1) = at as f32;
            }
        }
    });
}

/// B tokens scored at once (accumulators held in registers).
const BLOCK: usize = 32;

/// `scores[j] = sum_k a[k] * bt[k, j]` (`bt` holds `scores.len()` columns, a multiple of
/// BLOCK), in the instruction set's widest vectors. Each score sums its products in k order
/// (no fused multiply-add), the same on every instruction set.
fn score_row(isa: super::Isa, a: &[f32], bt: &[f32], scores: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2")]
        unsafe fn avx512(a: &[f32], bt: &[f32], scores: &mut [f32]) {
            score_row_with(a, bt, scores)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(a: &[f32], bt: &[f32], scores: &mut [f32]) {
            score_row_with(a, bt, scores)
        }
        match isa {
            // SAFETY: the backend was created with an instruction set this machine has.
            super::Isa::Avx512 => return unsafe { avx512(a, bt, scores) },
            super::Isa::Avx2 => return unsafe { avx2(a, bt, scores) },
            _ => {}
        }
    }
    let _ = isa;
    score_row_with(a, bt, scores)
}

#[inline(always)]
fn score_row_with(a: &[f32], bt: &[f32], scores: &mut [f32]) {
    let n = scores.len();
    for (j0, out) in (0..n).step_by(BLOCK).zip(scores.chunks_exact_mut(BLOCK)) {
        let mut acc = [0f32; BLOCK];
        for (k, &x) in a.iter().enumerate() {
            let b = &bt[k * n + j0..k * n + j0 + BLOCK];
            for i in 0..BLOCK {
                acc[i] += x * b[i];
            }
        }
        out.copy_from_slice(&acc);
    }
}

/// `out (B, T)`: each token's output row, merging the `r` even tokens of highest score (equal
/// scores: lower index first) into their matches.
pub fn dest(best: &[f32], b: usize, tokens: usize, r: usize, protected: usize, out: &mut [f32]) {
    let (na, nb) = (tokens.div_ceil(2), tokens / 2);
    let (pa, pb) = (protected.div_ceil(2), protected / 2);
    let unmerged = na - pa - r;
    let mut order: Vec<usize> = Vec::with_capacity(na);
    let mut rank = vec![0usize; na];
    for bi in 0..b {
        let s = &best[bi * na * 2..(bi + 1) * na * 2];
        let score = |i: usize| s[2 * i];
        order.clear();
        order.extend(0..na);
        order.sort_by(|&x, &y| score(y).partial_cmp(&score(x)).unwrap_or(std::cmp::Ordering::Equal).then(x.cmp(&y)));
        for (k, &i) in order.iter().enumerate() {
            rank[i] = k;
        }
        let o = &mut out[bi * tokens..(bi + 1) * tokens];
        let b_row = |j: usize| protected + unmerged + j - pb;
        let mut kept = 0;
        for i in 0..na {
            o[2 * i] = if i < pa {
                (2 * i) as f32
            } else if rank[i] < r {
                b_row(index(s[2 * i + 1], nb).max(pb)) as f32
            } else if protected == 0 {
                (rank[i] - r) as f32
            } else {
                kept += 1;
                (protected + kept - 1) as f32
            };
        }
        for j in 0..nb {
            o[2 * j + 1] = if j < pb { (2 * j + 1) as f32 } else { b_row(j) as f32 };
        }
    }
}

/// `out (B, T', D)`: each output row the size-weighted mean of the tokens `dest` sends there, in
/// token order (every size 1 where `sizes` is None).
#[allow(clippy::too_many_arguments)]
pub fn tokens(cpu: &Cpu, x: &[f32], dest: &[f32], sizes: Option<&[f32]>, s: Shape, d: usize, t_out: usize, out: &mut [f32]) {
    let o = SyncPtr(out.as_mut_ptr());
    cpu.pool.run(s.b, &|bi| {
        // SAFETY: each batch item writes its own rows.
        let ob = unsafe { std::slice::from_raw_parts_mut(o.ptr().add(bi * t_out * d), t_out * d) };
        ob.fill(0.0);
        let mut w = vec![0f32; t_out];
        for t in 0..s.t {
            let row = index(dest[bi * s.t + t], t_out);
            let size = sizes.map_or(1.0, |z| z[bi * s.t + t]);
            let xr = &x[(bi * s.t + t) * d..(bi * s.t + t + 1) * d];
            // A product then a sum, as the reference's scatter of x * size (and no fma call where
            // the target has no FMA instruction).
            match sizes {
                Some(_) => ob[row * d..(row + 1) * d].iter_mut().zip(xr).for_each(|(o, v)| *o += v * size),
                None => ob[row * d..(row + 1) * d].iter_mut().zip(xr).for_each(|(o, v)| *o += v),
            }
            w[row] += size;
        }
        for (row, &w) in ob.chunks_mut(d).zip(&w) {
            row.iter_mut().for_each(|v| *v /= w);
        }
    });
}

/// `out (B, T')`: the sizes (1 each where None) summed per output row.
pub fn sizes(dest: &[f32], sizes: Option<&[f32]>, s: Shape, t_out: usize, out: &mut [f32]) {
    out.fill(0.0);
    for bi in 0..s.b {
        for t in 0..s.t {
            out[bi * t_out + index(dest[bi * s.t + t], t_out)] += sizes.map_or(1.0, |z| z[bi * s.t + t]);
        }
    }
}

/// `out (B, N)`: `dest[b, groups[b, n]]`.
pub fn compose(groups: &[f32], dest: &[f32], b: usize, out: &mut [f32]) {
    let (n, t) = (groups.len() / b.max(1), dest.len() / b.max(1));
    for bi in 0..b {
        for i in 0..n {
            out[bi * n + i] = dest[bi * t + index(groups[bi * n + i], t)];
        }
    }
}
