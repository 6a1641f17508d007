//! Compiling a graph (schedule, memory plan, pipelines, bind groups: once) and running it
//! (upload the inputs, one encoder, one submit, one readback of the requested outputs).

use super::ir::{fmt_shape, DType, Graph, TensorId, TensorInfo, TensorKind};
use super::plan::{plan_memory, Interval, MemoryPlan};
use crate::error::{Error, Result};
use crate::gpu::memory::TrackedBuffer;
use crate::gpu::{read_buffer, Gpu};
use crate::lock;
use crate::ops::Kernel;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Weights on the GPU, uploaded once and shared by every graph compiled against them. Cloning
/// shares the buffers.
#[derive(Clone)]
pub struct Weights {
    gpu: Arc<Gpu>,
    map: HashMap<String, (Arc<TrackedBuffer>, Vec<usize>, DType)>,
    bytes: u64,
    dtype: DType,
}

impl Weights {
    /// An empty set on `gpu`.
    pub fn new(gpu: &Arc<Gpu>) -> Self {
        Self::new_as(gpu, DType::F32)
    }

    /// An empty set whose [`Weights::insert`] stores `dtype`.
    pub fn new_as(gpu: &Arc<Gpu>, dtype: DType) -> Self {
        Weights { gpu: gpu.clone(), map: HashMap::new(), bytes: 0, dtype }
    }

    /// Uploads one tensor (replacing any of the same name), stored in the set's dtype (f32
    /// unless created with [`Weights::new_as`]).
    pub fn insert(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert_as(name, shape, data, self.dtype)
    }

    /// Uploads one tensor stored as `dtype` (f16: rounded to nearest; needs `shader-f16`).
    pub fn insert_as(&mut self, name: &str, shape: &[usize], data: &[f32], dtype: DType) -> Result<()> {
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel != Some(data.len()) || data.is_empty() {
            return Err(Error::Weight {
                name: name.into(),
                problem: format!("shape {} does not match {} values", fmt_shape(shape), data.len()),
            });
        }
        if dtype == DType::F16 && !self.gpu.features.contains(wgpu::Features::SHADER_F16) {
            return Err(Error::UnsupportedDtype {
                op: "weights".into(),
                tensor: name.into(),
                dtype: "f16".into(),
                supported: "f32 (this adapter has no shader-f16)".into(),
            });
        }
        let raw: Vec<u8> = match dtype {
            DType::F32 => bytemuck::cast_slice(data).to_vec(),
            DType::F16 => {
                let mut h: Vec<u16> = data.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
                if h.len() % 2 == 1 {
                    h.push(0);
                }
                bytemuck::cast_slice(&h).to_vec()
            }
        };
        let bytes = raw.len() as u64;
        self.gpu.check_lost()?;
        check_binding(&self.gpu, "weights", name, bytes)?;
        let buffer = self.gpu.tracked_buffer(
            &format!("weight `{name}`"),
            &wgpu::BufferDescriptor {
                label: Some(name),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            },
        )?;
        self.gpu.queue.write_buffer(&buffer, 0, &raw);
        let buffer = Arc::new(buffer);
        if let Some((old, _, _)) = self.map.insert(name.into(), (buffer, shape.to_vec(), dtype)) {
            self.bytes -= old.size();
        }
        self.bytes += bytes;
        Ok(())
    }

    /// Total bytes on the GPU.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no weight was uploaded.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn scratch_desc(bytes: u64) -> wgpu::BufferDescriptor<'static> {
    wgpu::BufferDescriptor { label: Some("tessera split-K scratch"), size: bytes, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false }
}

fn check_binding(gpu: &Gpu, op: &str, tensor: &str, bytes: u64) -> Result<()> {
    let l = gpu.limits();
    let max_binding = l.max_storage_buffer_binding_size;
    if bytes > max_binding {
        return Err(Error::LimitExceeded {
            op: op.into(),
            tensor: tensor.into(),
            limit: "max_storage_buffer_binding_size",
            required: bytes,
            max: max_binding,
        });
    }
    if bytes > l.max_buffer_size {
        return Err(Error::LimitExceeded {
            op: op.into(),
            tensor: tensor.into(),
            limit: "max_buffer_size",
            required: bytes,
            max: l.max_buffer_size,
        });
    }
    Ok(())
}

/// Compile-time choices.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// Record GPU timestamps around every op (needs `timestamp-query`).
    pub profile: bool,
}

/// A tensor read back from the GPU.
#[derive(Clone, Debug)]
pub struct HostTensor {
    /// The graph tensor's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: Vec<f32>,
}

