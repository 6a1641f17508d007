//! The CPU backend's device: the instruction set its kernels use (chosen at run time natively),
//! a thread pool, and the ledger of the host memory the engine holds against a budget. The
//! kernels (`gemm`, `attention`, `kernels`) are plain functions on f32 slices; they know no op,
//! graph or model. Each op's CPU form (in `ops/`) calls them.

pub mod attention;
pub mod gemm;
pub mod gemm_int8;
pub mod gemm_quant;
pub mod kernels;
pub mod merge;
pub(crate) mod math;
mod pool;
pub mod shard;
pub mod spatial;
pub mod simd;

use crate::error::{Error, Result};
use crate::memory::Ledger;
pub use pool::Pool;
pub use simd::Isa;
use std::sync::Arc;

/// A pointer the pool's tasks share, each writing its own part of what it points to.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub(crate) *mut f32);

// SAFETY: the kernels give each task a disjoint range to write and read nothing another writes.
unsafe impl Send for SyncPtr {}
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the field).
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// 64 bytes: a cache line, and one AVX-512 vector.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

/// f32 values starting on a 64-byte boundary, so that no full-width vector load or store of the
/// kernels straddles two cache lines (the allocator gives Vec<f32> only 16 bytes).
pub struct Aligned {
    lines: Vec<Line>,
    len: usize,
}

impl Aligned {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Aligned {
        Aligned { lines: vec![Line([0.0; 16]); len.div_ceil(16)], len }
    }
}

impl std::ops::Deref for Aligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `lines` holds at least `len` initialized f32s, contiguous.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const f32, self.len) }
    }
}

impl std::ops::DerefMut for Aligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as for Deref, and `self` is borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut f32, self.len) }
    }
}

impl std::fmt::Debug for Aligned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Aligned({} values)", self.len)
    }
}

/// How to set up the CPU backend. [`CpuOptions::from_env`] reads `TESSERA_THREADS` and
/// `TESSERA_MEMORY_BUDGET`.
#[derive(Clone, Debug, Default)]
pub struct CpuOptions {
    /// Threads (the caller included). None: one per core the system offers (`TESSERA_THREADS`).
    pub threads: Option<usize>,
    /// Most host memory the engine may hold for models on this device, in bytes (None: three
    /// quarters of the memory the OS reports available). `TESSERA_MEMORY_BUDGET`.
    pub memory_budget: Option<u64>,
    /// The instruction set (None: the best this machine has); one it lacks is an error.
    pub isa: Option<Isa>,
    /// The GEMM's cache blocking (None: from this machine's L2 cache); `TESSERA_CPU_L2=<KiB>`
    /// sizes it for another cache, for measuring.
    pub blocking: Option<gemm::Blocking>,
    /// The integer kernel of int8 arithmetic (None: the best this machine has);
    /// `TESSERA_CPU_INT8=avx512-vnni|avx-vnni|avx2|portable`, to compare them on one machine.
    pub int8: Option<gemm_int8::IntKernel>,
    /// This backend as one rank of several that split every matrix product and attention between
    /// them ([`shard`]; the browser's worker threads). None: the whole model here.
    pub shard: Option<Arc<shard::Shard>>,
}

impl CpuOptions {
    /// Options from `TESSERA_THREADS`, `TESSERA_MEMORY_BUDGET` and `TESSERA_CPU_ISA` (`avx512`,
    /// `avx2`, `portable`: a lesser instruction set than the machine's best, to compare kernels).
    pub fn from_env() -> Result<CpuOptions> {
        let mut opts = CpuOptions { memory_budget: crate::memory::budget_from_env()?, ..Default::default() };
        if let Some(v) = std::env::var("TESSERA_CPU_ISA").ok().filter(|v| !v.is_empty()) {
            let isa = [Isa::Avx512, Isa::Avx2, Isa::Wasm128, Isa::Portable].into_iter().find(|i| i.name() == v).ok_or_else(|| Error::Input {
                name: "TESSERA_CPU_ISA".into(),
                problem: format!("`{v}` is not an instruction set (avx512, avx2, simd128, portable)"),
            })?;
            opts.isa = Some(isa);
        }
        if let Some(v) = std::env::var("TESSERA_CPU_INT8").ok().filter(|v| !v.is_empty()) {
            let k = gemm_int8::IntKernel::ALL.into_iter().find(|k| k.name() == v).ok_or_else(|| Error::Input {
                name: "TESSERA_CPU_INT8".into(),
                problem: format!("`{v}` is not an integer kernel (avx512-vnni, avx-vnni, avx2, portable)"),
            })?;
            opts.int8 = Some(k);
        }
        if let Some(v) = std::env::var("TESSERA_CPU_L2").ok().filter(|v| !v.is_empty()) {
            let kib = v.trim().parse::<usize>().ok().filter(|&k| (64..=1 << 20).contains(&k)).ok_or_else(|| Error::Input {
                name: "TESSERA_CPU_L2".into(),
                problem: format!("`{v}` is not an L2 size in KiB (64 to 1048576)"),
            })?;
            opts.blocking = Some(gemm::Blocking::for_cache(kib << 10));
        }
        if let Some(v) = std::env::var("TESSERA_THREADS").ok().filter(|v| !v.is_empty()) {
            opts.threads = Some(parse_threads(&v).ok_or_else(|| Error::Input {
                name: "TESSERA_THREADS".into(),
                problem: format!("`{v}` is not a thread count (1 to {MAX_THREADS})"),
            })?);
        }
        Ok(opts)
    }
}

