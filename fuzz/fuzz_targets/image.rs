//! Image decoding (every supported format) and preprocessing with a fixed config on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

const PRE: &[u8] = include_bytes!("../../tests/fixtures/photos/bit-shortest-100-crop-96.json");

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = tessera::model::decode_image(data, "fuzz") {
        let p = tessera::model::PreprocessorConfig::parse(PRE, "pre").expect("valid config");
        let _ = p.apply(&img);
    }
});
