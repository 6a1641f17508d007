//! Element-wise binary ops: `a + b`, and `a * b` with `b` broadcast over the last dim.

use super::shader::specialize;
use super::{grid, last, shape_err, uniforms, Binding, Kernel, KernelDecl, OpDef, ELEMENT_WG};
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::Result;
use crate::tensor::{fmt_shape, TensorInfo};

uniforms!(Params { n: u32, cols: u32, _pad0: u32, _pad1: u32 });

pub(crate) enum Elementwise {
    /// Both inputs activations of one shape.
    Add,
    /// The scale a weight of the last dim.
    MulRow,
}

fn decl(op: &Elementwise) -> KernelDecl {
    let (flag, b) = match op {
        Elementwise::Add => ("ADD", Binding::activation(1, "b")),
        Elementwise::MulRow => ("MUL_ROW", Binding::weight(1, "b")),
    };
    let bindings = vec![Binding::output("out"), Binding::activation(0, "a"), b];
    KernelDecl::new::<Params>(specialize(&["elementwise"], &[("WG", ELEMENT_WG)], &[flag]), bindings)
}

impl OpDef for Elementwise {
    fn kind(&self) -> &'static str {
        match self {
            Elementwise::Add => "add",
            Elementwise::MulRow => "mul_row",
        }
    }

    fn arity(&self) -> usize {
        2
    }

    fn output_shape(&self, node: &str, inputs: &[&TensorInfo]) -> Result<Vec<usize>> {
        let (a, b) = (inputs[0], inputs[1]);
        let expected = match self {
            Elementwise::Add => fmt_shape(&a.shape),
            Elementwise::MulRow => format!("[{}]", last(&a.shape)),
        };
        if fmt_shape(&b.shape) != expected {
            return Err(shape_err(node, b, expected));
        }
        Ok(a.shape.clone())
    }

    fn kernels(&self, inputs: &[&TensorInfo], _output: &TensorInfo) -> Vec<Kernel> {
        let n = inputs[0].numel() as u64;
        let params = Params { n: n as u32, cols: last(&inputs[0].shape) as u32, ..Default::default() };
        vec![Kernel::new(self.kind(), decl(self), params, grid(n.div_ceil(ELEMENT_WG as u64)), n as f64)]
    }

    fn cpu_kernel(&self, _cpu: &Cpu, _node: &str, _inputs: &[&TensorInfo], _output: &TensorInfo, _weights: &[Option<&HostWeight>]) -> Result<Box<dyn CpuKernel>> {
        Ok(Box::new(ElementwiseCpu { add: matches!(self, Elementwise::Add) }))
    }
}

pub(crate) fn decls() -> Vec<KernelDecl> {
    vec![decl(&Elementwise::Add), decl(&Elementwise::MulRow)]
}

struct ElementwiseCpu {
    add: bool,
}

impl CpuKernel for ElementwiseCpu {
    fn name(&self) -> &'static str {
        if self.add {
            "add"
        } else {
            "mul_row"
        }
    }

    fn run(&self, _cpu: &Cpu, ins: &[&[f32]], out: &mut [f32], _scratch: &mut [f32]) {
        if self.add {
            crate::cpu::kernels::add(ins[0], ins[1], out);
        } else {
            crate::cpu::kernels::mul_row(ins[0], ins[1], out);
        }
    }
}
