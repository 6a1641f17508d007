//! The executor: a multi-op graph equals its ops run one by one, the arena is shared by lifetime,
//! runs are deterministic, and bad graphs fail with typed errors.

mod common;
use common::*;
use std::collections::HashMap;
use tessera::reference::{self as r, Rng};
use tessera::{Activation, CompileOptions, DType, Error, Executable, Graph, GpuOptions, Op, TensorId, TensorKind, Weights};

const B: usize = 2;
const T: usize = 37;
const D: usize = 48;
const HEADS: usize = 3;
const MLP: usize = 4 * D;

/// A pre-norm transformer block (as in ViT) over `x (B, T, D)`.
fn block_graph() -> (Graph, Vec<(String, Vec<usize>)>) {
    let mut g = Graph::new();
    let mut weights = Vec::new();
    let mut w = |g: &mut Graph, name: &str, shape: &[usize]| {
        weights.push((name.to_string(), shape.to_vec()));
        g.weight(name, shape)
    };
    let x = g.input("x", &[B, T, D]);
    let ln1_g = w(&mut g, "ln1.weight", &[D]);
    let ln1_b = w(&mut g, "ln1.bias", &[D]);
    let qkv_w = w(&mut g, "qkv.weight", &[D, 3 * D]);
    let qkv_b = w(&mut g, "qkv.bias", &[3 * D]);
    let proj_w = w(&mut g, "proj.weight", &[D, D]);
    let proj_b = w(&mut g, "proj.bias", &[D]);
    let ln2_g = w(&mut g, "ln2.weight", &[D]);
    let ln2_b = w(&mut g, "ln2.bias", &[D]);
    let fc1_w = w(&mut g, "fc1.weight", &[D, MLP]);
    let fc1_b = w(&mut g, "fc1.bias", &[MLP]);
    let fc2_w = w(&mut g, "fc2.weight", &[MLP, D]);
    let fc2_b = w(&mut g, "fc2.bias", &[D]);
    let h = g.layer_norm("ln1", x, ln1_g, ln1_b, 1e-6).unwrap();
    let qkv = g.matmul("qkv", h, qkv_w, Some(qkv_b), Activation::None, None).unwrap();
    let att = g.attention("attention", qkv, HEADS, 1.0 / ((D / HEADS) as f32).sqrt()).unwrap();
    let x1 = g.matmul("proj", att, proj_w, Some(proj_b), Activation::None, Some(x)).unwrap();
    let h2 = g.layer_norm("ln2", x1, ln2_g, ln2_b, 1e-6).unwrap();
    let m = g.matmul("fc1", h2, fc1_w, Some(fc1_b), Activation::Gelu, None).unwrap();
    let out = g.matmul("fc2", m, fc2_w, Some(fc2_b), Activation::None, Some(x1)).unwrap();
    let cls = g.slice_tokens("cls", out, 0, 1).unwrap();
    g.output(out);
    g.output(cls);
    (g, weights)
}

fn random_weights(shapes: &[(String, Vec<usize>)], seed: u64) -> HashMap<String, Vec<f32>> {
    let mut rng = Rng::new(seed);
    shapes
        .iter()
        .map(|(n, s)| {
            let numel: usize = s.iter().product();
            let scale = if s.len() == 2 { 1.0 / (s[0] as f32).sqrt() } else { 0.5 };
            let mut v = rng.vec(numel, scale);
            if n.starts_with("ln") && n.ends_with("weight") {
                v.iter_mut().for_each(|x| *x += 1.0);
            }
            (n.clone(), v)
        })
        .collect()
}

fn upload(data: &HashMap<String, Vec<f32>>, shapes: &[(String, Vec<usize>)]) -> Weights {
    let mut w = Weights::new(&gpu());
    for (n, s) in shapes {
        w.insert(n, s, &data[n]).unwrap();
    }
    w
}

fn compile(g: &Graph, w: &Weights) -> tessera::Result<Executable> {
    pollster::block_on(Executable::compile(&gpu(), g, w, &CompileOptions::default()))
}

