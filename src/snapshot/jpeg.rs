//! JPEG in and out through libjpeg-turbo: header and EXIF inspection, shrink-on-load decode at
//! the smallest DCT scale that still covers the target, and the baseline encoder.
//!
//! A JPEG stores 8×8 blocks of DCT coefficients; an inverse DCT of only the lowest 4×4, 2×2 or
//! 1×1 coefficients yields the block at ½, ¼ or ⅛ size for a fraction of the work, and the
//! decoded picture is that much smaller in memory. The resizer then only has to go the last
//! factor of at most two. Colour pictures are decoded straight to their Y/Cb/Cr planes and
//! encoded from planes, so no colour conversion or chroma resampling happens at full size.

use turbojpeg::{Colorspace, Decompressor, PixelFormat, ScalingFactor, Subsamp};

use super::pixels::{ImageError, Pixels, Plane};
use super::scratch::Scratch;

/// What the JPEG header says, read without decoding any pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    pub progressive: bool,
    /// libjpeg-turbo decodes this colour model (YCbCr, grey or RGB); CMYK/YCCK take the
    /// slower general path.
    pub supported: bool,
}

/// Read the frame header (dimensions, coding) of `input`.
pub fn read_header(input: &[u8]) -> Result<Header, ImageError> {
    let mut d = decompressor()?;
    let h = d.read_header(input).map_err(decode_err)?;
    let width = u32::try_from(h.width).map_err(|_| ImageError::Decode("width overflow".into()))?;
    let height =
        u32::try_from(h.height).map_err(|_| ImageError::Decode("height overflow".into()))?;
    Ok(Header {
        width,
        height,
        progressive: h.is_progressive,
        supported: !h.is_lossless
            && matches!(
                h.colorspace,
                Colorspace::YCbCr | Colorspace::Gray | Colorspace::RGB
            ),
    })
}

/// Scale denominators libjpeg-turbo can decode at directly, smallest picture first.
pub const DCT_SCALES: [u32; 4] = [8, 4, 2, 1];

/// The size libjpeg-turbo produces for one dimension decoded at `1/denom`.
pub fn scaled(dim: u32, denom: u32) -> u32 {
    dim.div_ceil(denom)
}

/// The smallest DCT scale (as the denominator of ⅛, ¼, ½ or 1) at which a `w`×`h` JPEG still
/// decodes to at least `tw`×`th`, so the resize after it only ever shrinks.
pub fn choose_scale(w: u32, h: u32, tw: u32, th: u32) -> u32 {
    DCT_SCALES
        .into_iter()
        .find(|&d| scaled(w, d) >= tw && scaled(h, d) >= th)
        .unwrap_or(1)
}

/// Progressive JPEGs with more scans than this are refused: each scan rereads the whole
/// coefficient buffer, so thousands of tiny scans are a CPU bomb (libjpeg-turbo's own tools
/// suggest the same bound). Real encoders write about 10.
pub const MAX_SCANS: u32 = 500;

/// Decode `input` at `1/denom` of its size, in the file's stored orientation.
pub fn decode(input: &[u8], denom: u32) -> Result<Pixels, ImageError> {
    decode_with(input, denom, &mut Scratch::default())
}

