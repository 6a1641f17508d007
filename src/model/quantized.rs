//! Quantized checkpoints in the `compressed-tensors` `pack-quantized` format, which
//! `transformers` (through the `compressed-tensors` package) and vLLM read: `config.json` carries
//! a `quantization_config` with `quant_method: "compressed-tensors"`, and each quantized Linear
//! layer `name` stores, instead of `name.weight`:
//! - `name.weight_packed`: int32 `(out, ceil(in * bits / 32))`, each row's integers packed along
//!   `in`, value `i` in bits `bits * (i % (32 / bits))..` of word `i / (32 / bits)`, lowest
//!   first, stored unsigned with offset `2^(bits - 1)`;
//! - `name.weight_scale`: `(out, groups)` floats (one group per channel, or `ceil(in / group)`);
//! - `name.weight_shape`: the integers `[out, in]`.
//!
//! `weight = (unsigned - 2^(bits - 1)) * scale`. tessera reads symmetric integer weights of 8 or
//! 4 bits, per channel or in groups along `in`, and writes them ([`quantize_checkpoint`]); the
//! engine keeps them packed ([`crate::quant`], the same words transposed to K-major).

use super::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::quant::{check_scheme, per_word, QuantWeight};
use safetensors::Dtype;
use serde_json::{json, Value};

/// A checkpoint's `quantization_config`, validated: the one weight scheme of its Linear layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantConfig {
    /// 8 or 4.
    pub bits: u32,
    /// Values of `in` per scale; None: one scale per output channel.
    pub group: Option<usize>,
}

impl std::fmt::Display for QuantConfig {
    /// `int8 per output channel`, `int4 in groups of 32`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.group {
            None => write!(f, "int{} per output channel", self.bits),
            Some(g) => write!(f, "int{} in groups of {g}", self.bits),
        }
    }
}

impl QuantConfig {
    /// Parses `quantization_config`; `file` names config.json in errors.
    pub fn parse(v: &Value, file: &str) -> Result<QuantConfig> {
        let bad = |p: String| Error::model(file, format!("quantization_config: {p}"));
        let method = v.get("quant_method").and_then(Value::as_str).unwrap_or("(none)");
        if method != "compressed-tensors" {
            return Err(bad(format!("quant_method `{method}` is not supported (supported: compressed-tensors, format pack-quantized)")));
        }
        let format = v.get("format").and_then(Value::as_str).unwrap_or("(none)");
        if format != "pack-quantized" {
            return Err(bad(format!("format `{format}` is not supported (supported: pack-quantized)")));
        }
        if let Some(status) = v.get("quantization_status").and_then(Value::as_str) {
            if status != "compressed" {
                return Err(bad(format!("quantization_status `{status}`: the weights are not stored compressed")));
            }
        }
        let groups = v.get("config_groups").and_then(Value::as_object).filter(|g| !g.is_empty()).ok_or_else(|| bad("no config_groups".into()))?;
        let mut scheme: Option<QuantConfig> = None;
        for (gname, g) in groups {
            let gbad = |p: String| bad(format!("config group `{gname}`: {p}"));
            for act in ["input_activations", "output_activations"] {
                if g.get(act).is_some_and(|a| !a.is_null()) {
                    return Err(gbad(format!("{act} are quantized (tessera reads weight-only quantization)")));
                }
            }
            let w = g.get("weights").filter(|w| w.is_object()).ok_or_else(|| gbad("no weights scheme".into()))?;
            let ty = w.get("type").and_then(Value::as_str).unwrap_or("int");
            if ty != "int" {
                return Err(gbad(format!("weights of type `{ty}` (supported: int)")));
            }
            if w.get("symmetric").and_then(Value::as_bool) == Some(false) {
                return Err(gbad("asymmetric weights (zero points) are not supported; symmetric only".into()));
            }
            if w.get("dynamic").and_then(Value::as_bool) == Some(true) {
                return Err(gbad("dynamic weight quantization is not supported".into()));
            }
            if w.get("actorder").is_some_and(|a| !a.is_null() && a != "static") {
                return Err(gbad("activation-ordered groups (actorder, g_idx) are not supported".into()));
            }
            let bits = w.get("num_bits").and_then(Value::as_u64).ok_or_else(|| gbad("no num_bits".into()))?;
            let bits = u32::try_from(bits).unwrap_or(u32::MAX);
            let strategy = w.get("strategy").and_then(Value::as_str).unwrap_or("(none)");
            let group = match strategy {
                "channel" => None,
                "group" => {
                    let g = w.get("group_size").and_then(Value::as_u64).ok_or_else(|| gbad("strategy `group` without a group_size".into()))?;
                    if g == 0 || g > 1 << 20 {
                        return Err(gbad(format!("group_size {g} is out of range (1..=1048576)")));
                    }
                    Some(g as usize)
                }
                other => return Err(gbad(format!("strategy `{other}` is not supported (supported: channel, group)"))),
            };
            check_scheme(bits, group.unwrap_or(1)).map_err(gbad)?;
            let this = QuantConfig { bits, group };
            match &scheme {
                Some(s) if *s != this => return Err(bad("config groups with different schemes are not supported".into())),
                _ => scheme = Some(this),
            }
        }
        Ok(scheme.expect("at least one group"))
    }

