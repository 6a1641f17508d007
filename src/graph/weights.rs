//! Weights on the device, uploaded once by name: GPU buffers, or host memory for the CPU
//! backend (which always stores f32).

use super::device::Device;
use crate::cpu::HostWeight;
use crate::error::{Error, Result};
use crate::gpu::memory::TrackedBuffer;
use crate::quant::QuantWeight;
use crate::tensor::{fmt_shape, DType, QuantShape};

use std::collections::HashMap;
use std::sync::Arc;

/// Weights on a device, uploaded once and shared by every graph compiled against them. Cloning
/// shares the buffers.
#[derive(Clone)]
pub struct Weights {
    pub(crate) device: Device,
    pub(crate) map: HashMap<String, (Arc<TrackedBuffer>, Vec<usize>, DType)>,
    pub(crate) host: HashMap<String, Arc<HostWeight>>,
    quant: HashMap<String, QuantShape>,
    bytes: u64,
    dtype: DType,
    arithmetic: crate::quant::Arithmetic,
    int8_layers: usize,
    heads: usize,
}

impl Weights {
    /// An empty set on `device` (a GPU, the CPU backend, or a [`Device`]).
    pub fn new(device: impl Into<Device>) -> Self {
        Self::new_as(device, DType::F32)
    }

    /// An empty set whose [`Weights::insert`] stores `dtype` (the CPU backend stores f32
    /// whatever is asked).
    pub fn new_as(device: impl Into<Device>, dtype: DType) -> Self {
        let device = device.into();
        let dtype = if device.cpu().is_some() { DType::F32 } else { dtype };
        Weights { device, map: HashMap::new(), host: HashMap::new(), quant: HashMap::new(), bytes: 0, dtype, arithmetic: Default::default(), int8_layers: 0, heads: 0 }
    }

    /// How the quantized weights inserted from now on are to be multiplied (on the CPU backend:
    /// [`Arithmetic::Int8`](crate::quant::Arithmetic::Int8) packs the weights that allow it for
    /// the integer kernel; the GPU always dequantizes).
    pub fn set_arithmetic(&mut self, a: crate::quant::Arithmetic) {
        self.arithmetic = a;
    }

    /// The attention heads of the model these weights are for (a split backend then splits the
    /// fused query-key-value weights by heads where they divide between its ranks).
    pub fn set_heads(&mut self, heads: usize) {
        self.heads = heads;
    }

    /// Quantized weights uploaded, and how many of them run in int8 arithmetic.
    pub fn quantized_layers(&self) -> (usize, usize) {
        (self.quant.len(), self.int8_layers)
    }

    /// The device they live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Uploads one tensor (replacing any of the same name), stored in the set's dtype (f32
    /// unless created with [`Weights::new_as`]).
    pub fn insert(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert_as(name, shape, data, self.dtype)
    }

    /// Uploads a matrix product's B, `(K, N)` row-major: on the CPU backend kept only as the
    /// GEMM's panels (and on a split backend only this rank's columns), so it may only be a
    /// matrix product's B; on a GPU as [`Weights::insert`].
    pub fn insert_matrix(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert_panels(name, shape, data, crate::cpu::Split::Columns)
    }

    /// [`Weights::insert_matrix`] for a B whose product a split backend splits along its depth:
    /// each rank holds the rows of its share of the input's columns, and the ranks' partial
    /// products are summed (the MLP's second layer, after a first split by columns).
    pub fn insert_matrix_rows(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert_panels(name, shape, data, crate::cpu::Split::Rows)
    }

    /// [`Weights::insert_matrix`] for a fused query-key-value B `(D, 3 D)`: a split backend whose
    /// ranks divide the heads ([`Weights::set_heads`]) gives each rank its heads' query, key and
    /// value columns, so that its attention needs no other rank's; else as `insert_matrix`.
    pub fn insert_qkv(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert_panels(name, shape, data, crate::cpu::Split::Heads(self.heads))
    }

    /// [`Weights::insert_matrix`] for a B that a split backend keeps whole on every rank (the
    /// patch embedding's, whose product every rank runs).
    pub fn insert_packed(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
        self.insert_panels(name, shape, data, crate::cpu::Split::Whole)
    }

    fn insert_panels(&mut self, name: &str, shape: &[usize], data: &[f32], split: crate::cpu::Split) -> Result<()> {
        let cpu = match (&self.device, shape) {
            (Device::Cpu(cpu), &[k, n]) => (cpu.clone(), k, n),
            _ => return self.insert(name, shape, data),
        };
        let (cpu, k, n) = cpu;
        let w = Arc::new(HostWeight::new_matrix(&cpu, name, k, n, data, split)?);
        self.bytes += w.bytes();
        if let Some(old) = self.host.insert(name.into(), w) {
            self.bytes -= old.bytes();
        }
        self.quant.remove(name);
        Ok(())
    }

