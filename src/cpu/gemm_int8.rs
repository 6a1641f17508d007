//! Matrix multiply in integer arithmetic for 8-bit weights: `C = epilogue(A x B)` with B's
//! per-output-channel int8 values (a compressed-tensors int8 checkpoint's), A quantized per row
//! (per token) when the product runs, int8 x int8 products summed exactly in int32, then rescaled
//! by the row's and the column's scales in the epilogue.
//!
//! Activations: row `i`'s scale is `s_i = max |A[i][:]| / L` (1 for an all-zero row) and
//! `q = round_half_even(A[i][k] / s_i)` clamped to `[-L, L]`, with `L = 127`, or 63 on AVX2
//! without VNNI (its `vpmaddubsw` adds two u8 x s8 products into a saturating i16: with 7-bit
//! activations no sum can reach 2^15). The kernels multiply an unsigned byte by a signed one, so
//! `q` is stored as `q + off` (off = 128, or 64 for the 7-bit forms, 0 for the portable and simd128 kernels,
//! which multiplies signed values) and `off * sum_k B[k][j]` is taken back out per column:
//! `C[i][j] = (acc - off * colsum_j) * (s_i * t_j)` with `t_j` the weight's scale.
//!
//! Layout: B in panels of NR columns, `[panel][K / 4][NR]` 32-bit words each holding four
//! consecutive values of K of one column (K padded with zeros to a multiple of 4); A quantized
//! into rows of `K / 4` words. One step of the micro-kernel broadcasts a word of each of MR rows
//! and takes a dot product of four bytes per column (AVX-512 VNNI `vpdpbusd`: 64 multiply-adds
//! per instruction), keeping an MR x NR tile of int32 sums over the whole of K. Tasks split rows
//! and panels as the f32 GEMM's do.

use super::gemm::{store_tile, Epilogue, TaskGrid, MAX_TILE};
use super::{Cpu, Isa, SyncPtr};

/// The integer kernel of an instruction set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntKernel {
    /// AVX-512 VNNI (`vpdpbusd` on 512 bits), 6 x 64 tiles, 8-bit activations.
    Avx512Vnni,
    /// AVX-VNNI (`vpdpbusd` on 256 bits), 6 x 16 tiles, 8-bit activations.
    AvxVnni,
    /// AVX2 without VNNI (`vpmaddubsw`, `vpmaddwd`), 4 x 16 tiles, 7-bit activations.
    Avx2,
    /// wasm relaxed SIMD (`i32x4.relaxed_dot_i8x16_i7x16_add`: four i8 x u7 products into each
    /// i32 lane), 4 x 8 tiles, 7-bit activations (the relaxed dot product defines only a second
    /// operand below 128).
    WasmRelaxed,
    /// wasm simd128 (without relaxed SIMD): i8 x i8 products widened to i16 and summed in
    /// pairs into i32, 4 x 8 tiles, 8-bit activations.
    Wasm128,
    /// Plain integer arithmetic (any other machine), 4 x 8 tiles, 8-bit activations.
    Portable,
}

