//! Image work: validate, decode, resize and re-encode a snapshot as a baseline JPEG.
//!
//! Everything here is synchronous and CPU-bound; callers run it off the async runtime
//! (see [`super::pool`]). Nothing here panics on hostile input: every failure is an
//! [`ImageError`].

use std::io::Cursor;

use fast_image_resize as fr;
use image::{ImageDecoder, ImageReader};

/// How big the mailed picture may be.
#[derive(Debug, Clone, PartialEq)]
pub struct ResizeSpec {
    /// Fit inside this width (never upscale).
    pub max_width: u32,
    /// Fit inside this height (never upscale).
    pub max_height: u32,
    /// JPEG quality of the output, 1..=100.
    pub jpeg_quality: u8,
    /// If the encoded JPEG is larger than this, step quality then size down until it fits.
    pub max_image_bytes: Option<usize>,
}

/// What an input may be before we decode it.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Refuse images with more pixels than this (decompression bombs).
    pub max_pixels: u64,
    /// Refuse encoded inputs larger than this.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 50_000_000,
            max_bytes: 20 * 1024 * 1024,
        }
    }
}

/// A ready-to-mail JPEG.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub source_width: u32,
    pub source_height: u32,
    /// Input format, e.g. `"jpeg"`, `"png"`, `"webp"`.
    pub source_format: &'static str,
}

/// Why a snapshot could not be turned into a JPEG.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the snapshot is empty (0 bytes)")]
    Empty,
    #[error("the snapshot is {size} bytes, over snapshot.max_bytes ({limit}); raise snapshot.max_bytes if this is expected")]
    TooManyBytes { size: usize, limit: usize },
    #[error("the snapshot is {width}x{height} pixels, over snapshot.max_pixels ({limit}); raise snapshot.max_pixels if this is expected")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("the snapshot has a zero dimension ({width}x{height})")]
    ZeroSize { width: u32, height: u32 },
    #[error("the snapshot is not an image ({0}); the camera or server may have answered with an error page")]
    NotAnImage(String),
    #[error("the snapshot could not be decoded: {0}")]
    Decode(String),
    #[error("the snapshot could not be encoded as JPEG: {0}")]
    Encode(String),
}

/// Decode `input`, fit it inside `spec`, and encode a baseline JPEG without metadata.
pub fn thumbnail(
    input: &[u8],
    spec: &ResizeSpec,
    limits: &Limits,
) -> Result<Thumbnail, ImageError> {
    if input.is_empty() {
        return Err(ImageError::Empty);
    }
    if input.len() > limits.max_bytes {
        return Err(ImageError::TooManyBytes {
            size: input.len(),
            limit: limits.max_bytes,
        });
    }
    let format = image::guess_format(input).map_err(|_| ImageError::NotAnImage(sniff(input)))?;
    let mut reader = ImageReader::with_format(Cursor::new(input), format);
    reader.no_limits();
    let decoder = reader
        .into_decoder()
        .map_err(|e| ImageError::Decode(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(ImageError::ZeroSize {
            width: w,
            height: h,
        });
    }
    if u64::from(w) * u64::from(h) > limits.max_pixels {
        return Err(ImageError::TooManyPixels {
            width: w,
            height: h,
            limit: limits.max_pixels,
        });
    }
    let img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| ImageError::Decode(e.to_string()))?
        .into_rgb8();
    let (tw, th) = fit(w, h, spec.max_width, spec.max_height);
    let rgb = if (tw, th) == (w, h) {
        img
    } else {
        let src = fr::images::Image::from_vec_u8(w, h, img.into_raw(), fr::PixelType::U8x3)
            .map_err(|e| ImageError::Decode(e.to_string()))?;
        let mut dst = fr::images::Image::new(tw, th, fr::PixelType::U8x3);
        let mut resizer = fr::Resizer::new();
        let opts = fr::ResizeOptions::new()
            .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3));
        resizer
            .resize(&src, &mut dst, &opts)
            .map_err(|e| ImageError::Decode(e.to_string()))?;
        image::RgbImage::from_raw(tw, th, dst.into_vec()).expect("buffer size matches dimensions")
    };
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(
        &mut out,
        spec.jpeg_quality.clamp(1, 100),
    );
    rgb.write_with_encoder(enc)
        .map_err(|e| ImageError::Encode(e.to_string()))?;
    Ok(Thumbnail {
        jpeg: out,
        width: tw,
        height: th,
        source_width: w,
        source_height: h,
        source_format: format_name(format),
    })
}

/// The largest size with the source's aspect ratio that fits in `max_w`×`max_h`, never larger
/// than the source.
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if w <= max_w && h <= max_h {
        return (w, h);
    }
    let scale = f64::min(
        f64::from(max_w) / f64::from(w),
        f64::from(max_h) / f64::from(h),
    );
    let tw = ((f64::from(w) * scale).round() as u32).clamp(1, max_w.max(1));
    let th = ((f64::from(h) * scale).round() as u32).clamp(1, max_h.max(1));
    (tw, th)
}

fn format_name(f: image::ImageFormat) -> &'static str {
    match f {
        image::ImageFormat::Jpeg => "jpeg",
        image::ImageFormat::Png => "png",
        image::ImageFormat::WebP => "webp",
        _ => "other",
    }
}

/// A short, printable description of what a non-image body starts with.
fn sniff(input: &[u8]) -> String {
    let head: String = String::from_utf8_lossy(&input[..input.len().min(60)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("starts with {:?}", head.trim())
}
