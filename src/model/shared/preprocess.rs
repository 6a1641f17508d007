//! Image preprocessing as `transformers`' image processors do it (PIL backend): convert to RGB,
//! resize with PIL's resampling filters (same fixed-point arithmetic, 8-bit intermediate between
//! the horizontal and vertical pass), center crop, rescale, normalize. Decoding is
//! `model::shared::decode`'s.

use crate::error::{Error, Result};
use crate::model::shared::decode::MAX_IMAGE_SIDE;
use serde::Deserialize;

/// Most pixels preprocessing produces or holds at once (a resize or crop target, of the image or
/// of the config): 4096 x 4096, 192 MiB as f32 RGB. Far above any ViT's input, and within what a
/// browser tab's wasm heap can take.
pub const MAX_PIXELS: usize = 4096 * 4096;

/// PIL's resampling filters (the integer codes in `preprocessor_config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// 1
    Lanczos,
    /// 2
    Bilinear,
    /// 3
    Bicubic,
    /// 4
    Box,
    /// 5
    Hamming,
}

impl Resample {
    fn support(self) -> f64 {
        match self {
            Resample::Box => 0.5,
            Resample::Bilinear | Resample::Hamming => 1.0,
            Resample::Bicubic => 2.0,
            Resample::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Resample::Box => {
                if x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Resample::Bilinear => (1.0 - x).max(0.0),
            Resample::Hamming => {
                if x >= 1.0 {
                    0.0
                } else if x == 0.0 {
                    1.0
                } else {
                    let px = x * std::f64::consts::PI;
                    (px.sin() / px) * (0.54 + 0.46 * px.cos())
                }
            }
            Resample::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Resample::Lanczos => {
                let sinc = |v: f64| {
                    if v == 0.0 {
                        1.0
                    } else {
                        let p = v * std::f64::consts::PI;
                        p.sin() / p
                    }
                };
                if x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// How to resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeTo {
    /// Exactly this (height, width).
    Exact(usize, usize),
    /// Shortest edge to this, keeping the aspect ratio (the long edge truncated).
    ShortestEdge(usize),
    /// SigLIP 2's NaFlex rule: keep the aspect ratio at the largest scale whose grid of
    /// `ceil(side * scale / patch)` patches per side (at least one) holds at most `max` patches,
    /// then both sides to whole patches (small images are scaled up).
    MaxPatches {
        /// The patch side.
        patch: usize,
        /// The budget of patches.
        max: usize,
    },
    /// `DPTImageProcessor`'s rule (Depth Anything's): scale each side towards (height, width) —
    /// with `keep_aspect`, both by the one of the two scales closer to 1 — then round each side
    /// to a multiple of `multiple` (half to even, as Python's `round`; at least one multiple).
    Multiple {
        /// Target height.
        height: usize,
        /// Target width.
        width: usize,
        /// Keep the aspect ratio.
        keep_aspect: bool,
        /// Each side a multiple of this.
        multiple: usize,
    },
}

/// The size `DPTImageProcessor`'s `get_resize_output_image_size` gives an `h` x `w` image (in
/// f64 as Python computes it).
pub fn multiple_size(h: usize, w: usize, (th, tw): (usize, usize), keep_aspect: bool, multiple: usize) -> (usize, usize) {
    let (mut sh, mut sw) = (th as f64 / h as f64, tw as f64 / w as f64);
    if keep_aspect {
        if (1.0 - sw).abs() < (1.0 - sh).abs() {
            sh = sw;
        } else {
            sw = sh;
        }
    }
    let m = multiple.max(1);
    let constrain = |v: f64| -> usize {
        let q = v / m as f64;
        // Python's round: half to even.
        let r = if q - q.floor() == 0.5 { 2.0 * (q / 2.0).round() } else { q.round() };
        ((r * m as f64) as usize).max(m)
    };
    (constrain(sh * h as f64), constrain(sw * w as f64))
}

/// Most patches a budget may ask for: a grid of [`MAX_PIXELS`] pixels of 16-pixel patches.
pub const MAX_PATCHES: usize = MAX_PIXELS / 256;

/// The size `Siglip2ImageProcessor`'s `get_image_size_for_max_num_patches` gives an `h` x `w`
/// image: the same binary search over the scale, in f64 as Python computes it.
pub fn max_patches_size(h: usize, w: usize, patch: usize, max: usize) -> (usize, usize) {
    let scaled = |scale: f64, size: usize| -> usize {
        let s = ((size as f64 * scale) / patch as f64).ceil() * patch as f64;
        (s.max(patch as f64)) as usize
    };
    let eps = 1e-5;
    let (mut lo, mut hi) = (eps / 10.0, 100.0f64);
    while hi - lo >= eps {
        let scale = (lo + hi) / 2.0;
        let patches = (scaled(scale, h) / patch) as f64 * (scaled(scale, w) / patch) as f64;
        if patches <= max as f64 {
            lo = scale;
        } else {
            hi = scale;
        }
    }
    (scaled(lo, h), scaled(lo, w))
}

/// `preprocessor_config.json`, validated.
#[derive(Clone, Debug)]
pub struct PreprocessorConfig {
    /// Resize (None: keep the size).
    pub resize: Option<(ResizeTo, Resample)>,
    /// Center crop to (height, width).
    pub center_crop: Option<(usize, usize)>,
    /// Multiply 0..255 values by this (in f64, then rounded to f32, as numpy does).
    pub rescale: Option<f64>,
    /// Per-channel (mean, std).
    pub normalize: Option<(Vec<f32>, Vec<f32>)>,
    /// Center-crop offsets rounded half to even, as torchvision's `CenterCrop` (`timm`), instead
    /// of floored as `transformers` does.
    pub crop_round: bool,
    /// Zero-pad (after normalizing) each side to a multiple of this, centred, the odd pixel at the
    /// bottom and right (DPTImageProcessor's `do_pad` with `size_divisor`).
    pub pad_to: Option<usize>,
}

#[derive(Deserialize, Default)]
struct RawSize {
    height: Option<usize>,
    width: Option<usize>,
    shortest_edge: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeField {
    Int(usize),
    Map(RawSize),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Channels {
    One(f32),
    Many(Vec<f32>),
}

#[derive(Deserialize)]
struct Raw {
    image_processor_type: Option<String>,
    feature_extractor_type: Option<String>,
    do_resize: Option<bool>,
    size: Option<SizeField>,
    resample: Option<u32>,
    do_center_crop: Option<bool>,
    crop_size: Option<SizeField>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Channels>,
    image_std: Option<Channels>,
    patch_size: Option<usize>,
    max_num_patches: Option<usize>,
    keep_aspect_ratio: Option<bool>,
    ensure_multiple_of: Option<usize>,
    do_pad: Option<bool>,
    size_divisor: Option<usize>,
}

const MAX_SIDE: usize = MAX_IMAGE_SIDE as usize;

impl PreprocessorConfig {
    /// What `ViTImageProcessor` does by default at the training resolution (h, w): resize there
    /// with `filter`, rescale by 1/255, normalize with mean 0.5 and std 0.5.
    pub fn vit_default((h, w): (usize, usize), filter: Resample) -> Self {
        PreprocessorConfig {
            resize: Some((ResizeTo::Exact(h, w), filter)),
            center_crop: None,
            rescale: Some(1.0 / 255.0),
            normalize: Some((vec![0.5; 3], vec![0.5; 3])),
            crop_round: false,
            pad_to: None,
        }
    }

    /// The `preprocessor_config.json` of [`PreprocessorConfig::vit_default`] as `processor`
    /// (`ViTImageProcessor`, `SiglipImageProcessor`) writes it, with PIL's code for `filter`.
    pub fn vit_default_json(processor: &str, (h, w): (usize, usize), filter: Resample) -> serde_json::Value {
        let resample = match filter {
            Resample::Lanczos => 1,
            Resample::Bilinear => 2,
            Resample::Bicubic => 3,
            Resample::Box => 4,
            Resample::Hamming => 5,
        };
        serde_json::json!({
            "image_processor_type": processor,
            "do_resize": true, "size": { "height": h, "width": w }, "resample": resample,
            "do_rescale": true, "rescale_factor": 1.0 / 255.0,
            "do_normalize": true, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        })
    }

    /// Parses `preprocessor_config.json`; `file` names it in errors.
    pub fn parse(json: &[u8], file: &str) -> Result<Self> {
        let raw: Raw = serde_json::from_slice(json)
            .map_err(|e| Error::model(file, format!("not a valid preprocessor_config.json: {e}")))?;
        let bad = |p: String| Error::model(file, p);
        let side = |v: usize, key: &str| -> Result<usize> {
            if v == 0 || v > MAX_SIDE {
                Err(bad(format!("`{key}` {v} is out of range (1..={MAX_SIDE})")))
            } else {
                Ok(v)
            }
        };
        let area = |(h, w): (usize, usize), key: &str| -> Result<(usize, usize)> {
            if h * w > MAX_PIXELS {
                Err(bad(format!("`{key}` {h}x{w} is {} pixels, over the {MAX_PIXELS} preprocessing holds", h * w)))
            } else {
                Ok((h, w))
            }
        };
        let resample = match raw.resample.unwrap_or(2) {
            1 => Resample::Lanczos,
            2 => Resample::Bilinear,
            3 => Resample::Bicubic,
            4 => Resample::Box,
            5 => Resample::Hamming,
            other => return Err(bad(format!("resample {other} is not supported (1-5: lanczos, bilinear, bicubic, box, hamming)"))),
        };
        let kind = |p: &str| [&raw.image_processor_type, &raw.feature_extractor_type].iter().any(|t| t.as_deref().is_some_and(|t| t.starts_with(p)));
        let clip = kind("CLIP");
        let dpt = kind("DPT");
        let pad_to = match (raw.do_pad, raw.size_divisor) {
            (Some(true), _) if !dpt => return Err(bad("`do_pad` is DPTImageProcessor's; this processor is not one".into())),
            (Some(true), Some(d)) if (1..=1024).contains(&d) => Some(d),
            (Some(true), Some(d)) => return Err(bad(format!("`size_divisor` {d} is out of range (1..=1024)"))),
            (Some(true), None) => return Err(bad("`do_pad` is set but `size_divisor` is missing".into())),
            _ => None,
        };
        let multiple = raw.ensure_multiple_of.unwrap_or(1);
        if multiple == 0 || multiple > 1024 {
            return Err(bad(format!("`ensure_multiple_of` {multiple} is out of range (1..=1024)")));
        }
        let keep_aspect = raw.keep_aspect_ratio.unwrap_or(false);
        if !dpt && (keep_aspect || multiple > 1) {
            return Err(bad("`keep_aspect_ratio` and `ensure_multiple_of` are DPTImageProcessor's; this processor is not one".into()));
        }
        let resize = if dpt && raw.do_resize.unwrap_or(true) {
            let (h, w) = match raw.size {
                Some(SizeField::Int(s)) => (side(s, "size")?, s),
                Some(SizeField::Map(RawSize { height: Some(h), width: Some(w), .. })) => (side(h, "size.height")?, side(w, "size.width")?),
                _ => return Err(bad("DPTImageProcessor's `size` needs height and width".into())),
            };
            area((h, w), "size")?;
            Some((ResizeTo::Multiple { height: h, width: w, keep_aspect, multiple }, resample))
        } else if kind("Siglip2") && raw.do_resize.unwrap_or(true) {
            // Siglip2ImageProcessor: the size follows each image, within a budget of patches.
            let patch = raw.patch_size.unwrap_or(16);
            if patch == 0 || patch > 1024 {
                return Err(bad(format!("`patch_size` {patch} is out of range (1..=1024)")));
            }
            let max = check_max_patches(raw.max_num_patches.unwrap_or(256)).map_err(bad)?;
            Some((ResizeTo::MaxPatches { patch, max }, resample))
        } else if raw.do_resize.unwrap_or(true) {
            let to = match raw.size {
                // CLIP's processor reads a single size as the shortest edge (default_to_square=False).
                Some(SizeField::Int(s)) if clip => ResizeTo::ShortestEdge(side(s, "size")?),
                Some(SizeField::Int(s)) => {
                    let (h, w) = area((side(s, "size")?, s), "size")?;
                    ResizeTo::Exact(h, w)
                }
                Some(SizeField::Map(RawSize { height: Some(h), width: Some(w), .. })) => {
                    let (h, w) = area((side(h, "size.height")?, side(w, "size.width")?), "size")?;
                    ResizeTo::Exact(h, w)
                }
                Some(SizeField::Map(RawSize { shortest_edge: Some(s), .. })) => {
                    ResizeTo::ShortestEdge(side(s, "size.shortest_edge")?)
                }
                Some(SizeField::Map(_)) => {
                    return Err(bad("`size` needs height and width, or shortest_edge".into()));
                }
                None => return Err(bad("`do_resize` is set but `size` is missing".into())),
            };
            Some((to, resample))
        } else {
            None
        };
        let center_crop = if raw.do_center_crop.unwrap_or(false) {
            match raw.crop_size {
                Some(SizeField::Int(s)) => Some(area((side(s, "crop_size")?, s), "crop_size")?),
                Some(SizeField::Map(RawSize { height: Some(h), width: Some(w), .. })) => {
                    Some(area((side(h, "crop_size.height")?, side(w, "crop_size.width")?), "crop_size")?)
                }
                _ => return Err(bad("`do_center_crop` is set but `crop_size` has no height and width".into())),
            }
        } else {
            None
        };
        let rescale = if raw.do_rescale.unwrap_or(true) {
            let f = raw.rescale_factor.unwrap_or(1.0 / 255.0);
            if !f.is_finite() {
                return Err(bad(format!("rescale_factor {f} is not finite")));
            }
            Some(f)
        } else {
            None
        };
        let channels = |c: Option<Channels>, key: &str, default: f32| -> Result<Vec<f32>> {
            let v = match c {
                None => vec![default; 3],
                Some(Channels::One(x)) => vec![x; 3],
                Some(Channels::Many(v)) => v,
            };
            if v.len() != 3 || v.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!("`{key}` must hold 3 finite numbers, got {v:?}")));
            }
            Ok(v)
        };
        let normalize = if raw.do_normalize.unwrap_or(true) {
            let mean = channels(raw.image_mean, "image_mean", 0.5)?;
            let std = channels(raw.image_std, "image_std", 0.5)?;
            if std.contains(&0.0) {
                return Err(bad("`image_std` has a zero".into()));
            }
            Some((mean, std))
        } else {
            None
        };
        Ok(PreprocessorConfig { resize, center_crop, rescale, normalize, crop_round: false, pad_to })
    }

    /// The same preprocessing with a budget of `max` patches, for a NaFlex processor
    /// ([`ResizeTo::MaxPatches`]); an error naming the problem for another kind or a budget out
    /// of range.
    pub fn with_max_patches(&self, max: usize) -> std::result::Result<Self, String> {
        match self.resize {
            Some((ResizeTo::MaxPatches { patch, .. }, filter)) => {
                let max = check_max_patches(max)?;
                Ok(PreprocessorConfig { resize: Some((ResizeTo::MaxPatches { patch, max }, filter)), ..self.clone() })
            }
            _ => Err("a patch budget applies to NaFlex checkpoints (SigLIP 2's Siglip2ImageProcessor); this model resizes to a fixed size".into()),
        }
    }

    /// The patch budget of a NaFlex processor.
    pub fn max_patches(&self) -> Option<usize> {
        match self.resize {
            Some((ResizeTo::MaxPatches { max, .. }, _)) => Some(max),
            _ => None,
        }
    }

    /// The (height, width) this produces for an input of the given size.
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        let (mut h, mut w) = (h, w);
        if let Some((to, _)) = self.resize {
            (h, w) = resize_target(to, h, w);
        }
        if let Some(c) = self.center_crop {
            (h, w) = c;
        }
        if let Some(m) = self.pad_to {
            (h, w) = (h.div_ceil(m) * m, w.div_ceil(m) * m);
        }
        (h, w)
    }

    /// An RGB image to `pixel_values` (3, H, W), channel-major. An image whose resize would
    /// exceed [`MAX_PIXELS`] (a shortest-edge resize of a very thin strip) is an error naming the
    /// sizes, before anything of that size is allocated.
    pub fn apply(&self, img: &image::RgbImage) -> Result<(Vec<f32>, usize, usize)> {
        let (w0, h0) = img.dimensions();
        if let Some((to, _)) = self.resize {
            let (h, w) = resize_target(to, h0 as usize, w0 as usize);
            if h > MAX_SIDE || w > MAX_SIDE || h * w > MAX_PIXELS {
                return Err(Error::Input {
                    name: "image".into(),
                    problem: format!(
                        "a {w0}x{h0} image resizes to {w}x{h} as the preprocessor asks ({to:?}), over the {MAX_PIXELS} pixels and {MAX_SIDE} per side preprocessing holds"
                    ),
                });
            }
        }
        let (ph, pw) = self.output_size(h0 as usize, w0 as usize);
        if ph > MAX_SIDE || pw > MAX_SIDE || ph * pw > MAX_PIXELS {
            return Err(Error::Input {
                name: "image".into(),
                problem: format!("a {w0}x{h0} image preprocesses to {pw}x{ph}, over the {MAX_PIXELS} pixels and {MAX_SIDE} per side preprocessing holds"),
            });
        }
        let mut buf = Planes { h: h0 as usize, w: w0 as usize, data: [vec![], vec![], vec![]] };
        for (c, plane) in buf.data.iter_mut().enumerate() {
            *plane = img.pixels().map(|p| p.0[c]).collect();
        }
        if let Some((to, filter)) = self.resize {
            let (h, w) = resize_target(to, buf.h, buf.w);
            buf = resize(&buf, h, w, filter);
        }
        if let Some((ch, cw)) = self.center_crop {
            buf = center_crop(&buf, ch, cw, self.crop_round);
        }
        let (h, w) = (buf.h, buf.w);
        let mut out = Vec::with_capacity(3 * h * w);
        for (c, plane) in buf.data.iter().enumerate() {
            out.extend(plane.iter().map(|&v| {
                let mut x = v as f32;
                if let Some(f) = self.rescale {
                    x = (v as f64 * f) as f32;
                }
                if let Some((mean, std)) = &self.normalize {
                    x = (x - mean[c]) / std[c];
                }
                x
            }));
        }
        if let Some(m) = self.pad_to {
            let (ph, pw) = (h.div_ceil(m) * m, w.div_ceil(m) * m);
            if (ph, pw) != (h, w) {
                let (top, left) = ((ph - h) / 2, (pw - w) / 2);
                let mut padded = vec![0f32; 3 * ph * pw];
                for c in 0..3 {
                    for y in 0..h {
                        let dst = (c * ph + top + y) * pw + left;
                        padded[dst..dst + w].copy_from_slice(&out[(c * h + y) * w..(c * h + y + 1) * w]);
                    }
                }
                return Ok((padded, ph, pw));
            }
        }
        Ok((out, h, w))
    }
}

/// A patch budget: at least 1, at most [`MAX_PATCHES`].
fn check_max_patches(max: usize) -> std::result::Result<usize, String> {
    if max == 0 || max > MAX_PATCHES {
        return Err(format!("a budget of {max} patches is out of range (1..={MAX_PATCHES})"));
    }
    Ok(max)
}

fn resize_target(to: ResizeTo, h: usize, w: usize) -> (usize, usize) {
    match to {
        ResizeTo::Exact(h, w) => (h, w),
        ResizeTo::MaxPatches { patch, max } => max_patches_size(h, w, patch, max),
        ResizeTo::Multiple { height, width, keep_aspect, multiple } => multiple_size(h, w, (height, width), keep_aspect, multiple),
        ResizeTo::ShortestEdge(s) => {
            // transformers' get_resize_output_image_size(default_to_square=False): the long
            // edge is truncated, not rounded (saturating: callers check the size).
            if w <= h {
                (((s as f64 * h as f64 / w as f64) as usize).max(1), s)
            } else {
                (s, ((s as f64 * w as f64 / h as f64) as usize).max(1))
            }
        }
    }
}

struct Planes {
    h: usize,
    w: usize,
    data: [Vec<u8>; 3],
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// PIL's precompute_coeffs + normalize_coeffs_8bpc: per output pixel, the first input index and
/// fixed-point weights.
fn coefficients(input: usize, output: usize, filter: Resample) -> Vec<(usize, Vec<i32>)> {
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    (0..output)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let mut k: Vec<f64> =
                (xmin..xmax).map(|x| filter.weight((x as f64 - center + 0.5) * ss)).collect();
            let total: f64 = k.iter().sum();
            if total != 0.0 {
                k.iter_mut().for_each(|v| *v /= total);
            }
            let fixed = k
                .iter()
                .map(|&v| {
                    let s = v * (1u32 << PRECISION_BITS) as f64;
                    if v < 0.0 { (s - 0.5) as i32 } else { (s + 0.5) as i32 }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One pass of PIL's two-pass resize along the width (`along_width`) or the height, rounding to
/// 8 bits.
fn resize_pass(src: &Planes, out_len: usize, along_width: bool, filter: Resample) -> Planes {
    let (in_len, other) = if along_width { (src.w, src.h) } else { (src.h, src.w) };
    let (h, w) = if along_width { (src.h, out_len) } else { (out_len, src.w) };
    let coeffs = coefficients(in_len, out_len, filter);
    let mut data: [Vec<u8>; 3] = [vec![0; h * w], vec![0; h * w], vec![0; h * w]];
    // Input index of tap i of output o along the axis, at position j across it.
    let at = |i: usize, j: usize| if along_width { j * src.w + i } else { i * src.w + j };
    let put = |o: usize, j: usize| if along_width { j * w + o } else { o * w + j };
    for (plane, out) in src.data.iter().zip(data.iter_mut()) {
        let mut one = |o: usize, j: usize| {
            let (start, k) = &coeffs[o];
            let mut acc: i64 = 1 << (PRECISION_BITS - 1);
            for (i, &kk) in k.iter().enumerate() {
                acc += plane[at(start + i, j)] as i64 * kk as i64;
            }
            out[put(o, j)] = clip8(acc);
        };
        // Rows outermost either way, so that both passes read memory in order.
        if along_width {
            (0..other).for_each(|j| (0..out_len).for_each(|o| one(o, j)));
        } else {
            (0..out_len).for_each(|o| (0..other).for_each(|j| one(o, j)));
        }
    }
    Planes { h, w, data }
}

/// PIL's resize: a horizontal and a vertical pass with an 8-bit image between them. Pillow 13
/// runs the vertical pass first when the height shrinks by more than twice as many pixels as
/// the width (python-pillow/Pillow#9549); the order changes some pixels by one level, so it is
/// followed here.
fn resize(src: &Planes, h: usize, w: usize, filter: Resample) -> Planes {
    let vertical_first = h < src.h && (src.h - h) as i64 > 2 * (src.w as i64 - w as i64);
    let mut cur = Planes { h: src.h, w: src.w, data: src.data.clone() };
    for along_width in if vertical_first { [false, true] } else { [true, false] } {
        let (from, to) = if along_width { (cur.w, w) } else { (cur.h, h) };
        if from != to {
            cur = resize_pass(&cur, to, along_width, filter);
        }
    }
    cur
}

/// transformers' center_crop: offsets (size - crop) // 2, or with `round` torchvision's
/// round((size - crop) / 2) (half to even); zero padding where the crop is larger.
fn center_crop(src: &Planes, ch: usize, cw: usize, round: bool) -> Planes {
    let offset = |d: i64| if round { (d as f64 / 2.0).round_ties_even() as i64 } else { d.div_euclid(2) };
    let top = offset(src.h as i64 - ch as i64);
    let left = offset(src.w as i64 - cw as i64);
    let mut data: [Vec<u8>; 3] = [vec![0; ch * cw], vec![0; ch * cw], vec![0; ch * cw]];
    for (plane, out) in src.data.iter().zip(data.iter_mut()) {
        for y in 0..ch {
            let sy = y as i64 + top;
            if sy < 0 || sy >= src.h as i64 {
                continue;
            }
            for x in 0..cw {
                let sx = x as i64 + left;
                if sx >= 0 && sx < src.w as i64 {
                    out[y * cw + x] = plane[sy as usize * src.w + sx as usize];
                }
            }
        }
    }
    Planes { h: ch, w: cw, data }
}
