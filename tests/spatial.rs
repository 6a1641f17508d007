//! The ops on channels-last feature maps (convolution, transposed convolution, bilinear resize,
//! tokens to a map) against the plain f64 references in PyTorch's layouts, on the GPU adapter and
//! the CPU backend, on awkward shapes: odd sizes, channel counts not a multiple of 4, stride 2
//! over odd inputs, kernels larger than the padding, 1x1 maps.

mod common;

use common::{each_device, input, run_op, weight};
use tessera::ops::spatial::{conv_transpose_weight, conv_weight, ConvAct};
use tessera::reference::{self as r, Rng};
use tessera::ops::Readout;
use tessera::Op;

fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Err(e) = r::compare(what, got, want, atol, rtol) {
        panic!("{e}");
    }
}

fn sigmoid(x: f32) -> f32 {
    (1.0 / (1.0 + (-(x as f64)).exp())) as f32
}

#[test]
fn convolution_matches_the_f64_reference() {
    let mut rng = Rng::new(3);
    // (batch, Ci, H, W, Co, k, stride, pad)
    let shapes = [
        (1, 1, 1, 1, 1, 1, 1, 0),
        (2, 3, 7, 5, 5, 3, 1, 1),
        (1, 6, 9, 11, 7, 3, 2, 1),
        (1, 5, 8, 8, 3, 1, 1, 0),
        (2, 4, 6, 7, 9, 1, 2, 0),
        (1, 7, 5, 4, 2, 5, 1, 2),
        (1, 3, 13, 10, 6, 3, 2, 0),
        (1, 33, 6, 5, 17, 3, 1, 1),
        (2, 33, 5, 7, 1, 1, 1, 0),
    ];
    for &(b, ci, h, w, co, k, stride, pad) in &shapes {
        let x = rng.vec(b * ci * h * w, 1.0);
        let wt = rng.vec(co * ci * k * k, 0.5);
        let bias = rng.vec(co, 0.5);
        let want = r::conv2d(&x, (b, ci, h, w), &wt, co, k, stride, pad, Some(&bias));
        let (ho, wo) = ((h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1);
        let want = r::nchw_to_nhwc(&want, (b, co, ho, wo));
        let xm = r::nchw_to_nhwc(&x, (b, ci, h, w));
        let wm = conv_weight(&wt, co, ci, k);
        // ReLU on the input as read: the reference on relu(x).
        let xr: Vec<f32> = x.iter().map(|v| v.max(0.0)).collect();
        let want_pre = r::nchw_to_nhwc(&r::conv2d(&xr, (b, ci, h, w), &wt, co, k, stride, pad, None), (b, co, ho, wo));
        let res = rng.vec(b * ho * wo * co, 1.0);
        each_device(|| {
            let what = format!("conv b={b} ci={ci} {h}x{w} co={co} k={k} s={stride} p={pad}");
            let plain = Op::Conv2d { kernel: k, stride, pad, bias: true, pre_relu: false, act: ConvAct::None, scale: 1.0, residual: false };
            let args = [input("x", &[b, h, w, ci], &xm), weight("w", &[k * k * ci, co], &wm), weight("bias", &[co], &bias)];
            assert_close(&what, &run_op(plain.clone(), &args), &want, 1e-5, 1e-5);
            // ReLU after the bias, then a scale.
            let op = Op::Conv2d { kernel: k, stride, pad, bias: true, pre_relu: false, act: ConvAct::Relu, scale: 2.5, residual: false };
            let relu: Vec<f32> = want.iter().map(|v| v.max(0.0) * 2.5).collect();
            assert_close(&format!("{what} relu*2.5"), &run_op(op, &args), &relu, 1e-5, 1e-5);
            // Sigmoid (a metric depth head).
            let op = Op::Conv2d { kernel: k, stride, pad, bias: true, pre_relu: false, act: ConvAct::Sigmoid, scale: 1.0, residual: false };
            let sig: Vec<f32> = want.iter().map(|&v| sigmoid(v)).collect();
            assert_close(&format!("{what} sigmoid"), &run_op(op, &args), &sig, 1e-5, 1e-5);
            // No bias, ReLU on the input, a residual.
            let op = Op::Conv2d { kernel: k, stride, pad, bias: false, pre_relu: true, act: ConvAct::None, scale: 1.0, residual: true };
            let args = [input("x", &[b, h, w, ci], &xm), weight("w", &[k * k * ci, co], &wm), input("res", &[b, ho, wo, co], &res)];
            let with_res: Vec<f32> = want_pre.iter().zip(&res).map(|(a, b)| a + b).collect();
            assert_close(&format!("{what} pre-relu+residual"), &run_op(op, &args), &with_res, 1e-5, 1e-5);
        });
    }
}

#[test]
fn transposed_convolution_matches_the_f64_reference() {
    let mut rng = Rng::new(5);
    // (batch, Ci, H, W, Co, k = stride)
    for &(b, ci, h, w, co, k) in &[(1, 1, 1, 1, 1, 1), (2, 3, 5, 7, 5, 2), (1, 6, 3, 4, 7, 4), (1, 9, 1, 3, 2, 3), (1, 24, 4, 5, 13, 2)] {
        let x = rng.vec(b * ci * h * w, 1.0);
        let wt = rng.vec(ci * co * k * k, 0.5);
        let bias = rng.vec(co, 0.5);
        let want = r::nchw_to_nhwc(&r::conv_transpose2d(&x, (b, ci, h, w), &wt, co, k, k, Some(&bias)), (b, co, h * k, w * k));
        let want_nb = r::nchw_to_nhwc(&r::conv_transpose2d(&x, (b, ci, h, w), &wt, co, k, k, None), (b, co, h * k, w * k));
        let xm = r::nchw_to_nhwc(&x, (b, ci, h, w));
        let wm = conv_transpose_weight(&wt, ci, co, k);
        each_device(|| {
            let what = format!("deconv b={b} ci={ci} {h}x{w} co={co} k={k}");
            let args = [input("x", &[b, h, w, ci], &xm), weight("w", &[ci, k * k * co], &wm), weight("bias", &[co], &bias)];
            assert_close(&what, &run_op(Op::ConvTranspose2d { kernel: k, bias: true }, &args), &want, 1e-5, 1e-5);
            let args = [input("x", &[b, h, w, ci], &xm), weight("w", &[ci, k * k * co], &wm)];
            assert_close(&format!("{what} no bias"), &run_op(Op::ConvTranspose2d { kernel: k, bias: false }, &args), &want_nb, 1e-5, 1e-5);
        });
    }
}

#[test]
fn bilinear_resize_matches_the_f64_reference_with_and_without_aligned_corners() {
    let mut rng = Rng::new(9);
    // (batch, C, H, W, Ho, Wo): up, down, x2, odd to even, to and from one pixel.
    for &(b, c, h, w, ho, wo) in &[(1, 1, 1, 1, 3, 2), (2, 3, 4, 5, 8, 10), (1, 5, 7, 3, 14, 6), (1, 2, 9, 13, 4, 5), (1, 3, 6, 6, 1, 1), (1, 7, 37, 28, 518, 392), (1, 1, 5, 1, 9, 1)] {
        let x = rng.vec(b * c * h * w, 1.0);
        let xm = r::nchw_to_nhwc(&x, (b, c, h, w));
        for align in [false, true] {
            let want = r::nchw_to_nhwc(&r::resize_bilinear(&x, (b, c, h, w), (ho, wo), align), (b, c, ho, wo));
            each_device(|| {
                let got = run_op(Op::Resize { height: ho, width: wo, align_corners: align }, &[input("x", &[b, h, w, c], &xm)]);
                assert_close(&format!("resize {h}x{w} -> {ho}x{wo} align={align}"), &got, &want, 1e-5, 1e-5);
            });
        }
    }
}

#[test]
fn tokens_become_a_map_without_the_prefix() {
    let mut rng = Rng::new(2);
    let (b, prefix, h, w, d) = (2, 5, 3, 4, 7);
    let x = rng.vec(b * (prefix + h * w) * d, 1.0);
    let want = r::slice_tokens(&x, b, prefix + h * w, d, prefix, h * w);
    each_device(|| {
        let got = run_op(Op::TokensToMap { prefix, height: h, width: w, readout: Readout::Ignore }, &[input("x", &[b, prefix + h * w, d], &x)]);
        assert_eq!(got, want);
    });
}

#[test]
fn dpt_readouts_add_or_append_the_class_token_to_every_patch() {
    let mut rng = Rng::new(3);
    // Odd widths, more than one prefix token (the readout is always the first).
    for &(b, prefix, h, w, d) in &[(2, 1, 3, 5, 7), (1, 2, 4, 1, 5), (3, 1, 1, 1, 1)] {
        let t = prefix + h * w;
        let x = rng.vec(b * t * d, 1.0);
        let mut add = Vec::new();
        let mut concat = Vec::new();
        for bi in 0..b {
            let seq = &x[bi * t * d..(bi + 1) * t * d];
            for p in 0..h * w {
                let tok = &seq[(prefix + p) * d..(prefix + p + 1) * d];
                add.extend(tok.iter().zip(&seq[..d]).map(|(a, c)| a + c));
                concat.extend_from_slice(tok);
                concat.extend_from_slice(&seq[..d]);
            }
        }
        each_device(|| {
            let xs = [input("x", &[b, t, d], &x)];
            let got = run_op(Op::TokensToMap { prefix, height: h, width: w, readout: Readout::Add }, &xs);
            assert_close(&format!("readout add {b}x{t}x{d}"), &got, &add, 1e-6, 1e-6);
            let got = run_op(Op::TokensToMap { prefix, height: h, width: w, readout: Readout::Concat }, &xs);
            assert_eq!(got, concat, "readout concat {b}x{t}x{d}");
        });
    }
}

/// The error of adding `op` over inputs of these shapes (the last `weights` of them weights).
fn refusal(op: Op, shapes: &[&[usize]], weights: usize) -> String {
    let mut g = tessera::Graph::new();
    let ids: Vec<_> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| if i + weights >= shapes.len() { g.weight(&format!("w{i}"), s) } else { g.input(&format!("x{i}"), s) })
        .collect();
    g.op("head.conv", op, &ids).unwrap_err().to_string()
}

