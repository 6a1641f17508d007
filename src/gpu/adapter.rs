//! Finding an adapter: the fastest one the options allow natively (discrete GPU, then integrated,
//! virtual, CPU; native APIs before GL), the browser's in wasm.

use super::GpuOptions;
use crate::error::{Error, Result};

#[cfg(not(target_arch = "wasm32"))]
fn type_rank(t: wgpu::DeviceType, low_power: bool) -> u32 {
    use wgpu::DeviceType::*;
    match (t, low_power) {
        (DiscreteGpu, false) | (IntegratedGpu, true) => 0,
        (IntegratedGpu, false) | (DiscreteGpu, true) => 1,
        (VirtualGpu, _) => 2,
        (Cpu, _) => 3,
        (Other, _) => 4,
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::BrowserWebGpu => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

#[cfg(not(target_arch = "wasm32"))]
pub(super) async fn pick_adapter(opts: &GpuOptions) -> Result<wgpu::Adapter> {
    // Native APIs first; GL only where none of them has an adapter (or when asked for).
    let backends = opts.backends.unwrap_or(wgpu::Backends::PRIMARY);
    let mut adapters = instance(backends).enumerate_adapters(backends).await;
    if adapters.is_empty() && opts.backends.is_none() {
        adapters = instance(wgpu::Backends::SECONDARY).enumerate_adapters(wgpu::Backends::SECONDARY).await;
    }
    let seen: Vec<String> =
        adapters.iter().map(|a| format!("{} ({:?})", a.get_info().name, a.get_info().backend)).collect();
    let wanted = opts.adapter_name.as_ref().map(|n| n.to_lowercase());
    let mut candidates: Vec<wgpu::Adapter> = adapters
        .into_iter()
        .filter(|a| match &wanted {
            Some(n) => a.get_info().name.to_lowercase().contains(n),
            None => true,
        })
        .collect();
    candidates.sort_by_key(|a| {
        let i = a.get_info();
        (type_rank(i.device_type, opts.low_power), backend_rank(i.backend))
    });
    match candidates.into_iter().next() {
        Some(a) => Ok(a),
        None => {
            let mut detail = String::new();
            if let Some(n) = &opts.adapter_name {
                detail.push_str(&format!(" matching TESSERA_ADAPTER=\"{n}\""));
            }
            if let Some(b) = opts.backends {
                detail.push_str(&format!(" on backends {b:?}"));
            }
            if !seen.is_empty() {
                detail.push_str(&format!(" (available: {})", seen.join(", ")));
            }
            Err(Error::NoAdapter { detail })
        }
    }
}

#[cfg(target_arch = "wasm32")]
pub(super) async fn pick_adapter(opts: &GpuOptions) -> Result<wgpu::Adapter> {
    let instance = instance(opts.backends.unwrap_or(wgpu::Backends::BROWSER_WEBGPU));
    let power_preference =
        if opts.low_power { wgpu::PowerPreference::LowPower } else { wgpu::PowerPreference::HighPerformance };
    instance
        .request_adapter(&wgpu::RequestAdapterOptions { power_preference, ..Default::default() })
        .await
        .map_err(|e| Error::NoWebGpu { detail: format!(" ({e})") })
}

/// The kind and name of the adapter [`Gpu::new`] would open with `opts`, without opening it;
/// None where there is none.
pub async fn best_adapter_kind(opts: &GpuOptions) -> Option<(wgpu::DeviceType, String)> {
    let a = pick_adapter(opts).await.ok()?;
    let i = a.get_info();
    Some((i.device_type, i.name))
}

/// Lists the adapters this machine offers (native only), as `name (backend, type)`.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters() -> Vec<String> {
    pollster::block_on(instance(wgpu::Backends::all()).enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
        })
        .collect()
}
