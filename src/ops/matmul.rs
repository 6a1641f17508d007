//! Tiled matrix multiply with a fused epilogue (bias, exact GELU, residual).

use super::shader::{specialize, ShaderVariant};
use super::{grid, last, rows_of, shape_err, uniforms, Access, Activation, Binding, Finish, Kernel, KernelDecl, OpDef, ELEMENT_WG};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::{fmt_shape, TensorInfo};

uniforms!(Params { m: u32, n: u32, k: u32, kc: u32 });
uniforms!(ReduceParams { m: u32, n: u32, splits: u32, _pad: u32 });
uniforms!(QParams { m: u32, n: u32, k: u32, kc: u32, qgroup: u32, qso: u32, _pad0: u32, _pad1: u32 });

/// A quantized B as its kernels read it: bits per value, values of K per scale, and where the
/// scales start in its buffer (32-bit words).
#[derive(Clone, Copy, Debug)]
pub(super) struct QuantB {
    pub(super) bits: u32,
    pub(super) group: u32,
    pub(super) qso: u32,
    pub(super) f16: bool,
}

impl QuantB {
    /// What the shader variant depends on: bits, and whether the scales are f16.
    pub(super) fn form(self) -> (u32, bool) {
        (self.bits, self.f16)
    }
}

pub(super) fn quant_b(b: &TensorInfo) -> Option<QuantB> {
    let q = b.quant?;
    let (k, n) = (b.shape[0], b.shape[1]);
    let qso = crate::quant::gpu_scale_offset(k, n, q.bits) as u32;
    Some(QuantB { bits: q.bits, group: q.group as u32, qso, f16: q.f16_scales })
}

/// The uniforms of a GEMM over (m, n, k) with K ranges of kc, for a float or quantized B.
fn gemm_kernel(name: &'static str, decl: KernelDecl, q: Option<QuantB>, mnk: [u64; 4], groups: [u32; 3]) -> Kernel {
    let [m, n, k, kc] = mnk.map(|v| v as u32);
    let flops = 2.0 * (mnk[0] * mnk[1] * mnk[2]) as f64;
    match q {
        None => Kernel::new(name, decl, Params { m, n, k, kc }, groups, flops),
        Some(q) => Kernel::new(name, decl, QParams { m, n, k, kc, qgroup: q.group, qso: q.qso, ..Default::default() }, groups, flops),
    }
}

/// A GEMM tiling: the workgroup's output tile (BM x BN), the K step, and each invocation's
/// register block (TM x TN, TN a multiple of 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    pub tm: u32,
    pub tn: u32,
    /// Load the next K step into registers while this one computes.
    pub prefetch: bool,
    /// The 4x4 or 8x8 block update written out (constant register indices, A read as vec4s).
    pub unroll: bool,
}

impl Tile {
    pub(crate) fn consts(self) -> [(&'static str, u32); 5] {
        [("BM", self.bm), ("BN", self.bn), ("BK", self.bk), ("TM", self.tm), ("TN", self.tn)]
    }

    /// gemm.wgsl's flags for an unrolled block (written out for 4x4 and 8x8 only).
    fn unroll_flags(self) -> Vec<&'static str> {
        match (self.unroll, self.tm, self.tn) {
            (false, _, _) => vec![],
            (true, 4, 4) => vec!["UNROLL", "UNROLL_4X4"],
            (true, 8, 8) => vec!["UNROLL", "UNROLL_8X8"],
            (true, tm, tn) => unreachable!("no unrolled {tm}x{tn} block"),
        }
    }
}

/// 64x64 tiles of 4x4 blocks (256 invocations): enough workgroups for narrow shapes.
pub(crate) const SMALL: Tile = Tile { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, prefetch: false, unroll: false };
/// 128x128 tiles of 8x8 blocks (256 invocations): twice the arithmetic per loaded value, for
/// shapes with enough tiles to fill a GPU.
pub(crate) const LARGE: Tile = Tile { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8, prefetch: false, unroll: false };
/// 32x64 tiles of 2x4 blocks (256 invocations): twice as many workgroups as the small tile, for
/// the narrow batch-1 shapes (M = 197) that leave most of a large GPU idle.
pub(crate) const NARROW: Tile = Tile { bm: 32, bn: 64, bk: 16, tm: 2, tn: 4, prefetch: false, unroll: false };

