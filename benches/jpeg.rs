//! `cargo bench --bench jpeg`: how many bytes the mailed picture costs at which quality, for
//! a 1080p camera frame mailed at the default 1280 px, and what that does to a mail's time
//! over a 40 ms link (TCP slow start: the body goes out in flights of 10, 20, 40… segments,
//! one round trip each).
//!
//! Inputs: the camera-like test frame (`tests/support/images.rs`) and, when a directory of
//! photos is given in `JPEG_BENCH_PHOTOS` (Debian's `plasma-workspace-wallpapers`: `apt-get
//! download plasma-workspace-wallpapers && dpkg -x *.deb dir`, then
//! `dir/usr/share/wallpapers`), up to 8 of its JPEGs, each first made into a q85 1920×1080
//! frame like a camera's. Each input is decoded and resized to 1280×720 with Lanczos3 (the
//! reference); every variant is encoded from that reference with libjpeg-turbo and scored
//! by SSIM on luma (8×8 windows, stride 4) against it. Variants at another width are scaled
//! back to 1280 before scoring: what a reader loses in detail.
//!
//! Columns: mean JPEG bytes, mean body bytes on the wire (base64 with line ends, plus 1.5 KB
//! of headers and HTML), the TCP flights that body takes on a fresh window of 10 × 1448
//! bytes, median encoder CPU time (thread CPU time, round-robin over the variants), mean SSIM
//! and PSNR (luma).

#[path = "../tests/support/images.rs"]
mod images;

use std::path::{Path, PathBuf};

#[path = "common/lanczos.rs"]
mod reference;
use reference::lanczos;
use turbojpeg::{Compressor, Image, PixelFormat, Subsamp};

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
const ENCODES: usize = 21;
/// Linux's initial congestion window (10 segments) of MSS 1448 (1500 MTU, TCP timestamps).
const INITIAL_WINDOW: f64 = 10.0 * 1448.0;
const MAIL_OVERHEAD: f64 = 1500.0;

#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    quality: i32,
    subsamp: Subsamp,
    optimize: bool,
    progressive: bool,
    width: u32,
}

const fn v(name: &'static str, quality: i32, optimize: bool, progressive: bool) -> Variant {
    Variant {
        name,
        quality,
        subsamp: Subsamp::Sub2x2,
        optimize,
        progressive,
        width: WIDTH,
    }
}

const VARIANTS: &[Variant] = &[
    v("q80 baseline (snapmail today)", 80, false, false),
    v("q80 + optimized Huffman", 80, true, false),
    v("q80 progressive", 80, true, true),
    Variant {
        name: "q80 4:4:4 + optimized",
        subsamp: Subsamp::None,
        ..v("", 80, true, false)
    },
    v("q90 + optimized", 90, true, false),
    v("q85 + optimized", 85, true, false),
    v("q75 + optimized", 75, true, false),
    v("q70 + optimized", 70, true, false),
    v("q60 + optimized", 60, true, false),
    Variant {
        name: "q80 + optimized, 960 px",
        width: 960,
        ..v("", 80, true, false)
    },
    Variant {
        name: "q80 + optimized, 640 px",
        width: 640,
        ..v("", 80, true, false)
    },
];

