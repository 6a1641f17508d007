//! config.json and preprocessor_config.json parsing and validation on any bytes, and a validated
//! preprocessor applied to a small image (sizes come from the config, so they are bounded by it).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tessera::model::ModelConfig::parse(data, "config.json");
    if let Ok(p) = tessera::model::PreprocessorConfig::parse(data, "preprocessor_config.json") {
        let (h, w) = p.output_size(7, 5);
        if h * w <= 1 << 20 {
            let img = image::RgbImage::from_pixel(5, 7, image::Rgb([10, 200, 30]));
            let _ = p.apply(&img);
        }
    }
});
