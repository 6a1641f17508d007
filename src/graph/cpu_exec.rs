//! The CPU executor: the same schedule and memory plan as the GPU's (one arena of f32, packed by
//! tensor lifetime), a CPU kernel per node, and runs that write the inputs into the arena, run
//! every step in order (each spread over the thread pool) and copy out the outputs. The arena and
//! the scratch are allocated once, at compile; weights are read in place.

use super::device::Device;
use super::gpu_exec::KernelChoice;
use super::ir::{Graph, TensorKind};
use super::report::{CompileOptions, HostTensor, OpTiming, PlanReport, Profile};
use super::schedule::layout;
use super::select::Reason;
use super::weights::Weights;
use crate::cpu::{Cpu, CpuKernel, HostWeight};
use crate::error::{Error, Result};
use crate::memory::Reservation;
use crate::tensor::{fmt_shape, TensorId, TensorInfo};
use std::sync::{Arc, Mutex};

/// Where a step's input comes from.
enum Src {
    /// `len` values at `off` in the arena.
    Arena { off: usize, len: usize },
    /// A weight's values.
    Weight(Arc<HostWeight>),
}

struct Step {
    name: String,
    kind: &'static str,
    shape: String,
    flops: f64,
    kernel: Box<dyn CpuKernel>,
    inputs: Vec<Src>,
    out: (usize, usize),
    /// On a split backend: how the kernel leaves its output (this rank's columns, gathered after
    /// it; or a partial sum, added up after it). None: whole, or columns that only their own
    /// rank's next step reads.
    split: Option<crate::cpu::Shared>,
}

/// An input or output's place in the arena.
struct Slot {
    id: TensorId,
    name: String,
    shape: Vec<usize>,
    off: usize,
    len: usize,
}

struct State {
    arena: crate::cpu::Aligned,
    scratch: crate::cpu::Aligned,
}

/// A graph compiled for the CPU backend for one set of input shapes.
pub struct CpuExecutable {
    cpu: Arc<Cpu>,
    steps: Vec<Step>,
    choices: Vec<KernelChoice>,
    inputs: Vec<Slot>,
    outputs: Vec<Slot>,
    // One run at a time per compiled graph (concurrent callers wait their turn).
    state: Mutex<State>,
    report: PlanReport,
    profile: bool,
    _held: Reservation,
}

/// The weight values of a node's inputs (None for arena tensors), checked against the graph.
fn weights_of<'a>(graph: &Graph, inputs: &[TensorId], weights: &'a Weights) -> Result<Vec<Option<&'a Arc<HostWeight>>>> {
    inputs
        .iter()
        .map(|&t| {
            let info = graph.info(t);
            if info.kind != TensorKind::Weight {
                return Ok(None);
            }
            let w = weights.host.get(&info.name).ok_or_else(|| Error::Weight { name: info.name.clone(), problem: "not uploaded".into() })?;
            if w.shape != info.shape {
                return Err(Error::Weight {
                    name: info.name.clone(),
                    problem: format!("uploaded with shape {}, the graph needs {}", fmt_shape(&w.shape), fmt_shape(&info.shape)),
                });
            }
            Ok(Some(w))
        })
        .collect()
}

