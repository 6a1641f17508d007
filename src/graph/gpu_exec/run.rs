//! Running a compiled graph: inputs written, every step recorded in one encoder, one submit, the
//! outputs copied to a staging buffer and read back once; optionally with per-step timestamps.

use super::{Executable, TrackedBuffer};
use crate::error::{Error, Result};
use crate::gpu::{read_buffer, Gpu};
use crate::graph::report::{HostTensor, OpTiming, Profile};
use crate::lock;
use crate::tensor::{fmt_shape, DType};

/// Timestamp queries around every step of a profiled run.
pub(super) struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
}

impl Profiler {
    pub(super) fn new(gpu: &Gpu, steps: usize) -> Result<Profiler> {
        if !gpu.has_timestamps() {
            return Err(Error::gpu("while compiling for profiling", "this adapter has no timestamp-query feature; run without profiling"));
        }
        let count = (2 * steps).max(2) as u32;
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
        let device = &gpu.device;
        let buffer = |label, usage| device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: bytes, usage, mapped_at_creation: false });
        Ok(Profiler {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("tessera timestamps"), ty: wgpu::QueryType::Timestamp, count }),
            resolve: buffer("tessera timestamp resolve", wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            readback: buffer("tessera timestamp readback", wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
        })
    }
}

impl Executable {
    /// GPU time of `repeats` back-to-back runs on the inputs (written once), in ms per run: one
    /// submit, a timestamp before the first dispatch and after the last, no host round trip
    /// between runs, so the GPU stays busy and its clocks steady. Needs `timestamp-query`.
    pub async fn gpu_time_per_run(&self, inputs: &[(&str, &[f32])], repeats: u32) -> Result<f64> {
        if !self.gpu.has_timestamps() {
            return Err(Error::gpu("while timing", "this adapter has no timestamp-query feature"));
        }
        let repeats = repeats.max(1);
        let device = &self.gpu.device;
        let timer = crate::gpu::timing::PassTimer::new(device);
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
            out.push(HostTensor { id: o.id, name: o.name.clone(), shape: o.shape.clone(), data: values });
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
