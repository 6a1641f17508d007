//! The safetensors header and tensor table: any bytes as model.safetensors next to a valid config.
//! Parsing and reading every tensor must return values or errors, never panic or allocate what
//! the header merely claims.
#![no_main]
use libfuzzer_sys::fuzz_target;

const CONFIG: &[u8] = include_bytes!("../../tests/fixtures/vit-classifier/config.json");

fuzz_target!(|data: &[u8]| {
    if let Ok(ck) = tessera::Checkpoint::from_bytes("fuzz", CONFIG, data.to_vec(), None) {
        for name in ck.tensor_names() {
            if let Some(shape) = ck.tensor_shape(&name) {
                let _ = ck.tensor(&name, &shape);
            }
        }
    }
});