impl CpuExecutable {
    /// Compiles `graph` for `cpu` against `weights` (uploaded to that CPU backend).
    pub fn compile(cpu: &Arc<Cpu>, graph: &Graph, weights: &Weights, opts: &CompileOptions) -> Result<CpuExecutable> {
        if weights.device().cpu().is_none_or(|c| !Arc::ptr_eq(c, cpu)) {
            return Err(Error::Input { name: "weights".into(), problem: "were uploaded to another device".into() });
        }
        let resolved = graph.with_quant(weights)?;
        let graph = resolved.as_ref().unwrap_or(graph);
        // Offsets in f32 elements, 64-byte aligned (a cache line).
        let l = layout(graph, 64)?;
        let tensors = graph.tensors();
        let elems = |t: usize| tensors[t].numel();
        let mut steps = Vec::with_capacity(l.order.len());
        let mut choices = Vec::with_capacity(l.order.len());
        let mut scratch = 0usize;
        for &i in &l.order {
            let n = &graph.nodes()[i];
            let infos: Vec<&TensorInfo> = n.inputs.iter().map(|&t| graph.info(t)).collect();
            let held = weights_of(graph, &n.inputs, weights)?;
            for (i, w) in held.iter().enumerate() {
                if w.is_some_and(|w| !w.has_values() && !n.op.packed_input(i)) {
                    return Err(Error::Weight {
                        name: graph.info(n.inputs[i]).name.clone(),
                        problem: format!("is held only as a matrix product's B on the CPU backend; node `{}` ({}) reads its values", n.name, n.op.kind()),
                    });
                }
            }
            let refs: Vec<Option<&HostWeight>> = held.iter().map(|w| w.map(|w| &**w)).collect();
            let kernel = n.op.cpu_kernel(cpu, &n.name, &infos, graph.info(n.output), &refs)?;
            scratch = scratch.max(kernel.scratch());
            let out = (l.offsets[&n.output.index()] as usize / 4, elems(n.output.index()));
            let inputs: Vec<Src> = n
                .inputs
                .iter()
                .zip(&held)
                .map(|(&t, w)| match w {
                    Some(w) => Src::Weight((*w).clone()),
                    None => Src::Arena { off: l.offsets[&t.index()] as usize / 4, len: elems(t.index()) },
                })
                .collect();
            // The plan keeps a node's output apart from its inputs (both live at its step);
            // the run relies on it.
            for s in &inputs {
                if let Src::Arena { off, len } = *s {
                    if off < out.0 + out.1 && out.0 < off + len {
                        return Err(Error::InvalidGraph(format!("node `{}`: its output overlaps an input in the arena", n.name)));
                    }
                }
            }
            choices.push(KernelChoice { node: n.name.clone(), op: n.op.kind(), kernel: kernel.name(), variant: format!("cpu {}", cpu.isa().name()), reason: Reason::Only });
            let flops = n.op.kernels(&infos, graph.info(n.output)).first().map_or(0.0, |k| k.flops);
            let split = kernel.split().filter(|_| cpu.shard().is_some());
            steps.push(Step { name: n.name.clone(), kind: n.op.kind(), shape: fmt_shape(&graph.info(n.output).shape), flops, kernel, inputs, out, split });
        }
        // Columns that every reader takes only this rank's share of need no gather: the MLP's
        // first product, read by the second split along its depth; the QKV product split by
        // heads, read by the attention split so.
        if let Some(shard) = cpu.shard() {
            for s in 0..steps.len() {
                let Some(crate::cpu::Shared::Columns { width, unit }) = steps[s].split else { continue };
                let t = graph.nodes()[l.order[s]].output;
                if graph.outputs().contains(&t) {
                    continue;
                }
                let own = shard.columns(width, unit);
                let readers: Vec<(usize, usize)> = l.order.iter().enumerate().flat_map(|(j, &i)| graph.nodes()[i].inputs.iter().enumerate().filter(|(_, &x)| x == t).map(move |(pos, _)| (j, pos))).collect();
                if !readers.is_empty() && readers.iter().all(|&(j, pos)| steps[j].kernel.reads_columns() == Some((pos, width, own))) {
                    steps[s].split = None;
                }
            }
        }
        let arena_len = (l.plan.arena as usize).div_ceil(4);
        let what = format!(
            "the activations for input {}",
            tensors.iter().filter(|t| t.kind == TensorKind::Input).map(|t| format!("`{}` {}", t.name, fmt_shape(&t.shape))).collect::<Vec<_>>().join(", ")
        );
        let held = Reservation::new(&cpu.ledger, &what, (arena_len + scratch) as u64 * 4)?;
        let slot = |t: usize| Slot { id: TensorId(t), name: tensors[t].name.clone(), shape: tensors[t].shape.clone(), off: l.offsets[&t] as usize / 4, len: elems(t) };
        let inputs = (0..tensors.len()).filter(|&t| tensors[t].kind == TensorKind::Input && l.offsets.contains_key(&t)).map(slot).collect();
        let outputs = graph.outputs().iter().map(|o| slot(o.index())).collect();
        let wbytes = graph.tensors().iter().filter(|t| t.kind == TensorKind::Weight).filter_map(|t| t.bytes()).sum();
        Ok(CpuExecutable {
            cpu: cpu.clone(),
            steps,
            choices,
            inputs,
            outputs,
            state: Mutex::new(State { arena: crate::cpu::Aligned::zeros(arena_len), scratch: crate::cpu::Aligned::zeros(scratch) }),
            report: PlanReport { arena: l.plan.arena, naive: l.plan.naive, peak_live: l.plan.peak_live, weights: wbytes },
            profile: opts.profile,
            _held: held,
        })
    }

