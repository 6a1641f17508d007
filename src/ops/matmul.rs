//! Tiled matrix multiply with a fused epilogue (bias, exact GELU, residual).

use super::shader::{specialize, ShaderVariant};
use super::{grid, last, pad_params, rows_of, shape_err, Activation, Finish, Kernel, ELEMENT_WG};
use crate::error::Result;
use crate::graph::ir::{fmt_shape, TensorInfo};

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
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn kernel_names() -> impl Iterator<Item = &'static str> {
    TILES.iter().map(|(n, _)| *n).chain(SPLITS.iter().map(|(n, _)| *n))
}

pub(crate) fn output_shape(node: &str, inputs: &[&TensorInfo], bias: bool, residual: bool) -> Result<Vec<usize>> {
    let (a, b) = (inputs[0], inputs[1]);
    let k = last(&a.shape);
    if b.shape.len() != 2 || b.shape[0] != k {
        return Err(shape_err(node, b, format!("[{k}, N] (K = {k} from `{}`)", a.name)));
    }
    let n = b.shape[1];
    let mut out = a.shape[..a.shape.len() - 1].to_vec();
    out.push(n);
    if bias && inputs[2].shape != [n] {
        return Err(shape_err(node, inputs[2], format!("[{n}]")));
    }
    if residual {
        let r = inputs[2 + bias as usize];
        if r.shape != out {
            return Err(shape_err(node, r, fmt_shape(&out)));
        }
    }
    Ok(out)
}

/// The flags that select an epilogue: bias, activation, residual.
fn epilogue_flags(bias: bool, act: Activation, residual: bool) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if bias {
        flags.push("BIAS");
    }
    match act {
        Activation::None => {}
        Activation::Gelu => flags.push("GELU"),
        Activation::Tanh => flags.push("TANH"),
    }
    if residual {
        flags.push("RESIDUAL");
    }
    flags
}

