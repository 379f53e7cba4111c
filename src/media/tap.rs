//! The media tap: a room's media, seen from outside the engine task.
//!
//! [`crate::rtc::RtcService::tap`] subscribes to a room and returns a [`MediaTap`]; its
//! [`MediaTap::recv`] yields, in order per room:
//!
//! - [`TapEvent::TrackAdded`] when a track's first frame arrives (its codec is known from then),
//!   or at once for tracks already flowing when the tap starts;
//! - [`TapEvent::Frame`] for every depacketized frame of every layer (str0m's frame mode: a whole
//!   VP8/H.264 frame or Opus packet), before any SFU layer selection;
//! - [`TapEvent::TrackRemoved`] when the publisher stops or leaves.
//!
//! Delivery never slows the engine: events go through a bounded channel with `try_send`. When it
//! is full, frames are dropped (counted in `switchboard_media_tap_dropped_total`), and the next
//! frame delivered of that track says how many were lost before it ([`TapFrame::lost`]) and is
//! not [`TapFrame::contiguous`]: a video consumer then waits for a keyframe and asks for one
//! with [`MediaTap::request_keyframe`] (rate-limited per track in the engine, like the SFU's own
//! requests). Track events are never dropped: they wait (in order) until there is room.
//!
//! Dropping the [`MediaTap`] unsubscribes; with no tap the engine does no extra work per frame.
//!
//! Timestamps: [`TapFrame::time`] is the RTP timestamp **extended to 64 bits** (it never wraps),
//! in units of [`TapFrame::clock_rate`] (48000 for Opus, 90000 for video), per RTP stream (each
//! simulcast layer counts on its own). [`TapFrame::at`] is when the engine received the frame's
//! first packet.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
pub use str0m::format::Codec;
pub use str0m::media::{MediaKind, Rid};
use switchboard_protocol::ChannelName;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// A track of the tapped room.
#[derive(Debug, Clone, PartialEq)]
pub struct TapTrack {
    /// The track id, as in the room's track list.
    pub id: String,
    /// Its room.
    pub room: ChannelName,
    /// The publishing participant's client id (`whip` for a WHIP ingest).
    pub participant: String,
    /// The participant's display name.
    pub name: Option<String>,
    /// The publisher's label (`camera`, `mic`, ...).
    pub label: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The codec of its first frame.
    pub codec: Codec,
    /// The RTP clock rate of that codec.
    pub clock_rate: u32,
    /// Simulcast layers (rids), low to high; empty without simulcast.
    pub rids: Vec<Rid>,
    /// When it was published on this node, as a sequence: earlier tracks have smaller ones
    /// (a tap may learn of tracks in another order, at their first frames).
    pub order: u64,
}

/// One depacketized frame.
#[derive(Debug, Clone)]
pub struct TapFrame {
    /// The track it belongs to.
    pub track: Arc<str>,
    /// The simulcast layer, when the track has layers.
    pub rid: Option<Rid>,
    /// The frame as str0m hands it over (VP8 frame, H.264 access unit in Annex B, Opus packet).
    pub payload: Bytes,
    /// The RTP timestamp extended to 64 bits (no wrap), in `clock_rate` units.
    pub time: u64,
    /// Units of `time` per second.
    pub clock_rate: u32,
    /// A video keyframe (always `false` for audio).
    pub keyframe: bool,
    /// Follows the previous frame of its stream without a gap (lost packets or dropped frames).
    pub contiguous: bool,
    /// Frames of this track the tap dropped right before this one (the consumer was slow).
    pub lost: u64,
    /// RFC 6464 audio level (0 loudest, -127 silence), when the publisher sends it.
    pub audio_level: Option<i8>,
    /// RFC 6464 voice activity flag, when sent.
    pub voice: Option<bool>,
    /// When the engine received the frame's first packet.
    pub at: Instant,
}

/// What a tap yields.
#[derive(Debug, Clone)]
pub enum TapEvent {
    /// A track is flowing: its first frame follows.
    TrackAdded(Arc<TapTrack>),
    /// A track is gone.
    TrackRemoved {
        /// Its id.
        track: String,
    },
    /// A frame.
    Frame(TapFrame),
}

/// A request from a tap's owner to the engine.
#[derive(Debug)]
pub(crate) enum TapRequest {
    /// Ask the publisher of `track` for a keyframe of layer `rid`.
    Keyframe { track: String, rid: Option<Rid> },
}

/// The subscriber's end of a tap. Dropping it unsubscribes.
#[derive(Debug)]
pub struct MediaTap {
    pub(crate) events: mpsc::Receiver<TapEvent>,
    pub(crate) requests: mpsc::Sender<crate::rtc::Command>,
    pub(crate) room: ChannelName,
}

impl MediaTap {
    /// The next event; `None` once the engine stopped.
    pub async fn recv(&mut self) -> Option<TapEvent> {
        self.events.recv().await
    }

    /// The tapped room.
    pub fn room(&self) -> &ChannelName {
        &self.room
    }

