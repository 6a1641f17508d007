//! The patch size as a load-time dial: FlexiViT's PI-resize (Beyer et al., "FlexiViT: One Model
//! for All Patch Sizes", CVPR 2023).
//!
//! A patch kernel `w` (p x p per output and input channel) becomes `w' = pinv(Bᵀ) w` at patch
//! size q, where `B` (q² x p²) is the bilinear resize of a p x p patch to q x q (half-pixel
//! centres, no antialiasing: `F.interpolate(mode="bilinear", align_corners=False)`). Upsampling,
//! `<x, w> = <B x, w'>` for every patch x, so a model sees an upsampled image as it saw the
//! original; downsampling, `w'` is the least-squares solution of `w = Bᵀ w'`.
//!
//! The bilinear resize is separable, `B = R ⊗ R` with `R` (q x p) the 1-D resize, and the
//! pseudo-inverse of a Kronecker product is the product of the pseudo-inverses, so
//! `w' = P w Pᵀ` with `P = pinv(Rᵀ)` (q x p): a p x q pseudo-inverse instead of a p² x q² one,
//! which keeps large patch sizes cheap. Everything is computed in f64.

use crate::error::{Error, Result};

/// The largest patch side accepted: a kernel of 3 x 1024² inputs per output channel is far past
/// any useful model, and a request beyond it is a mistake, not a model.
pub const MAX_PATCH: usize = 1024;

/// The 1-D bilinear resize from `from` samples to `to` (half-pixel centres, edge-clamped,
/// no antialiasing), as a `to x from` row-major matrix.
pub fn resize_matrix(from: usize, to: usize) -> Vec<f64> {
    let mut r = vec![0f64; to * from];
    let scale = from as f64 / to as f64;
    for i in 0..to {
        let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(from - 1);
        let i1 = (i0 + 1).min(from - 1);
        let l = src - i0 as f64;
        r[i * from + i0] += 1.0 - l;
        r[i * from + i1] += l;
    }
    r
}

