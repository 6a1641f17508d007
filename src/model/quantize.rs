//! Writing quantized checkpoints: every Linear layer of a checkpoint but its family's classifier
//! heads packed in the `compressed-tensors` `pack-quantized` format (`model::shared::quantized`
//! reads it).

use crate::error::{Error, Result};
use crate::model::shared::checkpoint::Checkpoint;
use crate::model::shared::quantized::QuantConfig;
use crate::quant::{check_scheme, per_word, QuantWeight};
use safetensors::Dtype;
use serde_json::Value;

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

/// Whether tensor `name` belongs to one of the family's classifier heads, kept in float (they are
/// small, and the logits are read directly from them).
fn is_head(ck: &Checkpoint, name: &str) -> bool {
    let m = name.trim_end_matches(".weight");
    ck.family_def().is_ok_and(|d| d.float_layers().contains(&m))
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
        if !linear(name) || is_head(ck, name) {
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
