//! Fused multi-head attention (online softmax, no score matrix in memory).

use super::shader::{specialize, ShaderVariant};
use super::{invalid, shape_err, uniforms, Binding, Kernel, KernelDecl, OpDef};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::TensorInfo;

uniforms!(Params { tokens: u32, heads: u32, scale: f32, batch_stride: u32, head_stride: u32, row_stride: u32, k_off: u32, v_off: u32 });

/// Largest head dim the kernel is specialized for.
pub const MAX_HEAD_DIM: usize = 128;

/// Queries per workgroup (one per invocation): 32 keeps more workgroups in flight at batch 1.
const BQ: u32 = 32;

/// Keys per workgroup tile: K and V tiles together stay within 16 KiB of workgroup memory
/// (the WebGPU minimum).
fn kv_tile(head_dim: u32) -> u32 {
    (2048 / head_dim).clamp(1, 64)
}

/// Where a qkv input keeps Q, K and V: Q of (batch b, head h, token t) at element
/// `b * batch + h * head + t * row`, K `k_off` and V `v_off` further on.
pub(crate) struct QkvLayout {
    pub b: u64,
    pub t: u64,
    pub heads: u64,
    pub dh: u64,
    pub batch: u64,
    pub head: u64,
    pub row: u64,
    pub k_off: u64,
    pub v_off: u64,
}

impl QkvLayout {
    /// Of a checked input: token-major `(B, T, 3*D)` (the fused projection's output) or head-major
    /// `(3, B, H, T, DH)` ([`crate::Op::MatMulHeads`]'s).
    pub(crate) fn of(shape: &[usize], heads: usize) -> QkvLayout {
        let s: Vec<u64> = shape.iter().map(|&v| v as u64).collect();
        let h = heads as u64;
        if s.len() == 5 {
            let (b, t, dh) = (s[1], s[3], s[4]);
            let part = b * h * t * dh;
            QkvLayout { b, t, heads: h, dh, batch: h * t * dh, head: t * dh, row: dh, k_off: part, v_off: 2 * part }
        } else {
            let (b, t, d) = (s[0], s[1], s[2] / 3);
            QkvLayout { b, t, heads: h, dh: d / h, batch: t * 3 * d, head: d / h, row: 3 * d, k_off: d, v_off: 2 * d }
        }
    }

    /// The CPU kernels' form (strides in elements).
    pub(crate) fn cpu(&self) -> crate::cpu::attention::Qkv {
        let u = |v: u64| v as usize;
        crate::cpu::attention::Qkv {
            b: u(self.b),
            t: u(self.t),
            heads: u(self.heads),
            dh: u(self.dh),
            batch: u(self.batch),
            head: u(self.head),
            row: u(self.row),
            k_off: u(self.k_off),
            v_off: u(self.v_off),
            causal: false,
        }
    }

    /// The strides as uniform words, in units of `unit` elements (4 for the vec4 kernels).
    pub(crate) fn words(&self, unit: u64) -> [u32; 5] {
        [self.batch, self.head, self.row, self.k_off, self.v_off].map(|v| (v / unit) as u32)
    }
}

/// The vec4 variant needs the head dim (and so every q/k/v offset) to be a multiple of 4.
fn variant(head_dim: u32) -> ShaderVariant {
    let flags: &[&str] = if head_dim.is_multiple_of(4) { &["VEC4"] } else { &[] };
    specialize(&["attention", "attention_kv"], &[("DH", head_dim), ("BQ", BQ), ("BKV", kv_tile(head_dim))], flags)
}

/// The default kernel with the causal mask.
fn causal_variant(head_dim: u32) -> ShaderVariant {
    let flags: &[&str] = if head_dim.is_multiple_of(4) { &["VEC4", "CAUSAL"] } else { &["CAUSAL"] };
    specialize(&["attention", "attention_kv"], &[("DH", head_dim), ("BQ", BQ), ("BKV", kv_tile(head_dim))], flags)
}

/// The default kernel over each batch item's first `lengths[b]` keys; one key fewer per tile, so
/// that the length shared through workgroup memory fits beside the tiles in 16 KiB.
fn masked_variant(head_dim: u32) -> ShaderVariant {
    let flags: &[&str] = if head_dim.is_multiple_of(4) { &["VEC4", "MASKED"] } else { &["MASKED"] };
    specialize(&["attention", "attention_kv"], &[("DH", head_dim), ("BQ", BQ), ("BKV", (kv_tile(head_dim) - 1).max(1))], flags)
}

