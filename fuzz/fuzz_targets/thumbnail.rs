//! The image entry point on arbitrary bytes: JPEG, PNG and WebP decoding, the pixel and
//! byte limits, resizing and re-encoding.
//!
//! Every input goes through a fresh set of pixel buffers and through one set kept from input
//! to input, as the daemon's image workers keep theirs. Both must give the same answer: a
//! reused buffer is never zero-filled, so a difference means pixels of an earlier picture
//! (another camera's) could leak into this one.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use snapmail::snapshot::image::{thumbnail, thumbnail_with, Limits, ResizeSpec};
use snapmail::snapshot::scratch::Scratch;

thread_local! {
    static KEPT: RefCell<Scratch> = RefCell::new(Scratch::default());
}

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
    let fresh = thumbnail(data, &spec, &limits);
    let kept = KEPT.with(|s| thumbnail_with(data, &spec, &limits, &mut s.borrow_mut()));
    match (fresh, kept) {
        (Ok(a), Ok(b)) => {
            assert_eq!((a.width, a.height), (b.width, b.height));
            assert!(a.jpeg == b.jpeg, "reused buffers changed the picture");
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!(
            "fresh and reused buffers disagree: {:?} / {:?}",
            a.map(|t| t.jpeg.len()),
            b.map(|t| t.jpeg.len())
        ),
    }
});
