//! Token merging (ToMe) against ToMe itself: `timm` checkpoints with random weights run through
//! ToMe's own timm patch (tests/fixtures/tome, scripts/make_tome_fixtures.py), at several `r`,
//! constant and decreasing: the tokens after each block, every block's output, the logits and
//! the tokens left, the source tracking behind attention maps and the last block's proportional
//! attention, on both devices. Then the merge ops alone against a plain f64 implementation of the
//! matching on awkward shapes (odd token counts, r at its cap, ties).

mod common;
use common::*;
use safetensors::SafeTensors;
use std::path::Path;
use tessera::{Checkpoint, Merge, MergeSchedule, Model, Op, RunOptions};

const ATOL: f32 = 1e-4;

struct Expected(Vec<(String, Vec<usize>, Vec<f32>)>);

impl Expected {
    fn load(dir: &Path) -> Expected {
        let bytes = std::fs::read(dir.join("expected.safetensors")).expect("expected.safetensors");
        let st = SafeTensors::deserialize(&bytes).expect("valid expected file");
        Expected(
            st.tensors()
                .into_iter()
                .map(|(name, t)| (name, t.shape().to_vec(), t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
                .collect(),
        )
    }

    fn get(&self, k: &str) -> Option<(&[usize], &[f32])> {
        self.0.iter().find(|(n, _, _)| n == k).map(|(_, s, d)| (s.as_slice(), d.as_slice()))
    }

    fn cases(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.iter().filter_map(|(n, _, _)| n.strip_suffix("/r").map(str::to_string)).collect();
        v.sort();
        v
    }
}

fn fixture(name: &str) -> (Checkpoint, Expected) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tome").join(name);
    (Checkpoint::from_dir(&dir).unwrap_or_else(|e| panic!("{name}: {e}")), Expected::load(&dir))
}

fn check(name: &str, with_map: bool) {
    let (ck, exp) = fixture(name);
    let (pdims, pixels) = exp.get("pixel_values").expect("pixel_values");
    let dims = [pdims[0], pdims[1], pdims[2], pdims[3]];
    let cases = exp.cases();
    assert!(!cases.is_empty(), "{name}: no cases");
    for (device, d) in devices() {
        let model = Model::load(&d, &ck).unwrap_or_else(|e| panic!("{name}: {e}"));
        for case in &cases {
            let label = format!("{name} {case} on {device}");
            let e = |k: &str| exp.get(&format!("{case}/{k}")).unwrap_or_else(|| panic!("{label}: no {k}"));
            let r = e("r").1[0] as usize;
            let schedule = if e("schedule").1[0] > 0.5 { MergeSchedule::Decreasing } else { MergeSchedule::Constant };
            let merge = Merge { r, schedule };
            let opts = RunOptions { hidden_states: true, attention: true, merge: Some(merge), ..Default::default() };
            let out = model.run_blocking(pixels, dims, opts).unwrap_or_else(|err| panic!("{label}: {err}"));
            // The tokens entering each block, then after the last: ToMe's.
            let want_tokens: Vec<usize> = e("tokens").1.iter().map(|&t| t as usize).collect();
            let mut got_tokens: Vec<usize> = out.hidden_states.iter().map(|h| h.shape[1]).collect();
            if r > 0 {
                let plan: Vec<usize> = out.merge.iter().map(|l| l.tokens).collect();
                assert_eq!(plan[..], got_tokens[..plan.len()], "{label}: the plan's tokens are the graph's");
                assert_eq!(plan, model.merge_plan(dims[2], dims[3], merge).iter().map(|l| l.tokens).collect::<Vec<_>>(), "{label}: merge_plan");
            }
            got_tokens.truncate(want_tokens.len());
            assert_eq!(got_tokens, want_tokens, "{label}: tokens after each block");
            for (i, h) in out.hidden_states.iter().enumerate() {
                let (shape, want) = e(&format!("hidden_state.{i}"));
                assert_eq!(h.shape, shape, "{label}: hidden_state.{i} shape");
                assert_close(&format!("{label} hidden_state.{i}"), &h.data, want, ATOL, 0.0);
            }
            let (shape, want) = e("last_hidden_state");
            let seq = out.last_hidden_state.as_ref().expect("last hidden state");
            assert_eq!(seq.shape, shape, "{label}: last_hidden_state shape");
            assert_close(&format!("{label} last_hidden_state"), &seq.data, want, ATOL, 0.0);
            match (exp.get(&format!("{case}/logits")), &out.logits) {
                (Some((shape, want)), Some(got)) => {
                    assert_eq!(got.shape, shape);
                    assert_close(&format!("{label} logits"), &got.data, want, ATOL, 0.0);
                }
                (None, None) => {}
                (w, g) => panic!("{label}: logits expected {} got {}", w.is_some(), g.is_some()),
            }
            if let Some((shape, want)) = exp.get(&format!("{case}/cls_attention")) {
                let got = out.cls_attention.as_ref().expect("attention requested");
                assert_eq!(got.shape, vec![shape[0], shape[1], 1, shape[2]], "{label}: cls_attention shape");
                assert_close(&format!("{label} cls_attention"), &got.data, want, 1e-5, 0.0);
            }
            // Source tracking: each original token's row (and the rows' sizes) where the map is taken.
            let (gk, sk) = if exp.get(&format!("{case}/cls_attention")).is_some() { ("groups", "sizes") } else { ("groups_end", "sizes_end") };
            let merged_before_map = e(sk).1.iter().any(|&s| s > 1.0);
            match &out.merge_groups {
                Some((groups, sizes)) => {
                    assert_eq!(groups.data, e(gk).1, "{label}: {gk}");
                    assert_eq!(sizes.data, e(sk).1, "{label}: {sk}");
                }
                None => assert!(!(with_map && merged_before_map), "{label}: no merge groups although tokens merged before the map"),
            }
            if r == 0 {
                let plain = model.run_blocking(pixels, dims, RunOptions { hidden_states: true, attention: true, ..Default::default() }).unwrap();
                assert_eq!(plain.last_hidden_state.unwrap().data, seq.data, "{label}: r = 0 is the unmerged model, bit for bit");
            }
        }
    }
}

#[test]
fn deit_small_merges_as_tome() {
    check("deit-s", true);
}

#[test]
fn distilled_deit_keeps_both_tokens_as_tome() {
    check("deit-ti-distilled", true);
}

#[test]
fn clip_style_tower_merges_as_tome_capped_at_half() {
    check("clip-tower", true);
}

#[test]
fn average_pooled_vit_merges_as_tome() {
    check("vit-avg", false);
}

#[test]
fn attention_pooled_tower_without_class_token_merges_as_tome() {
    check("siglip-map", true);
}

/// The attention map over merged tokens: each patch holds its token's attention over the
/// token's size (so the map sums as the tokens' attention does), and patches of one token share
/// its group number.
#[test]
fn attention_maps_spread_merged_tokens_over_their_patches() {
    let (ck, exp) = fixture("deit-s");
    let model = {
        let mut m = Model::load(&cpu(), &ck).unwrap();
        m.set_merge(Merge { r: 8, schedule: MergeSchedule::Constant });
        m
    };
    let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8]));
    let map = pollster::block_on(model.attention_map(&img)).unwrap();
    assert_eq!(map.groups.len(), 64, "a group per patch");
    let tokens_left = exp.get("r8/tokens").unwrap().1[3] as usize - 1;
    let distinct: std::collections::BTreeSet<u32> = map.groups.iter().copied().collect();
    assert_eq!(distinct.len(), tokens_left, "every patch token entering the last block covers some patch");
    for h in 0..map.heads {
        let sum: f32 = map.per_head[h * 64..(h + 1) * 64].iter().sum();
        assert!(sum > 0.0 && sum < 1.0 + 1e-5, "head {h}: the patches' share of the class token's attention, {sum}");
    }
    for g in &distinct {
        let vals: Vec<f32> = (0..64).filter(|&p| map.groups[p] == *g).map(|p| map.mean[p]).collect();
        assert!(vals.iter().all(|v| (v - vals[0]).abs() <= 1e-7), "group {g}: one value over its patches");
    }
}

