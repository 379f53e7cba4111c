//! Served tracks: tracks of a room whose frames come from inside the node (a composition, a
//! filter pipeline) instead of a publishing peer. They are in the room's track list like any
//! other, receivers subscribe to them the same way, and receivers' keyframe requests go to their
//! source (over a channel it reads). A served track goes when its source closes it or is gone.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid};
use switchboard_protocol::ChannelName;
use tokio::sync::mpsc;

use super::{Engine, Track};
use crate::media::tap::{TapFrame, TapTrack};
use crate::rtc::TrackInfo;
use crate::rtc::sfu::Layers;

/// The owner of every served track (no peer has this id).
pub const SERVER: &str = "server";

/// What the engine keeps of a served track's source.
pub(super) struct Source {
    /// Keyframe requests of the track's receivers (dropped when the source is behind).
    keyframes: mpsc::Sender<()>,
}

impl Engine {
    /// Adds a served video track to `room`; returns its id.
    pub(super) fn serve_open(
        &mut self,
        room: ChannelName,
        label: String,
        name: String,
        keyframes: mpsc::Sender<()>,
    ) -> String {
        self.track_seq += 1;
        let id = format!("{SERVER}-{label}-{}", self.track_seq);
        let info = TrackInfo {
            id: id.clone(),
            participant: SERVER.to_owned(),
            name: Some(name.clone()),
            kind: "video",
            label: label.clone(),
            layers: Vec::new(),
        };
        let track = Track {
            info,
            room: room.clone(),
            owner: SERVER.to_owned(),
            mid: Mid::from("served"),
            kind: MediaKind::Video,
            layers: Layers::new(Vec::new()),
            created: self.track_seq,
            keyframe_requests: Vec::new(),
            stats: Default::default(),
            tap: Some(Arc::new(TapTrack {
                id: id.clone(),
                room: room.clone(),
                participant: SERVER.to_owned(),
                name: Some(name),
                label,
                kind: MediaKind::Video,
                codec: Codec::Vp8,
                clock_rate: 90_000,
                rids: Vec::new(),
                order: self.track_seq,
            })),
        };
        self.tracks.insert(id.clone(), track);
        self.served.insert(id.clone(), Source { keyframes });
        self.dirty_rooms.insert(room);
        id
    }

    /// Removes a served track.
    pub(super) fn serve_close(&mut self, track: &str) {
        if self.served.remove(track).is_some()
            && let Some(t) = self.tracks.remove(track)
        {
            self.dirty_rooms.insert(t.room);
            self.release(track);
            if !self.taps.is_empty() {
                self.tap_removed(track);
            }
        }
    }

    /// A served track's receivers want a keyframe: tell its source; `false` when the track is
    /// not served.
    pub(super) fn serve_keyframe(&mut self, track: &str) -> bool {
        let Some(source) = self.served.get(track) else {
            return false;
        };
        if source.keyframes.is_closed() {
            self.serve_close(track);
        } else {
            let _ = source.keyframes.try_send(());
        }
        true
    }

