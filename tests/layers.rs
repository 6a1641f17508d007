//! The library's layers, each using only the ones below it (ARCHITECTURE.md):
//! `error`, `tensor`, `memory`, `quant` <- `cpu`, `gpu` <- `ops` <- `reference` <- `graph` <- `model` <- `wasm` (and the CLI outside the
//! library). Every `crate::` path in a layer's files, including names re-exported at the crate
//! root (resolved through `src/lib.rs`), must point at the same layer or one below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layers from the bottom; a module may use its own layer and those before it.
const ORDER: &[&str] = &["error", "tensor", "memory", "quant", "cpu", "gpu", "ops", "reference", "graph", "model", "wasm"];

fn rank(layer: &str) -> Option<usize> {
    ORDER.iter().position(|l| *l == layer)
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The layer of a source file: its top-level module under src/.
fn layer_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Names re-exported at the crate root (`pub use graph::weights::Weights;`), by the module they
/// come from.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in lib.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("pub use ") else { continue };
        let rest = rest.trim_end_matches(';');
        let module = rest.split("::").next().unwrap_or("").to_string();
        let names: Vec<&str> = match rest.find('{') {
            Some(i) => rest[i + 1..].trim_end_matches('}').split(',').collect(),
            None => vec![rest.rsplit("::").next().unwrap_or("")],
        };
        for n in names {
            let n = n.trim();
            if !n.is_empty() && n != "self" {
                map.insert(n.to_string(), module.clone());
            }
        }
    }
    map
}

/// Every name that follows `crate::` in `text`, alone or in a `crate::{a, b::c}` group.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            out.extend(group[..end].split(',').map(|p| p.trim().split("::").next().unwrap_or("").to_string()));
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.push(name);
        }
    }
    out.into_iter().filter(|n| !n.is_empty()).collect()
}

#[test]
fn no_layer_uses_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let exports = root_exports(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut bad = Vec::new();
    let mut checked = 0;
    for f in &all {
        let Some(layer) = layer_of(&src, f) else { continue };
        let Some(own) = rank(&layer) else { continue };
        // Code only: doc links may name anything, and unit tests may use the test reference.
        let full = std::fs::read_to_string(f).unwrap();
        let code = full.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let text: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        for name in crate_paths(&text) {
            let target = if rank(&name).is_some() { name.clone() } else { exports.get(&name).cloned().unwrap_or_default() };
            checked += 1;
            if let Some(r) = rank(&target) {
                if r > own {
                    bad.push(format!("{}: `crate::{name}` is in `{target}`, above `{layer}`", f.strip_prefix(&src).unwrap().display()));
                }
            }
        }
    }
    assert!(checked > 50, "found only {checked} crate paths: is the scan working?");
    assert!(bad.is_empty(), "layer violations:\n{}", bad.join("\n"));
}

#[test]
fn the_scan_sees_grouped_and_reexported_paths() {
    let names = crate_paths("use crate::{lock, Gpu, graph::ir::Graph};\nlet x = crate::ops::Op::Add;");
    assert_eq!(names, ["lock", "Gpu", "graph", "ops"]);
    let exports = root_exports("pub use graph::weights::Weights;\npub use gpu::{AdapterReport, Gpu};");
    assert_eq!(exports["Weights"], "graph");
    assert_eq!(exports["Gpu"], "gpu");
}