#[test]
fn block_graph_equals_ops_one_by_one_and_the_reference() {
    let (g, shapes) = block_graph();
    let wd = random_weights(&shapes, 1);
    let w = upload(&wd, &shapes);
    let x = Rng::new(2).vec(B * T * D, 1.0);
    let exe = compile(&g, &w).unwrap();
    let out = exe.run_blocking(&[("x", &x)]).unwrap();
    assert_eq!(out[0].shape, vec![B, T, D]);
    assert_eq!(out[1].shape, vec![B, 1, D]);

    // The same ops, each as its own one-node graph.
    let lin = |a: &[f32], rows: usize, k: usize, n: usize, name: &str, act: Activation, res: Option<&[f32]>| {
        let (wn, bn) = (format!("{name}.weight"), format!("{name}.bias"));
        let mut args = vec![input("a", &[rows, k], a), weight("w", &[k, n], &wd[&wn]), weight("b", &[n], &wd[&bn])];
        if let Some(res) = res {
            args.push(input("r", &[rows, n], res));
        }
        run_op(Op::MatMul { bias: true, act, residual: res.is_some() }, &args)
    };
    let ln = |a: &[f32], name: &str| {
        run_op(
            Op::LayerNorm { eps: 1e-6 },
            &[input("x", &[B * T, D], a), weight("g", &[D], &wd[&format!("{name}.weight")]), weight("b", &[D], &wd[&format!("{name}.bias")])],
        )
    };
    let h = ln(&x, "ln1");
    let qkv = lin(&h, B * T, D, 3 * D, "qkv", Activation::None, None);
    let att = run_op(Op::Attention { heads: HEADS, scale: 1.0 / ((D / HEADS) as f32).sqrt() }, &[input("qkv", &[B, T, 3 * D], &qkv)]);
    let x1 = lin(&att, B * T, D, D, "proj", Activation::None, Some(&x));
    let h2 = ln(&x1, "ln2");
    let m = lin(&h2, B * T, D, MLP, "fc1", Activation::Gelu, None);
    let step_by_step = lin(&m, B * T, MLP, D, "fc2", Activation::None, Some(&x1));
    assert_eq!(out[0].data, step_by_step, "the compiled graph and its ops run one by one differ");

    // And the f64 reference end to end.
    let rh = r::layer_norm(&x, B * T, D, &wd["ln1.weight"], &wd["ln1.bias"], 1e-6);
    let rq = r::matmul(&rh, &wd["qkv.weight"], B * T, D, 3 * D, Some(&wd["qkv.bias"]), Activation::None, None);
    let ra = r::attention(&rq, B, T, HEADS, D / HEADS, 1.0 / ((D / HEADS) as f32).sqrt());
    let rx1 = r::matmul(&ra, &wd["proj.weight"], B * T, D, D, Some(&wd["proj.bias"]), Activation::None, Some(&x));
    let rh2 = r::layer_norm(&rx1, B * T, D, &wd["ln2.weight"], &wd["ln2.bias"], 1e-6);
    let rm = r::matmul(&rh2, &wd["fc1.weight"], B * T, D, MLP, Some(&wd["fc1.bias"]), Activation::Gelu, None);
    let rout = r::matmul(&rm, &wd["fc2.weight"], B * T, MLP, D, Some(&wd["fc2.bias"]), Activation::None, Some(&rx1));
    assert_close("block vs f64 reference", &out[0].data, &rout, 1e-4, 1e-4);
    assert_close("cls token", &out[1].data, &r::slice_tokens(&rout, B, T, D, 0, 1), 1e-4, 1e-4);
}