impl IntKernel {
    /// The best integer kernel for the f32 kernels' instruction set on this machine.
    pub fn detect(isa: Isa) -> IntKernel {
        #[cfg(target_arch = "x86_64")]
        {
            let vnni512 = std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512bw");
            let vnni256 = std::arch::is_x86_feature_detected!("avxvnni");
            match isa {
                Isa::Avx512 if vnni512 => return IntKernel::Avx512Vnni,
                Isa::Avx512 | Isa::Avx2 if vnni256 => return IntKernel::AvxVnni,
                Isa::Avx512 | Isa::Avx2 => return IntKernel::Avx2,
                _ => {}
            }
        }
        let _ = isa;
        if cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")) {
            IntKernel::WasmRelaxed
        } else if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
            IntKernel::Wasm128
        } else {
            IntKernel::Portable
        }
    }

    /// Whether this machine can run it.
    pub fn available(self) -> bool {
        match self {
            IntKernel::Portable => true,
            IntKernel::WasmRelaxed => cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd")),
            IntKernel::Wasm128 => cfg!(all(target_arch = "wasm32", target_feature = "simd128")),
            #[cfg(target_arch = "x86_64")]
            IntKernel::Avx512Vnni => std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512bw"),
            #[cfg(target_arch = "x86_64")]
            IntKernel::AvxVnni => std::arch::is_x86_feature_detected!("avxvnni"),
            #[cfg(target_arch = "x86_64")]
            IntKernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Lower-case name for reports and `TESSERA_CPU_INT8`.
    pub fn name(self) -> &'static str {
        match self {
            IntKernel::Avx512Vnni => "avx512-vnni",
            IntKernel::AvxVnni => "avx-vnni",
            IntKernel::Avx2 => "avx2",
            IntKernel::WasmRelaxed => "wasm-relaxed",
            IntKernel::Wasm128 => "wasm-simd128",
            IntKernel::Portable => "portable",
        }
    }

    /// Every kernel, for choosing one by name.
    pub const ALL: [IntKernel; 6] = [IntKernel::Avx512Vnni, IntKernel::AvxVnni, IntKernel::Avx2, IntKernel::WasmRelaxed, IntKernel::Wasm128, IntKernel::Portable];

    /// The register tile, MR rows by NR columns.
    pub fn tile(self) -> (usize, usize) {
        match self {
            IntKernel::Avx512Vnni => (6, 64),
            IntKernel::AvxVnni => (6, 16),
            IntKernel::Avx2 => (4, 16),
            IntKernel::WasmRelaxed | IntKernel::Wasm128 | IntKernel::Portable => (4, 8),
        }
    }

    /// The largest magnitude of a quantized activation.
    pub fn levels(self) -> i32 {
        if matches!(self, IntKernel::Avx2 | IntKernel::WasmRelaxed) { 63 } else { 127 }
    }

    /// What is added to a quantized activation to store it as the kernel's byte.
    pub fn offset(self) -> i32 {
        match self {
            IntKernel::Avx512Vnni | IntKernel::AvxVnni => 128,
            IntKernel::Avx2 | IntKernel::WasmRelaxed => 64,
            IntKernel::Wasm128 | IntKernel::Portable => 0,
        }
    }
}

/// Most values of K a product may have: the int32 sums stay exact (|sum| < K * 255 * 128).
pub const MAX_K: usize = 65536;

/// An int8 B `(K, N)` with per-column scales, packed for one integer kernel.
#[derive(Debug)]
pub struct Int8Panels {
    /// Rows of B (the product's K).
    pub k: usize,
    /// Columns.
    pub n: usize,
    /// The kernel it is packed for.
    pub kernel: IntKernel,
    nr: usize,
    /// Words of four values of K per column: `ceil(K / 4)`.
    kq: usize,
    words: Vec<i32>,
    /// Per column (padded to whole panels): the sum of its values, and its scale.
    col_sums: Vec<i32>,
    scales: Vec<f32>,
}

impl Int8Panels {
    /// `q` (8-bit, one scale per column) packed for `kernel`; None for other schemes (grouped
    /// scales, 4 bits) or a K past [`MAX_K`], which keep the weight-only path.
    pub fn pack(q: &crate::quant::QuantWeight, kernel: IntKernel) -> Option<Int8Panels> {
        if q.bits != 8 || q.group < q.k || q.k > MAX_K || q.k == 0 {
            return None;
        }
        let (k, n) = (q.k, q.n);
        let nr = kernel.tile().1;
        let (kq, panels) = (k.div_ceil(4), n.div_ceil(nr));
        let mut words = vec![0i32; panels * kq * nr];
        let mut col_sums = vec![0i32; panels * nr];
        let mut scales = vec![0f32; panels * nr];
        for j in 0..n {
            let (p, c) = (j / nr, j % nr);
            for kk in 0..k {
                // 4 values per 32-bit word, stored unsigned with offset 128.
                let v = ((q.words[(kk / 4) * n + j] >> (8 * (kk % 4))) & 0xff) as i32 - 128;
                words[(p * kq + kk / 4) * nr + c] |= ((v as u8) as i32) << (8 * (kk % 4));
                col_sums[j] += v;
            }
            scales[j] = q.scales[j];
        }
        Some(Int8Panels { k, n, kernel, nr, kq, words, col_sums, scales })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.words.len() + self.col_sums.len() + self.scales.len()) * 4
    }
}

