//! Running a model's graphs: one compiled graph per (batch, height, width, options), least recently
//! used dropped beyond [`MAX_COMPILED`]; a batch too large for the device split into chunks that
//! fit (halving on `limit_exceeded` / `out_of_memory`, remembered per size); chunk outputs joined
//! along the batch.

use crate::model::build::{build_graph, Built, Outputs};
use crate::model::shared::interp::{bicubic, bicubic_antialias, bilinear, bilinear_antialias};
use crate::model::shared::reader::{PosResample, Positions};
use crate::model::shared::tower::{Arch, RunOptions};
use crate::error::{Error, Result};
use crate::{lock, CompileOptions, Compiled, Device, HostTensor, PlanReport, Profile, Weights};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Compiled graphs a model keeps.
pub const MAX_COMPILED: usize = 8;

type GraphKey = (usize, usize, usize, RunOptions);

/// A compiled graph and its outputs by name.
pub(crate) struct Prepared {
    pub exe: Compiled,
    pub outputs: Outputs,
}

#[derive(Default)]
struct Cache {
    graphs: HashMap<GraphKey, (Arc<Prepared>, u64)>,
    tick: u64,
    max_batch: HashMap<(usize, usize, RunOptions), usize>,
}

impl Cache {
    fn get(&mut self, key: &GraphKey) -> Option<Arc<Prepared>> {
        self.tick += 1;
        let tick = self.tick;
        self.graphs.get_mut(key).map(|(e, t)| {
            *t = tick;
            e.clone()
        })
    }

    fn insert(&mut self, key: GraphKey, c: Arc<Prepared>) {
        self.tick += 1;
        self.graphs.insert(key, (c, self.tick));
        while self.graphs.len() > MAX_COMPILED {
            let oldest = self.graphs.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| *k);
            match oldest {
                Some(k) => self.graphs.remove(&k),
                None => break,
            };
        }
    }
}

/// A model's weights on a device and its compiled graphs.
pub(crate) struct Runner {
    pub device: Device,
    pub weights: Mutex<Weights>,
    pub pos: Positions,
    cache: Mutex<Cache>,
}

/// One run's outputs, joined over its chunks, with the graph's output names.
pub(crate) struct Ran {
    pub tensors: Vec<HostTensor>,
    pub outputs: Outputs,
    pub profile: Option<Profile>,
}

impl Ran {
    /// The output read back for tensor `id`, if it was.
    pub fn take(&mut self, id: Option<crate::TensorId>) -> Option<HostTensor> {
        let id = id?;
        let i = self.tensors.iter().position(|t| t.id == id)?;
        Some(self.tensors.swap_remove(i))
    }
}

impl Runner {
    pub fn new(device: &Device, weights: Weights, pos: Positions) -> Runner {
        Runner { device: device.clone(), weights: Mutex::new(weights), pos, cache: Mutex::new(Cache::default()) }
    }

    /// Position embeddings for a (rows, cols) patch grid, interpolated as transformers does when
    /// the grid differs from the checkpoint's (or the image is not square).
    fn positions(&self, d: usize, gh: usize, gw: usize, h: usize, w: usize) -> Vec<f32> {
        let s = self.pos.side;
        let mut out = self.pos.prefix.clone();
        match self.pos.resample {
            // timm: resampled (antialiased) only where the grid differs.
            PosResample::BicubicAntialias if (gh, gw) == (s, s) => out.extend_from_slice(&self.pos.patches),
            PosResample::BicubicAntialias => out.extend(bicubic_antialias(&self.pos.patches, s, s, d, gh, gw)),
            // SigLIP 2: to every grid (the checkpoint's own gives the grid itself).
            PosResample::BilinearAntialias => out.extend(bilinear_antialias(&self.pos.patches, s, s, d, gh, gw)),
            PosResample::Bilinear => out.extend(bilinear(&self.pos.patches, s, s, d, gh, gw)),
            PosResample::Bicubic if gh * gw == s * s && h == w => out.extend_from_slice(&self.pos.patches),
            PosResample::Bicubic => out.extend(bicubic(&self.pos.patches, s, s, d, gh, gw)),
        }
        out
    }

    /// The position embeddings of a padded sequence's image of grid (rows, cols): its own grid's,
    /// `(rows * cols, D)`, for checkpoints that resample per grid (SigLIP 2 NaFlex); None for others.
    pub fn grid_positions(&self, d: usize, gh: usize, gw: usize) -> Option<Vec<f32>> {
        let s = self.pos.side;
        self.resamples_per_grid().then(|| bilinear_antialias(&self.pos.patches, s, s, d, gh, gw))
    }

    /// Whether the positions are resampled to every grid, with no prefix tokens (SigLIP 2
    /// NaFlex): then padded patch sequences can take each image's own.
    pub fn resamples_per_grid(&self) -> bool {
        self.pos.resample == PosResample::BilinearAntialias && self.pos.prefix.is_empty()
    }

