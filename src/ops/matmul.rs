//! Tiled matrix multiply with a fused epilogue (bias, exact GELU, residual).

use super::shader::{specialize, ShaderVariant};
use super::{last, pad_params, rows_of, shape_err, Activation, Kernel};
use crate::error::Result;
use crate::graph::ir::{fmt_shape, TensorInfo};

/// Output tile rows, columns, K step and rows per invocation (4 columns each, as a vec4).
pub(crate) const TILE: (u32, u32, u32, u32) = (64, 64, 16, 4);

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

fn variant(vec4: bool, bias: bool, act: Activation, residual: bool) -> ShaderVariant {
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
    let (bm, bn, bk, tm) = TILE;
    specialize(&["matmul", "gemm"], &[("BM", bm), ("BN", bn), ("BK", bk), ("TM", tm)], &flags)
}

pub(crate) fn kernel(inputs: &[&TensorInfo], output: &TensorInfo, bias: bool, act: Activation, residual: bool) -> Kernel {
    let m = rows_of(&inputs[0].shape) as u64;
    let k = last(&inputs[0].shape) as u64;
    let n = last(&output.shape) as u64;
    let vec4 = k.is_multiple_of(4) && n.is_multiple_of(4);
    let (bm, bn, _, _) = TILE;
    let mut input_bindings = vec![2, 3];
    if bias {
        input_bindings.push(4);
    }
    if residual {
        input_bindings.push(5);
    }
    Kernel {
        shader: variant(vec4, bias, act, residual),
        params: pad_params(vec![m as u32, n as u32, k as u32]),
        workgroups: [n.div_ceil(bn as u64) as u32, m.div_ceil(bm as u64) as u32, 1],
        input_bindings,
        flops: 2.0 * (m * n * k) as f64,
    }
}

pub(crate) fn variants() -> Vec<ShaderVariant> {
    let mut v = Vec::new();
    for act in [Activation::None, Activation::Gelu, Activation::Tanh] {
        for i in 0..8 {
            v.push(variant(i & 1 != 0, i & 2 != 0, act, i & 4 != 0));
        }
    }
    v
}