    /// Writes a served VP8 frame (`time`: 90 kHz, extended) to the track's receivers and taps
    /// (a recording of the room records it like any track).
    pub(super) fn serve_frame(&mut self, track: &str, data: Bytes, keyframe: bool, time: u64) {
        if !self.served.contains_key(track) {
            return;
        }
        let now = Instant::now();
        if !self.taps.is_empty() {
            self.taps.retain(|t| !t.closed());
            if let Some(info) = self.tracks.get(track).and_then(|t| t.tap.clone()) {
                let frame = TapFrame {
                    track: Arc::from(track),
                    rid: None,
                    payload: data.clone(),
                    time,
                    clock_rate: 90_000,
                    keyframe,
                    contiguous: true,
                    lost: 0,
                    audio_level: None,
                    voice: None,
                    at: now,
                };
                self.tap_offer(&info, frame);
            }
        }
        let time = MediaTime::new(time, Frequency::NINETY_KHZ);
        let mut sent = 0u64;
        let mut wanted = false;
        for peer in &mut self.peers {
            if !peer.connected {
                continue;
            }
            for (mid, r) in peer.receivers.iter_mut() {
                if r.track.as_deref() != Some(track) {
                    continue;
                }
                let verdict = r.forward.video(None, keyframe, None);
                wanted |= verdict.keyframe;
                if !verdict.send {
                    continue;
                }
                let Some(writer) = peer.rtc.writer(*mid) else { continue };
                let Some(pt) = writer.payload_params().find(|p| p.spec().codec == Codec::Vp8).map(|p| p.pt())
                else {
                    tracing::debug!(peer = %peer.id, %mid, "no VP8 on this m-line");
                    continue;
                };
                match writer.write(pt, now, time, data.to_vec()) {
                    Ok(()) => sent += 1,
                    Err(_) => peer.rtc.disconnect(),
                }
                peer.dirty = true;
            }
        }
        self.metrics.rtc_frames_forwarded.add(sent);
        self.metrics.rtc_bytes_forwarded.add(sent * data.len() as u64);
        if wanted {
            self.serve_keyframe(track);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use str0m::Rtc;
    use str0m::media::Direction;
    use tokio::net::UdpSocket;

    use super::*;
    use crate::config::Config;
    use crate::rtc::{Negotiation, Role};

    async fn engine() -> Engine {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let candidate = socket.local_addr().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let hub = Arc::new(crate::hub::Hub::new(metrics.clone()));
        let broker = Arc::new(crate::broker::memory::MemoryBroker::new(hub));
        Engine::new(socket, candidate, Arc::new(Config::default()), broker, metrics)
    }

    const MID: &str = "v0";

    /// A WHEP player's offer: one video m-line (mid [`MID`]), receive only; `pin` as `?track=`.
    fn whep(pin: Option<String>) -> Negotiation {
        let mut client = Rtc::builder().build(Instant::now());
        let mut change = client.sdp_api();
        change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, _pending) = change.apply().unwrap();
        let sdp = offer.to_sdp_string();
        let mid = sdp.lines().find_map(|l| l.strip_prefix("a=mid:")).unwrap().to_owned();
        let sdp = sdp
            .replace(&format!("a=mid:{mid}\r\n"), &format!("a=mid:{MID}\r\n"))
            .replace(&format!("a=group:BUNDLE {mid}\r\n"), &format!("a=group:BUNDLE {MID}\r\n"));
        Negotiation { offer: Some(sdp), pin, ..Negotiation::default() }
    }

    fn carried(engine: &Engine, peer: &str) -> Option<String> {
        let p = engine.peers.iter().find(|p| p.id == peer).unwrap();
        p.receivers.values().next().and_then(|r| r.track.clone())
    }

    #[tokio::test]
    async fn a_served_track_is_tapped_like_a_published_one() {
        let mut engine = engine().await;
        let room = ChannelName::new("room:a").unwrap();
        let (tx, mut tap) = mpsc::channel(8);
        engine.tap_open(room.clone(), tx);
        let (kf, _keyframes) = mpsc::channel(4);
        let id = engine.serve_open(room.clone(), "composition".into(), "Composition".into(), kf);
        engine.serve_frame(&id, Bytes::from_static(b"vp8"), true, 1 << 33);
        let Ok(crate::media::tap::TapEvent::TrackAdded(t)) = tap.try_recv() else { panic!() };
        assert_eq!((t.id.as_str(), t.codec, t.clock_rate), (id.as_str(), Codec::Vp8, 90_000));
        let Ok(crate::media::tap::TapEvent::Frame(f)) = tap.try_recv() else { panic!() };
        assert_eq!((f.time, f.keyframe, &f.payload[..]), (1 << 33, true, &b"vp8"[..]));
        engine.serve_close(&id);
        assert!(
            matches!(tap.try_recv(), Ok(crate::media::tap::TapEvent::TrackRemoved { track }) if track == id)
        );
    }

    #[tokio::test]
    async fn a_served_track_is_listed_pinned_by_whep_asked_for_keyframes_and_removed() {
        let mut engine = engine().await;
        let room = ChannelName::new("room:a").unwrap();
        let (kf, mut keyframes) = mpsc::channel(4);
        let id = engine.serve_open(room.clone(), "composition".into(), "Composition".into(), kf);
        assert!(id.starts_with("server-composition-"));
        let listed = engine.room_tracks(&room);
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].participant.as_str(), listed[0].kind), (SERVER, "video"));

        let pinned = engine.open(Role::Whep { room: room.clone() }, whep(Some(id.clone()))).unwrap().peer;
        let follower = engine.open(Role::Whep { room: room.clone() }, whep(None)).unwrap().peer;
        // The receivers (str0m announces the m-lines once connected; nobody connects here).
        for i in 0..engine.peers.len() {
            engine.ensure_receiver(i, Mid::from(MID));
        }
        engine.announce();
        assert_eq!(carried(&engine, &pinned), Some(id.clone()));
        assert_eq!(carried(&engine, &follower), Some(id.clone()), "the newest video track");
        // A newer served track: the follower moves to it, the pinned player stays.
        let (kf2, _k2) = mpsc::channel(4);
        let other = engine.serve_open(room.clone(), "pipeline".into(), "Filtered".into(), kf2);
        engine.announce();
        assert_eq!(carried(&engine, &pinned), Some(id.clone()));
        assert_eq!(carried(&engine, &follower), Some(other));

        // Keyframe requests reach the source; frames of a track nobody serves are ignored.
        engine.request_keyframe(&id, None, Instant::now());
        assert!(keyframes.try_recv().is_ok());
        engine.serve_frame("server-nothing-9", Bytes::from_static(b"x"), true, 0);

        engine.serve_close(&id);
        engine.announce();
        assert_eq!(engine.room_tracks(&room).len(), 1);
        assert_eq!(carried(&engine, &pinned), None, "its track is gone");
        // A source that went away: its track goes at the next keyframe request.
        drop(_k2);
        let last = engine.room_tracks(&room)[0].id.clone();
        engine.request_keyframe(&last, None, Instant::now());
        assert!(engine.room_tracks(&room).is_empty());
    }
}
