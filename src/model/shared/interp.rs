//! Bicubic resampling of position-embedding grids, as `torch.nn.functional.interpolate(...,
//! mode="bicubic", align_corners=False)` does it (cubic coefficient -0.75, edge samples clamped,
//! no antialiasing), computed in f64.

fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// Per output index: the four source indices (clamped) and their weights.
fn taps(input: usize, output: usize) -> Vec<([usize; 4], [f64; 4])> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|o| {
            let real = (o as f64 + 0.5) * scale - 0.5;
            let base = real.floor();
            let w = cubic_weights(real - base);
            let idx = [-1i64, 0, 1, 2].map(|k| (base as i64 + k).clamp(0, input as i64 - 1) as usize);
            (idx, w)
        })
        .collect()
}

/// Per output index, as `interpolate(..., mode="bicubic", antialias=True)` (PIL's filter):
/// the cubic with coefficient -0.5, widened by the scale when shrinking, truncated at the edges and
/// normalized; as (first source index, weights).
fn taps_antialias(input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
    const A: f64 = -0.5;
    let filter = |x: f64| {
        let x = x.abs();
        if x < 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * A
        } else {
            0.0
        }
    };
    let scale = input as f64 / output as f64;
    let (support, inv) = if scale >= 1.0 { (2.0 * scale, 1.0 / scale) } else { (2.0, 1.0) };
    (0..output)
        .map(|o| {
            let center = scale * (o as f64 + 0.5);
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let mut w: Vec<f64> = (lo..hi).map(|j| filter((j as f64 - center + 0.5) * inv)).collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            (lo, w)
        })
        .collect()
}

/// Resamples `grid` `(h, w, dim)` to `(out_h, out_w, dim)` as `timm`'s `resample_abs_pos_embed`
/// does (`interpolate(..., mode="bicubic", antialias=True)`), in f64.
pub fn bicubic_antialias(grid: &[f32], h: usize, w: usize, dim: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let ty = taps_antialias(h, out_h);
    let tx = taps_antialias(w, out_w);
    // Along x first (out_w columns of every input row), then along y.
    let mut rows = vec![0f64; h * out_w * dim];
    for y in 0..h {
        for (ox, (x0, wx)) in tx.iter().enumerate() {
            let dst = &mut rows[(y * out_w + ox) * dim..][..dim];
            for (j, &wgt) in wx.iter().enumerate() {
                let src = &grid[(y * w + x0 + j) * dim..][..dim];
                dst.iter_mut().zip(src).for_each(|(d, &s)| *d += wgt * s as f64);
            }
        }
    }
    let mut out = vec![0f32; out_h * out_w * dim];
    for (oy, (y0, wy)) in ty.iter().enumerate() {
        for ox in 0..out_w {
            for d in 0..dim {
                let acc: f64 = wy.iter().enumerate().map(|(j, &wgt)| wgt * rows[((y0 + j) * out_w + ox) * dim + d]).sum();
                out[(oy * out_w + ox) * dim + d] = acc as f32;
            }
        }
    }
    out
}

/// The weights of `interpolate(mode="bilinear", align_corners=False, antialias=True)` along one
/// axis from `input` to `output` samples, computed in f32 as transformers' SigLIP 2
/// (`Siglip2VisionEmbeddings.resize_positional_embeddings`) computes them: the triangle filter
/// widened by the scale when shrinking, each output's weights over every input normalized to 1.
fn bilinear_antialias_weights(input: usize, output: usize) -> Vec<Vec<f32>> {
    let scale = input as f32 / output as f32;
    let support = scale.max(1.0);
    (0..output)
        .map(|o| {
            let center = (o as f32 + 0.5) * scale - 0.5;
            let w: Vec<f32> = (0..input).map(|s| (1.0 - (s as f32 - center).abs() / support).max(0.0)).collect();
            let total: f32 = w.iter().sum();
            w.into_iter().map(|v| v / total).collect()
        })
        .collect()
}

