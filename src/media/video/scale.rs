//! Scaling in plain Rust: bilinear (8-bit fixed-point weights, one table per row and column) from
//! a frame into a tile of another, and a box-averaged grey copy for detection. Good enough for
//! tiles; a composition spends its time in VP8, not here.

use super::I420;
use super::geom::Rect;

/// How a frame fills a tile of another aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Fill the tile, cropping the frame's excess (meeting grids do this).
    #[default]
    Cover,
    /// The whole frame inside the tile, with black bars.
    Contain,
}

/// A part of a source plane, in its pixels (fractional).
#[derive(Debug, Clone, Copy)]
struct Crop {
    x: f32,
    y: f32,
    w: f32,
    h: f32,
}

/// Draws `src` scaled into `tile` of `dst` (even-aligned and clipped to `dst` first).
pub fn draw_scaled(src: &I420, dst: &mut I420, tile: Rect, fit: Fit) {
    let tile = tile.even().clip(dst.width, dst.height);
    if tile.is_empty() || src.width == 0 || src.height == 0 {
        return;
    }
    let (sw, sh) = (src.width as f32, src.height as f32);
    let (tw, th) = (tile.w as f32, tile.h as f32);
    let (crop, inner) = match fit {
        Fit::Cover => {
            let scale = (tw / sw).max(th / sh);
            let (cw, ch) = (tw / scale, th / scale);
            (Crop { x: (sw - cw) / 2.0, y: (sh - ch) / 2.0, w: cw, h: ch }, tile)
        }
        Fit::Contain => {
            super::draw::fill(dst, tile, [0, 0, 0]);
            let scale = (tw / sw).min(th / sh);
            let (iw, ih) = ((sw * scale) as u32, (sh * scale) as u32);
            let inner = Rect::new(
                tile.x + (tile.w - iw.min(tile.w)) / 2,
                tile.y + (tile.h - ih.min(tile.h)) / 2,
                iw,
                ih,
            );
            (Crop { x: 0.0, y: 0.0, w: sw, h: sh }, inner.even())
        }
    };
    if inner.is_empty() {
        return;
    }
    let (dw, _) = (dst.width, dst.height);
    scale_plane(&src.y, src.width, src.height, crop, &mut dst.y, dw, inner);
    let (scw, sch) = src.chroma_size();
    let (dcw, _) = dst.chroma_size();
    let ccrop = Crop { x: crop.x / 2.0, y: crop.y / 2.0, w: crop.w / 2.0, h: crop.h / 2.0 };
    let crect = Rect::new(inner.x / 2, inner.y / 2, inner.w / 2, inner.h / 2);
    scale_plane(&src.u, scw, sch, ccrop, &mut dst.u, dcw, crect);
    scale_plane(&src.v, scw, sch, ccrop, &mut dst.v, dcw, crect);
}

/// Per output column (or row): the two source indices and the weight of the second (0..=256).
fn taps(start: f32, len: f32, out: u32, size: u32) -> Vec<(usize, usize, u32)> {
    let step = len / out as f32;
    let max = size.saturating_sub(1) as f32;
    (0..out)
        .map(|i| {
            let f = (start + (i as f32 + 0.5) * step - 0.5).clamp(0.0, max);
            let i0 = f.floor();
            let w = ((f - i0) * 256.0) as u32;
            let i0 = i0 as usize;
            (i0, (i0 + 1).min(size as usize - 1), w)
        })
        .collect()
}

fn scale_plane(src: &[u8], sw: u32, sh: u32, crop: Crop, dst: &mut [u8], dstride: u32, rect: Rect) {
    if rect.is_empty() || sw == 0 || sh == 0 {
        return;
    }
    let cols = taps(crop.x, crop.w, rect.w, sw);
    let rows = taps(crop.y, crop.h, rect.h, sh);
    let sw = sw as usize;
    for (r, &(y0, y1, wy)) in rows.iter().enumerate() {
        let (a, b) = (&src[y0 * sw..y0 * sw + sw], &src[y1 * sw..y1 * sw + sw]);
        let start = (rect.y as usize + r) * dstride as usize + rect.x as usize;
        let line = &mut dst[start..start + rect.w as usize];
        for (o, &(x0, x1, wx)) in line.iter_mut().zip(&cols) {
            let top = u32::from(a[x0]) * (256 - wx) + u32::from(a[x1]) * wx;
            let bottom = u32::from(b[x0]) * (256 - wx) + u32::from(b[x1]) * wx;
            *o = ((top * (256 - wy) + bottom * wy + (1 << 15)) >> 16) as u8;
        }
    }
}