/// The default kernel with proportional attention (each key's `log(size)` read from `sizes`).
fn sized_variant(head_dim: u32) -> ShaderVariant {
    let flags: &[&str] = if head_dim.is_multiple_of(4) { &["VEC4", "SIZED"] } else { &["SIZED"] };
    specialize(&["attention", "attention_kv"], &[("DH", head_dim), ("BQ", BQ), ("BKV", kv_tile(head_dim))], flags)
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
    specialize(&["attention_split", "attention_kv"], &[("DH", head_dim), ("G", g), ("BQ", bq), ("BKV", BKVS)], flags)
}

/// The register-tiled kernels: (name, BQ queries per workgroup, CG invocations per query group;
/// BKV = 4 CG keys per tile). See attention_tiled.wgsl.
const TILED: [(&str, u32, u32); 3] = [("tiled-32x32", 32, 8), ("tiled-64x16", 64, 4), ("tiled-64x32", 64, 8)];

/// vec4s of a tiled kernel's K / probability tile: K transposed (DH rows of BKV / 4 = CG), then
/// the probabilities (BKV = 4 CG rows of BQ / 4).
fn tiled_kp4(head_dim: u32, bq: u32, cg: u32) -> u32 {
    (head_dim * cg).max(cg * bq)
}

/// Workgroup memory of a tiled kernel, in bytes: the Q tile, the K / probability tile, the V tile
/// and the row maxima.
fn tiled_storage(head_dim: u32, bq: u32, cg: u32) -> u32 {
    head_dim * bq * 4 + tiled_kp4(head_dim, bq, cg) * 16 + 4 * cg * head_dim * 4 + bq * cg * 4
}

/// Whether a tiled kernel applies: head dims that split in CG slices of whole vec4s.
fn tiled_fits(head_dim: u32, cg: u32) -> bool {
    head_dim.is_multiple_of(4 * cg)
}

fn tiled_variant(head_dim: u32, bq: u32, cg: u32) -> ShaderVariant {
    let consts = [("DH", head_dim), ("BQ", bq), ("BKV", 4 * cg), ("CG", cg), ("KP4", tiled_kp4(head_dim, bq, cg))];
    let v = specialize(&["attention_tiled"], &consts, &[]);
    let bytes = tiled_storage(head_dim, bq, cg);
    if bytes > 16384 {
        v.with_workgroup_storage(bytes)
    } else {
        v
    }
}

/// Every kernel name an attention op may choose (the default first).
pub(crate) fn kernel_names() -> Vec<&'static str> {
    std::iter::once(DEFAULT).chain(SPLITS.iter().map(|s| s.0)).chain(TILED.iter().map(|t| t.0)).collect()
}

/// The default kernel's name.
const DEFAULT: &str = "query-per-invocation";

/// The measured attention kernel per adapter kind, where it is not the default: on CPU adapters
/// (lavapipe) the register-tiled kernel with 32 queries and 32 keys per tile (BENCHMARKS.md).
/// Not yet measured on GPUs.
pub(crate) fn heuristic_kernel(device: wgpu::DeviceType) -> Option<&'static str> {
    match device {
        wgpu::DeviceType::Cpu => Some("tiled-32x32"),
        _ => None,
    }
}

/// Multi-head self-attention on a fused `qkv`; `causal`: each query attends only to keys at or
/// before it (text encoders); `masked`: a second input, `lengths (B)`, gives each batch item's
/// keys (padded sequences: the keys past its length are skipped, neither loaded nor scored).
pub(crate) struct Attention {
    pub heads: usize,
    pub scale: f32,
    pub causal: bool,
    pub masked: bool,
    /// A second input, `sizes (B, T)`: ToMe's proportional attention, `log(size)` added to each
    /// key's logit.
    pub sized: bool,
}

