//! Quantized weights (8 and 4 bits, per channel or in groups along K) in every GEMM kernel, on
//! both devices, against the f64 reference on the dequantized weights (exact up to f32
//! rounding: atol 1e-5, rtol 1e-4, as for float weights). Awkward shapes: K not a multiple of the
//! group or of a word's values, N not a multiple of 4 (the scalar path), ragged tile edges.

mod common;
use common::*;
use tessera::quant::QuantWeight;
use tessera::reference::{self as r, Rng};
use tessera::{Activation, CompileOptions, DType, Device, Graph, Op, Weights};

/// One matmul whose B is `q`, on `device`; returns the kernels it ran and its output, and the
/// reference on the dequantized B.
#[allow(clippy::too_many_arguments)]
fn run_quant(device: &Device, m: usize, q: &QuantWeight, bias: bool, act: Activation, residual: bool, seed: u64, f16: bool) -> (Vec<(String, String)>, Vec<f32>, Vec<f32>) {
    let (k, n) = (q.k, q.n);
    let mut rng = Rng::new(seed);
    let round = |v: Vec<f32>| {
        if f16 {
            v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
        } else {
            v
        }
    };
    let a = round(rng.vec(m * k, 1.0));
    let bv = round(rng.vec(n, 0.5));
    let rv = round(rng.vec(m * n, 1.0));
    let mut g = Graph::new();
    let mut w = if f16 { Weights::new_as(device, DType::F16) } else { Weights::new(device) };
    if f16 {
        g.set_storage(DType::F16);
    }
    let mut feeds: Vec<(&str, &[f32])> = Vec::new();
    let mut ids = vec![];
    if f16 {
        ids.push(g.weight("a", &[m, k]));
        w.insert("a", &[m, k], &a).unwrap();
    } else {
        ids.push(g.input("a", &[m, k]));
        feeds.push(("a", &a));
    }
    ids.push(g.weight("b", &[k, n]));
    w.insert_quant("b", q).expect("upload quantized B");
    if bias {
        ids.push(g.weight("bias", &[n]));
        w.insert("bias", &[n], &bv).unwrap();
    }
    if residual {
        ids.push(g.input("residual", &[m, n]));
        feeds.push(("residual", &rv));
    }
    let out = g.op("op", Op::MatMul { bias, act, residual }, &ids).unwrap();
    g.output(out);
    let exe = pollster::block_on(tessera::Compiled::compile(device, &g, &w, &CompileOptions::default())).expect("compile");
    let kernels = kernel_list(&exe);
    let got = pollster::block_on(exe.run(&feeds)).expect("run").remove(0).data;
    let want = r::matmul(&a, &q.dequantize(), m, k, n, bias.then_some(&bv[..]), act, residual.then_some(&rv[..]));
    (kernels, got, want)
}

fn kernel_list(exe: &tessera::Compiled) -> Vec<(String, String)> {
    match exe {
        tessera::Compiled::Gpu(e) => e.kernels(),
        tessera::Compiled::Cpu(e) => e.kernel_choices().iter().map(|c| (c.node.clone(), format!("{} {}", c.kernel, c.variant))).collect(),
    }
}

/// Scales rounded to f16 for odd seeds (GPUs then hold them as f16), f32 for even ones.
fn random_quant(k: usize, n: usize, bits: u32, group: usize, seed: u64) -> QuantWeight {
    let b = Rng::new(seed).vec(k * n, 1.0 / (k as f32).sqrt());
    let q = QuantWeight::quantize(&b, k, n, bits, group, seed % 2 == 1);
    assert_eq!(q.scales_are_f16(), seed % 2 == 1);
    q
}

/// (M, K, N, group): ragged edges, K past the last full group and word, the scalar path, a group
/// that is the whole of K (per channel).
const SHAPES: [(usize, usize, usize, usize); 6] = [(197, 192, 200, 32), (101, 100, 65, 32), (7, 75, 19, 64), (64, 70, 36, 70), (1, 13, 4, 7), (300, 256, 260, 64)];

#[test]
fn quantized_matmul_on_both_devices() {
    let mut seed = 1;
    for (name, device) in devices() {
        for bits in [8, 4] {
            for (m, k, n, group) in SHAPES {
                let q = random_quant(k, n, bits, group, seed);
                let (bias, residual) = (seed % 2 == 0, seed % 3 == 0);
                let act = Activation::ALL[seed as usize % Activation::ALL.len()];
                let (kernels, got, want) = run_quant(&device, m, &q, bias, act, residual, seed, false);
                let what = format!("{name} int{bits}/g{group} {m}x{k}x{n} bias={bias} act={act:?} residual={residual}");
                let v = &kernels[0].1;
                let f16 = seed % 2 == 1;
                assert!(if name == "gpu" { v.contains("QUANT") && v.contains(&format!("QBITS={bits}")) && v.contains("QSCALE16") == f16 } else { v.contains("gemm-quant") }, "{what} ran {v}");
                assert_close(&what, &got, &want, 1e-5, 1e-4);
                seed += 1;
            }
        }
    }
}

