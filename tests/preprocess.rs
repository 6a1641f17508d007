//! Preprocessing of real photos against `transformers`' image processors (PIL backend), with the
//! configs in tests/fixtures/photos. Tolerance: 1e-5 absolute on normalized values (float
//! rounding only; PIL's fixed-point resampling is reproduced exactly). No GPU needed.

use safetensors::SafeTensors;
use std::path::Path;
use tessera::model::{decode_image, PreprocessorConfig};

fn photos() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/photos")
}

#[test]
fn photos_match_transformers_image_processors() {
    let bytes = std::fs::read(photos().join("expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    for (key, view) in st.tensors() {
        let (photo, cfg_name) = key.split_once(':').unwrap();
        let cfg_path = photos().join(format!("{cfg_name}.json"));
        let cfg = PreprocessorConfig::parse(&std::fs::read(&cfg_path).unwrap(), &cfg_path.display().to_string()).unwrap();
        let img = decode_image(&std::fs::read(photos().join(photo)).unwrap(), photo).unwrap();
        let (got, h, w) = cfg.apply(&img).unwrap();
        assert_eq!([3, h, w], [view.shape()[0], view.shape()[1], view.shape()[2]], "{key}: shape");
        let want: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        match tessera::reference::compare(&key, &got, &want, 1e-5, 0.0) {
            Ok(max) => eprintln!("{key}: OK, max diff {max:e}"),
            Err(e) => panic!("{e}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 10);
}

/// The same photos through `timm`'s evaluation transform (`resolve_data_config` +
/// `create_transform`: resize by crop percentage, torchvision's center crop, mean and std) for the
/// `pretrained_cfg`s in timm-configs.json (scripts/make_timm_fixtures.py).
#[test]
fn photos_match_timm_eval_transforms() {
    let configs: serde_json::Value = serde_json::from_slice(&std::fs::read(photos().join("timm-configs.json")).unwrap()).unwrap();
    let bytes = std::fs::read(photos().join("timm-expected.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    for (key, view) in st.tensors() {
        let (cfg_name, photo) = key.split_once('/').unwrap();
        let pre = &configs[cfg_name];
        let size = pre["input_size"].as_array().unwrap();
        let (h, w) = (size[1].as_u64().unwrap() as usize, size[2].as_u64().unwrap() as usize);
        let cfg = tessera::model::timm::preprocessing(pre, (h, w), "timm-configs.json").unwrap();
        let img = decode_image(&std::fs::read(photos().join(photo)).unwrap(), photo).unwrap();
        let (got, gh, gw) = cfg.apply(&img).unwrap();
        assert_eq!([3, gh, gw], [view.shape()[0], view.shape()[1], view.shape()[2]], "{key}: shape");
        let want: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        match tessera::reference::compare(&key, &got, &want, 1e-5, 0.0) {
            Ok(max) => eprintln!("{key}: OK, max diff {max:e}"),
            Err(e) => panic!("{e}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 8);
}

#[test]
fn bad_images_are_clear_errors() {
    let err = |bytes: &[u8]| decode_image(bytes, "input.bin").unwrap_err();
    let e = err(b"");
    assert!(e.kind() == "image" && e.to_string().contains("input.bin") && e.to_string().contains("empty"), "{e}");
    let e = err(b"%PDF-1.4 not an image at all");
    assert!(e.to_string().contains("not an image"), "{e}");
    // A PNG header claiming 100000 x 100000 pixels: refused from the header, nothing allocated.
    let mut png = Vec::new();
    png.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(b"IHDR");
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    for chunk in [&b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01"[..], &b"IEND"[..]] {
        png.extend_from_slice(&(chunk.len() as u32 - 4).to_be_bytes());
        png.extend_from_slice(chunk);
        png.extend_from_slice(&crc32(chunk).to_be_bytes());
    }
    let e = err(&png);
    assert!(e.kind() == "image" && e.to_string().contains("100000x100000"), "{e}");
    // Found by fuzzing: 18 bytes of GIF claiming 8140x13259 pixels (431 MB decoded).
    let bomb = b"GIF87a\xcc\x1f\xcb\x339N\xef\xce\x86l\x00\x00";
    let e = err(bomb);
    assert!(e.kind() == "image" && e.to_string().contains("decompression bomb"), "{e}");
    // Found by fuzzing: a 151-byte GIF whose frame claims far more than its 2586x13 canvas made
    // the decoder allocate 347 MB; every decoder allocation is now held to the same budget.
    let frame_bomb = b"\x47\x49\x46\x38\x37\x61\x1a\x0a\x0d\x00\x00\x50\x03\x2c\x44\x40\xe5\x54\x44\x9c\x78\x08\x91\x00\x00\x00\x03\x2c\x44\x40\xe5\x54\x44\x9c\x78\x01\x91\x00\xa9\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x9c\x78\x01\x91\x00\x00\x00\x03\x2c\x44\x40\xe5\x54\x44\x9c\x78\x01\x91\x00\xa9\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x2c\x2c\x2c\x24\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x8d\x50\x4e\x10\xe5\x54\x9c\x44\x78\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x6d\x00\x44\x9c\x27\x78\x76\xb0";
    let e = err(frame_bomb);
    assert_eq!(e.kind(), "image", "{e}");
    // Truncated photo.
    let photo = std::fs::read(photos().join("chelsea.png")).unwrap();
    let e = err(&photo[..photo.len() / 3]);
    assert_eq!(e.kind(), "image", "{e}");
}

#[test]
fn gray_and_alpha_images_become_rgb() {
    let gray = image::GrayImage::from_fn(5, 4, |x, y| image::Luma([(x * 40 + y) as u8]));
    let mut bytes = Vec::new();
    gray.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    let rgb = decode_image(&bytes, "gray.png").unwrap();
    assert_eq!(rgb.dimensions(), (5, 4));
    assert!(rgb.pixels().zip(gray.pixels()).all(|(c, g)| c.0 == [g.0[0]; 3]));

    let rgba = image::RgbaImage::from_fn(3, 3, |x, _| image::Rgba([x as u8 * 50, 7, 9, 0]));
    let mut bytes = Vec::new();
    rgba.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    let rgb = decode_image(&bytes, "alpha.png").unwrap();
    // As PIL's convert("RGB"): alpha dropped, colour kept.
    assert!(rgb.pixels().zip(rgba.pixels()).all(|(c, a)| c.0 == [a.0[0], a.0[1], a.0[2]]));
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn exif_orientation_is_applied() {
    // An 8x4 JPEG whose EXIF says "rotate 90 degrees clockwise" (orientation 6) decodes to 4x8,
    // as transformers' load_image (exif_transpose) gives it.
    let img = image::RgbImage::from_fn(8, 4, |x, _| if x < 4 { image::Rgb([250, 10, 10]) } else { image::Rgb([10, 10, 250]) });
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95).encode_image(&img).unwrap();
    let mut tiff = b"II*\x00\x08\x00\x00\x00\x01\x00".to_vec();
    tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]);
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend(tiff);
    let mut with_exif = jpeg[..2].to_vec();
    with_exif.extend_from_slice(&[0xff, 0xe1]);
    with_exif.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    with_exif.extend(app1);
    with_exif.extend_from_slice(&jpeg[2..]);
    let plain = decode_image(&jpeg, "plain.jpg").unwrap();
    assert_eq!(plain.dimensions(), (8, 4));
    let rotated = decode_image(&with_exif, "rotated.jpg").unwrap();
    assert_eq!(rotated.dimensions(), (4, 8));
    // Rotated clockwise: the left (red) half of the original is now on top.
    assert!(rotated.get_pixel(2, 1).0[0] > 200 && rotated.get_pixel(2, 6).0[2] > 200);
}

#[test]
fn sixteen_bit_and_animated_images_are_converted() {
    // 16-bit RGB PNG: converted to 8 bits per channel.
    let img16 = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(4, 2, |x, _| image::Rgb([0xffff, (x as u16) * 0x4000, 0]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb16(img16).write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    let rgb = decode_image(&bytes, "deep.png").unwrap();
    assert_eq!(rgb.dimensions(), (4, 2));
    assert_eq!(rgb.get_pixel(0, 0).0, [255, 0, 0]);
    assert!((rgb.get_pixel(2, 1).0[1] as i32 - 128).abs() <= 1);

    // A two-frame GIF: the first frame is used, as PIL's Image.open does.
    use image::codecs::gif::GifEncoder;
    let mut gif = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut gif);
        for c in [[200u8, 0, 0, 255], [0, 0, 200, 255]] {
            let frame = image::Frame::new(image::RgbaImage::from_pixel(3, 3, image::Rgba(c)));
            enc.encode_frame(frame).unwrap();
        }
    }
    let first = decode_image(&gif, "anim.gif").unwrap();
    assert_eq!(first.dimensions(), (3, 3));
    let p = first.get_pixel(1, 1).0;
    assert!(p[0] > 150 && p[2] < 50, "{p:?}");
}

#[test]
fn cmyk_jpeg_decodes_as_pil_does() {
    // A CMYK JPEG with an Adobe marker; the expected RGB is what PIL (transformers' `load_image`)
    // makes of the same file. JPEG decoders may differ by one level in the inverse DCT.
    let bytes = std::fs::read(photos().join("coffee-cmyk-rgb.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let want = st.tensor("rgb").unwrap();
    let jpeg = std::fs::read(photos().join("coffee-cmyk.jpg")).unwrap();
    assert!(jpeg.windows(5).any(|w| w == b"Adobe"), "the fixture lost its Adobe (CMYK) marker");
    let img = decode_image(&jpeg, "coffee-cmyk.jpg").unwrap();
    assert_eq!([img.height() as usize, img.width() as usize, 3], want.shape());
    let (mut max, mut sum) = (0i32, 0u64);
    for (a, b) in img.as_raw().iter().zip(want.data()) {
        let d = (*a as i32 - *b as i32).abs();
        max = max.max(d);
        sum += d as u64;
    }
    let mean = sum as f64 / want.data().len() as f64;
    eprintln!("CMYK JPEG vs PIL: max diff {max} levels, mean {mean:.4}");
    assert!(max <= 2 && mean < 0.05, "CMYK JPEG decoded differently from PIL: max {max} levels, mean {mean}");
}
