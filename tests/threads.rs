//! The CPU backend split between ranks (what the browser's worker threads run, here as native
//! threads exchanging through `LocalBoard`): every model family, quantized and int8 checkpoints,
//! padded NaFlex batches and text towers give the single-thread outputs (within 1e-5: the MLP's
//! second product is summed from partial products), and each rank holds only its share of the
//! matrix weights.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessera::cpu::shard::{LocalBoard, Shard};
use tessera::model::{Checkpoint, LoadOptions, Model, ModelOutput, RunOptions};
use tessera::reference::Rng;
use tessera::{Cpu, CpuOptions, Device, HostTensor};

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p)
}

thread_local! {
    /// The instruction set of the backends below (None: the machine's best).
    static ISA: std::cell::Cell<Option<tessera::cpu::Isa>> = const { std::cell::Cell::new(None) };
}

/// One thread, unsplit.
fn single() -> Device {
    Device::Cpu(Cpu::new(&CpuOptions { threads: Some(1), isa: ISA.get(), ..Default::default() }).unwrap())
}

/// Runs `f` on each of `ranks` ranks (each a thread with a one-thread CPU backend), exchanging
/// through a buffer of `capacity` values per half; returns each rank's result.
fn split<T: Send>(ranks: usize, capacity: usize, f: impl Fn(Device) -> T + Sync) -> Vec<T> {
    let boards = LocalBoard::group(ranks, capacity);
    let isa = ISA.get();
    std::thread::scope(|s| {
        let f = &f;
        let hs: Vec<_> = boards
            .into_iter()
            .enumerate()
            .map(|(rank, board)| {
                s.spawn(move || {
                    let shard = Arc::new(Shard::new(rank, ranks, board).unwrap());
                    f(Device::Cpu(Cpu::new(&CpuOptions { threads: Some(1), isa, shard: Some(shard), ..Default::default() }).unwrap()))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("rank panicked")).collect()
    })
}

fn tensors(o: &ModelOutput) -> Vec<(&'static str, HostTensor)> {
    let mut v = Vec::new();
    let named = [("logits", &o.logits), ("last_hidden_state", &o.last_hidden_state), ("pooler_output", &o.pooler_output), ("cls_attention", &o.cls_attention), ("image_embeds", &o.image_embeds)];
    for (n, t) in named {
        if let Some(t) = t {
            v.push((n, t.clone()));
        }
    }
    v.extend(o.hidden_states.iter().map(|t| ("hidden_state", t.clone())));
    v
}

fn assert_same(what: &str, got: &[(&'static str, HostTensor)], want: &[(&'static str, HostTensor)]) {
    assert_eq!(got.len(), want.len(), "{what}: outputs");
    assert!(!want.is_empty(), "{what}: no outputs");
    for ((n, g), (_, w)) in got.iter().zip(want) {
        assert_eq!(g.shape, w.shape, "{what} {n}");
        // Exact but for the MLP's second product, split along its depth: its partial sums are
        // added once more than on one thread.
        let worst = g.data.iter().zip(&w.data).map(|(a, b)| (a - b).abs() / (1.0 + b.abs())).fold(0f32, f32::max);
        assert!(g.data.iter().all(|v| v.is_finite()), "{what} {n}: not finite");
        assert!(worst <= 1e-5, "{what} {n}: differs from one thread by up to {worst} (relative)");
    }
}

/// Every output of `model` on random pixels of `h` x `w` (batch 2, with hidden states and the
/// attention map), on one thread and on 2 and 3 ranks: with the machine's kernels, and with the
/// portable ones, whose 8-column panels split even these small models' matrices evenly.
fn check_model(dir: &str, opts: LoadOptions, size: Option<(usize, usize)>) {
    for isa in [None, Some(tessera::cpu::Isa::Portable)] {
        ISA.set(isa);
        check_model_on(dir, opts.clone(), size);
    }
    ISA.set(None);
}

fn check_model_on(dir: &str, opts: LoadOptions, size: Option<(usize, usize)>) {
    let ck = Checkpoint::from_dir(&fixture(dir)).unwrap();
    let (h, w) = size.unwrap_or(ck.config.image_size);
    let c = ck.config.num_channels;
    let pixels = Rng::new(7).vec(2 * c * h * w, 1.0);
    let ro = RunOptions { hidden_states: true, attention: true, ..Default::default() };
    let run = |d: Device| {
        let ck = Checkpoint::from_dir(&fixture(dir)).unwrap();
        let m = Model::load_with(&d, &ck, opts.clone()).unwrap();
        let out = pollster::block_on(m.run(&pixels, [2, c, h, w], ro)).unwrap();
        (tensors(&out), m.weight_bytes())
    };
    let (want, bytes) = run(single());
    for ranks in [2, 3] {
        for (rank, (got, held)) in split(ranks, 1 << 16, run).into_iter().enumerate() {
            assert_same(&format!("{dir} {h}x{w} rank {rank} of {ranks} ({:?} kernels)", ISA.get()), &got, &want);
            // The matrices split: each rank holds less than the whole model's weights.
            eprintln!("{dir}: rank {rank} of {ranks} holds {held} of {bytes} bytes");
            assert!(held < bytes, "{dir}: rank {rank} of {ranks} holds {held} of {bytes} bytes");
        }
    }
}

#[test]
fn every_family_on_split_ranks_equals_one_thread() {
    for dir in ["vit-classifier", "deit-distilled-bf16", "dinov2-classifier", "clip/clip-vision-projection", "siglip/siglip-vision", "timm/vit-siglip-map", "timm/deit3-layerscale"] {
        check_model(dir, LoadOptions::default(), None);
    }
    // Another grid, and the patch-size dial.
    check_model("vit-classifier", LoadOptions::default(), Some((40, 48)));
    check_model("vit-classifier", LoadOptions { patch_size: Some(8), ..Default::default() }, None);
}

#[test]
fn quantized_and_int8_checkpoints_on_split_ranks_equal_one_thread() {
    check_model("quant/vit-classifier-int4", LoadOptions::default(), None);
    check_model("quant/vit-classifier-int8", LoadOptions::default(), None);
    check_model("quant/vit-classifier-int8", LoadOptions { arithmetic: tessera::quant::Arithmetic::Int8, ..Default::default() }, None);
}

#[test]
fn a_padded_naflex_batch_on_split_ranks_equals_one_thread() {
    let dir = "siglip2/siglip2-classifier";
    let ck = Checkpoint::from_dir(&fixture(dir)).unwrap();
    let grids = [(4, 4), (2, 6), (3, 3)];
    let n = 16;
    let k = 3 * 16 * 16;
    let patches = Rng::new(3).vec(grids.len() * n * k, 1.0);
    let _ = ck;
    let run = |d: Device| {
        let m = Model::load(&d, &Checkpoint::from_dir(&fixture(dir)).unwrap()).unwrap();
        tensors(&pollster::block_on(m.run_patches(&patches, [grids.len(), n, k], &grids, RunOptions { attention: true, ..Default::default() })).unwrap())
    };
    let want = run(single());
    for (rank, got) in split(2, 1 << 16, run).into_iter().enumerate() {
        assert_same(&format!("{dir} padded, rank {rank}"), &got, &want);
    }
}

#[test]
fn text_towers_on_split_ranks_equal_one_thread() {
    let ids: Vec<Vec<u32>> = vec![vec![1, 5, 9, 12, 3, 2], vec![1, 7, 7, 20, 30, 2]];
    for dir in ["text/clip-text", "text/clip-text-projection", "text/siglip-text"] {
        let run = |d: Device| {
            let t = tessera::model::TextModel::load(&d, &Checkpoint::from_dir(&fixture(dir)).unwrap()).unwrap();
            let o = t.run_blocking(&ids).unwrap();
            let mut v = vec![("last_hidden_state", o.last_hidden_state), ("pooler_output", o.pooler_output)];
            v.extend(o.text_embeds.map(|e| ("text_embeds", e)));
            v
        };
        let want = run(single());
        for got in split(2, 1 << 16, run) {
            assert_same(dir, &got, &want);
        }
    }
}

#[test]
fn an_exchange_buffer_of_a_few_rows_gives_the_same_result() {
    // 3 ranks x 16 columns: every exchange takes several rounds.
    let dir = "vit-classifier";
    let ck = Checkpoint::from_dir(&fixture(dir)).unwrap();
    let (h, w) = ck.config.image_size;
    let pixels = Rng::new(11).vec(3 * h * w, 1.0);
    let run = |d: Device| {
        let m = Model::load(&d, &Checkpoint::from_dir(&fixture(dir)).unwrap()).unwrap();
        tensors(&pollster::block_on(m.run(&pixels, [1, 3, h, w], RunOptions::default())).unwrap())
    };
    let want = run(single());
    let widest = ck.config.intermediate_size.div_ceil(3).next_multiple_of(64);
    for got in split(3, 3 * widest, run) {
        assert_same("a small exchange buffer", &got, &want);
    }
}

/// A weights file read a range at a time (as the worker threads read the page's one copy).
struct Ranged(Vec<u8>, std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl tessera::model::ByteSource for Ranged {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn read(&self, start: usize, end: usize) -> Vec<u8> {
        self.1.fetch_max(end - start, std::sync::atomic::Ordering::Relaxed);
        self.0[start..end].to_vec()
    }
}

#[test]
fn a_checkpoint_read_by_range_loads_as_one_read_whole() {
    let dir = fixture("quant/vit-classifier-int8");
    let config = std::fs::read(dir.join("config.json")).unwrap();
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let pre = std::fs::read(dir.join("preprocessor_config.json")).ok();
    let (h, w) = Checkpoint::from_dir(&dir).unwrap().config.image_size;
    let pixels = Rng::new(5).vec(3 * h * w, 1.0);
    let run = |ck: Checkpoint| tensors(&pollster::block_on(Model::load(single(), &ck).unwrap().run(&pixels, [1, 3, h, w], RunOptions::default())).unwrap());
    let largest = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ranged = Checkpoint::from_source("ranged", &config, Box::new(Ranged(weights.clone(), largest.clone())), pre.as_deref()).unwrap();
    assert_same("read by range", &run(ranged), &run(Checkpoint::from_bytes("whole", &config, weights.clone(), pre.as_deref()).unwrap()));
    // No read took the whole file.
    let most = largest.load(std::sync::atomic::Ordering::Relaxed);
    assert!(most > 0 && most < weights.len() / 2, "largest read {most} of {}", weights.len());
    // Truncated, or a header past the end: the same clear errors as a file read whole.
    for bad in [weights[..weights.len() - 4].to_vec(), weights[..6].to_vec(), { let mut b = weights.clone(); b[0..8].copy_from_slice(&(1u64 << 40).to_le_bytes()); b }] {
        let e = Checkpoint::from_source("bad", &config, Box::new(Ranged(bad, largest.clone())), pre.as_deref()).err().expect("refused");
        assert!(e.to_string().contains("bad/model.safetensors"), "{e}");
    }
}
