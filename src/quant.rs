//! Weight-only quantization of a GEMM's B operand: signed integers of 8 or 4 bits, symmetric,
//! with one scale per output column and group of `group` consecutive values of K (a whole
//! column for per-channel int8). `B[k][n] = q[k][n] * scale[k / group][n]`.
//!
//! Layout (shared by the GPU kernels and the CPU backend): `words` is `(ceil(K / per_word), N)`
//! row-major, word `(kw, n)` holding `B[kw * per_word + i][n]` for `i` in `0..per_word` in bits
//! `bits * i ..`, lowest first, each stored unsigned as `q + 2^(bits - 1)` (values past K are
//! zero). `scales` is `(ceil(K / group), N)` row-major, f32. This is the `pack-quantized` layout
//! of compressed-tensors transposed to K-major, so that a GEMM tile reads consecutive columns
//! from consecutive words; `model::quantized` converts between the two.

use crate::error::{Error, Result};
pub use crate::tensor::QuantShape;

/// How a matrix product with a quantized B computes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Arithmetic {
    /// B dequantized to f32 (in the GPU's tile loader, or a panel at a time on the CPU) and f32
    /// products: the checkpoint's weights exactly, at f32 speed.
    #[default]
    Dequantized,
    /// On the CPU backend, for 8-bit weights with one scale per output channel: the activations
    /// quantized per token to int8 when the product runs, int8 x int8 products summed in int32
    /// (VNNI where the CPU has it), rescaled in the epilogue. Faster; the activations' rounding is
    /// an error of its own. Other weights, and the GPU, keep the dequantized path.
    Int8,
}

impl Arithmetic {
    /// `dequantized` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Arithmetic::Dequantized => "dequantized",
            Arithmetic::Int8 => "int8",
        }
    }
}

/// A quantized `(K, N)` matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantWeight {
    /// 8 or 4.
    pub bits: u32,
    /// Values of K per scale.
    pub group: usize,
    /// Rows (the GEMM's K).
    pub k: usize,
    /// Columns (the GEMM's N).
    pub n: usize,
    /// `(ceil(K / per_word), N)` packed values.
    pub words: Vec<u32>,
    /// `(ceil(K / group), N)` scales.
    pub scales: Vec<f32>,
}

/// Values per 32-bit word at `bits` bits.
pub fn per_word(bits: u32) -> usize {
    (32 / bits) as usize
}

/// Where a quantized weight's scales start in its GPU buffer, in 32-bit words: after the packed
/// words, padded to a multiple of four (16 bytes, for vec4 reads). The scales follow as f32, or
/// as f16 pairs (the lower half first) where they are all exactly f16, padded to 16 bytes.
pub(crate) fn gpu_scale_offset(k: usize, n: usize, bits: u32) -> usize {
    (k.div_ceil(per_word(bits)) * n).next_multiple_of(4)
}

/// Checks a scheme: 8 or 4 bits, a group of at least one value.
pub fn check_scheme(bits: u32, group: usize) -> std::result::Result<(), String> {
    if bits != 8 && bits != 4 {
        return Err(format!("{bits}-bit weights (supported: 8, 4)"));
    }
    if group == 0 {
        return Err("a group size of 0".into());
    }
    Ok(())
}

