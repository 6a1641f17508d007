//! The GPU executor: compiling a graph for one device (layout, kernel choice, pipelines, bind
//! groups: once) and running it (upload the inputs, one encoder, one submit, one readback of the
//! requested outputs).

mod bind;
mod run;

use super::ir::{Graph, TensorKind};
use super::report::{CompileOptions, PlanReport};
use super::schedule::{layout, Layout};
use super::select::{select, Device, Reason};
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::gpu::memory::TrackedBuffer;
use crate::gpu::Gpu;
use crate::ops::Kernel;
use crate::tensor::{fmt_shape, DType, TensorInfo};
use bind::{check_read_only, pack_uniforms, scratch_desc, Buffers, GpuTimer};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// The kernel one node runs, and why it was chosen.
#[derive(Clone, Debug)]
pub struct KernelChoice {
    /// Node name.
    pub node: String,
    /// Op kind.
    pub op: &'static str,
    /// The kernel's name among the op's candidates (`64x64`, `tiled-32x32`, ...; the op kind
    /// where it has one kernel).
    pub kernel: &'static str,
    /// The shader variant's key (of its first dispatch).
    pub variant: String,
    /// How it was chosen.
    pub reason: Reason,
}

struct Step {
    name: String,
    variant: String,
    kind: &'static str,
    shape: String,
    flops: f64,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

impl Step {
    fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
    }
}

/// An input or output's place in the arena.
struct Slot {
    id: crate::TensorId,
    name: String,
    shape: Vec<usize>,
    dtype: DType,
    offset: u64,
    bytes: u64,
}

/// A graph compiled for one set of input shapes on one device.
pub struct Executable {
    gpu: Arc<Gpu>,
    steps: Vec<Step>,
    choices: Vec<KernelChoice>,
    arena: TrackedBuffer,
    inputs: Vec<Slot>,
    outputs: Vec<Slot>,
    readback_bytes: u64,
    staging: Mutex<Vec<TrackedBuffer>>,
    // Held from writing the inputs to submitting, so that concurrent runs (other threads) cannot
    // interleave their input writes with this run's submit. Never held across an await.
    submit: Mutex<()>,
    profiler: Option<run::Profiler>,
    report: PlanReport,
    // Bind groups reference these: kept alive (and counted in the memory ledger) with the graph,
    // whatever happens to the `Weights` they came from.
    _uniforms: TrackedBuffer,
    _scratch: Option<TrackedBuffer>,
    _weights: Vec<Arc<TrackedBuffer>>,
}

/// The device's limits against the graph: f16 storage needs `shader-f16`; every arena tensor and
/// the arena itself must fit a binding and a buffer.
fn check_device(gpu: &Gpu, graph: &Graph, l: &Layout) -> Result<()> {
    for t in graph.tensors() {
        if t.dtype == DType::F16 && !gpu.features.contains(wgpu::Features::SHADER_F16) {
            return Err(Error::UnsupportedDtype {
                op: "graph".into(),
                tensor: t.name.clone(),
                dtype: "f16".into(),
                supported: "f32 (this adapter has no shader-f16)".into(),
            });
        }
    }
    for &(t, bytes) in &l.sizes {
        gpu.check_binding("arena", &graph.tensors()[t].name, bytes)?;
    }
    if l.plan.arena > gpu.limits().max_buffer_size {
        return Err(Error::LimitExceeded {
            op: "arena".into(),
            tensor: "all activations".into(),
            limit: "max_buffer_size",
            required: l.plan.arena,
            max: gpu.limits().max_buffer_size,
        });
    }
    Ok(())
}

/// Every weight the graph reads, uploaded with its shape and dtype; returns their buffers (held
/// by the executable) and bytes.
fn check_weights(graph: &Graph, weights: &Weights) -> Result<(Vec<Arc<TrackedBuffer>>, u64)> {
    let mut seen = BTreeSet::new();
    let (mut held, mut bytes) = (Vec::new(), 0u64);
    for n in graph.nodes() {
        for &t in &n.inputs {
            let info = graph.info(t);
            if info.kind != TensorKind::Weight {
                continue;
            }
            let Some((buf, shape, dtype)) = weights.map.get(&info.name) else {
                return Err(Error::Weight { name: info.name.clone(), problem: "not uploaded".into() });
            };
            if *dtype != info.dtype {
                return Err(Error::Weight { name: info.name.clone(), problem: format!("uploaded as {dtype}, the graph stores it as {}", info.dtype) });
            }
            if *shape != info.shape {
                return Err(Error::Weight {
                    name: info.name.clone(),
                    problem: format!("uploaded with shape {}, the graph needs {}", fmt_shape(shape), fmt_shape(&info.shape)),
                });
            }
            if seen.insert(t.index()) {
                bytes += buf.size();
                held.push(buf.clone());
            }
        }
    }
    Ok((held, bytes))
}