/// f32 values of scratch [`gemm_int8`] needs for `m` rows of A.
pub fn scratch_len(m: usize, b: &Int8Panels) -> usize {
    m * b.kq + m
}

/// A row of A (`k` values) quantized for `kernel` into `out` (`ceil(k / 4)` words: byte `kk` of
/// the row is byte `kk` of the words in memory, as on every little-endian machine the kernels run
/// on); returns its scale. Written so that it vectorizes: a lane-wise maximum, then one multiply,
/// rounding, clamp and narrowing per value.
fn quantize_row(a: &[f32], kernel: IntKernel, out: &mut [i32]) -> f32 {
    let levels = kernel.levels() as f32;
    // Comparisons rather than f32::max, whose NaN rule keeps the loop from vectorizing (the
    // values are finite: inputs are checked).
    let mut lanes = [0f32; 16];
    let mut chunks = a.chunks_exact(16);
    for c in &mut chunks {
        for (m, v) in lanes.iter_mut().zip(c) {
            let v = v.abs();
            *m = if v > *m { v } else { *m };
        }
    }
    let mut amax = 0f32;
    for v in lanes.into_iter().chain(chunks.remainder().iter().map(|v| v.abs())) {
        amax = if v > amax { v } else { amax };
    }
    let s = if amax > 0.0 { amax / levels } else { 1.0 };
    let inv = 1.0 / s;
    let off = kernel.offset();
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
    // Round half to even by adding 1.5 * 2^23 (|x * inv| <= levels, far below 2^22): the
    // integer is then the low bits of the sum, read without a conversion (`round_ties_even` is a
    // library call on x86-64 without SSE4.1, and `as i32` saturates, which does not vectorize).
    const ROUND: f32 = 12_582_912.0;
    let round_bits = ROUND.to_bits() as i32;
    for (b, &x) in bytes.iter_mut().zip(a) {
        let y = x * inv;
        let y = if y < -levels { -levels } else { y };
        let y = if y > levels { levels } else { y };
        let q = ((y + ROUND).to_bits() as i32).wrapping_sub(round_bits);
        *b = (q + off) as u8;
    }
    // Padding past K: the offset, so that it meets B's zeros and adds nothing.
    bytes[a.len()..].iter_mut().for_each(|b| *b = off as u8);
    s
}

/// The per-row quantization [`gemm_int8`] applies to A, for the reference: each row's quantized
/// values (without the kernel's offset) and its scale.
pub fn quantize_activations(a: &[f32], m: usize, k: usize, lda: usize, kernel: IntKernel) -> (Vec<i32>, Vec<f32>) {
    let mut q = vec![0i32; m * k];
    let mut s = vec![0f32; m];
    let mut words = vec![0i32; k.div_ceil(4)];
    for i in 0..m {
        s[i] = quantize_row(&a[i * lda..i * lda + k], kernel, &mut words);
        for kk in 0..k {
            q[i * k + kk] = ((words[kk / 4] >> (8 * (kk % 4))) & 0xff) as u8 as i32 - kernel.offset();
            // The portable kernel stores signed bytes.
            if kernel.offset() == 0 {
                q[i * k + kk] = q[i * k + kk] as u8 as i8 as i32;
            }
        }
    }
    (q, s)
}

