//! The CPU forms of the row-wise and data-movement ops: layer norm, softmax, element-wise add and
//! per-channel scale, token slices and means, concatenation, the patch gather of the patch
//! embedding, and attention probabilities. Rows are spread over the pool where there are enough.

use super::attention::Qkv;
use super::math;
use super::{Cpu, SyncPtr};

/// Calls `f(r, out_row)` for each of `rows` rows of `cols` values of `out`, in parallel chunks
/// of at least `min_chunk` rows.
fn for_rows(cpu: &Cpu, out: &mut [f32], rows: usize, cols: usize, f: &(dyn Fn(usize, &mut [f32]) + Sync)) {
    assert!(out.len() >= rows * cols);
    // Chunks of about 64k values: big enough to pay for a task.
    let per = (65536 / cols.max(1)).max(1);
    let chunks = rows.div_ceil(per);
    let p = SyncPtr(out.as_mut_ptr());
    cpu.pool.run(chunks, &|c| {
        for r in c * per..((c + 1) * per).min(rows) {
            // SAFETY: rows are disjoint, and each is written by one task.
            let row = unsafe { std::slice::from_raw_parts_mut(p.ptr().add(r * cols), cols) };
            f(r, row);
        }
    });
}

/// Layer norm over the last dim: two passes in f32 (mean, then the centred variance).
pub fn layer_norm(cpu: &Cpu, x: &[f32], rows: usize, cols: usize, gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    for_rows(cpu, out, rows, cols, &|r, o| {
        let xr = &x[r * cols..(r + 1) * cols];
        let mean = math::sum(xr) / cols as f32;
        o.iter_mut().zip(xr).for_each(|(o, &v)| *o = v - mean);
        let var = math::dot(o, o) / cols as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((o, g), b) in o.iter_mut().zip(gamma).zip(beta) {
            *o = *o * inv * g + b;
        }
    });
}

/// Softmax over the last dim.
pub fn softmax(cpu: &Cpu, x: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    for_rows(cpu, out, rows, cols, &|r, o| {
        let xr = &x[r * cols..(r + 1) * cols];
        let m = math::max(xr);
        o.iter_mut().zip(xr).for_each(|(o, &v)| *o = math::exp_floored(v - m));
        let inv = 1.0 / math::sum(o);
        o.iter_mut().for_each(|v| *v *= inv);
    });
}

/// `a + b`.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    out.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (x, y))| *o = x + y);
}

/// `a * s` with `s` broadcast over the last dim of `a`.
pub fn mul_row(a: &[f32], s: &[f32], out: &mut [f32]) {
    for (o, x) in out.chunks_mut(s.len()).zip(a.chunks(s.len())) {
        o.iter_mut().zip(x.iter().zip(s)).for_each(|(o, (x, s))| *o = x * s);
    }
}

/// Tokens `start..start + count` of `x (b, t, d)`: kept (`(b, count, d)`) or averaged (`(b, d)`).
#[allow(clippy::too_many_arguments)]
pub fn tokens(x: &[f32], b: usize, t: usize, d: usize, start: usize, count: usize, mean: bool, out: &mut [f32]) {
    for bi in 0..b {
        let src = &x[(bi * t + start) * d..(bi * t + start + count) * d];
        if mean {
            let o = &mut out[bi * d..(bi + 1) * d];
            o.copy_from_slice(&src[..d]);
            for row in src.chunks(d).skip(1) {
                o.iter_mut().zip(row).for_each(|(o, v)| *o += v);
            }
            if count > 1 {
                let inv = 1.0 / count as f32;
                o.iter_mut().for_each(|v| *v *= inv);
            }
        } else {
            out[bi * count * d..(bi + 1) * count * d].copy_from_slice(src);
        }
    }
}

/// `[a | b]` along the last dim, `a (rows, d1)`, `b (rows, d2)`.
pub fn concat(a: &[f32], b: &[f32], rows: usize, d1: usize, d2: usize, out: &mut [f32]) {
    for r in 0..rows {
        out[r * (d1 + d2)..r * (d1 + d2) + d1].copy_from_slice(&a[r * d1..(r + 1) * d1]);
        out[r * (d1 + d2) + d1..(r + 1) * (d1 + d2)].copy_from_slice(&b[r * d2..(r + 1) * d2]);
    }
}

/// The patches of `image (c, h, w)` (one batch item) as rows of `c * p * p` values, in the
/// order of the flattened convolution weight: `out (gh * gw, c * p * p)`.
pub fn patches(image: &[f32], c: usize, h: usize, w: usize, p: usize, out: &mut [f32]) {
    let (gh, gw) = (h / p, w / p);
    let k = c * p * p;
    for gy in 0..gh {
        for gx in 0..gw {
            let row = &mut out[(gy * gw + gx) * k..(gy * gw + gx + 1) * k];
            for ci in 0..c {
                for ky in 0..p {
                    let src = (ci * h + gy * p + ky) * w + gx * p;
                    row[(ci * p + ky) * p..(ci * p + ky + 1) * p].copy_from_slice(&image[src..src + p]);
                }
            }
        }
    }
}

