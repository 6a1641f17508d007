//! Elementwise math in plain f32 arithmetic without branches or library calls, so that loops over
//! slices vectorize for whatever instruction set they are compiled for: `exp` (range reduction to
//! [-ln2/2, ln2/2] and a degree-6 polynomial, within 2 ulp), and exact GELU through the same erfc
//! fit the WGSL kernels use (Numerical Recipes' erfcc, relative error below 1.2e-7). Polynomials
//! are evaluated by Estrin's scheme, with fused multiply-adds inside kernels compiled for an
//! instruction set that has them.

/// 1.5 * 2^23: adding it rounds an f32 of magnitude below 2^22 to an integer.
const ROUND: f32 = 12_582_912.0;

/// `a * b + c`: fused where `FMA` (kernels compiled for an instruction set with it), else a
/// multiply and an add (`mul_add` without the instruction is a library call).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// e^x, for x clamped to [-87, 88] (results from 1.6e-38 to 1.7e38); fused multiply-adds where
/// `FMA`. The polynomial is evaluated by Estrin's scheme (a
/// dependency chain of three steps instead of six), so that vectors of it overlap in the core.
#[inline(always)]
pub(crate) fn exp_with<const FMA: bool>(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // x = n ln2 + r, n an integer (rounded to nearest), |r| <= ln2 / 2.
    let t = madd::<FMA>(x, std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = madd::<FMA>(n, -0.693_359_4, x);
    let r = madd::<FMA>(n, 2.121_944_4e-4, r);
    // e^r = 1 + r + r^2 p(r) (Cephes' expf coefficients).
    let r2 = r * r;
    let p01 = madd::<FMA>(1.666_666_5e-1, r, 5.000_000_1e-1);
    let p23 = madd::<FMA>(8.333_452e-3, r, 4.166_579_6e-2);
    let p45 = madd::<FMA>(1.987_569_1e-4, r, 1.398_199_9e-3);
    let p = madd::<FMA>(madd::<FMA>(p45, r2, p23), r2, p01);
    let y = madd::<FMA>(p, r2, r) + 1.0;
    // 2^n from the integer in t's low mantissa bits.
    let e = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    y * f32::from_bits(((e + 127) << 23) as u32)
}

/// erfc(z) for z >= 0 (Numerical Recipes' erfcc; its degree-9 polynomial by Estrin's scheme).
#[inline(always)]
fn erfc_nonneg<const FMA: bool>(z: f32) -> f32 {
    let t = 1.0 / madd::<FMA>(0.5, z, 1.0);
    let t2 = t * t;
    let t4 = t2 * t2;
    let q0 = madd::<FMA>(1.000_023_7, t, -1.265_512_2);
    let q1 = madd::<FMA>(0.096_784_18, t, 0.374_091_96);
    let q2 = madd::<FMA>(0.278_868_07, t, -0.186_288_06);
    let q3 = madd::<FMA>(1.488_515_87, t, -1.135_203_98);
    let q4 = madd::<FMA>(0.170_872_77, t, -0.822_152_23);
    let r0 = madd::<FMA>(q1, t2, q0);
    let r1 = madd::<FMA>(q3, t2, q2);
    let p = madd::<FMA>(madd::<FMA>(q4, t4, r1), t4, r0);
    t * exp_with::<FMA>(madd::<FMA>(-z, z, p))
}

/// Exact GELU, `0.5 x (1 + erf(x / sqrt 2))`, as PyTorch's `nn.GELU()`; fused multiply-adds
/// where `FMA`.
#[inline(always)]
pub(crate) fn gelu_with<const FMA: bool>(x: f32) -> f32 {
    let r = erfc_nonneg::<FMA>(x.abs() * std::f32::consts::FRAC_1_SQRT_2);
    0.5 * x * if x >= 0.0 { 2.0 - r } else { r }
}

/// `x[i] = f(x[i])` for every element, 32 at a time: each block of 32 becomes several vectors
/// whose long dependency chains (a polynomial evaluated by Horner's rule, without fused
/// multiply-adds) run interleaved, where a plain loop runs one vector's chain at a time.
#[inline(always)]
pub(crate) fn map(x: &mut [f32], f: impl Fn(f32) -> f32) {
    let mut chunks = x.chunks_exact_mut(32);
    for c in &mut chunks {
        for v in c.iter_mut() {
            *v = f(*v);
        }
    }
    for v in chunks.into_remainder() {
        *v = f(*v);
    }
}

/// Sum of a slice, in 16 lanes (so it vectorizes; the order differs from a sequential sum).
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let mut s = chunks.remainder().iter().sum::<f32>();
    for a in acc {
        s += a;
    }
    s
}