impl OpDef for Attention {
    fn kind(&self) -> &'static str {
        "attention"
    }

    fn arity(&self) -> usize {
        1 + self.masked as usize + self.sized as usize
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let (heads, scale) = (self.heads, self.scale);
        if self.masked {
            let s = &inputs[0].shape;
            let b = if s.len() == 5 { s[1] } else { s[0] };
            if inputs[1].shape != [b] {
                return Err(shape_err(node, inputs[1], format!("[{b}] (the keys of each batch item)")));
            }
        }
        let qkv = inputs[0];
        let s = &qkv.shape;
        if self.sized {
            let (b, t) = if s.len() == 5 { (s[1], s[3]) } else { (s[0], s.get(1).copied().unwrap_or(0)) };
            if inputs[1].shape != [b, t] {
                return Err(shape_err(node, inputs[1], format!("[{b}, {t}] (the size of each token)")));
            }
        }
        let head_major = s.len() == 5 && s[0] == 3 && s[2] == heads;
        if !(head_major || (s.len() == 3 && s[2].is_multiple_of(3))) {
            return Err(shape_err(node, qkv, format!("[B, T, 3 * D] or [3, B, {heads}, T, D / {heads}]")));
        }
        let d = if head_major { s[2] * s[4] } else { s[2] / 3 };
        if heads == 0 || !d.is_multiple_of(heads) {
            return Err(invalid(node, format!("{heads} heads do not divide the model dim {d}")));
        }
        if d / heads > MAX_HEAD_DIM {
            return Err(invalid(node, format!("head dim {} is over the maximum {MAX_HEAD_DIM}", d / heads)));
        }
        if !scale.is_finite() {
            return Err(invalid(node, format!("scale {scale} is not finite")));
        }
        let l = QkvLayout::of(s, heads);
        Ok(vec![l.b as usize, l.t as usize, d])
    }

    /// The default kernel and, where they apply, the split and tiled ones; causal attention has
    /// the default kernel only, with the mask.
    fn kernels(&self, inputs: &[&TensorInfo], _output: &TensorInfo) -> Vec<Kernel> {
        let dh = QkvLayout::of(&inputs[0].shape, self.heads).dh as u32;
        if self.causal {
            return vec![self.kernel(DEFAULT, inputs, decl(causal_variant(dh)), BQ)];
        }
        if self.masked {
            return vec![self.kernel(DEFAULT, inputs, masked_decl(masked_variant(dh)), BQ)];
        }
        if self.sized {
            return vec![self.kernel(DEFAULT, inputs, sized_decl(sized_variant(dh)), BQ)];
        }
        let mut out = vec![self.kernel(DEFAULT, inputs, decl(variant(dh)), BQ)];
        for (name, g, bq, subgroup) in SPLITS {
            if split_fits(dh, g, bq) {
                out.push(self.kernel(name, inputs, decl(split_variant(dh, g, bq, subgroup)), bq));
            }
        }
        for (name, bq, cg) in TILED {
            if tiled_fits(dh, cg) {
                out.push(self.kernel(name, inputs, decl(tiled_variant(dh, bq, cg)), bq));
            }
        }
        out
    }

    fn family(&self) -> Option<&'static str> {
        Some("attention")
    }

    fn tuning_key(&self, inputs: &[&TensorInfo], _output: &TensorInfo) -> Option<String> {
        let l = QkvLayout::of(&inputs[0].shape, self.heads);
        let layout = if inputs[0].shape.len() == 5 { " head-major" } else { "" };
        let causal = if self.causal { " causal" } else if self.masked { " masked" } else if self.sized { " sized" } else { "" };
        Some(format!("attention b={} t={} heads={} dh={}{layout}{causal}", l.b, l.t, self.heads, l.dh))
    }

    fn heuristic(&self, device: wgpu::DeviceType, _inputs: &[&TensorInfo], _output: &TensorInfo) -> Option<&'static str> {
        if self.causal || self.masked || self.sized {
            return None;
        }
        heuristic_kernel(device)
    }

    fn cpu_kernel(&self, cpu: &Cpu, _node: &str, inputs: &[&TensorInfo], _output: &TensorInfo, _weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        let mut l = QkvLayout::of(&inputs[0].shape, self.heads).cpu();
        l.causal = self.causal;
        // On a split backend, this rank's heads where the ranks divide them (then it needs only
        // its heads' Q, K and V), else its query tokens of every batch item (an even share
        // whatever the head count: DeiT-Ti's 3 heads would split 1 and 2).
        let by_heads = cpu.shard().is_some_and(|s| l.heads.is_multiple_of(s.ranks()));
        let own = match cpu.shard() {
            Some(s) if by_heads => (s.columns(l.heads, 1), (0, l.t)),
            Some(s) => ((0, l.heads), s.columns(l.t, 1)),
            None => ((0, l.heads), (0, l.t)),
        };
        let split = cpu.shard().map(|_| by_heads);
        Ok(Box::new(AttentionCpu { scratch: crate::cpu::attention::scratch_len(cpu.isa(), &l), l, own, split, scale: self.scale, masked: self.masked, sized: self.sized }))
    }
}

impl Attention {
    /// Any of the kernels: same uniforms (strides in vec4s for the vec4 kernels) and bindings,
    /// `queries` per workgroup.
    fn kernel(&self, name: &'static str, inputs: &[&TensorInfo], decl: KernelDecl, queries: u32) -> Kernel {
        let l = QkvLayout::of(&inputs[0].shape, self.heads);
        let unit = if l.dh.is_multiple_of(4) { 4 } else { 1 };
        let [batch_stride, head_stride, row_stride, k_off, v_off] = l.words(unit);
        let params = Params { tokens: l.t as u32, heads: self.heads as u32, scale: self.scale, batch_stride, head_stride, row_stride, k_off, v_off };
        let groups = [l.t.div_ceil(queries as u64) as u32, self.heads as u32, l.b as u32];
        Kernel::new(name, decl, params, groups, 4.0 * (l.b * l.heads * l.t * l.t * l.dh) as f64)
    }
}

