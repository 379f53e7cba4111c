//! Text on frames: glyphs rasterized with `ab_glyph` from a TrueType font on disk (the default is
//! DejaVu Sans Bold from Debian's `fonts-dejavu-core`; `video_font` in the configuration) and
//! blended into the planes.

use std::path::Path;

use ab_glyph::{Font as _, FontVec, PxScale, ScaleFont, point};

use super::I420;
use super::draw;
use super::geom::Rect;

/// The font used when none is configured.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

/// A font could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FontError {
    /// The file could not be read.
    #[error("cannot read font {path}: {error}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not a font ab_glyph can read.
    #[error("{path} is not a TrueType/OpenType font")]
    Invalid {
        /// The path.
        path: String,
    },
}

/// A loaded font.
pub struct Font {
    inner: FontVec,
}

impl std::fmt::Debug for Font {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Font")
    }
}

impl Font {
    /// Reads a font file.
    pub fn load(path: &Path) -> Result<Self, FontError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| FontError::Read { path: name.clone(), error })?;
        let inner = FontVec::try_from_vec(bytes).map_err(|_| FontError::Invalid { path: name })?;
        Ok(Self { inner })
    }

    /// The width and height of `text` at `px` pixels.
    pub fn measure(&self, px: f32, text: &str) -> (u32, u32) {
        let scaled = self.inner.as_scaled(PxScale::from(px));
        let mut width = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                width += scaled.kern(p, id);
            }
            width += scaled.h_advance(id);
            prev = Some(id);
        }
        (width.ceil() as u32, (scaled.ascent() - scaled.descent()).ceil() as u32)
    }

    /// Draws `text` with its top-left corner at `(x, y)`, clipped to `clip`; returns the box it
    /// takes.
    pub fn draw(
        &self,
        dst: &mut I420,
        (x, y): (u32, u32),
        px: f32,
        text: &str,
        rgb: [u8; 3],
        clip: Rect,
    ) -> Rect {
        let scaled = self.inner.as_scaled(PxScale::from(px));
        let mut caret = x as f32;
        let baseline = y as f32 + scaled.ascent();
        let mut prev = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = prev {
                caret += scaled.kern(p, id);
            }
            let glyph = id.with_scale_and_position(scaled.scale(), point(caret, baseline));
            caret += scaled.h_advance(id);
            prev = Some(id);
            let Some(outlined) = self.inner.outline_glyph(glyph) else { continue };
            let b = outlined.px_bounds();
            outlined.draw(|gx, gy, coverage| {
                let (px, py) = (b.min.x + gx as f32, b.min.y + gy as f32);
                if px < 0.0 || py < 0.0 {
                    return;
                }
                let (px, py) = (px as u32, py as u32);
                if clip.contains(px, py) {
                    draw::blend(dst, px, py, rgb, coverage);
                }
            });
        }
        let (w, h) = self.measure(px, text);
        Rect::new(x, y, w, h)
    }

    /// A label in the bottom-left corner of `tile`: white text on a shaded box, its size
    /// following the tile's height; long names are cut with an ellipsis to fit.
    pub fn label(&self, dst: &mut I420, tile: Rect, text: &str) {
        let px = (tile.h as f32 / 14.0).clamp(10.0, 28.0);
        let pad = (px / 3.0) as u32;
        let room = tile.w.saturating_sub(4 * pad);
        let mut shown: String = text.chars().take(64).collect();
        while !shown.is_empty() && self.measure(px, &shown).0 > room {
            shown.pop();
            while shown.ends_with('…') {
                shown.pop();
            }
            shown.pop();
            shown.push('…');
        }
        if shown.is_empty() {
            return;
        }
        let (w, h) = self.measure(px, &shown);
        let bx =
            Rect::new(tile.x + pad, (tile.y + tile.h).saturating_sub(h + 3 * pad), w + 2 * pad, h + 2 * pad);
        draw::shade(dst, bx, 150);
        self.draw(dst, (bx.x + pad, bx.y + pad), px, &shown, [255, 255, 255], tile);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn font() -> Font {
        Font::load(Path::new(DEFAULT_FONT))
            .expect("fonts-dejavu-core is installed (scripts/test installs it)")
    }

    #[test]
    fn text_changes_only_its_box() {
        let font = font();
        let mut f = I420::filled(320, 180, [30, 60, 90]).unwrap();
        let before = f.clone();
        let frame = Rect::new(0, 0, 320, 180);
        let b = font.draw(&mut f, (20, 40), 24.0, "Ada", [255, 255, 255], frame);
        assert!(b.w > 20 && b.h >= 20, "{b:?}");
        let mut changed = 0;
        for y in 0..180 {
            for x in 0..320 {
                let diff = f.y[(y * 320 + x) as usize] != before.y[(y * 320 + x) as usize];
                if diff {
                    changed += 1;
                    assert!(
                        Rect::new(b.x.saturating_sub(2), b.y.saturating_sub(2), b.w + 4, b.h + 4)
                            .contains(x, y),
                        "({x},{y}) outside {b:?}"
                    );
                }
            }
        }
        assert!(changed > 100, "glyphs were drawn: {changed}");
    }

    #[test]
    fn a_label_fits_its_tile_even_when_the_name_is_long() {
        let font = font();
        let mut f = I420::filled(200, 120, [0, 0, 0]).unwrap();
        let tile = Rect::new(100, 60, 100, 60);
        let before = f.clone();
        font.label(&mut f, tile, &"Bartholomew ".repeat(10));
        for y in 0..120 {
            for x in 0..200 {
                if !tile.contains(x, y) {
                    assert_eq!(f.y[(y * 200 + x) as usize], before.y[(y * 200 + x) as usize], "({x},{y})");
                }
            }
        }
        assert!(f.y != before.y);
    }

    #[test]
    fn a_missing_font_is_an_error() {
        assert!(matches!(Font::load(Path::new("/nonexistent.ttf")), Err(FontError::Read { .. })));
        assert!(matches!(Font::load(Path::new("/etc/hostname")), Err(FontError::Invalid { .. })));
    }
}
