//! WGSL sources and the one specialization step: integer constants prepended as `const`
//! declarations, `#ifdef NAME` / `#ifndef NAME` / `#else` / `#endif` switches on flags, and
//! `@binding(_)` numbered 0, 1, 2, ... in order of appearance (so a binding that a flag leaves
//! out shifts the rest, and no number is written by hand). Nothing else: the text that reaches
//! naga is plain WGSL.

/// Every shader file, by stem.
pub(crate) const SOURCES: &[(&str, &str)] = &[
    ("common", include_str!("../../shaders/common.wgsl")),
    ("reduce", include_str!("../../shaders/reduce.wgsl")),
    ("gemm", include_str!("../../shaders/gemm.wgsl")),
    ("gemm_load_b", include_str!("../../shaders/gemm_load_b.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    ("epilogue", include_str!("../../shaders/epilogue.wgsl")),
    ("splitk_reduce", include_str!("../../shaders/splitk_reduce.wgsl")),
    ("patch_embed", include_str!("../../shaders/patch_embed.wgsl")),
    ("attention", include_str!("../../shaders/attention.wgsl")),
    ("attention_kv", include_str!("../../shaders/attention_kv.wgsl")),
    ("attention_split", include_str!("../../shaders/attention_split.wgsl")),
    ("attention_tiled", include_str!("../../shaders/attention_tiled.wgsl")),
    ("attention_probs", include_str!("../../shaders/attention_probs.wgsl")),
    ("attention_pool", include_str!("../../shaders/attention_pool.wgsl")),
    ("attention_pool_probs", include_str!("../../shaders/attention_pool_probs.wgsl")),
    ("attention_pool_softmax", include_str!("../../shaders/attention_pool_softmax.wgsl")),
    ("layernorm", include_str!("../../shaders/layernorm.wgsl")),
    ("softmax", include_str!("../../shaders/softmax.wgsl")),
    ("elementwise", include_str!("../../shaders/elementwise.wgsl")),
    ("tokens", include_str!("../../shaders/tokens.wgsl")),
    ("concat", include_str!("../../shaders/concat.wgsl")),
    ("merge", include_str!("../../shaders/merge.wgsl")),
    ("spatial", include_str!("../../shaders/spatial.wgsl")),
];

pub(crate) fn source(stem: &str) -> &'static str {
    SOURCES.iter().find(|(s, _)| *s == stem).map(|(_, src)| *src).unwrap_or("")
}

/// A fully specialized shader: its WGSL text and a key naming the variant (also the pipeline label).
#[derive(Clone, Debug)]
pub struct ShaderVariant {
    /// `stem[FLAG,NAME=VALUE,...]`, unique per distinct source.
    pub key: String,
    /// The WGSL handed to the device.
    pub source: String,
    recipe: (Vec<&'static str>, Vec<(&'static str, u32)>, Vec<&'static str>),
    workgroup_storage: u32,
}

impl ShaderVariant {
    /// The same kernel storing its tensors as f16 (computing in f32); needs `shader-f16`.
    pub fn f16(&self) -> ShaderVariant {
        let (parts, consts, flags) = &self.recipe;
        if flags.contains(&"F16") {
            return self.clone();
        }
        let mut flags = flags.clone();
        flags.push("F16");
        specialize(parts, consts, &flags).with_workgroup_storage(self.workgroup_storage)
    }

    /// Declares that the variant uses `bytes` of workgroup memory, beyond the 16 KiB every WebGPU
    /// device offers; it then runs only where the device's limit allows.
    pub(crate) fn with_workgroup_storage(mut self, bytes: u32) -> Self {
        self.workgroup_storage = bytes;
        self
    }

    /// Workgroup memory this variant needs where it is over 16 KiB (see
    /// `max_compute_workgroup_storage_size`); 0 for variants within what every device offers.
    pub fn workgroup_storage(&self) -> u32 {
        self.workgroup_storage
    }

    /// The subgroup size this variant needs (its `G` lanes must share a subgroup), if it uses
    /// subgroup operations (native adapters with the `subgroup` feature only).
    pub fn subgroup_size_needed(&self) -> Option<u32> {
        let (_, consts, flags) = &self.recipe;
        flags.contains(&"SUBGROUP").then(|| consts.iter().find(|(n, _)| *n == "G").map_or(1, |(_, v)| *v))
    }

    /// Whether this variant stores f16 (and so needs `shader-f16`).
    pub fn is_f16(&self) -> bool {
        self.recipe.2.contains(&"F16")
    }
}

/// Builds a variant: `common.wgsl`, then the constants, then `parts` (stems) in order, each
/// filtered by the flags. The first part names the variant.
pub(crate) fn specialize(parts: &[&'static str], consts: &[(&'static str, u32)], flags: &[&'static str]) -> ShaderVariant {
    let mut key = parts[0].to_string();
    let mut tags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    tags.extend(consts.iter().map(|(n, v)| format!("{n}={v}")));
    if !tags.is_empty() {
        key.push('[');
        key.push_str(&tags.join(","));
        key.push(']');
    }
    let mut out = String::new();
    out.push_str(&format!("// tessera shader variant {key}\n"));
    if flags.contains(&"F16") {
        out.push_str("enable f16;\n");
    }
    out.push_str(&preprocess(source("common"), flags));
    for (name, value) in consts {
        out.push_str(&format!("const {name}: u32 = {value}u;\n"));
    }
    for p in parts {
        out.push_str(&preprocess(source(p), flags));
    }
    let out = number_bindings(&out);
    ShaderVariant { key, source: out, recipe: (parts.to_vec(), consts.to_vec(), flags.to_vec()), workgroup_storage: 0 }
}

/// Replaces each `@binding(_)` with the next number from 0.
fn number_bindings(src: &str) -> String {
    let mut parts = src.split("@binding(_)");
    let mut out = parts.next().unwrap_or_default().to_string();
    for (i, rest) in parts.enumerate() {
        out.push_str(&format!("@binding({i})"));
        out.push_str(rest);
    }
    out
}

/// Keeps the lines whose enclosing `#ifdef`/`#ifndef` conditions hold.
pub(crate) fn preprocess(src: &str, flags: &[&str]) -> String {
    let mut out = String::with_capacity(src.len());
    // One entry per open conditional: (this branch active, parent active).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let active = |stack: &Vec<(bool, bool)>| stack.last().map(|&(a, p)| a && p).unwrap_or(true);
    for line in src.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("#ifdef ") {
            let parent = active(&stack);
            stack.push((flags.contains(&name.trim()), parent));
        } else if let Some(name) = t.strip_prefix("#ifndef ") {
            let parent = active(&stack);
            stack.push((!flags.contains(&name.trim()), parent));
        } else if t == "#else" {
            if let Some(top) = stack.last_mut() {
                top.0 = !top.0;
            }
        } else if t == "#endif" {
            stack.pop();
        } else if active(&stack) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_conditionals() {
        let src = "a\n#ifdef X\nb\n#ifdef Y\nc\n#else\nd\n#endif\n#else\ne\n#endif\nf\n";
        assert_eq!(preprocess(src, &[]), "a\ne\nf\n");
        assert_eq!(preprocess(src, &["X"]), "a\nb\nd\nf\n");
        assert_eq!(preprocess(src, &["X", "Y"]), "a\nb\nc\nf\n");
        assert_eq!(preprocess(src, &["Y"]), "a\ne\nf\n");
    }

    #[test]
    fn bindings_are_numbered_in_order() {
        let src = "@group(0) @binding(_) var<uniform> P: Params;\n@group(0) @binding(_) var<storage, read_write> out: array<f32>;\n";
        assert_eq!(number_bindings(src), src.replacen("(_)", "(0)", 1).replacen("(_)", "(1)", 1));
    }

    #[test]
    fn every_source_has_balanced_conditionals() {
        for (stem, src) in SOURCES {
            let mut depth = 0i32;
            for line in src.lines() {
                let t = line.trim();
                if t.starts_with("#ifdef ") || t.starts_with("#ifndef ") {
                    depth += 1;
                } else if t == "#endif" {
                    depth -= 1;
                }
                assert!(depth >= 0, "{stem}.wgsl: #endif without #ifdef");
            }
            assert_eq!(depth, 0, "{stem}.wgsl: unclosed #ifdef");
        }
    }
}