/// 32x32 tiles of 2x4 blocks (128 invocations): four times the small tile's workgroups, for the
/// narrowest shapes (batch-1 projections with N = 768).
pub(crate) const TINY: Tile = Tile { bm: 32, bn: 32, bk: 16, tm: 2, tn: 4, prefetch: false, unroll: false };

/// The small and large tiles with the next K step prefetched into registers (global-load latency
/// hidden behind the arithmetic, at the cost of a few registers).
pub(crate) const SMALL_PREFETCH: Tile = Tile { prefetch: true, ..SMALL };
pub(crate) const LARGE_PREFETCH: Tile = Tile { prefetch: true, ..LARGE };

/// The small and large tiles with their block update unrolled: for shaders that keep bounds
/// checks, where every loop and dynamic register index costs.
pub(crate) const SMALL_UNROLLED: Tile = Tile { unroll: true, ..SMALL };
pub(crate) const LARGE_UNROLLED: Tile = Tile { unroll: true, ..LARGE };

/// The tiles the autotuner times, by name; the first is the op's default.
pub(crate) const TILES: [(&str, Tile); 8] = [
    ("64x64", SMALL),
    ("128x128", LARGE),
    ("32x64", NARROW),
    ("32x32", TINY),
    ("64x64-prefetch", SMALL_PREFETCH),
    ("128x128-prefetch", LARGE_PREFETCH),
    ("64x64-unrolled", SMALL_UNROLLED),
    ("128x128-unrolled", LARGE_UNROLLED),
];

/// Split-K kernels, by name and number of K ranges: the small tile, each workgroup layer (z)
/// multiplying one range of K into an f32 scratch, then a reduction that sums the ranges in order
/// and applies the epilogue. For the narrow shapes (batch-1 projections, M = 197) whose output
/// tiles are too few to occupy a large GPU: fc2 (197x3072x768) has 48 small tiles.
pub(crate) const SPLITS: [(&str, u32); 3] = [("64x64-split2", 2), ("64x64-split4", 4), ("64x64-split8", 8)];

/// Split K only where the small tile gives at most this many workgroups (beyond, the GPU is
/// already occupied and the scratch traffic is pure cost)...
const SPLIT_MAX_TILES: u64 = 256;
/// ...and each range keeps at least this much of K.
const SPLIT_MIN_K: u64 = 128;

/// Every kernel name a matmul may choose ([`TILES`], then [`SPLITS`]).
pub(crate) fn kernel_names() -> Vec<&'static str> {
    TILES.iter().map(|(n, _)| *n).chain(SPLITS.iter().map(|(n, _)| *n)).collect()
}

/// Short names `TESSERA_GEMM_TILE` also takes.
pub(crate) const ALIASES: &[(&str, &str)] = &[
    ("small", "64x64"),
    ("large", "128x128"),
    ("narrow", "32x64"),
    ("tiny", "32x32"),
    ("small-prefetch", "64x64-prefetch"),
    ("large-prefetch", "128x128-prefetch"),
];

/// The measured GEMM tile per adapter kind for an output of `rows` x `cols`, where it is not the
/// default 64x64 (BENCHMARKS.md): on CPU adapters (lavapipe) the 128x128 tile is 1.8-2.2x faster
/// on every ViT shape, and with its block update unrolled 1.5-1.6x faster again; on a discrete GPU
/// (an H200 with steady clocks) 128x128 wins only on large, wide outputs (12608x2304: 31.8 against
/// 30.1 TFLOP/s, 12608x3072: 32.9 / 30.2, 4096^2: 31.5 / 28.9) and loses elsewhere (N = 768 at
/// batch 64, every batch-1 shape, 1024^2), so discrete GPUs take it from 4096 rows and 2048 columns.
pub(crate) fn heuristic_tile(device: wgpu::DeviceType, rows: usize, cols: usize) -> Option<&'static str> {
    match device {
        wgpu::DeviceType::Cpu => Some("128x128-unrolled"),
        wgpu::DeviceType::DiscreteGpu if rows >= 4096 && cols >= 2048 => Some("128x128"),
        _ => None,
    }
}

