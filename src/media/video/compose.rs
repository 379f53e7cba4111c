//! The compositor (video MCU core): participants' latest decoded frames in, one canvas out per
//! tick. Sans-IO: frames, audio levels and the time are handed in; [`Compositor::render`] draws.
//!
//! - Tiles follow the [`Layout`] for the current number of video tracks, in join order.
//! - Each tile is labelled with its participant's name (when a font is loaded).
//! - A track whose frames stop keeps its last frame for `stall`, then shows a placeholder (its
//!   name on a plain tile): one stalled publisher never freezes the whole composition.
//! - The active speaker (for [`Layout::Speaker`]) is the loudest participant whose RFC 6464
//!   level was at least [`SPEAKING_DBOV`] within [`SPEAKING_WINDOW`]; with nobody speaking, the
//!   last speaker stays.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::geom::Rect;
use super::layout::Layout;
use super::scale::{Fit, draw_scaled};
use super::text::Font;
use super::{I420, VpxError, draw};

/// Levels (RFC 6464, 0 loudest, -127 silence) at or above this count as speaking.
pub const SPEAKING_DBOV: i8 = -50;
/// How recent a level must be to count.
pub const SPEAKING_WINDOW: Duration = Duration::from_millis(1000);
/// The canvas behind the tiles.
const BACKGROUND: [u8; 3] = [17, 19, 24];
/// A tile with no (recent) picture.
const PLACEHOLDER: [u8; 3] = [48, 52, 62];

/// A compositor's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompositorConfig {
    /// Canvas width (even).
    pub width: u32,
    /// Canvas height (even).
    pub height: u32,
    /// The layout.
    pub layout: Layout,
    /// How frames fill their tiles.
    pub fit: Fit,
    /// How long a track without frames keeps its last one before the placeholder.
    pub stall: Duration,
}

struct Tile {
    /// The video track.
    track: String,
    /// Its place: tiles are in this order.
    order: u64,
    participant: String,
    name: String,
    frame: Option<I420>,
    at: Option<Instant>,
}

/// The compositor.
pub struct Compositor {
    config: CompositorConfig,
    canvas: I420,
    tiles: Vec<Tile>,
    /// Per participant: the last speaking level and when.
    levels: Vec<(String, i8, Instant)>,
    speaker: Option<String>,
    font: Option<Arc<Font>>,
}

impl Compositor {
    /// A compositor drawing on a canvas of the configured size; labels need `font`.
    pub fn new(config: CompositorConfig, font: Option<Arc<Font>>) -> Result<Self, VpxError> {
        let canvas = I420::filled(config.width, config.height, BACKGROUND)?;
        canvas.check()?;
        Ok(Self { config, canvas, tiles: Vec::new(), levels: Vec::new(), speaker: None, font })
    }

    /// The settings.
    pub fn config(&self) -> &CompositorConfig {
        &self.config
    }

    /// Changes the layout from the next render.
    pub fn set_layout(&mut self, layout: Layout) {
        self.config.layout = layout;
    }

    /// A video track joins (or its name changes): it gets a tile at the end.
    pub fn join(&mut self, track: &str, participant: &str, name: &str) {
        self.join_in_order(track, participant, name, u64::MAX);
    }

    /// A video track joins with its place among the room's tracks: its tile goes after those
    /// of smaller or equal `order`, before the others.
    pub fn join_in_order(&mut self, track: &str, participant: &str, name: &str, order: u64) {
        if let Some(t) = self.tiles.iter_mut().find(|t| t.track == track) {
            t.name = name.to_owned();
            return;
        }
        let at = self.tiles.iter().position(|t| t.order > order).unwrap_or(self.tiles.len());
        self.tiles.insert(
            at,
            Tile {
                track: track.to_owned(),
                order,
                participant: participant.to_owned(),
                name: name.to_owned(),
                frame: None,
                at: None,
            },
        );
    }