/// Bad dials: an r past what a layer can merge is capped as ToMe caps it (and said by the plan),
/// an absurd one refused; merging padded NaFlex batches is refused.
#[test]
fn r_is_capped_as_tome_caps_it_and_absurd_values_refused() {
    let (ck, _) = fixture("deit-s");
    let model = Model::load(&cpu(), &ck).unwrap();
    let plan = model.merge_plan(64, 64, Merge { r: 1000, schedule: MergeSchedule::Constant });
    assert_eq!(plan.iter().map(|l| (l.tokens, l.asked, l.r)).collect::<Vec<_>>(), vec![(65, 1000, 32), (33, 1000, 16), (17, 1000, 8), (9, 1000, 4)]);
    let px = vec![0.1f32; 3 * 64 * 64];
    let out = model.run_blocking(&px, [1, 3, 64, 64], RunOptions { merge: Some(Merge { r: 1000, ..Default::default() }), ..Default::default() }).unwrap();
    assert_eq!(out.last_hidden_state.unwrap().shape, vec![1, 5, 48], "the class token and four tokens left");
    let err = Merge::new(usize::MAX, MergeSchedule::Constant).unwrap_err().to_string();
    assert!(err.contains("merge") && err.contains("over"), "{err}");
}

// ---- The ops alone, against a plain f64 implementation of the matching. ----

