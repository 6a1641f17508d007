//! Softmax over the last dimension.

use super::shader::specialize;
use super::{grid, last, row_workgroup, rows_of, uniforms, Binding, Kernel, KernelDecl, OpDef, ROW_WORKGROUPS};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::TensorInfo;

uniforms!(Params { rows: u32, cols: u32, _pad0: u32, _pad1: u32 });

pub(crate) struct Softmax;

fn decl(wg: u32) -> KernelDecl {
    let bindings = vec![Binding::output("out"), Binding::activation(0, "x")];
    KernelDecl::new::<Params>(specialize(&["softmax", "reduce"], &[("WG", wg)], &[]), bindings)
}

impl OpDef for Softmax {
    fn kind(&self) -> &'static str {
        "softmax"
    }

    fn arity(&self) -> usize {
        1
    }

    fn output_shape(&self, _node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        Ok(inputs[0].shape.clone())
    }

    fn kernels(&self, inputs: &[&TensorInfo], _output: &TensorInfo) -> Vec<Kernel> {
        let rows = rows_of(&inputs[0].shape) as u64;
        let cols = last(&inputs[0].shape);
        let params = Params { rows: rows as u32, cols: cols as u32, ..Default::default() };
        vec![Kernel::new(self.kind(), decl(row_workgroup(cols)), params, grid(rows), 5.0 * (rows * cols as u64) as f64)]
    }

    fn cpu_kernel(&self, _cpu: &Cpu, _node: &str, inputs: &[&TensorInfo], _output: &TensorInfo, _weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        Ok(Box::new(SoftmaxCpu { rows: rows_of(&inputs[0].shape), cols: last(&inputs[0].shape) }))
    }
}

pub(crate) fn decls() -> Vec<KernelDecl> {
    ROW_WORKGROUPS.iter().map(|&wg| decl(wg)).collect()
}

struct SoftmaxCpu {
    rows: usize,
    cols: usize,
}

impl CpuKernel for SoftmaxCpu {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn run(&self, cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], _scratch: &mut [f32]) {
        crate::cpu::kernels::softmax(cpu, ins[0], self.rows, self.cols, out);
    }
}
