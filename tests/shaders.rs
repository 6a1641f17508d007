//! Every shader variant the engine can produce parses and validates with naga under the
//! capabilities a browser grants (no subgroups; f16 only for the f16-storage variants, which need
//! `shader-f16`; subgroups only for the native-only subgroup variants), and fits WebGPU's default
//! limits.
//! No GPU needed: a WGSL mistake fails here, not in a user's browser.

use naga::valid::{Capabilities, ValidationFlags, Validator};

/// WebGPU's guaranteed minimums, which every kernel must fit.
const MAX_WORKGROUP_STORAGE: u32 = 16384;
const MAX_INVOCATIONS: u32 = 256;

#[test]
fn every_variant_validates_with_browser_capabilities() {
    let variants = tessera::ops::all_shader_variants();
    assert!(variants.len() > 100, "expected every attention head dim and matmul epilogue, got {}", variants.len());
    let mut failures = Vec::new();
    for v in &variants {
        let module = match naga::front::wgsl::parse_str(&v.source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: parse error: {}", v.key, e.emit_to_string(&v.source)));
                continue;
            }
        };
        // f16 variants need exactly what a browser grants with the `shader-f16` feature; the
        // subgroup variants run natively only (never compiled for the browser).
        let mut caps = if v.is_f16() { Capabilities::SHADER_FLOAT16 } else { Capabilities::empty() };
        if v.subgroup_size_needed().is_some() {
            caps |= Capabilities::SUBGROUP;
        }
        let mut validator = Validator::new(ValidationFlags::all(), caps);
        if v.subgroup_size_needed().is_some() {
            validator.subgroup_stages(naga::valid::ShaderStages::COMPUTE);
            validator.subgroup_operations(naga::valid::SubgroupOperationSet::all());
        }
        if let Err(e) = validator.validate(&module) {
            failures.push(format!("{}: invalid: {}", v.key, e.emit_to_string(&v.source)));
            continue;
        }
        let entry = module.entry_points.iter().find(|e| e.name == "main");
        let Some(entry) = entry else {
            failures.push(format!("{}: no entry point `main`", v.key));
            continue;
        };
        let invocations: u32 = entry.workgroup_size.iter().product();
        if invocations > MAX_INVOCATIONS {
            failures.push(format!("{}: {invocations} invocations per workgroup", v.key));
        }
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).expect("layout");
        let storage: u32 = module
            .global_variables
            .iter()
            .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
            .map(|(_, g)| layouter[g.ty].size)
            .sum();
        // Over WebGPU's minimum only where the variant says so (then it runs only on devices whose
        // limit allows it), and then exactly as much as it says.
        let declared = v.workgroup_storage();
        if (storage > MAX_WORKGROUP_STORAGE || declared > 0) && storage != declared {
            failures.push(format!("{}: {storage} bytes of workgroup storage, declared {declared}", v.key));
        }
    }
    assert!(failures.is_empty(), "{} of {} variants failed:\n{}", failures.len(), variants.len(), failures.join("\n"));
}

#[test]
fn variant_keys_are_unique() {
    let variants = tessera::ops::all_shader_variants();
    let mut keys: Vec<&str> = variants.iter().map(|v| v.key.as_str()).collect();
    keys.sort_unstable();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "two variants share a key (and so a cached pipeline)");
}

/// The contract between each kernel's Rust declaration and its WGSL, read back from the shader
/// with naga: binding 0 is the uniform `P` whose struct has exactly the declared fields (names,
/// scalar types, 4-byte offsets in order); every storage binding has the declared number, name and
/// access (`read` vs `read_write`), and there are no others.
#[test]
fn every_declaration_matches_its_shader() {
    use naga::{AddressSpace, StorageAccess, TypeInner};
    let decls = tessera::ops::all_kernel_decls();
    let mut failures = Vec::new();
    for d in &decls {
        let key = &d.shader.key;
        let module = naga::front::wgsl::parse_str(&d.shader.source).expect("parses (checked above)");
        let mut globals: Vec<(u32, String, Option<AddressSpace>, naga::Handle<naga::Type>)> = module
            .global_variables
            .iter()
            .filter_map(|(_, g)| g.binding.as_ref().map(|b| (b.binding, g.name.clone().unwrap_or_default(), Some(g.space), g.ty)))
            .collect();
        globals.sort_by_key(|g| g.0);
        // Binding 0: the uniforms.
        match globals.first() {
            Some((0, name, Some(AddressSpace::Uniform), ty)) if name == "P" => {
                let TypeInner::Struct { members, .. } = &module.types[*ty].inner else {
                    failures.push(format!("{key}: P is not a struct"));
                    continue;
                };
                let got: Vec<(String, String, u32)> = members
                    .iter()
                    .map(|m| {
                        let t = match module.types[m.ty].inner {
                            TypeInner::Scalar(s) if s.kind == naga::ScalarKind::Uint && s.width == 4 => "u32",
                            TypeInner::Scalar(s) if s.kind == naga::ScalarKind::Float && s.width == 4 => "f32",
                            _ => "other",
                        };
                        (m.name.clone().unwrap_or_default(), t.to_string(), m.offset)
                    })
                    .collect();
                let want: Vec<(String, String, u32)> =
                    d.uniforms.iter().enumerate().map(|(i, (n, t))| (n.to_string(), t.to_string(), 4 * i as u32)).collect();
                if got != want {
                    failures.push(format!("{key}: WGSL Params {got:?}, Rust declares {want:?}"));
                }
            }
            other => failures.push(format!("{key}: binding 0 is {other:?}, not the uniform `P`")),
        }
        let storage: Vec<_> = globals.iter().skip(1).collect();
        if storage.len() != d.bindings.len() {
            failures.push(format!("{key}: {} storage bindings in WGSL, {} declared", storage.len(), d.bindings.len()));
            continue;
        }
        for (i, (g, b)) in storage.iter().zip(&d.bindings).enumerate() {
            let access = match g.2 {
                Some(AddressSpace::Storage { access }) if access == StorageAccess::LOAD => tessera::ops::Access::Read,
                Some(AddressSpace::Storage { access }) if access == StorageAccess::LOAD | StorageAccess::STORE => tessera::ops::Access::ReadWrite,
                _ => {
                    failures.push(format!("{key}: binding {} `{}` is not a storage buffer", g.0, g.1));
                    continue;
                }
            };
            if g.0 != i as u32 + 1 || g.1 != b.name || access != b.access {
                failures.push(format!("{key}: binding {} is `{}` {access:?}, declared #{} `{}` {:?}", g.0, g.1, i + 1, b.name, b.access));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} declarations differ from their WGSL:\n{}", failures.len(), decls.len(), failures.join("\n"));
}