/// ToMe's matching in f64 over `metric (b, t, c)` (not yet at unit length): each token's output
/// row, as ops::merge defines the order.
fn reference_dest(metric: &[f32], b: usize, t: usize, c: usize, r: usize, protected: usize) -> Vec<f32> {
    let (na, nb) = (t.div_ceil(2), t / 2);
    let (pa, pb) = (protected.div_ceil(2), protected / 2);
    let mut out = vec![0f32; b * t];
    for bi in 0..b {
        let row = |i: usize| -> Vec<f64> {
            let v: Vec<f64> = metric[(bi * t + i) * c..(bi * t + i + 1) * c].iter().map(|&x| x as f64).collect();
            let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter().map(|x| x / n).collect()
        };
        let mut best = vec![(f64::NEG_INFINITY, 0usize); na];
        for (a, slot) in best.iter_mut().enumerate().skip(pa) {
            let va = row(2 * a);
            for j in pb..nb {
                let s: f64 = va.iter().zip(row(2 * j + 1)).map(|(x, y)| x * y).sum();
                if s > slot.0 {
                    *slot = (s, j);
                }
            }
        }
        let mut order: Vec<usize> = (0..na).collect();
        order.sort_by(|&x, &y| best[y].0.partial_cmp(&best[x].0).unwrap().then(x.cmp(&y)));
        let merged: Vec<bool> = (0..na).map(|i| order[..r].contains(&i)).collect();
        let unmerged = na - pa - r;
        let b_row = |j: usize| protected + unmerged + j - pb;
        let o = &mut out[bi * t..(bi + 1) * t];
        let mut kept = 0;
        for i in 0..na {
            o[2 * i] = if i < pa {
                (2 * i) as f32
            } else if merged[i] {
                b_row(best[i].1) as f32
            } else if protected == 0 {
                (order.iter().position(|&k| k == i).unwrap() - r) as f32
            } else {
                kept += 1;
                (protected + kept - 1) as f32
            };
        }
        for j in 0..nb {
            o[2 * j + 1] = if j < pb { (2 * j + 1) as f32 } else { b_row(j) as f32 };
        }
    }
    out
}