/// `a (.., K) x b (K, N) [+ bias (N)] [activation] [+ residual (.., N)]`.
pub(crate) struct MatMul {
    pub bias: bool,
    pub act: Activation,
    pub residual: bool,
}

impl OpDef for MatMul {
    fn kind(&self) -> &'static str {
        "matmul"
    }

    fn arity(&self) -> usize {
        2 + self.bias as usize + self.residual as usize
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let (a, b) = (inputs[0], inputs[1]);
        let k = last(&a.shape);
        if b.shape.len() != 2 || b.shape[0] != k {
            return Err(shape_err(node, b, format!("[{k}, N] (K = {k} from `{}`)", a.name)));
        }
        let n = b.shape[1];
        let mut out = a.shape[..a.shape.len() - 1].to_vec();
        out.push(n);
        if self.bias && inputs[2].shape != [n] {
            return Err(shape_err(node, inputs[2], format!("[{n}]")));
        }
        if self.residual {
            let r = inputs[2 + self.bias as usize];
            if r.shape != out {
                return Err(shape_err(node, r, fmt_shape(&out)));
            }
        }
        Ok(out)
    }

    /// One kernel per tile of [`TILES`] (the default, 64x64, first), then the split-K kernels
    /// that apply.
    fn kernels(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Vec<Kernel> {
        let mut out: Vec<Kernel> = TILES.iter().map(|&(name, tile)| self.tiled(name, inputs, output, tile)).collect();
        for (name, splits) in SPLITS {
            out.extend(self.split(name, inputs, output, splits));
        }
        out
    }

    fn family(&self) -> Option<&'static str> {
        Some("matmul")
    }

    fn tuning_key(&self, inputs: &[&TensorInfo], output: &TensorInfo) -> Option<String> {
        let (m, k, n) = (rows_of(&inputs[0].shape), last(&inputs[0].shape), last(&output.shape));
        let (bias, act, residual) = (self.bias, self.act, self.residual);
        Some(format!("matmul {m}x{k}x{n} bias={bias} act={act:?} residual={residual}{}", quant_key(inputs[1])))
    }

    fn heuristic(&self, device: wgpu::DeviceType, _inputs: &[&TensorInfo], output: &TensorInfo) -> Option<&'static str> {
        heuristic_tile(device, rows_of(&output.shape), last(&output.shape))
    }

    fn cpu_kernel(&self, cpu: &Cpu, node: &str, inputs: &[&TensorInfo], output: &TensorInfo, weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        let w = super::need_weight(node, weights, 1, "B")?;
        let b = cpu_b(cpu, w)?;
        let m = rows_of(&inputs[0].shape);
        let residual = self.residual.then_some(2 + self.bias as usize);
        if w.depth().is_some() && self.act != Activation::None {
            return Err(super::invalid(node, "a product split along its depth between threads cannot apply an activation to its partial sums"));
        }
        let depth = w.depth().map(|r| (r, last(&inputs[0].shape), cpu.shard().is_none_or(|s| s.rank() == 0)));
        let n = last(&output.shape);
        if w.thirds().is_some() && (self.act != Activation::None || self.residual) {
            return Err(super::invalid(node, "a query-key-value product split by heads takes no activation or residual"));
        }
        let thirds = w.thirds().map(|(c0, c1, dh)| (c0, c1, n / 3, dh));
        Ok(Box::new(MatMulCpu { m, b, n, cols: w.columns(), depth, thirds, unit: cpu.column_unit(), bias: self.bias, act: self.act, residual, heads: None }))
    }
}

impl MatMul {
    fn tiled(&self, name: &'static str, inputs: &[&TensorInfo], output: &TensorInfo, tile: Tile) -> Kernel {
        let m = rows_of(&inputs[0].shape) as u64;
        let k = last(&inputs[0].shape) as u64;
        let n = last(&output.shape) as u64;
        let vec4 = k.is_multiple_of(4) && n.is_multiple_of(4);
        let q = quant_b(inputs[1]);
        let decl = decl(tile, vec4, self.bias, self.act, self.residual, q.map(QuantB::form));
        let groups = [n.div_ceil(tile.bn as u64) as u32, m.div_ceil(tile.bm as u64) as u32, 1];
        gemm_kernel(name, decl, q, [m, n, k, k], groups)
    }

