//! Attention probabilities of a few query tokens (CLS attention maps), for inspection.

use super::shader::{specialize, ShaderVariant};
use super::{attention, invalid, pad_params, Kernel, ROW_WORKGROUPS};
use crate::error::Result;
use crate::graph::ir::TensorInfo;

pub(crate) fn output_shape(
    node: &str,
    inputs: &[&TensorInfo],
    heads: usize,
    scale: f32,
    queries: usize,
    first_key: usize,
) -> Result<Vec<usize>> {
    let s = attention::output_shape(node, inputs, heads, scale)?;
    let t = s[1];
    if queries == 0 || queries > t || first_key >= t {
        return Err(invalid(node, format!("queries 0..{queries} and keys {first_key}.. must lie within the {t} tokens")));
    }
    Ok(vec![s[0], heads, queries, t - first_key])
}

fn variant(wg: u32) -> ShaderVariant {
    specialize(&["attention_probs", "reduce"], &[("WG", wg)], &[])
}

pub(crate) fn kernel(inputs: &[&TensorInfo], heads: usize, scale: f32, queries: usize, first_key: usize) -> Kernel {
    let l = attention::QkvLayout::of(&inputs[0].shape, heads);
    let (b, t, dh) = (l.b, l.t, l.dh);
    let mut params = vec![t as u32, heads as u32, scale.to_bits(), first_key as u32, queries as u32, dh as u32];
    params.extend(&l.words(1)[..4]);
    Kernel {
        shader: variant(super::row_workgroup(t as usize)),
        params: pad_params(params),
        workgroups: [queries as u32, heads as u32, b as u32],
        input_bindings: vec![2],
        flops: 6.0 * (b * heads as u64 * queries as u64 * t * dh) as f64,
        finish: None,
    }
}

pub(crate) fn variants() -> Vec<ShaderVariant> {
    ROW_WORKGROUPS.iter().map(|&wg| variant(wg)).collect()
}