/// A grey (luma) copy at most `max_width` wide, box-averaged by a whole factor; returns the
/// pixels, their width and height, and the factor (source pixels per grey pixel).
pub fn grey(src: &I420, max_width: u32) -> (Vec<u8>, u32, u32, u32) {
    let factor = src.width.div_ceil(max_width.max(1)).max(1);
    let (w, h) = (src.width / factor, src.height / factor);
    let mut out = Vec::with_capacity((w * h) as usize);
    let n = factor * factor;
    for gy in 0..h {
        for gx in 0..w {
            let mut sum = 0u32;
            for y in gy * factor..(gy + 1) * factor {
                let row = (y * src.width) as usize;
                for x in gx * factor..(gx + 1) * factor {
                    sum += u32::from(src.y[row + x as usize]);
                }
            }
            out.push((sum / n) as u8);
        }
    }
    (out, w, h, factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: [u8; 3], b: [u8; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 6)
    }

    #[test]
    fn a_frame_scales_into_its_tile_and_nowhere_else() {
        let mut src = I420::filled(320, 180, [250, 0, 0]).unwrap();
        for y in 0..180 {
            for x in 160..320 {
                src.set_rgb(x, y, [0, 0, 250]);
            }
        }
        let mut dst = I420::filled(640, 360, [0, 250, 0]).unwrap();
        draw_scaled(&src, &mut dst, Rect::new(320, 180, 320, 180), Fit::Cover);
        assert!(close(dst.rgb_at(340, 270).unwrap(), [250, 0, 0]), "{:?}", dst.rgb_at(340, 270));
        assert!(close(dst.rgb_at(620, 270).unwrap(), [0, 0, 250]));
        assert!(close(dst.rgb_at(300, 270).unwrap(), [0, 250, 0]), "left of the tile untouched");
        assert!(close(dst.rgb_at(400, 170).unwrap(), [0, 250, 0]), "above the tile untouched");
    }

    #[test]
    fn cover_crops_and_contain_letterboxes() {
        // A 2:1 frame, red with a blue left quarter, into a square tile.
        let mut src = I420::filled(400, 200, [250, 0, 0]).unwrap();
        for y in 0..200 {
            for x in 0..100 {
                src.set_rgb(x, y, [0, 0, 250]);
            }
        }
        let mut dst = I420::filled(200, 200, [0, 250, 0]).unwrap();
        draw_scaled(&src, &mut dst, Rect::new(0, 0, 200, 200), Fit::Cover);
        // Cover keeps the middle half: x 100..300 of the source, all red.
        assert!(close(dst.rgb_at(4, 100).unwrap(), [250, 0, 0]));
        draw_scaled(&src, &mut dst, Rect::new(0, 0, 200, 200), Fit::Contain);
        assert!(close(dst.rgb_at(100, 10).unwrap(), [0, 0, 0]), "bar above");
        assert!(close(dst.rgb_at(10, 100).unwrap(), [0, 0, 250]), "the blue quarter shows");
        assert!(close(dst.rgb_at(150, 100).unwrap(), [250, 0, 0]));
    }

    #[test]
    fn tiles_outside_the_frame_are_clipped_not_a_panic() {
        let src = I420::filled(64, 64, [1, 2, 3]).unwrap();
        let mut dst = I420::filled(64, 64, [0, 0, 0]).unwrap();
        draw_scaled(&src, &mut dst, Rect::new(60, 60, 100, 100), Fit::Cover);
        draw_scaled(&src, &mut dst, Rect::new(100, 0, 10, 10), Fit::Contain);
        draw_scaled(&src, &mut dst, Rect::new(0, 0, 1, 1), Fit::Cover);
    }

    #[test]
    fn grey_averages_boxes() {
        let mut src = I420::filled(8, 4, [0, 0, 0]).unwrap();
        src.y[..4].fill(200);
        let (g, w, h, f) = grey(&src, 4);
        assert_eq!((w, h, f), (4, 2, 2));
        assert_eq!(g[0], ((200 * 2 + 16 * 2) / 4) as u8);
    }
}