    /// The `quantization_config` that describes this scheme, `ignore` naming the Linear layers
    /// kept in float.
    pub fn to_json(&self, ignore: &[String]) -> Value {
        let (strategy, group) = match self.group {
            None => ("channel", Value::Null),
            Some(g) => ("group", json!(g)),
        };
        json!({
            "quant_method": "compressed-tensors",
            "format": "pack-quantized",
            "quantization_status": "compressed",
            "config_groups": {
                "group_0": {
                    "targets": ["Linear"],
                    "weights": {
                        "num_bits": self.bits,
                        "type": "int",
                        "symmetric": true,
                        "strategy": strategy,
                        "group_size": group,
                        "dynamic": false,
                        "actorder": null,
                        "observer": "minmax",
                    },
                    "input_activations": null,
                    "output_activations": null,
                }
            },
            "ignore": ignore,
            "kv_cache_scheme": null,
        })
    }
}

/// Whether Linear layer `name` (a full tensor-name prefix) is stored quantized.
pub(crate) fn is_packed(ck: &Checkpoint, name: &str) -> bool {
    ck.has(&format!("{name}.weight_packed"))
}

/// Linear layer `name` (weight `(out, inp)`) of a quantized checkpoint as a K-major
/// [`QuantWeight`] `(inp, out)`, every tensor checked against the config's scheme; returns the
/// three tensor names it read.
pub(crate) fn read_linear(ck: &Checkpoint, name: &str, out: usize, inp: usize) -> Result<(QuantWeight, [String; 3])> {
    let file = ck.weights_name().to_string();
    let bad = |p: String| Error::model(&file, p);
    let Some(cfg) = ck.config.quant.clone() else {
        return Err(bad(format!("`{name}.weight_packed` is a packed weight, but config.json has no quantization_config")));
    };
    let names = [format!("{name}.weight_packed"), format!("{name}.weight_scale"), format!("{name}.weight_shape")];
    let [pn, sn, shn] = &names;

    // The shape it claims must be the one the model config implies.
    let (dt, shape, raw) = ck.raw(shn)?;
    let dims: Vec<i64> = match dt {
        Dtype::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::I32 => raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
        other => return Err(bad(format!("tensor `{shn}` has dtype {other:?} (expected I64 or I32)"))),
    };
    if shape.iter().product::<usize>() != 2 || dims != [out as i64, inp as i64] {
        return Err(bad(format!("tensor `{shn}` says the weight is {dims:?}, the config implies [{out}, {inp}]")));
    }

    let (bits, pw) = (cfg.bits, per_word(cfg.bits));
    let kw = inp.div_ceil(pw);
    let (dt, shape, raw) = ck.raw(pn)?;
    if dt != Dtype::I32 {
        return Err(bad(format!("tensor `{pn}` has dtype {dt:?} (expected I32: packed {bits}-bit values)")));
    }
    if shape != [out, kw] {
        return Err(bad(format!("tensor `{pn}` has shape {shape:?}; {out} x {inp} values at {bits} bits (quantization_config) pack into [{out}, {kw}]")));
    }
    let group = cfg.group.unwrap_or(inp).min(inp.max(1));
    let groups = inp.div_ceil(group);
    let scales = ck.tensor_any(sn)?;
    let sshape = ck.tensor_shape(sn).unwrap_or_default();
    if scales.len() != out * groups || sshape.first() != Some(&out) {
        let how = match cfg.group {
            None => "one per output channel".to_string(),
            Some(g) => format!("groups of {g} along {inp} inputs"),
        };
        return Err(bad(format!("tensor `{sn}` has shape {sshape:?}; {how} needs [{out}, {groups}]")));
    }

    let mut words = vec![0u32; kw * out];
    for (n, row) in raw.chunks_exact(kw * 4).enumerate() {
        for (j, c) in row.chunks_exact(4).enumerate() {
            words[j * out + n] = u32::from_le_bytes(c.try_into().unwrap());
        }
    }
    let mut t = vec![0f32; out * groups];
    for n in 0..out {
        for g in 0..groups {
            t[g * out + n] = scales[n * groups + g];
        }
    }
    let q = QuantWeight { bits, group, k: inp, n: out, words, scales: t };
    q.validate_stored(sn).map_err(|e| match e {
        Error::Weight { name, problem } => bad(format!("tensor `{name}`: {problem}")),
        e => e,
    })?;
    Ok((q, names))
}

