//! A graph compiled for either device, behind one interface.

use super::cpu_exec::CpuExecutable;
use super::device::Device;
use super::gpu_exec::{Executable, KernelChoice};
use super::ir::Graph;
use super::report::{CompileOptions, HostTensor, PlanReport, Profile};
use super::weights::Weights;
use crate::error::Result;

/// A graph compiled for a GPU or for the CPU backend.
pub enum Compiled {
    /// On a GPU.
    Gpu(Executable),
    /// On the CPU backend.
    Cpu(CpuExecutable),
}

impl Compiled {
    /// Compiles `graph` for `device` against `weights` (uploaded to that device).
    pub async fn compile(device: &Device, graph: &Graph, weights: &Weights, opts: &CompileOptions) -> Result<Compiled> {
        Ok(match device {
            Device::Gpu(g) => Compiled::Gpu(Executable::compile(g, graph, weights, opts).await?),
            Device::Cpu(c) => Compiled::Cpu(CpuExecutable::compile(c, graph, weights, opts)?),
        })
    }

    /// Runs once; the graph outputs in the order they were marked.
    pub async fn run(&self, inputs: &[(&str, &[f32])]) -> Result<Vec<HostTensor>> {
        match self {
            Compiled::Gpu(e) => e.run(inputs).await,
            Compiled::Cpu(e) => e.run(inputs),
        }
    }

    /// Runs once with per-op times (compile with `profile: true`).
    pub async fn run_profiled(&self, inputs: &[(&str, &[f32])]) -> Result<(Vec<HostTensor>, Profile)> {
        match self {
            Compiled::Gpu(e) => e.run_profiled(inputs).await,
            Compiled::Cpu(e) => e.run_profiled(inputs),
        }
    }

    /// How the arena was packed.
    pub fn plan(&self) -> &PlanReport {
        match self {
            Compiled::Gpu(e) => e.plan(),
            Compiled::Cpu(e) => e.plan(),
        }
    }

    /// The kernel each node runs, and why.
    pub fn kernel_choices(&self) -> &[KernelChoice] {
        match self {
            Compiled::Gpu(e) => e.kernel_choices(),
            Compiled::Cpu(e) => e.kernel_choices(),
        }
    }

    /// GPU time per run of `repeats` back-to-back runs (GPUs with timestamp queries); None on
    /// the CPU backend.
    pub async fn gpu_time_per_run(&self, inputs: &[(&str, &[f32])], repeats: u32) -> Result<Option<f64>> {
        match self {
            Compiled::Gpu(e) => Ok(Some(e.gpu_time_per_run(inputs, repeats).await?)),
            Compiled::Cpu(_) => Ok(None),
        }
    }
}
