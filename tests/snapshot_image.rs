//! The snapshot image pipeline on generated pictures: DCT scale choice, geometry, EXIF,
//! formats, hostile inputs, byte budget, the bounded pool, and the `thumbnail` command.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::process::Command;

use snapmail::snapshot::image::{
    fit, jpeg_decode_scale, thumbnail, thumbnail_with, ImageError, Limits, Orientation, ResizeSpec,
};
use snapmail::snapshot::jpeg;
use snapmail::snapshot::pool::ImagePool;
use snapmail::snapshot::scratch::Scratch;

// ---- allocation accounting, per thread, so parallel tests do not disturb each other ----

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let _ = LIVE.try_with(|l| {
                l.set(l.get() + layout.size());
                let _ = PEAK.try_with(|p| p.set(p.get().max(l.get())));
            });
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(layout.size())));
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Largest number of bytes this thread had allocated at once while running `f`, above what
/// it held before.
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get) - base)
}

// ---- inputs ----

fn spec(max_width: u32, max_height: u32) -> ResizeSpec {
    ResizeSpec {
        max_width,
        max_height,
        jpeg_quality: 80,
        max_image_bytes: Some(400_000),
    }
}

/// Gradients, hard-edged blocks, and `noise` of sensor noise, as RGB.
fn camera_rgb(w: u32, h: u32, noise: i32) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(u64::from(w ^ h));
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let edge = if (x / 64 + y / 48).is_multiple_of(3) {
                60
            } else {
                0
            };
            let base = [
                (x * 200 / w) as i32 + 30 - edge,
                (y * 180 / h) as i32 + 40,
                200 - (x * 100 / w) as i32 - edge / 2,
            ];
            let n = if noise > 0 {
                rng.i32(-noise..=noise)
            } else {
                0
            };
            rgb.extend(base.map(|c| (c + n).clamp(0, 255) as u8));
        }
    }
    rgb
}

fn encode_jpeg(rgb: &[u8], w: u32, h: u32, progressive: bool) -> Vec<u8> {
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(85).unwrap();
    c.set_subsamp(turbojpeg::Subsamp::Sub2x2).unwrap();
    c.set_progressive(progressive).unwrap();
    c.compress_to_vec(turbojpeg::Image {
        pixels: rgb,
        width: w as usize,
        pitch: w as usize * 3,
        height: h as usize,
        format: turbojpeg::PixelFormat::RGB,
    })
    .unwrap()
}

fn camera_jpeg(w: u32, h: u32) -> Vec<u8> {
    encode_jpeg(&camera_rgb(w, h, 4), w, h, false)
}

/// Insert an APP1 Exif segment carrying `orientation` right after SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn decode(jpeg: &[u8]) -> turbojpeg::Image<Vec<u8>> {
    turbojpeg::decompress(jpeg, turbojpeg::PixelFormat::RGB).unwrap()
}

fn pixel(img: &turbojpeg::Image<Vec<u8>>, x: usize, y: usize) -> [u8; 3] {
    let i = y * img.pitch + x * 3;
    [img.pixels[i], img.pixels[i + 1], img.pixels[i + 2]]
}

