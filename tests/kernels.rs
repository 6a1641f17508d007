//! Every kernel on both devices (the GPU adapter, then the CPU backend) against the f64 CPU
//! reference, on seeded random data and shapes that are not multiples of the tiles.
//!
//! Tolerances (|gpu - ref| <= atol + rtol * |ref|), all f32:
//! - matmul, patch embedding: atol 1e-5, rtol 1e-4 (inputs scaled so outputs are O(1))
//! - attention: atol 1e-5, rtol 1e-4
//! - layer norm, softmax: atol 1e-5, rtol 1e-4
//! - add, scale, token slice/mean, concat: atol 1e-6, rtol 1e-6 (one rounding or none)

mod common;
use common::*;
use tessera::reference::{self as r, Rng};
use tessera::{Activation, Op};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

#[test]
fn matmul_plain_over_many_shapes() {
    each_device(|| {
        let mut seed = 1;
        for m in [1, 7, 101, 197, 394] {
            for (k, n) in [(33, 65), (64, 96), (75, 19), (3, 5), (192, 200)] {
                check_matmul(m, k, n, false, Activation::None, false, seed);
                seed += 1;
            }
        }
    });
}

#[test]
fn matmul_epilogues() {
    each_device(|| {
        let mut seed = 100;
        for (m, k, n) in [(197, 64, 96), (101, 33, 65), (7, 128, 36)] {
            for act in Activation::ALL {
                for flags in 0..4 {
                    check_matmul(m, k, n, flags & 1 != 0, act, flags & 2 != 0, seed);
                    seed += 1;
                }
            }
        }
    });
}

#[test]
fn matmul_vit_block_widths() {
    each_device(|| {
        // The shapes of a ViT-S block at 197 tokens (vec4 path, K and N multiples of 4).
        check_matmul(197, 384, 1152, true, Activation::None, false, 7);
        check_matmul(197, 384, 1536, true, Activation::Gelu, false, 8);
        check_matmul(197, 1536, 384, true, Activation::None, true, 9);
    });
}

#[test]
fn matmul_batched_leading_dims() {
    each_device(|| {
        // a (B, T, K): the leading dims fold into M.
        let (b, t, k, n) = (3, 17, 24, 40);
        let mut rng = Rng::new(5);
        let a = rng.vec(b * t * k, 1.0);
        let w = rng.vec(k * n, 0.2);
        let got = run_op(Op::MatMul { bias: false, act: Activation::None, residual: false }, &[input("a", &[b, t, k], &a), weight("w", &[k, n], &w)]);
        assert_close("matmul (3, 17, 24) x (24, 40)", &got, &r::matmul(&a, &w, b * t, k, n, None, Activation::None, None), ATOL, RTOL);
    });
}

#[test]
fn gelu_matches_erf_form_across_range() {
    each_device(|| {
        // One column, identity weight: the epilogue alone, over [-10, 10].
        let m = 2001;
        let a: Vec<f32> = (0..m).map(|i| -10.0 + 20.0 * i as f32 / (m - 1) as f32).collect();
        let got = run_op(Op::MatMul { bias: false, act: Activation::Gelu, residual: false }, &[input("a", &[m, 1], &a), weight("one", &[1, 1], &[1.0])]);
        let want: Vec<f32> = a.iter().map(|&x| r::gelu(x as f64) as f32).collect();
        assert_close("gelu over [-10, 10]", &got, &want, 1e-6, 1e-5);
    });
}

fn check_attention(b: usize, t: usize, heads: usize, dh: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let d = heads * dh;
    let qkv = rng.vec(b * t * 3 * d, 1.0);
    let scale = 1.0 / (dh as f32).sqrt();
    let got = run_op(Op::Attention { heads, scale }, &[input("qkv", &[b, t, 3 * d], &qkv)]);
    let want = r::attention(&qkv, b, t, heads, dh, scale);
    assert_close(&format!("attention b={b} t={t} heads={heads} dh={dh}"), &got, &want, ATOL, RTOL);
}

