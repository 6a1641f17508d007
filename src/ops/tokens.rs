//! Token selection (slice, mean-pool) and last-dim concatenation.

use super::shader::{specialize, ShaderVariant};
use super::{grid, invalid, last, pad_params, rows_of, shape_err, Kernel, ELEMENT_WG};
use crate::error::Result;
use crate::graph::ir::TensorInfo;

pub(crate) fn output_shape(
    node: &str,
    inputs: &[&TensorInfo],
    start: usize,
    count: usize,
    mean: bool,
) -> Result<Vec<usize>> {
    let x = inputs[0];
    if x.shape.len() != 3 {
        return Err(shape_err(node, x, "[B, T, D]"));
    }
    let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2]);
    if count == 0 || start.checked_add(count).is_none_or(|end| end > t) {
        return Err(invalid(node, format!("tokens {start}..{} are not within the {t} tokens", start.saturating_add(count))));
    }
    Ok(if mean { vec![b, d] } else { vec![b, count, d] })
}

fn variant(flag: &'static str) -> ShaderVariant {
    specialize(&["tokens"], &[("WG", ELEMENT_WG)], &[flag])
}

pub(crate) fn kernel(inputs: &[&TensorInfo], output: &TensorInfo, start: usize, count: usize, mean: bool) -> Kernel {
    let s = &inputs[0].shape;
    let n = output.numel() as u64;
    Kernel {
        shader: variant(if mean { "MEAN" } else { "SLICE" }),
        params: pad_params(vec![s[0] as u32, s[1] as u32, s[2] as u32, start as u32, count as u32]),
        workgroups: grid(n.div_ceil(ELEMENT_WG as u64)),
        input_bindings: vec![2],
        flops: if mean { (n * count as u64) as f64 } else { 0.0 },
        finish: None,
    }
}

pub(crate) fn concat_shape(node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
    let (a, b) = (inputs[0], inputs[1]);
    let lead = &a.shape[..a.shape.len() - 1];
    if b.shape.len() != a.shape.len() || &b.shape[..b.shape.len() - 1] != lead {
        let mut want: Vec<String> = lead.iter().map(|d| d.to_string()).collect();
        want.push("D2".into());
        return Err(shape_err(node, b, format!("[{}]", want.join(", "))));
    }
    let mut out = a.shape.clone();
    *out.last_mut().unwrap_or(&mut 0) += last(&b.shape);
    Ok(out)
}

fn concat_variant() -> ShaderVariant {
    specialize(&["concat"], &[("WG", ELEMENT_WG)], &[])
}

pub(crate) fn concat_kernel(inputs: &[&TensorInfo], output: &TensorInfo) -> Kernel {
    let n = output.numel() as u64;
    Kernel {
        shader: concat_variant(),
        params: pad_params(vec![
            rows_of(&inputs[0].shape) as u32,
            last(&inputs[0].shape) as u32,
            last(&inputs[1].shape) as u32,
        ]),
        workgroups: grid(n.div_ceil(ELEMENT_WG as u64)),
        input_bindings: vec![2, 3],
        flops: 0.0,
        finish: None,
    }
}

pub(crate) fn variants() -> Vec<ShaderVariant> {
    vec![variant("SLICE"), variant("MEAN"), concat_variant()]
}