/// A GEMM variant of `tile`: vec4 or scalar access, then `store` flags (the epilogue, or how C is
/// stored), then the tile's own (prefetch, unrolled block).
fn gemm_variant(tile: Tile, vec4: bool, store: &[&'static str]) -> ShaderVariant {
    let mut flags = Vec::new();
    if vec4 {
        flags.push("VEC4");
    }
    flags.extend(store);
    if tile.prefetch {
        flags.push("PREFETCH");
    }
    flags.extend(tile.unroll_flags());
    // The vec4 store goes through epilogue.wgsl; the scalar one applies its epilogue per element.
    let parts: &[&'static str] = if vec4 { &["matmul", "epilogue", "gemm"] } else { &["matmul", "gemm"] };
    specialize(parts, &tile.consts(), &flags)
}

fn variant(tile: Tile, vec4: bool, bias: bool, act: Activation, residual: bool) -> ShaderVariant {
    gemm_variant(tile, vec4, &epilogue_flags(bias, act, residual))
}

/// The head-major QKV projection: vec4, bias or not, no activation or residual.
fn heads_variant(tile: Tile, bias: bool) -> ShaderVariant {
    let mut store = epilogue_flags(bias, Activation::None, false);
    store.push("HEADS");
    gemm_variant(tile, true, &store)
}

/// `a (B, T, K) x b (K, 3*D) [+ bias (3*D)]` written as `(3, B, heads, T, D / heads)`.
pub(crate) fn heads_output_shape(node: &str, inputs: &[&TensorInfo], heads: usize, bias: bool) -> Result<Vec<usize>> {
    let (a, b) = (inputs[0], inputs[1]);
    if a.shape.len() != 3 {
        return Err(shape_err(node, a, "[B, T, K]"));
    }
    let k = a.shape[2];
    if b.shape.len() != 2 || b.shape[0] != k || !b.shape[1].is_multiple_of(3) {
        return Err(shape_err(node, b, format!("[{k}, 3 * D] (K = {k} from `{}`)", a.name)));
    }
    let n = b.shape[1];
    let d = n / 3;
    if heads == 0 || !d.is_multiple_of(heads) {
        return Err(super::invalid(node, format!("{heads} heads do not divide the model dim {d}")));
    }
    let dh = d / heads;
    if !dh.is_multiple_of(4) || !k.is_multiple_of(4) {
        return Err(super::invalid(node, format!("a head-major projection needs K ({k}) and the head dim ({dh}) to be multiples of 4")));
    }
    if bias && inputs[2].shape != [n] {
        return Err(shape_err(node, inputs[2], format!("[{n}]")));
    }
    Ok(vec![3, a.shape[0], heads, a.shape[1], dh])
}

/// Every tile of [`TILES`] for the head-major projection (no split-K: its reduction writes
/// token-major).
pub(crate) fn heads_candidates(inputs: &[&TensorInfo], heads: usize, bias: bool) -> (String, Vec<(&'static str, Kernel)>) {
    let (m, k, n) = (rows_of(&inputs[0].shape), last(&inputs[0].shape), inputs[1].shape[1]);
    let key = format!("matmul {m}x{k}x{n} bias={bias} heads={heads}");
    (key, TILES.iter().map(|&(name, tile)| (name, heads_kernel(inputs, heads, bias, tile))).collect())
}

pub(crate) fn heads_kernel(inputs: &[&TensorInfo], heads: usize, bias: bool, tile: Tile) -> Kernel {
    let a = &inputs[0].shape;
    let (tokens, k) = (a[1] as u64, a[2] as u64);
    let m = rows_of(a) as u64;
    let n = inputs[1].shape[1] as u64;
    let dh = n / 3 / heads as u64;
    let mut input_bindings = vec![2, 3];
    if bias {
        input_bindings.push(4);
    }
    Kernel {
        shader: heads_variant(tile, bias),
        params: pad_params(vec![m as u32, n as u32, k as u32, k as u32, tokens as u32, dh as u32]),
        workgroups: [n.div_ceil(tile.bn as u64) as u32, m.div_ceil(tile.bm as u64) as u32, 1],
        input_bindings,
        flops: 2.0 * (m * n * k) as f64,
        finish: None,
    }
}

/// The first half of a split-K GEMM: the small tile, vec4, writing f32 partial products.
fn split_variant() -> ShaderVariant {
    gemm_variant(SMALL, true, &["SPLITK"])
}

/// The second half: sum the partial products, then the epilogue.
fn reduce_variant(bias: bool, act: Activation, residual: bool) -> ShaderVariant {
    specialize(&["splitk_reduce", "epilogue"], &[("WG", ELEMENT_WG)], &epilogue_flags(bias, act, residual))
}

/// The op's own default: the small tile. Adapters may prefer another (`Gpu::heuristic_kernel`,
/// `TESSERA_GEMM_TILE`), and the autotuner times all of [`TILES`].
pub(crate) fn kernel(inputs: &[&TensorInfo], output: &TensorInfo, bias: bool, act: Activation, residual: bool) -> Kernel {
    kernel_with(inputs, output, bias, act, residual, SMALL)
}

/// One kernel per tile of [`TILES`] (the default first), for the autotuner: a key naming the
/// shape and epilogue (not the tile), and each tile's name with its kernel.
pub(crate) fn candidates(inputs: &[&TensorInfo], output: &TensorInfo, bias: bool, act: Activation, residual: bool) -> (String, Vec<(&'static str, Kernel)>) {
    let m = rows_of(&inputs[0].shape);
    let k = last(&inputs[0].shape);
    let n = last(&output.shape);
    let key = format!("matmul {m}x{k}x{n} bias={bias} act={act:?} residual={residual}");
    let mut out: Vec<(&'static str, Kernel)> =
        TILES.iter().map(|&(name, tile)| (name, kernel_with(inputs, output, bias, act, residual, tile))).collect();
    for (name, splits) in SPLITS {
        if let Some(k) = split_kernel(inputs, output, bias, act, residual, splits) {
            out.push((name, k));
        }
    }
    (key, out)
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

fn split_kernel(inputs: &[&TensorInfo], output: &TensorInfo, bias: bool, act: Activation, residual: bool, splits: u32) -> Option<Kernel> {
    let m = rows_of(&inputs[0].shape) as u64;
    let k = last(&inputs[0].shape) as u64;
    let n = last(&output.shape) as u64;
    let (kc, parts) = split_plan(m, k, n, splits)?;
    let mut input_bindings = vec![0, 0];
    if bias {
        input_bindings.push(4);
    }
    if residual {
        input_bindings.push(5);
    }
    let reduce = Kernel {
        shader: reduce_variant(bias, act, residual),
        params: pad_params(vec![m as u32, n as u32, parts as u32]),
        workgroups: grid((m * n / 4).div_ceil(ELEMENT_WG as u64)),
        input_bindings,
        flops: 0.0,
        finish: None,
    };
    Some(Kernel {
        shader: split_variant(),
        params: pad_params(vec![m as u32, n as u32, k as u32, kc as u32]),
        workgroups: [n.div_ceil(SMALL.bn as u64) as u32, m.div_ceil(SMALL.bm as u64) as u32, parts as u32],
        input_bindings: vec![2, 3],
        flops: 2.0 * (m * n * k) as f64,
        finish: Some(Box::new(Finish { scratch: parts * m * n * 4, kernel: reduce })),
    })
}

fn kernel_with(inputs: &[&TensorInfo], output: &TensorInfo, bias: bool, act: Activation, residual: bool, tile: Tile) -> Kernel {
    let m = rows_of(&inputs[0].shape) as u64;
    let k = last(&inputs[0].shape) as u64;
    let n = last(&output.shape) as u64;
    let vec4 = k.is_multiple_of(4) && n.is_multiple_of(4);
    let mut input_bindings = vec![2, 3];
    if bias {
        input_bindings.push(4);
    }
    if residual {
        input_bindings.push(5);
    }
    Kernel {
        shader: variant(tile, vec4, bias, act, residual),
        params: pad_params(vec![m as u32, n as u32, k as u32, k as u32]),
        workgroups: [n.div_ceil(tile.bn as u64) as u32, m.div_ceil(tile.bm as u64) as u32, 1],
        input_bindings,
        flops: 2.0 * (m * n * k) as f64,
        finish: None,
    }
}

pub(crate) fn variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    for (_, tile) in TILES {
        for act in [Activation::None, Activation::Gelu, Activation::Tanh] {
            for i in 0..8 {
                v.push(variant(tile, i & 1 != 0, i & 2 != 0, act, i & 4 != 0));
            }
        }
    }
    v.push(split_variant());
    for (_, tile) in TILES {
        v.push(heads_variant(tile, false));
        v.push(heads_variant(tile, true));
    }
    for act in [Activation::None, Activation::Gelu, Activation::Tanh] {
        for i in 0..4 {
            v.push(reduce_variant(i & 1 != 0, act, i & 2 != 0));
        }
    }
    v
}
