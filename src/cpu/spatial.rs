//! The CPU forms of the ops on channels-last feature maps (`ops::spatial` says what each
//! computes): convolution as an implicit GEMM (bands of output rows gathered into patch rows,
//! then the packed weight), the transposed convolution as one GEMM per band of input rows
//! scattered into its k x k output pixels, and the bilinear resize.

use super::gemm::{gemm, Act, Epilogue, Gemm, PackedB};
use super::{Cpu, SyncPtr};

/// A convolution's geometry.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    /// Batch items.
    pub b: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub ci: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// Output channels.
    pub co: usize,
    /// Kernel side.
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub pad: usize,
}

impl ConvShape {
    /// Whether the patch rows are the input rows themselves (a 1x1 convolution at stride 1).
    fn direct(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// Output rows gathered per band: about 2^20 patch values (4 MiB: GEMMs of thousands of
    /// rows, so that both threads have work in each).
    pub fn band_rows(&self) -> usize {
        (1_048_576 / (self.wo * self.k * self.k * self.ci).max(1)).clamp(1, self.ho)
    }

    /// f32 scratch values for the patch rows of one band (`pre_relu`: a 1x1 convolution gathers
    /// its ReLU'd input too).
    pub fn scratch(&self, pre_relu: bool) -> usize {
        if self.direct() && !pre_relu {
            0
        } else {
            self.band_rows() * self.wo * self.k * self.k * self.ci
        }
    }
}

/// What follows a convolution's product.
pub struct ConvEpilogue<'a> {
    /// Added per output channel.
    pub bias: Option<&'a [f32]>,
    /// After the bias.
    pub act: Act,
    /// Multiplies the activation's output.
    pub scale: f32,
    /// Added last, shaped like the output.
    pub residual: Option<&'a [f32]>,
    /// ReLU on the input as it is read.
    pub pre_relu: bool,
}

/// `out (B, Ho, Wo, Co)`: the convolution of `x (B, H, W, Ci)` with `w` packed from
/// `(k*k*Ci, Co)`, rows in (ky, kx, ci) order.
pub fn conv2d(cpu: &Cpu, x: &[f32], s: &ConvShape, w: &PackedB, epi: &ConvEpilogue, out: &mut [f32], scratch: &mut [f32]) {
    let kk = s.k * s.k * s.ci;
    let plain = Epilogue { bias: epi.bias, act: epi.act, residual: None, accumulate: false };
    // The scale and residual (DPT's head and residual units) after the GEMM's own epilogue.
    let finish = |rows: &mut [f32], first: usize| {
        if epi.scale != 1.0 {
            rows.iter_mut().for_each(|v| *v *= epi.scale);
        }
        if let Some(r) = epi.residual {
            let n = rows.len();
            rows.iter_mut().zip(&r[first..first + n]).for_each(|(v, r)| *v += r);
        }
    };
    if s.direct() && s.co == 1 {
        // One output channel (a depth head's last layer): a dot product per pixel, where the
        // GEMM would fill a whole panel for one column.
        let w1: Vec<f32> = (0..s.ci).map(|i| w.data()[i * w.nr]).collect();
        let m = s.b * s.h * s.w;
        let bias = epi.bias.map_or(0.0, |b| b[0]);
        let dst = SyncPtr(out.as_mut_ptr());
        let per = 4096;
        cpu.pool.run(m.div_ceil(per), &|c| {
            for p in c * per..((c + 1) * per).min(m) {
                let px = &x[p * s.ci..(p + 1) * s.ci];
                let mut acc = 0f32;
                for (v, k) in px.iter().zip(&w1) {
                    acc += if epi.pre_relu { v.max(0.0) } else { *v } * k;
                }
                // SAFETY: each pixel writes its own value.
                unsafe { *dst.ptr().add(p) = acc + bias };
            }
        });
        super::gemm::activate_row(&mut out[..m], epi.act);
        finish(&mut out[..m], 0);
        return;
    }
    if s.direct() && !epi.pre_relu {
        let m = s.b * s.h * s.w;
        gemm(cpu, &Gemm::new(m, x, s.ci, w, s.co), out, &plain);
        finish(&mut out[..m * s.co], 0);
        return;
    }
    let band = s.band_rows();
    for bi in 0..s.b {
        let img = &x[bi * s.h * s.w * s.ci..(bi + 1) * s.h * s.w * s.ci];
        for y0 in (0..s.ho).step_by(band) {
            let rows = band.min(s.ho - y0);
            let m = rows * s.wo;
            let patches = &mut scratch[..m * kk];
            gather(cpu, img, s, y0, rows, epi.pre_relu, patches);
            let first = (bi * s.ho + y0) * s.wo * s.co;
            let dst = &mut out[first..first + m * s.co];
            gemm(cpu, &Gemm::new(m, patches, kk, w, s.co), dst, &plain);
            finish(dst, first);
        }
    }
}

