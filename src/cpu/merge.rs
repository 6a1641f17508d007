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
pub fn metric(qkv: &[f32], l: &Qkv, out: &mut [f32]) {
    let mut m = vec![0f32; l.dh];
    for b in 0..l.b {
        for t in 0..l.t {
            m.iter_mut().for_each(|v| *v = 0.0);
            for h in 0..l.heads {
                let k = b * l.batch + h * l.head + t * l.row + l.k_off;
                m.iter_mut().zip(&qkv[k..k + l.dh]).for_each(|(m, v)| *m += v);
            }
            m.iter_mut().for_each(|v| *v /= l.heads as f32);
            let inv = 1.0 / math::dot(&m, &m).sqrt();
            let o = &mut out[(b * l.t + t) * l.dh..(b * l.t + t + 1) * l.dh];
            o.iter_mut().zip(&m).for_each(|(o, v)| *o = v * inv);
        }
    }
}

/// `out (B, ceil(T/2), 2)`: each even token's best cosine over the odd tokens and that token's
/// odd index (the first of equal scores; NaN scores never win); the first `protected` tokens are
/// neither matched nor targets.
pub fn best_matches(cpu: &Cpu, metric: &[f32], s: Shape, dh: usize, protected: usize, out: &mut [f32]) {
    let (na, nb) = (s.t.div_ceil(2), s.t / 2);
    let rows = s.b * na;
    let o = SyncPtr(out.as_mut_ptr());
    let per = (65536 / (nb * dh).max(1)).max(1);
    cpu.pool.run(rows.div_ceil(per), &|c| {
        for i in c * per..((c + 1) * per).min(rows) {
            let (b, a) = (i / na, i % na);
            let (mut best, mut at) = (PROTECTED_SCORE, 0usize);
            if 2 * a >= protected {
                let ra = &metric[(b * s.t + 2 * a) * dh..(b * s.t + 2 * a + 1) * dh];
                for j in (0..nb).filter(|j| 2 * j + 1 >= protected) {
                    let rb = &metric[(b * s.t + 2 * j + 1) * dh..(b * s.t + 2 * j + 2) * dh];
                    let dot = math::dot(ra, rb);
                    if dot > best {
                        (best, at) = (dot, j);
                    }
                }
            }
            // SAFETY: each row writes its own two values.
            unsafe {
                *o.ptr().add(2 * i) = best + 0.0;
                *o.ptr().add(2 * i + 1) = at as f32;
            }
        }
    });
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
            ob[row * d..(row + 1) * d].iter_mut().zip(xr).for_each(|(o, v)| *o = v.mul_add(size, *o));
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
