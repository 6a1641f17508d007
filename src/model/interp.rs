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
    fn constant_stays_constant() {
        let g = vec![2.5f32; 3 * 3];
        assert!(bicubic(&g, 3, 3, 1, 7, 5).iter().all(|v| (v - 2.5).abs() < 1e-6));
    }
}
