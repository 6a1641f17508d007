//! Matrix multiply `C (M, N) = A (M, K) x B (K, N)` with a fused epilogue, for B packed once into
//! panels (weights are packed when a graph is compiled).
//!
//! Layout and tiling: B is stored as panels of NR columns, `[panel][k][NR]` (zero past N), so the
//! micro-kernel reads one contiguous row of NR values per k. A is read in place (row-major, any
//! row stride): each step broadcasts one value from each of MR rows. The micro-kernel keeps an
//! MR x NR block of C in registers over a block of K, then stores it (or adds it to C) and, after
//! the last block of K, applies the epilogue `act(acc + bias) + residual`. MR and NR per
//! instruction set: AVX-512 6 x 64 (24 accumulators, four vectors of B per broadcast of A), AVX2
//! 6 x 16, simd128 and portable 4 x 8.
//!
//! Cache blocking ([`Blocking`], sized from the L2 cache the machine reports): a task is a range
//! of panels by a range of rows; for each panel (kept in L2 across the rows) it runs every MR-row
//! tile of its rows, so a task reads its panels of B once and its block of A once per panel. The
//! grid of tasks is chosen for the least traffic from memory ([`TaskGrid`]): more row ranges make
//! B be read more often, more panel ranges A, and a block of A too large to stay in L2 beside a
//! panel is read from memory for every panel. This is what keeps large batches (M = tokens x
//! images) as fast per image as one. Where one panel over the whole of K would not fit half the
//! L2 (K beyond a few thousand), K is cut into blocks and each block's product added to C.

use super::math;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use super::simd::Wasm128;
#[cfg(target_arch = "x86_64")]
use super::simd::{Avx2, Avx512};
use super::simd::{Isa, Portable, Simd};
use super::{Cpu, SyncPtr};

/// Activation of the epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Identity.
    None,
    /// Exact GELU.
    Gelu,
    /// tanh.
    Tanh,
    /// x * sigmoid(1.702 x).
    QuickGelu,
    /// The tanh approximation of GELU.
    GeluTanh,
    /// max(x, 0).
    Relu,
    /// 1 / (1 + exp(-x)).
    Sigmoid,
}

/// `2 sqrt(2/pi)`: the tanh form of GELU as `x sigmoid(GELU_TANH_K (x + 0.044715 x^3))`.
pub const GELU_TANH_K: f32 = 1.595_769;

/// The register tile of an instruction set: MR rows by NR columns (B is packed NR wide).
pub fn tile(isa: Isa) -> (usize, usize) {
    match isa {
        Isa::Avx512 => (6, 64),
        Isa::Avx2 => (6, 16),
        Isa::Wasm128 | Isa::Portable => (4, 8),
    }
}

/// How [`gemm`] blocks a product for the caches (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// Bytes of one core's L2 cache.
    pub l2: usize,
}

impl Blocking {
    /// The blocking for a machine whose cores have `l2` bytes of L2 cache each.
    pub fn for_cache(l2: usize) -> Blocking {
        Blocking { l2: l2.max(128 << 10) }
    }

    /// The block of K for a product of depth `k` with panels `nr` wide: all of it (0) where a
    /// panel's `k x nr` block of B takes at most half the L2, else a multiple of 64 that does.
    pub fn kc(&self, k: usize, nr: usize) -> usize {
        let most = self.l2 / 2 / (nr * 4);
        if k <= most { 0 } else { (most / 64 * 64).max(64) }
    }
}

/// B (K, N) packed into panels of `nr` columns.
#[derive(Debug)]
pub struct PackedB {
    /// Rows of B (the GEMM's K).
    pub k: usize,
    /// Columns of B.
    pub n: usize,
    /// Columns per panel.
    pub nr: usize,
    data: super::Aligned,
}

impl PackedB {
    /// Packs row-major `b` (`k` x `n`) with row stride `ldb` into panels of `nr` columns.
    pub fn pack(b: &[f32], k: usize, n: usize, ldb: usize, nr: usize) -> PackedB {
        let panels = n.div_ceil(nr);
        let mut data = super::Aligned::zeros(panels * k * nr);
        for p in 0..panels {
            let (c0, w) = (p * nr, nr.min(n - p * nr));
            let dst = &mut data[p * k * nr..(p + 1) * k * nr];
            for kk in 0..k {
                dst[kk * nr..kk * nr + w].copy_from_slice(&b[kk * ldb + c0..kk * ldb + c0 + w]);
            }
        }
        PackedB { k, n, nr, data }
    }

