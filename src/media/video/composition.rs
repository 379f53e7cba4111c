//! A composition, sans-IO: the room's video tracks in (VP8 frames), one composed VP8 track out at
//! a fixed size and frame rate. It owns a [`TrackDecoder`] per track, the [`Compositor`], an
//! optional filter [`Chain`] on the output, and the [`Encoder`].
//!
//! Drive it with [`Composition::handle`] for inputs, [`Composition::tick`] at or after
//! [`Composition::next_tick`], and drain [`Composition::poll_output`]. Ticks that are late are
//! skipped, not caught up: a busy node sends fewer frames, never a backlog.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::compose::{Compositor, CompositorConfig};
use super::decode::TrackDecoder;
use super::filter::{Chain, FilterEvent, FrameContext};
use super::layout::Layout;
use super::scale::Fit;
use super::text::Font;
use super::{Encoder, EncoderConfig, VpxError};

/// A composition's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompositionConfig {
    /// Output width (even).
    pub width: u32,
    /// Output height (even).
    pub height: u32,
    /// Output frames per second.
    pub fps: u32,
    /// Output bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// The layout.
    pub layout: Layout,
    /// How long a silent track keeps its last frame.
    pub stall: Duration,
}

/// What a composition is told.
#[derive(Debug, Clone)]
pub enum Input {
    /// A video track to show.
    Track {
        /// The track id.
        track: String,
        /// Its participant.
        participant: String,
        /// The label.
        name: String,
        /// Its place among the room's tracks ([`crate::media::tap::TapTrack::order`]): tiles
        /// follow it, so they do not depend on which track's first frame came first.
        order: u64,
    },
    /// A track is gone.
    Gone {
        /// The track id.
        track: String,
    },
    /// A depacketized VP8 frame.
    Frame {
        /// The track id.
        track: String,
        /// The frame.
        payload: Bytes,
        /// A keyframe.
        keyframe: bool,
        /// No gap before it.
        contiguous: bool,
        /// The source's RTP time (90 kHz, extended to 64 bits).
        time: u64,
    },
    /// An audio level of a participant (RFC 6464).
    Level {
        /// The participant.
        participant: String,
        /// The level.
        level: i8,
    },
    /// Switch the layout.
    Layout(Layout),
    /// A receiver needs a keyframe of the output.
    Keyframe,
}

/// What a composition produces.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// One encoded frame of the output, with its RTP time (90 kHz).
    Frame {
        /// The VP8 frame.
        data: Bytes,
        /// A keyframe.
        keyframe: bool,
        /// RTP time, 90 kHz, extended to 64 bits: from the composition's start, or the source's
        /// (a pipeline).
        time: u64,
    },
    /// Ask the publisher of `track` for a keyframe.
    RequestKeyframe {
        /// The track.
        track: String,
    },
    /// Events of the output's filters (faces).
    Events(Vec<FilterEvent>),
}

/// Counts for metrics and the API.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Frames composed and encoded.
    pub composed: u64,
    /// Ticks skipped because the composition was late.
    pub skipped: u64,
    /// Input frames that did not decode.
    pub decode_errors: u64,
}

/// A running composition.
pub struct Composition {
    config: CompositionConfig,
    compositor: Compositor,
    decoders: HashMap<String, TrackDecoder>,
    encoder: Encoder,
    chain: Option<Chain>,
    start: Instant,
    ticks: u64,
    force_keyframe: bool,
    out: VecDeque<Output>,
    stats: Stats,
}

impl Composition {
    /// A composition starting at `now`; `chain` filters its output.
    pub fn new(
        config: CompositionConfig,
        font: Option<Arc<Font>>,
        chain: Option<Chain>,
        now: Instant,
    ) -> Result<Self, VpxError> {
        let compositor = Compositor::new(
            CompositorConfig {
                width: config.width,
                height: config.height,
                layout: config.layout,
                fit: Fit::Cover,
                stall: config.stall,
            },
            font,
        )?;
        let encoder = Encoder::new(EncoderConfig {
            width: config.width,
            height: config.height,
            fps: config.fps,
            bitrate_kbps: config.bitrate_kbps,
            keyframe_interval: config.fps * 10,
        })?;
        Ok(Self {
            config,
            compositor,
            decoders: HashMap::new(),
            encoder,
            chain,
            start: now,
            ticks: 0,
            force_keyframe: false,
            out: VecDeque::new(),
            stats: Stats::default(),
        })
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The compositor (for tile positions).
    pub fn compositor(&self) -> &Compositor {
        &self.compositor
    }

    fn period(&self) -> Duration {
        Duration::from_secs(1) / self.config.fps.max(1)
    }

    /// When the next frame is due.
    pub fn next_tick(&self) -> Instant {
        self.start + self.period() * self.ticks as u32
    }

    /// Takes one input.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::Track { track, participant, name, order } => {
                self.compositor.join_in_order(&track, &participant, &name, order);
                self.decoders.entry(track).or_default();
            }
            Input::Gone { track } => {
                self.compositor.leave(&track);
                self.decoders.remove(&track);
            }
            Input::Frame { track, payload, keyframe, contiguous, .. } => {
                let Some(decoder) = self.decoders.get_mut(&track) else { return };
                let pushed = decoder.push(&payload, keyframe, contiguous, now);
                if pushed.error {
                    self.stats.decode_errors += 1;
                }
                if pushed.want_keyframe {
                    self.out.push_back(Output::RequestKeyframe { track: track.clone() });
                }
                if let Some(frame) = pushed.frame {
                    self.compositor.frame(&track, frame, now);
                }
            }
            Input::Level { participant, level } => self.compositor.audio_level(&participant, level, now),
            Input::Layout(layout) => self.compositor.set_layout(layout),
            Input::Keyframe => self.force_keyframe = true,
        }
    }

    /// Composes and encodes a frame if one is due at `now` (skipping ticks that are past).
    pub fn tick(&mut self, now: Instant, wall_secs: u64) {
        if now < self.next_tick() {
            return;
        }
        let period = self.period();
        let behind =
            (now.saturating_duration_since(self.next_tick()).as_nanos() / period.as_nanos().max(1)) as u64;
        self.stats.skipped += behind;
        self.ticks += behind;
        let time = self.ticks * 90_000 / u64::from(self.config.fps.max(1));
        self.ticks += 1;
        let mut canvas = self.compositor.render(now).clone();
        if let Some(chain) = &mut self.chain {
            let events = chain.apply(&mut canvas, FrameContext { now, wall_secs });
            if !events.is_empty() {
                self.out.push_back(Output::Events(events));
            }
        }
        let keyframe = std::mem::take(&mut self.force_keyframe);
        match self.encoder.encode(&canvas, keyframe) {
            Ok(packets) => {
                for p in packets {
                    self.stats.composed += 1;
                    self.out.push_back(Output::Frame {
                        data: Bytes::from(p.data),
                        keyframe: p.keyframe,
                        time,
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "composition: encode failed"),
        }
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

#[cfg(test)]
#[path = "composition_tests.rs"]
mod tests;
