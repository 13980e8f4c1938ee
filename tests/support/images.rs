//! Test images: camera-like JPEG frames (expensive to encode, so cached) and small PNGs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Mutex, OnceLock};

use image::{ImageFormat, Rgb, RgbImage};

/// xorshift64*: deterministic noise without a dependency.
struct Noise(u64);

impl Noise {
    fn new(seed: u64) -> Noise {
        Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u32) -> u32 {
        ((self.next() >> 32) % n.max(1) as u64) as u32
    }
}

/// A deterministic frame that compresses like a real camera picture: sky and ground
/// gradients, hard-edged "buildings" and "cars", a striped fence and sensor noise.
pub fn camera_frame(width: u32, height: u32) -> RgbImage {
    assert!(width > 0 && height > 0, "image must not be empty");
    let mut rng = Noise::new(((width as u64) << 32) ^ height as u64);
    let horizon = height * 2 / 5;
    let mut img = RgbImage::new(width, height);
    let (w, h) = (width as f32, height as f32);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let (fx, fy) = (x as f32 / w, y as f32 / h);
        *px = if y < horizon {
            Rgb([
                (90.0 + 80.0 * fy + 20.0 * fx) as u8,
                (140.0 + 60.0 * fy) as u8,
                (230.0 - 40.0 * fy - 15.0 * fx) as u8,
            ])
        } else {
            Rgb([
                (70.0 + 50.0 * fy + 30.0 * (fx * 9.0).sin()) as u8,
                (90.0 + 40.0 * fy) as u8,
                (60.0 + 20.0 * fx) as u8,
            ])
        };
    }
    // buildings along the horizon
    let mut x = 0;
    while x < width {
        let bw = width / 30 + rng.below(width / 12 + 1);
        let bh = height / 10 + rng.below(height / 4 + 1);
        let shade = 60 + rng.below(120) as u8;
        let top = horizon.saturating_sub(bh);
        fill_rect(
            &mut img,
            x,
            top,
            bw,
            horizon - top,
            Rgb([shade, shade, shade + 10]),
        );
        // windows: small bright rectangles
        let step = (width / 160).max(4);
        let mut wy = top + step;
        while wy + step < horizon {
            let mut wx = x + step / 2;
            while wx + step < x + bw {
                if rng.below(3) == 0 {
                    fill_rect(&mut img, wx, wy, step / 2, step / 2, Rgb([240, 220, 150]));
                }
                wx += step;
            }
            wy += step * 2;
        }
        x += bw + rng.below(width / 40 + 1);
    }
    // fence: thin vertical stripes across the lower part
    let fence_top = height * 3 / 5;
    let post = (width / 400).max(1);
    let mut fx = 0;
    while fx < width {
        fill_rect(
            &mut img,
            fx,
            fence_top,
            post,
            height / 10,
            Rgb([200, 190, 170]),
        );
        fx += post * 6;
    }
    // cars and people: saturated blocks on the ground
    for _ in 0..12 {
        let cw = width / 20 + rng.below(width / 10 + 1);
        let ch = height / 20 + rng.below(height / 10 + 1);
        let cx = rng.below(width);
        let cy = horizon + rng.below(height - horizon);
        let colour = Rgb([
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
        ]);
        fill_rect(&mut img, cx, cy, cw, ch, colour);
        fill_rect(&mut img, cx, cy, cw, (ch / 12).max(1), Rgb([20, 20, 20]));
    }
    // sensor noise
    for px in img.pixels_mut() {
        let n = rng.next();
        for (c, shift) in px.0.iter_mut().zip([0u32, 8, 16]) {
            let delta = ((n >> shift) & 0x1f) as i16 - 16;
            *c = (*c as i16 + delta).clamp(0, 255) as u8;
        }
    }
    img
}

fn fill_rect(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colour: Rgb<u8>) {
    let x_end = x.saturating_add(w).min(img.width());
    let y_end = y.saturating_add(h).min(img.height());
    for yy in y.min(y_end)..y_end {
        for xx in x.min(x_end)..x_end {
            img.put_pixel(xx, yy, colour);
        }
    }
}

/// [`camera_frame`] encoded as a baseline 4:2:0 JPEG at `quality` (1-100). Cached per arguments.
pub fn camera_jpeg(width: u32, height: u32, quality: u8) -> Vec<u8> {
    type Cache = Mutex<HashMap<(u32, u32, u8), Vec<u8>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (width, height, quality);
    if let Some(hit) = cache.lock().unwrap().get(&key) {
        return hit.clone();
    }
    // Encoded outside the lock; two tests racing for the same frame just both encode it.
    // Cameras and Frigate (OpenCV's encoder) write 4:2:0 chroma, so this does too.
    let img = camera_frame(width, height);
    let mut c = turbojpeg::Compressor::new().expect("compressor");
    c.set_quality(i32::from(quality)).expect("quality");
    c.set_subsamp(turbojpeg::Subsamp::Sub2x2)
        .expect("subsampling");
    let out = c
        .compress_to_vec(turbojpeg::Image {
            pixels: img.as_raw().as_slice(),
            width: width as usize,
            pitch: width as usize * 3,
            height: height as usize,
            format: turbojpeg::PixelFormat::RGB,
        })
        .expect("encode JPEG");
    cache.lock().unwrap().insert(key, out.clone());
    out
}

/// A small gradient PNG (not a JPEG: for content-type and format tests).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            128,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .expect("encode PNG");
    out.into_inner()
}

/// Fully decodes the image (any format `image` knows) and returns its size; panics if it
/// does not decode.
pub fn decode_dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).unwrap_or_else(|e| {
        panic!(
            "not a decodable image ({} bytes, starts {:02x?}): {e}",
            bytes.len(),
            &bytes[..bytes.len().min(8)]
        )
    });
    (img.width(), img.height())
}

/// Starts with a JPEG SOI marker followed by another marker.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}
