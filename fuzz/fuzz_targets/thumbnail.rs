//! The image entry point on arbitrary bytes: JPEG, PNG and WebP decoding, the pixel and
//! byte limits, resizing and re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snapmail::snapshot::image::{thumbnail, Limits, ResizeSpec};

fuzz_target!(|data: &[u8]| {
    let spec = ResizeSpec {
        max_width: 64,
        max_height: 64,
        jpeg_quality: 80,
        max_image_bytes: Some(4096),
    };
    // Small limits keep each run fast; the limit checks are part of what is fuzzed.
    let limits = Limits {
        max_pixels: 4_000_000,
        max_bytes: 1 << 20,
    };
    let _ = thumbnail(data, &spec, &limits);
});
