//! Kernel selection per adapter: where an op has several kernels (GEMM tiles), the autotuner times
//! each on the graph's own buffers the first time a shape is compiled, keeps the fastest, and
//! remembers the choice per adapter, driver and shape, in memory and natively in a JSON file, so
//! later compiles (and later processes) reuse it without timing again.
//!
//! Tuning is off unless asked for (`GpuOptions::tune`, `TESSERA_TUNE=1`); then each op uses its
//! heuristic choice, so results and timings are reproducible.

use crate::error::Result;
use crate::gpu::{read_buffer, Gpu};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// File format tag; files with another tag are ignored (and replaced on the next save).
const FORMAT: &str = "tessera-tuning-1";

/// Dispatches per timed submit, and timed submits per candidate (the minimum is kept).
const REPS: u32 = 5;
const TRIALS: usize = 3;

/// One remembered choice.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TuneEntry {
    /// The kernel chosen (e.g. a tile name).
    pub choice: String,
    /// What each candidate took, ms per dispatch.
    pub ms: BTreeMap<String, f64>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TuneFile {
    format: String,
    entries: BTreeMap<String, TuneEntry>,
}

/// What the tuner did on this device.
#[derive(Clone, Debug, Default)]
pub struct TuneStats {
    /// Shapes timed on this device.
    pub measured: usize,
    /// Choices taken from the cache (memory or file).
    pub reused: usize,
    /// The cache file, when there is one.
    pub path: Option<PathBuf>,
    /// Why the cache file could not be read or written, if it could not.
    pub cache_error: Option<String>,
}

pub(crate) struct TuneCache {
    prefix: String,
    loaded: bool,
    entries: BTreeMap<String, TuneEntry>,
    dirty: bool,
    pub(crate) stats: TuneStats,
}

/// Where the cache lives natively: `TESSERA_TUNE_CACHE`, else the user's cache folder.
pub fn default_cache_path() -> Option<PathBuf> {
    #[cfg(target_arch = "wasm32")]
    {
        None
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        if let Some(p) = std::env::var_os("TESSERA_TUNE_CACHE").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("LOCALAPPDATA").filter(|p| !p.is_empty()).map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").filter(|p| !p.is_empty()).map(|h| PathBuf::from(h).join(".cache")))?;
        Some(base.join("tessera").join("tuning.json"))
    }
}

impl TuneCache {
    pub(crate) fn new(adapter: &str, path: Option<PathBuf>) -> Self {
        TuneCache {
            prefix: format!("{adapter} | "),
            loaded: false,
            entries: BTreeMap::new(),
            dirty: false,
            stats: TuneStats { path, ..Default::default() },
        }
    }

    fn load(&mut self) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        let Some(path) = &self.stats.path else { return };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                self.stats.cache_error = Some(format!("{}: cannot read: {e}", path.display()));
                return;
            }
        };
        match serde_json::from_slice::<TuneFile>(&bytes) {
            Ok(f) if f.format == FORMAT => self.entries = f.entries,
            Ok(f) => self.stats.cache_error = Some(format!("{}: format `{}`, expected `{FORMAT}`; it will be replaced", path.display(), f.format)),
            Err(e) => self.stats.cache_error = Some(format!("{}: not a tuning cache ({e}); it will be replaced", path.display())),
        }
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<String> {
        self.load();
        let hit = self.entries.get(&format!("{}{key}", self.prefix)).map(|e| e.choice.clone());
        if hit.is_some() {
            self.stats.reused += 1;
        }
        hit
    }

    /// This adapter's choices known so far (read from the file or measured), by shape key.
    pub(crate) fn choices(&mut self) -> BTreeMap<String, TuneEntry> {
        self.load();
        self.entries.iter().filter_map(|(k, e)| k.strip_prefix(&self.prefix).map(|k| (k.to_string(), e.clone()))).collect()
    }

    pub(crate) fn insert(&mut self, key: &str, entry: TuneEntry) {
        self.load();
        self.entries.insert(format!("{}{key}", self.prefix), entry);
        self.stats.measured += 1;
        self.dirty = true;
    }

    /// Writes the file (whole, atomically) when something new was measured. Entries of other
    /// adapters in the file are kept.
    pub(crate) fn save(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let Some(path) = self.stats.path.clone() else { return };
        let doc = TuneFile { format: FORMAT.into(), entries: self.entries.clone() };
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension(format!("json.{}.partial", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            self.stats.cache_error = Some(format!("{}: cannot write: {e}", path.display()));
        }
    }
}

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
pub(crate) async fn time_dispatch(gpu: &Gpu, dispatches: &[(&wgpu::ComputePipeline, &wgpu::BindGroup, [u32; 3])]) -> Result<Option<f64>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trips_and_keeps_other_adapters() {
        let dir = std::env::temp_dir().join(format!("tessera-tune-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("tuning.json");
        let entry = |c: &str| TuneEntry { choice: c.into(), ms: BTreeMap::from([(c.to_string(), 1.0)]) };
        let mut a = TuneCache::new("gpu A | Vulkan | 1.0", Some(path.clone()));
        assert_eq!(a.get("matmul 1x2x3"), None);
        a.insert("matmul 1x2x3", entry("32x64"));
        a.save();
        let mut b = TuneCache::new("gpu B | Vulkan | 2.0", Some(path.clone()));
        assert_eq!(b.get("matmul 1x2x3"), None, "another adapter's choice is not reused");
        b.insert("matmul 1x2x3", entry("64x64"));
        b.save();
        let mut a2 = TuneCache::new("gpu A | Vulkan | 1.0", Some(path.clone()));
        assert_eq!(a2.get("matmul 1x2x3").as_deref(), Some("32x64"));
        assert_eq!(a2.stats.reused, 1);
        // A corrupt file is reported and replaced, never fatal.
        std::fs::write(&path, b"{ not json").unwrap();
        let mut c = TuneCache::new("gpu A | Vulkan | 1.0", Some(path.clone()));
        assert_eq!(c.get("matmul 1x2x3"), None);
        assert!(c.stats.cache_error.as_deref().unwrap_or("").contains("not a tuning cache"));
        c.insert("matmul 1x2x3", entry("128x128"));
        c.save();
        assert_eq!(TuneCache::new("gpu A | Vulkan | 1.0", Some(path)).get("matmul 1x2x3").as_deref(), Some("128x128"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
