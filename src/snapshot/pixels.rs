//! The vocabulary of image work: decoded pixel planes and why image work fails. The
//! decoder ([`super::jpeg`]), the buffer pool ([`super::scratch`]) and the pipeline
//! ([`super::image`]) all speak it; it depends on none of them.

/// Why a snapshot could not be turned into a JPEG.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the snapshot is empty (0 bytes); check the camera's snapshot URL")]
    Empty,
    #[error("the snapshot is {size} bytes, over snapshot.max_bytes ({limit}); raise snapshot.max_bytes if this is expected")]
    TooManyBytes { size: usize, limit: usize },
    #[error("the snapshot is {width}x{height} pixels, over snapshot.max_pixels ({limit}); raise snapshot.max_pixels if this is expected")]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error(
        "the snapshot has a zero dimension ({width}x{height}); the camera sent a broken picture"
    )]
    ZeroSize { width: u32, height: u32 },
    #[error("the snapshot is not a JPEG, PNG or WebP image ({0}); the camera or server may have answered with an error page — open the snapshot URL in a browser")]
    NotAnImage(String),
    #[error("the snapshot could not be decoded ({0}); it is truncated or corrupt — open the snapshot URL in a browser, or raise snapshot.timeout if downloads are cut short")]
    Decode(String),
    #[error("the snapshot could not be encoded as JPEG: {0}")]
    Encode(String),
    #[error("even at {width}x{height} and quality {quality} the JPEG is {size} bytes, over snapshot.max_image_bytes ({limit}); raise snapshot.max_image_bytes")]
    OverBudget {
        width: u32,
        height: u32,
        quality: u8,
        size: usize,
        limit: usize,
    },
    #[error("too many snapshots are waiting for image work ({waiting} queued, snapshot.queue is {queue}); this one was dropped — raise snapshot.queue or snapshot.workers")]
    Busy { waiting: usize, queue: usize },
    #[error("the image worker failed: {0}")]
    Worker(String),
}

/// One 8-bit plane, `width` bytes per row. Only its top-left `valid_w`×`valid_h` (fractional
/// for subsampled chroma) is picture; the rest is padding from the decoder.
#[derive(Debug, Clone)]
pub struct Plane {
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub valid_w: f64,
    pub valid_h: f64,
}

impl Plane {
    pub fn tight(data: Vec<u8>, width: u32, height: u32) -> Plane {
        Plane {
            data,
            width,
            height,
            valid_w: f64::from(width),
            valid_h: f64::from(height),
        }
    }
}

/// Decoded pixels.
#[derive(Debug, Clone)]
pub enum Pixels {
    /// Interleaved 8-bit RGB, no padding.
    Rgb {
        data: Vec<u8>,
        width: u32,
        height: u32,
    },
    /// Luma only.
    Gray(Plane),
    /// Y, Cb, Cr planes; chroma may be subsampled (its `valid_*` says how much picture it holds).
    Ycc([Plane; 3]),
}

impl Pixels {
    /// Size of the picture in pixels.
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Pixels::Rgb { width, height, .. } => (*width, *height),
            Pixels::Gray(p) | Pixels::Ycc([p, _, _]) => (p.valid_w as u32, p.valid_h as u32),
        }
    }
}
