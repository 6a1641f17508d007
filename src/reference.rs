//! Plain CPU implementations of every op, accumulating in f64: the independent reference the
//! kernels are tested against. Slow and simple on purpose.

/// Exact GELU: `0.5 x (1 + erf(x / sqrt 2))`.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// `a (m, k) x b (k, n) [+ bias] [activation] [+ residual]`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    act: crate::ops::Activation,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f64;
            for p in 0..k {
                acc += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
            if let Some(bias) = bias {
                acc += bias[j] as f64;
            }
            acc = match act {
                crate::ops::Activation::None => acc,
                crate::ops::Activation::Gelu => gelu(acc),
                crate::ops::Activation::Tanh => acc.tanh(),
                crate::ops::Activation::QuickGelu => acc / (1.0 + (-1.702 * acc).exp()),
                crate::ops::Activation::GeluTanh => 0.5 * acc * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (acc + 0.044715 * acc.powi(3))).tanh()),
            };
            if let Some(r) = residual {
                acc += r[i * n + j] as f64;
            }
            out[i * n + j] = acc as f32;
        }
    }
    out
}

/// Patch embedding of `image (b, c, h, w)` with `weight (c*p*p, d)`; prefix tokens `(prefix, d)`
/// first, then patches in row-major grid order; position embeddings `(tokens, d)` added to all.
#[allow(clippy::too_many_arguments)]
pub fn patch_embed(
    image: &[f32],
    dims: [usize; 4],
    weight: &[f32],
    bias: &[f32],
    pos: &[f32],
    prefix_tokens: &[f32],
    patch: usize,
    d: usize,
) -> Vec<f32> {
    let [b, c, h, w] = dims;
    let (gh, gw) = (h / patch, w / patch);
    let prefix = prefix_tokens.len() / d;
    let t = prefix + gh * gw;
    let mut out = vec![0f32; b * t * d];
    for bi in 0..b {
        for ti in 0..t {
            for j in 0..d {
                let v = if ti < prefix {
                    prefix_tokens[ti * d + j] as f64
                } else {
                    let p = ti - prefix;
                    let (py, px) = (p / gw, p % gw);
                    let mut acc = bias[j] as f64;
                    for ci in 0..c {
                        for ky in 0..patch {
                            for kx in 0..patch {
                                let x = image[((bi * c + ci) * h + py * patch + ky) * w + px * patch + kx] as f64;
                                let kk = (ci * patch + ky) * patch + kx;
                                acc += x * weight[kk * d + j] as f64;
                            }
                        }
                    }
                    acc
                };
                out[(bi * t + ti) * d + j] = (v + pos[ti * d + j] as f64) as f32;
            }
        }
    }
    out
}

/// Multi-head self-attention on `qkv (b, t, 3 * heads * dh)`, giving `(b, t, heads * dh)`.
pub fn attention(qkv: &[f32], b: usize, t: usize, heads: usize, dh: usize, scale: f32) -> Vec<f32> {
    attention_masked(qkv, b, t, heads, dh, scale, false)
}

/// [`attention`], with `causal`: query i attends to keys 0..=i only.
pub fn attention_masked(qkv: &[f32], b: usize, t: usize, heads: usize, dh: usize, scale: f32, causal: bool) -> Vec<f32> {
    attention_keys(qkv, b, t, heads, dh, scale, causal, &[])
}

/// [`attention`] of padded sequences: every query of batch item `bi` attends to its first
/// `lengths[bi]` keys only (transformers' key padding mask).
pub fn attention_lengths(qkv: &[f32], b: usize, t: usize, heads: usize, dh: usize, scale: f32, lengths: &[usize]) -> Vec<f32> {
    assert_eq!(lengths.len(), b);
    attention_keys(qkv, b, t, heads, dh, scale, false, lengths)
}