/// Below this a softmax weight is taken as 0 (e^-41.6 = 2^-60): against the largest weight (1)
/// it is far below f32's precision, and products of such weights with values would be denormal
/// numbers, which cost a microcode assist each on x86 (attention of a peaked head ran at half
/// speed).
pub(crate) const SOFTMAX_FLOOR: f32 = -41.6;

/// `exp(x)`, or 0 where `x` is below [`SOFTMAX_FLOOR`].
#[inline(always)]
pub(crate) fn exp_floored(x: f32) -> f32 {
    exp_floored_with::<false>(x)
}

/// [`exp_floored`], fused multiply-adds where `FMA`.
#[inline(always)]
pub(crate) fn exp_floored_with<const FMA: bool>(x: f32) -> f32 {
    let e = exp_with::<FMA>(if x < SOFTMAX_FLOOR { SOFTMAX_FLOOR } else { x });
    if x < SOFTMAX_FLOOR { 0.0 } else { e }
}

/// Replaces each `x` with `exp((x - m) * scale)` (0 below [`SOFTMAX_FLOOR`]) and returns their
/// sum (16 lanes); fused multiply-adds where `FMA`.
#[inline(always)]
pub(crate) fn exp_sum<const FMA: bool>(x: &mut [f32], m: f32, scale: f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = x.chunks_exact_mut(16);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v = exp_floored_with::<FMA>((*v - m) * scale);
            *a += *v;
        }
    }
    let mut s = 0f32;
    for v in chunks.into_remainder() {
        *v = exp_floored_with::<FMA>((*v - m) * scale);
        s += *v;
    }
    for a in acc {
        s += a;
    }
    s
}

/// Dot product, in 16 lanes.
#[inline(always)]
pub(crate) fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut cx = x.chunks_exact(16);
    let mut cy = y.chunks_exact(16);
    for (a, b) in (&mut cx).zip(&mut cy) {
        for i in 0..16 {
            acc[i] += a[i] * b[i];
        }
    }
    let mut s: f32 = cx.remainder().iter().zip(cy.remainder()).map(|(a, b)| a * b).sum();
    for a in acc {
        s += a;
    }
    s
}

/// Largest value of a slice (NEG_INFINITY for an empty one), in 16 lanes.
#[inline(always)]
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            for got in [exp_with::<false>(x) as f64, exp_with::<true>(x) as f64] {
                worst = worst.max((got - want).abs() / want);
            }
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "relative error {worst:e}");
        assert_eq!(exp_with::<false>(-1000.0), exp_with::<false>(-87.0));
        assert!(exp_with::<false>(f32::NAN).is_nan());
        assert_eq!(exp_floored(-50.0), 0.0);
        assert_eq!(exp_floored_with::<true>(-41.0), exp_with::<true>(-41.0));
    }

    #[test]
    fn gelu_matches_the_erf_form() {
        let mut worst = 0f64;
        for i in -2000..2000 {
            let x = i as f64 * 0.005;
            let want = 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            for got in [gelu_with::<false>(x as f32), gelu_with::<true>(x as f32)] {
                worst = worst.max((got as f64 - want).abs() / want.abs().max(1e-3));
            }
        }
        // The f32 rounding of the exponent's argument (-z^2, up to about 50 here) dominates: the
        // WGSL kernels compute the same expression and share this bound.
        assert!(worst < 2e-6, "relative error {worst:e}");
    }

    #[test]
    fn reductions() {
        let v: Vec<f32> = (0..37).map(|i| i as f32 - 10.0).collect();
        assert_eq!(sum(&v), v.iter().sum::<f32>());
        assert_eq!(max(&v), 26.0);
        assert_eq!(dot(&v, &v), v.iter().map(|x| x * x).sum::<f32>());
    }
}

#[cfg(test)]
mod speed {
    /// `cargo test --release --lib gelu_speed -- --ignored --nocapture`: ns per element of the
    /// GEMM epilogue's GELU on AVX2, with and without fused multiply-adds, on data in L1.
    #[test]
    #[ignore]
    #[cfg(target_arch = "x86_64")]
    fn gelu_speed() {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn run<const F: bool>(x: &mut [f32]) {
            super::map(x, super::gelu_with::<F>);
        }
        if !std::arch::is_x86_feature_detected!("fma") {
            return;
        }
        let src: Vec<f32> = (0..4096).map(|i| (i % 1000) as f32 * 0.01 - 5.0).collect();
        let mut x = src.clone();
        for fma in [false, true] {
            let t = std::time::Instant::now();
            for _ in 0..5000 {
                x.copy_from_slice(&src);
                unsafe { if fma { run::<true>(&mut x) } else { run::<false>(&mut x) } };
            }
            eprintln!("gelu (fma {fma}): {:.3} ns per element", t.elapsed().as_secs_f64() * 1e9 / 5000.0 / 4096.0);
        }
    }
}