/// C = epilogue((A quantized per row) x B) on the pool; `c` holds rows 0..m with stride `ldc`;
/// `scratch` holds at least [`scratch_len`] values.
#[allow(clippy::too_many_arguments)]
pub fn gemm_int8(cpu: &Cpu, m: usize, a: &[f32], lda: usize, b: &Int8Panels, c: &mut [f32], ldc: usize, epi: &Epilogue, scratch: &mut [f32]) {
    assert!(m == 0 || c.len() >= (m - 1) * ldc + b.n, "C is too small");
    assert!(m == 0 || a.len() >= (m - 1) * lda + b.k, "A is too small");
    assert!(scratch.len() >= scratch_len(m, b), "scratch too small");
    assert!(!epi.accumulate, "an int8 product is stored, not accumulated");
    if m == 0 || b.n == 0 {
        return;
    }
    let (mr, nr) = b.kernel.tile();
    let (qa, rest) = scratch.split_at_mut(m * b.kq);
    let qa: &mut [i32] = bytemuck::cast_slice_mut(qa);
    let sa = &mut rest[..m];
    // Quantize A, rows in parallel.
    let chunk = m.div_ceil(cpu.pool.threads() * 2).max(1);
    let (qp, sp) = (SyncPtr(qa.as_mut_ptr() as *mut f32), SyncPtr(sa.as_mut_ptr()));
    cpu.pool.run(m.div_ceil(chunk), &|t| {
        for i in t * chunk..((t + 1) * chunk).min(m) {
            // SAFETY: each task writes its own rows of the quantized A and of the scales.
            let out = unsafe { std::slice::from_raw_parts_mut((qp.ptr() as *mut i32).add(i * b.kq), b.kq) };
            let s = quantize_row(&a[i * lda..i * lda + b.k], b.kernel, out);
            unsafe { *sp.ptr().add(i) = s };
        }
    });
    let (qa, sa): (&[i32], &[f32]) = (qa, sa);
    // The f32 grid's byte counts fit int8 operands with K / 4.
    let grid = TaskGrid::new(cpu, m, b.n, b.kq, mr, nr);
    let out = SyncPtr(c.as_mut_ptr());
    let task = |t: usize| {
        let (panels, rows) = grid.task(t);
        let job = Job { qa, sa, b, c: out, ldc, epi, panels, rows };
        match b.kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: only a kernel the machine has is packed for (`IntKernel::available`).
            IntKernel::Avx512Vnni => unsafe { x86::run_avx512vnni(&job) },
            #[cfg(target_arch = "x86_64")]
            IntKernel::AvxVnni => unsafe { x86::run_avxvnni(&job) },
            #[cfg(target_arch = "x86_64")]
            IntKernel::Avx2 => unsafe { x86::run_avx2(&job) },
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            IntKernel::WasmRelaxed => unsafe { run::<wasm::Relaxed, 4, 2>(&job) },
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            IntKernel::Wasm128 => unsafe { run::<wasm::Simd128, 4, 2>(&job) },
            _ => unsafe { run::<Portable, 4, 2>(&job) },
        }
    };
    cpu.pool.run(grid.tasks(), &task);
}

/// One task's share of a product.
struct Job<'a> {
    qa: &'a [i32],
    sa: &'a [f32],
    b: &'a Int8Panels,
    c: SyncPtr,
    ldc: usize,
    epi: &'a Epilogue<'a>,
    panels: (usize, usize),
    rows: (usize, usize),
}

/// One instruction set's 32-bit integer vector and its four-byte dot product.
trait IntSimd: Copy {
    type V: Copy;
    /// 32-bit lanes.
    const LANES: usize;
    /// Whether the f32 epilogue may use fused multiply-adds.
    const FMA: bool;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(x: i32) -> Self::V;
    unsafe fn load(p: *const i32) -> Self::V;
    unsafe fn store(p: *mut i32, v: Self::V);
    /// `acc[j] + sum over t < 4 of a.byte[4j + t] * b.byte[4j + t]` (a unsigned, b signed; both
    /// signed for the kernels with offset 0: portable, wasm simd128).
    unsafe fn dot(acc: Self::V, a: Self::V, b: Self::V) -> Self::V;
}

/// Plain integer arithmetic on four lanes.
#[derive(Clone, Copy)]
struct Portable;