/// Most threads the pool takes.
pub const MAX_THREADS: usize = 256;

/// A thread count from text: 1 to [`MAX_THREADS`].
pub fn parse_threads(s: &str) -> Option<usize> {
    s.trim().parse::<usize>().ok().filter(|&n| (1..=MAX_THREADS).contains(&n))
}

/// What the CPU backend runs with.
#[derive(Clone, Debug)]
pub struct CpuReport {
    /// The instruction set of the kernels.
    pub isa: Isa,
    /// The kernel of int8 arithmetic (`Arithmetic::Int8`).
    pub int8: gemm_int8::IntKernel,
    /// Threads, the caller included.
    pub threads: usize,
    /// The memory budget, if any.
    pub memory_budget: Option<u64>,
    /// Whether the budget was derived from the system's available memory.
    pub memory_budget_from_system: bool,
    /// The GEMM's cache blocking.
    pub blocking: gemm::Blocking,
    /// Each core's L2 cache, in bytes, as the machine reports it (None where it does not).
    pub l2_bytes: Option<usize>,
}

impl std::fmt::Display for CpuReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "device:   CPU backend ({} kernels, {} thread{})", self.isa.name(), self.threads, if self.threads == 1 { "" } else { "s" })?;
        let l2 = self.l2_bytes.map_or("L2 size unknown".to_string(), |b| format!("{} KiB L2 per core", b >> 10));
        writeln!(f, "gemm:     blocks of A and B sized for {} KiB of L2 ({l2}); int8 arithmetic: {} kernel", self.blocking.l2 >> 10, self.int8.name())?;
        match self.memory_budget {
            Some(b) if self.memory_budget_from_system => {
                write!(f, "memory:   budget {} MiB (3/4 of the system memory available; TESSERA_MEMORY_BUDGET sets it)", b >> 20)
            }
            Some(b) => write!(f, "memory:   budget {} MiB (as set)", b >> 20),
            None => write!(f, "memory:   no budget"),
        }
    }
}

/// The CPU backend. Cheap to share (`Arc`).
pub struct Cpu {
    pub(crate) isa: Isa,
    pub(crate) int8: gemm_int8::IntKernel,
    pub(crate) blocking: gemm::Blocking,
    pub(crate) pool: Pool,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) shard: Option<Arc<shard::Shard>>,
    report: CpuReport,
}

impl Cpu {
    /// The CPU backend with `opts`.
    pub fn new(opts: &CpuOptions) -> Result<Arc<Cpu>> {
        let isa = match opts.isa {
            Some(i) if !i.available() => return Err(Error::Input { name: "isa".into(), problem: format!("this machine cannot run {} kernels", i.name()) }),
            Some(i) => i,
            None => Isa::detect(),
        };
        let threads = opts.threads.unwrap_or_else(default_threads).clamp(1, MAX_THREADS);
        let budget = opts.memory_budget.or_else(|| crate::memory::system_available().map(|b| b / 4 * 3));
        let mut cpu = Cpu::with(isa, threads);
        if let Some(b) = opts.blocking {
            cpu.blocking = b;
            cpu.report.blocking = b;
        }
        if let Some(k) = opts.int8 {
            if !k.available() {
                return Err(Error::Input { name: "TESSERA_CPU_INT8".into(), problem: format!("this machine cannot run the {} integer kernel", k.name()) });
            }
            cpu.int8 = k;
            cpu.report.int8 = k;
        }
        cpu.ledger = Ledger::new(budget);
        cpu.shard = opts.shard.clone();
        cpu.report.memory_budget = budget;
        cpu.report.memory_budget_from_system = opts.memory_budget.is_none() && budget.is_some();
        Ok(Arc::new(cpu))
    }

