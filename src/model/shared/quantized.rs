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
//! 4 bits, per channel or in groups along `in` (`model::shared::reader` reads the packed tensors,
//! `model::quantize` writes them); the engine keeps them packed ([`crate::quant`], the same words transposed to K-major).

use crate::error::{Error, Result};
use crate::quant::check_scheme;
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