impl IntSimd for Portable {
    type V = [i32; 4];
    const LANES: usize = 4;
    const FMA: bool = false;
    #[inline(always)]
    unsafe fn zero() -> [i32; 4] {
        [0; 4]
    }
    #[inline(always)]
    unsafe fn splat(x: i32) -> [i32; 4] {
        [x; 4]
    }
    #[inline(always)]
    unsafe fn load(p: *const i32) -> [i32; 4] {
        unsafe { std::ptr::read_unaligned(p as *const [i32; 4]) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut i32, v: [i32; 4]) {
        unsafe { std::ptr::write_unaligned(p as *mut [i32; 4], v) }
    }
    #[inline(always)]
    unsafe fn dot(acc: [i32; 4], a: [i32; 4], b: [i32; 4]) -> [i32; 4] {
        let d = |a: i32, b: i32| -> i32 { (0..4).map(|t| ((a >> (8 * t)) as i8 as i32) * ((b >> (8 * t)) as i8 as i32)).sum() };
        [acc[0] + d(a[0], b[0]), acc[1] + d(a[1], b[1]), acc[2] + d(a[2], b[2]), acc[3] + d(a[3], b[3])]
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::IntSimd;
    use core::arch::wasm32::*;

    /// An [`IntSimd`] on v128 (four i32 lanes) with the given four-byte dot product.
    macro_rules! v128_int {
        ($name:ident, |$acc:ident, $a:ident, $b:ident| $dot:expr) => {
            impl IntSimd for $name {
                type V = v128;
                const LANES: usize = 4;
                const FMA: bool = false;
                #[inline(always)]
                unsafe fn zero() -> v128 {
                    i32x4_splat(0)
                }
                #[inline(always)]
                unsafe fn splat(x: i32) -> v128 {
                    i32x4_splat(x)
                }
                #[inline(always)]
                unsafe fn load(p: *const i32) -> v128 {
                    unsafe { v128_load(p as *const v128) }
                }
                #[inline(always)]
                unsafe fn store(p: *mut i32, v: v128) {
                    unsafe { v128_store(p as *mut v128, v) }
                }
                #[inline(always)]
                unsafe fn dot($acc: v128, $a: v128, $b: v128) -> v128 {
                    $dot
                }
            }
        };
    }

    /// wasm simd128: the signed bytes' products widened to i16 (exact: at most 127 x 128), summed
    /// in pairs into i32, and the pairs of each lane's four bytes added across the two halves.
    #[derive(Clone, Copy)]
    pub(super) struct Simd128;

    v128_int!(Simd128, |acc, a, b| {
        // Bytes 0..8 (lanes 0 and 1) and 8..16 (lanes 2 and 3): i32 sums of byte pairs.
        let lo = i32x4_extadd_pairwise_i16x8(i16x8_extmul_low_i8x16(a, b));
        let hi = i32x4_extadd_pairwise_i16x8(i16x8_extmul_high_i8x16(a, b));
        // lane j = its first pair + its second.
        let first = i32x4_shuffle::<0, 2, 4, 6>(lo, hi);
        let second = i32x4_shuffle::<1, 3, 5, 7>(lo, hi);
        i32x4_add(acc, i32x4_add(first, second))
    });

    /// wasm relaxed SIMD: `i32x4.relaxed_dot_i8x16_i7x16_add` takes the weights' signed bytes
    /// and the activations' 7-bit unsigned ones (`q + 64`, below 128), four of each per lane.
    #[cfg(target_feature = "relaxed-simd")]
    #[derive(Clone, Copy)]
    pub(super) struct Relaxed;

    #[cfg(target_feature = "relaxed-simd")]
    v128_int!(Relaxed, |acc, a, b| i32x4_relaxed_dot_i8x16_i7x16_add(b, a, acc));
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{run, IntSimd, Job};
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub(super) struct Vnni512;

    impl IntSimd for Vnni512 {
        type V = __m512i;
        const LANES: usize = 16;
        const FMA: bool = true;
        #[inline(always)]
        unsafe fn zero() -> __m512i {
            _mm512_setzero_si512()
        }
        #[inline(always)]
        unsafe fn splat(x: i32) -> __m512i {
            _mm512_set1_epi32(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const i32) -> __m512i {
            unsafe { _mm512_loadu_si512(p as *const __m512i) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut i32, v: __m512i) {
            unsafe { _mm512_storeu_si512(p as *mut __m512i, v) }
        }
        #[inline(always)]
        unsafe fn dot(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
            _mm512_dpbusd_epi32(acc, a, b)
        }
    }

    #[derive(Clone, Copy)]
    pub(super) struct Vnni256;

    impl IntSimd for Vnni256 {
        type V = __m256i;
        const LANES: usize = 8;
        const FMA: bool = true;
        #[inline(always)]
        unsafe fn zero() -> __m256i {
            _mm256_setzero_si256()
        }
        #[inline(always)]
        unsafe fn splat(x: i32) -> __m256i {
            _mm256_set1_epi32(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const i32) -> __m256i {
            unsafe { _mm256_loadu_si256(p as *const __m256i) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut i32, v: __m256i) {
            unsafe { _mm256_storeu_si256(p as *mut __m256i, v) }
        }
        #[inline(always)]
        unsafe fn dot(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
            _mm256_dpbusd_avx_epi32(acc, a, b)
        }
    }

    /// AVX2: u8 x s8 pairs summed into i16 (`vpmaddubsw`, which saturates: hence 7-bit
    /// activations), pairs of those into i32 (`vpmaddwd` by ones).
    #[derive(Clone, Copy)]
    pub(super) struct Avx2Int;

    impl IntSimd for Avx2Int {
        type V = __m256i;
        const LANES: usize = 8;
        const FMA: bool = true;
        #[inline(always)]
        unsafe fn zero() -> __m256i {
            _mm256_setzero_si256()
        }
        #[inline(always)]
        unsafe fn splat(x: i32) -> __m256i {
            _mm256_set1_epi32(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const i32) -> __m256i {
            unsafe { _mm256_loadu_si256(p as *const __m256i) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut i32, v: __m256i) {
            unsafe { _mm256_storeu_si256(p as *mut __m256i, v) }
        }
        #[inline(always)]
        unsafe fn dot(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
            let pairs = _mm256_maddubs_epi16(a, b);
            _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub(super) unsafe fn run_avx512vnni(j: &Job) {
        unsafe { run::<Vnni512, 6, 4>(j) }
    }

    #[target_feature(enable = "avx2,avxvnni,fma")]
    pub(super) unsafe fn run_avxvnni(j: &Job) {
        unsafe { run::<Vnni256, 6, 2>(j) }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_avx2(j: &Job) {
        unsafe { run::<Avx2Int, 4, 2>(j) }
    }
}

/// A task's panels x rows: for each panel, every MR-row tile over the whole of K.
#[inline(always)]
unsafe fn run<I: IntSimd, const MR: usize, const NV: usize>(j: &Job) {
    let b = j.b;
    let nr = NV * I::LANES;
    debug_assert_eq!(nr, b.nr);
    let off = b.kernel.offset();
    for p in j.panels.0..j.panels.1 {
        let col0 = p * nr;
        let cols = nr.min(b.n - col0);
        let bp = unsafe { b.words.as_ptr().add(p * b.kq * nr) };
        let mut r = j.rows.0;
        while r < j.rows.1 {
            let h = MR.min(j.rows.1 - r);
            // Rows past the last are read from the last row and never stored.
            let a: [*const i32; MR] = std::array::from_fn(|i| unsafe { j.qa.as_ptr().add((r + i.min(h - 1)) * b.kq) });
            let mut acc = [[unsafe { I::zero() }; NV]; MR];
            for q in 0..b.kq {
                let bq = unsafe { bp.add(q * nr) };
                let bv: [I::V; NV] = std::array::from_fn(|v| unsafe { I::load(bq.add(v * I::LANES)) });
                for i in 0..MR {
                    let av = unsafe { I::splat(*a[i].add(q)) };
                    for v in 0..NV {
                        acc[i][v] = unsafe { I::dot(acc[i][v], av, bv[v]) };
                    }
                }
            }
            // To f32: (sum - off * colsum) * row scale * column scale.
            let mut ibuf = [0i32; MAX_TILE];
            let mut fbuf = [0f32; MAX_TILE];
            for (i, row) in acc.iter().enumerate().take(h) {
                for (v, &x) in row.iter().enumerate() {
                    unsafe { I::store(ibuf.as_mut_ptr().add(i * nr + v * I::LANES), x) };
                }
            }
            for i in 0..h {
                let s = j.sa[r + i];
                let (cs, sc) = (&b.col_sums[col0..col0 + nr], &b.scales[col0..col0 + nr]);
                for c in 0..nr {
                    fbuf[i * nr + c] = (ibuf[i * nr + c] - off * cs[c]) as f32 * (s * sc[c]);
                }
            }
            let ct = unsafe { j.c.ptr().add(r * j.ldc + col0) };
            if I::FMA {
                unsafe { store_tile::<true>(&mut fbuf[..MR * nr], nr, h, cols, ct, j.ldc, j.epi, (r, col0)) };
            } else {
                unsafe { store_tile::<false>(&mut fbuf[..MR * nr], nr, h, cols, ct, j.ldc, j.epi, (r, col0)) };
            }
            r += MR;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::Act;
    use crate::quant::QuantWeight;
    use crate::reference::Rng;

    /// The same arithmetic in f64: A quantized per row as the kernel does, integer products, the
    /// rescale, bias and activation.
    fn reference(a: &[f32], q: &QuantWeight, m: usize, kernel: IntKernel, bias: &[f32], act: Act) -> Vec<f64> {
        let (k, n) = (q.k, q.n);
        let (qa, sa) = quantize_activations(a, m, k, k, kernel);
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0i64;
                for kk in 0..k {
                    let w = ((q.words[(kk / 4) * n + j] >> (8 * (kk % 4))) & 0xff) as i64 - 128;
                    acc += qa[i * k + kk] as i64 * w;
                }
                let x = acc as f64 * sa[i] as f64 * q.scales[j] as f64 + bias[j] as f64;
                c[i * n + j] = if act == Act::Gelu { 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)) } else { x };
            }
        }
        c
    }

    #[test]
    fn every_integer_kernel_computes_its_quantized_arithmetic() {
        for kernel in IntKernel::ALL {
            if !kernel.available() {
                continue;
            }
            let cpu = Cpu::with(Isa::Portable, 3);
            let nr = kernel.tile().1;
            for (m, k, n) in [(1, 1, 1), (7, 5, 9), (197, 64, 40), (33, 130, 2 * nr + 3), (13, 384, 129)] {
                let mut rng = Rng::new((m * 31 + k * 7 + n) as u64);
                let mut a = rng.vec(m * k, 1.0);
                // One row of zeros and one of a single large value.
                if m > 2 {
                    a[..k].iter_mut().for_each(|v| *v = 0.0);
                    a[k] = 50.0;
                }
                let q = QuantWeight::quantize(&rng.vec(k * n, 1.0), k, n, 8, k, false);
                let b = Int8Panels::pack(&q, kernel).expect("8-bit per channel");
                let bias = rng.vec(n, 1.0);
                for act in [Act::None, Act::Gelu] {
                    let mut c = vec![f32::NAN; m * n];
                    let mut scratch = vec![0f32; scratch_len(m, &b)];
                    let epi = Epilogue { bias: Some(&bias), act, residual: None, accumulate: false };
                    gemm_int8(&cpu, m, &a, k, &b, &mut c, n, &epi, &mut scratch);
                    let want = reference(&a, &q, m, kernel, &bias, act);
                    for i in 0..m * n {
                        assert!((c[i] as f64 - want[i]).abs() <= 1e-5 + 1e-5 * want[i].abs(), "{kernel:?} {m}x{k}x{n} {act:?} at {i}: {} vs {}", c[i], want[i]);
                    }
                }
            }
        }
    }

    #[test]
    fn only_8_bit_per_channel_weights_pack() {
        let mut rng = Rng::new(3);
        let w = rng.vec(64 * 8, 1.0);
        assert!(Int8Panels::pack(&QuantWeight::quantize(&w, 64, 8, 8, 64, false), IntKernel::Portable).is_some());
        assert!(Int8Panels::pack(&QuantWeight::quantize(&w, 64, 8, 8, 32, false), IntKernel::Portable).is_none());
        assert!(Int8Panels::pack(&QuantWeight::quantize(&w, 64, 8, 4, 64, true), IntKernel::Portable).is_none());
    }
}
