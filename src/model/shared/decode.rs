//! Decoding image files to RGB with the `image` crate, with size limits checked before any pixel
//! buffer is allocated; EXIF orientation is applied as `transformers.image_utils.load_image` does.

use crate::error::{Error, Result};

/// Largest decoded image side accepted.
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// Largest decoded image, in bytes.
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;
/// Decoded bytes any file may claim (a 2048x2048 RGBA image at 16 bits per channel).
const MIN_DECODE_BUDGET: u64 = 32 << 20;
/// Beyond that, decoded bytes per byte of file: far above real photos (JPEG ~10, PNG ~2-5).
const MAX_EXPANSION: u64 = 1024;

/// Decodes an image file's bytes to RGB, applying EXIF orientation. Sizes are checked from the
/// header before decoding; gray, alpha and 16-bit images are converted.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<image::RgbImage> {
    use image::ImageDecoder;
    if bytes.is_empty() {
        return Err(Error::image(name, "the file is empty"));
    }
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::image(name, format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(Error::image(name, "not an image in a supported format (PNG, JPEG, WebP, BMP, GIF, TIFF)"));
    }
    let mut decoder = reader.into_decoder().map_err(|e| Error::image(name, format!("cannot decode: {e}")))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::image(name, format!("the image is {w}x{h} pixels")));
    }
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE || decoder.total_bytes() > MAX_IMAGE_BYTES {
        return Err(Error::image(
            name,
            format!("the image claims {w}x{h} pixels, over the limit of {MAX_IMAGE_SIDE} per side and {} MiB", MAX_IMAGE_BYTES >> 20),
        ));
    }
    // Decoders allocate the whole image before reading the data, so a few bytes claiming a huge
    // image would cost that much memory: the decoded size must be justified by the file's size.
    let allowed = (bytes.len() as u64).saturating_mul(MAX_EXPANSION).max(MIN_DECODE_BUDGET);
    if decoder.total_bytes() > allowed {
        return Err(Error::image(
            name,
            format!(
                "the image claims {w}x{h} pixels ({} MiB decoded) from a file of {} bytes: truncated, or a decompression bomb",
                decoder.total_bytes() >> 20,
                bytes.len()
            ),
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    // Decoders also allocate for what sits inside the file (a GIF frame may claim more than its
    // canvas): the same budget bounds every allocation.
    limits.max_alloc = Some(allowed.min(MAX_IMAGE_BYTES));
    decoder.set_limits(limits).map_err(|e| Error::image(name, format!("over the decoding limits: {e}")))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => Error::image(
            name,
            format!(
                "decoding needs more memory than a file of {} bytes justifies ({} MiB at most): a decompression bomb or a corrupt file",
                bytes.len(),
                allowed.min(MAX_IMAGE_BYTES) >> 20
            ),
        ),
        e => Error::image(name, format!("cannot decode: {e}")),
    })?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}
