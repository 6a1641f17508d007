//! Matrix multiply with a quantized B (`crate::quant`'s packed integer weights): B kept packed in
//! panels of the instruction set's NR columns, each task dequantizing the panels it needs into a
//! per-thread buffer and running `gemm.rs`'s f32 micro-kernel on it, so that the weights stay at
//! their quantized size in memory.

use super::gemm::{block, tile, Epilogue, Gemm, TaskGrid};
use super::simd::Isa;
use super::{Cpu, SyncPtr};

/// A quantized B (see `crate::quant`) in panels of `nr` columns: per panel the packed words
/// `[ceil(K / per_word)][nr]` and the scales `[groups][nr]` (zero past N). A GEMM dequantizes one
/// panel at a time into a per-thread buffer of `K x nr` floats and runs the f32 micro-kernel on
/// it, so the weights stay at their quantized size.
#[derive(Debug)]
pub struct QuantPanels {
    /// Rows of B (the GEMM's K).
    pub k: usize,
    /// Columns of B.
    pub n: usize,
    /// Columns per panel.
    pub nr: usize,
    bits: u32,
    group: usize,
    words: Vec<u32>,
    scales: Vec<f32>,
}

impl QuantPanels {
    /// `q` in panels of `nr` columns.
    pub fn pack(q: &crate::quant::QuantWeight, nr: usize) -> QuantPanels {
        let (k, n) = (q.k, q.n);
        let panels = n.div_ceil(nr);
        let rows_w = k.div_ceil(crate::quant::per_word(q.bits));
        let rows_s = k.div_ceil(q.group);
        let mut words = vec![0u32; panels * rows_w * nr];
        let mut scales = vec![0f32; panels * rows_s * nr];
        for p in 0..panels {
            let (c0, w) = (p * nr, nr.min(n - p * nr));
            for r in 0..rows_w {
                words[(p * rows_w + r) * nr..][..w].copy_from_slice(&q.words[r * n + c0..r * n + c0 + w]);
            }
            for r in 0..rows_s {
                scales[(p * rows_s + r) * nr..][..w].copy_from_slice(&q.scales[r * n + c0..r * n + c0 + w]);
            }
        }
        QuantPanels { k, n, nr, bits: q.bits, group: q.group, words, scales }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.words.len() + self.scales.len()) * 4
    }

    /// Panel `p` as f32 rows `[K][nr]` into `out`.
    fn dequantize(&self, isa: Isa, p: usize, out: &mut [f32]) {
        let (rows_w, rows_s) = (self.k.div_ceil(32 / self.bits as usize), self.k.div_ceil(self.group));
        let words = &self.words[p * rows_w * self.nr..(p + 1) * rows_w * self.nr];
        let scales = &self.scales[p * rows_s * self.nr..(p + 1) * rows_s * self.nr];
        let panel = QuantPanel { words, scales, k: self.k, nr: self.nr, bits: self.bits as usize, group: self.group };
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Cpu` only selects an instruction set the machine has.
            Isa::Avx512 => unsafe { dequantize_avx512(&panel, out) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { dequantize_avx2(&panel, out) },
            _ => dequantize_panel(&panel, out),
        }
    }
}

/// One panel's packed words and scales.
struct QuantPanel<'a> {
    words: &'a [u32],
    scales: &'a [f32],
    k: usize,
    nr: usize,
    bits: usize,
    group: usize,
}

/// A panel's `k x nr` values, word row by word row (no division in the loops; the inner loop
/// over `nr` columns vectorizes for the instruction set it is compiled for).
#[inline(always)]
fn dequantize_panel(q: &QuantPanel, out: &mut [f32]) {
    let (nr, bits) = (q.nr, q.bits);
    let pw = 32 / bits;
    let mask = (1u32 << bits) - 1;
    let offset = (1u32 << (bits - 1)) as f32;
    for (kw, w) in q.words.chunks_exact(nr).enumerate() {
        for i in 0..pw.min(q.k - kw * pw) {
            let kk = kw * pw + i;
            let s = &q.scales[(kk / q.group) * nr..][..nr];
            let shift = (bits * i) as u32;
            for ((o, &w), &s) in out[kk * nr..(kk + 1) * nr].iter_mut().zip(w).zip(s) {
                *o = (((w >> shift) & mask) as f32 - offset) * s;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn dequantize_avx512(q: &QuantPanel, out: &mut [f32]) {
    dequantize_panel(q, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dequantize_avx2(q: &QuantPanel, out: &mut [f32]) {
    dequantize_panel(q, out)
}

std::thread_local! {
    /// Each thread's dequantized panel.
    static PANEL: std::cell::RefCell<super::Aligned> = std::cell::RefCell::new(super::Aligned::zeros(0));
}

/// C = epilogue(A x B) for a quantized B: as [`gemm`], each task dequantizing its panels.
#[allow(clippy::too_many_arguments)]
pub fn gemm_quant(cpu: &Cpu, m: usize, a: &[f32], lda: usize, b: &QuantPanels, c: &mut [f32], ldc: usize, epi: &Epilogue) {
    let (mr, nr) = tile(cpu.isa);
    assert_eq!(nr, b.nr, "B was packed for another instruction set");
    assert!(m == 0 || c.len() >= (m - 1) * ldc + b.n, "C is too small");
    assert!(m == 0 || a.len() >= (m - 1) * lda + b.k, "A is too small");
    if m == 0 || b.n == 0 {
        return;
    }
    let grid = TaskGrid::new(cpu, m, b.n, b.k, mr, nr);
    let out = SyncPtr(c.as_mut_ptr());
    let task = |t: usize| {
        let ((p0, p1), rows) = grid.task(t);
        PANEL.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < b.k * nr {
                *buf = super::Aligned::zeros(b.k * nr);
            }
            for p in p0..p1 {
                b.dequantize(cpu.isa, p, &mut buf[..b.k * nr]);
                // One panel read in place: every panel index resolves to the buffer (`panel` 0).
                let g = Gemm { m, a, lda, b: &buf[..b.k * nr], k: b.k, k0: 0, panel: 0, ldb: nr, n: b.n, nr, ldc };
                block(cpu.isa, &g, out, epi, (p, p + 1), rows, 0);
            }
        });
    };
    cpu.pool.run(grid.tasks(), &task);
}

