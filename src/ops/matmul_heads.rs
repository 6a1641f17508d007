//! The fused QKV projection written head-major: the tiled matrix multiply of `matmul.rs` (the same
//! shader, `shaders/matmul.wgsl`, with the `HEADS` store) whose output goes straight into the
//! `(3, B, heads, T, head_dim)` layout the attention kernels read, so that no transpose runs
//! between them.

use super::matmul::{cpu_b, epilogue_bindings, epilogue_flags, gemm_variant, heuristic_tile, quant_b, quant_key, MatMulCpu, QuantB, Tile, QUANT_FORMS, TILES};
use super::{last, rows_of, shape_err, uniforms, Activation, Binding, Kernel, KernelDecl, OpDef};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::TensorInfo;

uniforms!(HeadsParams { m: u32, n: u32, k: u32, kc: u32, tokens: u32, dh: u32, _pad0: u32, _pad1: u32 });
uniforms!(HeadsQParams { m: u32, n: u32, k: u32, kc: u32, tokens: u32, dh: u32, qgroup: u32, qso: u32 });

/// The fused QKV projection `a (B, T, K) x b (K, 3*D) [+ bias (3*D)]` written head-major as
/// `(3, B, heads, T, D / heads)`.
pub(crate) struct MatMulHeads {
    pub heads: usize,
    pub bias: bool,
}

impl OpDef for MatMulHeads {
    fn kind(&self) -> &'static str {
        "matmul_heads"
    }

    fn arity(&self) -> usize {
        2 + self.bias as usize
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let (a, b, heads) = (inputs[0], inputs[1], self.heads);
        if a.shape.len() != 3 {
            return Err(shape_err(node, a, "[B, T, K]"));
        }
        let k = a.shape[2];
        if b.shape.len() != 2 || b.shape[0] != k || !b.shape[1].is_multiple_of(3) {
            return Err(shape_err(node, b, format!("[{k}, 3 * D] (K = {k} from `{}`)", a.name)));
        }
        let n = b.shape[1];
        let d = n / 3;
        if heads == 0 || !d.is_multiple_of(heads) {
            return Err(super::invalid(node, format!("{heads} heads do not divide the model dim {d}")));
        }
        let dh = d / heads;
        if !dh.is_multiple_of(4) || !k.is_multiple_of(4) {
            return Err(super::invalid(node, format!("a head-major projection needs K ({k}) and the head dim ({dh}) to be multiples of 4")));
        }
        if self.bias && inputs[2].shape != [n] {
            return Err(shape_err(node, inputs[2], format!("[{n}]")));
        }
        Ok(vec![3, a.shape[0], heads, a.shape[1], dh])
    }

    /// Every tile of [`TILES`] (no split-K: its reduction writes token-major).
    fn kernels(&self, inputs: &[&TensorInfo], _output: &TensorInfo) -> Vec<Kernel> {
        let a = &inputs[0].shape;
        let (tokens, k) = (a[1] as u64, a[2] as u64);
        let m = rows_of(a) as u64;
        let n = inputs[1].shape[1] as u64;
        let dh = n / 3 / self.heads as u64;
        let q = quant_b(inputs[1]);
        let (m32, n32, k32, tokens, dh) = (m as u32, n as u32, k as u32, tokens as u32, dh as u32);
        let flops = 2.0 * (m * n * k) as f64;
        TILES
            .iter()
            .map(|&(name, tile)| {
                let groups = [n.div_ceil(tile.bn as u64) as u32, m.div_ceil(tile.bm as u64) as u32, 1];
                let decl = heads_decl(tile, self.bias, q.map(QuantB::form));
                match q {
                    None => Kernel::new(name, decl, HeadsParams { m: m32, n: n32, k: k32, kc: k32, tokens, dh, ..Default::default() }, groups, flops),
                    Some(q) => {
                        let p = HeadsQParams { m: m32, n: n32, k: k32, kc: k32, tokens, dh, qgroup: q.group, qso: q.qso };
                        Kernel::new(name, decl, p, groups, flops)
                    }
                }
            })
            .collect()
    }

    fn family(&self) -> Option<&'static str> {
        Some("matmul")
    }

    fn tuning_key(&self, inputs: &[&TensorInfo], _output: &TensorInfo) -> Option<String> {
        let (m, k, n) = (rows_of(&inputs[0].shape), last(&inputs[0].shape), inputs[1].shape[1]);
        Some(format!("matmul {m}x{k}x{n} bias={} heads={}{}", self.bias, self.heads, quant_key(inputs[1])))
    }

    /// As for the (B*T, 3*D) product it computes.
    fn heuristic(&self, device: wgpu::DeviceType, _inputs: &[&TensorInfo], output: &TensorInfo) -> Option<&'static str> {
        let s = &output.shape;
        heuristic_tile(device, s[1] * s[3], 3 * s[2] * s[4])
    }

    fn cpu_kernel(&self, cpu: &Cpu, node: &str, inputs: &[&TensorInfo], _output: &TensorInfo, weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        let w = super::need_weight(node, weights, 1, "B")?;
        if w.columns().is_some() || w.depth().is_some() || w.thirds().is_some() {
            return Err(super::invalid(node, "the head-major projection does not run on a CPU backend split between threads; build the graph without `qkv_heads`"));
        }
        let b = cpu_b(cpu, w)?;
        let s = &inputs[0].shape;
        let heads = Some((s[0], s[1], self.heads));
        Ok(Box::new(MatMulCpu { m: rows_of(s), b, n: inputs[1].shape[1], cols: None, depth: None, thirds: None, unit: cpu.column_unit(), bias: self.bias, act: Activation::None, residual: None, heads }))
    }
}

/// The head-major QKV projection: vec4, bias or not, no activation or residual.
fn heads_decl(tile: Tile, bias: bool, quant: Option<(u32, bool)>) -> KernelDecl {
    let mut store = epilogue_flags(bias, Activation::None, false);
    store.push("HEADS");
    let mut bindings = vec![Binding::output("out"), Binding::activation(0, "a"), Binding::weight(1, "b")];
    bindings.extend(epilogue_bindings(bias, false));
    let shader = gemm_variant(tile, true, &store, quant);
    match quant {
        None => KernelDecl::new::<HeadsParams>(shader, bindings),
        Some(_) => KernelDecl::new::<HeadsQParams>(shader, bindings),
    }
}

/// Every variant: each tile, with and without a bias, for each form of B.
pub(crate) fn decls() -> Vec<KernelDecl> {
    let mut v = Vec::new();
    for quant in QUANT_FORMS {
        for (_, tile) in TILES {
            v.push(heads_decl(tile, false, quant));
            v.push(heads_decl(tile, true, quant));
        }
    }
    v
}