#[allow(clippy::too_many_arguments)]
fn attention_keys(qkv: &[f32], b: usize, t: usize, heads: usize, dh: usize, scale: f32, causal: bool, lengths: &[usize]) -> Vec<f32> {
    let d = heads * dh;
    let mut out = vec![0f32; b * t * d];
    let at = |bi: usize, ti: usize, part: usize, h: usize, e: usize| qkv[(bi * t + ti) * 3 * d + part * d + h * dh + e] as f64;
    let mut s = vec![0f64; t];
    for bi in 0..b {
        for h in 0..heads {
            for qi in 0..t {
                let mut mx = f64::NEG_INFINITY;
                for (ki, sk) in s.iter_mut().enumerate() {
                    if causal && ki > qi || lengths.get(bi).is_some_and(|&n| ki >= n) {
                        *sk = f64::NEG_INFINITY;
                        continue;
                    }
                    let mut dot = 0f64;
                    for e in 0..dh {
                        dot += at(bi, qi, 0, h, e) * at(bi, ki, 1, h, e);
                    }
                    *sk = dot * scale as f64;
                    mx = mx.max(*sk);
                }
                let mut sum = 0f64;
                for sk in s.iter_mut() {
                    *sk = (*sk - mx).exp();
                    sum += *sk;
                }
                for e in 0..dh {
                    let mut acc = 0f64;
                    for (ki, sk) in s.iter().enumerate() {
                        acc += sk * at(bi, ki, 2, h, e);
                    }
                    out[(bi * t + qi) * d + h * dh + e] = (acc / sum) as f32;
                }
            }
        }
    }
    out
}

/// Attention probabilities of queries `0..queries` over keys `first_key..t`:
/// `(b, heads, queries, t - first_key)`.
#[allow(clippy::too_many_arguments)]
pub fn attention_probs(
    qkv: &[f32],
    b: usize,
    t: usize,
    heads: usize,
    dh: usize,
    scale: f32,
    queries: usize,
    first_key: usize,
) -> Vec<f32> {
    let d = heads * dh;
    let at = |bi: usize, ti: usize, part: usize, h: usize, e: usize| qkv[(bi * t + ti) * 3 * d + part * d + h * dh + e] as f64;
    let mut out = Vec::with_capacity(b * heads * queries * (t - first_key));
    for bi in 0..b {
        for h in 0..heads {
            for qi in 0..queries {
                let s: Vec<f64> = (0..t)
                    .map(|ki| (0..dh).map(|e| at(bi, qi, 0, h, e) * at(bi, ki, 1, h, e)).sum::<f64>() * scale as f64)
                    .collect();
                let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = s.iter().map(|v| (v - mx).exp()).sum();
                out.extend(s[first_key..].iter().map(|v| ((v - mx).exp() / sum) as f32));
            }
        }
    }
    out
}

/// Attention pooling of a learned `query (heads*dh)` over `kv (b, t, 2*heads*dh)` (keys, then
/// values): `(b, heads*dh)`.
pub fn attention_pool(query: &[f32], kv: &[f32], b: usize, t: usize, heads: usize, dh: usize, scale: f32) -> Vec<f32> {
    attention_pool_lengths(query, kv, b, t, heads, dh, scale, &vec![t; b])
}

/// [`attention_pool`] of padded sequences: batch item `bi` pools its first `lengths[bi]` tokens.
#[allow(clippy::too_many_arguments)]
pub fn attention_pool_lengths(query: &[f32], kv: &[f32], b: usize, t: usize, heads: usize, dh: usize, scale: f32, lengths: &[usize]) -> Vec<f32> {
    let d = heads * dh;
    let mut out = vec![0f32; b * d];
    for bi in 0..b {
        let n = lengths[bi];
        for h in 0..heads {
            let at = |ti: usize, part: usize, e: usize| kv[(bi * t + ti) * 2 * d + part * d + h * dh + e] as f64;
            let s: Vec<f64> = (0..n).map(|ti| (0..dh).map(|e| query[h * dh + e] as f64 * at(ti, 0, e)).sum::<f64>() * scale as f64).collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = s.iter().map(|v| (v - mx).exp()).sum();
            for e in 0..dh {
                out[bi * d + h * dh + e] = ((0..n).map(|ti| (s[ti] - mx).exp() * at(ti, 1, e)).sum::<f64>() / sum) as f32;
            }
        }
    }
    out
}

/// The attention probabilities of [`attention_pool`]: `(b, heads, t)`.
pub fn attention_pool_probs(query: &[f32], kv: &[f32], b: usize, t: usize, heads: usize, dh: usize, scale: f32) -> Vec<f32> {
    attention_pool_probs_lengths(query, kv, b, t, heads, dh, scale, &vec![t; b])
}

