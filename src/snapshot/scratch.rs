//! Pixel buffers an image worker keeps from one picture to the next.
//!
//! A 1080p snapshot needs about 3 MB of decoded planes and 1.4 MB of resized ones. Freshly
//! allocated, every one of those pages is faulted in and zeroed by the kernel, then handed
//! back; in a motion storm the allocator's per-thread arenas also fragment around them and
//! the process keeps the high-water mark. Reusing one set of buffers per worker makes the
//! steady state allocation-free for pixels and bounds the memory to `workers` sets.

use fast_image_resize as fr;

use super::pixels::Pixels;

/// Buffers beyond this many bytes in total are freed instead of kept (a one-off 12 MP
/// picture should not pin its buffers for the life of the process).
const MAX_RETAINED: usize = 24 << 20;

/// Reusable buffers and resizer state for one image worker. Not shared: each running job
/// has its own (see [`super::pool`]).
#[derive(Default)]
pub struct Scratch {
    free: Vec<Vec<u8>>,
    resizer: Option<fr::Resizer>,
    /// For the chroma planes, resized on a second thread beside the luma plane.
    chroma: Option<fr::Resizer>,
}

impl Scratch {
    /// A buffer of exactly `len` bytes with unspecified contents (zeros or an earlier
    /// picture's pixels): callers overwrite all of it.
    pub fn take(&mut self, len: usize) -> Vec<u8> {
        // Best fit: the smallest buffer that is large enough, else the largest one (grown).
        let pick = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .or_else(|| {
                self.free
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, b)| b.capacity())
            })
            .map(|(i, _)| i);
        let mut buf = pick.map_or_else(Vec::new, |i| self.free.swap_remove(i));
        if buf.len() >= len {
            buf.truncate(len);
        } else {
            buf.resize(len, 0);
        }
        buf
    }

    /// A copy of `src` in a reused buffer.
    pub fn copy_of(&mut self, src: &[u8]) -> Vec<u8> {
        let mut buf = self.take(src.len());
        buf.copy_from_slice(src);
        buf
    }

    /// Hand a buffer back for the next picture.
    pub fn give(&mut self, buf: Vec<u8>) {
        if buf.capacity() > 0 && self.retained() + buf.capacity() <= MAX_RETAINED {
            self.free.push(buf);
        }
    }

    /// Hand back every buffer of a picture that is no longer needed.
    pub fn recycle(&mut self, pixels: Pixels) {
        match pixels {
            Pixels::Rgb { data, .. } => self.give(data),
            Pixels::Gray(p) => self.give(p.data),
            Pixels::Ycc(planes) => planes.into_iter().for_each(|p| self.give(p.data)),
        }
    }

    /// The resizer, which keeps its coefficient and row buffers between pictures.
    pub fn resizer(&mut self) -> &mut fr::Resizer {
        self.resizer.get_or_insert_with(fr::Resizer::new)
    }

    /// The resizer and a second one for the chroma planes, to run side by side.
    pub fn resizers(&mut self) -> (&mut fr::Resizer, &mut fr::Resizer) {
        (
            self.resizer.get_or_insert_with(fr::Resizer::new),
            self.chroma.get_or_insert_with(fr::Resizer::new),
        )
    }

    /// Bytes held for reuse.
    pub fn retained(&self) -> usize {
        self.free.iter().map(Vec::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_without_reallocating() {
        let mut s = Scratch::default();
        let first = s.take(1000);
        let ptr = first.as_ptr();
        s.give(first);
        let again = s.take(600);
        assert_eq!(again.len(), 600);
        assert_eq!(again.as_ptr(), ptr);
    }

    #[test]
    fn the_smallest_large_enough_buffer_is_chosen() {
        let mut s = Scratch::default();
        let (big, small) = (s.take(10_000), s.take(2_000));
        let small_ptr = small.as_ptr();
        s.give(big);
        s.give(small);
        let reused = s.take(1_500);
        assert_eq!(reused.as_ptr(), small_ptr);
        assert_eq!(s.retained(), 10_000);
    }

    #[test]
    fn retention_is_bounded() {
        let mut s = Scratch::default();
        s.give(vec![0; MAX_RETAINED]);
        s.give(vec![0; 10]);
        assert_eq!(s.retained(), MAX_RETAINED);
    }
}