#[test]
fn arena_is_smaller_than_the_sum_of_intermediates() {
    let (mut g, shapes) = block_graph();
    // Twelve blocks deep, like ViT-B: memory must not grow with depth.
    let mut x = g.outputs()[0];
    let ids: HashMap<String, TensorId> = shapes.iter().map(|(n, _)| (n.clone(), g.find(n).unwrap())).collect();
    for layer in 1..12 {
        let n = |s: &str| format!("l{layer}.{s}");
        let h = g.layer_norm(&n("ln1"), x, ids["ln1.weight"], ids["ln1.bias"], 1e-6).unwrap();
        let qkv = g.matmul(&n("qkv"), h, ids["qkv.weight"], Some(ids["qkv.bias"]), Activation::None, None).unwrap();
        let att = g.attention(&n("attention"), qkv, HEADS, 0.25).unwrap();
        let x1 = g.matmul(&n("proj"), att, ids["proj.weight"], Some(ids["proj.bias"]), Activation::None, Some(x)).unwrap();
        let h2 = g.layer_norm(&n("ln2"), x1, ids["ln2.weight"], ids["ln2.bias"], 1e-6).unwrap();
        let m = g.matmul(&n("fc1"), h2, ids["fc1.weight"], Some(ids["fc1.bias"]), Activation::Gelu, None).unwrap();
        x = g.matmul(&n("fc2"), m, ids["fc2.weight"], Some(ids["fc2.bias"]), Activation::None, Some(x1)).unwrap();
    }
    g.output(x);
    let w = upload(&random_weights(&shapes, 3), &shapes);
    let exe = compile(&g, &w).unwrap();
    let plan = exe.plan();
    eprintln!("12-block graph: {plan}");
    eprintln!("sum of intermediates {} bytes, arena {} bytes, peak live {} bytes", plan.naive, plan.arena, plan.peak_live);
    assert!(plan.arena < plan.naive / 10, "arena {} is not well below the unshared {}", plan.arena, plan.naive);
    assert!(plan.arena >= plan.peak_live);
    let input = Rng::new(4).vec(B * T * D, 1.0);
    let out = exe.run_blocking(&[("x", &input)]).unwrap();
    assert!(out.iter().all(|t| t.data.iter().all(|v| v.is_finite())));
}

#[test]
fn same_compiled_graph_twice_is_bit_identical() {
    let (g, shapes) = block_graph();
    let w = upload(&random_weights(&shapes, 5), &shapes);
    let exe = compile(&g, &w).unwrap();
    let x = Rng::new(6).vec(B * T * D, 1.0);
    let a = exe.run_blocking(&[("x", &x)]).unwrap();
    let other = Rng::new(7).vec(B * T * D, 1.0);
    let between = exe.run_blocking(&[("x", &other)]).unwrap();
    let b = exe.run_blocking(&[("x", &x)]).unwrap();
    assert_ne!(a[0].data, between[0].data);
    for (p, q) in a.iter().zip(&b) {
        assert_eq!(p.data, q.data, "output `{}` changed between runs", p.name);
    }
}

#[test]
fn profile_reports_every_op() {
    let gpu = gpu();
    if !gpu.report().timestamp_query {
        panic!("this adapter has no timestamp-query; the profiler cannot be tested here");
    }
    let (g, shapes) = block_graph();
    let w = upload(&random_weights(&shapes, 8), &shapes);
    let exe = pollster::block_on(Executable::compile(&gpu, &g, &w, &CompileOptions { profile: true })).unwrap();
    let x = Rng::new(9).vec(B * T * D, 1.0);
    let plain = compile(&g, &w).unwrap().run_blocking(&[("x", &x)]).unwrap();
    let (out, profile) = pollster::block_on(exe.run_profiled(&[("x", &x)])).unwrap();
    eprintln!("{profile}");
    assert_eq!(out[0].data, plain[0].data);
    assert_eq!(profile.ops.len(), exe.num_steps());
    assert_eq!(profile.ops[0].name, "ln1");
    assert!(profile.ops.iter().all(|o| o.ms >= 0.0 && o.ms.is_finite()));
    assert!(profile.total_ms() > 0.0);
    assert!(profile.ops.iter().find(|o| o.kind == "matmul").unwrap().gflops > 0.0);
    let per_run = pollster::block_on(exe.gpu_time_per_run(&[("x", &x)], 4)).unwrap();
    assert!(per_run > 0.0 && per_run.is_finite(), "{per_run}");
}

// ---- bad input: typed errors, never a panic ----

fn compile_err(g: &Graph) -> Error {
    match compile(g, &Weights::new(&gpu())) {
        Ok(_) => panic!("compile succeeded on a bad graph"),
        Err(e) => e,
    }
}

#[test]
fn cycle_is_rejected() {
    let mut g = Graph::new();
    let x = g.input("x", &[4, 4]);
    let a = g.tensor("a", &[4, 4], DType::F32, TensorKind::Activation);
    let b = g.tensor("b", &[4, 4], DType::F32, TensorKind::Activation);
    g.add_node("first", Op::Add, &[x, b], a);
    g.add_node("second", Op::Add, &[x, a], b);
    g.output(b);
    let e = compile_err(&g);
    assert_eq!(e.kind(), "invalid_graph");
    assert!(e.to_string().contains("cycle"), "{e}");
}