#[test]
fn attention_sequence_lengths_and_head_dims() {
    each_device(|| {
        let mut seed = 200;
        for t in [1, 50, 101, 197, 257] {
            for dh in [16, 32, 64] {
                check_attention(if t < 200 { 2 } else { 1 }, t, 3, dh, seed);
                seed += 1;
            }
        }
    });
}

#[test]
fn attention_odd_and_large_head_dims() {
    each_device(|| {
        check_attention(1, 37, 2, 128, 300);
        check_attention(2, 65, 4, 24, 301);
        check_attention(1, 19, 1, 7, 302);
    });
}

/// Causal attention (text encoders): query i over keys 0..=i, on both devices; lengths across
/// the CPU kernel's 256-key blocks and the GPU kernel's tiles, odd head dims, large scores.
#[test]
fn causal_attention_masks_later_keys() {
    each_device(|| {
        let mut seed = 500;
        for (b, t, heads, dh, amp) in [(2, 77, 2, 32, 1.0), (1, 1, 1, 8, 1.0), (3, 16, 4, 12, 1.0), (1, 300, 2, 64, 1.0), (2, 64, 8, 7, 1.0), (1, 77, 1, 16, 6.0)] {
            let d = heads * dh;
            let qkv = Rng::new(seed).vec(b * t * 3 * d, amp);
            let scale = 1.0 / (dh as f32).sqrt();
            let got = run_op(Op::CausalAttention { heads, scale }, &[input("qkv", &[b, t, 3 * d], &qkv)]);
            let want = r::attention_masked(&qkv, b, t, heads, dh, scale, true);
            assert_close(&format!("causal attention b={b} t={t} heads={heads} dh={dh}"), &got, &want, 1e-4, RTOL);
            // Not the unmasked result (except for a single token).
            if t > 1 {
                let full = r::attention(&qkv, b, t, heads, dh, scale);
                assert!(tessera::reference::compare("", &got, &full, 1e-3, 0.0).is_err(), "the mask changed nothing at t={t}");
            }
            seed += 1;
        }
    });
}

/// Attention over padded sequences (NaFlex batches): every query of item b over its first
/// `lengths[b]` keys, on both devices, against the f64 reference; lengths of 1, across the GPU
/// kernel's key tiles and the CPU kernel's 256-key blocks, equal to T; vec4 and odd head dims.
/// The keys past each length hold huge values: were they scored, the result would differ.
#[test]
fn masked_attention_skips_keys_past_each_length() {
    each_device(|| {
        let mut seed = 520;
        for (t, heads, dh, lengths) in [(37, 2, 16, vec![1usize, 36, 37]), (300, 2, 64, vec![257, 3]), (65, 3, 7, vec![64, 17]), (16, 1, 128, vec![16]), (8, 4, 8, vec![5, 8, 1, 2])] {
            let b = lengths.len();
            let d = heads * dh;
            let mut qkv = Rng::new(seed).vec(b * t * 3 * d, 1.0);
            for (bi, &n) in lengths.iter().enumerate() {
                for ti in n..t {
                    qkv[(bi * t + ti) * 3 * d..(bi * t + ti + 1) * 3 * d].iter_mut().for_each(|v| *v *= 1e4);
                }
            }
            let scale = 1.0 / (dh as f32).sqrt();
            let lens: Vec<f32> = lengths.iter().map(|&n| n as f32).collect();
            let got = run_op(Op::MaskedAttention { heads, scale }, &[input("qkv", &[b, t, 3 * d], &qkv), input("lengths", &[b], &lens)]);
            let want = r::attention_lengths(&qkv, b, t, heads, dh, scale, &lengths);
            // The padded queries' rows are products of huge values; the valid ones are checked
            // tightly, the padded ones relative to their size.
            for (bi, &n) in lengths.iter().enumerate() {
                let valid = |v: &[f32]| v[bi * t * d..(bi * t + n) * d].to_vec();
                assert_close(&format!("masked attention t={t} heads={heads} dh={dh} item {bi} of length {n}"), &valid(&got), &valid(&want), 1e-4, RTOL);
                let pad = |v: &[f32]| v[(bi * t + n) * d..(bi + 1) * t * d].to_vec();
                assert_close(&format!("masked attention t={t} item {bi}'s padded queries"), &pad(&got), &pad(&want), 1e-2, 1e-3);
            }
            seed += 1;
        }
    });
}