/// The patch rows of output rows `y0..y0 + rows`: for each output pixel its k x k x Ci inputs
/// (zeros past the edges), ReLU'd where `relu`.
fn gather(cpu: &Cpu, img: &[f32], s: &ConvShape, y0: usize, rows: usize, relu: bool, patches: &mut [f32]) {
    let (kk, ci) = (s.k * s.k * s.ci, s.ci);
    let dst = SyncPtr(patches.as_mut_ptr());
    cpu.pool.run(rows, &|r| {
        let oy = y0 + r;
        // SAFETY: each output row writes its own patch rows.
        let band = unsafe { std::slice::from_raw_parts_mut(dst.ptr().add(r * s.wo * kk), s.wo * kk) };
        for ox in 0..s.wo {
            let p = &mut band[ox * kk..(ox + 1) * kk];
            for ky in 0..s.k {
                let iy = (oy * s.stride + ky).wrapping_sub(s.pad);
                for kx in 0..s.k {
                    let ix = (ox * s.stride + kx).wrapping_sub(s.pad);
                    let d = &mut p[(ky * s.k + kx) * ci..(ky * s.k + kx + 1) * ci];
                    if iy >= s.h || ix >= s.w {
                        d.fill(0.0);
                    } else {
                        let src = &img[(iy * s.w + ix) * ci..(iy * s.w + ix + 1) * ci];
                        if relu {
                            d.iter_mut().zip(src).for_each(|(d, v)| *d = v.max(0.0));
                        } else {
                            d.copy_from_slice(src);
                        }
                    }
                }
            }
        }
    });
}

/// Input rows of the transposed convolution per GEMM: about 2^18 output values.
pub fn deconv_band_rows(w: usize, k: usize, co: usize, h: usize) -> usize {
    (262_144 / (w * k * k * co).max(1)).clamp(1, h)
}

/// `out (B, H*k, W*k, Co)`: the transposed convolution (kernel = stride = k, no padding) of
/// `x (B, H, W, Ci)` with `w` packed from `(Ci, k*k*Co)` (columns in (i, j, co) order) and
/// `bias` repeated k*k times (`(k*k*Co)`).
#[allow(clippy::too_many_arguments)]
pub fn deconv(cpu: &Cpu, x: &[f32], (b, h, w, ci): (usize, usize, usize, usize), k: usize, wp: &PackedB, bias: Option<&[f32]>, out: &mut [f32], scratch: &mut [f32]) {
    let n = wp.n; // k * k * Co
    let co = n / (k * k);
    let band = deconv_band_rows(w, k, co, h);
    let epi = Epilogue { bias, act: Act::None, residual: None, accumulate: false };
    let row = w * k * co;
    for bi in 0..b {
        for y0 in (0..h).step_by(band) {
            let rows = band.min(h - y0);
            let m = rows * w;
            let a = &x[((bi * h + y0) * w) * ci..((bi * h + y0 + rows) * w) * ci];
            let prod = &mut scratch[..m * n];
            gemm(cpu, &Gemm::new(m, a, ci, wp, n), prod, &epi);
            // Pixel (y, x)'s k x k block: output rows y*k + i, columns x*k + j.
            let dst = SyncPtr(out.as_mut_ptr());
            let prod = &*prod;
            cpu.pool.run(rows * k, &|t| {
                let (r, i) = (t / k, t % k);
                let oy = (y0 + r) * k + i;
                // SAFETY: each task writes its own output row.
                let o = unsafe { std::slice::from_raw_parts_mut(dst.ptr().add((bi * h * k + oy) * row), row) };
                for xx in 0..w {
                    let src = &prod[(r * w + xx) * n + i * k * co..(r * w + xx) * n + (i + 1) * k * co];
                    o[xx * k * co..(xx + 1) * k * co].copy_from_slice(src);
                }
            });
        }
    }
}

/// Bilinear resize of `x (B, H, W, C)` to `out (B, Ho, Wo, C)`, PyTorch's without antialiasing:
/// `ratio` per axis from the host, source coordinates `dst * ratio` (`align`) or
/// `max((dst + 0.5) * ratio - 0.5, 0)`.
pub fn resize(cpu: &Cpu, x: &[f32], (b, h, w, c): (usize, usize, usize, usize), (ho, wo): (usize, usize), (ry, rx): (f32, f32), align: bool, out: &mut [f32]) {
    let source = |d: usize, r: f32, n: usize| -> (usize, usize, f32) {
        let s = if align { d as f32 * r } else { ((d as f32 + 0.5) * r - 0.5).max(0.0) };
        let i0 = (s as usize).min(n - 1);
        let i1 = (i0 + 1).min(n - 1);
        (i0, i1, s - i0 as f32)
    };
    let cols: Vec<(usize, usize, f32)> = (0..wo).map(|d| source(d, rx, w)).collect();
    let dst = SyncPtr(out.as_mut_ptr());
    cpu.pool.run(b * ho, &|t| {
        let (bi, oy) = (t / ho, t % ho);
        let (y0, y1, ly) = source(oy, ry, h);
        let r0 = &x[(bi * h + y0) * w * c..(bi * h + y0 + 1) * w * c];
        let r1 = &x[(bi * h + y1) * w * c..(bi * h + y1 + 1) * w * c];
        // SAFETY: each task writes its own output row.
        let o = unsafe { std::slice::from_raw_parts_mut(dst.ptr().add(t * wo * c), wo * c) };
        for (ox, &(x0, x1, lx)) in cols.iter().enumerate() {
            let o = &mut o[ox * c..(ox + 1) * c];
            for ch in 0..c {
                let top = (1.0 - lx) * r0[x0 * c + ch] + lx * r0[x1 * c + ch];
                let bottom = (1.0 - lx) * r1[x0 * c + ch] + lx * r1[x1 * c + ch];
                o[ch] = (1.0 - ly) * top + ly * bottom;
            }
        }
    });
}
