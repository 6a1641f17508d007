//! Graphs of typed ops over tensors, the memory planner and the executor.

pub mod exec;
pub mod ir;
pub mod plan;
pub mod tune;
