//! Element-wise add and per-channel scale.

use super::shader::{specialize, ShaderVariant};
use super::{grid, last, pad_params, shape_err, Kernel, Op, ELEMENT_WG};
use crate::error::Result;
use crate::graph::ir::{fmt_shape, TensorInfo};

pub(crate) fn output_shape(node: &str, inputs: &[&TensorInfo], op: &Op) -> Result<Vec<usize>> {
    let (a, b) = (inputs[0], inputs[1]);
    let ok = match op {
        Op::Add => a.shape == b.shape,
        _ => b.shape == [last(&a.shape)],
    };
    if !ok {
        let expected = match op {
            Op::Add => fmt_shape(&a.shape),
            _ => format!("[{}]", last(&a.shape)),
        };
        return Err(shape_err(node, b, expected));
    }
    Ok(a.shape.clone())
}

fn variant(flag: &'static str) -> ShaderVariant {
    specialize(&["elementwise"], &[("WG", ELEMENT_WG)], &[flag])
}

pub(crate) fn kernel(inputs: &[&TensorInfo], op: &Op) -> Kernel {
    let n = inputs[0].numel() as u64;
    let cols = last(&inputs[0].shape) as u32;
    Kernel {
        shader: variant(if *op == Op::Add { "ADD" } else { "MUL_ROW" }),
        params: pad_params(vec![n as u32, cols]),
        workgroups: grid(n.div_ceil(ELEMENT_WG as u64)),
        input_bindings: vec![2, 3],
        flops: n as f64,
        finish: None,
    }
}

pub(crate) fn variants() -> Vec<ShaderVariant> {
    vec![variant("ADD"), variant("MUL_ROW")]
}
