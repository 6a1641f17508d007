//! GPU context: adapter choice, device creation with the adapter's own limits, and a report of
//! what was chosen.

mod adapter;
pub mod memory;
mod options;
mod readback;
pub(crate) mod timing;
pub mod tune_cache;

pub use adapter::best_adapter_kind;
#[cfg(not(target_arch = "wasm32"))]
pub use adapter::list_adapters;
use adapter::pick_adapter;
pub use options::{parse_backends, GpuOptions, FORCED_KERNEL_VARS};
pub(crate) use readback::read_buffer;
pub use tune_cache::{TuneEntry, TuneStats};

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What the engine runs on: the adapter's identity, the features turned on and the key limits.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    /// Adapter name, e.g. `NVIDIA H100` or `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// Backend (`Vulkan`, `Metal`, ...).
    pub backend: String,
    /// Device type (`DiscreteGpu`, `Cpu`, ...).
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Whether `shader-f16` is on.
    pub shader_f16: bool,
    /// Whether `timestamp-query` is on (per-op profiling).
    pub timestamp_query: bool,
    /// Whether the adapter has subgroup operations.
    pub subgroups: bool,
    /// `max_buffer_size`.
    pub max_buffer_size: u64,
    /// `max_storage_buffer_binding_size`.
    pub max_storage_buffer_binding_size: u64,
    /// `max_compute_workgroup_storage_size`.
    pub max_workgroup_storage: u32,
    /// `max_compute_invocations_per_workgroup`.
    pub max_invocations: u32,
    /// `max_storage_buffers_per_shader_stage`.
    pub max_storage_buffers_per_stage: u32,
    /// The engine's GPU memory budget, if any.
    pub memory_budget: Option<u64>,
    /// Whether that budget was derived from the system's available memory (CPU adapters).
    pub memory_budget_from_system: bool,
}

impl std::fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut features = Vec::new();
        if self.shader_f16 {
            features.push("shader-f16");
        }
        if self.timestamp_query {
            features.push("timestamp-query");
        }
        if self.subgroups {
            features.push("subgroups");
        }
        writeln!(f, "adapter:  {} ({}, {})", self.name, self.backend, self.device_type)?;
        writeln!(f, "driver:   {}", if self.driver.is_empty() { "-" } else { &self.driver })?;
        writeln!(f, "features: {}", if features.is_empty() { "-".into() } else { features.join(", ") })?;
        write!(
            f,
            "limits:   max buffer {} MiB, max storage binding {} MiB, workgroup storage {} KiB, \
             {} invocations/workgroup, {} storage buffers/stage",
            self.max_buffer_size >> 20,
            self.max_storage_buffer_binding_size >> 20,
            self.max_workgroup_storage >> 10,
            self.max_invocations,
            self.max_storage_buffers_per_stage
        )?;
        match self.memory_budget {
            Some(b) if self.memory_budget_from_system => write!(
                f,
                "\nmemory:   budget {} MiB (3/4 of the system memory available; TESSERA_MEMORY_BUDGET sets it)",
                b >> 20
            ),
            Some(b) => write!(f, "\nmemory:   budget {} MiB (as set)", b >> 20),
            None => write!(f, "\nmemory:   no budget (the adapter does not report its memory; set TESSERA_MEMORY_BUDGET)"),
        }
    }
}

/// An open GPU device. Cheap to share (`Arc`); all engine objects hold one.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    pub(crate) features: wgpu::Features,
    report: AdapterReport,
    errors: Arc<Mutex<Vec<String>>>,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
    checked_shaders: bool,
    lost: Arc<Mutex<Option<String>>>,
    pub(crate) ledger: Arc<memory::Ledger>,
    pub(crate) tune: bool,
    pub(crate) tuning: Mutex<tune_cache::TuneCache>,
    forced_kernels: std::collections::BTreeMap<String, String>,
    /// Smallest subgroup the device may run with; 0 without the `subgroup` feature.
    pub(crate) subgroup_min_size: u32,
    device_type: wgpu::DeviceType,
}

impl Gpu {
    /// Opens the best adapter allowed by `opts`.
    pub async fn new(opts: &GpuOptions) -> Result<Arc<Gpu>> {
        let adapter = pick_adapter(opts).await?;
        Self::from_adapter(adapter, opts).await
    }