/// [`decode`] into buffers from `scratch`.
pub fn decode_with(input: &[u8], denom: u32, scratch: &mut Scratch) -> Result<Pixels, ImageError> {
    let mut d = decompressor()?;
    d.set_scan_limit(MAX_SCANS).map_err(decode_err)?;
    let factor = ScalingFactor::new(1, denom as usize);
    d.set_scaling_factor(factor).map_err(decode_err)?;
    let header = d.read_header(input).map_err(decode_err)?;
    let scaled = header.scaled(factor);
    let (w, h) = (scaled.width, scaled.height);
    if w == 0 || h == 0 {
        return Err(ImageError::ZeroSize {
            width: w as u32,
            height: h as u32,
        });
    }
    match (header.colorspace, header.subsamp) {
        (Colorspace::Gray, _) => {
            let mut data = scratch.take(w * h);
            let out = turbojpeg::Image {
                pixels: &mut data[..],
                width: w,
                pitch: w,
                height: h,
                format: PixelFormat::GRAY,
            };
            tolerate(d.decompress(input, out))?;
            Ok(Pixels::Gray(Plane::tight(data, w as u32, h as u32)))
        }
        (Colorspace::YCbCr, sub) if sub != Subsamp::Unknown => {
            // With row alignment 1 the buffer is the Y plane, then Cb, then Cr, each padded to
            // whole chroma samples as libjpeg-turbo lays them out.
            let (sw, sh) = (sub.width(), sub.height());
            let yw = w.next_multiple_of(sw);
            let yh = h.next_multiple_of(sh);
            let (cw, ch) = (yw / sw, yh / sh);
            let len = turbojpeg::yuv_pixels_len(w, 1, h, sub).map_err(decode_err)?;
            if len != yw * yh + 2 * cw * ch {
                return Err(ImageError::Decode(format!(
                    "unexpected YUV layout for {w}x{h} {sub:?}"
                )));
            }
            let mut data = scratch.take(len);
            let out = turbojpeg::YuvImage {
                pixels: &mut data[..],
                width: w,
                align: 1,
                height: h,
                subsamp: sub,
            };
            tolerate(d.decompress_to_yuv(input, out))?;
            // The chroma planes move to buffers of their own (cheap: a quarter of the luma
            // each at 4:2:0), and the luma keeps the decoder's buffer.
            let (y_len, c_len) = (yw * yh, cw * ch);
            let u = scratch.copy_of(&data[y_len..][..c_len]);
            let v = scratch.copy_of(&data[y_len + c_len..][..c_len]);
            data.truncate(y_len);
            let (vw, vh) = (w as f64 / sw as f64, h as f64 / sh as f64);
            Ok(Pixels::Ycc([
                Plane {
                    data,
                    width: yw as u32,
                    height: yh as u32,
                    valid_w: w as f64,
                    valid_h: h as f64,
                },
                Plane {
                    data: u,
                    width: cw as u32,
                    height: ch as u32,
                    valid_w: vw,
                    valid_h: vh,
                },
                Plane {
                    data: v,
                    width: cw as u32,
                    height: ch as u32,
                    valid_w: vw,
                    valid_h: vh,
                },
            ]))
        }
        _ => {
            let mut data = scratch.take(w * h * 3);
            let out = turbojpeg::Image {
                pixels: &mut data[..],
                width: w,
                pitch: w * 3,
                height: h,
                format: PixelFormat::RGB,
            };
            tolerate(d.decompress(input, out))?;
            Ok(Pixels::Rgb {
                data,
                width: w as u32,
                height: h as u32,
            })
        }
    }
}

/// Encode tight pixels as a baseline JPEG (4:2:0 for colour), with no metadata at all.
pub fn encode(pixels: &Pixels, quality: u8) -> Result<Vec<u8>, ImageError> {
    let mut c = turbojpeg::Compressor::new().map_err(encode_err)?;
    c.set_quality(i32::from(quality.clamp(1, 100)))
        .map_err(encode_err)?;
    match pixels {
        Pixels::Rgb {
            data,
            width,
            height,
        } => {
            c.set_subsamp(Subsamp::Sub2x2).map_err(encode_err)?;
            c.compress_to_vec(turbojpeg::Image {
                pixels: &data[..],
                width: *width as usize,
                pitch: *width as usize * 3,
                height: *height as usize,
                format: PixelFormat::RGB,
            })
            .map_err(encode_err)
        }
        Pixels::Gray(p) => {
            c.set_subsamp(Subsamp::Gray).map_err(encode_err)?;
            c.compress_to_vec(turbojpeg::Image {
                pixels: &p.data[..],
                width: p.width as usize,
                pitch: p.width as usize,
                height: p.height as usize,
                format: PixelFormat::GRAY,
            })
            .map_err(encode_err)
        }
        Pixels::Ycc([y, u, v]) => {
            // 4:2:0 wants the luma plane padded to whole chroma samples.
            let (w, h) = (y.width as usize, y.height as usize);
            let (pw, ph) = (w.next_multiple_of(2), h.next_multiple_of(2));
            let (cw, ch) = (pw / 2, ph / 2);
            if u.width as usize != cw || u.height as usize != ch || v.width != u.width {
                return Err(ImageError::Encode("chroma planes do not match luma".into()));
            }
            let padded;
            let luma: &[u8] = if (pw, ph) == (w, h) {
                &y.data
            } else {
                padded = pad_plane(&y.data, w, h, pw, ph);
                &padded
            };
            c.compress_yuv_planes_to_vec(&turbojpeg::YuvPlanesImage {
                y_plane: luma,
                u_plane: &u.data[..],
                v_plane: &v.data[..],
                width: w,
                height: h,
                y_stride: pw,
                u_stride: cw,
                v_stride: cw,
                subsamp: Subsamp::Sub2x2,
            })
            .map_err(encode_err)
        }
    }
}