/// Every tile the selector can pick, forced, with 8- and 4-bit B; split-K; the head-major QKV
/// store; f16 storage (lavapipe has `shader-f16`).
#[test]
fn every_gemm_kernel_reads_quantized_weights() {
    let names = ["64x64", "128x128", "32x64", "32x32", "64x64-prefetch", "128x128-prefetch", "64x64-unrolled", "128x128-unrolled"];
    for (i, tile) in names.iter().enumerate() {
        let device = Device::Gpu(gpu_forcing("matmul", tile));
        for (j, (m, k, n, group)) in [(129, 100, 131, 32), (300, 64, 260, 64)].into_iter().enumerate() {
            let bits = if (i + j) % 2 == 0 { 4 } else { 8 };
            let seed = (i * 10 + j + i / 4) as u64;
            let q = random_quant(k, n, bits, group, seed);
            let (kernels, got, want) = run_quant(&device, m, &q, true, Activation::Gelu, true, seed, false);
            let what = format!("{tile} int{bits}/g{group} {m}x{k}x{n}");
            assert!(kernels[0].1.contains("QUANT"), "{what} ran {kernels:?}");
            assert_close(&what, &got, &want, 1e-5, 1e-4);
        }
        // Head-major QKV (a ViT-Ti-like width, K a multiple of the group).
        let (b, t, k, heads, dh) = (2, 37, 64, 3, 8);
        let d = heads * dh;
        let q = random_quant(k, 3 * d, 4, 32, 90 + i as u64);
        let x = Rng::new(91).vec(b * t * k, 1.0);
        let bv = Rng::new(92).vec(3 * d, 0.5);
        let mut g = Graph::new();
        let mut w = Weights::new(&device);
        let ids = [g.input("x", &[b, t, k]), g.weight("w", &[k, 3 * d]), g.weight("bias", &[3 * d])];
        w.insert_quant("w", &q).unwrap();
        w.insert("bias", &[3 * d], &bv).unwrap();
        let out = g.op("qkv", Op::MatMulHeads { heads, bias: true }, &ids).unwrap();
        g.output(out);
        let exe = pollster::block_on(tessera::Compiled::compile(&device, &g, &w, &CompileOptions::default())).unwrap();
        assert!(kernel_list(&exe)[0].1.contains("HEADS") && kernel_list(&exe)[0].1.contains("QUANT"));
        let got = pollster::block_on(exe.run(&[("x", &x)])).unwrap().remove(0).data;
        let flat = r::matmul(&x, &q.dequantize(), b * t, k, 3 * d, Some(&bv), Activation::None, None);
        let mut want = vec![0f32; flat.len()];
        for (i, &v) in flat.iter().enumerate() {
            let (row, c) = (i / (3 * d), i % (3 * d));
            let (bb, tt, part, h, dd) = (row / t, row % t, c / d, (c % d) / dh, c % dh);
            want[(((part * b + bb) * heads + h) * t + tt) * dh + dd] = v;
        }
        assert_close(&format!("{tile} head-major int4"), &got, &want, 1e-5, 1e-4);
    }
    for split in ["64x64-split2", "64x64-split4", "64x64-split8"] {
        let device = Device::Gpu(gpu_forcing("matmul", split));
        for (bits, group, seed) in [(8, 1040, 30), (4, 32, 31), (4, 64, 32)] {
            let q = random_quant(1040, 132, bits, group, seed);
            let (kernels, got, want) = run_quant(&device, 70, &q, true, Activation::Gelu, true, seed, false);
            let what = format!("{split} int{bits}/g{group} 70x1040x132");
            assert!(kernels[0].1.contains("SPLITK") && kernels[0].1.contains("QUANT"), "{what}: {kernels:?}");
            assert_close(&what, &got, &want, 1e-5, 1e-4);
        }
    }
    // Scales below f16's normal range (tiny weights): stored as f16 subnormals, decoded exactly.
    for (bits, vec4) in [(4, true), (8, false)] {
        let (k, n) = (64, if vec4 { 32 } else { 30 });
        let b: Vec<f32> = Rng::new(50).vec(k * n, 2e-5);
        let q = QuantWeight::quantize(&b, k, n, bits, 32, true);
        assert!(q.scales.iter().all(|&s| s < 6.1e-5) && q.scales_are_f16(), "{:?}", &q.scales[..4]);
        let (kernels, got, want) = run_quant(&Device::Gpu(gpu()), 20, &q, false, Activation::None, false, 51, false);
        assert!(kernels[0].1.contains("QSCALE16"), "{kernels:?}");
        assert_close(&format!("int{bits} subnormal f16 scales"), &got, &want, 1e-9, 1e-4);
    }
    // f16 storage: activations and the bias in f16, B quantized as before.
    let q = random_quant(96, 68, 4, 32, 40);
    let (kernels, got, want) = run_quant(&Device::Gpu(gpu()), 50, &q, true, Activation::None, false, 40, true);
    assert!(kernels[0].1.contains("F16") && kernels[0].1.contains("QUANT"), "{kernels:?}");
    assert_close("f16 storage, int4 B", &got, &want, 1e-2, 1e-2);
}