/// Every attention kernel reads `qkv` (an activation) and writes `out`.
fn decl(shader: ShaderVariant) -> KernelDecl {
    KernelDecl::new::<Params>(shader, vec![Binding::output("out"), Binding::activation(0, "qkv")])
}

/// The masked kernel reads `lengths` too.
fn masked_decl(shader: ShaderVariant) -> KernelDecl {
    KernelDecl::new::<Params>(shader, vec![Binding::output("out"), Binding::activation(0, "qkv"), Binding::activation(1, "lengths")])
}

/// The sized kernel reads `sizes` too.
fn sized_decl(shader: ShaderVariant) -> KernelDecl {
    KernelDecl::new::<Params>(shader, vec![Binding::output("out"), Binding::activation(0, "qkv"), Binding::activation(1, "sizes")])
}

pub(crate) fn decls() -> Vec<KernelDecl> {
    let masked = (1..=MAX_HEAD_DIM as u32).map(|d| masked_decl(masked_variant(d))).chain((1..=MAX_HEAD_DIM as u32).map(|d| sized_decl(sized_variant(d))));
    let mut v: Vec<ShaderVariant> = (1..=MAX_HEAD_DIM as u32).map(variant).collect();
    v.extend((1..=MAX_HEAD_DIM as u32).map(causal_variant));
    for (_, g, bq, subgroup) in SPLITS {
        v.extend((1..=MAX_HEAD_DIM as u32).filter(|&d| split_fits(d, g, bq)).map(|d| split_variant(d, g, bq, subgroup)));
    }
    for (_, bq, cg) in TILED {
        v.extend((1..=MAX_HEAD_DIM as u32).filter(|&d| tiled_fits(d, cg)).map(|d| tiled_variant(d, bq, cg)));
    }
    v.into_iter().map(decl).chain(masked).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn attention_kernels_follow_the_measurements() {
        use super::heuristic_kernel as a;
        assert_eq!(a(wgpu::DeviceType::Cpu), Some("tiled-32x32"));
        // Not yet measured on GPUs: the default kernel.
        assert_eq!(a(wgpu::DeviceType::DiscreteGpu), None);
        assert_eq!(a(wgpu::DeviceType::IntegratedGpu), None);
        assert!(super::kernel_names().contains(&"tiled-32x32"));
    }
}

struct AttentionCpu {
    l: crate::cpu::attention::Qkv,
    /// The heads and query tokens this rank computes (all but on a split backend).
    own: ((usize, usize), (usize, usize)),
    /// On a split backend: split by heads (true) or by query tokens.
    split: Option<bool>,
    scale: f32,
    scratch: usize,
    masked: bool,
    sized: bool,
}

impl CpuKernel for AttentionCpu {
    fn name(&self) -> &'static str {
        "flash"
    }

    fn scratch(&self) -> usize {
        self.scratch
    }

    fn run(&self, cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], scratch: &mut [f32]) {
        let lengths = if self.masked { ins[1] } else { &[] };
        let sizes = if self.sized { ins[1] } else { &[] };
        let ((h0, h1), (q0, q1)) = self.own;
        crate::cpu::attention::attention(cpu, ins[0], &self.l, (h0..h1, q0..q1), (lengths, sizes), self.scale, out, scratch);
    }

    /// By heads: rows of D, a head's columns the unit. By tokens: each batch item's output is a
    /// row of T tokens x D, a token's D values the unit.
    fn split(&self) -> Option<crate::cpu::Shared> {
        let d = self.l.heads * self.l.dh;
        match self.split? {
            true => Some(crate::cpu::Shared::Columns { width: d, unit: self.l.dh }),
            false => Some(crate::cpu::Shared::Columns { width: self.l.t * d, unit: d }),
        }
    }

    /// By heads, from a fused `(B, T, 3 D)` qkv taken as rows of D (three per token): only its
    /// heads' columns of each.
    fn reads_columns(&self) -> Option<(usize, usize, (usize, usize))> {
        let d = self.l.heads * self.l.dh;
        let fused = self.l.row == 3 * d && self.l.k_off == d && self.l.head == self.l.dh;
        let ((h0, h1), _) = self.own;
        (self.split == Some(true) && fused).then_some((0, d, (h0 * self.l.dh, h1 * self.l.dh)))
    }
}