#[test]
fn dangling_tensor_is_rejected() {
    let mut g = Graph::new();
    let x = g.input("x", &[4, 4]);
    let ghost = g.tensor("ghost", &[4, 4], DType::F32, TensorKind::Activation);
    let y = g.tensor("y", &[4, 4], DType::F32, TensorKind::Activation);
    g.add_node("sum", Op::Add, &[x, ghost], y);
    g.output(y);
    let e = compile_err(&g);
    assert_eq!(e.kind(), "invalid_graph");
    assert!(e.to_string().contains("ghost") && e.to_string().contains("dangling"), "{e}");
}

#[test]
fn shape_mismatch_names_op_and_tensor() {
    let mut g = Graph::new();
    let a = g.input("a", &[5, 7]);
    let b = g.weight("w", &[8, 3]);
    let e = g.matmul("proj", a, b, None, Activation::None, None).unwrap_err();
    assert_eq!(e.kind(), "shape");
    let msg = e.to_string();
    assert!(msg.contains("proj") && msg.contains("`w`") && msg.contains("[8, 3]") && msg.contains("[7, N]"), "{msg}");

    // The same mistake through add_node is caught at compile.
    let mut g = Graph::new();
    let a = g.input("a", &[5, 7]);
    let c = g.input("c", &[5, 6]);
    let y = g.tensor("y", &[5, 7], DType::F32, TensorKind::Activation);
    g.add_node("sum", Op::Add, &[a, c], y);
    g.output(y);
    assert_eq!(compile_err(&g).kind(), "shape");

    // A declared output shape that disagrees with the op.
    let mut g = Graph::new();
    let a = g.input("a", &[5, 7]);
    let y = g.tensor("y", &[5, 8], DType::F32, TensorKind::Activation);
    g.add_node("norm", Op::Softmax, &[a], y);
    g.output(y);
    let e = compile_err(&g);
    assert!(e.kind() == "shape" && e.to_string().contains("norm"), "{e}");
}

#[test]
fn unsupported_dtype_is_rejected() {
    // One node mixing f32 and f16 tensors.
    let mut g = Graph::new();
    let a = g.input("a", &[4, 4]);
    let h = g.tensor("half", &[4], DType::F16, TensorKind::Weight);
    let e = g.mul_row("scale", a, h).unwrap_err();
    assert_eq!(e.kind(), "unsupported_dtype");
    assert!(e.to_string().contains("f16") && e.to_string().contains("half"), "{e}");
    // Graph inputs are written from f32 host data.
    let mut g = Graph::new();
    let a = g.tensor("half_input", &[4, 4], DType::F16, TensorKind::Input);
    let y = g.softmax("sm", a).unwrap();
    g.output(y);
    let e = compile_err(&g);
    assert!(e.kind() == "unsupported_dtype" && e.to_string().contains("half_input") && e.to_string().contains("graph inputs"), "{e}");
}

#[test]
fn invalid_op_parameters_are_rejected() {
    let mut g = Graph::new();
    let qkv = g.input("qkv", &[1, 10, 3 * 96]);
    assert_eq!(g.attention("att", qkv, 0, 1.0).unwrap_err().kind(), "invalid_op");
    assert_eq!(g.attention("att", qkv, 5, 1.0).unwrap_err().kind(), "invalid_op");
    let wide = g.input("wide", &[1, 10, 3 * 258]);
    let e = g.attention("att", wide, 1, 1.0).unwrap_err();
    assert!(e.to_string().contains("head dim 258"), "{e}");
    let x = g.input("x", &[2, 10, 8]);
    assert_eq!(g.slice_tokens("s", x, 9, 2).unwrap_err().kind(), "invalid_op");
    let img = g.input("img", &[1, 3, 8, 8]);
    let (w, b, p) = (g.weight("w", &[3 * 16 * 16, 4]), g.weight("b", &[4]), g.weight("p", &[1, 4]));
    assert_eq!(g.patch_embed("pe", img, w, b, p, None, 16).unwrap_err().kind(), "invalid_op");
    let lg = g.weight("g", &[8]);
    assert_eq!(g.layer_norm("ln", x, lg, lg, f32::NAN).unwrap_err().kind(), "invalid_op");
    // Head-major projections: heads must divide D, head dim and K multiples of 4, a 3-D input.
    let a = g.input("a", &[2, 10, 16]);
    let w = g.weight("wqkv", &[16, 3 * 24]);
    assert!(g.matmul_heads("qkv", a, w, None, 6).is_ok());
    assert_eq!(g.matmul_heads("qkv5", a, w, None, 5).unwrap_err().kind(), "invalid_op");
    let e = g.matmul_heads("qkv12", a, w, None, 12).unwrap_err();
    assert!(e.to_string().contains("head dim (2)"), "{e}");
    let flat = g.input("flat", &[20, 16]);
    assert_eq!(g.matmul_heads("qkv2d", flat, w, None, 6).unwrap_err().kind(), "shape");
    let w_odd = g.weight("w_odd", &[16, 70]);
    assert_eq!(g.matmul_heads("qkv_odd", a, w_odd, None, 2).unwrap_err().kind(), "shape");
    // Attention on a head-major input whose head count differs from the op's.
    let hm = g.input("hm", &[3, 2, 4, 10, 8]);
    assert!(g.attention("att_hm", hm, 4, 1.0).is_ok());
    assert_eq!(g.attention("att_hm3", hm, 3, 1.0).unwrap_err().kind(), "shape");
}

