//! The engine's options, and the one place that reads the environment: [`GpuOptions::from_env`]
//! reads every `TESSERA_*` variable once into typed fields. Nothing else in the library looks at
//! the environment.
//!
//! Forced kernel names are kept here as given: this layer knows no ops. The graph layer checks
//! them against the ops' kernel names (`tessera::check_options`, and again at compile) and
//! refuses an unknown one with the list of valid names.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How to choose and use an adapter. [`GpuOptions::from_env`] fills it from the environment.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Only adapters whose name contains this (case-insensitive). `TESSERA_ADAPTER`.
    pub adapter_name: Option<String>,
    /// Only adapters of these backends (None: all that the build supports). `TESSERA_BACKEND`.
    pub backends: Option<wgpu::Backends>,
    /// Prefer a low-power adapter instead of the fastest one.
    pub low_power: bool,
    /// Keep wgpu's shader runtime checks (bounds clamping) and workgroup-memory zeroing natively.
    /// Off by default: every kernel's inputs are validated before dispatch and its indices are
    /// guarded in the shader, and the checks cost up to 4x on large GEMMs. Browsers always
    /// keep them. `TESSERA_CHECKED_SHADERS=1` turns them on.
    pub checked_shaders: bool,
    /// Most GPU memory the engine may hold on the device, in bytes; allocations beyond it fail with
    /// `Error::OutOfMemory` before reaching the driver. None: for CPU adapters, three quarters of
    /// the memory the OS reports available; otherwise no budget (WebGPU does not say how much
    /// memory a GPU has). `TESSERA_MEMORY_BUDGET=4GiB` sets it.
    pub memory_budget: Option<u64>,
    /// Time the candidate kernels of each new shape (GEMM tiles) when a graph is compiled and use
    /// the fastest, remembering the choice per adapter, driver and shape. Off: each op's
    /// heuristic choice (reproducible). `TESSERA_TUNE=1` turns it on.
    pub tune: bool,
    /// Where tuning choices are kept natively (None: no file). `from_env` sets it from
    /// `TESSERA_TUNE_CACHE`, else `$XDG_CACHE_HOME/tessera/tuning.json` or
    /// `~/.cache/tessera/tuning.json`.
    pub tune_cache: Option<PathBuf>,
    /// A kernel forced per op family, by the op's kernel name: `"matmul"` (`TESSERA_GEMM_TILE`,
    /// which also takes the aliases `small`, `large`, ...) and `"attention"`
    /// (`TESSERA_ATTENTION_KERNEL`). Checked against the op's kernel names when a graph is
    /// compiled: an unknown name, or one that does not apply to a node, is an error.
    pub forced_kernels: BTreeMap<String, String>,
}

/// The environment variable that forces each op family's kernel.
pub const FORCED_KERNEL_VARS: [(&str, &str); 2] = [("matmul", "TESSERA_GEMM_TILE"), ("attention", "TESSERA_ATTENTION_KERNEL")];

/// The variable's value, None where unset or empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn flag(name: &str) -> bool {
    var(name).is_some_and(|v| v != "0")
}

impl GpuOptions {
    /// Options from the environment: `TESSERA_ADAPTER`, `TESSERA_BACKEND`,
    /// `TESSERA_CHECKED_SHADERS`, `TESSERA_MEMORY_BUDGET`, `TESSERA_TUNE`, `TESSERA_TUNE_CACHE`,
    /// `TESSERA_GEMM_TILE`, `TESSERA_ATTENTION_KERNEL`. A malformed value is an error naming the
    /// variable.
    pub fn from_env() -> Result<Self> {
        let mut opts = GpuOptions { adapter_name: var("TESSERA_ADAPTER"), ..Default::default() };
        opts.checked_shaders = flag("TESSERA_CHECKED_SHADERS");
        opts.memory_budget = crate::memory::budget_from_env()?;
        opts.tune = flag("TESSERA_TUNE");
        opts.tune_cache = default_cache_path();
        if let Some(b) = var("TESSERA_BACKEND") {
            opts.backends = Some(parse_backends(&b)?);
        }
        for (op, name) in FORCED_KERNEL_VARS {
            if let Some(v) = var(name) {
                opts.forced_kernels.insert(op.to_string(), v);
            }
        }
        Ok(opts)
    }
}

/// Where the tuning cache lives natively: `TESSERA_TUNE_CACHE`, else the user's cache folder.
fn default_cache_path() -> Option<PathBuf> {
    #[cfg(target_arch = "wasm32")]
    {
        None
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        if let Some(p) = var("TESSERA_TUNE_CACHE") {
            return Some(PathBuf::from(p));
        }
        let base = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("LOCALAPPDATA").map(PathBuf::from))
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("tessera").join("tuning.json"))
    }
}

/// Parses a comma-separated backend list (`vulkan,metal`).
pub fn parse_backends(s: &str) -> Result<wgpu::Backends> {
    let mut out = wgpu::Backends::empty();
    for part in s.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        out |= match part.as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "webgpu" | "browser" => wgpu::Backends::BROWSER_WEBGPU,
            other => {
                return Err(Error::NoAdapter {
                    detail: format!(
                        ": unknown backend `{other}` in TESSERA_BACKEND (use vulkan, metal, dx12, gl or webgpu)"
                    ),
                })
            }
        };
    }
    Ok(out)
}