/// Why `k` cannot run on `gpu`, if it cannot.
fn unfit(gpu: &Gpu, k: &Kernel) -> Option<String> {
    let l = gpu.limits();
    for d in k.dispatches() {
        if let Some(g) = d.workgroups.iter().find(|&&g| g > l.max_compute_workgroups_per_dimension) {
            return Some(format!("{g} workgroups in one dimension, over the limit {}", l.max_compute_workgroups_per_dimension));
        }
        if let Some(g) = d.shader().subgroup_size_needed().filter(|&g| gpu.subgroup_min_size < g) {
            return Some(format!("it needs subgroups of {g} invocations (this device guarantees {})", gpu.subgroup_min_size));
        }
        let need = d.shader().workgroup_storage();
        if need > l.max_compute_workgroup_storage_size {
            return Some(format!("{need} bytes of workgroup memory, over the limit {}", l.max_compute_workgroup_storage_size));
        }
    }
    (k.scratch() > l.max_storage_buffer_binding_size).then(|| format!("{} bytes of scratch, over the binding limit", k.scratch()))
}

impl Executable {
    /// Compiles `graph` against `weights` (every weight tensor of the graph must be there, with
    /// its shape).
    pub async fn compile(gpu: &Arc<Gpu>, graph: &Graph, weights: &Weights, opts: &CompileOptions) -> Result<Self> {
        gpu.check_lost()?;
        let resolved = graph.with_quant(weights)?;
        let graph = resolved.as_ref().unwrap_or(graph);
        let l = layout(graph, (gpu.limits().min_storage_buffer_offset_alignment as u64).max(16))?;
        check_device(gpu, graph, &l)?;
        let (held_weights, weight_bytes) = check_weights(graph, weights)?;
        let tensors = graph.tensors();
        let what = format!(
            "the activations for input {}",
            tensors.iter().filter(|t| t.kind == TensorKind::Input).map(|t| format!("`{}` {}", t.name, fmt_shape(&t.shape))).collect::<Vec<_>>().join(", ")
        );
        let readback_estimate = graph.outputs().iter().filter_map(|o| tensors[o.index()].bytes()).sum::<u64>().div_ceil(8) * 8;
        gpu.check_memory(&what, l.plan.arena + readback_estimate)?;
        let arena = gpu.tracked_buffer(
            &what,
            &wgpu::BufferDescriptor {
                label: Some("tessera arena"),
                size: l.plan.arena.max(16),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            },
        )?;
        let buffers = Buffers { gpu, graph, weights, arena: &arena, offsets: &l.offsets };
        let (kernels, reasons) = choose_kernels(gpu, &buffers, &l.order).await?;

        let nodes = graph.nodes();
        let mut choices = Vec::with_capacity(kernels.len());
        for ((k, &i), reason) in kernels.iter().zip(&l.order).zip(&reasons) {
            check_read_only(graph, &nodes[i], k)?;
            let max_groups = gpu.limits().max_compute_workgroups_per_dimension;
            if let Some(&g) = k.dispatches().iter().flat_map(|d| d.workgroups.iter()).find(|&&g| g > max_groups) {
                return Err(Error::LimitExceeded {
                    op: nodes[i].name.clone(),
                    tensor: tensors[nodes[i].output.index()].name.clone(),
                    limit: "max_compute_workgroups_per_dimension",
                    required: g as u64,
                    max: max_groups as u64,
                });
            }
            if let Some(why) = unfit(gpu, k) {
                return Err(Error::InvalidOp { op: nodes[i].name.clone(), problem: format!("its kernel `{}` cannot run on this device: {why}", k.name) });
            }
            choices.push(KernelChoice { node: nodes[i].name.clone(), op: nodes[i].op.kind(), kernel: k.name, variant: k.shader().key.clone(), reason: *reason });
        }
        // One scratch buffer for every split kernel (they run one after another).
        let scratch_bytes = kernels.iter().map(Kernel::scratch).max().unwrap_or(0);
        let scratch = if scratch_bytes > 0 { Some(gpu.tracked_buffer("the split-K scratch", &scratch_desc(scratch_bytes))?) } else { None };
        // Every dispatch in run order, with its node.
        let dispatches: Vec<(usize, &Kernel, bool)> =
            kernels.iter().zip(&l.order).flat_map(|(k, &i)| k.dispatches().into_iter().enumerate().map(move |(j, d)| (i, d, j > 0))).collect();
        let (uniforms, stride) = pack_uniforms(gpu, &dispatches.iter().map(|(_, k, _)| *k).collect::<Vec<_>>())?;

        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut steps = Vec::with_capacity(dispatches.len());
        for (s, &(i, k, finishing)) in dispatches.iter().enumerate() {
            let n = &nodes[i];
            let pipeline = gpu.pipeline(&k.shader().key, &k.shader().source);
            let bind_group = buffers.bind_group(&pipeline, k, n, &uniforms, s as u64 * stride, scratch.as_deref())?;
            steps.push(Step {
                name: if finishing { format!("{} (reduce)", n.name) } else { n.name.clone() },
                variant: k.shader().key.clone(),
                kind: if finishing { "reduce" } else { n.op.kind() },
                shape: fmt_shape(&tensors[n.output.index()].shape),
                flops: k.flops,
                pipeline,
                bind_group,
                workgroups: k.workgroups,
            });
        }
        if let Some(e) = scope.pop().await {
            return Err(Error::gpu("while compiling the graph", e));
        }

        let slot = |t: usize| Slot {
            id: crate::TensorId(t),
            name: tensors[t].name.clone(),
            shape: tensors[t].shape.clone(),
            dtype: tensors[t].dtype,
            offset: l.offsets[&t],
            bytes: tensors[t].bytes().unwrap_or(0),
        };
        let inputs: Vec<Slot> = (0..tensors.len()).filter(|&t| tensors[t].kind == TensorKind::Input && l.offsets.contains_key(&t)).map(slot).collect();
        let outputs: Vec<Slot> = graph.outputs().iter().map(|o| slot(o.index())).collect();
        let readback_bytes = outputs.iter().map(|o| o.bytes).sum::<u64>().div_ceil(8) * 8;
        let profiler = if opts.profile { Some(run::Profiler::new(gpu, steps.len())?) } else { None };
        gpu.take_errors("while compiling the graph")?;

        Ok(Executable {
            gpu: gpu.clone(),
            steps,
            choices,
            arena,
            inputs,
            outputs,
            readback_bytes,
            staging: Mutex::new(Vec::new()),
            submit: Mutex::new(()),
            profiler,
            report: PlanReport { arena: l.plan.arena, naive: l.plan.naive, peak_live: l.plan.peak_live, weights: weight_bytes },
            _uniforms: uniforms,
            _scratch: scratch,
            _weights: held_weights,
        })
    }

