//! Overlay: text and/or a PNG image (a watermark) at a position of the frame.
//!
//! The position is a fraction of the frame (top-left corner of what is drawn), so it holds when
//! the source changes resolution; text size is in pixels at 360 lines and scales with the frame.
//! `{time}` in the text becomes the UTC time of day (`HH:MM:SS`), for a clock. The image arrives
//! as base64 PNG in the spec (never a server path) and is decoded once, when the chain is built.

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::FilterError;
use crate::media::video::geom::Rect;
use crate::media::video::text::Font;
use crate::media::video::{I420, draw};

/// The largest overlay image side.
pub const MAX_IMAGE_SIDE: u32 = 1024;
/// The longest overlay text, in characters.
pub const MAX_TEXT: usize = 200;

/// `{"type": "overlay", "text": "...", "image": "<base64 PNG>", "x": 0.02, "y": 0.02, "size": 24,
/// "color": [255, 255, 255], "background": true}`: at least one of `text` and `image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaySpec {
    /// Text to draw; `{time}` is replaced by the UTC time of day.
    #[serde(default)]
    pub text: Option<String>,
    /// A PNG image, base64; drawn at its own size, with its alpha.
    #[serde(default)]
    pub image: Option<String>,
    /// Left edge, a fraction of the width.
    #[serde(default = "margin")]
    pub x: f32,
    /// Top edge, a fraction of the height.
    #[serde(default = "margin")]
    pub y: f32,
    /// Text height in pixels for a 360-line frame (scaled with the frame), 6 to 200.
    #[serde(default = "default_size")]
    pub size: f32,
    /// Text colour, RGB.
    #[serde(default = "white")]
    pub color: [u8; 3],
    /// A shaded box behind the text.
    #[serde(default = "yes")]
    pub background: bool,
}

fn margin() -> f32 {
    0.02
}
fn default_size() -> f32 {
    24.0
}
fn white() -> [u8; 3] {
    [255, 255, 255]
}
fn yes() -> bool {
    true
}

/// An RGBA image.
struct Rgba {
    width: u32,
    height: u32,
    pixels: Vec<[u8; 4]>,
}

/// A built overlay.
pub struct Overlay {
    spec: OverlaySpec,
    image: Option<Rgba>,
    font: Option<Arc<Font>>,
}

impl Overlay {
    /// Checks the spec and decodes its image.
    pub fn new(spec: &OverlaySpec, font: Option<Arc<Font>>) -> Result<Self, FilterError> {
        let bad = |m: &str| Err(FilterError::BadSpec(format!("overlay: {m}")));
        if spec.text.is_none() && spec.image.is_none() {
            return bad("needs text or image");
        }
        if !(0.0..=1.0).contains(&spec.x) || !(0.0..=1.0).contains(&spec.y) {
            return bad("x and y are fractions of the frame (0..1)");
        }
        if !(6.0..=200.0).contains(&spec.size) {
            return bad("size must be 6..=200");
        }
        if spec.text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT) {
            return bad("text longer than 200 characters");
        }
        if spec.text.is_some() && font.is_none() {
            return Err(FilterError::NoFont);
        }
        let image = spec.image.as_deref().map(decode_png).transpose()?;
        Ok(Self { spec: spec.clone(), image, font })
    }

    /// Draws the overlay on `frame`.
    pub fn apply(&self, frame: &mut I420, wall_secs: u64) {
        let x = (self.spec.x * frame.width as f32) as u32;
        let mut y = (self.spec.y * frame.height as f32) as u32;
        if let Some(img) = &self.image {
            for (i, px) in img.pixels.iter().enumerate() {
                let (ix, iy) = (i as u32 % img.width, i as u32 / img.width);
                draw::blend(frame, x + ix, y + iy, [px[0], px[1], px[2]], f32::from(px[3]) / 255.0);
            }
            y += img.height + 4;
        }
        if let (Some(text), Some(font)) = (&self.spec.text, &self.font) {
            let text = text.replace("{time}", &clock(wall_secs));
            let px = self.spec.size * frame.height as f32 / 360.0;
            let (w, h) = font.measure(px, &text);
            let pad = (px / 4.0) as u32;
            if self.spec.background {
                draw::shade(frame, Rect::new(x, y, w + 2 * pad, h + 2 * pad), 140);
            }
            let whole = Rect::new(0, 0, frame.width, frame.height);
            font.draw(frame, (x + pad, y + pad), px, &text, self.spec.color, whole);
        }
    }
}

/// `HH:MM:SS` of a Unix time, UTC.
fn clock(secs: u64) -> String {
    let s = secs % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn decode_png(b64: &str) -> Result<Rgba, FilterError> {
    let bad = |m: String| FilterError::BadImage(m);
    if b64.len() > 4 * 1024 * 1024 {
        return Err(bad("larger than 3 MB".into()));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| bad(format!("base64: {e}")))?;
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| bad(format!("png: {e}")))?;
    let (width, height) = (reader.info().width, reader.info().height);
    if width == 0 || height == 0 || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(bad(format!("{width}x{height}: sides must be 1..={MAX_IMAGE_SIDE}")));
    }
    let size = reader.output_buffer_size().ok_or_else(|| bad("too large".into()))?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| bad(format!("png: {e}")))?;
    let data = &buf[..info.buffer_size()];
    let pixels: Vec<[u8; 4]> = match info.color_type {
        png::ColorType::Rgba => data.chunks_exact(4).map(|p| [p[0], p[1], p[2], p[3]]).collect(),
        png::ColorType::Rgb => data.chunks_exact(3).map(|p| [p[0], p[1], p[2], 255]).collect(),
        png::ColorType::GrayscaleAlpha => data.chunks_exact(2).map(|p| [p[0], p[0], p[0], p[1]]).collect(),
        png::ColorType::Grayscale => data.iter().map(|&g| [g, g, g, 255]).collect(),
        png::ColorType::Indexed => return Err(bad("palette not expanded".into())),
    };
    if pixels.len() != (width * height) as usize {
        return Err(bad("truncated".into()));
    }
    Ok(Rgba { width, height, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_formats_utc_time_of_day() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(86_400 + 3600 * 13 + 60 * 7 + 9), "13:07:09");
    }
}
