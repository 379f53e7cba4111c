//! From a room's media tap to a composition's or pipeline's inputs, sans-IO: VP8 video tracks
//! only (others are skipped), the highest simulcast layer only, audio tracks only for their
//! RFC 6464 levels (the active speaker). Keyframe requests go back for the layer that is used.

use std::collections::HashMap;
use std::sync::Arc;

use super::composition::Input;
use crate::media::tap::{Codec, MediaKind, Rid, TapEvent, TapTrack};

/// The tap-to-inputs adapter of one composition or pipeline.
#[derive(Default)]
pub struct Feed {
    /// Video tracks used, with the layer taken.
    video: HashMap<String, Option<Rid>>,
    /// Audio tracks' participants.
    audio: HashMap<String, String>,
    /// Only this track (a pipeline); `None`: every video track (a composition).
    only: Option<String>,
    /// Tracks never to use (the composition's own output, pipelines' outputs).
    skip: Vec<String>,
}

impl Feed {
    /// A feed of every VP8 video track of the room but those in `skip`.
    pub fn room(skip: Vec<String>) -> Self {
        Self { skip, ..Self::default() }
    }

    /// A feed of one track.
    pub fn track(track: &str) -> Self {
        Self { only: Some(track.to_owned()), ..Self::default() }
    }

    /// Whether `track` is fed.
    pub fn has(&self, track: &str) -> bool {
        self.video.contains_key(track)
    }

    /// The layer to ask keyframes of for `track`.
    pub fn layer(&self, track: &str) -> Option<Rid> {
        self.video.get(track).copied().flatten()
    }

    /// Skips `track` from now on (an output published after the feed started).
    pub fn skip(&mut self, track: &str) {
        self.skip.push(track.to_owned());
    }

    fn wanted(&self, t: &TapTrack) -> bool {
        !self.skip.contains(&t.id) && self.only.as_ref().is_none_or(|o| *o == t.id)
    }

    /// The inputs one tap event makes.
    pub fn event(&mut self, event: TapEvent) -> Option<Input> {
        match event {
            TapEvent::TrackAdded(t) => self.added(&t),
            TapEvent::TrackRemoved { track } => {
                self.audio.remove(&track);
                self.video.remove(&track).map(|_| Input::Gone { track })
            }
            TapEvent::Frame(f) => {
                if let Some(participant) = self.audio.get(&*f.track) {
                    let level = f.audio_level?;
                    // RFC 6464 levels arrive as -dBov (0 loudest, -127 silent).
                    return Some(Input::Level { participant: participant.clone(), level });
                }
                let layer = self.video.get(&*f.track)?;
                if *layer != f.rid {
                    return None;
                }
                Some(Input::Frame {
                    track: f.track.to_string(),
                    payload: f.payload,
                    keyframe: f.keyframe,
                    contiguous: f.contiguous,
                    time: f.time,
                })
            }
        }
    }

    fn added(&mut self, t: &Arc<TapTrack>) -> Option<Input> {
        match t.kind {
            MediaKind::Audio if self.only.is_none() => {
                self.audio.insert(t.id.clone(), t.participant.clone());
                None
            }
            MediaKind::Video if t.codec == Codec::Vp8 && self.wanted(t) => {
                self.video.insert(t.id.clone(), t.rids.last().copied());
                let name = t.name.clone().unwrap_or_else(|| t.participant.clone());
                Some(Input::Track { track: t.id.clone(), participant: t.participant.clone(), name })
            }
            _ => None,
        }
    }
}
