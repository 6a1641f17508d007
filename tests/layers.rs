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

/// A file's module path under `src/` (`model/shared/reader.rs` is `model::shared::reader`,
/// `model/families/mod.rs` is `model::families`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_str().unwrap().to_string()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The code of a file without its unit tests and comments.
fn code_of(file: &Path) -> String {
    let full = std::fs::read_to_string(file).unwrap();
    let code = full.split("#[cfg(test)]\nmod tests").next().unwrap_or("").to_string();
    code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Every module path `text` names from `module`: `crate::a::b` and (outside inline modules'
/// own `use super::` lines) `super::a`, each as far as the path goes (`crate::{a::b, c}` gives both).
fn referenced(module: &[String], text: &str, crate_root: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let ident = |s: &str| -> Vec<String> {
        let mut v = Vec::new();
        for seg in s.split("::") {
            let seg: String = seg.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if seg.is_empty() {
                break;
            }
            v.push(seg);
            if !s.contains("::") {
                break;
            }
        }
        v
    };
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) && line.trim_start().starts_with("use super::") {
            continue;
        }
        for (key, base) in [("crate::", crate_root.to_vec()), ("super::", module[..module.len().saturating_sub(1)].to_vec())] {
            let mut rest = line;
            while let Some(i) = rest.find(key) {
                // `crate::` inside `super::` paths and identifiers ending in `super` are not ours.
                let before = &rest[..i];
                rest = &rest[i + key.len()..];
                if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let paths: Vec<String> = match rest.strip_prefix('{') {
                    Some(group) => group[..group.find('}').unwrap_or(group.len())].split(',').map(|p| p.trim().to_string()).collect(),
                    None => vec![rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).next().unwrap_or("").to_string()],
                };
                for p in paths {
                    let segs = ident(&p);
                    if !segs.is_empty() {
                        let mut full = base.clone();
                        full.extend(segs);
                        out.push(full);
                    }
                }
            }
        }
    }
    out
}

/// The longest prefix of `path` that is one of `modules`.
fn resolve<'a>(path: &[String], modules: &'a [Vec<String>]) -> Option<&'a Vec<String>> {
    (1..=path.len()).rev().find_map(|n| modules.iter().find(|m| m[..] == path[..n]))
}

/// A cycle in `edges` (module -> modules it uses), as the modules along it.
fn find_cycle(edges: &BTreeMap<Vec<String>, Vec<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(n: &Vec<String>, edges: &BTreeMap<Vec<String>, Vec<Vec<String>>>, state: &mut BTreeMap<Vec<String>, u8>, stack: &mut Vec<Vec<String>>) -> Option<Vec<String>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle: Vec<String> = stack[at..].iter().map(|s| s.join("::")).collect();
                    cycle.push(m.join("::"));
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The module-to-module uses of the files under `dir` (`root`: the crate root's module path),
/// re-exporting `mod.rs` files left out (they only declare and re-export).
fn module_edges(src: &Path, dir: &Path, root: &[String]) -> (Vec<Vec<String>>, BTreeMap<Vec<String>, Vec<Vec<String>>>) {
    let mut all = Vec::new();
    files(dir, &mut all);
    let modules: Vec<Vec<String>> = all.iter().map(|f| module_of(src, f)).collect();
    let mut edges = BTreeMap::new();
    for (f, m) in all.iter().zip(&modules) {
        if f.file_name().is_some_and(|n| n == "mod.rs") && !f.parent().is_some_and(|p| p.ends_with("families")) {
            continue;
        }
        let mut uses: Vec<Vec<String>> = referenced(m, &code_of(f), root).iter().filter_map(|p| resolve(p, &modules)).filter(|t| *t != m).cloned().collect();
        uses.sort();
        uses.dedup();
        edges.insert(m.clone(), uses);
    }
    (modules, edges)
}

#[test]
fn model_families_sit_between_the_shared_parts_and_the_rest() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (_, edges) = module_edges(&src, &src.join("model"), &[]);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // shared < a family < the table < the rest of model/.
    let rank = |m: &[String]| -> (u8, Option<String>) {
        match m {
            [a, b, ..] if a == "model" && b == "shared" => (0, None),
            [a, b, f] if a == "model" && b == "families" => (1, Some(f.clone())),
            [a, b] if a == "model" && b == "families" => (2, None),
            _ => (3, None),
        }
    };
    let mut bad = Vec::new();
    let mut families = 0;
    for (m, uses) in &edges {
        let (r, fam) = rank(m);
        families += (r == 1) as usize;
        for u in uses.iter().filter(|u| u.first().is_some_and(|x| x == "model")) {
            let (ru, famu) = rank(u);
            let ok = match r {
                0 => ru == 0,
                1 => ru == 0 || famu == fam,
                _ => ru <= r,
            };
            if !ok {
                bad.push(format!("{} uses {}", m.join("::"), u.join("::")));
            }
        }
    }
    assert!(families >= 4, "found {families} family modules: is the scan working?");
    assert!(edges[&s(&["model", "families", "vit"])].contains(&s(&["model", "shared", "reader"])), "the scan misses a family's use of the shared reader");
    assert!(bad.is_empty(), "model/ layering broken (shared < a family < the table < the rest):\n{}", bad.join("\n"));
    if let Some(c) = find_cycle(&edges) {
        panic!("import cycle in model/: {}", c.join(" -> "));
    }
}

#[test]
fn the_cli_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (modules, edges) = module_edges(&src, &src.join("bin/tessera"), &["bin".to_string(), "tessera".to_string()]);
    assert!(modules.len() > 8 && edges.values().map(Vec::len).sum::<usize>() > 8, "the scan of the CLI found too little");
    if let Some(c) = find_cycle(&edges) {
        panic!("import cycle in the CLI: {}", c.join(" -> "));
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let m = |x: &str| vec![x.to_string()];
    let mut edges = BTreeMap::new();
    edges.insert(m("a"), vec![m("b")]);
    edges.insert(m("b"), vec![m("c")]);
    edges.insert(m("c"), vec![m("a")]);
    assert_eq!(find_cycle(&edges).unwrap(), ["a", "b", "c", "a"]);
    edges.insert(m("c"), vec![]);
    assert!(find_cycle(&edges).is_none());
    let refs = referenced(&m("x"), "use crate::{a::b, c};\nlet y = super::d::e();", &[]);
    assert_eq!(refs, [vec!["a".to_string(), "b".to_string()], m("c"), vec!["d".to_string(), "e".to_string()]]);
}