/// Resamples `grid` `(h, w, dim)` to `(out_h, out_w, dim)` as SigLIP 2 resizes its learned
/// position grid per image: each output the grid weighted by its row's and its column's bilinear
/// antialiased weights (f32 weights, as transformers computes them; sums in f64).
pub fn bilinear_antialias(grid: &[f32], h: usize, w: usize, dim: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let wy = bilinear_antialias_weights(h, out_h);
    let wx = bilinear_antialias_weights(w, out_w);
    let mut out = vec![0f32; out_h * out_w * dim];
    let mut acc = vec![0f64; dim];
    for (oy, ry) in wy.iter().enumerate() {
        for (ox, rx) in wx.iter().enumerate() {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (y, &a) in ry.iter().enumerate().filter(|(_, a)| **a != 0.0) {
                for (x, &b) in rx.iter().enumerate().filter(|(_, b)| **b != 0.0) {
                    // transformers multiplies the two f32 weights, then sums in f32.
                    let wgt = (a * b) as f64;
                    let src = &grid[(y * w + x) * dim..][..dim];
                    acc.iter_mut().zip(src).for_each(|(d, &v)| *d += wgt * v as f64);
                }
            }
            out[(oy * out_w + ox) * dim..][..dim].iter_mut().zip(&acc).for_each(|(o, a)| *o = *a as f32);
        }
    }
    out
}

/// Resamples `grid` of shape `(h, w, dim)` to `(out_h, out_w, dim)` as `interpolate(...,
/// mode="bilinear", align_corners=False)` (no antialiasing), in f64.
pub fn bilinear(grid: &[f32], h: usize, w: usize, dim: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    // Per output index: the two input taps and the weight of the second (as PyTorch: the source
    // coordinate clamped at 0, the upper tap at the last index).
    let taps = |n: usize, m: usize| -> Vec<(usize, usize, f64)> {
        let scale = n as f64 / m as f64;
        (0..m)
            .map(|o| {
                let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(n - 1);
                let i1 = (i0 + 1).min(n - 1);
                (i0, i1, src - i0 as f64)
            })
            .collect()
    };
    let (ty, tx) = (taps(h, out_h), taps(w, out_w));
    let mut out = vec![0f32; out_h * out_w * dim];
    for (oy, &(y0, y1, fy)) in ty.iter().enumerate() {
        for (ox, &(x0, x1, fx)) in tx.iter().enumerate() {
            let at = |y: usize, x: usize, d: usize| grid[(y * w + x) * dim + d] as f64;
            for d in 0..dim {
                let top = at(y0, x0, d) * (1.0 - fx) + at(y0, x1, d) * fx;
                let bottom = at(y1, x0, d) * (1.0 - fx) + at(y1, x1, d) * fx;
                out[(oy * out_w + ox) * dim + d] = (top * (1.0 - fy) + bottom * fy) as f32;
            }
        }
    }
    out
}

/// Resamples `grid` of shape `(h, w, dim)` (row-major) to `(out_h, out_w, dim)`.
pub fn bicubic(grid: &[f32], h: usize, w: usize, dim: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let ty = taps(h, out_h);
    let tx = taps(w, out_w);
    let mut out = vec![0f32; out_h * out_w * dim];
    for (oy, (iy, wy)) in ty.iter().enumerate() {
        for (ox, (ix, wx)) in tx.iter().enumerate() {
            for d in 0..dim {
                let mut acc = 0f64;
                for a in 0..4 {
                    let mut row = 0f64;
                    for b in 0..4 {
                        row += wx[b] * grid[(iy[a] * w + ix[b]) * dim + d] as f64;
                    }
                    acc += wy[a] * row;
                }
                out[(oy * out_w + ox) * dim + d] = acc as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let g: Vec<f32> = (0..4 * 5 * 2).map(|i| i as f32 * 0.37).collect();
        let out = bicubic(&g, 4, 5, 2, 4, 5);
        for (a, b) in g.iter().zip(&out) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn antialiased_same_size_is_identity_and_constants_stay() {
        let g: Vec<f32> = (0..4 * 5 * 2).map(|i| i as f32 * 0.37).collect();
        for (a, b) in g.iter().zip(&bicubic_antialias(&g, 4, 5, 2, 4, 5)) {
            assert!((a - b).abs() < 1e-5);
        }
        let c = vec![1.5f32; 6 * 6];
        assert!(bicubic_antialias(&c, 6, 6, 1, 3, 9).iter().all(|v| (v - 1.5).abs() < 1e-6));
    }

    #[test]
    fn constant_stays_constant() {
        let g = vec![2.5f32; 3 * 3];
        assert!(bicubic(&g, 3, 3, 1, 7, 5).iter().all(|v| (v - 2.5).abs() < 1e-6));
    }
}
