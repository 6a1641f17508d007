//! Graphs of typed ops over tensors, and compiling them: the backend-independent schedule and
//! memory plan, kernel selection, the devices, and an executor per backend (GPU, CPU).

pub mod compiled;
pub mod cpu_exec;
pub mod device;
pub mod gpu_exec;
pub mod ir;
pub mod plan;
pub mod report;
pub mod schedule;
pub mod select;
pub mod weights;