    /// Asks the publisher of `track` for a keyframe of layer `rid` (`None`: no simulcast).
    /// Never waits: a request that does not fit the engine's queue is dropped (ask again later).
    pub fn request_keyframe(&self, track: &str, rid: Option<Rid>) {
        let request = TapRequest::Keyframe { track: track.to_owned(), rid };
        let _ = self.requests.try_send(crate::rtc::Command::Tap(request));
    }
}

/// The engine's end of one tap: what was announced, what waits, what was dropped.
#[derive(Debug)]
pub(crate) struct TapSender {
    pub(crate) room: ChannelName,
    tx: mpsc::Sender<TapEvent>,
    /// Track events that did not fit yet (frames are dropped while any wait).
    pending: VecDeque<TapEvent>,
    announced: HashSet<String>,
    /// Frames dropped per track since its last delivered frame.
    lost: HashMap<String, u64>,
}

impl TapSender {
    pub(crate) fn new(room: ChannelName, tx: mpsc::Sender<TapEvent>) -> Self {
        Self { room, tx, pending: VecDeque::new(), announced: HashSet::new(), lost: HashMap::new() }
    }

    /// The subscriber is gone.
    pub(crate) fn closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Whether `track` was announced to this tap.
    pub(crate) fn knows(&self, track: &str) -> bool {
        self.announced.contains(track)
    }

    /// Announces a track (once).
    pub(crate) fn added(&mut self, track: Arc<TapTrack>) {
        if self.announced.insert(track.id.clone()) {
            self.pending.push_back(TapEvent::TrackAdded(track));
            self.flush();
        }
    }

    /// A track is gone: tells the subscriber if it knew it.
    pub(crate) fn removed(&mut self, track: &str) {
        if self.announced.remove(track) {
            self.lost.remove(track);
            self.pending.push_back(TapEvent::TrackRemoved { track: track.to_owned() });
            self.flush();
        }
    }

    /// Offers a frame; `false` when it was dropped (counted against its track).
    pub(crate) fn frame(&mut self, mut frame: TapFrame) -> bool {
        self.flush();
        let track = frame.track.clone();
        if self.pending.is_empty() {
            let lost = self.lost.get(&*track).copied().unwrap_or(0);
            frame.lost = lost;
            frame.contiguous &= lost == 0;
            if self.tx.try_send(TapEvent::Frame(frame)).is_ok() {
                self.lost.remove(&*track);
                return true;
            }
        }
        *self.lost.entry(track.to_string()).or_insert(0) += 1;
        false
    }

    fn flush(&mut self) {
        while let Some(event) = self.pending.pop_front() {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.pending.push_front(event);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    self.pending.clear();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(id: &str) -> Arc<TapTrack> {
        Arc::new(TapTrack {
            id: id.into(),
            room: ChannelName::new("room:r").unwrap(),
            participant: "p".into(),
            name: None,
            label: "mic".into(),
            kind: MediaKind::Audio,
            codec: Codec::Opus,
            clock_rate: 48_000,
            rids: Vec::new(),
            order: 0,
        })
    }

    fn frame(id: &str, time: u64) -> TapFrame {
        TapFrame {
            track: Arc::from(id),
            rid: None,
            payload: Bytes::from_static(b"x"),
            time,
            clock_rate: 48_000,
            keyframe: false,
            contiguous: true,
            lost: 0,
            audio_level: None,
            voice: None,
            at: Instant::now(),
        }
    }

    #[test]
    fn a_full_tap_drops_frames_keeps_track_events_in_order_and_reports_the_loss() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut tap = TapSender::new(ChannelName::new("room:r").unwrap(), tx);
        tap.added(track("a"));
        assert!(tap.frame(frame("a", 0)));
        assert!(!tap.frame(frame("a", 960)), "full: dropped");
        tap.removed("b");
        tap.added(track("b"));
        assert!(!tap.frame(frame("a", 1920)), "a track event waits: frames are dropped");
        assert!(matches!(rx.try_recv(), Ok(TapEvent::TrackAdded(t)) if t.id == "a"));
        assert!(matches!(rx.try_recv(), Ok(TapEvent::Frame(f)) if f.time == 0 && f.lost == 0));
        assert!(tap.frame(frame("a", 2880)), "room again: the waiting event, then this frame");
        assert!(matches!(rx.try_recv(), Ok(TapEvent::TrackAdded(t)) if t.id == "b"));
        let Ok(TapEvent::Frame(f)) = rx.try_recv() else { panic!() };
        assert_eq!((f.time, f.lost, f.contiguous), (2880, 2, false));
        assert!(tap.frame(frame("a", 3840)));
        let Ok(TapEvent::Frame(f)) = rx.try_recv() else { panic!() };
        assert_eq!((f.lost, f.contiguous), (0, true), "the loss is told once");
        tap.removed("a");
        assert!(matches!(rx.try_recv(), Ok(TapEvent::TrackRemoved { track }) if track == "a"));
        drop(rx);
        assert!(tap.closed());
    }
}
