//! Tiled matrix multiply with a fused epilogue (bias, exact GELU, residual).

use super::shader::{specialize, ShaderVariant};
use super::{last, pad_params, rows_of, shape_err, Activation, Kernel};
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
}

impl Tile {
    pub(crate) fn consts(self) -> [(&'static str, u32); 5] {
        [("BM", self.bm), ("BN", self.bn), ("BK", self.bk), ("TM", self.tm), ("TN", self.tn)]
    }
}

/// 64x64 tiles of 4x4 blocks (256 invocations): enough workgroups for narrow shapes.
pub(crate) const SMALL: Tile = Tile { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, prefetch: false };
/// 128x128 tiles of 8x8 blocks (256 invocations): twice the arithmetic per loaded value, for
/// shapes with enough tiles to fill a GPU.
pub(crate) const LARGE: Tile = Tile { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8, prefetch: false };
/// 32x64 tiles of 2x4 blocks (256 invocations): twice as many workgroups as the small tile, for
/// the narrow batch-1 shapes (M = 197) that leave most of a large GPU idle.
pub(crate) const NARROW: Tile = Tile { bm: 32, bn: 64, bk: 16, tm: 2, tn: 4, prefetch: false };

/// 32x32 tiles of 2x4 blocks (128 invocations): four times the small tile's workgroups, for the
/// narrowest shapes (batch-1 projections with N = 768).
pub(crate) const TINY: Tile = Tile { bm: 32, bn: 32, bk: 16, tm: 2, tn: 4, prefetch: false };

/// The small and large tiles with the next K step prefetched into registers (global-load latency
/// hidden behind the arithmetic, at the cost of a few registers).
pub(crate) const SMALL_PREFETCH: Tile = Tile { prefetch: true, ..SMALL };
pub(crate) const LARGE_PREFETCH: Tile = Tile { prefetch: true, ..LARGE };

/// The tiles the autotuner times, by name; the first is the op's default.
pub(crate) const TILES: [(&str, Tile); 6] = [
    ("64x64", SMALL),
    ("128x128", LARGE),
    ("32x64", NARROW),
    ("32x32", TINY),
    ("64x64-prefetch", SMALL_PREFETCH),
    ("128x128-prefetch", LARGE_PREFETCH),
];

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

fn variant(tile: Tile, vec4: bool, bias: bool, act: Activation, residual: bool) -> ShaderVariant {
    let mut flags = Vec::new();
    if vec4 {
        flags.push("VEC4");
    }
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
    if tile.prefetch {
        flags.push("PREFETCH");
    }
    specialize(&["matmul", "gemm"], &tile.consts(), &flags)
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
    let out = TILES.iter().map(|&(name, tile)| (name, kernel_with(inputs, output, bias, act, residual, tile))).collect();
    (key, out)
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
        params: pad_params(vec![m as u32, n as u32, k as u32]),
        workgroups: [n.div_ceil(tile.bn as u64) as u32, m.div_ceil(tile.bm as u64) as u32, 1],
        input_bindings,
        flops: 2.0 * (m * n * k) as f64,
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
    v
}