#[test]
fn tensor_over_device_limit_is_a_clear_error() {
    let gpu = gpu();
    let limit = gpu.limits().max_storage_buffer_binding_size as usize;
    // Declared, never allocated: the check comes before any buffer.
    let rows = limit / (4 * 1024) + 1;
    let mut g = Graph::new();
    let x = g.input("huge", &[rows, 1024]);
    let y = g.softmax("softmax", x).unwrap();
    g.output(y);
    let e = compile_err(&g);
    assert_eq!(e.kind(), "limit_exceeded");
    let msg = e.to_string();
    assert!(msg.contains("huge") && msg.contains("max_storage_buffer_binding_size"), "{msg}");

    let data = vec![0f32; 16];
    let mut w = Weights::new(&gpu);
    assert_eq!(w.insert("w", &[4, 5], &data).unwrap_err().kind(), "weight");
    assert!(w.is_empty());
}

#[test]
fn missing_weight_and_bad_inputs_are_reported() {
    let mut g = Graph::new();
    let a = g.input("a", &[3, 4]);
    let s = g.weight("scale", &[4]);
    let y = g.mul_row("scale_it", a, s).unwrap();
    g.output(y);
    let e = compile(&g, &Weights::new(&gpu())).err().expect("missing weight must fail");
    assert!(e.kind() == "weight" && e.to_string().contains("scale"), "{e}");

    let mut w = Weights::new(&gpu());
    w.insert("scale", &[2, 2], &[1.0; 4]).unwrap();
    let e = compile(&g, &w).err().expect("wrong weight shape must fail");
    assert!(e.kind() == "weight" && e.to_string().contains("[2, 2]"), "{e}");

    let mut w = Weights::new(&gpu());
    w.insert("scale", &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let exe = compile(&g, &w).unwrap();
    let e = exe.run_blocking(&[("a", &[1.0; 5])]).unwrap_err();
    assert!(e.kind() == "input" && e.to_string().contains("12"), "{e}");
    assert_eq!(exe.run_blocking(&[]).unwrap_err().kind(), "input");
    assert_eq!(exe.run_blocking(&[("a", &[1.0; 12]), ("b", &[1.0])]).unwrap_err().kind(), "input");
    let ok = exe.run_blocking(&[("a", &[1.0; 12])]).unwrap();
    assert_eq!(ok[0].data, [1.0, 2.0, 3.0, 4.0].repeat(3));
}

#[test]
fn no_matching_adapter_says_how_to_get_one() {
    let opts = GpuOptions { adapter_name: Some("no-such-adapter-xyz".into()), ..Default::default() };
    let e = pollster::block_on(tessera::Gpu::new(&opts)).err().expect("must fail");
    assert_eq!(e.kind(), "no_adapter");
    let msg = e.to_string();
    assert!(msg.contains("no-such-adapter-xyz") && msg.contains("mesa-vulkan-drivers"), "{msg}");
    assert_eq!(tessera::gpu::parse_backends("vulkan,metal").unwrap(), wgpu_backends());
    assert_eq!(tessera::gpu::parse_backends("cuda").unwrap_err().kind(), "no_adapter");
}

fn wgpu_backends() -> tessera::wgpu::Backends {
    tessera::wgpu::Backends::VULKAN | tessera::wgpu::Backends::METAL
}
