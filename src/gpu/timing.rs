//! GPU time of compute dispatches from timestamp queries (or the wall clock natively where the
//! adapter has none), for the profiler, the autotuner and the benchmarks.

use super::{read_buffer, Gpu};
use crate::error::Result;

/// Dispatches per timed submit, and timed submits per candidate (the minimum is kept).
const REPS: u32 = 5;
const TRIALS: usize = 3;

/// GPU time of one compute pass from timestamp queries: `pass` begins a pass that writes them,
/// `finish` resolves them into `enc`, and after the submit `ms` reads the time.
pub(crate) struct PassTimer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
}

impl PassTimer {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let buffer = |usage| device.create_buffer(&wgpu::BufferDescriptor { label: Some("tessera timing"), size: 16, usage, mapped_at_creation: false });
        PassTimer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("tessera timing"), ty: wgpu::QueryType::Timestamp, count: 2 }),
            resolve: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            readback: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
        }
    }

    pub(crate) fn pass<'e>(&self, enc: &'e mut wgpu::CommandEncoder) -> wgpu::ComputePass<'e> {
        enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("tessera timing"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &self.queries,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            }),
        })
    }

    pub(crate) fn finish(&self, enc: &mut wgpu::CommandEncoder) {
        enc.resolve_query_set(&self.queries, 0..2, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, 16);
    }

    pub(crate) async fn ms(&self, gpu: &Gpu) -> Result<f64> {
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&read_buffer(gpu, &self.readback, 16).await?);
        Ok(ticks[1].saturating_sub(ticks[0]) as f64 * gpu.queue.get_timestamp_period() as f64 / 1e6)
    }
}

/// GPU time of one kernel (ms): its dispatches (one, or two for split kernels) in order, the
/// minimum over a few submits of several back-to-back repetitions; None where it cannot be timed
/// (no timestamp queries in the browser).
pub(crate) async fn time_dispatches(gpu: &Gpu, dispatches: &[(&wgpu::ComputePipeline, &wgpu::BindGroup, [u32; 3])]) -> Result<Option<f64>> {
    let device = &gpu.device;
    let record = |pass: &mut wgpu::ComputePass<'_>, reps: u32| {
        for _ in 0..reps {
            for (pipeline, bind_group, groups) in dispatches {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, *bind_group, &[]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            }
        }
    };
    // Warm-up (first use of the pipeline).
    let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera tune") });
    record(&mut enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tessera tune"), timestamp_writes: None }), 1);
    gpu.queue.submit([enc.finish()]);
    gpu.poll_wait()?;
    let mut best = f64::INFINITY;
    if gpu.has_timestamps() {
        let timer = PassTimer::new(device);
        for _ in 0..TRIALS {
            let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera tune") });
            record(&mut timer.pass(&mut enc), REPS);
            timer.finish(&mut enc);
            gpu.queue.submit([enc.finish()]);
            best = best.min(timer.ms(gpu).await? / REPS as f64);
        }
        return Ok(Some(best));
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        for _ in 0..TRIALS {
            let t = std::time::Instant::now();
            let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera tune") });
            record(&mut enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tessera tune"), timestamp_writes: None }), REPS);
            gpu.queue.submit([enc.finish()]);
            gpu.poll_wait()?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3 / REPS as f64);
        }
        Ok(Some(best))
    }
    #[cfg(target_arch = "wasm32")]
    Ok(None)
}

