//! GPU memory: the engine's ledger counts what it holds and returns to zero when models are
//! dropped; a memory budget refuses a model before uploading it, and splits a batch that does
//! not fit into chunks that do, with the same results as one run.

use std::path::Path;
use std::sync::Arc;
use tessera::{Checkpoint, Gpu, GpuOptions, Model, RunOptions};

fn gpu_with_budget(budget: Option<u64>) -> Arc<Gpu> {
    let mut opts = GpuOptions::from_env().unwrap();
    opts.memory_budget = budget;
    Gpu::new_blocking(&opts).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
}

fn fixture() -> Checkpoint {
    Checkpoint::from_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit-classifier")).unwrap()
}

fn pixels(model: &Model, batch: usize) -> (Vec<f32>, [usize; 4]) {
    let (h, w) = model.config.image_size;
    let c = model.config.num_channels;
    (tessera::reference::Rng::new(7).vec(batch * c * h * w, 1.0), [batch, c, h, w])
}

#[test]
fn ledger_counts_every_buffer_and_returns_to_zero() {
    let gpu = gpu_with_budget(None);
    assert_eq!(gpu.memory_in_use(), 0);
    let model = Model::load(&gpu, &fixture()).unwrap();
    let weights = gpu.memory_in_use();
    assert_eq!(weights, model.weight_bytes(), "after loading only the weights are held");
    let (px, dims) = pixels(&model, 3);
    model.run_blocking(&px, dims, RunOptions::default()).unwrap();
    assert!(gpu.memory_in_use() > weights, "a compiled graph holds an arena");
    drop(model);
    assert_eq!(gpu.memory_in_use(), 0, "dropping the model frees everything it held");
}

#[test]
fn a_model_over_the_budget_is_refused_before_uploading() {
    let gpu = gpu_with_budget(Some(64 << 10));
    let e = Model::load(&gpu, &fixture()).err().expect("a 64 KiB budget cannot hold the model");
    assert_eq!(e.kind(), "out_of_memory", "{e}");
    let msg = e.to_string();
    assert!(msg.contains("model.safetensors") && msg.contains("budget") && msg.contains("TESSERA_MEMORY_BUDGET"), "{msg}");
    assert_eq!(gpu.memory_in_use(), 0, "nothing was uploaded");
}

#[test]
fn a_batch_over_the_budget_runs_in_chunks_with_the_same_results() {
    // Reference: the whole batch in one run, no budget.
    let free = gpu_with_budget(None);
    let model = Model::load(&free, &fixture()).unwrap();
    let batch = 24;
    let (px, dims) = pixels(&model, batch);
    let opts = RunOptions { hidden_states: false, attention: true, ..Default::default() };
    let whole = model.run_blocking(&px, dims, opts).unwrap();
    let weights = model.weight_bytes();
    let whole_cost = free.memory_in_use() - weights;
    drop(model);
    assert_eq!(free.memory_in_use(), 0);
    // What one image's graph holds, to size a budget that fits a few images but not the batch.
    let model = Model::load(&free, &fixture()).unwrap();
    let (one_px, one_dims) = pixels(&model, 1);
    model.run_blocking(&one_px, one_dims, opts).unwrap();
    let per_image = free.memory_in_use() - weights;
    drop(model);
    let budget = weights + per_image * 5;
    assert!(whole_cost > per_image * 5, "the budget must be too small for the whole batch in one graph");
    let gpu = gpu_with_budget(Some(budget));
    let model = Model::load(&gpu, &fixture()).unwrap();
    let chunked = model.run_blocking(&px, dims, opts).unwrap();
    assert!(gpu.memory_in_use() <= budget);
    for (name, a, b) in [
        ("logits", whole.logits.as_ref().unwrap(), chunked.logits.as_ref().unwrap()),
        ("last_hidden_state", whole.last_hidden_state.as_ref().unwrap(), chunked.last_hidden_state.as_ref().unwrap()),
        ("cls_attention", whole.cls_attention.as_ref().unwrap(), chunked.cls_attention.as_ref().unwrap()),
    ] {
        assert_eq!(a.shape, b.shape, "{name}");
        assert_eq!(a.shape[0], batch, "{name}");
        let max = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(max <= 1e-6, "{name}: chunked run differs by {max}");
    }
    // Too small for even one image: a clear error, not a device loss.
    let tight = gpu_with_budget(Some(weights + per_image / 2));
    let model = Model::load(&tight, &fixture()).unwrap();
    let e = model.run_blocking(&px, dims, opts).expect_err("no room for activations");
    assert_eq!(e.kind(), "out_of_memory", "{e}");
    assert!(!tight.is_lost());
    assert_eq!(tight.memory_in_use(), weights, "the failed attempts left nothing behind");
}

#[test]
fn compiled_graphs_are_bounded() {
    let gpu = gpu_with_budget(None);
    let max = tessera::model::MAX_COMPILED;
    let batches: Vec<usize> = (1..=max + 4).collect();
    // What one graph of each batch size holds, measured alone.
    let cost: Vec<u64> = batches
        .iter()
        .map(|&b| {
            let m = Model::load(&gpu, &fixture()).unwrap();
            let before = gpu.memory_in_use();
            let (px, dims) = pixels(&m, b);
            m.run_blocking(&px, dims, RunOptions::default()).unwrap();
            gpu.memory_in_use() - before
        })
        .collect();
    assert_eq!(gpu.memory_in_use(), 0);
    let model = Model::load(&gpu, &fixture()).unwrap();
    for &b in &batches {
        let (px, dims) = pixels(&model, b);
        model.run_blocking(&px, dims, RunOptions::default()).unwrap();
    }
    assert_eq!(model.compiled_graphs(), max);
    // The oldest graphs were dropped and gave their memory back: exactly the newest are held.
    let newest: u64 = cost[batches.len() - max..].iter().sum();
    assert_eq!(gpu.memory_in_use(), model.weight_bytes() + newest);
}