    fn split(&self, name: &'static str, inputs: &[&TensorInfo], output: &TensorInfo, splits: u32) -> Option<Kernel> {
        let m = rows_of(&inputs[0].shape) as u64;
        let k = last(&inputs[0].shape) as u64;
        let n = last(&output.shape) as u64;
        let (kc, parts) = split_plan(m, k, n, splits)?;
        let params = ReduceParams { m: m as u32, n: n as u32, splits: parts as u32, _pad: 0 };
        let reduce = Kernel::new(name, reduce_decl(self.bias, self.act, self.residual), params, grid((m * n / 4).div_ceil(ELEMENT_WG as u64)), 0.0);
        let q = quant_b(inputs[1]);
        let groups = [n.div_ceil(SMALL.bn as u64) as u32, m.div_ceil(SMALL.bm as u64) as u32, parts as u32];
        let mut first = gemm_kernel(name, split_decl(q.map(QuantB::form)), q, [m, n, k, kc], groups);
        first.finish = Some(Box::new(Finish { scratch: parts * m * n * 4, kernel: reduce }));
        Some(first)
    }
}

/// The flags that select an epilogue: bias, activation, residual.
pub(super) fn epilogue_flags(bias: bool, act: Activation, residual: bool) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if bias {
        flags.push("BIAS");
    }
    match act {
        Activation::None => {}
        Activation::Gelu => flags.push("GELU"),
        Activation::Tanh => flags.push("TANH"),
        Activation::QuickGelu => flags.push("QUICK_GELU"),
        Activation::GeluTanh => flags.push("GELU_TANH"),
    }
    if residual {
        flags.push("RESIDUAL");
    }
    flags
}

/// The epilogue's inputs after `a` and `b`: bias (a weight), residual (an activation).
pub(super) fn epilogue_bindings(bias: bool, residual: bool) -> Vec<Binding> {
    let mut v = Vec::new();
    if bias {
        v.push(Binding::weight(2, "bias"));
    }
    if residual {
        v.push(Binding::activation(2 + bias as usize, "residual"));
    }
    v
}

/// ` quant=BITS/GROUP` for a quantized B (tuning keys), else nothing.
pub(super) fn quant_key(b: &TensorInfo) -> String {
    b.quant.map(|q| format!(" quant={}/{}", q.bits, q.group)).unwrap_or_default()
}