    /// How the arena was packed.
    pub fn plan(&self) -> &PlanReport {
        &self.report
    }

    /// The kernel each node runs.
    pub fn kernel_choices(&self) -> &[KernelChoice] {
        &self.choices
    }

    /// Names and shapes of the inputs `run` expects.
    pub fn inputs(&self) -> Vec<(String, Vec<usize>)> {
        self.inputs.iter().map(|s| (s.name.clone(), s.shape.clone())).collect()
    }

    /// Runs once on `inputs` (by name); returns the graph outputs in the order they were marked.
    pub fn run(&self, inputs: &[(&str, &[f32])]) -> Result<Vec<HostTensor>> {
        Ok(self.run_inner(inputs, false)?.0)
    }

    /// Like [`CpuExecutable::run`], with the time of every step (compile with `profile: true`).
    pub fn run_profiled(&self, inputs: &[(&str, &[f32])]) -> Result<(Vec<HostTensor>, Profile)> {
        if !self.profile {
            return Err(Error::Input { name: "profile".into(), problem: "the graph was compiled without `profile: true`".into() });
        }
        let (out, p) = self.run_inner(inputs, true)?;
        Ok((out, p.unwrap_or_default()))
    }

    fn run_inner(&self, inputs: &[(&str, &[f32])], profile: bool) -> Result<(Vec<HostTensor>, Option<Profile>)> {
        for (name, _) in inputs {
            if !self.inputs.iter().any(|s| s.name == *name) {
                let known: Vec<&str> = self.inputs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::Input { name: name.to_string(), problem: format!("the graph has no such input (inputs: {})", known.join(", ")) });
            }
        }
        let mut guard = crate::lock(&self.state);
        let State { arena, scratch } = &mut *guard;
        for s in &self.inputs {
            let data = inputs.iter().find(|(n, _)| *n == s.name).map(|(_, d)| *d).ok_or_else(|| Error::Input { name: s.name.clone(), problem: "missing".into() })?;
            if data.len() != s.len {
                return Err(Error::Input { name: s.name.clone(), problem: format!("got {} values, shape {} needs {}", data.len(), fmt_shape(&s.shape), s.len) });
            }
            arena[s.off..s.off + s.len].copy_from_slice(data);
        }
        let mut timings = Vec::new();
        let base = arena.as_mut_ptr();
        for step in &self.steps {
            let start = profile.then(now_ms);
            // SAFETY: every range lies within the arena (the plan sized it), and the output is
            // disjoint from the arena inputs (checked at compile); inputs may overlap each other
            // but are only read.
            let ins: Vec<&[f32]> = step
                .inputs
                .iter()
                .map(|s| match s {
                    Src::Arena { off, len } => unsafe { std::slice::from_raw_parts(base.add(*off), *len) },
                    Src::Weight(w) => &w.data[..],
                })
                .collect();
            let out = unsafe { std::slice::from_raw_parts_mut(base.add(step.out.0), step.out.1) };
            step.kernel.run(&self.cpu, &ins, out, scratch);
            if let (Some(shared), Some(shard)) = (step.split, self.cpu.shard()) {
                let done = match shared {
                    crate::cpu::Shared::Columns { width, unit } => shard.gather_columns(out, width, unit),
                    crate::cpu::Shared::Sum => shard.all_reduce(out),
                };
                done.map_err(|e| Error::Input { name: step.name.clone(), problem: format!("the exchange with the other threads failed: {e}") })?;
            }
            if let Some(t0) = start {
                let ms = now_ms() - t0;
                let gflops = if ms > 0.0 { step.flops / (ms * 1e6) } else { 0.0 };
                timings.push(OpTiming { name: step.name.clone(), kind: step.kind, shape: step.shape.clone(), ms, gflops });
            }
        }
        let out = self
            .outputs
            .iter()
            .map(|o| HostTensor { id: o.id, name: o.name.clone(), shape: o.shape.clone(), data: arena[o.off..o.off + o.len].to_vec() })
            .collect();
        Ok((out, profile.then_some(Profile { ops: timings })))
    }

    /// The device it runs on.
    pub fn device(&self) -> Device {
        Device::Cpu(self.cpu.clone())
    }
}

/// Milliseconds from an arbitrary origin.
fn now_ms() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1e3
    }
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now()
    }
}