/// Attention probabilities of queries `0..queries` over keys `first_key..t`, per head:
/// `out (b, heads, queries, t - first_key)`.
pub fn attention_probs(qkv: &[f32], l: &Qkv, sizes: &[f32], scale: f32, queries: usize, first_key: usize, out: &mut [f32]) {
    let keys = l.t - first_key;
    let mut s = vec![0f32; l.t];
    for b in 0..l.b {
        for h in 0..l.heads {
            let base = b * l.batch + h * l.head;
            for q in 0..queries {
                let qv = &qkv[base + q * l.row..base + q * l.row + l.dh];
                for (kk, sk) in s.iter_mut().enumerate() {
                    let kv = &qkv[base + l.k_off + kk * l.row..base + l.k_off + kk * l.row + l.dh];
                    *sk = math::dot(qv, kv) * scale + sizes.get(b * l.t + kk).map_or(0.0, |s| s.ln());
                }
                let m = math::max(&s);
                s.iter_mut().for_each(|v| *v = math::exp_floored(*v - m));
                let inv = 1.0 / math::sum(&s);
                let o = &mut out[((b * l.heads + h) * queries + q) * keys..((b * l.heads + h) * queries + q + 1) * keys];
                o.iter_mut().zip(&s[first_key..]).for_each(|(o, v)| *o = v * inv);
            }
        }
    }
}

/// The tokens of batch item `bi` that a pooling query sees: `lengths[bi]` (at least one, at most
/// `t`), or all `t` where `lengths` is empty.
fn pooled_tokens(lengths: &[f32], bi: usize, t: usize) -> usize {
    lengths.get(bi).map_or(t, |&n| (n.round().max(1.0) as usize).min(t))
}

/// The probabilities of [`attention_pool`]: `out (b, heads, t)` (0 past each item's length).
#[allow(clippy::too_many_arguments)]
pub fn attention_pool_probs(query: &[f32], kv: &[f32], lengths: &[f32], b: usize, t: usize, heads: usize, dh: usize, scale: f32, out: &mut [f32]) {
    let d = heads * dh;
    for bi in 0..b {
        let n = pooled_tokens(lengths, bi, t);
        for h in 0..heads {
            let q = &query[h * dh..(h + 1) * dh];
            let row = |ti: usize| (bi * t + ti) * 2 * d + h * dh;
            let all = &mut out[(bi * heads + h) * t..(bi * heads + h + 1) * t];
            let (s, pad) = all.split_at_mut(n);
            pad.fill(0.0);
            for (ti, sk) in s.iter_mut().enumerate() {
                *sk = math::dot(q, &kv[row(ti)..row(ti) + dh]) * scale;
            }
            let m = math::max(s);
            s.iter_mut().for_each(|v| *v = math::exp_floored(*v - m));
            let inv = 1.0 / math::sum(s);
            s.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// Attention pooling: the learned `query (1, heads*dh)` over `kv (b, t, 2*heads*dh)` (keys, then
/// values), per head: `out (b, heads*dh)`; `lengths` (empty, or per item): the tokens each item
/// pools, the rest skipped.
#[allow(clippy::too_many_arguments)]
pub fn attention_pool(query: &[f32], kv: &[f32], lengths: &[f32], b: usize, t: usize, heads: usize, dh: usize, scale: f32, out: &mut [f32]) {
    let d = heads * dh;
    let mut all = vec![0f32; t];
    for bi in 0..b {
        let s = &mut all[..pooled_tokens(lengths, bi, t)];
        for h in 0..heads {
            let q = &query[h * dh..(h + 1) * dh];
            let row = |ti: usize| (bi * t + ti) * 2 * d + h * dh;
            for (ti, sk) in s.iter_mut().enumerate() {
                *sk = math::dot(q, &kv[row(ti)..row(ti) + dh]) * scale;
            }
            let m = math::max(s);
            s.iter_mut().for_each(|v| *v = math::exp_floored(*v - m));
            let inv = 1.0 / math::sum(s);
            let o = &mut out[bi * d + h * dh..bi * d + (h + 1) * dh];
            o.fill(0.0);
            for (ti, &p) in s.iter().enumerate() {
                let v = &kv[row(ti) + d..row(ti) + d + dh];
                o.iter_mut().zip(v).for_each(|(o, v)| *o += p * inv * v);
            }
        }
    }
}