    /// Uploads a quantized `(K, N)` matrix (a matrix product's B; see [`crate::quant`]), kept at
    /// its quantized size: on a GPU one buffer of the packed words (padded to 16 bytes) then the
    /// scales (f16 where they all are exactly f16, else f32), read by the quantized GEMM kernels;
    /// on the CPU backend, packed panels with f32 scales.
    pub fn insert_quant(&mut self, name: &str, q: &QuantWeight) -> Result<()> {
        self.insert_quant_split(name, q, crate::cpu::Split::Columns)
    }

    /// [`Weights::insert_quant`] for a fused query-key-value weight: split by heads between a
    /// split backend's ranks where they divide them (as [`Weights::insert_qkv`]).
    pub fn insert_quant_qkv(&mut self, name: &str, q: &QuantWeight) -> Result<()> {
        self.insert_quant_split(name, q, crate::cpu::Split::Heads(self.heads))
    }

    fn insert_quant_split(&mut self, name: &str, q: &QuantWeight, split: crate::cpu::Split) -> Result<()> {
        q.validate(name)?;
        let gpu = match &self.device {
            Device::Cpu(cpu) => {
                let w = Arc::new(HostWeight::new_quant_split(cpu, name, q, self.arithmetic, split)?);
                self.bytes += w.bytes();
                self.int8_layers += w.int8().is_some() as usize;
                if let Some(old) = self.host.insert(name.into(), w) {
                    self.bytes -= old.bytes();
                    self.int8_layers -= old.int8().is_some() as usize;
                }
                self.quant.insert(name.into(), q.shape());
                return Ok(());
            }
            Device::Gpu(g) => g.clone(),
        };
        let shape = q.shape();
        let mut raw: Vec<u32> = Vec::with_capacity(crate::quant::gpu_scale_offset(q.k, q.n, q.bits) + q.scales.len());
        raw.extend_from_slice(&q.words);
        raw.resize(crate::quant::gpu_scale_offset(q.k, q.n, q.bits), 0);
        if shape.f16_scales {
            let half = |s: f32| half::f16::from_f32(s).to_bits() as u32;
            raw.extend(q.scales.chunks(2).map(|p| half(p[0]) | p.get(1).map_or(0, |&s| half(s) << 16)));
        } else {
            raw.extend(q.scales.iter().map(|s| s.to_bits()));
        }
        raw.resize(raw.len().next_multiple_of(4), 0);
        let raw: &[u8] = bytemuck::cast_slice(&raw);
        self.upload(&gpu, name, &[q.k, q.n], raw, self.dtype)?;
        self.quant.insert(name.into(), shape);
        Ok(())
    }

    /// The scheme of a weight uploaded quantized.
    pub fn quant_shape(&self, name: &str) -> Option<QuantShape> {
        self.quant.get(name).copied()
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
        let gpu = match &self.device {
            Device::Cpu(cpu) => {
                let w = Arc::new(HostWeight::new(cpu, name, shape, data.to_vec())?);
                self.bytes += w.bytes();
                if let Some(old) = self.host.insert(name.into(), w) {
                    self.bytes -= old.bytes();
                }
                self.quant.remove(name);
                return Ok(());
            }
            Device::Gpu(g) => g.clone(),
        };
        if dtype == DType::F16 && !gpu.features.contains(wgpu::Features::SHADER_F16) {
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
        self.quant.remove(name);
        self.upload(&gpu, name, shape, &raw, dtype)
    }

    /// One buffer of `raw` bytes as weight `name`.
    fn upload(&mut self, gpu: &Arc<crate::gpu::Gpu>, name: &str, shape: &[usize], raw: &[u8], dtype: DType) -> Result<()> {
        let bytes = raw.len() as u64;
        gpu.check_lost()?;
        gpu.check_binding("weights", name, bytes)?;
        let buffer = gpu.tracked_buffer(
            &format!("weight `{name}`"),
            &wgpu::BufferDescriptor {
                label: Some(name),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            },
        )?;
        gpu.queue.write_buffer(&buffer, 0, raw);
        let buffer = Arc::new(buffer);
        if let Some((old, _, _)) = self.map.insert(name.into(), (buffer, shape.to_vec(), dtype)) {
            self.bytes -= old.size();
        }
        self.bytes += bytes;
        Ok(())
    }

    /// Total bytes on the device.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.map.len() + self.host.len()
    }

    /// Whether no weight was uploaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