impl QuantWeight {
    /// Quantizes row-major `b` (`k` x `n`), symmetric: each group's scale is its largest magnitude
    /// over the largest level (127 or 7), rounded to f16 first when `f16_scales` (so that the
    /// stored scale is the one the values were rounded with); an all-zero group gets scale 1.
    pub fn quantize(b: &[f32], k: usize, n: usize, bits: u32, group: usize, f16_scales: bool) -> QuantWeight {
        assert_eq!(b.len(), k * n, "quantize: {} values do not make {k} x {n}", b.len());
        check_scheme(bits, group).expect("quantize: scheme");
        let group = group.min(k.max(1));
        let pw = per_word(bits);
        let qmax = ((1i32 << (bits - 1)) - 1) as f32;
        let offset = 1u32 << (bits - 1);
        let groups = k.div_ceil(group);
        let mut scales = vec![0f32; groups * n];
        for g in 0..groups {
            for j in 0..n {
                let amax = (g * group..((g + 1) * group).min(k)).map(|kk| b[kk * n + j].abs()).fold(0f32, f32::max);
                let s = if amax > 0.0 { amax / qmax } else { 1.0 };
                scales[g * n + j] = if f16_scales { half::f16::from_f32(s).to_f32().max(f32::MIN_POSITIVE) } else { s };
            }
        }
        let mut words = vec![0u32; k.div_ceil(pw) * n];
        for kk in 0..k {
            for j in 0..n {
                let s = scales[(kk / group) * n + j];
                let q = (b[kk * n + j] / s).round_ties_even().clamp(-qmax - 1.0, qmax) as i32;
                words[(kk / pw) * n + j] |= ((q + offset as i32) as u32) << (bits as usize * (kk % pw));
            }
        }
        QuantWeight { bits, group, k, n, words, scales }
    }

    /// The integer at (k, j).
    pub fn q(&self, kk: usize, j: usize) -> i32 {
        let pw = per_word(self.bits);
        let mask = (1u32 << self.bits) - 1;
        let w = self.words[(kk / pw) * self.n + j];
        ((w >> (self.bits as usize * (kk % pw))) & mask) as i32 - (1i32 << (self.bits - 1))
    }