/// How the arena was packed.
#[derive(Clone, Debug)]
pub struct PlanReport {
    /// Arena bytes.
    pub arena: u64,
    /// Bytes without sharing (every input and activation its own range).
    pub naive: u64,
    /// Most bytes live at one step.
    pub peak_live: u64,
    /// Weight bytes bound by the graph.
    pub weights: u64,
}

impl std::fmt::Display for PlanReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        write!(
            f,
            "arena {:.2} MiB (unshared {:.2} MiB, peak live {:.2} MiB), weights {:.2} MiB",
            mib(self.arena),
            mib(self.naive),
            mib(self.peak_live),
            mib(self.weights)
        )
    }
}

/// GPU time of one op.
#[derive(Clone, Debug)]
pub struct OpTiming {
    /// Node name.
    pub name: String,
    /// Op kind.
    pub kind: &'static str,
    /// Output shape.
    pub shape: String,
    /// Milliseconds.
    pub ms: f64,
    /// Floating-point throughput (0 for data movement ops).
    pub gflops: f64,
}

/// Per-op GPU times of one run.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// In schedule order.
    pub ops: Vec<OpTiming>,
}

impl Profile {
    /// Sum of the op times.
    pub fn total_ms(&self) -> f64 {
        self.ops.iter().map(|o| o.ms).sum()
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<28} {:<12} {:<18} {:>10} {:>10}", "op", "kind", "shape", "ms", "GFLOP/s")?;
        for o in &self.ops {
            let g = if o.gflops > 0.0 { format!("{:.1}", o.gflops) } else { "-".into() };
            writeln!(f, "{:<28} {:<12} {:<18} {:>10.4} {:>10}", o.name, o.kind, o.shape, o.ms, g)?;
        }
        write!(f, "{:<28} {:<12} {:<18} {:>10.4}", "total", "", "", self.total_ms())
    }
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

struct Slot {
    name: String,
    shape: Vec<usize>,
    dtype: DType,
    offset: u64,
    bytes: u64,
}

struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
}

/// A graph compiled for one set of input shapes on one device.
pub struct Executable {
    gpu: Arc<Gpu>,
    steps: Vec<Step>,
    arena: TrackedBuffer,
    inputs: Vec<Slot>,
    outputs: Vec<Slot>,
    readback_bytes: u64,
    staging: Mutex<Vec<TrackedBuffer>>,
    // Held from writing the inputs to submitting, so that concurrent runs (other threads) cannot
    // interleave their input writes with this run's submit. Never held across an await.
    submit: Mutex<()>,
    profiler: Option<Profiler>,
    report: PlanReport,
    // Bind groups reference these: kept alive (and counted in the memory ledger) with the graph,
    // whatever happens to the `Weights` they came from.
    _uniforms: TrackedBuffer,
    _scratch: Option<TrackedBuffer>,
    _weights: Vec<Arc<TrackedBuffer>>,
}

/// Lifetimes of every arena tensor (inputs and activations) that is used at all, in the schedule
/// `order`: the tensor ids and their (first step, last step, bytes).
fn arena_intervals(graph: &Graph, order: &[usize]) -> Result<(Vec<usize>, Vec<Interval>)> {
    let tensors = graph.tensors();
    let nodes = graph.nodes();
    let steps = order.len();
    let mut first: HashMap<usize, usize> = HashMap::new();
    let mut last: HashMap<usize, usize> = HashMap::new();
    for (s, &i) in order.iter().enumerate() {
        let n = &nodes[i];
        for &t in &n.inputs {
            if tensors[t.0].kind != TensorKind::Weight {
                last.insert(t.0, s);
            }
        }
        first.insert(n.output.0, s);
        last.entry(n.output.0).or_insert(s);
    }
    for (t, info) in tensors.iter().enumerate() {
        if info.kind == TensorKind::Input {
            first.insert(t, 0);
            last.entry(t).or_insert(0);
        }
    }
    for &o in graph.outputs() {
        last.insert(o.0, steps);
    }
    let mut arena_ids: Vec<usize> = first.keys().copied().collect();
    arena_ids.sort_unstable();
    let mut intervals = Vec::with_capacity(arena_ids.len());
    for &t in &arena_ids {
        let info = &tensors[t];
        let size = info.bytes().ok_or_else(|| Error::LimitExceeded {
            op: "arena".into(),
            tensor: info.name.clone(),
            limit: "max_buffer_size",
            required: u64::MAX,
            max: u64::MAX,
        })?;
        if info.shape.is_empty() || info.shape.contains(&0) {
            return Err(Error::Shape {
                op: "graph".into(),
                tensor: info.name.clone(),
                expected: "a non-empty shape with no zero dimension".into(),
                actual: fmt_shape(&info.shape),
            });
        }
        intervals.push(Interval { first: first[&t], last: last[&t], size });
    }
    Ok((arena_ids, intervals))
}

