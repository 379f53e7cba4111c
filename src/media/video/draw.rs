//! Drawing primitives on I420: fills, outlines, blending one RGB colour at a coverage.

use super::geom::Rect;
use super::{I420, rgb_to_yuv};

/// Fills `rect` (even-aligned, clipped) with `rgb`.
pub fn fill(dst: &mut I420, rect: Rect, rgb: [u8; 3]) {
    let r = rect.even().clip(dst.width, dst.height);
    if r.is_empty() {
        return;
    }
    let [y, u, v] = rgb_to_yuv(rgb);
    for row in r.y..r.y + r.h {
        let s = (row * dst.width + r.x) as usize;
        dst.y[s..s + r.w as usize].fill(y);
    }
    let (cw, _) = dst.chroma_size();
    for row in r.y / 2..(r.y + r.h) / 2 {
        let s = (row * cw + r.x / 2) as usize;
        dst.u[s..s + r.w as usize / 2].fill(u);
        dst.v[s..s + r.w as usize / 2].fill(v);
    }
}

/// Darkens `rect` towards black by `amount` (0..=256), keeping chroma neutral-ish: a label's
/// backdrop that still shows the video through it.
pub fn shade(dst: &mut I420, rect: Rect, amount: u32) {
    let r = rect.even().clip(dst.width, dst.height);
    let keep = 256 - amount.min(256);
    for row in r.y..r.y + r.h {
        let s = (row * dst.width + r.x) as usize;
        for p in &mut dst.y[s..s + r.w as usize] {
            *p = (16 + ((u32::from(*p).saturating_sub(16) * keep) >> 8)) as u8;
        }
    }
    let (cw, _) = dst.chroma_size();
    for row in r.y / 2..(r.y + r.h) / 2 {
        let s = (row * cw + r.x / 2) as usize;
        for plane in [&mut dst.u, &mut dst.v] {
            for p in &mut plane[s..s + r.w as usize / 2] {
                *p = (128 + (((i32::from(*p) - 128) * keep as i32) >> 8)) as u8;
            }
        }
    }
}

/// Blends `rgb` over the pixel at (`x`, `y`) with coverage `alpha` (0..=1).
pub fn blend(dst: &mut I420, x: u32, y: u32, rgb: [u8; 3], alpha: f32) {
    if x >= dst.width || y >= dst.height || alpha <= 0.0 {
        return;
    }
    let a = (alpha.min(1.0) * 256.0) as u32;
    let mix = |p: &mut u8, c: u8| *p = ((u32::from(*p) * (256 - a) + u32::from(c) * a) >> 8) as u8;
    let [ly, lu, lv] = rgb_to_yuv(rgb);
    let (cw, _) = dst.chroma_size();
    mix(&mut dst.y[(y * dst.width + x) as usize], ly);
    // Chroma is shared by 2×2 pixels: blend it once, from the top-left pixel of the block.
    if x.is_multiple_of(2) && y.is_multiple_of(2) {
        let c = ((y / 2) * cw + x / 2) as usize;
        mix(&mut dst.u[c], lu);
        mix(&mut dst.v[c], lv);
    }
}

/// Draws the outline of `rect`, `thickness` pixels wide, inside it.
pub fn outline(dst: &mut I420, rect: Rect, thickness: u32, rgb: [u8; 3]) {
    let r = rect.even().clip(dst.width, dst.height);
    let t = (thickness.max(2) & !1).min(r.w / 2).min(r.h / 2);
    if r.is_empty() || t == 0 {
        return;
    }
    fill(dst, Rect::new(r.x, r.y, r.w, t), rgb);
    fill(dst, Rect::new(r.x, r.y + r.h - t, r.w, t), rgb);
    fill(dst, Rect::new(r.x, r.y, t, r.h), rgb);
    fill(dst, Rect::new(r.x + r.w - t, r.y, t, r.h), rgb);
}