    /// The CPU backend from the environment (`TESSERA_THREADS`, `TESSERA_MEMORY_BUDGET`).
    pub fn from_env() -> Result<Arc<Cpu>> {
        Cpu::new(&CpuOptions::from_env()?)
    }

    /// A backend for `isa` (which must be available) and `threads`, without a budget.
    pub(crate) fn with(isa: Isa, threads: usize) -> Cpu {
        let pool = Pool::new(threads);
        let l2_bytes = l2_cache_bytes();
        let blocking = gemm::Blocking::for_cache(l2_bytes.unwrap_or(DEFAULT_L2));
        let int8 = gemm_int8::IntKernel::detect(isa);
        let report = CpuReport { isa, int8, threads: pool.threads(), memory_budget: None, memory_budget_from_system: false, blocking, l2_bytes };
        Cpu { isa, int8, blocking, pool, ledger: Ledger::new(None), shard: None, report }
    }

    /// What it runs with.
    pub fn report(&self) -> &CpuReport {
        &self.report
    }

    /// Threads, the caller included.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// The instruction set of the kernels.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// On a split backend, matrix columns are split between the ranks in whole GEMM panels of
    /// this many (no panel is padded but a matrix's last).
    pub fn column_unit(&self) -> usize {
        gemm::tile(self.isa).1
    }

    /// Where this backend is one rank of a split one: its place.
    pub fn shard(&self) -> Option<&Arc<shard::Shard>> {
        self.shard.as_ref()
    }

    /// Bytes of host memory the engine holds for this device (weights, packed weights, arenas).
    pub fn memory_in_use(&self) -> u64 {
        self.ledger.in_use()
    }

    /// The memory budget in force, if any.
    pub fn memory_budget(&self) -> Option<u64> {
        self.ledger.budget()
    }

    /// Fails with `Error::OutOfMemory` naming `what` if `bytes` more would exceed the budget.
    pub fn check_memory(&self, what: &str, bytes: u64) -> Result<()> {
        self.ledger.check(what, bytes)
    }
}

/// The L2 cache assumed where the machine does not say (wasm, other systems): small, so that a
/// block of B fits whatever the cache is.
const DEFAULT_L2: usize = 512 << 10;

