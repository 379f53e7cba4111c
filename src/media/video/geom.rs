//! Rectangles on a frame. Tiles are aligned to even pixels so that they cover whole chroma
//! samples (no tile bleeds half a colour sample into its neighbour).

use serde::{Deserialize, Serialize};

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// A rectangle.
    pub const fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Self { x, y, w, h }
    }

    /// Rounded down to even edges (x, y, right and bottom).
    pub fn even(self) -> Self {
        let x = self.x & !1;
        let y = self.y & !1;
        let right = (self.x + self.w) & !1;
        let bottom = (self.y + self.h) & !1;
        Self { x, y, w: right.saturating_sub(x), h: bottom.saturating_sub(y) }
    }

    /// The part inside a `width`×`height` frame.
    pub fn clip(self, width: u32, height: u32) -> Self {
        let x = self.x.min(width);
        let y = self.y.min(height);
        let w = self.w.min(width - x);
        let h = self.h.min(height - y);
        Self { x, y, w, h }
    }

    /// Whether the rectangle holds no pixel.
    pub fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }

    /// Whether (`x`, `y`) is inside.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        x >= self.x && y >= self.y && x < self.x + self.w && y < self.y + self.h
    }

    /// The centre.
    pub fn centre(&self) -> (u32, u32) {
        (self.x + self.w / 2, self.y + self.h / 2)
    }

    /// The area of the overlap with `other`.
    pub fn overlap(&self, other: &Rect) -> u32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.w).min(other.x + other.w);
        let y1 = (self.y + self.h).min(other.y + other.h);
        x1.saturating_sub(x0) * y1.saturating_sub(y0)
    }
}

/// A region given as fractions of the frame (0..1), so that it survives a change of resolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Left edge, 0..1 of the width.
    pub x: f32,
    /// Top edge, 0..1 of the height.
    pub y: f32,
    /// Width, 0..1 of the width.
    pub w: f32,
    /// Height, 0..1 of the height.
    pub h: f32,
}

impl Region {
    /// The whole frame.
    pub const FULL: Region = Region { x: 0.0, y: 0.0, w: 1.0, h: 1.0 };

    /// Whether every value is a finite fraction and the region lies inside the frame.
    pub fn valid(&self) -> bool {
        let ok = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        ok(self.x)
            && ok(self.y)
            && ok(self.w)
            && ok(self.h)
            && self.x + self.w <= 1.0001
            && self.y + self.h <= 1.0001
    }

    /// In pixels of a `width`×`height` frame, even-aligned and clipped.
    pub fn to_rect(&self, width: u32, height: u32) -> Rect {
        let px = |f: f32, side: u32| (f.clamp(0.0, 1.0) * side as f32).round() as u32;
        Rect::new(px(self.x, width), px(self.y, height), px(self.w, width), px(self.h, height))
            .even()
            .clip(width, height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_clip_overlap() {
        assert_eq!(Rect::new(1, 3, 10, 10).even(), Rect::new(0, 2, 10, 10));
        assert_eq!(Rect::new(0, 0, 7, 5).even(), Rect::new(0, 0, 6, 4));
        assert_eq!(Rect::new(90, 90, 20, 20).clip(100, 100), Rect::new(90, 90, 10, 10));
        assert_eq!(Rect::new(200, 0, 20, 20).clip(100, 100).w, 0);
        assert_eq!(Rect::new(0, 0, 10, 10).overlap(&Rect::new(5, 5, 10, 10)), 25);
        assert_eq!(Rect::new(0, 0, 10, 10).overlap(&Rect::new(20, 5, 10, 10)), 0);
        assert_eq!(Region { x: 0.5, y: 0.0, w: 0.5, h: 0.5 }.to_rect(640, 360), Rect::new(320, 0, 320, 180));
        assert!(!Region { x: 0.8, y: 0.0, w: 0.5, h: 0.5 }.valid());
        assert!(!Region { x: f32::NAN, y: 0.0, w: 0.5, h: 0.5 }.valid());
        assert!(Region::FULL.valid());
    }
}
