//! Pixelate: a region (or the whole frame) replaced by blocks of its average colour, for
//! privacy. Blocks are whole chroma samples (even sizes), so no colour leaks across them.

use serde::{Deserialize, Serialize};

use super::FilterError;
use crate::media::video::I420;
use crate::media::video::geom::Region;

/// `{"type": "pixelate", "region": {"x", "y", "w", "h"}, "block": 16}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PixelateSpec {
    /// The region, as fractions of the frame; the whole frame when absent.
    #[serde(default)]
    pub region: Option<Region>,
    /// Block side in pixels (2 to 256, rounded down to even).
    #[serde(default = "default_block")]
    pub block: u32,
}

fn default_block() -> u32 {
    16
}

impl PixelateSpec {
    /// The spec, checked.
    pub fn validated(&self) -> Result<Self, FilterError> {
        if !(2..=256).contains(&self.block) {
            return Err(FilterError::BadSpec(format!("pixelate: block must be 2..=256, not {}", self.block)));
        }
        if self.region.is_some_and(|r| !r.valid()) {
            return Err(FilterError::BadSpec("pixelate: region must be fractions inside the frame".into()));
        }
        Ok(Self { block: self.block & !1, ..*self })
    }
}

/// Pixelates `frame`.
pub fn apply(spec: &PixelateSpec, frame: &mut I420) {
    let r = spec.region.unwrap_or(Region::FULL).to_rect(frame.width, frame.height);
    let b = spec.block.max(2) & !1;
    let (cw, _) = frame.chroma_size();
    let mut by = r.y;
    while by < r.y + r.h {
        let bh = b.min(r.y + r.h - by);
        let mut bx = r.x;
        while bx < r.x + r.w {
            let bw = b.min(r.x + r.w - bx);
            average(&mut frame.y, frame.width, bx, by, bw, bh);
            average(&mut frame.u, cw, bx / 2, by / 2, (bw / 2).max(1), (bh / 2).max(1));
            average(&mut frame.v, cw, bx / 2, by / 2, (bw / 2).max(1), (bh / 2).max(1));
            bx += bw;
        }
        by += bh;
    }
}

fn average(plane: &mut [u8], stride: u32, x: u32, y: u32, w: u32, h: u32) {
    let rows = || (y..y + h).map(|row| (row * stride + x) as usize);
    let sum: u64 = rows().map(|s| plane[s..s + w as usize].iter().map(|&p| u64::from(p)).sum::<u64>()).sum();
    let mean = (sum / u64::from(w * h).max(1)) as u8;
    for s in rows() {
        plane[s..s + w as usize].fill(mean);
    }
}