/// Each core's L2 cache in bytes: from Linux's sysfs, else (x86-64) from CPUID leaf 4; None
/// where neither tells.
fn l2_cache_bytes() -> Option<usize> {
    #[cfg(target_os = "linux")]
    for i in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok().map(|s| s.trim().to_string());
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size")) else { break };
        if level == "2" && kind != "Instruction" {
            let (num, mult) = match size.strip_suffix('K') {
                Some(n) => (n, 1 << 10),
                None => match size.strip_suffix('M') {
                    Some(n) => (n, 1 << 20),
                    None => (size.as_str(), 1),
                },
            };
            if let Ok(n) = num.parse::<usize>() {
                return Some(n * mult).filter(|&b| b >= 64 << 10);
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        // Deterministic cache parameters (Intel, and AMD with TOPOEXT): ways x partitions x line
        // size x sets.
        let max = std::arch::x86_64::__cpuid(0).eax;
        if max >= 4 {
            for sub in 0..8 {
                let r = std::arch::x86_64::__cpuid_count(4, sub);
                let kind = r.eax & 0x1f;
                if kind == 0 {
                    break;
                }
                if (r.eax >> 5) & 0x7 == 2 && kind != 2 {
                    let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
                    let parts = ((r.ebx >> 12) & 0x3ff) as usize + 1;
                    let line = (r.ebx & 0xfff) as usize + 1;
                    let sets = r.ecx as usize + 1;
                    return Some(ways * parts * line * sets).filter(|&b| b >= 64 << 10);
                }
            }
        }
    }
    None
}

/// One thread per core the system offers (one in wasm: threads there need a cross-origin
/// isolated page and a threaded build).
fn default_threads() -> usize {
    if cfg!(target_arch = "wasm32") {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How a split backend's ranks share a matrix product's B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Each rank holds all of it.
    Whole,
    /// Each rank holds its columns (and computes its columns of the product).
    Columns,
    /// Each rank holds its rows, those of its columns of the input (and computes a partial
    /// product, which the ranks sum).
    Rows,
    /// A fused query-key-value `(D, 3 D)` of this many heads: each rank holds its heads' columns
    /// of each third (and computes them), where the ranks divide the heads; else as `Columns`.
    Heads(usize),
}

/// What part of a `(k, n)` matrix B one rank of a split backend holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Share {
    /// All of it (not split).
    Whole,
    /// Columns `[c0, c1)`.
    Columns(usize, usize),
    /// Rows `[k0, k1)`.
    Rows(usize, usize),
    /// Of a fused query-key-value `(D, 3 D)`: its heads' columns `[c0, c1)` of each third of D,
    /// and the head dim (held side by side).
    Heads(usize, usize, usize),
}

impl Split {
    /// This rank's share of a `(k, n)` B on `cpu` (the whole of it unless `cpu` is split). A
    /// query-key-value split whose heads the ranks do not divide (the attention is then split by
    /// query tokens and reads every head) is split by columns.
    fn share(self, cpu: &Cpu, k: usize, n: usize) -> Share {
        let Some(s) = cpu.shard.as_ref() else { return Share::Whole };
        let unit = cpu.column_unit();
        match self {
            Split::Whole => Share::Whole,
            Split::Rows => {
                let (k0, k1) = s.columns(k, unit);
                Share::Rows(k0, k1)
            }
            Split::Heads(heads) if heads > 0 && heads.is_multiple_of(s.ranks()) && n.is_multiple_of(3 * heads) => {
                let dh = n / 3 / heads;
                let (c0, c1) = s.columns(n / 3, dh);
                Share::Heads(c0, c1, dh)
            }
            Split::Columns | Split::Heads(_) => {
                let (c0, c1) = s.columns(n, unit);
                Share::Columns(c0, c1)
            }
        }
    }
}

/// A weight in host memory, counted in the device's ledger, with its GEMM packing made once on
/// first use (weights used as a matrix product's B).
pub struct HostWeight {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
    packed: std::sync::OnceLock<Arc<gemm::PackedB>>,
    /// A quantized matrix (then `data` is empty): its panels, packed at upload.
    quant: Option<Arc<gemm_quant::QuantPanels>>,
    /// Or, for int8 arithmetic, its int8 panels.
    int8: Option<Arc<gemm_int8::Int8Panels>>,
    /// On a split backend, the part of the matrix this rank holds (its panels are of that part
    /// alone).
    share: Share,
    _held: crate::memory::Reservation,
    ledger: Arc<Ledger>,
    name: String,
}

impl std::fmt::Debug for HostWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostWeight({}, {:?})", self.name, self.shape)
    }
}

impl HostWeight {
    /// `data` of `shape`, reserved in `cpu`'s ledger as `name`.
    pub fn new(cpu: &Cpu, name: &str, shape: &[usize], data: Vec<f32>) -> Result<HostWeight> {
        let held = crate::memory::Reservation::new(&cpu.ledger, &format!("weight `{name}`"), data.len() as u64 * 4)?;
        Ok(HostWeight { shape: shape.to_vec(), data, packed: std::sync::OnceLock::new(), quant: None, int8: None, share: Share::Whole, _held: held, ledger: cpu.ledger.clone(), name: name.into() })
    }

    /// A matrix product's B, `(k, n)` row-major, kept only as GEMM panels for `cpu` (no row-major
    /// copy beside them); on a split backend with `split`, only this rank's columns of it.
    pub fn new_matrix(cpu: &Cpu, name: &str, k: usize, n: usize, data: &[f32], split: Split) -> Result<HostWeight> {
        if data.len() != k * n || data.is_empty() {
            return Err(Error::Weight { name: name.into(), problem: format!("shape [{k}, {n}] does not match {} values", data.len()) });
        }
        let nr = gemm::tile(cpu.isa).1;
        let share = split.share(cpu, k, n);
        let packed = std::sync::OnceLock::new();
        let p = match share {
            Share::Whole => gemm::PackedB::pack(data, k, n, n, nr),
            Share::Columns(c0, c1) => gemm::PackedB::pack(&data[c0..], k, c1 - c0, n, nr),
            Share::Rows(k0, k1) => gemm::PackedB::pack(&data[k0 * n..], k1 - k0, n, n, nr),
            Share::Heads(h0, h1, _) => {
                // This rank's columns of Q, K and V, side by side.
                let (d, w) = (n / 3, h1 - h0);
                let mut part = vec![0f32; k * 3 * w];
                for (r, row) in part.chunks_mut(3 * w).enumerate() {
                    for t in 0..3 {
                        row[t * w..(t + 1) * w].copy_from_slice(&data[r * n + t * d + h0..r * n + t * d + h1]);
                    }
                }
                gemm::PackedB::pack(&part, k, 3 * w, 3 * w, nr)
            }
        };
        let held = crate::memory::Reservation::new(&cpu.ledger, &format!("weight `{name}`"), p.bytes() as u64)?;
        let _ = packed.set(Arc::new(p));
        Ok(HostWeight { shape: vec![k, n], data: Vec::new(), packed, quant: None, int8: None, share, _held: held, ledger: cpu.ledger.clone(), name: name.into() })
    }