/// Copy a `w`×`h` plane into a `pw`×`ph` one, repeating the last column and row.
fn pad_plane(src: &[u8], w: usize, h: usize, pw: usize, ph: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(pw * ph);
    for row in 0..ph {
        let line = &src[row.min(h - 1) * w..][..w];
        out.extend_from_slice(line);
        out.extend(std::iter::repeat_n(line[w - 1], pw - w));
    }
    out
}

/// The EXIF orientation (1–8) stored in `input`'s APP1 segment; 1 when there is none.
pub fn exif_orientation(input: &[u8]) -> u8 {
    let mut i = 2; // past SOI
    while let Some(&[0xFF, marker]) = input.get(i..i + 2) {
        match marker {
            0xFF => i += 1, // fill byte
            0x01 | 0xD0..=0xD8 => i += 2,
            0xD9 | 0xDA => break, // end of image / start of scan: no more headers
            _ => {
                let Some(&[hi, lo]) = input.get(i + 2..i + 4) else {
                    break;
                };
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                let Some(segment) = input.get(i + 4..i + 2 + len.max(2)) else {
                    break;
                };
                if marker == 0xE1 {
                    if let Some(tiff) = segment.strip_prefix(b"Exif\0\0") {
                        if let Some(o) = tiff_orientation(tiff) {
                            return o;
                        }
                    }
                }
                i += 2 + len.max(2);
            }
        }
    }
    1
}

/// Find tag 0x0112 (Orientation) in IFD0 of a TIFF block.
pub(crate) fn tiff_orientation(t: &[u8]) -> Option<u8> {
    let little = match t.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u16> {
        let b: [u8; 2] = t.get(o..o.checked_add(2)?)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u32_at = |o: usize| -> Option<u32> {
        let b: [u8; 4] = t.get(o..o.checked_add(4)?)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let entries = usize::from(u16_at(ifd)?);
    (0..entries).find_map(|k| {
        let e = ifd + 2 + k * 12;
        // Tag 0x0112, type SHORT, one value stored in the entry itself.
        (u16_at(e)? == 0x0112 && u16_at(e + 2)? == 3)
            .then(|| u16_at(e + 8))
            .flatten()
            .and_then(|v| u8::try_from(v).ok())
            .filter(|v| (1..=8).contains(v))
    })
}

fn decompressor() -> Result<Decompressor, ImageError> {
    Decompressor::new().map_err(|e| ImageError::Decode(e.to_string()))
}

/// libjpeg-turbo reports recoverable damage as a failed call after it has filled the output.
/// Stray bytes before a marker (some cameras write them) leave the picture intact and are let
/// through; a premature end or corrupt entropy data means part of the picture is grey, and is
/// an error.
fn tolerate(result: turbojpeg::Result<()>) -> Result<(), ImageError> {
    match result {
        Ok(()) => Ok(()),
        Err(turbojpeg::Error::TurboJpegError(msg))
            if msg.contains("extraneous bytes before marker") =>
        {
            tracing::debug!("JPEG warning ignored: {msg}");
            Ok(())
        }
        Err(e) => Err(decode_err(e)),
    }
}

fn decode_err(e: turbojpeg::Error) -> ImageError {
    let msg = match e {
        turbojpeg::Error::TurboJpegError(m) => m,
        other => other.to_string(),
    };
    ImageError::Decode(msg)
}

fn encode_err(e: turbojpeg::Error) -> ImageError {
    ImageError::Encode(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_is_smallest_that_covers_target() {
        assert_eq!(choose_scale(3840, 2160, 480, 270), 8);
        assert_eq!(choose_scale(3840, 2160, 481, 270), 4);
        assert_eq!(choose_scale(3840, 2160, 640, 360), 4);
        assert_eq!(choose_scale(3840, 2160, 960, 540), 4);
        assert_eq!(choose_scale(3840, 2160, 1280, 720), 2);
        assert_eq!(choose_scale(3840, 2160, 1921, 1080), 1);
        // libjpeg-turbo rounds scaled sizes up.
        assert_eq!(choose_scale(3841, 2161, 481, 271), 8);
    }

    #[test]
    fn exif_orientation_big_and_little_endian() {
        for (order, entry) in [
            (
                &b"MM\0\x2a\0\0\0\x08"[..],
                &b"\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0"[..],
            ),
            (
                &b"II\x2a\0\x08\0\0\0"[..],
                &b"\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0"[..],
            ),
        ] {
            let tiff = [order, entry].concat();
            assert_eq!(tiff_orientation(&tiff), Some(6));
        }
        assert_eq!(tiff_orientation(b"II\x2a\0\xff\xff\xff\xff"), None);
        assert_eq!(exif_orientation(b"\xff\xd8\xff\xe1\xff\xff"), 1);
    }
}