    async fn compiled(&self, arch: Arch<'_>, batch: usize, h: usize, w: usize, opts: RunOptions) -> Result<Arc<Prepared>> {
        let key = (batch, h, w, opts);
        if let Some(c) = lock(&self.cache).get(&key) {
            return Ok(c);
        }
        let Built { graph, outputs, positions } = build_graph(arch, batch, h, w, opts)?;
        let (d, p) = (arch.config.hidden_size, arch.config.patch_size);
        // The position embeddings for this grid belong to this graph alone (freed with it), so
        // inputs of ever new sizes do not accumulate. No lock is held across the await:
        // concurrent calls (from JS too) must not block.
        let mut weights = lock(&self.weights).clone();
        let rows = arch.config.prefix_tokens() + (h / p) * (w / p);
        // Padded sequences take each image's positions as an input: the weight adds nothing.
        let table = if opts.masked { vec![0.0; rows * d] } else { self.positions(d, h / p, w / p, h, w) };
        weights.insert(&positions, &[rows, d], &table)?;
        let exe = Compiled::compile(&self.device, &graph, &weights, &CompileOptions { profile: opts.profile }).await?;
        let c = Arc::new(Prepared { exe, outputs });
        lock(&self.cache).insert(key, c.clone());
        Ok(c)
    }

    /// The graph for the largest batch up to `batch` that the device takes (its limits and the
    /// memory budget), halving on `limit_exceeded` / `out_of_memory`; cached graphs of other
    /// sizes are dropped first when memory is short.
    pub async fn fitting(&self, arch: Arch<'_>, batch: usize, h: usize, w: usize, opts: RunOptions) -> Result<(Arc<Prepared>, usize)> {
        let known = lock(&self.cache).max_batch.get(&(h, w, opts)).copied();
        let mut chunk = known.map_or(batch, |m| m.min(batch));
        let mut evicted = false;
        loop {
            match self.compiled(arch, chunk, h, w, opts).await {
                Ok(e) => {
                    if chunk < batch {
                        lock(&self.cache).max_batch.insert((h, w, opts), chunk);
                    }
                    return Ok((e, chunk));
                }
                Err(Error::OutOfMemory { .. }) if !evicted && !lock(&self.cache).graphs.is_empty() => {
                    lock(&self.cache).graphs.clear();
                    evicted = true;
                }
                Err(Error::OutOfMemory { .. } | Error::LimitExceeded { .. }) if chunk > 1 => chunk = chunk.div_ceil(2),
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs checked `pixels` `(B, C, H, W)` in chunks that fit; outputs joined along the batch.
    pub async fn run(&self, arch: Arch<'_>, pixels: &[f32], dims: [usize; 4], opts: RunOptions) -> Result<Ran> {
        self.run_with(arch, pixels, dims, &[], opts).await
    }

    /// [`Runner::run`] with more inputs, each `(name, values)` of B equal parts (split with the
    /// pixels when the batch runs in chunks).
    pub async fn run_with(&self, arch: Arch<'_>, pixels: &[f32], dims: [usize; 4], extra: &[(&str, &[f32])], opts: RunOptions) -> Result<Ran> {
        let [b, c, h, w] = dims;
        let (first, chunk) = self.fitting(arch, b, h, w, opts).await?;
        let per_image = c * h * w;
        let mut tensors: Vec<HostTensor> = Vec::new();
        let mut profile = None;
        for start in (0..b).step_by(chunk) {
            let n = chunk.min(b - start);
            let graph = if n == chunk { first.clone() } else { self.compiled(arch, n, h, w, opts).await? };
            let mut feeds = vec![("pixel_values", &pixels[start * per_image..(start + n) * per_image])];
            for &(name, values) in extra {
                let per = values.len() / b;
                feeds.push((name, &values[start * per..(start + n) * per]));
            }
            let part = if opts.profile {
                let (o, p) = graph.exe.run_profiled(&feeds).await?;
                profile.get_or_insert(p);
                o
            } else {
                graph.exe.run(&feeds).await?
            };
            if tensors.is_empty() {
                tensors = part;
            } else {
                for (o, p) in tensors.iter_mut().zip(part) {
                    o.data.extend(p.data);
                    o.shape[0] += p.shape[0];
                }
            }
        }
        Ok(Ran { tensors, outputs: first.outputs.clone(), profile })
    }

    /// How the arena of the graph for `batch` images of `h` x `w` was packed (after a run of that
    /// size), and the batch that graph takes.
    pub fn plan(&self, batch: usize, h: usize, w: usize, opts: RunOptions) -> Option<(usize, PlanReport)> {
        let mut c = lock(&self.cache);
        let chunk = c.max_batch.get(&(h, w, opts)).map_or(batch, |m| (*m).min(batch));
        c.get(&(chunk, h, w, opts)).map(|e| (chunk, e.exe.plan().clone()))
    }

    /// The kernel choices of the graph for `batch` images of `h` x `w` (after a run of that size).
    pub fn kernel_choices(&self, batch: usize, h: usize, w: usize, opts: RunOptions) -> Option<Vec<crate::KernelChoice>> {
        let mut c = lock(&self.cache);
        let chunk = c.max_batch.get(&(h, w, opts)).map_or(batch, |m| (*m).min(batch));
        c.get(&(chunk, h, w, opts)).map(|e| e.exe.kernel_choices().to_vec())
    }

    /// Number of compiled graphs held.
    pub fn compiled_graphs(&self) -> usize {
        lock(&self.cache).graphs.len()
    }
}