    /// How the arena was packed.
    pub fn plan(&self) -> &PlanReport {
        &self.report
    }

    /// Each dispatch's node name and shader variant, in run order.
    pub fn kernels(&self) -> Vec<(String, String)> {
        self.steps.iter().map(|s| (s.name.clone(), s.variant.clone())).collect()
    }

    /// The kernel each node runs, in run order, with how it was chosen.
    pub fn kernel_choices(&self) -> &[KernelChoice] {
        &self.choices
    }

    /// Number of dispatches per run.
    pub fn num_steps(&self) -> usize {
        self.steps.len()
    }

    /// Names and shapes of the inputs `run` expects.
    pub fn inputs(&self) -> Vec<(String, Vec<usize>)> {
        self.inputs.iter().map(|s| (s.name.clone(), s.shape.clone())).collect()
    }
}

/// Each node's kernel in `order`, and why (see `select`); the tuning cache is saved once after.
async fn choose_kernels(gpu: &Arc<Gpu>, buffers: &Buffers<'_>, order: &[usize]) -> Result<(Vec<Kernel>, Vec<Reason>)> {
    let graph = buffers.graph;
    let unfit_on = |k: &Kernel| unfit(gpu, k);
    // The browser reports no reliable adapter kind: no heuristics there.
    let kind = if cfg!(target_arch = "wasm32") { None } else { Some(gpu.device_type()) };
    let dev = Device { kind, forced: gpu.forced_kernels(), tune: gpu.tune, unfit: &unfit_on };
    let mut timer = GpuTimer { buffers };
    if gpu.tune && !gpu.has_timestamps() {
        let note = if cfg!(target_arch = "wasm32") {
            "this adapter cannot time kernels (no timestamp queries): the heuristic kernels are used"
        } else {
            "kernels timed with the wall clock (this adapter has no timestamp queries)"
        };
        crate::lock(&gpu.tuning).stats.timing_note = Some(note.into());
    }
    let (mut kernels, mut reasons) = (Vec::with_capacity(order.len()), Vec::with_capacity(order.len()));
    for &i in order {
        let n = &graph.nodes()[i];
        let infos: Vec<&TensorInfo> = n.inputs.iter().map(|&t| graph.info(t)).collect();
        let (k, why) = select(&dev, &gpu.tuning, &mut timer, (i, &n.name, &n.op), &infos, graph.info(n.output)).await?;
        kernels.push(k);
        reasons.push(why);
    }
    if gpu.tune {
        crate::lock(&gpu.tuning).save();
    }
    Ok((kernels, reasons))
}
