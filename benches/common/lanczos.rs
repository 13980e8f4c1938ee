//! The reference resize the image benches compare against: Lanczos-3 on RGB, the best
//! quality fast_image_resize offers.

use fast_image_resize as fr;

/// `rgb` (`w`×`h`, 3 bytes a pixel) resized to `tw`×`th`.
pub fn lanczos(rgb: &[u8], w: u32, h: u32, tw: u32, th: u32) -> Vec<u8> {
    let src = fr::images::ImageRef::new(w, h, rgb, fr::PixelType::U8x3).expect("image");
    let mut dst = fr::images::Image::new(tw, th, fr::PixelType::U8x3);
    fr::Resizer::new()
        .resize(
            &src,
            &mut dst,
            &fr::ResizeOptions::new()
                .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3)),
        )
        .expect("resize");
    dst.into_vec()
}