/// Moore-Penrose pseudo-inverse of `a` (`m x n`, row-major) as `n x m`, by a one-sided Jacobi
/// SVD; singular values below `max(m, n) * eps * σ_max` count as zero.
pub fn pinv(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    assert_eq!(a.len(), m * n, "pinv: {} values do not make {m} x {n}", a.len());
    if m < n {
        // pinv(A) = pinv(Aᵀ)ᵀ, so that the Jacobi below always orthogonalises the fewer columns.
        let at = transpose(a, m, n);
        return transpose(&pinv(&at, n, m), m, n);
    }
    // Columns of U (m x n) are rotated pairwise until orthogonal; V (n x n) collects the rotations.
    let mut u = a.to_vec();
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let col = |x: &[f64], rows: usize, cols: usize, j: usize| -> Vec<f64> { (0..rows).map(|r| x[r * cols + j]).collect() };
    for _sweep in 0..64 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (up, uq) = (col(&u, m, n, p), col(&u, m, n, q));
                let alpha: f64 = up.iter().map(|x| x * x).sum();
                let beta: f64 = uq.iter().map(|x| x * x).sum();
                let gamma: f64 = up.iter().zip(&uq).map(|(x, y)| x * y).sum();
                if gamma == 0.0 || gamma.abs() <= 1e-15 * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for (x, rows) in [(&mut u, m), (&mut v, n)] {
                    for r in 0..rows {
                        let (xp, xq) = (x[r * n + p], x[r * n + q]);
                        x[r * n + p] = c * xp - s * xq;
                        x[r * n + q] = s * xp + c * xq;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    // σ_j = |U_j|; pinv = Σ_j v_j u_jᵀ / σ_j² (U_j = σ_j u_j).
    let sigma: Vec<f64> = (0..n).map(|j| (0..m).map(|r| u[r * n + j] * u[r * n + j]).sum::<f64>().sqrt()).collect();
    let cutoff = sigma.iter().cloned().fold(0.0, f64::max) * m.max(n) as f64 * f64::EPSILON;
    let mut out = vec![0f64; n * m];
    for j in (0..n).filter(|&j| sigma[j] > cutoff) {
        let inv = 1.0 / (sigma[j] * sigma[j]);
        for i in 0..n {
            let vij = v[i * n + j] * inv;
            if vij != 0.0 {
                for k in 0..m {
                    out[i * m + k] += vij * u[k * n + j];
                }
            }
        }
    }
    out
}

fn transpose(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0f64; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

/// `P = pinv(Rᵀ)` (`to x from`, row-major): the 1-D factor of the PI-resize, `pinv(Bᵀ) = P ⊗ P`.
pub fn pi_resize_matrix(from: usize, to: usize) -> Vec<f64> {
    let rt = transpose(&resize_matrix(from, to), to, from); // from x to
    pinv(&rt, from, to) // to x from
}

/// Checks a patch size asked of a checkpoint with patch `from` trained at `image` (h, w).
pub fn check_patch_size(source: &str, from: usize, to: usize, image: (usize, usize)) -> Result<()> {
    let bad = |problem: String| Error::Model { file: source.to_string(), problem };
    if to == 0 {
        return Err(bad("patch size 0: a patch is at least 1 pixel".into()));
    }
    if to > MAX_PATCH {
        return Err(bad(format!("patch size {to} is beyond the largest supported ({MAX_PATCH})")));
    }
    if to > image.0.min(image.1) {
        return Err(bad(format!(
            "patch size {to} is larger than the checkpoint's {}x{} image (its own patch size is {from})",
            image.0, image.1
        )));
    }
    Ok(())
}

/// PI-resizes a patch kernel `(out, in, from, from)` (row-major, as in a checkpoint) to
/// `(out, in, to, to)`.
pub fn pi_resize(kernel: &[f32], channels: usize, from: usize, to: usize) -> Vec<f32> {
    assert_eq!(kernel.len(), channels * from * from, "pi_resize: kernel size");
    if from == to {
        return kernel.to_vec();
    }
    let p = pi_resize_matrix(from, to);
    let mut out = Vec::with_capacity(channels * to * to);
    let mut tmp = vec![0f64; to * from];
    for w in kernel.chunks_exact(from * from) {
        // tmp = P w  (to x from)
        tmp.iter_mut().for_each(|v| *v = 0.0);
        for i in 0..to {
            for k in 0..from {
                let pik = p[i * from + k];
                if pik != 0.0 {
                    for j in 0..from {
                        tmp[i * from + j] += pik * w[k * from + j] as f64;
                    }
                }
            }
        }
        // out = tmp Pᵀ  (to x to)
        for i in 0..to {
            for j in 0..to {
                let s: f64 = (0..from).map(|k| tmp[i * from + k] * p[j * from + k]).sum();
                out.push(s as f32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for l in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + l] * b[l * n + j];
                }
            }
        }
        c
    }

    /// The four Penrose conditions, on resize matrices of every shape used here.
    #[test]
    fn pinv_meets_the_penrose_conditions() {
        for (from, to) in [(4, 2), (4, 7), (16, 8), (8, 16), (14, 5), (3, 1), (1, 3), (5, 5), (6, 9)] {
            let a = transpose(&resize_matrix(from, to), to, from); // from x to
            let (m, n) = (from, to);
            let x = pinv(&a, m, n); // n x m
            let axa = matmul(&matmul(&a, &x, m, n, m), &a, m, m, n);
            let xax = matmul(&matmul(&x, &a, n, m, n), &x, n, n, m);
            let ax = matmul(&a, &x, m, n, m);
            let xa = matmul(&x, &a, n, m, n);
            let close = |u: &[f64], v: &[f64]| u.iter().zip(v).all(|(p, q)| (p - q).abs() < 1e-10);
            assert!(close(&axa, &a), "{from}->{to}: AXA = A");
            assert!(close(&xax, &x), "{from}->{to}: XAX = X");
            assert!(close(&ax, &transpose(&ax, m, m)), "{from}->{to}: AX symmetric");
            assert!(close(&xa, &transpose(&xa, n, n)), "{from}->{to}: XA symmetric");
        }
    }

    /// Upsampling keeps every patch's response: <x, w> = <resize(x), w'>.
    #[test]
    fn upsampling_preserves_the_response() {
        let (from, to) = (4, 10);
        let w: Vec<f32> = (0..from * from).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        let x: Vec<f64> = (0..from * from).map(|i| ((i * 13 % 7) as f64 - 3.0) / 3.0).collect();
        let r = resize_matrix(from, to);
        // resize(x) = R x Rᵀ
        let rx = matmul(&matmul(&r, &x, to, from, from), &transpose(&r, to, from), to, from, to);
        let w2 = pi_resize(&w, 1, from, to);
        let a: f64 = x.iter().zip(&w).map(|(a, b)| a * *b as f64).sum();
        let b: f64 = rx.iter().zip(&w2).map(|(a, b)| a * *b as f64).sum();
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }

    #[test]
    fn same_size_is_the_identity_and_bad_sizes_are_refused() {
        let w = [1.0f32, 2.0, 3.0, 4.0];
        assert_eq!(pi_resize(&w, 1, 2, 2), w);
        assert!(check_patch_size("m", 16, 0, (224, 224)).unwrap_err().to_string().contains("patch size 0"));
        assert!(check_patch_size("m", 16, 300, (224, 224)).unwrap_err().to_string().contains("larger than"));
        assert!(check_patch_size("m", 16, 5000, (9000, 9000)).unwrap_err().to_string().contains("largest supported"));
        check_patch_size("m", 16, 8, (224, 224)).unwrap();
    }
}
