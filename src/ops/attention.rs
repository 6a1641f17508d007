//! Fused multi-head attention (online softmax, no score matrix in memory).

use super::shader::{specialize, ShaderVariant};
use super::{invalid, pad_params, shape_err, Kernel};
use crate::error::Result;
use crate::graph::ir::TensorInfo;

/// Largest head dim the kernel is specialized for.
pub const MAX_HEAD_DIM: usize = 128;

/// Queries per workgroup (one per invocation): 32 keeps more workgroups in flight at batch 1.
const BQ: u32 = 32;

/// Keys per workgroup tile: K and V tiles together stay within 16 KiB of workgroup memory
/// (the WebGPU minimum).
fn kv_tile(head_dim: u32) -> u32 {
    (2048 / head_dim).clamp(1, 64)
}

pub(crate) fn output_shape(node: &str, inputs: &[&TensorInfo], heads: usize, scale: f32) -> Result<Vec<usize>> {
    let qkv = inputs[0];
    if qkv.shape.len() != 3 || !qkv.shape[2].is_multiple_of(3) {
        return Err(shape_err(node, qkv, "[B, T, 3 * D]"));
    }
    let d = qkv.shape[2] / 3;
    if heads == 0 || !d.is_multiple_of(heads) {
        return Err(invalid(node, format!("{heads} heads do not divide the model dim {d}")));
    }
    if d / heads > MAX_HEAD_DIM {
        return Err(invalid(node, format!("head dim {} is over the maximum {MAX_HEAD_DIM}", d / heads)));
    }
    if !scale.is_finite() {
        return Err(invalid(node, format!("scale {scale} is not finite")));
    }
    Ok(vec![qkv.shape[0], qkv.shape[1], d])
}

/// The vec4 variant needs the head dim (and so every q/k/v offset) to be a multiple of 4.
fn variant(head_dim: u32) -> ShaderVariant {
    let flags: &[&str] = if head_dim.is_multiple_of(4) { &["VEC4"] } else { &[] };
    specialize(&["attention"], &[("DH", head_dim), ("BQ", BQ), ("BKV", kv_tile(head_dim))], flags)
}

/// The split variants: (name, G invocations per query, queries per workgroup, partial scores
/// summed with subgroup shuffles); all take 16 keys per tile. The subgroup ones run natively only,
/// on adapters whose subgroups hold at least G invocations.
const SPLITS: [(&str, u32, u32, bool); 4] =
    [("split-4", 4, 16, false), ("split-8", 8, 8, false), ("split-4-subgroup", 4, 16, true), ("split-8-subgroup", 8, 8, true)];
const BKVS: u32 = 16;

/// Whether a split kernel applies: vec4 head dims whose vec4 count `g` divides, with K, V and the
/// partial scores within 16 KiB of workgroup memory.
fn split_fits(head_dim: u32, g: u32, bq: u32) -> bool {
    head_dim.is_multiple_of(4) && (head_dim / 4).is_multiple_of(g) && 2 * BKVS * head_dim * 4 + bq * g * BKVS * 4 <= 16384
}

fn split_variant(head_dim: u32, g: u32, bq: u32, subgroup: bool) -> ShaderVariant {
    let flags: &[&str] = if subgroup { &["SUBGROUP"] } else { &[] };
    specialize(&["attention_split"], &[("DH", head_dim), ("G", g), ("BQ", bq), ("BKV", BKVS)], flags)
}

/// The register-tiled kernels: (name, BQ queries per workgroup, CG invocations per query group;
/// BKV = 4 CG keys per tile). See attention_tiled.wgsl.
const TILED: [(&str, u32, u32); 3] = [("tiled-32x32", 32, 8), ("tiled-64x16", 64, 4), ("tiled-64x32", 64, 8)];