fn main() {
    let mut inputs: Vec<(String, Vec<u8>)> = vec![(
        "camera-like test frame".into(),
        images::camera_jpeg(1920, 1080, 85),
    )];
    if let Some(dir) = std::env::var_os("JPEG_BENCH_PHOTOS") {
        for path in photos(Path::new(&dir)).into_iter().take(8) {
            match camera_frame_from(&path) {
                Some(jpeg) => inputs.push((path.display().to_string(), jpeg)),
                None => println!("{}: not a usable JPEG, skipped", path.display()),
            }
        }
    } else {
        println!("JPEG_BENCH_PHOTOS not set: the camera-like test frame only");
    }
    // Each input at the mail size, as the reference every variant is scored against.
    let references: Vec<Vec<u8>> = inputs
        .iter()
        .map(|(_, jpeg)| {
            let img = turbojpeg::decompress(jpeg, PixelFormat::RGB).expect("decode input");
            lanczos(
                &img.pixels,
                img.width as u32,
                img.height as u32,
                WIDTH,
                HEIGHT,
            )
        })
        .collect();

    for (set, range) in [
        ("camera-like test frame", 0..1),
        ("photos", 1..inputs.len()),
    ] {
        if range.is_empty() {
            continue;
        }
        println!("\n{set} ({} inputs), mailed at 1280×720:\n", range.len());
        println!(
            "| variant | JPEG | mail body | TCP flights (model) | encode CPU (median) | SSIM (Y) | PSNR (Y) |\n|---|---|---|---|---|---|---|"
        );
        // Encode times, taken round-robin over the variants so that whatever else the machine
        // does weighs on all of them alike.
        let mut times = vec![Vec::new(); VARIANTS.len()];
        for _ in 0..ENCODES {
            for (k, variant) in VARIANTS.iter().enumerate() {
                let mut sum = 0.0;
                for reference in &references[range.clone()] {
                    sum += encode(reference, variant).1;
                }
                times[k].push(sum / range.len() as f64);
            }
        }
        for (variant, times) in VARIANTS.iter().zip(times) {
            let mut bytes = 0.0;
            let mut ssim_sum = 0.0;
            let mut psnr_sum = 0.0;
            for i in range.clone() {
                let reference = &references[i];
                let (jpeg, _) = encode(reference, variant);
                bytes += jpeg.len() as f64;
                let decoded = turbojpeg::decompress(&jpeg, PixelFormat::RGB).expect("decode");
                let seen = if variant.width == WIDTH {
                    decoded.pixels
                } else {
                    lanczos(
                        &decoded.pixels,
                        decoded.width as u32,
                        decoded.height as u32,
                        WIDTH,
                        HEIGHT,
                    )
                };
                let (a, b) = (luma(reference), luma(&seen));
                ssim_sum += ssim(&a, &b, WIDTH as usize, HEIGHT as usize);
                psnr_sum += psnr(&a, &b);
            }
            let n = range.len() as f64;
            let jpeg = bytes / n;
            let body = base64_size(jpeg) + MAIL_OVERHEAD;
            println!(
                "| {} | {:.0} KB | {:.0} KB | {} | {:.1} ms | {:.4} | {:.2} dB |",
                variant.name,
                jpeg / 1000.0,
                body / 1000.0,
                rounds(body),
                median(times),
                ssim_sum / n,
                psnr_sum / n,
            );
        }
    }
    println!(
        "\nTCP flights: from a fresh window of 10 × 1448 bytes doubling each round trip; every \
         flight after the first adds one round trip (40 ms here) to a mail. Body bytes per \
         extra round trip: ≤ 14 KB: 0, ≤ 43 KB: 1, ≤ 101 KB: 2, ≤ 217 KB: 3, ≤ 449 KB: 4. \
         The WAN bench measures one more for a 176 KB body (the receiver's window opens more \
         slowly than the sender's)."
    );
}

/// Encodes the `WIDTH`×`HEIGHT` reference as `variant` says (scaled first for another
/// width, which is not timed); returns the JPEG and the encoder's CPU time in ms.
fn encode(reference: &[u8], variant: &Variant) -> (Vec<u8>, f64) {
    let scaled;
    let (pixels, w, h) = if variant.width == WIDTH {
        (reference, WIDTH, HEIGHT)
    } else {
        let h = HEIGHT * variant.width / WIDTH;
        scaled = lanczos(reference, WIDTH, HEIGHT, variant.width, h);
        (&scaled[..], variant.width, h)
    };
    let began = thread_cpu_ms();
    let mut c = Compressor::new().expect("compressor");
    c.set_quality(variant.quality).expect("quality");
    c.set_subsamp(variant.subsamp).expect("subsampling");
    c.set_optimize(variant.optimize).expect("optimize");
    c.set_progressive(variant.progressive).expect("progressive");
    let out = c
        .compress_to_vec(Image {
            pixels,
            width: w as usize,
            pitch: w as usize * 3,
            height: h as usize,
            format: PixelFormat::RGB,
        })
        .expect("encode");
    (out, thread_cpu_ms() - began)
}