/// A GEMM variant of `tile`: vec4 or scalar access, then `store` flags (the epilogue, or how C is
/// stored), then the tile's own (prefetch, unrolled block); with `quant` (bits, f16 scales), B is
/// read quantized.
pub(super) fn gemm_variant(tile: Tile, vec4: bool, store: &[&'static str], quant: Option<(u32, bool)>) -> ShaderVariant {
    let mut flags = Vec::new();
    if vec4 {
        flags.push("VEC4");
    }
    flags.extend(store);
    if tile.prefetch {
        flags.push("PREFETCH");
    }
    flags.extend(tile.unroll_flags());
    let mut consts = tile.consts().to_vec();
    if let Some((bits, f16)) = quant {
        flags.push("QUANT");
        if f16 {
            flags.push("QSCALE16");
        }
        consts.push(("QBITS", bits));
    }
    specialize(&["matmul", "gemm_load_b", "epilogue", "gemm"], &consts, &flags)
}

fn decl(tile: Tile, vec4: bool, bias: bool, act: Activation, residual: bool, quant: Option<(u32, bool)>) -> KernelDecl {
    let mut bindings = vec![Binding::output("out"), Binding::activation(0, "a"), Binding::weight(1, "b")];
    bindings.extend(epilogue_bindings(bias, residual));
    let shader = gemm_variant(tile, vec4, &epilogue_flags(bias, act, residual), quant);
    match quant {
        None => KernelDecl::new::<Params>(shader, bindings),
        Some(_) => KernelDecl::new::<QParams>(shader, bindings),
    }
}

/// The first half of a split-K GEMM: the small tile, vec4, writing f32 partial products to the
/// scratch.
fn split_decl(quant: Option<(u32, bool)>) -> KernelDecl {
    let bindings = vec![Binding::scratch("out", Access::ReadWrite), Binding::activation(0, "a"), Binding::weight(1, "b")];
    let shader = gemm_variant(SMALL, true, &["SPLITK"], quant);
    match quant {
        None => KernelDecl::new::<Params>(shader, bindings),
        Some(_) => KernelDecl::new::<QParams>(shader, bindings),
    }
}

/// The second half: sum the partial products, then the epilogue.
fn reduce_decl(bias: bool, act: Activation, residual: bool) -> KernelDecl {
    let mut bindings = vec![Binding::output("out"), Binding::scratch("partial", Access::Read)];
    bindings.extend(epilogue_bindings(bias, residual));
    let mut flags = vec!["VEC4"];
    flags.extend(epilogue_flags(bias, act, residual));
    let shader = specialize(&["splitk_reduce", "epilogue"], &[("WG", ELEMENT_WG)], &flags);
    KernelDecl::new::<ReduceParams>(shader, bindings)
}

/// K per range for `splits` ranges of the small tile, and the number of ranges that gives; None
/// where split-K does not apply (see [`SPLIT_MAX_TILES`], [`SPLIT_MIN_K`]; vec4 shapes only).
pub(crate) fn split_plan(m: u64, k: u64, n: u64, splits: u32) -> Option<(u64, u64)> {
    let bk = SMALL.bk as u64;
    if !k.is_multiple_of(4) || !n.is_multiple_of(4) {
        return None;
    }
    if m.div_ceil(SMALL.bm as u64) * n.div_ceil(SMALL.bn as u64) > SPLIT_MAX_TILES {
        return None;
    }
    let kc = k.div_ceil(splits as u64).div_ceil(bk) * bk;
    let parts = k.div_ceil(kc);
    (kc >= SPLIT_MIN_K && parts >= 2).then_some((kc, parts))
}

/// The forms of B a kernel variant is made for: float, or 8 or 4 bits with f32 or f16 scales.
pub(super) const QUANT_FORMS: [Option<(u32, bool)>; 5] = [None, Some((8, false)), Some((8, true)), Some((4, false)), Some((4, true))];

/// Every variant: each tile, access, epilogue and form of B.
pub(crate) fn decls() -> Vec<KernelDecl> {
    let mut v = Vec::new();
    for quant in QUANT_FORMS {
        for (_, tile) in TILES {
            for act in Activation::ALL {
                for i in 0..8 {
                    v.push(decl(tile, i & 1 != 0, i & 2 != 0, act, i & 4 != 0, quant));
                }
            }
        }
        v.push(split_decl(quant));
    }
    for act in Activation::ALL {
        for i in 0..4 {
            v.push(reduce_decl(i & 1 != 0, act, i & 2 != 0));
        }
    }
    v
}


/// B on the CPU: f32 panels, quantized panels dequantized a panel at a time, or int8 panels for
/// int8 arithmetic.
pub(super) enum CpuB {
    F32(std::sync::Arc<crate::cpu::gemm::PackedB>),
    Quant(std::sync::Arc<crate::cpu::gemm_quant::QuantPanels>),
    Int8(std::sync::Arc<crate::cpu::gemm_int8::Int8Panels>),
}

pub(super) fn cpu_b(cpu: &Cpu, w: &HostWeight) -> Result<CpuB> {
    Ok(match (w.quant(), w.int8()) {
        (Some(q), _) => CpuB::Quant(q.clone()),
        (None, Some(p)) => CpuB::Int8(p.clone()),
        (None, None) => CpuB::F32(w.packed(crate::cpu::gemm::tile(cpu.isa()).1)?),
    })
}

/// A matrix product on the CPU (B packed for the instruction set). With `heads`, the product
/// goes to the scratch and is written head-major, `(3, B, heads, T, dh)`, as the GPU's
/// head-major projection does.
pub(super) struct MatMulCpu {
    pub(super) m: usize,
    pub(super) n: usize,
    /// On a split backend, the columns `[c0, c1)` this rank computes (B holds only those).
    pub(super) cols: Option<(usize, usize)>,
    /// Or the rows `[k0, k1)` of B this rank holds, of a depth `K`, and whether this is the rank
    /// that adds the bias and the residual: a partial product, which the ranks sum.
    pub(super) depth: Option<((usize, usize), usize, bool)>,
    /// Or this rank's head columns `[c0, c1)` of each third of a fused query-key-value output of
    /// `3 d` columns, and the head dim (B holds the three side by side).
    pub(super) thirds: Option<(usize, usize, usize, usize)>,
    /// The split's unit of columns ([`Cpu::column_unit`]).
    pub(super) unit: usize,
    pub(super) b: CpuB,
    pub(super) bias: bool,
    pub(super) act: Activation,
    pub(super) residual: Option<usize>,
    /// (batch, tokens, heads) for the head-major layout.
    pub(super) heads: Option<(usize, usize, usize)>,
}

impl CpuKernel for MatMulCpu {
    fn name(&self) -> &'static str {
        match self.b {
            CpuB::F32(_) => "gemm",
            CpuB::Quant(_) => "gemm-quant",
            CpuB::Int8(_) => "gemm-int8",
        }
    }

    /// The head-major product's flat copy, then the int8 product's quantized activations.
    fn scratch(&self) -> usize {
        let int8 = match &self.b {
            CpuB::Int8(b) => crate::cpu::gemm_int8::scratch_len(self.m, b),
            _ => 0,
        };
        if let Some((c0, c1, _, _)) = self.thirds {
            return (self.m * 3 * (c1 - c0)).next_multiple_of(16) + int8;
        }
        if self.heads.is_some() { self.m * self.n } else { 0 }.next_multiple_of(16) + int8
    }

    fn split(&self) -> Option<crate::cpu::Shared> {
        if self.depth.is_some() {
            return Some(crate::cpu::Shared::Sum);
        }
        if let Some((_, _, d, dh)) = self.thirds {
            // Taken as rows of d (three per token), this rank's are whole heads of each.
            return Some(crate::cpu::Shared::Columns { width: d, unit: dh });
        }
        self.cols.map(|_| crate::cpu::Shared::Columns { width: self.n, unit: self.unit })
    }

    fn reads_columns(&self) -> Option<(usize, usize, (usize, usize))> {
        self.depth.map(|(r, k, _)| (0, k, r))
    }

    fn run(&self, cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], scratch: &mut [f32]) {
        use crate::cpu::gemm::{gemm, Epilogue, Gemm};
        if let Some((c0, c1, d, _)) = self.thirds {
            // This rank's heads of Q, K and V as one product into the scratch, then each third to
            // its columns, with its bias.
            let w = c1 - c0;
            let (flat, int8_scratch) = scratch.split_at_mut((self.m * 3 * w).next_multiple_of(16));
            let flat = &mut flat[..self.m * 3 * w];
            if w > 0 {
                match &self.b {
                    CpuB::F32(b) => gemm(cpu, &Gemm::new(self.m, ins[0], b.k, b, 3 * w), flat, &Epilogue::NONE),
                    CpuB::Quant(b) => crate::cpu::gemm_quant::gemm_quant(cpu, self.m, ins[0], b.k, b, flat, 3 * w, &Epilogue::NONE),
                    CpuB::Int8(b) => crate::cpu::gemm_int8::gemm_int8(cpu, self.m, ins[0], b.k, b, flat, 3 * w, &Epilogue::NONE, int8_scratch),
                }
            }
            for (r, src) in flat.chunks(3 * w.max(1)).enumerate().take(self.m) {
                for t in 0..3 {
                    let dst = &mut out[r * self.n + t * d + c0..r * self.n + t * d + c1];
                    dst.copy_from_slice(&src[t * w..(t + 1) * w]);
                    if self.bias {
                        dst.iter_mut().zip(&ins[2][t * d + c0..t * d + c1]).for_each(|(v, b)| *v += b);
                    }
                }
            }
            return;
        }
        if let Some(((k0, k1), k, first)) = self.depth {
            // This rank's rows of B against its columns of A: a partial product; the first rank
            // adds the bias and the residual.
            let epi = Epilogue { bias: (self.bias && first).then(|| ins[2]), act: self.act.cpu(), residual: self.residual.filter(|_| first).map(|i| (ins[i], self.n)), accumulate: false };
            let out = &mut out[..self.m * self.n];
            if k1 > k0 {
                if let CpuB::F32(b) = &self.b {
                    return gemm(cpu, &Gemm::new(self.m, &ins[0][k0..], k, b, self.n), out, &epi);
                }
            }
            // No rows here (or B not f32, which is never split so): the bias and residual alone.
            out.fill(0.0);
            if first {
                for (r, row) in out.chunks_mut(self.n).enumerate() {
                    if let Some(b) = epi.bias {
                        row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
                    }
                    if let Some((res, ld)) = epi.residual {
                        row.iter_mut().zip(&res[r * ld..r * ld + self.n]).for_each(|(v, x)| *v += x);
                    }
                }
            }
            return;
        }
        if let Some((c0, c1)) = self.cols {
            // This rank's columns: B holds them alone; C, the bias and the residual are offset.
            if c1 == c0 || self.m == 0 {
                return;
            }
            let epi = Epilogue { bias: self.bias.then(|| &ins[2][c0..c1]), act: self.act.cpu(), residual: self.residual.map(|i| (&ins[i][c0..], self.n)), accumulate: false };
            let c = &mut out[c0..];
            return match &self.b {
                CpuB::F32(b) => gemm(cpu, &Gemm::new(self.m, ins[0], b.k, b, self.n), c, &epi),
                CpuB::Quant(b) => crate::cpu::gemm_quant::gemm_quant(cpu, self.m, ins[0], b.k, b, c, self.n, &epi),
                CpuB::Int8(b) => crate::cpu::gemm_int8::gemm_int8(cpu, self.m, ins[0], b.k, b, c, self.n, &epi, scratch),
            };
        }
        let epi = Epilogue { bias: self.bias.then(|| ins[2]), act: self.act.cpu(), residual: self.residual.map(|i| (ins[i], self.n)), accumulate: false };
        let flat_len = if self.heads.is_some() { (self.m * self.n).next_multiple_of(16) } else { 0 };
        let (flat, int8_scratch) = scratch.split_at_mut(flat_len.min(scratch.len()));
        let product = |c: &mut [f32], int8_scratch: &mut [f32]| match &self.b {
            CpuB::F32(b) => gemm(cpu, &Gemm::new(self.m, ins[0], b.k, b, self.n), c, &epi),
            CpuB::Quant(b) => crate::cpu::gemm_quant::gemm_quant(cpu, self.m, ins[0], b.k, b, c, self.n, &epi),
            CpuB::Int8(b) => crate::cpu::gemm_int8::gemm_int8(cpu, self.m, ins[0], b.k, b, c, self.n, &epi, int8_scratch),
        };
        let Some((batch, tokens, heads)) = self.heads else {
            return product(out, int8_scratch);
        };
        let flat = &mut flat[..self.m * self.n];
        product(flat, int8_scratch);
        let d = self.n / 3;
        let dh = d / heads;
        for (row, r) in flat.chunks(self.n).enumerate() {
            let (b, t) = (row / tokens, row % tokens);
            for part in 0..3 {
                for h in 0..heads {
                    let dst = (((part * batch + b) * heads + h) * tokens + t) * dh;
                    out[dst..dst + dh].copy_from_slice(&r[part * d + h * dh..part * d + (h + 1) * dh]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn gemm_tiles_follow_the_measurements() {
        use super::heuristic_tile as t;
        use wgpu::DeviceType::{Cpu, DiscreteGpu, IntegratedGpu};
        // CPU adapters: the large tile, unrolled, everywhere.
        assert_eq!(t(Cpu, 197, 768), Some("128x128-unrolled"));
        // H200: large only for batch-64 qkv / fc1 and 4096^2 outputs.
        assert_eq!(t(DiscreteGpu, 12608, 2304), Some("128x128"));
        assert_eq!(t(DiscreteGpu, 12608, 3072), Some("128x128"));
        assert_eq!(t(DiscreteGpu, 4096, 4096), Some("128x128"));
        assert_eq!(t(DiscreteGpu, 12608, 768), None);
        assert_eq!(t(DiscreteGpu, 197, 2304), None);
        assert_eq!(t(DiscreteGpu, 1024, 1024), None);
        // Unmeasured kinds keep the default.
        assert_eq!(t(IntegratedGpu, 12608, 3072), None);
        // Every name is one the op offers.
        for name in ["128x128-unrolled", "128x128"] {
            assert!(super::kernel_names().contains(&name));
        }
    }
}