    /// The packed values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }
}

/// What happens to each block of C after the product.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    /// Added per column.
    pub bias: Option<&'a [f32]>,
    /// Applied after the bias.
    pub act: Act,
    /// Added last: (values, row stride), indexed like C.
    pub residual: Option<(&'a [f32], usize)>,
    /// Add the product to C instead of storing it (then bias, act and residual must be off).
    pub accumulate: bool,
}

impl Epilogue<'_> {
    /// Just the product.
    pub const NONE: Epilogue<'static> = Epilogue { bias: None, act: Act::None, residual: None, accumulate: false };
}

/// One GEMM's operands.
#[derive(Clone, Copy)]
pub struct Gemm<'a> {
    /// Rows of A and C.
    pub m: usize,
    /// A, row-major with row stride `lda` (reads rows 0..m, columns 0..k).
    pub a: &'a [f32],
    /// Row stride of A.
    pub lda: usize,
    /// B as panels of `nr` columns: element (k, j) of panel p at `p * panel + (k0 + k) * ldb + j`
    /// (packed: `panel = K * nr`, `ldb = nr`; a row-major matrix read in place: `panel = nr`,
    /// `ldb` its row stride). Every panel is read `nr` columns wide, the last one too.
    pub b: &'a [f32],
    /// The product's depth.
    pub k: usize,
    /// Rows of B to skip (the product uses rows `k0..k0 + k` of every panel).
    pub k0: usize,
    /// Stride between panels.
    pub panel: usize,
    /// Stride between rows within a panel.
    pub ldb: usize,
    /// Columns of B and C.
    pub n: usize,
    /// Columns per panel.
    pub nr: usize,
    /// Row stride of C.
    pub ldc: usize,
}

impl<'a> Gemm<'a> {
    /// `a (m, k) x b` for a whole packed B.
    pub fn new(m: usize, a: &'a [f32], lda: usize, b: &'a PackedB, ldc: usize) -> Gemm<'a> {
        Gemm { m, a, lda, b: &b.data, k: b.k, k0: 0, panel: b.k * b.nr, ldb: b.nr, n: b.n, nr: b.nr, ldc }
    }

    /// Whether every operand holds what the product reads.
    fn check(&self) {
        assert!(self.m == 0 || self.a.len() >= (self.m - 1) * self.lda + self.k, "A is too small");
        if self.n > 0 && self.k > 0 {
            let end = (self.n.div_ceil(self.nr) - 1) * self.panel + (self.k0 + self.k - 1) * self.ldb + self.nr;
            assert!(self.b.len() >= end, "B is too small");
        }
    }
}

/// C = epilogue(A x B) on the pool; `c` holds rows 0..m with stride `ldc`.
pub fn gemm(cpu: &Cpu, g: &Gemm, c: &mut [f32], epi: &Epilogue) {
    assert!(g.m == 0 || c.len() >= (g.m - 1) * g.ldc + g.n, "C is too small");
    g.check();
    let (mr, nr) = tile(cpu.isa);
    assert_eq!(nr, g.nr, "B was packed for another instruction set");
    if g.m == 0 || g.n == 0 {
        return;
    }
    let grid = TaskGrid::new(cpu, g.m, g.n, g.k, mr, nr);
    let out = SyncPtr(c.as_mut_ptr());
    let kc = cpu.blocking.kc(g.k, nr);
    let task = |t: usize| {
        let (panels, rows) = grid.task(t);
        block(cpu.isa, g, out, epi, panels, rows, kc);
    };
    cpu.pool.run(grid.tasks(), &task);
}

/// How a GEMM of m x n (inner k) is cut into tasks: enough to balance the threads, none smaller
/// than about 256k multiply-adds, in a grid of `tm` row ranges by `tn` panel ranges chosen for the
/// least traffic from memory: each task reads its panels of B once and its block of A once per
/// panel, from L2 where the block fits there beside one panel, else from memory; so B is read `tm`
/// times in all and A `tn` times (or once per panel where its blocks do not fit).
pub(super) struct TaskGrid {
    m: usize,
    mr: usize,
    panels: usize,
    row_blocks: usize,
    tn: usize,
    tm: usize,
}

