//! Where each tile goes on the canvas.
//!
//! [`Layout::Grid`]: `cols = ceil(sqrt(n))`, `rows = ceil(n / cols)`: 1, 2 side by side, 3–4 in
//! 2×2, 5–6 in 3×2, 7–9 in 3×3, 10–12 in 4×3, ...; an incomplete last row is centred.
//! [`Layout::Speaker`]: the active speaker takes the top three quarters; the others share a strip
//! below (a grid of one row). Tiles are separated by a small gap and aligned to even pixels.

use serde::{Deserialize, Serialize};

use super::geom::Rect;

/// A composition's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Equal tiles in a grid that adapts to the number of participants.
    #[default]
    Grid,
    /// The active speaker large, the others in a strip.
    Speaker,
}

/// Pixels between tiles.
pub const GAP: u32 = 4;

/// Grid columns and rows for `n` tiles.
pub fn grid_shape(n: usize) -> (u32, u32) {
    if n == 0 {
        return (0, 0);
    }
    let cols = (n as f64).sqrt().ceil() as u32;
    let rows = (n as u32).div_ceil(cols);
    (cols, rows)
}

/// `n` tiles in a grid over `area`.
fn grid_in(n: usize, area: Rect) -> Vec<Rect> {
    let (cols, rows) = grid_shape(n);
    if n == 0 {
        return Vec::new();
    }
    let tw = (area.w.saturating_sub(GAP * (cols - 1))) / cols;
    let th = (area.h.saturating_sub(GAP * (rows - 1))) / rows;
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u32 {
        let (row, col) = (i / cols, i % cols);
        // The last row holds what is left; centre it.
        let in_row = if row == rows - 1 { n as u32 - row * cols } else { cols };
        let offset = (cols - in_row) * (tw + GAP) / 2;
        let x = area.x + offset + col * (tw + GAP);
        let y = area.y + row * (th + GAP);
        out.push(Rect::new(x, y, tw, th).even());
    }
    out
}

impl Layout {
    /// The tiles of `n` participants on a `width`×`height` canvas, in participant order;
    /// `speaker` (an index below `n`) gets the large tile in [`Layout::Speaker`].
    pub fn tiles(self, n: usize, width: u32, height: u32, speaker: Option<usize>) -> Vec<Rect> {
        let canvas = Rect::new(0, 0, width, height);
        match self {
            Layout::Speaker if n >= 2 => {
                let speaker = speaker.filter(|&s| s < n).unwrap_or(0);
                let main_h = (height * 3 / 4) & !1;
                let strip = Rect::new(0, main_h + GAP, width, height.saturating_sub(main_h + GAP));
                let mut others = grid_row(n - 1, strip).into_iter();
                (0..n)
                    .map(|i| {
                        if i == speaker {
                            Rect::new(0, 0, width, main_h)
                        } else {
                            others.next().unwrap_or_default()
                        }
                    })
                    .collect()
            }
            _ => grid_in(n, canvas),
        }
    }
}

/// `n` tiles in one row over `area`, each at most 16:9 wide (centred).
fn grid_row(n: usize, area: Rect) -> Vec<Rect> {
    if n == 0 {
        return Vec::new();
    }
    let n32 = n as u32;
    let tw = (area.w.saturating_sub(GAP * (n32 - 1)) / n32).min(area.h * 16 / 9);
    let used = tw * n32 + GAP * (n32 - 1);
    let x0 = area.x + area.w.saturating_sub(used) / 2;
    (0..n32).map(|i| Rect::new(x0 + i * (tw + GAP), area.y, tw, area.h).even()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_adapts_to_the_count() {
        let shapes: Vec<_> = [1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 13].iter().map(|&n| grid_shape(n)).collect();
        assert_eq!(
            shapes,
            [(1, 1), (2, 1), (2, 2), (2, 2), (3, 2), (3, 2), (3, 3), (3, 3), (4, 3), (4, 3), (4, 4)]
        );
    }

    #[test]
    fn grid_tiles_are_inside_disjoint_even_and_the_last_row_centred() {
        for n in 1..=16 {
            let tiles = Layout::Grid.tiles(n, 640, 360, None);
            assert_eq!(tiles.len(), n);
            for (i, t) in tiles.iter().enumerate() {
                assert!(t.x + t.w <= 640 && t.y + t.h <= 360, "n={n} {t:?}");
                assert!(t.w > 0 && t.h > 0 && t.x % 2 == 0 && t.y % 2 == 0 && t.w % 2 == 0 && t.h % 2 == 0);
                for o in &tiles[i + 1..] {
                    assert_eq!(t.overlap(o), 0, "n={n} {t:?} {o:?}");
                }
            }
        }
        let three = Layout::Grid.tiles(3, 640, 360, None);
        assert_eq!(three[0].y, three[1].y);
        assert!(three[2].y > three[0].y);
        let (cx, _) = three[2].centre();
        assert!(cx.abs_diff(320) <= 2, "the lone tile of the last row is centred: {cx}");
    }

    #[test]
    fn the_speaker_gets_the_large_tile() {
        let tiles = Layout::Speaker.tiles(4, 640, 360, Some(2));
        assert_eq!(tiles[2], Rect::new(0, 0, 640, 270));
        for i in [0, 1, 3] {
            assert!(tiles[i].y > 270 && tiles[i].w < 200, "{:?}", tiles[i]);
            assert_eq!(tiles[i].overlap(&tiles[2]), 0);
        }
        // One participant: the whole canvas (no strip).
        assert_eq!(Layout::Speaker.tiles(1, 640, 360, Some(0)), vec![Rect::new(0, 0, 640, 360)]);
    }
}