/// CPU time of this thread: unlike wall time, not inflated while other work holds the core.
fn thread_cpu_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

/// JPEG photos under `dir`, largest first (they are the most camera-like), by name for ties.
fn photos(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
            {
                let size = entry.metadata().map_or(0, |m| m.len());
                found.push((size, p));
            }
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    // One picture per wallpaper (they ship each at several sizes): the largest.
    let mut seen = std::collections::HashSet::new();
    found
        .into_iter()
        .filter(|(_, p)| {
            let wallpaper = p
                .ancestors()
                .find(|a| a.join("metadata.json").exists() || a.join("metadata.desktop").exists())
                .unwrap_or(p)
                .to_path_buf();
            seen.insert(wallpaper)
        })
        .map(|(_, p)| p)
        .collect()
}

/// A photo as a camera would send it: cropped to 16:9, 1920×1080, q85 4:2:0.
fn camera_frame_from(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    let img = turbojpeg::decompress(&bytes, PixelFormat::RGB).ok()?;
    let (w, h) = (img.width as u32, img.height as u32);
    if w < 1920 || h < 1080 {
        return None;
    }
    // Centre crop to 16:9.
    let (cw, ch) = if w * 9 > h * 16 {
        (h * 16 / 9, h)
    } else {
        (w, w * 9 / 16)
    };
    let (x0, y0) = ((w - cw) / 2, (h - ch) / 2);
    let mut crop = Vec::with_capacity((cw * ch * 3) as usize);
    for y in y0..y0 + ch {
        let row = ((y * w + x0) * 3) as usize;
        crop.extend_from_slice(&img.pixels[row..row + (cw * 3) as usize]);
    }
    let frame = lanczos(&crop, cw, ch, 1920, 1080);
    let mut c = Compressor::new().ok()?;
    c.set_quality(85).ok()?;
    c.set_subsamp(Subsamp::Sub2x2).ok()?;
    c.compress_to_vec(Image {
        pixels: &frame[..],
        width: 1920,
        pitch: 1920 * 3,
        height: 1080,
        format: PixelFormat::RGB,
    })
    .ok()
}

/// BT.601 luma, as JPEG stores it.
fn luma(rgb: &[u8]) -> Vec<f64> {
    rgb.chunks_exact(3)
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect()
}

/// Mean SSIM over 8×8 windows every 4 pixels (Wang et al. 2004, with uniform windows).
fn ssim(a: &[f64], b: &[f64], w: usize, h: usize) -> f64 {
    const WIN: usize = 8;
    const STEP: usize = 4;
    let c1 = (0.01f64 * 255.0).powi(2);
    let c2 = (0.03f64 * 255.0).powi(2);
    let n = (WIN * WIN) as f64;
    let mut total = 0.0;
    let mut count = 0usize;
    for y in (0..=h - WIN).step_by(STEP) {
        for x in (0..=w - WIN).step_by(STEP) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for row in y..y + WIN {
                for i in row * w + x..row * w + x + WIN {
                    let (p, q) = (a[i], b[i]);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let (ma, mb) = (sa / n, sb / n);
            let va = saa / n - ma * ma;
            let vb = sbb / n - mb * mb;
            let cov = sab / n - ma * mb;
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            count += 1;
        }
    }
    total / count as f64
}

fn psnr(a: &[f64], b: &[f64]) -> f64 {
    let mse = a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>() / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse.max(1e-12)).log10()
}

/// Base64 with a CRLF every 76 characters.
fn base64_size(bytes: f64) -> f64 {
    let chars = (bytes / 3.0).ceil() * 4.0;
    chars + (chars / 76.0).ceil() * 2.0
}

/// Round trips TCP needs for `bytes` from a fresh window that doubles each round.
fn rounds(bytes: f64) -> u32 {
    let mut sent = 0.0;
    let mut window = INITIAL_WINDOW;
    let mut n = 0;
    while sent < bytes {
        sent += window;
        window *= 2.0;
        n += 1;
    }
    n
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