/// The metric, match and dest ops chained on a graph of their own, on one device.
fn run_dest(device: &tessera::Device, qkv: &[f32], b: usize, t: usize, heads: usize, d: usize, r: usize, protected: usize) -> (Vec<f32>, Vec<f32>) {
    let mut g = tessera::Graph::new();
    let x = g.input("qkv", &[b, t, 3 * d]);
    let metric = g.op("metric", Op::MergeMetric { heads }, &[x]).unwrap();
    let best = g.op("match", Op::MergeMatch { protected }, &[metric]).unwrap();
    let dest = g.op("dest", Op::MergeDest { tokens: t, r, protected }, &[best]).unwrap();
    g.output(metric);
    g.output(dest);
    let exe = pollster::block_on(tessera::Compiled::compile(device, &g, &tessera::Weights::new(device), &Default::default())).unwrap();
    let out = pollster::block_on(exe.run(&[("qkv", qkv)])).unwrap();
    (out[0].data.clone(), out[1].data.clone())
}

#[test]
fn matching_ops_match_the_f64_reference_on_awkward_shapes() {
    let mut rng = tessera::reference::Rng::new(7);
    // (batch, tokens, heads, head dim, r, protected): odd counts, r at its cap, one token to spare.
    let shapes = [(1, 3, 1, 1, 1, 0), (2, 9, 2, 3, 4, 0), (1, 17, 3, 5, 8, 1), (2, 66, 2, 8, 32, 2), (1, 261, 4, 16, 128, 5), (3, 50, 1, 4, 1, 0)];
    for (device, d) in devices() {
        for &(b, t, heads, dh, r, protected) in &shapes {
            let dm = heads * dh;
            let qkv = rng.vec(b * t * 3 * dm, 1.0);
            let (metric, dest) = run_dest(&d, &qkv, b, t, heads, dm, r, protected);
            // The metric: keys averaged over heads.
            let q = &qkv;
            let mean: Vec<f32> = (0..b * t).flat_map(|bt| (0..dh).map(move |j| (0..heads).map(|h| q[bt * 3 * dm + dm + h * dh + j] as f64).sum::<f64>() as f32 / heads as f32)).collect();
            let want = reference_dest(&mean, b, t, dh, r, protected);
            assert_eq!(dest, want, "{device}: dest of b={b} t={t} heads={heads} dh={dh} r={r} protected={protected}");
            for (row, m) in metric.chunks(dh).enumerate() {
                let n: f32 = m.iter().map(|v| v * v).sum();
                assert!((n - 1.0).abs() < 1e-5, "{device}: metric row {row} not unit length ({n})");
            }
        }
    }
}

#[test]
fn ties_in_similarity_break_by_index() {
    // Every token alike: every score ties; the lowest indices merge, into the first B token.
    let (b, t, d) = (1, 11, 4);
    let qkv: Vec<f32> = (0..b * t * 3 * d).map(|i| if (i / d) % 3 == 1 { 1.0 } else { (i % 7) as f32 }).collect();
    for (device, dev) in devices() {
        let (_, dest) = run_dest(&dev, &qkv, b, t, 1, d, 3, 1);
        let mean: Vec<f32> = vec![1.0; b * t * d];
        assert_eq!(dest, reference_dest(&mean, b, t, d, 3, 1), "{device}: ties");
        // A tokens 1, 2, 3 (tokens 2, 4, 6) merge into B token 0 (token 1). Rows: the class token
        // 0, the A tokens kept (8, 10) 1 and 2, then the B tokens (1, 3, 5, 7, 9) 3 to 7.
        assert_eq!(dest, vec![0., 3., 3., 4., 3., 5., 3., 6., 1., 7., 2.], "{device}: ties by index");
    }
}

