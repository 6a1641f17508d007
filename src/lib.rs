//! tessera: a portable WebGPU compute engine for Vision Transformers.
//!
//! The engine is generic: a [`Graph`] of typed ops over tensors is compiled once for its input
//! shapes into an [`Executable`] (schedule, memory plan, pipelines, bind groups) and run with one
//! submit per inference. WGSL kernels live in `shaders/`; [`reference`](mod@reference) holds plain CPU
//! implementations (f64 accumulation) that the tests compare against.

#![warn(missing_docs)]

pub mod cpu;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod memory;
pub mod model;
pub mod ops;
pub mod quant;
pub mod tensor;
pub mod reference;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
#[cfg(target_arch = "wasm32")]
pub mod wasm_threads;

pub use error::{Error, Result};
pub use gpu::{AdapterReport, Gpu, GpuOptions};
pub use cpu::{Cpu, CpuOptions};
pub use graph::compiled::Compiled;
pub use graph::cpu_exec::CpuExecutable;
pub use graph::device::{Device, DeviceChoice, DeviceOptions};
pub use graph::gpu_exec::{Executable, KernelChoice};
pub use graph::ir::{Graph, Node};
pub use graph::plan::{plan_memory, Interval, MemoryPlan};
pub use graph::report::{CompileOptions, HostTensor, OpTiming, PlanReport, Profile};
pub use graph::schedule::plan_graph;
pub use graph::select::{check_options, Reason};
pub use graph::weights::Weights;
pub use model::{Checkpoint, LoadOptions, Merge, MergeSchedule, Model, ModelOutput, RunOptions};
pub use ops::{Activation, Op};
pub use tensor::{DType, TensorId, TensorInfo, TensorKind};
pub use wgpu;

/// Locks `m`, also after a thread panicked while holding it: the engine's locked state (caches,
/// pools, error lists) stays valid whatever a panicking holder was doing.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