/// Attention pooling over padded sequences: each item pools its first `lengths[b]` tokens, its
/// probabilities 0 past them, on both devices against the f64 reference.
#[test]
fn masked_attention_pooling_skips_padding() {
    each_device(|| {
        for (t, heads, dh, lengths) in [(196, 2, 16, vec![196usize, 1, 100]), (33, 4, 7, vec![32, 5]), (729, 2, 128, vec![700])] {
            let b = lengths.len();
            let d = heads * dh;
            let mut rng = Rng::new(560 + t as u64);
            let (q, mut kv) = (rng.vec(d, 1.0), rng.vec(b * t * 2 * d, 1.0));
            for (bi, &n) in lengths.iter().enumerate() {
                kv[(bi * t + n) * 2 * d..(bi + 1) * t * 2 * d].iter_mut().for_each(|v| *v *= 1e4);
            }
            let scale = 1.0 / (dh as f32).sqrt();
            let lens: Vec<f32> = lengths.iter().map(|&n| n as f32).collect();
            let ins = [weight("query", &[1, d], &q), input("kv", &[b, t, 2 * d], &kv), input("lengths", &[b], &lens)];
            let got = run_op(Op::MaskedAttentionPool { heads, scale }, &ins);
            assert_close(&format!("masked attention_pool t={t} lengths {lengths:?}"), &got, &r::attention_pool_lengths(&q, &kv, b, t, heads, dh, scale, &lengths), ATOL, RTOL);
            let got = run_op(Op::MaskedAttentionPoolProbs { heads, scale }, &ins);
            assert_close(&format!("masked attention_pool_probs t={t} lengths {lengths:?}"), &got, &r::attention_pool_probs_lengths(&q, &kv, b, t, heads, dh, scale, &lengths), 1e-6, RTOL);
            for (row, &n) in got.chunks(t).zip(lengths.iter().flat_map(|n| std::iter::repeat_n(n, heads))) {
                assert!((row[..n].iter().sum::<f32>() - 1.0).abs() < 1e-4 && row[n..].iter().all(|&p| p == 0.0));
            }
        }
    });
}

#[test]
fn attention_large_scores_stay_finite() {
    each_device(|| {
        // Scores of several hundred: the online softmax must rescale, not overflow.
        let (t, dh) = (90, 32);
        let mut rng = Rng::new(400);
        let qkv = rng.vec(t * 3 * dh, 6.0);
        let got = run_op(Op::Attention { heads: 1, scale: 1.0 }, &[input("qkv", &[1, t, 3 * dh], &qkv)]);
        assert!(got.iter().all(|v| v.is_finite()));
        assert_close("attention with large scores", &got, &r::attention(&qkv, 1, t, 1, dh, 1.0), 1e-4, RTOL);
    });
}

#[test]
fn attention_probabilities_of_the_cls_token() {
    each_device(|| {
        for (b, t, heads, dh, queries, first_key) in [(2, 17, 2, 16, 1, 1), (1, 197, 3, 64, 1, 2), (1, 50, 4, 8, 3, 0)] {
            let mut rng = Rng::new(450 + t as u64);
            let qkv = rng.vec(b * t * 3 * heads * dh, 1.0);
            let scale = 1.0 / (dh as f32).sqrt();
            let got = run_op(Op::AttentionProbs { heads, scale, queries, first_key }, &[input("qkv", &[b, t, 3 * heads * dh], &qkv)]);
            let want = r::attention_probs(&qkv, b, t, heads, dh, scale, queries, first_key);
            assert_close(&format!("attention_probs b={b} t={t} heads={heads} queries={queries} first_key={first_key}"), &got, &want, 1e-6, RTOL);
        }
    });
}