    /// On a split backend, a fused query-key-value weight's head columns `[c0, c1)` of each
    /// third that this rank holds, and the head dim; None where it is not split so.
    pub fn thirds(&self) -> Option<(usize, usize, usize)> {
        match self.share {
            Share::Heads(c0, c1, dh) => Some((c0, c1, dh)),
            _ => None,
        }
    }

    /// On a split backend, the rows of the matrix this rank holds (a product split along its
    /// depth); None where it holds all.
    pub fn depth(&self) -> Option<(usize, usize)> {
        match self.share {
            Share::Rows(k0, k1) => Some((k0, k1)),
            _ => None,
        }
    }

    /// On a split backend, the columns of the matrix this rank holds; None where it holds all.
    pub fn columns(&self) -> Option<(usize, usize)> {
        match self.share {
            Share::Columns(c0, c1) => Some((c0, c1)),
            _ => None,
        }
    }

    /// Whether its values are held row-major in `data` (else only packed for the GEMM).
    pub fn has_values(&self) -> bool {
        self.data.len() == self.shape.iter().product::<usize>()
    }

    /// A quantized `(k, n)` matrix, packed for `cpu`'s GEMM and reserved at its quantized size:
    /// with [`Arithmetic::Int8`](crate::quant::Arithmetic::Int8) and a weight that allows it
    /// (8 bits, a scale per column), as int8 panels for the integer kernel; else as panels that
    /// are dequantized a panel at a time.
    pub fn new_quant(cpu: &Cpu, name: &str, q: &crate::quant::QuantWeight, arithmetic: crate::quant::Arithmetic) -> Result<HostWeight> {
        Self::new_quant_split(cpu, name, q, arithmetic, Split::Columns)
    }

    /// [`HostWeight::new_quant`] shared between a split backend's ranks as `split` says (by
    /// columns, or a fused query-key-value weight by heads).
    pub fn new_quant_split(cpu: &Cpu, name: &str, q: &crate::quant::QuantWeight, arithmetic: crate::quant::Arithmetic, split: Split) -> Result<HostWeight> {
        let (k, n) = (q.k, q.n);
        // Quantized weights are not split along their depth (their scale groups run along it).
        let share = match split {
            Split::Rows => Split::Columns,
            other => other,
        }
        .share(cpu, k, n);
        let part;
        let q = match share {
            Share::Columns(c0, c1) => {
                part = q.columns(c0..c1);
                &part
            }
            Share::Heads(h0, h1, _) => {
                // This rank's heads of Q, K and V, side by side.
                let d = n / 3;
                let thirds: Vec<crate::quant::QuantWeight> = (0..3).map(|t| q.columns(t * d + h0..t * d + h1)).collect();
                part = crate::quant::QuantWeight::concat_columns(&thirds.iter().collect::<Vec<_>>()).ok_or_else(|| Error::Weight { name: name.into(), problem: "its thirds do not fit together".into() })?;
                &part
            }
            Share::Whole | Share::Rows(..) => q,
        };
        let int8 = if arithmetic == crate::quant::Arithmetic::Int8 { gemm_int8::Int8Panels::pack(q, cpu.int8) } else { None };
        let (quant, bytes) = match &int8 {
            Some(p) => (None, p.bytes()),
            None => {
                let panels = gemm_quant::QuantPanels::pack(q, gemm::tile(cpu.isa).1);
                let b = panels.bytes();
                (Some(Arc::new(panels)), b)
            }
        };
        let held = crate::memory::Reservation::new(&cpu.ledger, &format!("weight `{name}`"), bytes as u64)?;
        Ok(HostWeight {
            shape: vec![k, n],
            data: Vec::new(),
            packed: std::sync::OnceLock::new(),
            quant,
            int8: int8.map(Arc::new),
            share,
            _held: held,
            ledger: cpu.ledger.clone(),
            name: name.into(),
        })
    }

