//! Softmax over the last dimension.

use super::shader::{specialize, ShaderVariant};
use super::{grid, last, pad_params, row_workgroup, rows_of, Kernel, ROW_WORKGROUPS};
use crate::graph::ir::TensorInfo;

fn variant(wg: u32) -> ShaderVariant {
    specialize(&["softmax", "reduce"], &[("WG", wg)], &[])
}

pub(crate) fn kernel(inputs: &[&TensorInfo]) -> Kernel {
    let rows = rows_of(&inputs[0].shape) as u64;
    let cols = last(&inputs[0].shape);
    Kernel {
        shader: variant(row_workgroup(cols)),
        params: pad_params(vec![rows as u32, cols as u32]),
        workgroups: grid(rows),
        input_bindings: vec![2],
        flops: 5.0 * (rows * cols as u64) as f64,
        finish: None,
    }
}

pub(crate) fn variants() -> Vec<ShaderVariant> {
    ROW_WORKGROUPS.iter().map(|&wg| variant(wg)).collect()
}
