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