/// Workgroup memory of a tiled kernel, in bytes: the Q tile, the K / probability tile, the V tile
/// and the row maxima.
fn tiled_storage(head_dim: u32, bq: u32, cg: u32) -> u32 {
    let bkv = 4 * cg;
    let kp = (head_dim * cg).max(bkv * bq / 4) * 16;
    head_dim * bq * 4 + kp + bkv * head_dim * 4 + bq * cg * 4
}

/// Whether a tiled kernel applies: head dims that split in CG slices of whole vec4s.
fn tiled_fits(head_dim: u32, cg: u32) -> bool {
    head_dim.is_multiple_of(4 * cg)
}

fn tiled_variant(head_dim: u32, bq: u32, cg: u32) -> ShaderVariant {
    let bkv = 4 * cg;
    let kp4 = (head_dim * cg).max(bkv * bq / 4);
    let v = specialize(&["attention_tiled"], &[("DH", head_dim), ("BQ", bq), ("BKV", bkv), ("CG", cg), ("KP4", kp4)], &[]);
    let bytes = tiled_storage(head_dim, bq, cg);
    if bytes > 16384 {
        v.with_workgroup_storage(bytes)
    } else {
        v
    }
}

/// Every kernel name an attention op may choose (the default first).
pub(crate) fn kernel_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("query-per-invocation").chain(SPLITS.iter().map(|s| s.0)).chain(TILED.iter().map(|t| t.0))
}

/// The default kernel and, where they apply, the split and tiled ones, for the autotuner.
pub(crate) fn candidates(inputs: &[&TensorInfo], heads: usize, scale: f32) -> (String, Vec<(&'static str, Kernel)>) {
    let s = &inputs[0].shape;
    let (b, t, d) = (s[0] as u64, s[1] as u64, (s[2] / 3) as u64);
    let dh = (d / heads as u64) as u32;
    let key = format!("attention b={b} t={t} heads={heads} dh={dh}");
    let mut out = vec![("query-per-invocation", kernel(inputs, heads, scale))];
    for (name, g, bq, subgroup) in SPLITS {
        if split_fits(dh, g, bq) {
            out.push((name, kernel_with(inputs, heads, scale, split_variant(dh, g, bq, subgroup), bq)));
        }
    }
    for (name, bq, cg) in TILED {
        if tiled_fits(dh, cg) {
            out.push((name, kernel_with(inputs, heads, scale, tiled_variant(dh, bq, cg), bq)));
        }
    }
    (key, out)
}

pub(crate) fn kernel(inputs: &[&TensorInfo], heads: usize, scale: f32) -> Kernel {
    let dh = inputs[0].shape[2] / 3 / heads;
    kernel_with(inputs, heads, scale, variant(dh as u32), BQ)
}

/// Either kernel: same uniforms and bindings, `queries` per workgroup.
fn kernel_with(inputs: &[&TensorInfo], heads: usize, scale: f32, shader: ShaderVariant, queries: u32) -> Kernel {
    let s = &inputs[0].shape;
    let (b, t, d) = (s[0] as u64, s[1] as u64, (s[2] / 3) as u64);
    let dh = d / heads as u64;
    Kernel {
        shader,
        params: pad_params(vec![t as u32, heads as u32, scale.to_bits()]),
        workgroups: [t.div_ceil(queries as u64) as u32, heads as u32, b as u32],
        input_bindings: vec![2],
        flops: 4.0 * (b * heads as u64 * t * t * dh) as f64,
        finish: None,
    }
}

pub(crate) fn variants() -> Vec<ShaderVariant> {
    let mut v: Vec<ShaderVariant> = (1..=MAX_HEAD_DIM as u32).map(variant).collect();
    for (_, g, bq, subgroup) in SPLITS {
        v.extend((1..=MAX_HEAD_DIM as u32).filter(|&d| split_fits(d, g, bq)).map(|d| split_variant(d, g, bq, subgroup)));
    }
    for (_, bq, cg) in TILED {
        v.extend((1..=MAX_HEAD_DIM as u32).filter(|&d| tiled_fits(d, cg)).map(|d| tiled_variant(d, bq, cg)));
    }
    v
}
