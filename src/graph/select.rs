//! Kernel selection: which of an op's GPU kernels each node runs. One interface for the three
//! ways a kernel is chosen, in this order:
//! - **forced**: `GpuOptions::forced_kernels` (`TESSERA_GEMM_TILE`, `TESSERA_ATTENTION_KERNEL`)
//!   names a kernel of the op's family; an unknown name, or one that does not apply to the node
//!   or fit the device, is an error that says why;
//! - **tuned** (`GpuOptions::tune`): the candidates that fit the device are timed on the graph's own
//!   buffers the first time a shape is seen, the fastest kept and remembered per adapter (with a
//!   checksum of the candidate set, so a new kernel is timed again rather than hidden);
//! - **heuristic**: otherwise the op's measured choice for this kind of adapter, else its default.
//!
//! Timing goes through the [`Timer`] trait, so the logic is tested here with a fake clock.

use crate::error::{Error, Result};
use crate::gpu::tune_cache::{TuneCache, TuneEntry};
use crate::ops::{forcible_kernels, Kernel, Op};
use crate::tensor::{fmt_shape, TensorInfo};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Why a node runs the kernel it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The op has one kernel for this node.
    Only,
    /// The op's default (no heuristic for this adapter).
    Default,
    /// The adapter kind's measured heuristic.
    Heuristic,
    /// Forced by name (`GpuOptions::forced_kernels`).
    Forced,
    /// Timed now by the autotuner.
    Tuned,
    /// The autotuner's earlier choice for this shape on this adapter.
    Cached,
}

impl Reason {
    /// A word for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Only => "only",
            Reason::Default => "default",
            Reason::Heuristic => "heuristic",
            Reason::Forced => "forced",
            Reason::Tuned => "tuned",
            Reason::Cached => "cached",
        }
    }
}

/// Times one candidate kernel of a node, in ms per run; None where it cannot be timed at all
/// (a browser without timestamp queries).
pub(crate) trait Timer {
    async fn time(&mut self, node: usize, kernel: &Kernel) -> Result<Option<f64>>;
}

/// What selection needs to know of the device.
pub(crate) struct Device<'a> {
    /// The adapter kind heuristics key on; None: no heuristics (the browser, where the adapter
    /// kind is not known).
    pub kind: Option<wgpu::DeviceType>,
    /// Forced kernel names by family.
    pub forced: &'a BTreeMap<String, String>,
    /// Whether to autotune.
    pub tune: bool,
    /// Why a kernel cannot run on this device, if it cannot (limits, subgroups).
    pub unfit: &'a dyn Fn(&Kernel) -> Option<String>,
}

/// The canonical kernel name `given` names in `family` (aliases resolved), or an error listing the
/// valid names.
pub fn resolve_forced(family: &str, given: &str) -> Result<&'static str> {
    let Some((_, names, aliases)) = forcible_kernels().into_iter().find(|(f, _, _)| *f == family) else {
        return Err(Error::Input { name: family.into(), problem: "no op family of this name has kernels to force".into() });
    };
    let canonical = aliases.iter().find(|(a, _)| *a == given).map_or(given, |(_, n)| n);
    if let Some(n) = names.iter().find(|n| **n == canonical) {
        return Ok(n);
    }
    let var = crate::gpu::FORCED_KERNEL_VARS.iter().find(|(f, _)| *f == family).map_or(family, |(_, v)| v);
    let mut valid: Vec<&str> = names.clone();
    valid.extend(aliases.iter().map(|(a, _)| *a));
    Err(Error::Input { name: var.into(), problem: format!("`{given}` is not a {family} kernel; valid: {}", valid.join(", ")) })
}

/// Checks that every forced kernel name is known (so that a typo fails at once, not at the first
/// compile).
pub fn check_options(opts: &crate::GpuOptions) -> Result<()> {
    for (family, name) in &opts.forced_kernels {
        resolve_forced(family, name)?;
    }
    Ok(())
}