#[test]
fn weights_are_counted_at_their_quantized_size() {
    for (name, device) in devices() {
        let (k, n) = (256, 384);
        let f = Rng::new(7).vec(k * n, 0.1);
        let mut w = Weights::new(&device);
        w.insert("f", &[k, n], &f).unwrap();
        let float = w.bytes();
        for (bits, group) in [(8, k), (4, 32)] {
            // 4-bit scales rounded to f16: GPUs hold them as f16.
            let q = QuantWeight::quantize(&f, k, n, bits, group, bits == 4);
            let mut w = Weights::new(&device);
            w.insert_quant("q", &q).unwrap();
            let words = (k * n * bits as usize / 32) as u64 * 4;
            let scale_bytes = if name == "gpu" && bits == 4 { 2 } else { 4 };
            let scales = (k / group * n) as u64 * scale_bytes;
            assert_eq!(w.bytes(), words + scales, "{name} int{bits}: {} bytes held", w.bytes());
            assert!(w.bytes() * 3 < float, "{name} int{bits}: {} against {float}", w.bytes());
        }
    }
}

#[test]
fn a_quantized_weight_elsewhere_than_a_matrix_product_is_an_error() {
    for (name, device) in devices() {
        let q = random_quant(8, 8, 8, 8, 1);
        let mut g = Graph::new();
        let mut w = Weights::new(&device);
        let s = g.weight("s", &[8, 8]);
        let b = g.weight("b", &[8, 8]);
        w.insert_quant("s", &q).unwrap();
        w.insert("b", &[8, 8], &[0.5; 64]).unwrap();
        // The quantized weight as A: no kernel reads A quantized.
        let out = g.op("mm", Op::MatMul { bias: false, act: Activation::None, residual: false }, &[s, b]).unwrap();
        g.output(out);
        let e = pollster::block_on(tessera::Compiled::compile(&device, &g, &w, &CompileOptions::default())).err().unwrap_or_else(|| panic!("{name}: compiled"));
        let msg = e.to_string();
        assert!(msg.contains("`mm`") && msg.contains('s'), "{name}: {msg}");
        assert!(msg.contains("quantized") && msg.contains("only a matrix product's B"), "{name}: {msg}");
    }
}

#[test]
fn bad_quantized_weights_are_refused_on_upload() {
    for (name, device) in devices() {
        let good = random_quant(64, 8, 4, 32, 3);
        let cases: Vec<(&str, QuantWeight, &str)> = vec![
            ("short words", QuantWeight { words: good.words[1..].to_vec(), ..good.clone() }, "packed words"),
            ("wrong scales", QuantWeight { scales: good.scales[..8].to_vec(), ..good.clone() }, "scales for"),
            (
                "nan scale",
                QuantWeight {
                    scales: {
                        let mut s = good.scales.clone();
                        s[3] = f32::NAN;
                        s
                    },
                    ..good.clone()
                },
                "not finite",
            ),
            ("infinite scale", QuantWeight { scales: vec![f32::INFINITY; good.scales.len()], ..good.clone() }, "not finite"),
            ("3 bits", QuantWeight { bits: 3, ..good.clone() }, "3-bit"),
            ("group mismatch", QuantWeight { group: 16, ..good.clone() }, "scales for"),
        ];
        for (case, q, want) in cases {
            let mut w = Weights::new(&device);
            let e = w.insert_quant("blk.0.fc1", &q).expect_err(case);
            let msg = e.to_string();
            assert!(msg.contains("blk.0.fc1") && msg.contains(want), "{name} {case}: {msg}");
        }
    }
}

