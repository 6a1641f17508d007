//! Layer normalization over the last dimension.

use super::shader::{specialize, ShaderVariant};
use super::{grid, invalid, last, pad_params, row_workgroup, rows_of, shape_err, Kernel, ROW_WORKGROUPS};
use crate::error::Result;
use crate::graph::ir::TensorInfo;

pub(crate) fn output_shape(node: &str, inputs: &[&TensorInfo], eps: f32) -> Result<Vec<usize>> {
    let c = last(&inputs[0].shape);
    for t in &inputs[1..] {
        if t.shape != [c] {
            return Err(shape_err(node, t, format!("[{c}]")));
        }
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(invalid(node, format!("epsilon {eps} must be finite and non-negative")));
    }
    Ok(inputs[0].shape.clone())
}

fn variant(wg: u32) -> ShaderVariant {
    specialize(&["layernorm", "reduce"], &[("WG", wg)], &[])
}

pub(crate) fn kernel(inputs: &[&TensorInfo], eps: f32) -> Kernel {
    let rows = rows_of(&inputs[0].shape) as u64;
    let cols = last(&inputs[0].shape);
    Kernel {
        shader: variant(row_workgroup(cols)),
        params: pad_params(vec![rows as u32, cols as u32, eps.to_bits()]),
        workgroups: grid(rows),
        input_bindings: vec![2, 3, 4],
        flops: 8.0 * (rows * cols as u64) as f64,
        finish: None,
    }
}

pub(crate) fn variants() -> Vec<ShaderVariant> {
    ROW_WORKGROUPS.iter().map(|&wg| variant(wg)).collect()
}