/// A checkpoint's Linear layers quantized: what [`quantize_checkpoint`] did.
pub struct QuantizeReport {
    /// Linear layers quantized.
    pub quantized: Vec<String>,
    /// Linear layers kept in float (the classifier heads).
    pub kept: Vec<String>,
    /// Bytes of the weights file before.
    pub bytes_before: u64,
    /// Bytes of the weights file after.
    pub bytes_after: u64,
}

/// The tensors of a classifier head: kept in float (they are small, and the logits are read
/// directly from them).
fn is_head(name: &str) -> bool {
    let m = name.trim_end_matches(".weight");
    matches!(m, "classifier" | "cls_classifier" | "distillation_classifier" | "head" | "head_dist")
}

/// Quantizes every Linear layer of `ck` but the classifier heads (2-D `*.weight` tensors with a
/// bias-sized output; norms, embeddings, biases and the patch convolution stay as they are) to
/// `bits` with `group` values per scale (None: per output channel; f16 scales for 4 bits, f32
/// for 8), calling `progress(done, total)` per tensor. Returns the new `config.json`,
/// `model.safetensors` and the report.
pub fn quantize_checkpoint(ck: &Checkpoint, bits: u32, group: Option<usize>, progress: &mut dyn FnMut(usize, usize)) -> Result<(Vec<u8>, Vec<u8>, QuantizeReport)> {
    check_scheme(bits, group.unwrap_or(1)).map_err(|p| Error::model(&ck.source, format!("cannot quantize to {p}")))?;
    if ck.config.quant.is_some() {
        return Err(Error::model(format!("{}/config.json", ck.source), "the checkpoint is already quantized"));
    }
    let names = ck.tensor_names();
    let linear = |n: &str| -> bool { n.ends_with(".weight") && ck.tensor_shape(n).is_some_and(|s| s.len() == 2) && !n.contains("embeddings") };
    let f16_scales = bits == 4;
    let mut out: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut report = QuantizeReport { quantized: vec![], kept: vec![], bytes_before: ck.weights_len(), bytes_after: 0 };
    let total = names.len();
    for (i, name) in names.iter().enumerate() {
        progress(i, total);
        let (dt, shape, raw) = ck.raw(name)?;
        if !linear(name) || is_head(name) {
            if linear(name) {
                report.kept.push(name.trim_end_matches(".weight").to_string());
            }
            out.push((name.clone(), dt, shape, raw.to_vec()));
            continue;
        }
        let (o, inp) = (shape[0], shape[1]);
        let w = ck.tensor(name, &[o, inp])?;
        // (out, in) row-major is (in, out) column-major: quantize the transpose, K = in.
        let mut t = vec![0f32; w.len()];
        for r in 0..o {
            for c in 0..inp {
                t[c * o + r] = w[r * inp + c];
            }
        }
        let q = QuantWeight::quantize(&t, inp, o, bits, group.unwrap_or(inp), f16_scales);
        let base = name.trim_end_matches(".weight").to_string();
        let kw = inp.div_ceil(per_word(bits));
        let mut packed = Vec::with_capacity(o * kw * 4);
        for n in 0..o {
            for j in 0..kw {
                packed.extend_from_slice(&q.words[j * o + n].to_le_bytes());
            }
        }
        let groups = inp.div_ceil(q.group);
        let mut scales = Vec::with_capacity(o * groups * 4);
        for n in 0..o {
            for g in 0..groups {
                let s = q.scales[g * o + n];
                if f16_scales {
                    scales.extend_from_slice(&half::f16::from_f32(s).to_le_bytes());
                } else {
                    scales.extend_from_slice(&s.to_le_bytes());
                }
            }
        }
        let sdt = if f16_scales { Dtype::F16 } else { Dtype::F32 };
        let shape_bytes: Vec<u8> = [o as i64, inp as i64].iter().flat_map(|v| v.to_le_bytes()).collect();
        out.push((format!("{base}.weight_packed"), Dtype::I32, vec![o, kw], packed));
        out.push((format!("{base}.weight_scale"), sdt, vec![o, groups], scales));
        out.push((format!("{base}.weight_shape"), Dtype::I64, vec![2], shape_bytes));
        report.quantized.push(base);
    }
    progress(total, total);
    let views: Vec<(String, safetensors::tensor::TensorView)> = out
        .iter()
        .map(|(n, dt, s, d)| Ok((n.clone(), safetensors::tensor::TensorView::new(*dt, s.clone(), d).map_err(|e| Error::model(n, e.to_string()))?)))
        .collect::<Result<_>>()?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| Error::model(&ck.source, format!("cannot write safetensors: {e}")))?;
    report.bytes_after = bytes.len() as u64;

    let mut config: Value = serde_json::from_slice(ck.config_json()).map_err(|e| Error::model(&ck.source, e.to_string()))?;
    let qc = QuantConfig { bits, group };
    config["quantization_config"] = qc.to_json(&report.kept);
    let config = serde_json::to_vec_pretty(&config).map_err(|e| Error::model(&ck.source, e.to_string()))?;
    Ok((config, bytes, report))
}
