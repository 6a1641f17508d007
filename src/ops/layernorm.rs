//! Layer normalization over the last dimension.

use super::shader::specialize;
use super::{grid, invalid, last, row_workgroup, rows_of, shape_err, uniforms, Binding, Kernel, KernelDecl, OpDef, ROW_WORKGROUPS};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::TensorInfo;

uniforms!(Params { rows: u32, cols: u32, eps: f32, _pad: u32 });

pub(crate) struct LayerNorm {
    pub eps: f32,
}

fn decl(wg: u32) -> KernelDecl {
    let bindings = vec![Binding::output("out"), Binding::activation(0, "x"), Binding::weight(1, "gamma"), Binding::weight(2, "beta")];
    KernelDecl::new::<Params>(specialize(&["layernorm", "reduce"], &[("WG", wg)], &[]), bindings)
}

impl OpDef for LayerNorm {
    fn kind(&self) -> &'static str {
        "layernorm"
    }

    fn arity(&self) -> usize {
        3
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let c = last(&inputs[0].shape);
        for t in &inputs[1..] {
            if t.shape != [c] {
                return Err(shape_err(node, t, format!("[{c}]")));
            }
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(invalid(node, format!("epsilon {} must be finite and non-negative", self.eps)));
        }
        Ok(inputs[0].shape.clone())
    }

    fn kernels(&self, inputs: &[&TensorInfo], _output: &TensorInfo) -> Vec<Kernel> {
        let rows = rows_of(&inputs[0].shape) as u64;
        let cols = last(&inputs[0].shape);
        let params = Params { rows: rows as u32, cols: cols as u32, eps: self.eps, _pad: 0 };
        vec![Kernel::new(self.kind(), decl(row_workgroup(cols)), params, grid(rows), 8.0 * (rows * cols as u64) as f64)]
    }

    fn cpu_kernel(&self, _cpu: &Cpu, _node: &str, inputs: &[&TensorInfo], _output: &TensorInfo, _weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        Ok(Box::new(LayerNormCpu { rows: rows_of(&inputs[0].shape), cols: last(&inputs[0].shape), eps: self.eps }))
    }
}

pub(crate) fn decls() -> Vec<KernelDecl> {
    ROW_WORKGROUPS.iter().map(|&wg| decl(wg)).collect()
}

struct LayerNormCpu {
    rows: usize,
    cols: usize,
    eps: f32,
}

impl CpuKernel for LayerNormCpu {
    fn name(&self) -> &'static str {
        "layernorm"
    }

    fn run(&self, cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], _scratch: &mut [f32]) {
        crate::cpu::kernels::layer_norm(cpu, ins[0], self.rows, self.cols, ins[1], ins[2], self.eps, out);
    }
}