impl TaskGrid {
    pub(super) fn new(cpu: &Cpu, m: usize, n: usize, k: usize, mr: usize, nr: usize) -> TaskGrid {
        let row_blocks = m.div_ceil(mr);
        let panels = n.div_ceil(nr);
        let work = m * n * k.max(1);
        let want = (cpu.pool.threads() * TASKS_PER_THREAD).min(work.div_ceil(1 << 18)).max(1);
        let kc = cpu.blocking.kc(k, nr);
        let kb = if kc == 0 { k } else { kc };
        let (a_bytes, b_panel) = ((m * k * 4) as f64, (kb * nr * 4) as f64);
        let l2 = cpu.blocking.l2 as f64;
        let mut best = (f64::INFINITY, 1, 1);
        for tm in 1..=row_blocks.min(4 * want) {
            let tn = want.div_ceil(tm).min(panels);
            // Equal parts: row ranges of whole MR tiles, panel ranges as even as they divide.
            let rows = row_blocks.div_ceil(tm) * mr;
            let per_task = panels.div_ceil(tn);
            let a_block = (rows * kb * 4) as f64;
            let a_reads = if a_block + b_panel <= l2 * 0.75 { tn as f64 } else { (tn * per_task) as f64 };
            // Idle threads in the last round of tasks count as traffic too.
            let tasks = tm * tn;
            let rounds = tasks.div_ceil(cpu.pool.threads()) * cpu.pool.threads();
            let balance = rounds as f64 / tasks as f64;
            let cost = (tm as f64 * b_panel * panels as f64 + a_reads * a_bytes) * balance;
            if cost < best.0 {
                best = (cost, tn, tm);
            }
        }
        let (_, tn, tm) = best;
        TaskGrid { m, mr, panels, row_blocks, tn, tm }
    }

    pub(super) fn tasks(&self) -> usize {
        self.tn * self.tm
    }

    /// Task `t`'s panels (p0, p1) and rows (r0, r1).
    pub(super) fn task(&self, t: usize) -> ((usize, usize), (usize, usize)) {
        let (pi, ri) = (t % self.tn, t / self.tn);
        let (p0, p1) = (self.panels * pi / self.tn, self.panels * (pi + 1) / self.tn);
        let (r0, r1) = (self.row_blocks * ri / self.tm, self.row_blocks * (ri + 1) / self.tm);
        ((p0, p1), (r0 * self.mr, (r1 * self.mr).min(self.m)))
    }
}

/// C = epilogue(A x B) on the calling thread alone (for kernels that parallelize outside).
pub fn gemm_serial(isa: Isa, g: &Gemm, c: &mut [f32], epi: &Epilogue) {
    assert!(g.m == 0 || c.len() >= (g.m - 1) * g.ldc + g.n, "C is too small");
    g.check();
    assert_eq!(tile(isa).1, g.nr, "B was packed for another instruction set");
    if g.m > 0 && g.n > 0 {
        block(isa, g, SyncPtr(c.as_mut_ptr()), epi, (0, g.n.div_ceil(g.nr)), (0, g.m), 0);
    }
}

