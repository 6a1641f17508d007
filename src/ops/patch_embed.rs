//! Patch embedding as an implicit GEMM over the image (no im2col buffer), with the prefix tokens
//! and position embeddings folded into the epilogue.

use super::shader::{specialize, ShaderVariant};
use super::{invalid, matmul::SMALL, pad_params, shape_err, Kernel};
use crate::error::Result;
use crate::graph::ir::TensorInfo;

pub(crate) fn output_shape(node: &str, inputs: &[&TensorInfo], patch: usize, prefix: usize) -> Result<Vec<usize>> {
    let (image, weight, bias, pos) = (inputs[0], inputs[1], inputs[2], inputs[3]);
    if image.shape.len() != 4 {
        return Err(shape_err(node, image, "[B, C, H, W]"));
    }
    let (b, c, h, w) = (image.shape[0], image.shape[1], image.shape[2], image.shape[3]);
    if patch == 0 || patch > h || patch > w {
        return Err(invalid(node, format!("patch size {patch} does not fit a {h}x{w} image")));
    }
    let k = c * patch * patch;
    if weight.shape.len() != 2 || weight.shape[0] != k {
        return Err(shape_err(node, weight, format!("[{k}, D] (channels x patch x patch = {c} x {patch} x {patch})")));
    }
    let d = weight.shape[1];
    if bias.shape != [d] {
        return Err(shape_err(node, bias, format!("[{d}]")));
    }
    let tokens = prefix + (h / patch) * (w / patch);
    if pos.shape != [tokens, d] {
        return Err(shape_err(
            node,
            pos,
            format!("[{tokens}, {d}] ({prefix} prefix + {}x{} patches)", h / patch, w / patch),
        ));
    }
    if prefix > 0 && inputs[4].shape != [prefix, d] {
        return Err(shape_err(node, inputs[4], format!("[{prefix}, {d}]")));
    }
    Ok(vec![b, tokens, d])
}

fn variant(prefix: bool) -> ShaderVariant {
    let flags: &[&str] = if prefix { &["PREFIX"] } else { &[] };
    specialize(&["patch_embed", "gemm"], &SMALL.consts(), flags)
}

pub(crate) fn kernel(inputs: &[&TensorInfo], output: &TensorInfo, patch: usize, prefix: usize) -> Kernel {
    let s = &inputs[0].shape;
    let (c, h, w) = (s[1] as u64, s[2] as u64, s[3] as u64);
    let (b, tokens, d) = (output.shape[0] as u64, output.shape[1] as u64, output.shape[2] as u64);
    let p = patch as u64;
    let m = b * tokens;
    let k = c * p * p;
    let (bm, bn) = (SMALL.bm, SMALL.bn);
    let mut input_bindings = vec![2, 3, 4, 5];
    if prefix > 0 {
        input_bindings.push(6);
    }
    let patches = b * (tokens - prefix as u64);
    Kernel {
        shader: variant(prefix > 0),
        params: pad_params(vec![
            m as u32, d as u32, k as u32, c as u32, h as u32, w as u32, p as u32, (w / p) as u32,
            tokens as u32, prefix as u32,
        ]),
        workgroups: [d.div_ceil(bn as u64) as u32, m.div_ceil(bm as u64) as u32, 1],
        input_bindings,
        flops: 2.0 * (patches * k * d) as f64,
        finish: None,
    }
}

pub(crate) fn variants() -> Vec<ShaderVariant> {
    vec![variant(false), variant(true)]
}
