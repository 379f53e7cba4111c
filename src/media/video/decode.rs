//! One incoming VP8 track's decoder, with the bookkeeping a live stream needs: after a gap
//! (lost packets, frames the tap dropped, a decode error) it waits for a keyframe, and asks the
//! publisher for one at most every [`KEYFRAME_RETRY`].

use std::time::{Duration, Instant};

use super::{Decoder, I420};

/// The least time between two keyframe requests for one track.
pub const KEYFRAME_RETRY: Duration = Duration::from_millis(500);

/// What pushing a frame gave.
#[derive(Debug, Default)]
pub struct Pushed {
    /// The decoded picture, if any.
    pub frame: Option<I420>,
    /// Ask the publisher for a keyframe now.
    pub want_keyframe: bool,
    /// The frame did not decode (counted by the caller).
    pub error: bool,
}

/// A track's decoder.
#[derive(Default)]
pub struct TrackDecoder {
    decoder: Option<Decoder>,
    waiting: bool,
    asked: Option<Instant>,
    started: bool,
}

impl TrackDecoder {
    /// A decoder that waits for the first keyframe.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether it waits for a keyframe.
    pub fn waiting(&self) -> bool {
        self.waiting || !self.started
    }

    /// Pushes one depacketized VP8 frame; `contiguous` is false after any gap.
    pub fn push(&mut self, payload: &[u8], keyframe: bool, contiguous: bool, now: Instant) -> Pushed {
        if !contiguous {
            self.waiting = true;
        }
        if keyframe {
            self.waiting = false;
            self.started = true;
        }
        if self.waiting() {
            return Pushed { want_keyframe: self.ask(now), ..Pushed::default() };
        }
        if self.decoder.is_none() {
            self.decoder = Decoder::new().ok();
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Pushed { error: true, ..Pushed::default() };
        };
        match decoder.decode(payload) {
            Ok(frame) => Pushed { frame, ..Pushed::default() },
            Err(_) => {
                self.waiting = true;
                Pushed { want_keyframe: self.ask(now), error: true, frame: None }
            }
        }
    }

    fn ask(&mut self, now: Instant) -> bool {
        if self.asked.is_some_and(|at| now.saturating_duration_since(at) < KEYFRAME_RETRY) {
            return false;
        }
        self.asked = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::video::{Encoder, EncoderConfig};

    #[test]
    fn waits_for_a_keyframe_after_a_gap_and_asks_at_a_bounded_rate() {
        let mut enc = Encoder::new(EncoderConfig {
            width: 64,
            height: 64,
            fps: 15,
            bitrate_kbps: 200,
            keyframe_interval: 1000,
        })
        .unwrap();
        let src = I420::filled(64, 64, [200, 0, 0]).unwrap();
        let frames: Vec<_> = (0..6).map(|i| enc.encode(&src, i == 4).unwrap().remove(0)).collect();
        let t0 = Instant::now();
        let mut d = TrackDecoder::new();
        // A delta frame first: nothing, ask for a keyframe.
        let p = d.push(&frames[1].data, false, true, t0);
        assert!(p.frame.is_none() && p.want_keyframe);
        assert!(
            !d.push(&frames[2].data, false, true, t0 + Duration::from_millis(100)).want_keyframe,
            "not again so soon"
        );
        let p = d.push(&frames[0].data, true, true, t0 + Duration::from_millis(200));
        assert!(p.frame.is_some() && !d.waiting());
        assert!(d.push(&frames[1].data, false, true, t0).frame.is_some());
        // A gap: wait again, ask again (the retry time has passed).
        let p = d.push(&frames[3].data, false, false, t0 + Duration::from_secs(1));
        assert!(p.frame.is_none() && p.want_keyframe);
        assert!(d.push(&frames[4].data, true, true, t0 + Duration::from_secs(1)).frame.is_some());
        // Garbage: an error, then waiting.
        let p = d.push(&[0x10, 0x02, 0x00, 0x9d, 0x01], false, true, t0 + Duration::from_secs(2));
        assert!(p.error && p.want_keyframe && d.waiting());
    }
}