/// Checksum of a candidate set: names and shader sources (FNV-1a), so that any new or changed
/// kernel invalidates a cached choice.
fn checksum(cands: &[Kernel]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for k in cands {
        for d in k.dispatches() {
            for b in d.name.bytes().chain([0]).chain(d.shader().source.bytes()).chain([0]) {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    format!("{h:016x}")
}

/// The kernel node `index` runs, and why.
pub(crate) async fn select(
    dev: &Device<'_>,
    cache: &Mutex<TuneCache>,
    timer: &mut impl Timer,
    (index, name, op): (usize, &str, &Op),
    inputs: &[&TensorInfo],
    output: &TensorInfo,
) -> Result<(Kernel, Reason)> {
    let mut kernels = op.kernels(inputs, output);
    let def = op.def();
    if let Some(forced) = def.family().and_then(|f| dev.forced.get(f).map(|n| (f, n))) {
        let wanted = resolve_forced(forced.0, forced.1)?;
        let Some(pos) = kernels.iter().position(|k| k.name == wanted) else {
            let here: Vec<&str> = kernels.iter().map(|k| k.name).collect();
            return Err(Error::InvalidOp {
                op: name.into(),
                problem: format!(
                    "the forced kernel `{wanted}` does not apply to this {} of output {} (kernels that do: {})",
                    def.kind(),
                    fmt_shape(&output.shape),
                    here.join(", ")
                ),
            });
        };
        let k = kernels.swap_remove(pos);
        if let Some(why) = (dev.unfit)(&k) {
            return Err(Error::InvalidOp { op: name.into(), problem: format!("the forced kernel `{wanted}` cannot run on this device: {why}") });
        }
        return Ok((k, Reason::Forced));
    }
    if kernels.len() == 1 {
        return Ok((kernels.remove(0), Reason::Only));
    }
    if dev.tune {
        if let Some(key) = op.tuning_key(inputs, output) {
            kernels.retain(|k| (dev.unfit)(k).is_none());
            if kernels.len() > 1 {
                if let Some(done) = tune(cache, timer, index, &key, &mut kernels).await? {
                    return Ok(done);
                }
            }
            if kernels.len() == 1 {
                return Ok((kernels.remove(0), Reason::Only));
            }
        }
    }
    let preferred = dev.kind.and_then(|kind| def.heuristic(kind, inputs, output));
    if let Some(pos) = preferred.and_then(|p| kernels.iter().position(|k| k.name == p && (dev.unfit)(k).is_none())) {
        return Ok((kernels.swap_remove(pos), Reason::Heuristic));
    }
    Ok((kernels.swap_remove(0), Reason::Default))
}

/// Times `cands` (already filtered to what fits) unless the cache knows this shape and candidate
/// set; None where they cannot be timed (then the caller falls back to the heuristic).
async fn tune(cache: &Mutex<TuneCache>, timer: &mut impl Timer, index: usize, key: &str, cands: &mut Vec<Kernel>) -> Result<Option<(Kernel, Reason)>> {
    let sum = checksum(cands);
    let cached = crate::lock(cache).get(key, &sum);
    if let Some(pos) = cached.and_then(|c| cands.iter().position(|k| k.name == c)) {
        return Ok(Some((cands.swap_remove(pos), Reason::Cached)));
    }
    let mut ms = BTreeMap::new();
    let mut best: Option<(f64, usize)> = None;
    for (i, k) in cands.iter().enumerate() {
        match timer.time(index, k).await? {
            // A candidate whose scratch the memory budget refuses is skipped (the timer gives NaN).
            Some(t) if t.is_nan() => {}
            Some(t) => {
                ms.insert(k.name.to_string(), t);
                if best.is_none_or(|(b, _)| t < b) {
                    best = Some((t, i));
                }
            }
            // No timing at all: none can be timed.
            None => {
                crate::lock(cache).stats.timing_note =
                    Some("this adapter cannot time kernels (no timestamp queries): the heuristic kernels are used".into());
                return Ok(None);
            }
        }
    }
    let Some((_, i)) = best else { return Ok(None) };
    let k = cands.swap_remove(i);
    crate::lock(cache).insert(key, TuneEntry { choice: k.name.to_string(), candidates: sum, ms });
    Ok(Some((k, Reason::Tuned)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{DType, TensorKind};
    use crate::Activation;

    /// A clock that gives each candidate a fixed time by name, counting calls.
    struct Fake {
        times: BTreeMap<&'static str, Option<f64>>,
        calls: usize,
    }

    impl Timer for Fake {
        async fn time(&mut self, _node: usize, k: &Kernel) -> Result<Option<f64>> {
            self.calls += 1;
            Ok(self.times.get(k.name).copied().unwrap_or(Some(10.0)))
        }
    }

    fn info(name: &str, shape: &[usize], kind: TensorKind) -> TensorInfo {
        TensorInfo { name: name.into(), shape: shape.to_vec(), dtype: DType::F32, kind, quant: None }
    }

    fn run(dev: &Device<'_>, cache: &Mutex<TuneCache>, timer: &mut Fake) -> Result<(Kernel, Reason)> {
        let (a, b) = (info("a", &[197, 768], TensorKind::Input), info("b", &[768, 768], TensorKind::Weight));
        let out = info("out", &[197, 768], TensorKind::Activation);
        let op = Op::MatMul { bias: false, act: Activation::None, residual: false };
        pollster::block_on(select(dev, cache, timer, (0, "proj", &op), &[&a, &b], &out))
    }

    fn fits(_: &Kernel) -> Option<String> {
        None
    }

    #[test]
    fn tuning_picks_the_fastest_then_reuses_it_and_retunes_a_new_candidate_set() {
        let cache = Mutex::new(TuneCache::new("fake", None));
        let forced = BTreeMap::new();
        let dev = Device { kind: Some(wgpu::DeviceType::Cpu), forced: &forced, tune: true, unfit: &fits };
        let mut timer = Fake { times: BTreeMap::from([("32x64", Some(1.0)), ("64x64-split4", Some(0.5))]), calls: 0 };
        let (k, why) = run(&dev, &cache, &mut timer).unwrap();
        assert_eq!((k.name, why), ("64x64-split4", Reason::Tuned));
        let timed = timer.calls;
        assert!(timed > 5, "every candidate timed ({timed})");
        let (k, why) = run(&dev, &cache, &mut timer).unwrap();
        assert_eq!((k.name, why, timer.calls), ("64x64-split4", Reason::Cached, timed));
        // A device that cannot run the split kernels has another candidate set: timed again.
        let no_split = |k: &Kernel| k.name.contains("split").then(|| "no".to_string());
        let dev = Device { unfit: &no_split, ..dev };
        let (k, why) = run(&dev, &cache, &mut timer).unwrap();
        assert_eq!((k.name, why), ("32x64", Reason::Tuned));
        assert!(timer.calls > timed);
    }

    #[test]
    fn without_timing_the_heuristic_is_used_and_said() {
        let cache = Mutex::new(TuneCache::new("fake", None));
        let forced = BTreeMap::new();
        let dev = Device { kind: Some(wgpu::DeviceType::Cpu), forced: &forced, tune: true, unfit: &fits };
        let mut timer = Fake { times: BTreeMap::from([("64x64", None)]), calls: 0 };
        let (k, why) = run(&dev, &cache, &mut timer).unwrap();
        assert_eq!((k.name, why), ("128x128-unrolled", Reason::Heuristic));
        assert!(cache.lock().unwrap().stats.timing_note.is_some());
    }

    #[test]
    fn heuristics_by_adapter_kind() {
        let cache = Mutex::new(TuneCache::new("fake", None));
        let forced = BTreeMap::new();
        let mut timer = Fake { times: BTreeMap::new(), calls: 0 };
        let dev = Device { kind: Some(wgpu::DeviceType::Cpu), forced: &forced, tune: false, unfit: &fits };
        assert_eq!(run(&dev, &cache, &mut timer).unwrap().0.name, "128x128-unrolled");
        let dev = Device { kind: Some(wgpu::DeviceType::DiscreteGpu), ..dev };
        assert_eq!(run(&dev, &cache, &mut timer).unwrap().1, Reason::Default);
        let dev = Device { kind: None, ..dev };
        assert_eq!(run(&dev, &cache, &mut timer).unwrap().0.name, "64x64");
        assert_eq!(timer.calls, 0);
    }

    #[test]
    fn forced_kernels_are_checked() {
        let cache = Mutex::new(TuneCache::new("fake", None));
        let mut timer = Fake { times: BTreeMap::new(), calls: 0 };
        let force = |name: &str| BTreeMap::from([("matmul".to_string(), name.to_string())]);
        let forced = force("large");
        let dev = Device { kind: Some(wgpu::DeviceType::Cpu), forced: &forced, tune: true, unfit: &fits };
        let (k, why) = run(&dev, &cache, &mut timer).unwrap();
        assert_eq!((k.name, why, timer.calls), ("128x128", Reason::Forced, 0));
        let forced = force("lage");
        let e = run(&Device { forced: &forced, ..dev }, &cache, &mut timer).unwrap_err().to_string();
        assert!(e.contains("TESSERA_GEMM_TILE") && e.contains("`lage`") && e.contains("128x128-unrolled"), "{e}");
        // K = 768 over 8 ranges of 96 is below the split minimum: the kernel does not apply.
        let forced = force("64x64-split8");
        let e = run(&Device { forced: &forced, ..dev }, &cache, &mut timer).unwrap_err().to_string();
        assert!(e.contains("does not apply") && e.contains("`proj`"), "{e}");
        let forced = force("32x32");
        let tiny_unfit = |k: &Kernel| (k.name == "32x32").then(|| "too small".to_string());
        let e = run(&Device { forced: &forced, unfit: &tiny_unfit, ..dev }, &cache, &mut timer).unwrap_err().to_string();
        assert!(e.contains("cannot run on this device: too small"), "{e}");
        assert!(check_options(&crate::GpuOptions { forced_kernels: BTreeMap::from([("attention".into(), "tiled".into())]), ..Default::default() }).is_err());
    }
}
