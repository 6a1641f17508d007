//! Bind groups and uniforms: a kernel's declared bindings resolved to the graph's buffers (the
//! arena range of an activation, a weight's buffer, the split kernels' scratch), and the timer
//! that runs a candidate kernel on them for the autotuner.

use super::super::ir::{Graph, Node, TensorId, TensorKind};
use super::super::select::Timer;
use super::super::weights::Weights;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Access, Kernel, Slot};
use std::collections::HashMap;

/// Where every tensor of a graph lives on the device.
pub(super) struct Buffers<'a> {
    pub gpu: &'a Gpu,
    pub graph: &'a Graph,
    pub weights: &'a Weights,
    pub arena: &'a wgpu::Buffer,
    pub offsets: &'a HashMap<usize, u64>,
}

pub(super) fn scratch_desc(bytes: u64) -> wgpu::BufferDescriptor<'static> {
    wgpu::BufferDescriptor { label: Some("tessera split-K scratch"), size: bytes, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false }
}

impl Buffers<'_> {
    fn resource(&self, t: TensorId) -> wgpu::BindingResource<'_> {
        let info = self.graph.info(t);
        if info.kind == TensorKind::Weight {
            // Checked by `check_weights`: present.
            return self.weights.map[&info.name].0.as_entire_binding();
        }
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.arena,
            offset: self.offsets[&t.index()],
            size: wgpu::BufferSize::new(info.bytes().unwrap_or(0)),
        })
    }

    /// The bind group of dispatch `k` of node `n`: its uniforms at `uoff` in `ubuf` (binding 0),
    /// then its declared bindings in order; `scratch` is the split kernels' buffer.
    pub fn bind_group(&self, pipeline: &wgpu::ComputePipeline, k: &Kernel, n: &Node, ubuf: &wgpu::Buffer, uoff: u64, scratch: Option<&wgpu::Buffer>) -> Result<wgpu::BindGroup> {
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: ubuf, offset: uoff, size: wgpu::BufferSize::new(k.params.len() as u64) }),
        }];
        for (i, b) in k.decl.bindings.iter().enumerate() {
            let resource = match b.slot {
                Slot::Output => self.resource(n.output),
                Slot::Input(j) => self.resource(n.inputs[j]),
                Slot::Scratch => match scratch {
                    Some(s) => s.as_entire_binding(),
                    None => return Err(Error::gpu("while binding", format!("node `{}`: a split kernel without its scratch buffer", n.name))),
                },
            };
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource });
        }
        Ok(self.gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&n.name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        }))
    }
}

/// Each read-only binding of `k` must be given a weight (an arena tensor there would be bound
/// read-only and writable in one dispatch, which WebGPU forbids).
pub(super) fn check_read_only(graph: &Graph, n: &Node, k: &Kernel) -> Result<()> {
    for d in k.dispatches() {
        for b in &d.decl.bindings {
            if let (Slot::Input(j), Access::Read) = (b.slot, b.access) {
                let info = graph.info(n.inputs[j]);
                if info.kind != TensorKind::Weight {
                    return Err(Error::InvalidOp {
                        op: n.name.clone(),
                        problem: format!("input `{}` (the kernel's `{}`) must be a weight: {} kernels read it as one", info.name, b.name, n.op.kind()),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Uniform bytes of every dispatch in one buffer, each at a multiple of the device's uniform
/// offset alignment; returns the buffer and that stride.
pub(super) fn pack_uniforms(gpu: &Gpu, dispatches: &[&Kernel]) -> Result<(crate::gpu::memory::TrackedBuffer, u64)> {
    let ualign = gpu.limits().min_uniform_buffer_offset_alignment.max(16) as u64;
    let slot = dispatches.iter().map(|k| k.params.len() as u64).max().unwrap_or(16).div_ceil(ualign) * ualign;
    let mut data = vec![0u8; (slot * dispatches.len().max(1) as u64) as usize];
    for (s, k) in dispatches.iter().enumerate() {
        let off = s * slot as usize;
        data[off..off + k.params.len()].copy_from_slice(&k.params);
    }
    let buffer = gpu.tracked_buffer(
        "graph uniforms",
        &wgpu::BufferDescriptor {
            label: Some("tessera uniforms"),
            size: data.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        },
    )?;
    gpu.queue.write_buffer(&buffer, 0, &data);
    Ok((buffer, slot))
}

/// Times candidates on the graph's own buffers (the autotuner's clock).
pub(super) struct GpuTimer<'a> {
    pub buffers: &'a Buffers<'a>,
}

impl Timer for GpuTimer<'_> {
    async fn time(&mut self, node: usize, k: &Kernel) -> Result<Option<f64>> {
        let b = self.buffers;
        let n = &b.graph.nodes()[node];
        // A candidate whose scratch the memory budget refuses is not timed.
        let scratch = match k.scratch() {
            0 => None,
            bytes => match b.gpu.tracked_buffer(&format!("the split-K scratch of `{}`", n.name), &scratch_desc(bytes)) {
                Ok(s) => Some(s),
                Err(_) => return Ok(Some(f64::NAN)),
            },
        };
        // Each dispatch's uniforms 256 bytes apart (a valid offset on every device).
        let parts = k.dispatches();
        let ubuf = b.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tessera tune uniforms"),
            size: 256 * parts.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut prepared = Vec::with_capacity(parts.len());
        for (j, d) in parts.iter().enumerate() {
            let uoff = 256 * j as u64;
            b.gpu.queue.write_buffer(&ubuf, uoff, &d.params);
            let pipeline = b.gpu.pipeline(&d.shader().key, &d.shader().source);
            let bg = b.bind_group(&pipeline, d, n, &ubuf, uoff, scratch.as_deref())?;
            prepared.push((pipeline, bg, d.workgroups));
        }
        let refs: Vec<_> = prepared.iter().map(|(p, bg, g)| (p, bg, *g)).collect();
        let t = crate::gpu::timing::time_dispatches(b.gpu, &refs).await?;
        b.gpu.take_errors("while tuning the kernels")?;
        Ok(t)
    }
}
