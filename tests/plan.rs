//! Memory plans of whole models, without running them: the activation arena of ViT-B/16 (and
//! DeiT-S/16) at batch 64 stays within 1.2x of the largest set of tensors live at one time, in f32
//! and f16; and the plan computed without a device is the one the executor packs on one.

mod common;
use tessera::plan_graph;
use tessera::model::{build_graph, synthetic, Arch, Head};
use tessera::{DType, RunOptions};

#[test]
fn vit_b16_batch_64_arena_is_within_1_2x_of_peak_live() {
    for (name, storage) in [("vit-b16", DType::F32), ("vit-b16", DType::F16), ("deit-s16", DType::F32)] {
        let cfg = synthetic::config(name).unwrap();
        for opts in [RunOptions::default(), RunOptions { hidden_states: true, attention: true, ..Default::default() }] {
            let graph = build_graph(Arch { config: &cfg, head: Head::Cls, pooler: false, projection: false, storage }, 64, 224, 224, opts).unwrap().graph;
            let plan = plan_graph(&graph, 256).unwrap();
            let ratio = plan.arena as f64 / plan.peak_live as f64;
            let mib = |b: u64| b as f64 / 1048576.0;
            eprintln!(
                "{name} {storage} batch 64 (hidden states: {}): arena {:.1} MiB, peak live {:.1} MiB ({ratio:.3}x), unshared {:.1} MiB, weights {:.1} MiB",
                opts.hidden_states,
                mib(plan.arena),
                mib(plan.peak_live),
                mib(plan.naive),
                mib(plan.weights)
            );
            assert!(plan.arena >= plan.peak_live, "{name}: an arena smaller than the live set is impossible");
            assert!(ratio <= 1.2, "{name} {storage}: arena {ratio:.3}x the peak live set");
        }
    }
}

#[test]
fn the_plan_without_a_device_is_the_one_compiled() {
    let gpu = common::gpu();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vit-classifier");
    let model = tessera::Model::load(&gpu, &tessera::Checkpoint::from_dir(&dir).unwrap()).unwrap();
    let (h, w) = model.config.image_size;
    let pixels = vec![0.5f32; 3 * 3 * h * w];
    model.run_blocking(&pixels, [3, 3, h, w], RunOptions::default()).unwrap();
    let (_, compiled) = model.plan(3, h, w, RunOptions::default()).unwrap();
    let graph = build_graph(model.arch(), 3, h, w, RunOptions::default()).unwrap().graph;
    let align = gpu.limits().min_storage_buffer_offset_alignment as u64;
    let planned = plan_graph(&graph, align).unwrap();
    assert_eq!((planned.arena, planned.peak_live, planned.naive), (compiled.arena, compiled.peak_live, compiled.naive));
}