/// How a graph's activations would be packed, without a GPU: the arena (offsets `align`ed, as
/// devices require 256), the unshared total, the largest set of tensors live at once, and the
/// weights' bytes. [`Executable::compile`] packs exactly so on a device with that alignment.
pub fn plan_graph(graph: &Graph, align: u64) -> Result<PlanReport> {
    let order = schedule(graph)?;
    let (_, intervals) = arena_intervals(graph, &order)?;
    let plan = plan_memory(&intervals, align.max(16));
    let weights = graph.tensors().iter().filter(|t| t.kind == TensorKind::Weight).filter_map(|t| t.bytes()).sum();
    Ok(PlanReport { arena: plan.arena, naive: plan.naive, peak_live: plan.peak_live, weights })
}

/// Topological order of the nodes (ties broken by insertion order), after checking that every
/// activation is written exactly once, nothing reads an unwritten activation, and outputs exist.
pub(crate) fn schedule(graph: &Graph) -> Result<Vec<usize>> {
    let tensors = graph.tensors();
    let nodes = graph.nodes();
    let check_id = |t: TensorId, node: &str| -> Result<()> {
        if t.0 >= tensors.len() {
            return Err(Error::InvalidGraph(format!("node `{node}` refers to tensor #{} that does not exist", t.0)));
        }
        Ok(())
    };
    let mut producer: Vec<Option<usize>> = vec![None; tensors.len()];
    for (i, n) in nodes.iter().enumerate() {
        check_id(n.output, &n.name)?;
        for &t in &n.inputs {
            check_id(t, &n.name)?;
        }
        let out = &tensors[n.output.0];
        if out.kind != TensorKind::Activation {
            return Err(Error::InvalidGraph(format!(
                "node `{}` writes `{}`, which is a graph {}",
                n.name,
                out.name,
                if out.kind == TensorKind::Input { "input" } else { "weight" }
            )));
        }
        if let Some(p) = producer[n.output.0] {
            return Err(Error::InvalidGraph(format!(
                "tensor `{}` is written by both `{}` and `{}`",
                out.name, nodes[p].name, n.name
            )));
        }
        producer[n.output.0] = Some(i);
    }
    for n in nodes {
        for &t in &n.inputs {
            let info = &tensors[t.0];
            if info.kind == TensorKind::Activation && producer[t.0].is_none() {
                return Err(Error::InvalidGraph(format!(
                    "node `{}` reads `{}`, which no node writes (a dangling tensor)",
                    n.name, info.name
                )));
            }
        }
    }
    if graph.outputs().is_empty() {
        return Err(Error::InvalidGraph("the graph has no outputs".into()));
    }
    for &o in graph.outputs() {
        check_id(o, "outputs")?;
        let info = &tensors[o.0];
        match info.kind {
            TensorKind::Weight => {
                return Err(Error::InvalidGraph(format!("output `{}` is a weight", info.name)));
            }
            TensorKind::Activation if producer[o.0].is_none() => {
                return Err(Error::InvalidGraph(format!("output `{}` is never written", info.name)));
            }
            _ => {}
        }
    }

    // Kahn's algorithm over node dependencies.
    let mut deps = vec![0usize; nodes.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for &t in &n.inputs {
            if let Some(p) = producer[t.0] {
                if seen.insert(p) {
                    deps[i] += 1;
                    users[p].push(i);
                }
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..nodes.len()).filter(|&i| deps[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            deps[u] -= 1;
            if deps[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck: Vec<&str> =
            (0..nodes.len()).filter(|i| deps[*i] > 0).map(|i| nodes[i].name.as_str()).collect();
        return Err(Error::InvalidGraph(format!("the graph has a cycle through {}", stuck.join(", "))));
    }
    Ok(order)
}

impl Executable {
    /// Compiles `graph` against `weights` (every weight tensor of the graph must be there, with
    /// its shape).
    pub async fn compile(gpu: &Arc<Gpu>, graph: &Graph, weights: &Weights, opts: &CompileOptions) -> Result<Self> {
        gpu.check_lost()?;
        let order = schedule(graph)?;
        let tensors = graph.tensors();
        let nodes = graph.nodes();

        // Shapes, checked again for nodes added with `add_node`.
        for &i in &order {
            let n = &nodes[i];
            let infos: Vec<&TensorInfo> = n.inputs.iter().map(|t| &tensors[t.0]).collect();
            let shape = n.op.output_shape(&n.name, &infos)?;
            let out = &tensors[n.output.0];
            let dtype = n.op.storage_dtype(&infos);
            if out.dtype != dtype {
                return Err(Error::UnsupportedDtype {
                    op: n.name.clone(),
                    tensor: out.name.clone(),
                    dtype: out.dtype.to_string(),
                    supported: format!("{dtype} (the dtype of the node's inputs)"),
                });
            }
            if shape != out.shape {
                return Err(Error::Shape {
                    op: n.name.clone(),
                    tensor: out.name.clone(),
                    expected: fmt_shape(&shape),
                    actual: fmt_shape(&out.shape),
                });
            }
        }

        // f16 storage needs the feature; inputs are written from f32 host data.
        for t in tensors {
            if t.dtype == DType::F16 && !gpu.features.contains(wgpu::Features::SHADER_F16) {
                return Err(Error::UnsupportedDtype {
                    op: "graph".into(),
                    tensor: t.name.clone(),
                    dtype: "f16".into(),
                    supported: "f32 (this adapter has no shader-f16)".into(),
                });
            }
            if t.kind == TensorKind::Input && t.dtype != DType::F32 {
                return Err(Error::UnsupportedDtype {
                    op: "graph".into(),
                    tensor: t.name.clone(),
                    dtype: t.dtype.to_string(),
                    supported: "f32 (graph inputs)".into(),
                });
            }
        }

        let (arena_ids, intervals) = arena_intervals(graph, &order)?;
        for (&t, iv) in arena_ids.iter().zip(&intervals) {
            check_binding(gpu, "arena", &tensors[t].name, iv.size)?;
        }
        let align = (gpu.limits().min_storage_buffer_offset_alignment as u64).max(16);
        let plan: MemoryPlan = plan_memory(&intervals, align);
        if plan.arena > gpu.limits().max_buffer_size {
            return Err(Error::LimitExceeded {
                op: "arena".into(),
                tensor: "all activations".into(),
                limit: "max_buffer_size",
                required: plan.arena,
                max: gpu.limits().max_buffer_size,
            });
        }
        let offset_of: HashMap<usize, u64> =
            arena_ids.iter().enumerate().map(|(k, &t)| (t, plan.offsets[k])).collect();

        // Bind every weight by name.
        let mut weight_bytes = 0u64;
        let mut weight_seen = BTreeSet::new();
        let mut held_weights = Vec::new();
        for n in nodes {
            for &t in &n.inputs {
                let info = &tensors[t.0];
                if info.kind != TensorKind::Weight {
                    continue;
                }
                match weights.map.get(&info.name) {
                    None => {
                        return Err(Error::Weight { name: info.name.clone(), problem: "not uploaded".into() });
                    }
                    Some((buf, shape, dtype)) => {
                        if *dtype != info.dtype {
                            return Err(Error::Weight {
                                name: info.name.clone(),
                                problem: format!("uploaded as {dtype}, the graph stores it as {}", info.dtype),
                            });
                        }
                        if *shape != info.shape {
                            return Err(Error::Weight {
                                name: info.name.clone(),
                                problem: format!(
                                    "uploaded with shape {}, the graph needs {}",
                                    fmt_shape(shape),
                                    fmt_shape(&info.shape)
                                ),
                            });
                        }
                        if weight_seen.insert(t.0) {
                            weight_bytes += buf.size();
                            held_weights.push(buf.clone());
                        }
                    }
                }
            }
        }

        let device = &gpu.device;
        let what = format!(
            "the activations for input {}",
            tensors
                .iter()
                .filter(|t| t.kind == TensorKind::Input)
                .map(|t| format!("`{}` {}", t.name, fmt_shape(&t.shape)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let readback_estimate = graph.outputs().iter().filter_map(|o| tensors[o.0].bytes()).sum::<u64>().div_ceil(8) * 8;
        gpu.check_memory(&what, plan.arena + readback_estimate)?;
        let arena = gpu.tracked_buffer(
            &what,
            &wgpu::BufferDescriptor {
                label: Some("tessera arena"),
                size: plan.arena.max(16),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            },
        )?;

        // The bind group of a kernel for node `n`, its uniforms at `uoff` in `ubuf`; `scratch`
        // (buffer, binding, bytes) for the dispatches of a split kernel: at binding 1 (then the
        // node's output is not bound) for the first, at 2 for the finishing one.
        let make_bind_group = |pipeline: &wgpu::ComputePipeline,
                               k: &Kernel,
                               n: &crate::graph::ir::Node,
                               ubuf: &wgpu::Buffer,
                               uoff: u64,
                               scratch: Option<(&wgpu::Buffer, u32, u64)>| {
            let binding = |t: TensorId| -> wgpu::BindingResource<'_> {
                let info = &tensors[t.0];
                let size = info.bytes().unwrap_or(0);
                if info.kind == TensorKind::Weight {
                    // Checked above: present.
                    let (buf, _, _) = &weights.map[&info.name];
                    buf.as_entire_binding()
                } else {
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &arena,
                        offset: offset_of[&t.0],
                        size: wgpu::BufferSize::new(size),
                    })
                }
            };
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: ubuf,
                    offset: uoff,
                    size: wgpu::BufferSize::new(k.params.len() as u64 * 4),
                }),
            }];
            if let Some((buf, b, bytes)) = scratch {
                entries.push(wgpu::BindGroupEntry {
                    binding: b,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: buf, offset: 0, size: wgpu::BufferSize::new(bytes) }),
                });
            }
            if scratch.is_none_or(|(_, b, _)| b != 1) {
                entries.push(wgpu::BindGroupEntry { binding: 1, resource: binding(n.output) });
            }
            for (&t, &b) in n.inputs.iter().zip(&k.input_bindings) {
                if b != 0 {
                    entries.push(wgpu::BindGroupEntry { binding: b, resource: binding(t) });
                }
            }
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&n.name),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        };
        let max_groups = gpu.limits().max_compute_workgroups_per_dimension;
        // Whether this device can run a candidate kernel at all.
        let runnable = |k: &Kernel| {
            let one = |k: &Kernel| {
                k.workgroups.iter().all(|&g| g <= max_groups)
                    && k.shader.subgroup_size_needed().is_none_or(|g| gpu.subgroup_min_size >= g)
                    && k.shader.workgroup_storage() <= gpu.limits().max_compute_workgroup_storage_size
            };
            k.dispatches().iter().all(|(d, _)| one(d)) && k.scratch() <= gpu.limits().max_storage_buffer_binding_size
        };

        // Kernels: each op's heuristic choice, or with tuning on, the fastest candidate (timed
        // here on this graph's buffers unless this adapter already timed the shape).
        let mut kernels: Vec<Kernel> = Vec::with_capacity(order.len());
        for &i in &order {
            let n = &nodes[i];
            let infos: Vec<&TensorInfo> = n.inputs.iter().map(|t| &tensors[t.0]).collect();
            let out = &tensors[n.output.0];
            let (rows, cols) = n.op.result_matrix(out);
            let preferred = if gpu.tune { None } else { gpu.heuristic_kernel(n.op.kind(), rows, cols) };
            if let Some(name) = preferred {
                // The adapter's measured heuristic, where it has one and the op offers that kernel.
                let chosen = n.op.kernel_candidates(&infos, out).and_then(|(_, c)| {
                    c.into_iter().find(|(nm, k)| *nm == name && runnable(k)).map(|(_, k)| k)
                });
                kernels.push(chosen.unwrap_or_else(|| n.op.kernel(&infos, out)));
                continue;
            }
            let candidates = if gpu.tune { n.op.kernel_candidates(&infos, out) } else { None };
            let Some((key, mut cands)) = candidates.filter(|(_, c)| c.len() > 1) else {
                kernels.push(n.op.kernel(&infos, out));
                continue;
            };
            cands.retain(|(_, k)| runnable(k));
            if cands.len() <= 1 {
                kernels.push(cands.pop().map(|(_, k)| k).unwrap_or_else(|| n.op.kernel(&infos, out)));
                continue;
            }
            let cached = lock(&gpu.tuning).get(&key);
            if let Some(pos) = cached.and_then(|c| cands.iter().position(|(name, _)| *name == c)) {
                kernels.push(cands.swap_remove(pos).1);
                continue;
            }
            let mut ms = std::collections::BTreeMap::new();
            let mut best: Option<(f64, usize)> = None;
            for (ci, (name, k)) in cands.iter().enumerate() {
                // A candidate whose scratch the memory budget refuses is not timed.
                let scratch = match k.scratch() {
                    0 => None,
                    bytes => match gpu.tracked_buffer(&format!("the split-K scratch of `{}`", n.name), &scratch_desc(bytes)) {
                        Ok(b) => Some(b),
                        Err(_) => continue,
                    },
                };
                // Each dispatch's uniforms 256 bytes apart (a valid offset on every device).
                let parts = k.dispatches();
                let ubuf = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("tessera tune uniforms"),
                    size: 256 * parts.len() as u64,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let mut prepared = Vec::with_capacity(parts.len());
                for (j, &(d, at)) in parts.iter().enumerate() {
                    let uoff = 256 * j as u64;
                    gpu.queue.write_buffer(&ubuf, uoff, bytemuck::cast_slice(&d.params));
                    let pipeline = gpu.pipeline(&d.shader);
                    let bind = scratch.as_ref().zip(at).map(|(buf, (b, bytes))| (&**buf, b, bytes));
                    let bg = make_bind_group(&pipeline, d, n, &ubuf, uoff, bind);
                    prepared.push((pipeline, bg, d.workgroups));
                }
                let refs: Vec<_> = prepared.iter().map(|(p, bg, g)| (p, bg, *g)).collect();
                let timed = super::tune::time_dispatch(gpu, &refs).await?;
                match timed {
                    Some(t) => {
                        ms.insert(name.to_string(), t);
                        if best.is_none_or(|(b, _)| t < b) {
                            best = Some((t, ci));
                        }
                    }
                    None => {
                        best = None;
                        break;
                    }
                }
            }
            gpu.take_errors("while tuning the kernels")?;
            match best {
                Some((_, ci)) => {
                    let (name, k) = cands.swap_remove(ci);
                    lock(&gpu.tuning).insert(&key, super::tune::TuneEntry { choice: name.to_string(), ms });
                    kernels.push(k);
                }
                None => kernels.push(cands.swap_remove(0).1),
            }
        }
        if gpu.tune {
            lock(&gpu.tuning).save();
        }
        // Every dispatch in run order, with its node and where it binds the scratch.
        let dispatches: Vec<_> =
            kernels.iter().zip(&order).flat_map(|(k, &i)| k.dispatches().into_iter().map(move |(d, at)| (i, d, at))).collect();
        for &(i, k, _) in &dispatches {
            if let Some(&g) = k.workgroups.iter().find(|&&g| g > max_groups) {
                return Err(Error::LimitExceeded {
                    op: nodes[i].name.clone(),
                    tensor: tensors[nodes[i].output.0].name.clone(),
                    limit: "max_compute_workgroups_per_dimension",
                    required: g as u64,
                    max: max_groups as u64,
                });
            }
        }
        // One scratch buffer for every split kernel (they run one after another).
        let scratch_bytes = kernels.iter().map(Kernel::scratch).max().unwrap_or(0);
        let scratch = if scratch_bytes > 0 {
            Some(gpu.tracked_buffer("the split-K scratch", &scratch_desc(scratch_bytes))?)
        } else {
            None
        };
        let ualign = gpu.limits().min_uniform_buffer_offset_alignment.max(16) as u64;
        let slot_size = dispatches.iter().map(|(_, k, _)| k.params.len() as u64 * 4).max().unwrap_or(16).div_ceil(ualign) * ualign;
        let mut udata = vec![0u8; (slot_size * dispatches.len().max(1) as u64) as usize];
        for (s, (_, k, _)) in dispatches.iter().enumerate() {
            let off = s * slot_size as usize;
            let bytes: &[u8] = bytemuck::cast_slice(&k.params);
            udata[off..off + bytes.len()].copy_from_slice(bytes);
        }
        let uniforms = gpu.tracked_buffer(
            "graph uniforms",
            &wgpu::BufferDescriptor {
                label: Some("tessera uniforms"),
                size: udata.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            },
        )?;
        gpu.queue.write_buffer(&uniforms, 0, &udata);

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut built = Vec::with_capacity(dispatches.len());
        for (s, &(i, k, at)) in dispatches.iter().enumerate() {
            let n = &nodes[i];
            let pipeline = gpu.pipeline(&k.shader);
            let bind = scratch.as_ref().zip(at).map(|(buf, (b, bytes))| (&**buf, b, bytes));
            let bind_group = make_bind_group(&pipeline, k, n, &uniforms, s as u64 * slot_size, bind);
            let finishing = matches!(at, Some((2, _)));
            built.push(Step {
                name: if finishing { format!("{} (reduce)", n.name) } else { n.name.clone() },
                variant: k.shader.key.clone(),
                kind: if finishing { "reduce" } else { n.op.kind() },
                shape: fmt_shape(&tensors[n.output.0].shape),
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
            name: tensors[t].name.clone(),
            shape: tensors[t].shape.clone(),
            dtype: tensors[t].dtype,
            offset: offset_of[&t],
            bytes: tensors[t].bytes().unwrap_or(0),
        };
        let inputs: Vec<Slot> = (0..tensors.len())
            .filter(|&t| tensors[t].kind == TensorKind::Input && offset_of.contains_key(&t))
            .map(slot)
            .collect();
        let outputs: Vec<Slot> = graph.outputs().iter().map(|o| slot(o.0)).collect();
        let readback_bytes = outputs.iter().map(|o| o.bytes).sum::<u64>().div_ceil(8) * 8;

        let profiler = if opts.profile {
            if !gpu.has_timestamps() {
                return Err(Error::gpu(
                    "while compiling for profiling",
                    "this adapter has no timestamp-query feature; run without profiling",
                ));
            }
            let count = (2 * built.len()).max(2) as u32;
            if count > wgpu::QUERY_SET_MAX_QUERIES {
                return Err(Error::LimitExceeded {
                    op: "profile".into(),
                    tensor: "timestamp queries".into(),
                    limit: "QUERY_SET_MAX_QUERIES",
                    required: count as u64,
                    max: wgpu::QUERY_SET_MAX_QUERIES as u64,
                });
            }
            let bytes = count as u64 * 8;
            Some(Profiler {
                queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("tessera timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                }),
                resolve: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("tessera timestamp resolve"),
                    size: bytes,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                readback: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("tessera timestamp readback"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
            })
        } else {
            None
        };
        gpu.take_errors("while compiling the graph")?;

        Ok(Executable {
            gpu: gpu.clone(),
            steps: built,
            arena,
            inputs,
            outputs,
            readback_bytes,
            staging: Mutex::new(Vec::new()),
            submit: Mutex::new(()),
            profiler,
            report: PlanReport { arena: plan.arena, naive: plan.naive, peak_live: plan.peak_live, weights: weight_bytes },
            _uniforms: uniforms,
            _scratch: scratch,
            _weights: held_weights,
        })
    }

    /// How the arena was packed.
    pub fn plan(&self) -> &PlanReport {
        &self.report
    }

    /// GPU time of `repeats` back-to-back runs on the inputs (written once), in ms per run: one
    /// submit, a timestamp before the first dispatch and after the last, no host round trip
    /// between runs, so the GPU stays busy and its clocks steady. Needs `timestamp-query`.
    pub async fn gpu_time_per_run(&self, inputs: &[(&str, &[f32])], repeats: u32) -> Result<f64> {
        if !self.gpu.has_timestamps() {
            return Err(Error::gpu("while timing", "this adapter has no timestamp-query feature"));
        }
        let repeats = repeats.max(1);
        let device = &self.gpu.device;
        let timer = super::tune::PassTimer::new(device);
        let guard = lock(&self.submit);
        self.write_inputs(inputs)?;
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera timing") });
        {
            let mut pass = timer.pass(&mut enc);
            for _ in 0..repeats {
                for s in &self.steps {
                    s.record(&mut pass);
                }
            }
        }
        timer.finish(&mut enc);
        self.gpu.queue.submit([enc.finish()]);
        drop(guard);
        let ms = timer.ms(&self.gpu).await?;
        self.gpu.take_errors("while timing")?;
        Ok(ms / repeats as f64)
    }

    /// Each dispatch's node name and shader variant, in run order (which kernel the heuristics or
    /// the autotuner chose).
    pub fn kernels(&self) -> Vec<(String, String)> {
        self.steps.iter().map(|s| (s.name.clone(), s.variant.clone())).collect()
    }

    /// Number of dispatches per run.
    pub fn num_steps(&self) -> usize {
        self.steps.len()
    }

    /// Names and shapes of the inputs `run` expects.
    pub fn inputs(&self) -> Vec<(String, Vec<usize>)> {
        self.inputs.iter().map(|s| (s.name.clone(), s.shape.clone())).collect()
    }

    /// Runs once: uploads `inputs` (by name), records every op into one encoder, submits once
    /// and reads back the graph outputs, in the order they were marked.
    pub async fn run(&self, inputs: &[(&str, &[f32])]) -> Result<Vec<HostTensor>> {
        Ok(self.run_inner(inputs, false).await?.0)
    }

    /// Like [`Executable::run`], with GPU timestamps per op (compile with `profile: true`).
    pub async fn run_profiled(&self, inputs: &[(&str, &[f32])]) -> Result<(Vec<HostTensor>, Profile)> {
        let (out, profile) = self.run_inner(inputs, true).await?;
        Ok((out, profile.unwrap_or_default()))
    }

    /// Native convenience: [`Executable::run`] blocking on the current thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_blocking(&self, inputs: &[(&str, &[f32])]) -> Result<Vec<HostTensor>> {
        pollster::block_on(self.run(inputs))
    }

    fn write_inputs(&self, inputs: &[(&str, &[f32])]) -> Result<()> {
        for (name, _) in inputs {
            if !self.inputs.iter().any(|s| s.name == *name) {
                let known: Vec<&str> = self.inputs.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::Input {
                    name: name.to_string(),
                    problem: format!("the graph has no such input (inputs: {})", known.join(", ")),
                });
            }
        }
        for s in &self.inputs {
            let data = inputs.iter().find(|(n, _)| *n == s.name).map(|(_, d)| *d).ok_or_else(|| Error::Input {
                name: s.name.clone(),
                problem: "missing".into(),
            })?;
            if data.len() as u64 * 4 != s.bytes {
                return Err(Error::Input {
                    name: s.name.clone(),
                    problem: format!("got {} values, shape {} needs {}", data.len(), fmt_shape(&s.shape), s.bytes / 4),
                });
            }
            self.gpu.queue.write_buffer(&self.arena, s.offset, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    async fn run_inner(&self, inputs: &[(&str, &[f32])], profile: bool) -> Result<(Vec<HostTensor>, Option<Profile>)> {
        let profiler = match (profile, &self.profiler) {
            (false, _) => None,
            (true, Some(p)) => Some(p),
            (true, None) => {
                return Err(Error::gpu("while profiling", "the graph was compiled without `profile: true`"));
            }
        };
        self.gpu.check_lost()?;
        let guard = lock(&self.submit);
        self.write_inputs(inputs)?;
        let device = &self.gpu.device;
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera run") });
        match profiler {
            None => {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tessera"), timestamp_writes: None });
                for s in &self.steps {
                    s.record(&mut pass);
                }
            }
            Some(p) => {
                // One pass per op: pass-level timestamps work on every adapter with timestamp-query.
                for (i, s) in self.steps.iter().enumerate() {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(&s.name),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &p.queries,
                            beginning_of_pass_write_index: Some(2 * i as u32),
                            end_of_pass_write_index: Some(2 * i as u32 + 1),
                        }),
                    });
                    s.record(&mut pass);
                }
                let n = (2 * self.steps.len()) as u32;
                enc.resolve_query_set(&p.queries, 0..n, &p.resolve, 0);
                enc.copy_buffer_to_buffer(&p.resolve, 0, &p.readback, 0, n as u64 * 8);
            }
        }
        let staging = self.take_staging()?;
        let mut at = 0u64;
        for o in &self.outputs {
            enc.copy_buffer_to_buffer(&self.arena, o.offset, &staging, at, o.bytes);
            at += o.bytes;
        }
        self.gpu.queue.submit([enc.finish()]);
        drop(guard);
        let data = read_buffer(&self.gpu, &staging, self.readback_bytes).await;
        self.give_back_staging(staging);
        // A readback that failed because the device went away reports the loss.
        let data: Vec<u8> = match data {
            Ok(d) => d,
            Err(e) => {
                self.gpu.check_lost()?;
                return Err(e);
            }
        };
        self.gpu.take_errors("while running the graph")?;

        let mut out = Vec::with_capacity(self.outputs.len());
        let mut at = 0usize;
        for o in &self.outputs {
            let bytes = &data[at..at + o.bytes as usize];
            let numel: usize = o.shape.iter().product();
            let values: Vec<f32> = match o.dtype {
                DType::F32 => bytemuck::pod_collect_to_vec(&bytes[..numel * 4]),
                DType::F16 => bytes[..numel * 2]
                    .chunks_exact(2)
                    .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                    .collect(),
            };
            out.push(HostTensor { name: o.name.clone(), shape: o.shape.clone(), data: values });
            at += o.bytes as usize;
        }

        let profile = match profiler {
            None => None,
            Some(p) => {
                let n = 2 * self.steps.len() as u64;
                let bytes = read_buffer(&self.gpu, &p.readback, n * 8).await?;
                let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
                let period = self.gpu.queue.get_timestamp_period() as f64;
                let ops = self
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let ms = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period / 1e6;
                        OpTiming {
                            name: s.name.clone(),
                            kind: s.kind,
                            shape: s.shape.clone(),
                            ms,
                            gflops: if ms > 0.0 { s.flops / (ms * 1e6) } else { 0.0 },
                        }
                    })
                    .collect();
                Some(Profile { ops })
            }
        };
        Ok((out, profile))
    }

    fn take_staging(&self) -> Result<TrackedBuffer> {
        let pooled = lock(&self.staging).pop();
        match pooled {
            Some(b) => Ok(b),
            None => self.gpu.tracked_buffer(
                "the readback buffer",
                &wgpu::BufferDescriptor {
                    label: Some("tessera readback"),
                    size: self.readback_bytes.max(8),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                },
            ),
        }
    }

    fn give_back_staging(&self, b: TrackedBuffer) {
        lock(&self.staging).push(b);
    }
}
