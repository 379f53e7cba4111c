//! The I420 frame every video part of the server passes around: a full-size luma plane and two
//! quarter-size chroma planes (rounded up for odd sizes), tightly packed.

use vpx_sys as sys;

use crate::{MAX_SIDE, VpxError};

/// An 8-bit I420 (YUV 4:2:0) frame, planes without padding.
#[derive(Clone, PartialEq, Eq)]
pub struct I420 {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Luma, `width * height` bytes.
    pub y: Vec<u8>,
    /// Cb, `chroma_width * chroma_height` bytes.
    pub u: Vec<u8>,
    /// Cr, as `u`.
    pub v: Vec<u8>,
}

impl std::fmt::Debug for I420 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "I420({}x{})", self.width, self.height)
    }
}

/// BT.601 limited range, the colour space WebRTC's VP8 uses: RGB to (Y, Cb, Cr).
pub fn rgb_to_yuv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    let y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16;
    let u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128;
    let v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128;
    [y.clamp(0, 255) as u8, u.clamp(0, 255) as u8, v.clamp(0, 255) as u8]
}

/// The inverse of [`rgb_to_yuv`].
pub fn yuv_to_rgb([y, u, v]: [u8; 3]) -> [u8; 3] {
    let c = i32::from(y) - 16;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let r = (298 * c + 409 * e + 128) >> 8;
    let g = (298 * c - 100 * d - 208 * e + 128) >> 8;
    let b = (298 * c + 516 * d + 128) >> 8;
    [r.clamp(0, 255) as u8, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8]
}

impl I420 {
    /// A frame of one colour (`rgb`); a zero or oversized side gives an error.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Result<Self, VpxError> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(VpxError::BadSize { width, height });
        }
        let [y, u, v] = rgb_to_yuv(rgb);
        let (cw, ch) = chroma_size(width, height);
        Ok(Self {
            width,
            height,
            y: vec![y; (width * height) as usize],
            u: vec![u; (cw * ch) as usize],
            v: vec![v; (cw * ch) as usize],
        })
    }

    /// The chroma planes' width and height.
    pub fn chroma_size(&self) -> (u32, u32) {
        chroma_size(self.width, self.height)
    }

    /// The pixel at (`x`, `y`) as RGB; `None` outside the frame.
    pub fn rgb_at(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let (cw, _) = self.chroma_size();
        let l = self.y[(y * self.width + x) as usize];
        let c = ((y / 2) * cw + x / 2) as usize;
        Some(yuv_to_rgb([l, self.u[c], self.v[c]]))
    }

    /// Sets the pixel at (`x`, `y`) (its whole chroma sample) to `rgb`; outside: nothing.
    pub fn set_rgb(&mut self, x: u32, y: u32, rgb: [u8; 3]) {
        if x >= self.width || y >= self.height {
            return;
        }
        let [l, u, v] = rgb_to_yuv(rgb);
        let (cw, _) = self.chroma_size();
        self.y[(y * self.width + x) as usize] = l;
        let c = ((y / 2) * cw + x / 2) as usize;
        self.u[c] = u;
        self.v[c] = v;
    }

    /// Whether the planes match the size and the sides are even (what the encoder takes).
    pub fn check(&self) -> Result<(), VpxError> {
        let (cw, ch) = self.chroma_size();
        let bad = self.width == 0
            || self.height == 0
            || !self.width.is_multiple_of(2)
            || !self.height.is_multiple_of(2)
            || self.width > MAX_SIDE
            || self.height > MAX_SIDE
            || self.y.len() != (self.width * self.height) as usize
            || self.u.len() != (cw * ch) as usize
            || self.v.len() != (cw * ch) as usize;
        if bad {
            return Err(VpxError::BadSize { width: self.width, height: self.height });
        }
        Ok(())
    }

    /// A libvpx image that borrows this frame's planes (valid while `self` is not changed).
    pub(crate) fn as_vpx_image(&self) -> sys::vpx_image_t {
        // SAFETY: vpx_image_t is plain data; all-zero is a valid (empty) value of it.
        let mut img: sys::vpx_image_t = unsafe { std::mem::zeroed() };
        let (cw, _) = self.chroma_size();
        img.fmt = sys::vpx_img_fmt::VPX_IMG_FMT_I420;
        img.w = self.width;
        img.h = self.height;
        img.d_w = self.width;
        img.d_h = self.height;
        img.bit_depth = 8;
        img.bps = 12;
        img.x_chroma_shift = 1;
        img.y_chroma_shift = 1;
        // libvpx reads the source planes only (the pointers are *mut in the C struct).
        img.planes = [
            self.y.as_ptr() as *mut u8,
            self.u.as_ptr() as *mut u8,
            self.v.as_ptr() as *mut u8,
            std::ptr::null_mut(),
        ];
        img.stride = [self.width as i32, cw as i32, cw as i32, 0];
        img
    }

    /// Copies a decoded libvpx image.
    ///
    /// # Safety
    /// `img` must be an image libvpx returned, with its planes still valid.
    pub(crate) unsafe fn from_vpx_image(img: &sys::vpx_image_t) -> Result<Self, VpxError> {
        let (width, height) = (img.d_w, img.d_h);
        if img.fmt != sys::vpx_img_fmt::VPX_IMG_FMT_I420
            || width == 0
            || height == 0
            || width > MAX_SIDE
            || height > MAX_SIDE
        {
            return Err(VpxError::BadSize { width, height });
        }
        let (cw, ch) = chroma_size(width, height);
        let copy = |plane: usize, w: u32, h: u32| -> Vec<u8> {
            let stride = img.stride[plane] as isize;
            let mut out = Vec::with_capacity((w * h) as usize);
            for row in 0..h as isize {
                // SAFETY: libvpx's planes hold `h` rows of `stride >= w` bytes (caller's promise).
                let line =
                    unsafe { std::slice::from_raw_parts(img.planes[plane].offset(row * stride), w as usize) };
                out.extend_from_slice(line);
            }
            out
        };
        Ok(Self { width, height, y: copy(0, width, height), u: copy(1, cw, ch), v: copy(2, cw, ch) })
    }
}

fn chroma_size(width: u32, height: u32) -> (u32, u32) {
    (width.div_ceil(2), height.div_ceil(2))
}