fn is_baseline_jfif(jpeg: &[u8]) -> bool {
    // SOI, then JFIF APP0, and a baseline SOF0 frame; no APP1 (EXIF) anywhere in the headers.
    let header = &jpeg[..jpeg.len().min(2000)];
    jpeg.starts_with(&[0xFF, 0xD8, 0xFF, 0xE0])
        && header.windows(2).any(|w| w == [0xFF, 0xC0])
        && !header
            .windows(2)
            .any(|w| w == [0xFF, 0xC2] || w == [0xFF, 0xE1])
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

// ---- tests ----

#[test]
fn each_dct_scale_is_chosen_exactly_when_it_still_covers_the_target() {
    let o = Orientation::NORMAL;
    // 3840x2160: ⅛ = 480x270, ¼ = 960x540, ½ = 1920x1080.
    for (box_side, want) in [
        (320, 8),
        (480, 8),
        (481, 4),
        (640, 4),
        (960, 4),
        (961, 2),
        (1280, 2),
        (1920, 2),
        (1921, 1),
        (3840, 1),
        (10_000, 1),
    ] {
        assert_eq!(
            jpeg_decode_scale(3840, 2160, o, &spec(box_side, box_side)),
            want,
            "box {box_side}"
        );
    }
    // The height can be the side that decides.
    assert_eq!(jpeg_decode_scale(3840, 2160, o, &spec(10_000, 271)), 4);
    assert_eq!(jpeg_decode_scale(3840, 2160, o, &spec(10_000, 270)), 8);
    // A portrait EXIF orientation fits the rotated picture, then maps back.
    assert_eq!(
        jpeg_decode_scale(3840, 2160, Orientation::from_exif(6), &spec(270, 480)),
        8
    );
    assert_eq!(
        jpeg_decode_scale(3840, 2160, Orientation::from_exif(6), &spec(271, 10_000)),
        4
    );
    // libjpeg-turbo rounds scaled sizes up.
    assert_eq!(jpeg::choose_scale(3841, 2161, 481, 271), 8);
}

#[test]
fn decoded_scale_matches_header_arithmetic() {
    let input = camera_jpeg(1001, 601);
    for denom in jpeg::DCT_SCALES {
        let pixels = jpeg::decode(&input, denom).unwrap();
        assert_eq!(
            pixels.dimensions(),
            (jpeg::scaled(1001, denom), jpeg::scaled(601, denom)),
            "1/{denom}"
        );
    }
}

#[test]
fn keeps_aspect_ratio_and_never_upscales() {
    let t = thumbnail(
        &camera_jpeg(4000, 3000),
        &spec(640, 640),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((t.width, t.height), (640, 480));
    assert_eq!((t.source_width, t.source_height), (4000, 3000));
    assert_eq!(t.source_format, "jpeg");
    let img = decode(&t.jpeg);
    assert_eq!((img.width, img.height), (640, 480));
    assert!(is_baseline_jfif(&t.jpeg));

    let small = thumbnail(
        &camera_jpeg(320, 240),
        &spec(1280, 1280),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((small.width, small.height), (320, 240));

    let tall = thumbnail(
        &camera_jpeg(1080, 1920),
        &spec(640, 640),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((tall.width, tall.height), (360, 640));

    // Odd sizes everywhere (padding of planes and chroma).
    let odd = thumbnail(&camera_jpeg(1283, 721), &spec(641, 641), &Limits::default()).unwrap();
    assert_eq!((odd.width, odd.height), fit(1283, 721, 641, 641));
    let img = decode(&odd.jpeg);
    assert_eq!(
        (img.width as u32, img.height as u32),
        (odd.width, odd.height)
    );
}

/// An image worker reuses its buffers from picture to picture: whatever an earlier, larger
/// or differently shaped picture left in them must not change the next one by a single byte.
#[test]
fn reused_buffers_give_the_same_pictures_as_fresh_ones() {
    let mut png = Vec::new();
    image::RgbImage::from_fn(333, 222, |x, y| image::Rgb([x as u8, y as u8, 77]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let inputs = [
        (camera_jpeg(1920, 1080), spec(1280, 1280)),
        (camera_jpeg(1283, 721), spec(641, 641)),
        (
            with_exif_orientation(&camera_jpeg(801, 599), 6),
            spec(300, 300),
        ),
        (png, spec(200, 200)),
        (camera_jpeg(1920, 1080), spec(640, 640)),
        (camera_jpeg(641, 479), spec(5000, 5000)),
    ];
    let mut scratch = Scratch::default();
    for round in 0..2 {
        for (i, (input, spec)) in inputs.iter().enumerate() {
            let fresh = thumbnail(input, spec, &Limits::default()).unwrap();
            let reused = thumbnail_with(input, spec, &Limits::default(), &mut scratch).unwrap();
            assert_eq!(
                (reused.width, reused.height),
                (fresh.width, fresh.height),
                "input {i}, round {round}"
            );
            assert!(
                reused.jpeg == fresh.jpeg,
                "input {i}, round {round}: bytes differ"
            );
        }
    }
    assert!(scratch.retained() > 0, "the buffers were kept for reuse");
}

/// Mean absolute difference per channel between two RGB buffers.
fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x.abs_diff(y)))
        .sum::<f64>()
        / a.len() as f64
}

fn reference_resize(rgb: &[u8], w: u32, h: u32, tw: u32, th: u32) -> Vec<u8> {
    use fast_image_resize as fr;
    let src = fr::images::ImageRef::new(w, h, rgb, fr::PixelType::U8x3).unwrap();
    let mut dst = fr::images::Image::new(tw, th, fr::PixelType::U8x3);
    fr::Resizer::new()
        .resize(&src, &mut dst, &fr::ResizeOptions::new())
        .unwrap();
    dst.into_vec()
}

#[test]
fn every_chroma_layout_and_colour_model_matches_a_plain_resize() {
    let (w, h) = (1001u32, 601u32);
    let rgb = camera_rgb(w, h, 0);
    let (tw, th) = fit(w, h, 300, 300);
    let reference = reference_resize(&rgb, w, h, tw, th);
    let gray: Vec<u8> = rgb
        .chunks_exact(3)
        .map(|p| {
            ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000) as u8
        })
        .collect();
    use turbojpeg::{Colorspace, PixelFormat, Subsamp};
    for (name, sub) in [
        ("4:4:4", Subsamp::None),
        ("4:2:2", Subsamp::Sub2x1),
        ("4:4:0", Subsamp::Sub1x2),
        ("4:1:1", Subsamp::Sub4x1),
        ("4:2:0", Subsamp::Sub2x2),
        ("grey", Subsamp::Gray),
    ] {
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(95).unwrap();
        c.set_subsamp(sub).unwrap();
        let jpeg = c
            .compress_to_vec(turbojpeg::Image {
                pixels: &rgb[..],
                width: w as usize,
                pitch: w as usize * 3,
                height: h as usize,
                format: PixelFormat::RGB,
            })
            .unwrap();
        let t = thumbnail(&jpeg, &spec(300, 300), &Limits::default()).unwrap();
        assert_eq!((t.width, t.height), (tw, th), "{name}");
        let out = decode(&t.jpeg);
        let want = if sub == Subsamp::Gray {
            let grey_rgb: Vec<u8> = gray.iter().flat_map(|&v| [v, v, v]).collect();
            reference_resize(&grey_rgb, w, h, tw, th)
        } else {
            reference.clone()
        };
        let diff = mean_abs_diff(&out.pixels, &want);
        assert!(diff < 4.0, "{name}: mean difference {diff:.2}");
    }

    // CMYK (Adobe) JPEGs take the general decoder.
    let cmyk: Vec<u8> = rgb
        .chunks_exact(3)
        .flat_map(|p| {
            let k = 255 - p[0].max(p[1]).max(p[2]);
            let f = |c: u8| {
                if k == 255 {
                    0
                } else {
                    ((255 - c - k) as u32 * 255 / (255 - k) as u32) as u8
                }
            };
            // Inverted, as Adobe writes CMYK (255 = no ink).
            [255 - f(p[0]), 255 - f(p[1]), 255 - f(p[2]), 255 - k]
        })
        .collect();
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(95).unwrap();
    c.set_colorspace(Colorspace::YCCK).unwrap();
    c.set_subsamp(Subsamp::None).unwrap();
    let jpeg = c
        .compress_to_vec(turbojpeg::Image {
            pixels: &cmyk[..],
            width: w as usize,
            pitch: w as usize * 4,
            height: h as usize,
            format: PixelFormat::CMYK,
        })
        .unwrap();
    let t = thumbnail(&jpeg, &spec(300, 300), &Limits::default()).unwrap();
    assert_eq!((t.width, t.height), (tw, th), "CMYK");
    let diff = mean_abs_diff(&decode(&t.jpeg).pixels, &reference);
    assert!(diff < 6.0, "CMYK: mean difference {diff:.2}");
}

#[test]
fn progressive_jpeg_is_decoded() {
    let input = encode_jpeg(&camera_rgb(1920, 1080, 4), 1920, 1080, true);
    let t = thumbnail(&input, &spec(640, 640), &Limits::default()).unwrap();
    assert_eq!((t.width, t.height), (640, 360));
    assert!(
        is_baseline_jfif(&t.jpeg),
        "output is baseline even for progressive input"
    );
}

#[test]
fn exif_orientation_is_applied_then_dropped() {
    // 64x32: left half red, right half blue.
    let (w, h) = (64u32, 32u32);
    let mut rgb = Vec::new();
    for _y in 0..h {
        for x in 0..w {
            rgb.extend(if x < w / 2 {
                [230, 20, 20]
            } else {
                [20, 20, 230]
            });
        }
    }
    let plain = encode_jpeg(&rgb, w, h, false);
    let red = |p: [u8; 3]| p[0] > 150 && p[2] < 100;
    let blue = |p: [u8; 3]| p[2] > 150 && p[0] < 100;

    // 6: rotate 90° clockwise — the left (red) half ends on top.
    let t = thumbnail(
        &with_exif_orientation(&plain, 6),
        &spec(1000, 1000),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((t.width, t.height), (32, 64));
    assert_eq!((t.source_width, t.source_height), (32, 64));
    let img = decode(&t.jpeg);
    assert!(red(pixel(&img, 16, 8)) && blue(pixel(&img, 16, 56)));
    assert!(is_baseline_jfif(&t.jpeg), "EXIF must be dropped");

    // 8: rotate 90° counter-clockwise — red ends at the bottom.
    let t = thumbnail(
        &with_exif_orientation(&plain, 8),
        &spec(1000, 1000),
        &Limits::default(),
    )
    .unwrap();
    let img = decode(&t.jpeg);
    assert_eq!((img.width, img.height), (32, 64));
    assert!(blue(pixel(&img, 16, 8)) && red(pixel(&img, 16, 56)));

    // 3: rotate 180° — red ends on the right; a fit box applies to the displayed size.
    let t = thumbnail(
        &with_exif_orientation(&plain, 3),
        &spec(32, 32),
        &Limits::default(),
    )
    .unwrap();
    let img = decode(&t.jpeg);
    assert_eq!((img.width, img.height), (32, 16));
    assert!(blue(pixel(&img, 4, 8)) && red(pixel(&img, 28, 8)));

    // Fit applies after rotation: a 32-wide box on the portrait picture.
    let t = thumbnail(
        &with_exif_orientation(&plain, 6),
        &spec(16, 1000),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((t.width, t.height), (16, 32));
}

#[test]
fn png_and_webp_inputs() {
    let (w, h) = (800u32, 600u32);
    let rgb = camera_rgb(w, h, 0);
    let img = image::RgbImage::from_raw(w, h, rgb).unwrap();

    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let t = thumbnail(&png, &spec(400, 400), &Limits::default()).unwrap();
    assert_eq!((t.width, t.height, t.source_format), (400, 300, "png"));
    assert!(is_baseline_jfif(&t.jpeg));

    let mut webp = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut webp),
        image::ImageFormat::WebP,
    )
    .unwrap();
    let t = thumbnail(&webp, &spec(400, 400), &Limits::default()).unwrap();
    assert_eq!((t.width, t.height, t.source_format), (400, 300, "webp"));
    assert!(is_baseline_jfif(&t.jpeg));

    // Transparent PNG pixels come out white, not black.
    let rgba = image::RgbaImage::from_pixel(40, 30, image::Rgba([0, 0, 0, 0]));
    let mut png = Vec::new();
    rgba.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let t = thumbnail(&png, &spec(400, 400), &Limits::default()).unwrap();
    assert!(pixel(&decode(&t.jpeg), 20, 15).iter().all(|&c| c > 240));
}

#[test]
fn png_bomb_header_is_refused_without_allocating() {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&40_000u32.to_be_bytes());
    ihdr.extend_from_slice(&40_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA: 6.4 GB decoded
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", &[0x78, 0x9C, 0x63, 0x00, 0x00]);
    png_chunk(&mut png, b"IEND", &[]);

    let (result, peak) = peak_allocation(|| thumbnail(&png, &spec(640, 640), &Limits::default()));
    match result {
        Err(ImageError::TooManyPixels {
            width: 40_000,
            height: 40_000,
            limit: 50_000_000,
        }) => {}
        other => panic!("expected TooManyPixels, got {other:?}"),
    }
    assert!(peak < 1 << 20, "allocated {peak} bytes before refusing");
    let msg = thumbnail(&png, &spec(640, 640), &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("snapshot.max_pixels"), "{msg}");
}

#[test]
fn jpeg_bomb_header_is_refused_without_allocating() {
    // A real header claiming 60000x60000 (3.6 GP), with almost no data behind it.
    let mut input = camera_jpeg(16, 16);
    let sof = input.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    input[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    let sos = input.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    input.truncate(sos + 20);
    let (result, peak) = peak_allocation(|| thumbnail(&input, &spec(640, 640), &Limits::default()));
    assert!(
        matches!(result, Err(ImageError::TooManyPixels { .. })),
        "{result:?}"
    );
    assert!(peak < 1 << 20, "allocated {peak} bytes before refusing");
}

#[test]
fn oversized_body_is_refused() {
    let limits = Limits {
        max_bytes: 1000,
        ..Limits::default()
    };
    let e = thumbnail(&camera_jpeg(256, 256), &spec(640, 640), &limits).unwrap_err();
    assert!(
        matches!(e, ImageError::TooManyBytes { limit: 1000, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("snapshot.max_bytes"));
}

#[test]
fn truncated_jpeg_is_an_error_not_a_panic() {
    let full = camera_jpeg(1280, 720);
    for cut in [3, 20, 200, full.len() / 3, full.len() / 2, full.len() - 100] {
        let r = thumbnail(&full[..cut], &spec(640, 640), &Limits::default());
        assert!(
            matches!(r, Err(ImageError::Decode(_))),
            "cut at {cut}: {r:?}"
        );
    }
    // Garbage inside the entropy-coded data is an error or a picture, never a panic.
    let mut corrupt = full.clone();
    let n = corrupt.len();
    for i in (n / 3..n - 10).step_by(997) {
        corrupt[i] ^= 0x5A;
    }
    let _ = thumbnail(&corrupt, &spec(640, 640), &Limits::default());
}

#[test]
fn html_body_and_empty_and_zero_size_are_refused() {
    let html = b"<!DOCTYPE html>\n<html><head><title>401 Unauthorized</title></head></html>";
    let e = thumbnail(html, &spec(640, 640), &Limits::default()).unwrap_err();
    assert!(matches!(e, ImageError::NotAnImage(_)), "{e}");
    assert!(e.to_string().contains("401 Unauthorized"), "{e}");

    let e = thumbnail(b"", &spec(640, 640), &Limits::default()).unwrap_err();
    assert!(matches!(e, ImageError::Empty));

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&0u32.to_be_bytes());
    ihdr.extend_from_slice(&100u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IEND", &[]);
    assert!(thumbnail(&png, &spec(640, 640), &Limits::default()).is_err());

    let mut jpeg = camera_jpeg(16, 16);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 7].copy_from_slice(&[0, 0]);
    assert!(thumbnail(&jpeg, &spec(640, 640), &Limits::default()).is_err());
}

#[test]
fn byte_budget_is_met_for_a_noisy_4k_frame() {
    let input = encode_jpeg(&camera_rgb(3840, 2160, 40), 3840, 2160, false);
    let unbounded = ResizeSpec {
        max_image_bytes: None,
        jpeg_quality: 90,
        ..spec(1920, 1920)
    };
    let big = thumbnail(&input, &unbounded, &Limits::default()).unwrap();
    // Quality steps alone suffice for a budget a bit under the unbounded size...
    let mild = (big.jpeg.len() * 3 / 4, "quality");
    // ...while a tight one needs the size to come down too.
    let tight = (60_000, "size");
    for (budget, how) in [mild, tight] {
        let bounded = ResizeSpec {
            max_image_bytes: Some(budget),
            ..unbounded.clone()
        };
        let t = thumbnail(&input, &bounded, &Limits::default()).unwrap();
        assert!(
            t.jpeg.len() <= budget,
            "{} > {budget} ({how})",
            t.jpeg.len()
        );
        match how {
            "quality" => assert_eq!((t.width, t.height), (1920, 1080)),
            _ => {
                assert!(t.width < 1920, "{}x{}", t.width, t.height);
                let aspect = f64::from(t.width) / f64::from(t.height);
                assert!(
                    (aspect - 16.0 / 9.0).abs() < 0.02,
                    "{}x{}",
                    t.width,
                    t.height
                );
            }
        }
        let img = decode(&t.jpeg);
        assert_eq!((img.width as u32, img.height as u32), (t.width, t.height));
    }
    // An impossible budget is a clear error naming the key.
    let e = thumbnail(
        &input,
        &ResizeSpec {
            max_image_bytes: Some(100),
            ..unbounded
        },
        &Limits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("snapshot.max_image_bytes"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_queues_up_to_its_bound_and_counts_overflow() {
    let input = camera_jpeg(1920, 1080);
    let pool = ImagePool::new(1, 2);
    let jobs: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            let input = input.clone();
            tokio::spawn(async move {
                pool.thumbnail(input.into(), spec(320, 320), Limits::default())
                    .await
            })
        })
        .collect();
    let mut done = 0;
    let mut busy = 0;
    for job in jobs {
        match job.await.unwrap() {
            Ok(t) => {
                assert_eq!(t.width, 320);
                done += 1;
            }
            Err(ImageError::Busy { queue: 2, .. }) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(done + busy, 8);
    assert!(done >= 3, "one running and two queued must all finish");
    assert!(busy >= 1, "eight at once must overflow a 1 + 2 pool");
    assert_eq!(pool.overflows(), busy as u64);
    // Once drained, it takes work again.
    assert!(pool
        .thumbnail(input.into(), spec(320, 320), Limits::default())
        .await
        .is_ok());
}

#[test]
fn thumbnail_command_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jpg");
    let output = dir.path().join("out.jpg");
    std::fs::write(&input, camera_jpeg(3840, 2160)).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_snapmail"))
        .env_remove("SNAPMAIL_CONFIG")
        .arg("thumbnail")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .args(["--width", "640"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("640x360") && stdout.contains("3840x2160") && stdout.contains(" ms"),
        "{stdout}"
    );
    let out = std::fs::read(&output).unwrap();
    assert!(is_baseline_jfif(&out));
    let img = decode(&out);
    assert_eq!((img.width, img.height), (640, 360));

    // The same bytes as the daemon's function with the same settings.
    let spec = ResizeSpec {
        max_width: 640,
        max_height: u32::MAX,
        jpeg_quality: 80,
        max_image_bytes: Some(400_000),
    };
    let direct = thumbnail(&std::fs::read(&input).unwrap(), &spec, &Limits::default()).unwrap();
    assert_eq!(direct.jpeg, out);

    // A non-image fails with the pipeline's message and a non-zero status.
    std::fs::write(&input, "<html>502 Bad Gateway</html>").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_snapmail"))
        .env_remove("SNAPMAIL_CONFIG")
        .arg("thumbnail")
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("error page"));
}
