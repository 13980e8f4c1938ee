//! `snapmail thumbnail IN -o OUT`: run the daemon's image pipeline on a file.
//!
//! Limits, quality and byte budget come from the configuration (or its defaults), each
//! overridable by a flag; the work itself is the very function the daemon's image pool runs.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use snapmail::snapshot::image::{self, ResizeSpec};

/// Flags of `snapmail thumbnail`; `None` means "as configured".
#[derive(Debug, Default)]
pub struct Options {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub quality: Option<u8>,
    /// `Some(0)` turns the byte budget off.
    pub max_bytes: Option<usize>,
}

pub fn run(
    config_path: Option<&Path>,
    input: &Path,
    output: &Path,
    opts: Options,
) -> anyhow::Result<ExitCode> {
    let plan = snapmail::plan::Plan::load(config_path)?;
    let s = &plan.snapshot;
    let (max_width, max_height) = match (opts.width, opts.height) {
        (None, None) => (s.spec.max_width, s.spec.max_height),
        (w, h) => (w.unwrap_or(u32::MAX), h.unwrap_or(u32::MAX)),
    };
    anyhow::ensure!(
        max_width > 0 && max_height > 0,
        "--width and --height must be at least 1"
    );
    let spec = ResizeSpec {
        max_width,
        max_height,
        jpeg_quality: opts.quality.unwrap_or(s.spec.jpeg_quality),
        max_image_bytes: match opts.max_bytes.or(s.spec.max_image_bytes) {
            Some(0) | None => None,
            n => n,
        },
    };
    let limits = s.limits.clone();
    // Refuse an oversized file before reading it, as the fetcher refuses an oversized body.
    let size = std::fs::metadata(input)
        .with_context(|| format!("cannot read {}", input.display()))?
        .len();
    anyhow::ensure!(
        size <= limits.max_bytes as u64,
        "{}: {size} bytes, over snapshot.max_bytes ({})",
        input.display(),
        limits.max_bytes
    );
    let bytes = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;

    let start = Instant::now();
    let thumb =
        image::thumbnail(&bytes, &spec, &limits).with_context(|| format!("{}", input.display()))?;
    let elapsed = start.elapsed();
    drop(bytes);

    std::fs::write(output, &thumb.jpeg)
        .with_context(|| format!("cannot write {}", output.display()))?;
    println!(
        "{}: {} bytes, {}x{} JPEG from {}x{} {}, {:.1} ms",
        output.display(),
        thumb.jpeg.len(),
        thumb.width,
        thumb.height,
        thumb.source_width,
        thumb.source_height,
        thumb.source_format,
        elapsed.as_secs_f64() * 1e3
    );
    Ok(ExitCode::SUCCESS)
}