#[test]
fn attention_pooling_with_a_learned_query() {
    each_device(|| {
        // Tokens below, at and above a workgroup, head dims up to 128 (four columns per
        // invocation of the smallest workgroup), odd head dims, large scores.
        for (b, t, heads, dh, amp) in [(2, 196, 2, 16, 1.0), (1, 1, 1, 8, 1.0), (3, 33, 4, 7, 1.0), (1, 729, 2, 128, 1.0), (2, 300, 3, 72, 4.0), (1, 64, 1, 128, 1.0)] {
            let d = heads * dh;
            let mut rng = Rng::new(470 + t as u64);
            let (q, kv) = (rng.vec(d, amp), rng.vec(b * t * 2 * d, amp));
            let scale = 1.0 / (dh as f32).sqrt();
            let got = run_op(Op::AttentionPool { heads, scale }, &[weight("query", &[1, d], &q), input("kv", &[b, t, 2 * d], &kv)]);
            let want = r::attention_pool(&q, &kv, b, t, heads, dh, scale);
            assert!(got.iter().all(|v| v.is_finite()));
            assert_close(&format!("attention_pool b={b} t={t} heads={heads} dh={dh}"), &got, &want, ATOL, RTOL);
            // Its probabilities (attention maps of models pooled this way): each row sums to 1.
            let got = run_op(Op::AttentionPoolProbs { heads, scale }, &[weight("query", &[1, d], &q), input("kv", &[b, t, 2 * d], &kv)]);
            let want = r::attention_pool_probs(&q, &kv, b, t, heads, dh, scale);
            assert_eq!(got.len(), b * heads * t);
            assert_close(&format!("attention_pool_probs b={b} t={t} heads={heads} dh={dh}"), &got, &want, 1e-6, RTOL);
            for row in got.chunks(t) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            }
        }
    });
}

#[test]
fn attention_pooling_refuses_bad_shapes() {
    let d = 8;
    let check = |q_shape: &[usize], q_weight: bool, kv_shape: &[usize], heads: usize, want: &str| {
        let mut g = tessera::Graph::new();
        let q = if q_weight { g.weight("query", q_shape) } else { g.input("query", q_shape) };
        let kv = g.input("kv", kv_shape);
        let err = g.op("pool", Op::AttentionPool { heads, scale: 1.0 }, &[q, kv]).expect_err("accepted");
        assert!(err.to_string().contains(want), "{err}");
    };
    check(&[1, d], true, &[3, 5, 2 * d + 1], 2, "[B, T, 2*D]");
    check(&[2, d / 2], true, &[3, 5, 2 * d], 2, "[1, 8]");
    check(&[1, d], false, &[3, 5, 2 * d], 2, "must be a weight");
    check(&[1, d], true, &[3, 5, 2 * d], 3, "heads");
}

#[test]
fn patch_embed_prefixes_and_patch_sizes() {
    each_device(|| {
        // (batch, channels, height, width, patch, prefix, dim): 14-px patches and sizes that leave a
        // remainder (dropped, as a strided convolution does).
        let cases = [
            (2, 3, 32, 48, 8, 1, 40),
            (1, 3, 28, 42, 14, 2, 24),
            (2, 1, 30, 30, 7, 0, 33),
            (1, 3, 45, 45, 16, 1, 64),
        ];
        for (i, &(b, c, h, w, p, prefix, d)) in cases.iter().enumerate() {
            let mut rng = Rng::new(500 + i as u64);
            let k = c * p * p;
            let image = rng.vec(b * c * h * w, 1.0);
            let wt = rng.vec(k * d, 1.0 / (k as f32).sqrt());
            let bias = rng.vec(d, 0.1);
            let t = prefix + (h / p) * (w / p);
            let pos = rng.vec(t * d, 0.1);
            let toks = rng.vec(prefix * d, 1.0);
            let mut args = vec![
                input("image", &[b, c, h, w], &image),
                weight("w", &[k, d], &wt),
                weight("bias", &[d], &bias),
                weight("pos", &[t, d], &pos),
            ];
            if prefix > 0 {
                args.push(weight("prefix", &[prefix, d], &toks));
            }
            let got = run_op(Op::PatchEmbed { patch: p, prefix }, &args);
            let want = r::patch_embed(&image, [b, c, h, w], &wt, &bias, &pos, &toks, p, d);
            assert_close(&format!("patch_embed {b}x{c}x{h}x{w} p={p} prefix={prefix} d={d}"), &got, &want, ATOL, RTOL);
        }
    });
}

