//! Every kernel with f16 storage (f32 arithmetic) against the f64 reference computed on the same
//! f16-rounded inputs: the only differences are the f16 rounding of the output and of
//! intermediates stored between ops (none inside one op), so the tolerance is a few f16 ulps.

mod common;
use common::*;
use tessera::reference::{self as r, Rng};
use tessera::{Activation, Op};

fn round16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// One op with every argument stored as f16 (uploaded as f16 weights; the patch embedding's
/// image, argument 0, stays an f32 input), output read back as f32.
fn run_f16(op: Op, args: &[(&str, Vec<usize>, &[f32])]) -> Vec<f32> {
    let image = matches!(op, Op::PatchEmbed { .. });
    let args: Vec<Arg> =
        args.iter().enumerate().map(|(i, (name, shape, data))| if image && i == 0 { input(name, shape, data) } else { weight(name, shape, data) }).collect();
    run_op_as(op, &args, true).1.data
}

const ATOL: f32 = 2e-3;
const RTOL: f32 = 2e-3;

#[test]
fn matmul_f16_every_epilogue() {
    for (m, k, n, bias, act, residual) in [
        (37, 64, 48, true, Activation::Gelu, true),
        (5, 7, 13, true, Activation::Tanh, false),
        (70, 33, 9, false, Activation::None, true),
        (12, 40, 24, true, Activation::GeluTanh, false),
        (9, 16, 20, true, Activation::QuickGelu, true),
    ] {
        let mut rng = Rng::new(3);
        let a = round16(&rng.vec(m * k, 1.0));
        let b = round16(&rng.vec(k * n, 1.0 / (k as f32).sqrt()));
        let bv = round16(&rng.vec(n, 0.5));
        let rv = round16(&rng.vec(m * n, 1.0));
        let mut args = vec![("a", vec![m, k], &a[..]), ("b", vec![k, n], &b[..])];
        if bias {
            args.push(("bias", vec![n], &bv[..]));
        }
        if residual {
            args.push(("residual", vec![m, n], &rv[..]));
        }
        let got = run_f16(Op::MatMul { bias, act, residual }, &args);
        let want = r::matmul(&a, &b, m, k, n, bias.then_some(&bv[..]), act, residual.then_some(&rv[..]));
        assert_close(&format!("f16 matmul {m}x{k}x{n}"), &got, &want, ATOL, RTOL);
    }
}

#[test]
fn attention_f16_vec4_and_scalar_head_dims() {
    for (b, t, heads, dh) in [(2, 37, 2, 16), (1, 50, 3, 7)] {
        let d = heads * dh;
        let qkv = round16(&Rng::new(4).vec(b * t * 3 * d, 1.0));
        let scale = 1.0 / (dh as f32).sqrt();
        let got = run_f16(Op::Attention { heads, scale }, &[("qkv", vec![b, t, 3 * d], &qkv)]);
        assert_close(&format!("f16 attention dh={dh}"), &got, &r::attention(&qkv, b, t, heads, dh, scale), ATOL, RTOL);
        let got = run_f16(Op::AttentionProbs { heads, scale, queries: 1, first_key: 1 }, &[("qkv", vec![b, t, 3 * d], &qkv)]);
        let want = r::attention_probs(&qkv, b, t, heads, dh, scale, 1, 1);
        assert_close(&format!("f16 attention probs dh={dh}"), &got, &want, ATOL, RTOL);
        // Attention pooling (SigLIP's head): the learned query over the first two thirds as keys
        // and values.
        let (q, kv) = (round16(&Rng::new(5).vec(d, 1.0)), &qkv[..b * t * 2 * d]);
        let got = run_f16(Op::AttentionPool { heads, scale }, &[("query", vec![1, d], &q), ("kv", vec![b, t, 2 * d], kv)]);
        assert_close(&format!("f16 attention pool dh={dh}"), &got, &r::attention_pool(&q, kv, b, t, heads, dh, scale), ATOL, RTOL);
    }
}

#[test]
fn row_and_elementwise_ops_f16() {
    let (rows, cols) = (9, 70);
    let mut rng = Rng::new(6);
    let x = round16(&rng.vec(rows * cols, 2.0));
    let y = round16(&rng.vec(rows * cols, 2.0));
    let gamma = round16(&rng.vec(cols, 1.0));
    let beta = round16(&rng.vec(cols, 1.0));
    let got = run_f16(Op::LayerNorm { eps: 1e-6 }, &[("x", vec![rows, cols], &x), ("g", vec![cols], &gamma), ("b", vec![cols], &beta)]);
    assert_close("f16 layernorm", &got, &r::layer_norm(&x, rows, cols, &gamma, &beta, 1e-6), ATOL, RTOL);
    let got = run_f16(Op::Softmax, &[("x", vec![rows, cols], &x)]);
    assert_close("f16 softmax", &got, &r::softmax(&x, rows, cols), ATOL, RTOL);
    let got = run_f16(Op::Add, &[("x", vec![rows, cols], &x), ("y", vec![rows, cols], &y)]);
    assert_close("f16 add", &got, &r::add(&x, &y), ATOL, RTOL);
    let got = run_f16(Op::MulRow, &[("x", vec![rows, cols], &x), ("g", vec![cols], &gamma)]);
    assert_close("f16 mul_row", &got, &r::mul_row(&x, &gamma), ATOL, RTOL);
    let (b, t, d) = (3, 3, 70);
    let got = run_f16(Op::SliceTokens { start: 1, count: 2 }, &[("x", vec![b, t, d], &x[..b * t * d])]);
    assert_close("f16 slice", &got, &r::slice_tokens(&x[..b * t * d], b, t, d, 1, 2), 0.0, 0.0);
    let got = run_f16(Op::MeanTokens { start: 1, count: 2 }, &[("x", vec![b, t, d], &x[..b * t * d])]);
    assert_close("f16 mean", &got, &r::mean_tokens(&x[..b * t * d], b, t, d, 1, 2), ATOL, RTOL);
    let got = run_f16(Op::Concat, &[("x", vec![rows, cols], &x), ("y", vec![rows, 5], &y[..rows * 5])]);
    assert_close("f16 concat", &got, &r::concat(&x, &y[..rows * 5], rows, cols, 5), 0.0, 0.0);
}

#[test]
fn patch_embed_f16_with_prefix_tokens() {
    let (b, c, h, w, p, d) = (2, 3, 12, 8, 4, 20);
    let mut rng = Rng::new(8);
    let image = rng.vec(b * c * h * w, 1.0);
    let k = c * p * p;
    let weight = round16(&rng.vec(k * d, 0.2));
    let bias = round16(&rng.vec(d, 0.5));
    let tokens = 1 + (h / p) * (w / p);
    let pos = round16(&rng.vec(tokens * d, 0.5));
    let prefix = round16(&rng.vec(d, 0.5));
    let got = run_f16(
        Op::PatchEmbed { patch: p, prefix: 1 },
        &[("image", vec![b, c, h, w], &image), ("w", vec![k, d], &weight), ("bias", vec![d], &bias), ("pos", vec![tokens, d], &pos), ("prefix", vec![1, d], &prefix)],
    );
    let want = r::patch_embed(&image, [b, c, h, w], &weight, &bias, &pos, &prefix, p, d);
    assert_close("f16 patch embed", &got, &want, ATOL, RTOL);
}