    /// A video track leaves; its tile goes and the layout adapts.
    pub fn leave(&mut self, track: &str) {
        self.tiles.retain(|t| t.track != track);
        let participants: Vec<&str> = self.tiles.iter().map(|t| t.participant.as_str()).collect();
        self.levels.retain(|(p, _, _)| participants.contains(&p.as_str()));
        if self.speaker.as_deref().is_some_and(|s| !participants.contains(&s)) {
            self.speaker = None;
        }
    }

    /// The tracks with a tile, in order.
    pub fn tracks(&self) -> impl Iterator<Item = &str> {
        self.tiles.iter().map(|t| t.track.as_str())
    }

    /// A decoded frame of `track` (ignored for a track without a tile).
    pub fn frame(&mut self, track: &str, frame: I420, now: Instant) {
        if let Some(t) = self.tiles.iter_mut().find(|t| t.track == track) {
            t.frame = Some(frame);
            t.at = Some(now);
        }
    }

    /// An audio level (RFC 6464: 0 loudest, -127 silence) of `participant`.
    pub fn audio_level(&mut self, participant: &str, level: i8, now: Instant) {
        if level < SPEAKING_DBOV {
            return;
        }
        match self.levels.iter_mut().find(|(p, _, _)| p == participant) {
            Some(entry) => *entry = (participant.to_owned(), level, now),
            None => self.levels.push((participant.to_owned(), level, now)),
        }
    }

    /// The active speaker's participant id.
    pub fn speaker(&self) -> Option<&str> {
        self.speaker.as_deref()
    }

    /// Where `track`'s tile is in the current layout.
    pub fn tile_of(&self, track: &str) -> Option<Rect> {
        let i = self.tiles.iter().position(|t| t.track == track)?;
        self.layout().get(i).copied()
    }

    fn layout(&self) -> Vec<Rect> {
        let speaker =
            self.speaker.as_deref().and_then(|s| self.tiles.iter().position(|t| t.participant == s));
        self.config.layout.tiles(self.tiles.len(), self.config.width, self.config.height, speaker)
    }

    fn pick_speaker(&mut self, now: Instant) {
        let loudest = self
            .levels
            .iter()
            .filter(|(_, _, at)| now.saturating_duration_since(*at) <= SPEAKING_WINDOW)
            .max_by_key(|(_, level, _)| *level)
            .map(|(p, _, _)| p.clone());
        if loudest.is_some() {
            self.speaker = loudest;
        }
    }

    /// Draws the canvas for `now`.
    pub fn render(&mut self, now: Instant) -> &I420 {
        self.pick_speaker(now);
        let rects = self.layout();
        let (w, h) = (self.config.width, self.config.height);
        draw::fill(&mut self.canvas, Rect::new(0, 0, w, h), BACKGROUND);
        for (tile, rect) in self.tiles.iter().zip(rects) {
            let fresh = tile.at.is_some_and(|at| now.saturating_duration_since(at) <= self.config.stall);
            match (&tile.frame, fresh) {
                (Some(frame), true) => {
                    draw_scaled(frame, &mut self.canvas, rect, self.config.fit);
                    if let Some(font) = &self.font {
                        font.label(&mut self.canvas, rect, &tile.name);
                    }
                }
                _ => {
                    draw::fill(&mut self.canvas, rect, PLACEHOLDER);
                    if let Some(font) = &self.font {
                        placeholder_name(font, &mut self.canvas, rect, &tile.name);
                    }
                }
            }
        }
        &self.canvas
    }
}

/// The participant's name, centred on its placeholder tile.
fn placeholder_name(font: &Font, canvas: &mut I420, rect: Rect, name: &str) {
    let px = (rect.h as f32 / 8.0).clamp(12.0, 40.0);
    let (tw, th) = font.measure(px, name);
    if tw > rect.w {
        font.label(canvas, rect, name);
        return;
    }
    let (cx, cy) = rect.centre();
    font.draw(canvas, (cx - tw / 2, cy.saturating_sub(th / 2)), px, name, [220, 224, 232], rect);
}

#[cfg(test)]
#[path = "compose_tests.rs"]
mod tests;