/// Panels `p0..p1` of rows `r0..r1` in blocks of `kc` of K (0: all of K), for the instruction
/// set.
pub(super) fn block(isa: Isa, g: &Gemm, c: SyncPtr, epi: &Epilogue, panels: (usize, usize), rows: (usize, usize), kc: usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Cpu` only selects an instruction set the machine has.
        Isa::Avx512 => unsafe { block_avx512(g, c, epi, panels, rows, kc) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { block_avx2(g, c, epi, panels, rows, kc) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Wasm128 => unsafe { block_generic::<Wasm128, 4, 2>(g, c, epi, panels, rows, kc) },
        _ => unsafe { block_generic::<Portable, 4, 2>(g, c, epi, panels, rows, kc) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn block_avx512(g: &Gemm, c: SyncPtr, epi: &Epilogue, panels: (usize, usize), rows: (usize, usize), kc: usize) {
    unsafe { block_generic::<Avx512, 6, 4>(g, c, epi, panels, rows, kc) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_avx2(g: &Gemm, c: SyncPtr, epi: &Epilogue, panels: (usize, usize), rows: (usize, usize), kc: usize) {
    unsafe { block_generic::<Avx2, 6, 2>(g, c, epi, panels, rows, kc) }
}

/// Tasks per thread a GEMM is cut into (balance against per-task cost, measured on the model).
const TASKS_PER_THREAD: usize = 4;

/// The tiles of panels x rows, K in blocks of `kc` (0: the whole of K in one): for each block of
/// K, for each panel (its block of B kept hot in L2 across the rows), every MR-row tile; stored
/// for the first block of K, added for the others, with the epilogue after the last. For kernels
/// compiled for an instruction set (attention), with that set's tile.
#[inline(always)]
pub(crate) unsafe fn block_generic<S: Simd, const MR: usize, const NV: usize>(g: &Gemm, c: SyncPtr, epi: &Epilogue, panels: (usize, usize), rows: (usize, usize), kc: usize) {
    let nr = NV * S::LANES;
    let kc = if kc == 0 { g.k } else { kc };
    let mut k0 = 0;
    loop {
        let kb = kc.min(g.k - k0);
        let mode = Mode { add: epi.accumulate || k0 > 0, epilogue: k0 + kb == g.k };
        for p in panels.0..panels.1 {
            let col0 = p * nr;
            let cols = nr.min(g.n - col0);
            let b = unsafe { g.b.as_ptr().add(p * g.panel + (g.k0 + k0) * g.ldb) };
            let mut r = rows.0;
            while r < rows.1 {
                let h = MR.min(rows.1 - r);
                // Rows past the last are read from the last row and never stored.
                let a: [*const f32; MR] = std::array::from_fn(|i| unsafe { g.a.as_ptr().add((r + i.min(h - 1)) * g.lda + k0) });
                let ct = unsafe { c.ptr().add(r * g.ldc + col0) };
                unsafe { tile_kernel::<S, MR, NV>(kb, a, (b, g.ldb), ct, g.ldc, h, cols, epi, (r, col0), mode) };
                r += MR;
            }
        }
        k0 += kb;
        if k0 >= g.k {
            break;
        }
    }
}

/// A stack buffer on a 64-byte boundary.
#[repr(C, align(64))]
struct Align64<T>(T);

/// How a tile meets C: stored or added, with or without the epilogue.
#[derive(Clone, Copy)]
struct Mode {
    add: bool,
    epilogue: bool,
}

/// One MR x NR tile: the product over `k` in registers, then stored or added to C, then the
/// epilogue where asked.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_kernel<S: Simd, const MR: usize, const NV: usize>(
    k: usize,
    a: [*const f32; MR],
    (b, ldb): (*const f32, usize),
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    epi: &Epilogue,
    (row0, col0): (usize, usize),
    mode: Mode,
) {
    let nr = NV * S::LANES;
    let mut acc = [[unsafe { S::zero() }; NV]; MR];
    for kk in 0..k {
        let bk = unsafe { b.add(kk * ldb) };
        let bv: [S::V; NV] = std::array::from_fn(|v| unsafe { S::load(bk.add(v * S::LANES)) });
        for i in 0..MR {
            let av = unsafe { S::splat(*a[i].add(kk)) };
            for v in 0..NV {
                acc[i][v] = unsafe { S::fma(av, bv[v], acc[i][v]) };
            }
        }
    }
    if mode.epilogue && epi.act != Act::None {
        // With an activation: the tile through a buffer, so that the activation runs over the
        // whole tile at once, on full vectors whatever NR is (a row of 16 columns alone runs the
        // scalar remainder of a loop vectorized 32 wide).
        let mut buf = Align64([0f32; MAX_TILE]);
        let t = &mut buf.0[..MR * nr];
        for (i, acc_row) in acc.iter().enumerate().take(rows) {
            for (v, &x) in acc_row.iter().enumerate() {
                unsafe { S::store(t.as_mut_ptr().add(i * nr + v * S::LANES), x) };
            }
        }
        if mode.add {
            for i in 0..rows {
                let row = unsafe { std::slice::from_raw_parts(c.add(i * ldc), cols) };
                t[i * nr..i * nr + cols].iter_mut().zip(row).for_each(|(o, x)| *o += x);
            }
        }
        if S::FMA {
            unsafe { store_tile::<true>(t, nr, rows, cols, c, ldc, epi, (row0, col0)) };
        } else {
            unsafe { store_tile::<false>(t, nr, rows, cols, c, ldc, epi, (row0, col0)) };
        }
        return;
    }
    // Whole vectors where the tile is full, else through a buffer.
    let full = cols == nr;
    let mut buf = Align64([0f32; 64]);
    let buf = &mut buf.0;
    for (i, acc_row) in acc.iter().enumerate().take(rows) {
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
        if full {
            for (v, &x) in acc_row.iter().enumerate() {
                let p = unsafe { row.as_mut_ptr().add(v * S::LANES) };
                let x = if mode.add { unsafe { S::add(S::load(p), x) } } else { x };
                unsafe { S::store(p, x) };
            }
        } else {
            let tmp = &mut buf[..nr];
            for (v, &x) in acc_row.iter().enumerate() {
                unsafe { S::store(tmp.as_mut_ptr().add(v * S::LANES), x) };
            }
            if mode.add {
                row.iter_mut().zip(tmp.iter()).for_each(|(o, x)| *o += x);
            } else {
                row.copy_from_slice(&tmp[..cols]);
            }
        }
        if mode.epilogue {
            apply_epilogue(row, epi, row0 + i, col0);
        }
    }
}

/// The most values of a register tile (AVX-512's 6 x 64).
pub(super) const MAX_TILE: usize = 384;

/// A tile's product `t` (`rows` rows `nr` apart, `cols` of them in C) through the epilogue into C
/// at (row0, col0): the bias, the activation over the whole buffer at once (fused multiply-adds
/// where `FMA`), then the residual while it is stored.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn store_tile<const FMA: bool>(t: &mut [f32], nr: usize, rows: usize, cols: usize, c: *mut f32, ldc: usize, epi: &Epilogue, (row0, col0): (usize, usize)) {
    if let Some(bias) = epi.bias {
        for i in 0..rows {
            t[i * nr..i * nr + cols].iter_mut().zip(&bias[col0..col0 + cols]).for_each(|(o, b)| *o += b);
        }
    }
    activate::<FMA>(&mut t[..rows * nr], epi.act);
    for i in 0..rows {
        let row = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), cols) };
        let tr = &t[i * nr..i * nr + cols];
        match epi.residual {
            Some((res, ld)) => {
                let r = &res[(row0 + i) * ld + col0..(row0 + i) * ld + col0 + cols];
                row.iter_mut().zip(tr).zip(r).for_each(|((o, x), y)| *o = x + y);
            }
            None => row.copy_from_slice(tr),
        }
    }
}

/// The activation over `x`, with fused multiply-adds where the kernel's instruction set has them.
#[inline(always)]
fn activate<const FMA: bool>(x: &mut [f32], act: Act) {
    match act {
        Act::None => {}
        Act::Gelu => math::map(x, math::gelu_with::<FMA>),
        Act::Tanh => x.iter_mut().for_each(|o| *o = o.tanh()),
        Act::QuickGelu => math::map(x, |o| o / (1.0 + math::exp_with::<FMA>(-1.702 * o))),
        Act::GeluTanh => math::map(x, |o| o / (1.0 + math::exp_with::<FMA>(-GELU_TANH_K * (o + 0.044715 * o * o * o)))),
        Act::Relu => x.iter_mut().for_each(|o| *o = o.max(0.0)),
        Act::Sigmoid => math::map(x, |o| 1.0 / (1.0 + math::exp_with::<FMA>(-o))),
    }
}

/// The activation over a row of values (outside a GEMM's epilogue).
pub fn activate_row(x: &mut [f32], act: Act) {
    activate::<false>(x, act);
}

/// bias, activation, residual on one row segment of C starting at (row, col0).
#[inline(always)]
fn apply_epilogue(row: &mut [f32], epi: &Epilogue, r: usize, col0: usize) {
    let n = row.len();
    if let Some(bias) = epi.bias {
        row.iter_mut().zip(&bias[col0..col0 + n]).for_each(|(o, b)| *o += b);
    }
    activate::<false>(row, epi.act);
    if let Some((res, ld)) = epi.residual {
        row.iter_mut().zip(&res[r * ld + col0..r * ld + col0 + n]).for_each(|(o, x)| *o += x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm_quant::{gemm_quant, QuantPanels};
    use crate::reference::Rng;

    fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for kk in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + kk] as f64 * b[kk * n + j] as f64;
                }
            }
        }
        c
    }

    #[test]
    fn quantized_b_on_every_instruction_set() {
        use crate::quant::QuantWeight;
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Wasm128, Isa::Portable] {
            if !isa.available() {
                continue;
            }
            let cpu = Cpu::with(isa, 3);
            let nr = tile(isa).1;
            for (m, k, n, bits, group) in [(1, 1, 1, 8, 1), (7, 70, 5, 4, 32), (197, 64, 40, 8, 64), (33, 130, 67, 4, 32), (13, 48, 129, 4, 7)] {
                let mut rng = Rng::new((m * 31 + k * 7 + n) as u64);
                let a = rng.vec(m * k, 1.0);
                let q = QuantWeight::quantize(&rng.vec(k * n, 1.0), k, n, bits, group, true);
                let b = q.dequantize();
                let bias = rng.vec(n, 1.0);
                let mut c = vec![f32::NAN; m * n];
                let epi = Epilogue { bias: Some(&bias), act: Act::None, residual: None, accumulate: false };
                gemm_quant(&cpu, m, &a, k, &QuantPanels::pack(&q, nr), &mut c, n, &epi);
                let want = reference(&a, &b, m, k, n);
                for i in 0..m * n {
                    let w = want[i] + bias[i % n] as f64;
                    assert!((c[i] as f64 - w).abs() <= 1e-5 + 1e-5 * w.abs(), "{isa:?} {m}x{k}x{n} q{bits}/{group} at {i}: {} vs {w}", c[i]);
                }
            }
        }
    }

    #[test]
    fn every_instruction_set_on_awkward_shapes() {
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Wasm128, Isa::Portable] {
            if !isa.available() {
                continue;
            }
            let cpu = Cpu::with(isa, 3);
            let nr = tile(isa).1;
            for (m, k, n) in [(1, 1, 1), (7, 3, 5), (197, 64, 40), (33, 130, 67), (9, 0, 4)] {
                let mut rng = Rng::new((m * 31 + k * 7 + n) as u64);
                let a = rng.vec(m * k, 1.0);
                let b = rng.vec(k * n, 1.0);
                let bias = rng.vec(n, 1.0);
                let res = rng.vec(m * n, 1.0);
                let packed = PackedB::pack(&b, k, n, n, nr);
                let mut c = vec![f32::NAN; m * n];
                let epi = Epilogue { bias: Some(&bias), act: Act::None, residual: Some((&res, n)), accumulate: false };
                gemm(&cpu, &Gemm::new(m, &a, k, &packed, n), &mut c, &epi);
                let want = reference(&a, &b, m, k, n);
                for i in 0..m * n {
                    let w = want[i] + bias[i % n] as f64 + res[i] as f64;
                    assert!((c[i] as f64 - w).abs() <= 1e-5 + 1e-5 * w.abs(), "{isa:?} {m}x{k}x{n} at {i}: {} vs {w}", c[i]);
                }
            }
        }
    }

    #[test]
    fn a_small_cache_blocks_k_and_splits_rows_with_the_same_result() {
        for isa in [Isa::Avx512, Isa::Avx2, Isa::Wasm128, Isa::Portable] {
            if !isa.available() {
                continue;
            }
            let mut cpu = Cpu::with(isa, 2);
            // 128 KiB of L2: K is cut into blocks of 64 to 256 and the rows into many ranges.
            cpu.blocking = Blocking::for_cache(128 << 10);
            let nr = tile(isa).1;
            for (m, k, n) in [(61, 1000, 37), (200, 777, 3 * nr + 5), (5, 2050, 9)] {
                assert!(cpu.blocking.kc(k, nr) > 0 || nr < 64, "{isa:?}: K {k} should be blocked");
                let mut rng = Rng::new((m * 13 + k + n) as u64);
                let (a, b, bias, res) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0), rng.vec(n, 1.0), rng.vec(m * n, 1.0));
                let packed = PackedB::pack(&b, k, n, n, nr);
                let want = reference(&a, &b, m, k, n);
                for act in [Act::None, Act::Gelu] {
                    let mut c = vec![f32::NAN; m * n];
                    let epi = Epilogue { bias: Some(&bias), act, residual: Some((&res, n)), accumulate: false };
                    gemm(&cpu, &Gemm::new(m, &a, k, &packed, n), &mut c, &epi);
                    for i in 0..m * n {
                        let x = want[i] + bias[i % n] as f64;
                        let x = if act == Act::Gelu { 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)) } else { x };
                        let w = x + res[i] as f64;
                        assert!((c[i] as f64 - w).abs() <= 1e-4 + 1e-5 * w.abs(), "{isa:?} {m}x{k}x{n} {act:?} at {i}: {} vs {w}", c[i]);
                    }
                }
                // Accumulating adds the product to what C holds.
                let mut c = res.clone();
                let epi = Epilogue { accumulate: true, ..Epilogue::NONE };
                gemm(&cpu, &Gemm::new(m, &a, k, &packed, n), &mut c, &epi);
                for i in 0..m * n {
                    let w = want[i] + res[i] as f64;
                    assert!((c[i] as f64 - w).abs() <= 1e-4 + 1e-5 * w.abs(), "{isa:?} {m}x{k}x{n} accumulate at {i}: {} vs {w}", c[i]);
                }
            }
        }
    }
}
