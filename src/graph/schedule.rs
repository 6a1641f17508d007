//! The backend-independent part of compiling a graph: checking it, ordering its nodes, and
//! packing its inputs and activations into one arena by lifetime. Pure functions: no device.

use super::ir::{Graph, TensorId, TensorKind};
use super::plan::{plan_memory, Interval, MemoryPlan};
use super::report::PlanReport;
use crate::error::{Error, Result};
use crate::tensor::{fmt_shape, DType, TensorInfo};
use std::collections::{BTreeSet, HashMap};

/// A checked graph in run order with its arena packed.
pub(crate) struct Layout {
    /// Node indices in run order.
    pub order: Vec<usize>,
    /// Arena offset of every input and activation that is used.
    pub offsets: HashMap<usize, u64>,
    /// The packing.
    pub plan: MemoryPlan,
    /// (tensor id, bytes) of each arena tensor.
    pub sizes: Vec<(usize, u64)>,
}

/// Checks `graph` (structure, every node's dtypes and shapes), orders it and packs its arena with
/// offsets aligned to `align`.
pub(crate) fn layout(graph: &Graph, align: u64) -> Result<Layout> {
    let order = schedule(graph)?;
    check_nodes(graph, &order)?;
    let (arena_ids, intervals) = arena_intervals(graph, &order)?;
    let plan = plan_memory(&intervals, align.max(16));
    let offsets = arena_ids.iter().enumerate().map(|(k, &t)| (t, plan.offsets[k])).collect();
    let sizes = arena_ids.iter().zip(&intervals).map(|(&t, iv)| (t, iv.size)).collect();
    Ok(Layout { order, offsets, plan, sizes })
}

/// Every node's dtypes and shapes checked again (nodes added with `add_node` were not), and the
/// graph's inputs f32.
fn check_nodes(graph: &Graph, order: &[usize]) -> Result<()> {
    let tensors = graph.tensors();
    let nodes = graph.nodes();
    for &i in order {
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

    // Inputs are written from f32 host data.
    for t in tensors {
        if t.kind == TensorKind::Input && t.dtype != DType::F32 {
            return Err(Error::UnsupportedDtype {
                op: "graph".into(),
                tensor: t.name.clone(),
                dtype: t.dtype.to_string(),
                supported: "f32 (graph inputs)".into(),
            });
        }
    }
    Ok(())
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
/// weights' bytes. [`crate::Executable::compile`] packs exactly so on a device with that alignment.
pub fn plan_graph(graph: &Graph, align: u64) -> Result<PlanReport> {
    let l = layout(graph, align)?;
    let weights = graph.tensors().iter().filter(|t| t.kind == TensorKind::Weight).filter_map(|t| t.bytes()).sum();
    Ok(PlanReport { arena: l.plan.arena, naive: l.plan.naive, peak_live: l.plan.peak_live, weights })
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

