// Ops on channels-last feature maps (B, H, W, C), one output element per invocation (the channel
// fastest, so neighbouring invocations read neighbouring weights and one input pixel), but for
// CONV: a block of 4 output pixels along a row x 4 output channels per invocation (16
// accumulators: each weight read serves 4 pixels, each input read 4 channels).
//   CONV:   out (B, Ho, Wo, Co) = act(sum over ky, kx, ci of x[b, y*s+ky-p, x*s+kx-p, ci]
//           * w[(ky*k+kx)*Ci+ci, co] + bias[co]) * scale + residual; PRE_RELU: ReLU on x as read;
//           padding reads zeros. Act: RELU or SIGMOID (or none).
//   DECONV: transposed convolution with kernel = stride = k and no padding:
//           out (B, H*k, W*k, Co) = bias[co] + sum over ci of x[b, Y/k, X/k, ci] * w[ci, ((Y%k)*k + X%k)*Co + co]
//   RESIZE: bilinear resize of x (B, H, W, C) to (B, Ho, Wo, C), PyTorch's `interpolate` without
//           antialiasing: source coordinate dst * ratio (ALIGN, align_corners=True) or
//           max((dst + 0.5) * ratio - 0.5, 0); the ratios come from the host.
struct Params { batch: u32, in_h: u32, in_w: u32, in_c: u32, out_h: u32, out_w: u32, out_c: u32, kernel: u32,
                stride: u32, pad: u32, scale: f32, ratio_h: f32, ratio_w: f32, _pad0: u32, _pad1: u32, _pad2: u32 }
@group(0) @binding(_) var<uniform> P: Params;
@group(0) @binding(_) var<storage, read_write> out: array<S>;
@group(0) @binding(_) var<storage, read_write> x: array<S>;
#ifndef RESIZE
@group(0) @binding(_) var<storage, read> w: array<S>;
#ifdef BIAS
@group(0) @binding(_) var<storage, read> bias: array<S>;
#endif
#ifdef RESIDUAL
@group(0) @binding(_) var<storage, read_write> residual: array<S>;
#endif
#endif

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * WG + lid;
#ifdef CONV
    // Invocation i: channels cb*4.. +4 of pixels xb*4.. +4 of output row oy of image b.
    let cblocks = (P.out_c + 3u) / 4u;
    let xblocks = (P.out_w + 3u) / 4u;
    if (i >= P.batch * P.out_h * xblocks * cblocks) {
        return;
    }
    let co = (i % cblocks) * 4u;
    let ox = ((i / cblocks) % xblocks) * 4u;
    let oy = (i / (cblocks * xblocks)) % P.out_h;
    let b = i / (cblocks * xblocks * P.out_h);
    // Channels past the last read the last one's weights (their sums are never written).
    let c1 = min(co + 1u, P.out_c - 1u);
    let c2 = min(co + 2u, P.out_c - 1u);
    let c3 = min(co + 3u, P.out_c - 1u);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var ky = 0u; ky < P.kernel; ky++) {
        let iy = i32(oy * P.stride + ky) - i32(P.pad);
        if (iy < 0 || iy >= i32(P.in_h)) {
            continue;
        }
        let row = (b * P.in_h + u32(iy)) * P.in_w;
        for (var kx = 0u; kx < P.kernel; kx++) {
            // The four pixels' input columns: a column in the padding reads column 0, masked to 0.
            let ix = vec4<i32>(i32((ox + 0u) * P.stride + kx), i32((ox + 1u) * P.stride + kx), i32((ox + 2u) * P.stride + kx), i32((ox + 3u) * P.stride + kx)) - vec4<i32>(i32(P.pad));
            let inside = (ix >= vec4<i32>(0)) & (ix < vec4<i32>(i32(P.in_w)));
            let m = select(vec4<f32>(0.0), vec4<f32>(1.0), inside);
            let col = vec4<u32>(select(vec4<i32>(0), ix, inside));
            let src = (vec4<u32>(row) + col) * P.in_c;
            let wrow = (ky * P.kernel + kx) * P.in_c;
            for (var ci = 0u; ci < P.in_c; ci++) {
                let r = (wrow + ci) * P.out_c;
                let wv = vec4<f32>(f32(w[r + co]), f32(w[r + c1]), f32(w[r + c2]), f32(w[r + c3]));
                var v = vec4<f32>(f32(x[src.x + ci]), f32(x[src.y + ci]), f32(x[src.z + ci]), f32(x[src.w + ci]));
#ifdef PRE_RELU
                v = max(v, vec4<f32>(0.0));
#endif
                v *= m;
                a0 += v.x * wv;
                a1 += v.y * wv;
                a2 += v.z * wv;
                a3 += v.w * wv;
            }
        }
    }