    /// Opens the adapter chosen by `TESSERA_ADAPTER` / `TESSERA_BACKEND`, or the best one.
    pub async fn from_env() -> Result<Arc<Gpu>> {
        Self::new(&GpuOptions::from_env()?).await
    }

    /// Native convenience: [`Gpu::new`] blocking on the current thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: &GpuOptions) -> Result<Arc<Gpu>> {
        pollster::block_on(Self::new(opts))
    }

    /// Native convenience: [`Gpu::from_env`] blocking on the current thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_env_blocking() -> Result<Arc<Gpu>> {
        pollster::block_on(Self::from_env())
    }

    async fn from_adapter(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Arc<Gpu>> {
        let (checked_shaders, memory_budget) = (opts.checked_shaders, opts.memory_budget);
        let info = adapter.get_info();
        let available = adapter.features();
        // Subgroup operations natively only: browsers need `enable subgroups;`, which naga rejects.
        #[cfg(not(target_arch = "wasm32"))]
        let wanted = wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP;
        #[cfg(target_arch = "wasm32")]
        let wanted = wgpu::Features::SHADER_F16 | wgpu::Features::TIMESTAMP_QUERY;
        let features = available & wanted;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("tessera"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice { adapter: info.name.clone(), reason: e.to_string() })?;
        // Errors outside an error scope are recorded rather than panicking (wgpu's default);
        // the engine checks the record after each run.
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut l) = flag.lock() {
                *l = Some(format!("{reason:?}: {message}").trim_end_matches(": ").to_string());
            }
        });
        // A CPU adapter's memory is the system's; a GPU's is not reported.
        let budget = memory_budget.or_else(|| {
            if info.device_type == wgpu::DeviceType::Cpu {
                memory::system_available().map(|b| b / 4 * 3)
            } else {
                None
            }
        });
        let report = AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroups: available.contains(wgpu::Features::SUBGROUP),
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_invocations: limits.max_compute_invocations_per_workgroup,
            max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
            memory_budget: budget,
            memory_budget_from_system: memory_budget.is_none() && budget.is_some(),
        };
        Ok(Arc::new(Gpu {
            device,
            queue,
            limits,
            features,
            report,
            errors,
            pipelines: Mutex::new(HashMap::new()),
            checked_shaders,
            lost,
            ledger: memory::Ledger::new(budget),
            tune: opts.tune,
            subgroup_min_size: if features.contains(wgpu::Features::SUBGROUP) { info.subgroup_min_size } else { 0 },
            // Shaders with runtime checks run at other speeds: their choices are kept apart.
            forced_kernels: opts.forced_kernels.clone(),
            device_type: info.device_type,
            tuning: Mutex::new(tune_cache::TuneCache::new(
                &format!(
                    "{} | {:?} | {} {}{}",
                    info.name,
                    info.backend,
                    info.driver,
                    info.driver_info,
                    if checked_shaders && cfg!(not(target_arch = "wasm32")) { " | checked shaders" } else { "" }
                ),
                opts.tune_cache.clone(),
            )),
        }))
    }

    /// Fails with `LimitExceeded` naming `op` and `tensor` if one binding of `bytes` is over the
    /// device's storage-binding or buffer-size limit.
    pub fn check_binding(&self, op: &str, tensor: &str, bytes: u64) -> Result<()> {
        let l = self.limits();
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

    /// Bytes of GPU memory the engine holds on this device now (weights, activation arenas,
    /// uniforms, staging buffers of every live model and graph).
    pub fn memory_in_use(&self) -> u64 {
        self.ledger.in_use()
    }

    /// The memory budget in force, if any (see [`GpuOptions::memory_budget`]).
    pub fn memory_budget(&self) -> Option<u64> {
        self.ledger.budget()
    }

    /// Fails with `Error::OutOfMemory` naming `what` if `bytes` more would exceed the budget.
    pub fn check_memory(&self, what: &str, bytes: u64) -> Result<()> {
        self.ledger.check(what, bytes)
    }

    pub(crate) fn tracked_buffer(&self, what: &str, desc: &wgpu::BufferDescriptor) -> Result<memory::TrackedBuffer> {
        memory::TrackedBuffer::create(&self.device, &self.ledger, what, desc)
    }

    /// The adapter's kind (discrete, integrated, CPU, ...), which kernel heuristics key on.
    pub fn device_type(&self) -> wgpu::DeviceType {
        self.device_type
    }

    /// Smallest subgroup size the device may use, where subgroup operations are on (natively, with
    /// the adapter's `subgroup` feature); 0 otherwise.
    pub fn subgroup_min_size(&self) -> u32 {
        self.subgroup_min_size
    }

    /// Whether graphs compiled on this device are autotuned ([`GpuOptions::tune`]).
    pub fn tuning(&self) -> bool {
        self.tune
    }

    /// The autotuner's choices for this adapter (from the cache file or measured here), by shape:
    /// the kernel chosen and what each candidate took.
    pub fn tuning_choices(&self) -> std::collections::BTreeMap<String, TuneEntry> {
        crate::lock(&self.tuning).choices()
    }

    /// What the autotuner measured and reused so far, and its cache file.
    pub fn tuning_stats(&self) -> TuneStats {
        crate::lock(&self.tuning).stats.clone()
    }

    /// Whether shaders keep wgpu's runtime bounds checks.
    pub fn checked_shaders(&self) -> bool {
        self.checked_shaders
    }

    /// What was chosen.
    pub fn report(&self) -> &AdapterReport {
        &self.report
    }

    /// The device limits in force (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The wgpu device, for callers that add their own work.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// The kernel forced for an op family (`"matmul"`, `"attention"`), as given in
    /// [`GpuOptions::forced_kernels`].
    pub fn forced_kernel(&self, op_family: &str) -> Option<&str> {
        self.forced_kernels.get(op_family).map(String::as_str)
    }

    /// Every forced kernel name, by op family.
    pub(crate) fn forced_kernels(&self) -> &std::collections::BTreeMap<String, String> {
        &self.forced_kernels
    }

    /// The compute pipeline of a WGSL module with entry point `main`, compiled on first use and
    /// cached by `key` (which must name the source uniquely).
    pub(crate) fn pipeline(&self, key: &str, source: &str) -> wgpu::ComputePipeline {
        let mut cache = crate::lock(&self.pipelines);
        if let Some(p) = cache.get(key) {
            return p.clone();
        }
        let desc = wgpu::ShaderModuleDescriptor { label: Some(key), source: wgpu::ShaderSource::Wgsl(source.into()) };
        let module = if self.checked_shaders {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: every kernel guards its indices against the sizes in its uniforms, and the
            // executor checks each binding's size against its tensor's shape before dispatch; the
            // kernels write every workgroup-memory element before reading it. (On the web this
            // call keeps the browser's checks.)
            unsafe { self.device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        };
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(key),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                zero_initialize_workgroup_memory: self.checked_shaders,
            },
            cache: None,
        });
        cache.insert(key.to_string(), pipeline.clone());
        pipeline
    }

    pub(crate) fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Whether the device was lost.
    pub fn is_lost(&self) -> bool {
        self.lost.lock().map(|l| l.is_some()).unwrap_or(true)
    }

    /// Destroys the device, as a driver reset would: every later call fails with
    /// `Error::DeviceLost`. For testing recovery.
    pub fn destroy(&self) {
        if let Ok(mut l) = self.lost.lock() {
            l.get_or_insert_with(|| "Destroyed: destroyed by the application".into());
        }
        self.device.destroy();
    }

    /// `Err(DeviceLost)` once the device is gone.
    pub(crate) fn check_lost(&self) -> Result<()> {
        match self.lost.lock() {
            Ok(l) => match l.as_ref() {
                Some(reason) => Err(Error::DeviceLost { reason: reason.clone() }),
                None => Ok(()),
            },
            Err(_) => Err(Error::DeviceLost { reason: "unknown".into() }),
        }
    }

    /// Returns (and clears) GPU errors raised outside error scopes.
    pub(crate) fn take_errors(&self, context: &str) -> Result<()> {
        self.check_lost()?;
        let mut v = crate::lock(&self.errors);
        if v.is_empty() {
            return Ok(());
        }
        let msg = v.join("; ");
        v.clear();
        Err(Error::gpu(context, msg))
    }

    /// Waits for submitted work natively; a no-op in the browser, where completion is awaited.
    pub(crate) fn poll_wait(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::gpu("while waiting for the GPU", e))?;
        Ok(())
    }
}
