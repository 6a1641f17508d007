//! Weights on the device, uploaded once by name.

use crate::error::{Error, Result};
use crate::gpu::memory::TrackedBuffer;
use crate::gpu::Gpu;
use crate::tensor::{fmt_shape, DType};
use std::collections::HashMap;
use std::sync::Arc;

/// Weights on the GPU, uploaded once and shared by every graph compiled against them. Cloning
/// shares the buffers.
#[derive(Clone)]
pub struct Weights {
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) map: HashMap<String, (Arc<TrackedBuffer>, Vec<usize>, DType)>,
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
        self.gpu.check_binding("weights", name, bytes)?;
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