#ifdef BIAS
    let bv = vec4<f32>(f32(bias[co]), f32(bias[c1]), f32(bias[c2]), f32(bias[c3]));
    a0 += bv;
    a1 += bv;
    a2 += bv;
    a3 += bv;
#endif
    let base = ((b * P.out_h + oy) * P.out_w + ox) * P.out_c + co;
    for (var p = 0u; p < 4u; p++) {
        if (ox + p >= P.out_w) {
            break;
        }
        var acc = a0;
        if (p == 1u) {
            acc = a1;
        } else if (p == 2u) {
            acc = a2;
        } else if (p == 3u) {
            acc = a3;
        }
#ifdef RELU
        acc = max(acc, vec4<f32>(0.0));
#endif
#ifdef SIGMOID
        acc = 1.0 / (1.0 + exp(-acc));
#endif
        acc *= P.scale;
        for (var c = 0u; c < 4u; c++) {
            if (co + c >= P.out_c) {
                break;
            }
            let o = base + p * P.out_c + c;
#ifdef RESIDUAL
            out[o] = S(acc[c] + f32(residual[o]));
#else
            out[o] = S(acc[c]);
#endif
        }
    }
#else
    if (i >= P.batch * P.out_h * P.out_w * P.out_c) {
        return;
    }
    let co = i % P.out_c;
    let ox = (i / P.out_c) % P.out_w;
    let oy = (i / (P.out_c * P.out_w)) % P.out_h;
    let b = i / (P.out_c * P.out_w * P.out_h);
#endif
#ifdef DECONV
    let k = P.kernel;
    let src = ((b * P.in_h + oy / k) * P.in_w + ox / k) * P.in_c;
    let col = ((oy % k) * k + ox % k) * P.out_c + co;
    let ld = k * k * P.out_c;
    var acc = 0.0;
    for (var ci = 0u; ci < P.in_c; ci++) {
        acc += f32(x[src + ci]) * f32(w[ci * ld + col]);
    }
#ifdef BIAS
    acc += f32(bias[co]);
#endif
    out[i] = S(acc);
#endif
#ifdef RESIZE
#ifdef ALIGN
    let sy = f32(oy) * P.ratio_h;
    let sx = f32(ox) * P.ratio_w;
#else
    let sy = max((f32(oy) + 0.5) * P.ratio_h - 0.5, 0.0);
    let sx = max((f32(ox) + 0.5) * P.ratio_w - 0.5, 0.0);
#endif
    let y0 = min(u32(sy), P.in_h - 1u);
    let x0 = min(u32(sx), P.in_w - 1u);
    let y1 = min(y0 + 1u, P.in_h - 1u);
    let x1 = min(x0 + 1u, P.in_w - 1u);
    let ly = sy - f32(y0);
    let lx = sx - f32(x0);
    let c = P.in_c;
    let row0 = (b * P.in_h + y0) * P.in_w;
    let row1 = (b * P.in_h + y1) * P.in_w;
    let top = (1.0 - lx) * f32(x[(row0 + x0) * c + co]) + lx * f32(x[(row0 + x1) * c + co]);
    let bottom = (1.0 - lx) * f32(x[(row1 + x0) * c + co]) + lx * f32(x[(row1 + x1) * c + co]);
    out[i] = S((1.0 - ly) * top + ly * bottom);
#endif
}