    /// Row-major `(k, n)` f32 values.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.k * self.n];
        for kk in 0..self.k {
            for j in 0..self.n {
                out[kk * self.n + j] = self.q(kk, j) as f32 * self.scales[(kk / self.group) * self.n + j];
            }
        }
        out
    }

    /// Bytes held: the words and the scales.
    pub fn bytes(&self) -> u64 {
        (self.words.len() * 4 + self.scales.len() * 4) as u64
    }

    /// Checks the sizes against the scheme and that every scale is finite; `name` names the
    /// weight in the error. (A file's scales must also be positive: see
    /// [`QuantWeight::validate_stored`]; the engine's may be scaled by negative layer scales.)
    pub fn validate(&self, name: &str) -> Result<()> {
        let bad = |problem: String| Error::Weight { name: name.into(), problem };
        check_scheme(self.bits, self.group).map_err(bad)?;
        if self.words.len() != self.k.div_ceil(per_word(self.bits)) * self.n {
            return Err(bad(format!("{} packed words do not hold {} x {} values at {} bits", self.words.len(), self.k, self.n, self.bits)));
        }
        if self.scales.len() != self.k.div_ceil(self.group) * self.n {
            return Err(bad(format!("{} scales for {} x {} values in groups of {}", self.scales.len(), self.k, self.n, self.group)));
        }
        if let Some(i) = self.scales.iter().position(|s| !s.is_finite()) {
            return Err(bad(format!("scale {} at index {i} is not finite", self.scales[i])));
        }
        Ok(())
    }

    /// [`QuantWeight::validate`], and every scale positive, as a symmetric quantizer writes them.
    pub fn validate_stored(&self, name: &str) -> Result<()> {
        self.validate(name)?;
        if let Some(i) = self.scales.iter().position(|s| *s <= 0.0) {
            let problem = format!("scale {} at index {i} is not a positive number", self.scales[i]);
            return Err(Error::Weight { name: name.into(), problem });
        }
        Ok(())
    }

    /// Columns `cols` of every row, as one matrix (`cols` in order).
    pub fn columns(&self, cols: std::ops::Range<usize>) -> QuantWeight {
        let take = |v: &[u32], rows: usize| -> Vec<u32> { (0..rows).flat_map(|r| v[r * self.n + cols.start..r * self.n + cols.end].iter().copied()).collect() };
        let rows_w = self.k.div_ceil(per_word(self.bits));
        let rows_s = self.k.div_ceil(self.group);
        let scales = (0..rows_s).flat_map(|r| self.scales[r * self.n + cols.start..r * self.n + cols.end].iter().copied()).collect();
        QuantWeight { n: cols.len(), words: take(&self.words, rows_w), scales, ..*self }
    }

    /// `self` then `others` side by side (same K, bits and group): `(K, N1 + N2 + ...)`.
    pub fn concat_columns(parts: &[&QuantWeight]) -> Option<QuantWeight> {
        let first = parts.first()?;
        if parts.iter().any(|p| p.k != first.k || p.bits != first.bits || p.group != first.group) {
            return None;
        }
        let n: usize = parts.iter().map(|p| p.n).sum();
        let rows_w = first.k.div_ceil(per_word(first.bits));
        let rows_s = first.k.div_ceil(first.group);
        let mut words = Vec::with_capacity(rows_w * n);
        for r in 0..rows_w {
            for p in parts {
                words.extend_from_slice(&p.words[r * p.n..(r + 1) * p.n]);
            }
        }
        let mut scales = Vec::with_capacity(rows_s * n);
        for r in 0..rows_s {
            for p in parts {
                scales.extend_from_slice(&p.scales[r * p.n..(r + 1) * p.n]);
            }
        }
        Some(QuantWeight { bits: first.bits, group: first.group, k: first.k, n, words, scales })
    }

    /// Whether every scale is exactly an f16 (then GPUs hold them as f16: half the bytes).
    pub fn scales_are_f16(&self) -> bool {
        self.scales.iter().all(|&s| half::f16::from_f32(s).to_f32() == s)
    }

    /// The scheme.
    pub fn shape(&self) -> QuantShape {
        QuantShape { bits: self.bits, group: self.group, f16_scales: self.scales_are_f16() }
    }

    /// Multiplies column `j` by `s[j]` (exact up to f32 rounding: it scales the scales).
    pub fn scale_columns(&mut self, s: &[f32]) {
        assert_eq!(s.len(), self.n);
        for row in self.scales.chunks_mut(self.n) {
            row.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in [-scale, scale) from a small LCG.
    struct Rng(u64);
    impl Rng {
        fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
        }
        fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
            (0..n)
                .map(|_| {
                    self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
                })
                .collect()
        }
    }

    #[test]
    fn round_trip_is_within_half_a_step() {
        let mut rng = Rng::new(3);
        for (bits, group, k, n) in [(8, 70, 70, 9), (4, 32, 64, 5), (4, 32, 70, 3), (4, 7, 13, 4), (8, 1, 5, 2)] {
            let b = rng.vec(k * n, 1.0);
            let q = QuantWeight::quantize(&b, k, n, bits, group, true);
            q.validate("w").unwrap();
            let d = q.dequantize();
            for kk in 0..k {
                for j in 0..n {
                    let s = q.scales[(kk / q.group) * n + j];
                    let err = (d[kk * n + j] - b[kk * n + j]).abs();
                    assert!(err <= 0.5 * s * 1.0001 + 1e-7, "{bits} bits group {group}: ({kk},{j}) off by {err}, scale {s}");
                }
            }
        }
    }

    #[test]
    fn columns_and_concat_are_inverse() {
        let mut rng = Rng::new(4);
        let b = rng.vec(40 * 12, 1.0);
        let q = QuantWeight::quantize(&b, 40, 12, 4, 16, false);
        let parts = [q.columns(0..4), q.columns(4..8), q.columns(8..12)];
        let joined = QuantWeight::concat_columns(&parts.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(joined, q);
    }

    #[test]
    fn bad_weights_are_named() {
        let mut q = QuantWeight::quantize(&[1.0, -2.0, 3.0, 0.0], 2, 2, 8, 2, false);
        q.scales[1] = f32::NAN;
        assert!(q.validate("layer.w").unwrap_err().to_string().contains("layer.w"));
        // Zero and negative scales: fine in the engine (layer scales fold into them), not in a file.
        q.scales[1] = 0.0;
        assert!(q.validate("w").is_ok());
        assert!(q.validate_stored("w").unwrap_err().to_string().contains("not a positive number"));
        q.scales[1] = 1.0;
        q.words.pop();
        assert!(q.validate("w").unwrap_err().to_string().contains("packed words"));
    }
}