/// [`attention_pool_probs`] of padded sequences: 0 for the tokens from `lengths[bi]` on.
#[allow(clippy::too_many_arguments)]
pub fn attention_pool_probs_lengths(query: &[f32], kv: &[f32], b: usize, t: usize, heads: usize, dh: usize, scale: f32, lengths: &[usize]) -> Vec<f32> {
    let d = heads * dh;
    let mut out = vec![0f32; b * heads * t];
    for bi in 0..b {
        let n = lengths[bi];
        for h in 0..heads {
            let s: Vec<f64> = (0..n)
                .map(|ti| (0..dh).map(|e| query[h * dh + e] as f64 * kv[(bi * t + ti) * 2 * d + h * dh + e] as f64).sum::<f64>() * scale as f64)
                .collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = s.iter().map(|v| (v - mx).exp()).sum();
            for ti in 0..n {
                out[(bi * heads + h) * t + ti] = ((s[ti] - mx).exp() / sum) as f32;
            }
        }
    }
    out
}

/// Layer norm of `x (rows, cols)` over cols.
pub fn layer_norm(x: &[f32], rows: usize, cols: usize, gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for c in 0..cols {
            out[r * cols + c] = ((row[c] as f64 - mean) * inv * gamma[c] as f64 + beta[c] as f64) as f32;
        }
    }
    out
}

/// Softmax of `x (rows, cols)` over cols.
pub fn softmax(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let mx = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let sum: f64 = row.iter().map(|&v| (v as f64 - mx).exp()).sum();
        for c in 0..cols {
            out[r * cols + c] = ((row[c] as f64 - mx).exp() / sum) as f32;
        }
    }
    out
}

/// `a + b`.
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 + y as f64) as f32).collect()
}

/// `a * s[i % s.len()]`.
pub fn mul_row(a: &[f32], s: &[f32]) -> Vec<f32> {
    a.iter().enumerate().map(|(i, &x)| (x as f64 * s[i % s.len()] as f64) as f32).collect()
}

/// Tokens `start..start+count` of `x (b, t, d)`.
pub fn slice_tokens(x: &[f32], b: usize, t: usize, d: usize, start: usize, count: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(b * count * d);
    for bi in 0..b {
        out.extend_from_slice(&x[(bi * t + start) * d..(bi * t + start + count) * d]);
    }
    out
}

/// Mean over tokens `start..start+count` of `x (b, t, d)`, giving `(b, d)`.
pub fn mean_tokens(x: &[f32], b: usize, t: usize, d: usize, start: usize, count: usize) -> Vec<f32> {
    let mut out = vec![0f32; b * d];
    for bi in 0..b {
        for j in 0..d {
            let s: f64 = (start..start + count).map(|ti| x[(bi * t + ti) * d + j] as f64).sum();
            out[bi * d + j] = (s / count as f64) as f32;
        }
    }
    out
}

/// Concatenation of `a (rows, d1)` and `b (rows, d2)` along the last dim.
pub fn concat(a: &[f32], b: &[f32], rows: usize, d1: usize, d2: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * (d1 + d2));
    for r in 0..rows {
        out.extend_from_slice(&a[r * d1..(r + 1) * d1]);
        out.extend_from_slice(&b[r * d2..(r + 1) * d2]);
    }
    out
}

/// 2-D convolution in PyTorch's layouts, f64 accumulation: `x (B, Ci, H, W)`, `w (Co, Ci, k, k)`,
/// zero padding `pad`, giving `(B, Co, Ho, Wo)`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(x: &[f32], (b, ci, h, w): (usize, usize, usize, usize), wt: &[f32], co: usize, k: usize, stride: usize, pad: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let ho = (h + 2 * pad - k) / stride + 1;
    let wo = (w + 2 * pad - k) / stride + 1;
    let mut out = vec![0f32; b * co * ho * wo];
    for bi in 0..b {
        for o in 0..co {
            for y in 0..ho {
                for xx in 0..wo {
                    let mut acc = bias.map_or(0.0, |v| v[o] as f64);
                    for i in 0..ci {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (iy, ix) = ((y * stride + ky) as isize - pad as isize, (xx * stride + kx) as isize - pad as isize);
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let v = x[((bi * ci + i) * h + iy as usize) * w + ix as usize] as f64;
                                acc += v * wt[((o * ci + i) * k + ky) * k + kx] as f64;
                            }
                        }
                    }
                    out[((bi * co + o) * ho + y) * wo + xx] = acc as f32;
                }
            }
        }
    }
    out
}