#[test]
fn layer_norm_rows_and_widths() {
    each_device(|| {
        let mut seed = 600;
        for rows in [1, 7, 197] {
            for cols in [1, 33, 192, 768, 1000] {
                for eps in [1e-6f32, 1e-12] {
                    let mut rng = Rng::new(seed);
                    seed += 1;
                    let x: Vec<f32> = rng.vec(rows * cols, 3.0).iter().map(|v| v + 2.0).collect();
                    let g = rng.vec(cols, 1.0);
                    let bt = rng.vec(cols, 1.0);
                    let got = run_op(Op::LayerNorm { eps }, &[input("x", &[rows, cols], &x), weight("g", &[cols], &g), weight("b", &[cols], &bt)]);
                    let want = r::layer_norm(&x, rows, cols, &g, &bt, eps);
                    assert_close(&format!("layernorm {rows}x{cols} eps={eps}"), &got, &want, ATOL, RTOL);
                }
            }
        }
    });
}

#[test]
fn softmax_rows_and_widths() {
    each_device(|| {
        let mut seed = 700;
        for rows in [1, 7, 101] {
            for cols in [1, 10, 257, 1000, 1001] {
                let mut rng = Rng::new(seed);
                seed += 1;
                let x = rng.vec(rows * cols, 20.0);
                let got = run_op(Op::Softmax, &[input("x", &[rows, cols], &x)]);
                assert_close(&format!("softmax {rows}x{cols}"), &got, &r::softmax(&x, rows, cols), ATOL, RTOL);
            }
        }
    });
}

#[test]
fn add_and_layer_scale() {
    each_device(|| {
        let mut rng = Rng::new(800);
        for (rows, cols) in [(1, 1), (197, 384), (3, 1001)] {
            let a = rng.vec(rows * cols, 1.0);
            let b = rng.vec(rows * cols, 1.0);
            let s = rng.vec(cols, 1.0);
            let got = run_op(Op::Add, &[input("a", &[rows, cols], &a), input("b", &[rows, cols], &b)]);
            assert_close("add", &got, &r::add(&a, &b), 1e-6, 1e-6);
            let got = run_op(Op::MulRow, &[input("a", &[rows, cols], &a), weight("s", &[cols], &s)]);
            assert_close("mul_row", &got, &r::mul_row(&a, &s), 1e-6, 1e-6);
        }
    });
}

#[test]
fn large_elementwise_dispatch_spills_into_y() {
    each_device(|| {
        // 70000 * 256 elements need more than 65535 workgroups in x.
        let n = 70_000 * 256 + 3;
        let a: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
        let b: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
        let got = run_op(Op::Add, &[input("a", &[n], &a), input("b", &[n], &b)]);
        assert_close("add over 2D grid", &got, &r::add(&a, &b), 0.0, 0.0);
    });
}

#[test]
fn token_slice_mean_and_concat() {
    each_device(|| {
        let (b, t, d) = (3, 11, 21);
        let mut rng = Rng::new(900);
        let x = rng.vec(b * t * d, 1.0);
        let got = run_op(Op::SliceTokens { start: 0, count: 1 }, &[input("x", &[b, t, d], &x)]);
        assert_close("cls slice", &got, &r::slice_tokens(&x, b, t, d, 0, 1), 0.0, 0.0);
        let got = run_op(Op::SliceTokens { start: 2, count: 5 }, &[input("x", &[b, t, d], &x)]);
        assert_close("slice 2..7", &got, &r::slice_tokens(&x, b, t, d, 2, 5), 0.0, 0.0);
        let got = run_op(Op::MeanTokens { start: 1, count: 10 }, &[input("x", &[b, t, d], &x)]);
        assert_close("mean of patch tokens", &got, &r::mean_tokens(&x, b, t, d, 1, 10), 1e-6, 1e-5);
        let y = rng.vec(b * 5, 1.0);
        let z = rng.vec(b * 9, 1.0);
        let got = run_op(Op::Concat, &[input("y", &[b, 5], &y), input("z", &[b, 9], &z)]);
        assert_close("concat", &got, &r::concat(&y, &z, b, 5, 9), 0.0, 0.0);
    });
}