/// The weighted merge and the sizes against a plain f64 scatter.
#[test]
fn merged_tokens_are_size_weighted_means() {
    let mut rng = tessera::reference::Rng::new(11);
    let (b, t, d, t_out) = (2, 7, 5, 4);
    let x = rng.vec(b * t * d, 1.0);
    let dest: Vec<f32> = vec![0., 1., 1., 2., 3., 3., 3., 2., 0., 1., 3., 3., 1., 0.];
    let sizes: Vec<f32> = (0..b * t).map(|i| 1.0 + (i % 3) as f32).collect();
    for sized in [false, true] {
        let mut want = vec![0f64; b * t_out * d];
        let mut w = vec![0f64; b * t_out];
        for bi in 0..b {
            for tt in 0..t {
                let row = dest[bi * t + tt] as usize;
                let s = if sized { sizes[bi * t + tt] as f64 } else { 1.0 };
                w[bi * t_out + row] += s;
                for k in 0..d {
                    want[(bi * t_out + row) * d + k] += x[(bi * t + tt) * d + k] as f64 * s;
                }
            }
        }
        let want: Vec<f32> = want.iter().enumerate().map(|(i, v)| (v / w[i / d]) as f32).collect();
        let wsum: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let mut args = vec![input("x", &[b, t, d], &x), input("dest", &[b, t], &dest)];
        let mut sargs = vec![input("dest", &[b, t], &dest)];
        if sized {
            args.push(input("sizes", &[b, t], &sizes));
            sargs.push(input("sizes", &[b, t], &sizes));
        }
        each_device(|| {
            let got = run_op(Op::MergeTokens { tokens: t_out, sized }, &args);
            assert_close(&format!("merge_tokens sized={sized}"), &got, &want, 1e-6, 1e-6);
            let got = run_op(Op::MergeSizes { tokens: t_out, sized }, &sargs);
            assert_eq!(got, wsum, "merge_sizes sized={sized}");
        });
    }
}

/// Proportional attention against the f64 softmax with log(size) on each key's logit, on both
/// backends' kernels, and its probabilities.
#[test]
fn sized_attention_matches_the_f64_reference() {
    let mut rng = tessera::reference::Rng::new(5);
    for (b, t, heads, dh) in [(1, 5, 1, 3), (2, 33, 3, 8), (1, 70, 2, 16)] {
        let dm = heads * dh;
        let qkv = rng.vec(b * t * 3 * dm, 1.0);
        let sizes: Vec<f32> = (0..b * t).map(|i| 1.0 + (i * 7 % 5) as f32).collect();
        let scale = 1.0 / (dh as f32).sqrt();
        let mut want = vec![0f32; b * t * dm];
        let mut probs = vec![0f32; b * heads * (t - 1)];
        for bi in 0..b {
            for h in 0..heads {
                for q in 0..t {
                    let qv = &qkv[(bi * t + q) * 3 * dm + h * dh..][..dh];
                    let logits: Vec<f64> = (0..t)
                        .map(|k| {
                            let kv = &qkv[(bi * t + k) * 3 * dm + dm + h * dh..][..dh];
                            qv.iter().zip(kv).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * scale as f64 + (sizes[bi * t + k] as f64).ln()
                        })
                        .collect();
                    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
                    let s: f64 = e.iter().sum();
                    for j in 0..dh {
                        want[(bi * t + q) * dm + h * dh + j] = ((0..t).map(|k| e[k] * qkv[(bi * t + k) * 3 * dm + 2 * dm + h * dh + j] as f64).sum::<f64>() / s) as f32;
                    }
                    if q == 0 {
                        for k in 1..t {
                            probs[(bi * heads + h) * (t - 1) + k - 1] = (e[k] / s) as f32;
                        }
                    }
                }
            }
        }
        let args = [input("qkv", &[b, t, 3 * dm], &qkv), input("sizes", &[b, t], &sizes)];
        each_device(|| {
            let got = run_op(Op::SizedAttention { heads, scale }, &args);
            assert_close(&format!("sized attention b={b} t={t} heads={heads} dh={dh}"), &got, &want, 1e-5, 1e-4);
            let got = run_op(Op::SizedAttentionProbs { heads, scale, queries: 1, first_key: 1 }, &args);
            assert_close(&format!("sized attention probs b={b} t={t}"), &got, &probs, 1e-6, 1e-4);
        });
    }
}