#[test]
fn bad_geometry_is_refused_naming_the_node_and_tensor() {
    let conv = |kernel, pad| Op::Conv2d { kernel, stride: 1, pad, bias: false, pre_relu: false, act: ConvAct::None, scale: 1.0, residual: false };
    // A kernel larger than the padded map.
    let e = refusal(conv(5, 0), &[&[1, 2, 3, 4], &[100, 2]], 1);
    assert!(e.contains("head.conv") && e.contains("does not fit a 2x3 map"), "{e}");
    // A weight whose rows are not k*k*Ci.
    let e = refusal(conv(3, 1), &[&[1, 2, 3, 4], &[27, 2]], 1);
    assert!(e.contains("w1") && e.contains("[36, Co]"), "{e}");
    // A map that is not 4-D.
    let e = refusal(conv(1, 0), &[&[6, 4], &[4, 2]], 1);
    assert!(e.contains("x0") && e.contains("[B, H, W, C]"), "{e}");
    // A transposed convolution's columns not k*k*Co.
    let e = refusal(Op::ConvTranspose2d { kernel: 2, bias: false }, &[&[1, 2, 3, 4], &[4, 6]], 1);
    assert!(e.contains("w1"), "{e}");
    // A grid that does not make the sequence.
    let e = refusal(Op::TokensToMap { prefix: 1, height: 2, width: 2, readout: Readout::Ignore }, &[&[1, 6, 4]], 0);
    assert!(e.contains("2x2 grid"), "{e}");
    // A readout with no class token to read.
    let e = refusal(Op::TokensToMap { prefix: 0, height: 2, width: 2, readout: Readout::Add }, &[&[1, 4, 4]], 0);
    assert!(e.contains("first token"), "{e}");
    // Nothing to resize to.
    let e = refusal(Op::Resize { height: 0, width: 3, align_corners: false }, &[&[1, 2, 3, 4]], 0);
    assert!(e.contains("0x3"), "{e}");
}