/// Transposed 2-D convolution in PyTorch's layouts (no padding), f64 accumulation: `x (B, Ci,
/// H, W)`, `w (Ci, Co, k, k)`, giving `(B, Co, (H - 1) * stride + k, (W - 1) * stride + k)`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d(x: &[f32], (b, ci, h, w): (usize, usize, usize, usize), wt: &[f32], co: usize, k: usize, stride: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let (ho, wo) = ((h - 1) * stride + k, (w - 1) * stride + k);
    let mut acc = vec![0f64; b * co * ho * wo];
    for bi in 0..b {
        for i in 0..ci {
            for y in 0..h {
                for xx in 0..w {
                    let v = x[((bi * ci + i) * h + y) * w + xx] as f64;
                    for o in 0..co {
                        for ky in 0..k {
                            for kx in 0..k {
                                acc[((bi * co + o) * ho + y * stride + ky) * wo + xx * stride + kx] += v * wt[((i * co + o) * k + ky) * k + kx] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    acc.iter().enumerate().map(|(n, v)| (v + bias.map_or(0.0, |bb| bb[(n / (ho * wo)) % co] as f64)) as f32).collect()
}

/// Bilinear resize in PyTorch's layout, as `interpolate(mode="bilinear", antialias=False)` in
/// f64: `x (B, C, H, W)` to `(B, C, ho, wo)`.
pub fn resize_bilinear(x: &[f32], (b, c, h, w): (usize, usize, usize, usize), (ho, wo): (usize, usize), align_corners: bool) -> Vec<f32> {
    let src = |d: usize, n: usize, m: usize| -> (usize, usize, f64) {
        let s = if align_corners {
            if m > 1 { d as f64 * (n as f64 - 1.0) / (m as f64 - 1.0) } else { 0.0 }
        } else {
            ((d as f64 + 0.5) * n as f64 / m as f64 - 0.5).max(0.0)
        };
        let i0 = (s.floor() as usize).min(n - 1);
        (i0, (i0 + 1).min(n - 1), s - i0 as f64)
    };
    let mut out = vec![0f32; b * c * ho * wo];
    for p in 0..b * c {
        let img = &x[p * h * w..(p + 1) * h * w];
        for y in 0..ho {
            let (y0, y1, ly) = src(y, h, ho);
            for xx in 0..wo {
                let (x0, x1, lx) = src(xx, w, wo);
                let at = |yy: usize, xv: usize| img[yy * w + xv] as f64;
                let v = (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1.0 - lx) * at(y1, x0) + lx * at(y1, x1));
                out[(p * ho + y) * wo + xx] = v as f32;
            }
        }
    }
    out
}

/// `(B, C, H, W)` to `(B, H, W, C)`.
pub fn nchw_to_nhwc(x: &[f32], (b, c, h, w): (usize, usize, usize, usize)) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for bi in 0..b {
        for ch in 0..c {
            for p in 0..h * w {
                out[(bi * h * w + p) * c + ch] = x[(bi * c + ch) * h * w + p];
            }
        }
    }
    out
}


/// A small seeded generator (PCG-style) for reproducible test data.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }

    /// `n` values uniform in [-scale, scale).
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| (self.uniform() * 2.0 - 1.0) * scale).collect()
    }
}

/// Checks `|got - want| <= atol + rtol * |want|` everywhere; on failure, says where and by how much.
pub fn compare(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Result<f32, String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, expected {}", got.len(), want.len()));
    }
    let mut max_diff = 0f32;
    let mut bad = Vec::new();
    let mut count = 0usize;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let diff = (g - w).abs();
        max_diff = max_diff.max(if diff.is_nan() { f32::INFINITY } else { diff });
        // Negated so that NaN fails.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        let bad_value = !(diff <= atol + rtol * w.abs());
        if bad_value {
            count += 1;
            if bad.len() < 5 {
                bad.push(format!("[{i}] got {g} want {w}"));
            }
        }
    }
    if bad.is_empty() {
        Ok(max_diff)
    } else {
        Err(format!(
            "{what}: MISMATCH in {count} of {} values, max diff {max_diff:e} (atol {atol:e}, rtol {rtol:e}); first: {}",
            got.len(),
            bad.join(", ")
        ))
    }
}