/// The int8 arithmetic's f64 reference: A quantized per row exactly as the kernel does it
/// (`quantize_activations`), integer dot products with B's int8 values, the row's and column's
/// scales, then bias, activation and residual.
#[allow(clippy::too_many_arguments)]
fn int8_reference(a: &[f32], q: &QuantWeight, m: usize, kernel: tessera::cpu::gemm_int8::IntKernel, bias: Option<&[f32]>, act: Activation, residual: Option<&[f32]>) -> Vec<f32> {
    let (k, n) = (q.k, q.n);
    let (qa, sa) = tessera::cpu::gemm_int8::quantize_activations(a, m, k, k, kernel);
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let acc: i64 = (0..k).map(|kk| qa[i * k + kk] as i64 * (((q.words[(kk / 4) * n + j] >> (8 * (kk % 4))) & 0xff) as i64 - 128)).sum();
            let x = acc as f64 * sa[i] as f64 * q.scales[j] as f64 + bias.map_or(0.0, |b| b[j] as f64);
            let x = match act {
                Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
                Activation::None => x,
                other => panic!("not in this test: {other:?}"),
            };
            c[i * n + j] = (x + residual.map_or(0.0, |r| r[i * n + j] as f64)) as f32;
        }
    }
    c
}

#[test]
fn int8_arithmetic_computes_its_quantized_arithmetic_in_the_graph() {
    use tessera::cpu::gemm_int8::IntKernel;
    // Every integer kernel this machine has, each against its own arithmetic (7-bit activations
    // on AVX2 without VNNI).
    for kernel in IntKernel::ALL.into_iter().filter(|k| k.available()) {
        let cpu = tessera::Cpu::new(&tessera::CpuOptions { threads: Some(2), int8: Some(kernel), ..Default::default() }).unwrap();
        let device = Device::from(&cpu);
        for (m, k, n, seed) in [(197, 192, 200, 1u64), (7, 75, 19, 2), (1, 13, 4, 3), (300, 256, 260, 4)] {
            let q = random_quant(k, n, 8, k, seed * 2);
            let mut rng = Rng::new(seed);
            let (a, bias, res) = (rng.vec(m * k, 1.0), rng.vec(n, 0.5), rng.vec(m * n, 1.0));
            for (act, residual) in [(Activation::None, false), (Activation::Gelu, true)] {
                let mut g = Graph::new();
                let mut w = Weights::new(&device);
                w.set_arithmetic(tessera::quant::Arithmetic::Int8);
                let mut ids = vec![g.input("a", &[m, k]), g.weight("b", &[k, n]), g.weight("bias", &[n])];
                w.insert_quant("b", &q).unwrap();
                w.insert("bias", &[n], &bias).unwrap();
                let mut feeds: Vec<(&str, &[f32])> = vec![("a", &a)];
                if residual {
                    ids.push(g.input("residual", &[m, n]));
                    feeds.push(("residual", &res));
                }
                assert_eq!(w.quantized_layers(), (1, 1), "{kernel:?}: the weight was packed for int8");
                let out = g.op("op", Op::MatMul { bias: true, act, residual }, &ids).unwrap();
                g.output(out);
                let exe = pollster::block_on(tessera::Compiled::compile(&device, &g, &w, &CompileOptions::default())).unwrap();
                assert!(kernel_list(&exe).iter().any(|(_, k)| k.starts_with("gemm-int8")), "{kernel:?}: {:?}", kernel_list(&exe));
                let got = pollster::block_on(exe.run(&feeds)).unwrap().remove(0).data;
                let want = int8_reference(&a, &q, m, kernel, Some(&bias), act, residual.then_some(&res[..]));
                assert_close(&format!("int8 {kernel:?} {m}x{k}x{n} {act:?}"), &got, &want, 1e-5, 1e-5);
                // And within the activations' rounding of the exact product.
                let exact = r::matmul(&a, &q.dequantize(), m, k, n, Some(&bias), act, residual.then_some(&res[..]));
                let err = got.iter().zip(&exact).map(|(g, e)| (g - e).abs()).fold(0f32, f32::max);
                let scale = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
                let levels = kernel.levels() as f32;
                assert!(err <= scale * 4.0 / levels, "int8 {kernel:?} {m}x{k}x{n}: {err} from the exact product (largest {scale})");
            }
        }
    }
}

#[test]
fn int8_arithmetic_keeps_4_bit_and_grouped_weights_dequantized() {
    let cpu = common::cpu();
    let device = Device::from(&cpu);
    for (bits, group) in [(4, 64), (8, 32)] {
        let q = random_quant(64, 16, bits, group, 8);
        let mut w = Weights::new(&device);
        w.set_arithmetic(tessera::quant::Arithmetic::Int8);
        w.insert_quant("b", &q).unwrap();
        assert_eq!(w.quantized_layers(), (1, 0), "{bits} bits, group {group}");
    }
}
