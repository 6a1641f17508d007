//! tessera: a portable WebGPU compute engine for Vision Transformers.
//!
//! The engine is generic: a [`Graph`] of typed ops over tensors is compiled once for its input
//! shapes into an [`Executable`] (schedule, memory plan, pipelines, bind groups) and run with one
//! submit per inference. WGSL kernels live in `shaders/`; [`reference`](mod@reference) holds plain CPU
//! implementations (f64 accumulation) that the tests compare against.

#![warn(missing_docs)]

pub mod error;
pub mod gpu;
pub mod graph;
pub mod model;
pub mod ops;
pub mod reference;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::{Error, Result};
pub use gpu::{AdapterReport, Gpu, GpuOptions};
pub use graph::exec::{CompileOptions, Executable, HostTensor, OpTiming, PlanReport, Profile, Weights};
pub use graph::ir::{DType, Graph, Node, TensorId, TensorInfo, TensorKind};
pub use model::{Checkpoint, Model, ModelOutput, RunOptions};
pub use graph::plan::{plan_memory, Interval, MemoryPlan};
pub use ops::{Activation, Op};
pub use wgpu;

/// Locks `m`, also after a thread panicked while holding it: the engine's locked state (caches,
/// pools, error lists) stays valid whatever a panicking holder was doing.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}
