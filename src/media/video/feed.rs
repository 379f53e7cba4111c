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
    /// Tracks never to use (its own output).
    skip: Vec<String>,
}

impl Feed {
    /// A feed of every VP8 video track of the room's participants but those in `skip`: served
    /// tracks (other compositions, pipelines' outputs) are not participants, and two
    /// compositions of one room would otherwise show each other, recursively.
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
        let served = t.participant == crate::rtc::engine::SERVER;
        !self.skip.contains(&t.id)
            && match &self.only {
                Some(only) => *only == t.id,
                None => !served,
            }
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
                Some(Input::Track {
                    track: t.id.clone(),
                    participant: t.participant.clone(),
                    name,
                    order: t.order,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use switchboard_protocol::ChannelName;

    use super::*;
    use crate::media::tap::TapFrame;

    fn track(id: &str, kind: MediaKind, codec: Codec, rids: &[&str]) -> TapEvent {
        TapEvent::TrackAdded(Arc::new(TapTrack {
            id: id.into(),
            room: ChannelName::new("room:r").unwrap(),
            participant: format!("p-{id}"),
            name: Some(format!("Name {id}")),
            label: "camera".into(),
            kind,
            codec,
            clock_rate: 90_000,
            rids: rids.iter().map(|r| Rid::from(*r)).collect(),
            order: 0,
        }))
    }

    fn frame(id: &str, rid: Option<&str>, level: Option<i8>) -> TapEvent {
        TapEvent::Frame(TapFrame {
            track: Arc::from(id),
            rid: rid.map(Rid::from),
            payload: Bytes::from_static(b"f"),
            time: 7,
            clock_rate: 90_000,
            keyframe: true,
            contiguous: true,
            lost: 0,
            audio_level: level,
            voice: None,
            at: Instant::now(),
        })
    }

    #[test]
    fn a_room_feed_takes_vp8_video_at_its_highest_layer_and_audio_levels() {
        let mut feed = Feed::room(vec!["out".into()]);
        assert!(matches!(feed.event(track("v", MediaKind::Video, Codec::Vp8, &["q", "h", "f"])),
            Some(Input::Track { track, participant, name, .. }) if track == "v" && participant == "p-v" && name == "Name v"));
        assert!(feed.event(track("h264", MediaKind::Video, Codec::H264, &[])).is_none(), "not VP8: skipped");
        assert!(
            feed.event(track("out", MediaKind::Video, Codec::Vp8, &[])).is_none(),
            "its own output: skipped"
        );
        assert!(feed.event(track("a", MediaKind::Audio, Codec::Opus, &[])).is_none());
        let TapEvent::TrackAdded(t) = track("server-filtered-3", MediaKind::Video, Codec::Vp8, &[]) else {
            unreachable!()
        };
        let served = TapTrack { participant: crate::rtc::engine::SERVER.into(), ..(*t).clone() };
        assert!(
            feed.event(TapEvent::TrackAdded(Arc::new(served))).is_none(),
            "a served track (another composition, a pipeline's output): skipped"
        );
        assert!(feed.event(frame("v", Some("q"), None)).is_none(), "a lower layer");
        assert!(
            matches!(feed.event(frame("v", Some("f"), None)), Some(Input::Frame { track, time: 7, .. }) if track == "v")
        );
        assert_eq!(feed.layer("v"), Some(Rid::from("f")));
        assert!(
            matches!(feed.event(frame("a", None, Some(-30))), Some(Input::Level { participant, level: -30 }) if participant == "p-a")
        );
        assert!(feed.event(frame("a", None, None)).is_none(), "no level sent");
        assert!(feed.event(frame("h264", None, None)).is_none());
        assert!(
            matches!(feed.event(TapEvent::TrackRemoved { track: "v".into() }), Some(Input::Gone { track }) if track == "v")
        );
        assert!(feed.event(TapEvent::TrackRemoved { track: "a".into() }).is_none());
        assert!(!feed.has("v"));
    }

    #[test]
    fn a_track_feed_takes_only_its_track() {
        let mut feed = Feed::track("v");
        assert!(feed.event(track("w", MediaKind::Video, Codec::Vp8, &[])).is_none());
        assert!(feed.event(track("a", MediaKind::Audio, Codec::Opus, &[])).is_none());
        assert!(feed.event(track("v", MediaKind::Video, Codec::Vp8, &[])).is_some());
        assert!(feed.event(frame("w", None, None)).is_none());
        assert!(feed.event(frame("a", None, Some(-10))).is_none(), "no levels for a pipeline");
        assert!(feed.event(frame("v", None, None)).is_some());
    }
}