    /// The int8 panels, for a quantized weight packed for int8 arithmetic.
    pub fn int8(&self) -> Option<&Arc<gemm_int8::Int8Panels>> {
        self.int8.as_ref()
    }

    /// The quantized panels, for a quantized weight.
    pub fn quant(&self) -> Option<&Arc<gemm_quant::QuantPanels>> {
        self.quant.as_ref()
    }

    /// Bytes held as uploaded (as reserved in the ledger): the values, the quantized panels, or
    /// the panels of a weight kept only packed (a packing made later on first use aside).
    pub fn bytes(&self) -> u64 {
        match (&self.quant, &self.int8) {
            (Some(q), _) => q.bytes() as u64,
            (None, Some(p)) => p.bytes() as u64,
            (None, None) if self.data.is_empty() => self.packed.get().map_or(0, |p| p.bytes() as u64),
            (None, None) => self.data.len() as u64 * 4,
        }
    }

    /// The weight `(k, n)` packed as GEMM panels of `nr` columns (made once, counted in the
    /// ledger while the weight lives).
    pub fn packed(&self, nr: usize) -> Result<Arc<gemm::PackedB>> {
        if self.quant.is_some() || self.int8.is_some() {
            return Err(Error::Weight { name: self.name.clone(), problem: "is quantized; only a matrix product's B may be".into() });
        }
        if let Some(p) = self.packed.get().filter(|p| p.nr == nr) {
            return Ok(p.clone());
        }
        if !self.has_values() {
            return Err(Error::Weight { name: self.name.clone(), problem: format!("is packed in panels of {} columns, not {nr}", self.packed.get().map_or(0, |p| p.nr)) });
        }
        let (k, n) = match self.shape[..] {
            [k, n] => (k, n),
            _ => return Err(Error::Weight { name: self.name.clone(), problem: "a matrix product's B must be 2-D".into() }),
        };
        let bytes = (n.div_ceil(nr) * nr * k * 4) as u64;
        self.ledger.reserve(&format!("the packed weight `{}`", self.name), bytes)?;
        let p = Arc::new(gemm::PackedB::pack(&self.data, k, n, n, nr));
        if self.packed.set(p.clone()).is_err() {
            // Packed concurrently by another compile: keep theirs.
            self.ledger.release(bytes);
            return Ok(self.packed.get().cloned().unwrap_or(p));
        }
        Ok(p)
    }
}

impl Drop for HostWeight {
    fn drop(&mut self) {
        // A packing made on first use was reserved apart (a weight kept only packed reserved it
        // with its values' reservation).
        if let Some(p) = self.packed.get().filter(|_| !self.data.is_empty()) {
            self.ledger.release(p.bytes() as u64);
        }
    }
}

/// How a kernel on a split backend leaves its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shared {
    /// This rank's columns of rows of `width` values (split in units of `unit`,
    /// [`shard::columns_of`]); the executor gathers the other ranks'.
    Columns {
        /// Values per row.
        width: usize,
        /// The split's unit.
        unit: usize,
    },
    /// This rank's partial sum of the whole output; the executor adds the other ranks'.
    Sum,
}

/// A node's kernel on the CPU: reads its inputs (arena tensors and weights' values, in the node's
/// input order) and writes its output.
pub trait CpuKernel: Send + Sync {
    /// The kernel's name for reports.
    fn name(&self) -> &'static str;
    /// f32 scratch values a run needs (the executor holds one buffer for the largest).
    fn scratch(&self) -> usize {
        0
    }
    /// Runs on `cpu`.
    fn run(&self, cpu: &Cpu, inputs: &[&[f32]], out: &mut [f32], scratch: &mut [f32]);
    /// On a split backend: how this kernel's output is shared out (None: it writes the whole
    /// output).
    fn split(&self) -> Option<Shared> {
        None
    }
    /// On a split backend: `(input, width, (c0, c1))` where this kernel reads only columns
    /// `[c0, c1)` of input `input` taken as rows of `width` (then the step making it need not
    /// gather the others').
    fn reads_columns(&self) -> Option<(usize, usize, (usize, usize))> {
        None
    }
}
