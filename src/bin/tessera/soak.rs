//! `tessera soak`: many runs and reloads of one model, failing if the results change or resident
//! memory grows.

use crate::models::{self, ModelArg};
use anyhow::{bail, Context, Result};
use tessera::{Device, RunOptions};

#[derive(clap::Args)]
pub struct SoakArgs {
    #[command(flatten)]
    pub(crate) model: ModelArg,
    /// Inferences in the loop.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) runs: usize,
    /// Times the model is loaded and dropped afterwards.
    #[arg(long, default_value_t = 100)]
    pub(crate) reloads: usize,
    /// Fail if resident memory grows by more than this many MiB after the warm-up.
    #[arg(long, default_value_t = 64.0)]
    pub(crate) max_growth_mib: f64,
}

fn rss_mib() -> f64 {
    // Resident set size from /proc (Linux); on CPU adapters this includes "GPU" memory.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<f64>().ok()))
        .map(|pages| pages * 4096.0 / 1048576.0)
        .unwrap_or(f64::NAN)
}

pub fn soak(device: &Device, args: &SoakArgs) -> Result<()> {
    let mut model = models::load(device, &args.model)?;
    let (h, w) = model.config.image_size;
    let pixels = tessera::reference::Rng::new(1).vec(model.config.num_channels * h * w, 1.0);
    let dims = [1, model.config.num_channels, h, w];
    let first = model.run_blocking(&pixels, dims, RunOptions::default())?.last_hidden_state.context("no last hidden state")?.data;
    let warmup = (args.runs / 10).max(1);
    let mut base = f64::NAN;
    let mut peak: f64 = 0.0;
    let start = std::time::Instant::now();
    for i in 0..args.runs {
        let out = model.run_blocking(&pixels, dims, RunOptions::default())?;
        if out.last_hidden_state.as_ref().map(|t| &t.data) != Some(&first) {
            bail!("run {i} gave a different result from the first run");
        }
        if i + 1 == warmup {
            base = rss_mib();
        }
        crate::interrupt::check(i + 1, args.runs)?;
        if (i + 1) % (args.runs / 10).max(1) == 0 {
            let rss = rss_mib();
            peak = peak.max(rss);
            println!("run {:>6}: resident {rss:.1} MiB", i + 1);
        }
    }
    let runs_growth = peak - base;
    println!("{} runs in {:.1} s; growth after warm-up {runs_growth:.1} MiB", args.runs, start.elapsed().as_secs_f64());
    let mut reload_base = f64::NAN;
    let mut reload_peak: f64 = 0.0;
    for i in 0..args.reloads {
        drop(model);
        model = models::load(device, &args.model)?;
        model.run_blocking(&pixels, dims, RunOptions::default())?;
        if i == (args.reloads / 10).max(1) - 1 {
            reload_base = rss_mib();
        }
        reload_peak = reload_peak.max(rss_mib());
    }
    let reload_growth = if args.reloads > 0 { reload_peak - reload_base } else { 0.0 };
    println!("{} loads and drops; growth after warm-up {reload_growth:.1} MiB", args.reloads);
    if runs_growth > args.max_growth_mib || reload_growth > args.max_growth_mib {
        bail!("resident memory grew by more than {} MiB", args.max_growth_mib);
    }
    Ok(())
}
