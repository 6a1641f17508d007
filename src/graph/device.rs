//! Where graphs run: a GPU through wgpu, or the CPU backend; and the one choice made for the
//! user (`auto`): a real GPU adapter (discrete, integrated or virtual) when there is one, else the
//! CPU backend, never a software adapter (lavapipe, SwiftShader, WARP), which is far slower than
//! the CPU backend on the same cores. `gpu` takes whatever adapter exists, software ones included.

use crate::cpu::{Cpu, CpuOptions};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, GpuOptions};
use std::sync::Arc;

/// A device that compiles and runs graphs.
#[derive(Clone)]
pub enum Device {
    /// A GPU (or software) adapter through wgpu.
    Gpu(Arc<Gpu>),
    /// The CPU backend.
    Cpu(Arc<Cpu>),
}

impl From<Arc<Gpu>> for Device {
    fn from(g: Arc<Gpu>) -> Device {
        Device::Gpu(g)
    }
}

impl From<&Arc<Gpu>> for Device {
    fn from(g: &Arc<Gpu>) -> Device {
        Device::Gpu(g.clone())
    }
}

impl From<Arc<Cpu>> for Device {
    fn from(c: Arc<Cpu>) -> Device {
        Device::Cpu(c)
    }
}

impl From<&Arc<Cpu>> for Device {
    fn from(c: &Arc<Cpu>) -> Device {
        Device::Cpu(c.clone())
    }
}

impl From<&Device> for Device {
    fn from(d: &Device) -> Device {
        d.clone()
    }
}

/// Which device to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// A real GPU when there is one, else the CPU backend.
    #[default]
    Auto,
    /// A wgpu adapter, software ones included.
    Gpu,
    /// The CPU backend.
    Cpu,
}

impl DeviceChoice {
    /// `auto`, `gpu` (also `webgpu`) or `cpu`.
    pub fn parse(s: &str, from: &str) -> Result<DeviceChoice> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(DeviceChoice::Auto),
            "gpu" | "webgpu" => Ok(DeviceChoice::Gpu),
            "cpu" => Ok(DeviceChoice::Cpu),
            other => Err(Error::Input { name: from.into(), problem: format!("`{other}` is not a device (auto, gpu or cpu)") }),
        }
    }
}

/// Everything that chooses and sets up a device. [`DeviceOptions::from_env`] reads
/// `TESSERA_DEVICE` and the GPU's and the CPU backend's variables.
#[derive(Clone, Debug, Default)]
pub struct DeviceOptions {
    /// Which device.
    pub choice: DeviceChoice,
    /// For a GPU.
    pub gpu: GpuOptions,
    /// For the CPU backend.
    pub cpu: CpuOptions,
}

impl DeviceOptions {
    /// Options from the environment.
    pub fn from_env() -> Result<DeviceOptions> {
        let choice = match std::env::var("TESSERA_DEVICE").ok().filter(|v| !v.is_empty()) {
            Some(v) => DeviceChoice::parse(&v, "TESSERA_DEVICE")?,
            None => DeviceChoice::Auto,
        };
        Ok(DeviceOptions { choice, gpu: GpuOptions::from_env()?, cpu: CpuOptions::from_env()? })
    }
}

/// A device opened by [`Device::open`], and why it was chosen.
pub struct Opened {
    /// The device.
    pub device: Device,
    /// Why: `"asked for"`, `"no GPU adapter"`, `"only a software adapter (llvmpipe ...)"`, ...
    pub reason: String,
}

impl Device {
    /// Opens the device `opts` asks for.
    pub async fn open(opts: &DeviceOptions) -> Result<Opened> {
        crate::check_options(&opts.gpu)?;
        match opts.choice {
            DeviceChoice::Cpu => Ok(Opened { device: Device::Cpu(Cpu::new(&opts.cpu)?), reason: "asked for".into() }),
            DeviceChoice::Gpu => Ok(Opened { device: Device::Gpu(Gpu::new(&opts.gpu).await?), reason: "asked for".into() }),
            DeviceChoice::Auto => match crate::gpu::best_adapter_kind(&opts.gpu).await {
                // An adapter named by the user is used, whatever it is.
                Some((_, name)) if opts.gpu.adapter_name.is_some() => {
                    let gpu = Gpu::new(&opts.gpu).await?;
                    Ok(Opened { device: Device::Gpu(gpu), reason: format!("the adapter asked for ({name})") })
                }
                Some((wgpu::DeviceType::Cpu, name)) => Ok(Opened {
                    device: Device::Cpu(Cpu::new(&opts.cpu)?),
                    reason: format!("the only GPU adapter is a software one ({name}); the CPU backend is faster on the same cores"),
                }),
                Some((_, name)) => {
                    let gpu = Gpu::new(&opts.gpu).await?;
                    Ok(Opened { device: Device::Gpu(gpu), reason: format!("a GPU adapter is available ({name})") })
                }
                None => Ok(Opened { device: Device::Cpu(Cpu::new(&opts.cpu)?), reason: "no GPU adapter".into() }),
            },
        }
    }

    /// Native convenience: [`Device::open`] with options from the environment, blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_env_blocking() -> Result<Device> {
        Ok(pollster::block_on(Device::open(&DeviceOptions::from_env()?))?.device)
    }

    /// The CPU backend, if this is it.
    pub fn cpu(&self) -> Option<&Arc<Cpu>> {
        match self {
            Device::Cpu(c) => Some(c),
            Device::Gpu(_) => None,
        }
    }

    /// The GPU, if this is one.
    pub fn gpu(&self) -> Option<&Arc<Gpu>> {
        match self {
            Device::Gpu(g) => Some(g),
            Device::Cpu(_) => None,
        }
    }

    /// A short description: the adapter's name, or `CPU backend (avx512, 8 threads)`.
    pub fn name(&self) -> String {
        match self {
            Device::Gpu(g) => g.report().name.clone(),
            Device::Cpu(c) => {
                // A split backend's ranks are one thread each.
                let n = c.shard().map_or(c.threads(), |s| s.ranks());
                format!("CPU backend ({}, {n} thread{})", c.isa().name(), if n == 1 { "" } else { "s" })
            }
        }
    }

    /// The full report (adapter, features, limits, memory budget; or the CPU backend's).
    pub fn report(&self) -> String {
        match self {
            Device::Gpu(g) => g.report().to_string(),
            Device::Cpu(c) => c.report().to_string(),
        }
    }

    /// Bytes the engine holds on this device.
    pub fn memory_in_use(&self) -> u64 {
        match self {
            Device::Gpu(g) => g.memory_in_use(),
            Device::Cpu(c) => c.memory_in_use(),
        }
    }

    /// The memory budget, if any.
    pub fn memory_budget(&self) -> Option<u64> {
        match self {
            Device::Gpu(g) => g.memory_budget(),
            Device::Cpu(c) => c.memory_budget(),
        }
    }

    /// Fails with `Error::OutOfMemory` naming `what` if `bytes` more would exceed the budget.
    pub fn check_memory(&self, what: &str, bytes: u64) -> Result<()> {
        match self {
            Device::Gpu(g) => g.check_memory(what, bytes),
            Device::Cpu(c) => c.check_memory(what, bytes),
        }
    }

    /// Whether the device can store f16 (GPUs with `shader-f16`; the CPU backend stores f32).
    pub fn has_f16(&self) -> bool {
        match self {
            Device::Gpu(g) => g.report().shader_f16,
            Device::Cpu(_) => false,
        }
    }
}
