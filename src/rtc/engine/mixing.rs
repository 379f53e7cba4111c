//! The audio MCU's seam in the engine: receiving audio m-lines marked `mix` are fed by the room's
//! mixer ([`crate::media::mix`], a task of its own) instead of one track each. The mixer reads
//! the room through a media tap (bounded: the engine never waits for it), and the engine writes
//! the packets it sends back: a speaker's own mix-minus, else the shared mix. A room's mixer
//! starts with its first mix receiver and stops with its last (its tap closes with it); a
//! room-mix recording is a demand beside them ([`Engine::mix_record`]), counted against
//! `max_mixed_rooms`.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid};
use switchboard_protocol::ChannelName;

use super::{Engine, Peer};
use crate::media::mix::MixConfig;
use crate::media::mix::run::{self, MixHandle, MixIn, MixOut};
use crate::rtc::{EngineError, Role};

/// A room's running mixer and what it was told about the room's audio tracks.
pub(super) struct Mix {
    handle: MixHandle,
    /// Audio tracks fed to it, and whether their owner listens.
    inputs: HashMap<String, bool>,
}

/// Whether `p` receives (or, a WHEP player not connected yet, will receive) the room's mix.
fn mixed(p: &Peer) -> bool {
    p.mix_audio || p.receivers.values().any(|r| r.mix)
}

impl Mix {
    /// A receiver of the shared mix's packets.
    pub(super) fn shared(&self) -> tokio::sync::broadcast::Receiver<(u32, bytes::Bytes)> {
        self.handle.shared.subscribe()
    }
}

/// The track id that asks for the room's mix in `subscribe`.
pub const MIX_TRACK: &str = "mix";

impl Engine {
    /// Rooms with mixed participants, and the mixed participants, on this node.
    fn mix_load(&self) -> (HashSet<&ChannelName>, usize) {
        let mut rooms = HashSet::new();
        let mut participants = 0;
        for p in self.peers.iter().filter(|p| mixed(p)) {
            participants += 1;
            rooms.extend(p.role.room());
        }
        rooms.extend(self.mix_recordings.keys());
        (rooms, participants)
    }

    /// Whether one more mix receiver fits in `room` (`max_mixed_rooms`, `max_mixed_participants`).
    pub(super) fn admit_mix(&self, room: &ChannelName) -> Result<(), EngineError> {
        let (rooms, receivers) = self.mix_load();
        let max = self.config.max_mixed_rooms;
        if !rooms.contains(room) && rooms.len() >= max {
            self.mix_metrics_refused();
            return Err(EngineError::MixerFull { what: "rooms", max });
        }
        let max = self.config.max_mixed_participants;
        if receivers >= max {
            self.mix_metrics_refused();
            return Err(EngineError::MixerFull { what: "participants", max });
        }
        Ok(())
    }

    fn mix_metrics_refused(&self) {
        self.mix_metrics.refused.add(1);
    }

    /// Whether the room of `peer` mixes audio for every participant (`audio_mix` on its namespace).
    pub(super) fn room_mixes(&self, peer: &Peer) -> bool {
        peer.role.room().is_some_and(|r| self.config.channel_options(r).audio_mix)
    }

    /// Starts and stops mixers and tells them the rooms' audio tracks, after changes.
    pub(super) fn sync_mixes(&mut self) {
        if !std::mem::take(&mut self.mix_dirty) {
            return;
        }
        let mut wanted: HashMap<ChannelName, HashMap<String, bool>> = HashMap::new();
        let mut participants = 0i64;
        for room in self.mix_recordings.keys() {
            wanted.entry(room.clone()).or_default();
        }
        for p in self.peers.iter().filter(|p| mixed(p)) {
            participants += 1;
            if let Some(room) = p.role.room() {
                wanted.entry(room.clone()).or_default();
            }
        }
        for t in self.tracks.values().filter(|t| t.kind == MediaKind::Audio) {
            if let Some(inputs) = wanted.get_mut(&t.room) {
                let listens = self.index(&t.owner).is_some_and(|o| mixed(&self.peers[o]));
                inputs.insert(t.info.id.clone(), listens);
            }
        }
        let gauge = &self.mix_metrics.participants;
        gauge.add(participants - gauge.get());
        self.mixes.retain(|room, _| wanted.contains_key(room));
        for (room, inputs) in wanted {
            if !self.mixes.contains_key(&room) {
                let mix = self.start_mix(&room);
                self.mixes.insert(room.clone(), mix);
            }
            let Some(mix) = self.mixes.get_mut(&room) else { continue };
            for (input, listens) in &inputs {
                if mix.inputs.get(input) != Some(listens) {
                    let _ = mix.handle.tx.try_send(MixIn::Listen { input: input.clone(), listens: *listens });
                }
            }
            mix.inputs = inputs;
        }
    }

    /// A room-mix recording's demand: keeps `room`'s mixer running (started if need be, within
    /// `max_mixed_rooms`) and gives its shared mix, until [`Engine::mix_release`].
    pub(super) fn mix_record(
        &mut self,
        room: &ChannelName,
    ) -> Result<tokio::sync::broadcast::Receiver<(u32, bytes::Bytes)>, EngineError> {
        let (rooms, _) = self.mix_load();
        let max = self.config.max_mixed_rooms;
        if !rooms.contains(room) && rooms.len() >= max {
            self.mix_metrics_refused();
            return Err(EngineError::MixerFull { what: "rooms", max });
        }
        *self.mix_recordings.entry(room.clone()).or_default() += 1;
        self.mix_dirty = true;
        self.sync_mixes();
        self.mixes.get(room).map(Mix::shared).ok_or(EngineError::Failed)
    }

    /// A room-mix recording ended: its room's mixer stops unless someone else needs it.
    pub(super) fn mix_release(&mut self, room: &ChannelName) {
        if let Some(n) = self.mix_recordings.get_mut(room) {
            *n -= 1;
            if *n == 0 {
                self.mix_recordings.remove(room);
            }
        }
        self.mix_dirty = true;
        self.sync_mixes();
    }

    /// Starts `room`'s mixer, on a tap of the room.
    fn start_mix(&mut self, room: &ChannelName) -> Mix {
        let out = self.mix_tx.clone();
        let config = MixConfig {
            speakers: self.config.mix_speakers,
            jitter_frames: (self.config.mix_jitter_ms / 20).max(1) as usize,
            bitrate: 32_000,
        };
        tracing::debug!(%room, "audio mixer started");
        let (media, rx) = tokio::sync::mpsc::channel(run::INPUT_QUEUE);
        self.tap_open(room.clone(), media);
        let r = room.clone();
        let handle = run::spawn(config, self.mix_metrics.clone(), rx, move |o| {
            // A busy engine drops a tick's packets (the players conceal them).
            !matches!(out.try_send((r.clone(), o)), Err(tokio::sync::mpsc::error::TrySendError::Closed(_)))
        });
        Mix { handle, inputs: HashMap::new() }
    }

    /// Writes a tick of `room`'s mixer to its mix receivers.
    pub(super) fn mix_out(&mut self, room: &ChannelName, out: MixOut) {
        let now = Instant::now();
        let time = MediaTime::new(u64::from(out.ts), Frequency::FORTY_EIGHT_KHZ);
        for peer in &mut self.peers {
            if !peer.connected || peer.role.room() != Some(room) {
                continue;
            }
            let mids: Vec<Mid> = peer.receivers.iter().filter(|(_, r)| r.mix).map(|(m, _)| *m).collect();
            if mids.is_empty() {
                continue;
            }
            let own = out.minus.iter().find(|(input, _)| peer.published.values().any(|t| t == input));
            let Some(packet) = own.map(|(_, p)| p).or(out.shared.as_ref()) else {
                continue;
            };
            for mid in mids {
                let Some(writer) = peer.rtc.writer(mid) else { continue };
                let Some(pt) =
                    writer.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt())
                else {
                    continue;
                };
                if writer.write(pt, now, time, packet.to_vec()).is_err() {
                    peer.rtc.disconnect();
                }
                peer.dirty = true;
            }
        }
    }

    /// Whether a new mix receiver on peer `i` in its room is admitted; for WHEP's `audio=mix`
    /// before the peer exists.
    pub(super) fn check_whep_mix(&self, role: &Role, mix: bool) -> Result<(), EngineError> {
        match (role, mix) {
            (Role::Whep { room }, true) => self.admit_mix(room),
            _ => Ok(()),
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
    use crate::rtc::Negotiation;

    async fn engine(config: Config) -> Engine {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let candidate = socket.local_addr().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let hub = Arc::new(crate::hub::Hub::new(metrics.clone()));
        let broker = Arc::new(crate::broker::memory::MemoryBroker::new(hub));
        Engine::new(socket, candidate, Arc::new(config), broker, metrics)
    }

    /// A WHEP player's offer: one audio m-line, receive only.
    fn whep_offer() -> Negotiation {
        let mut client = Rtc::builder().build(Instant::now());
        let mut change = client.sdp_api();
        change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let (offer, _pending) = change.apply().unwrap();
        Negotiation { offer: Some(offer.to_sdp_string()), mix: true, ..Negotiation::default() }
    }

    fn room(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    #[tokio::test]
    async fn a_whep_mix_player_starts_the_room_mixer_whose_shared_mix_is_offered_and_the_caps_hold() {
        let config = Config { max_mixed_rooms: 1, max_mixed_participants: 2, ..Config::default() };
        let mut engine = engine(config).await;
        let a = room("room:a");
        engine.open(Role::Whep { room: a.clone() }, whep_offer()).unwrap();
        engine.sync_mixes();
        assert_eq!(engine.mixes.len(), 1, "the room's mixer runs");
        assert_eq!(engine.mix_metrics.participants.get(), 1);
        // The shared mix is offered to whoever wants it (a room-mix recording): a packet per tick.
        let mut shared = engine.mixes[&a].shared();
        let (ts, packet) =
            tokio::time::timeout(std::time::Duration::from_secs(5), shared.recv()).await.unwrap().unwrap();
        assert!(!packet.is_empty());
        let (next, _) = shared.recv().await.unwrap();
        assert_eq!(next.wrapping_sub(ts), crate::media::mix::FRAME, "20 ms of RTP time apart");

        // A second room is over max_mixed_rooms; a second player of the first room is not.
        let err = engine.open(Role::Whep { room: room("room:b") }, whep_offer()).unwrap_err();
        assert_eq!(err, EngineError::MixerFull { what: "rooms", max: 1 });
        engine.open(Role::Whep { room: a.clone() }, whep_offer()).unwrap();
        // A third mix receiver is over max_mixed_participants.
        let err = engine.open(Role::Whep { room: a.clone() }, whep_offer()).unwrap_err();
        assert_eq!(err, EngineError::MixerFull { what: "participants", max: 2 });
        assert_eq!(engine.mix_metrics.refused.get(), 2);

        // The last mix receiver gone, the mixer stops.
        for p in std::mem::take(&mut engine.peers) {
            engine.forget(p);
        }
        engine.sync_mixes();
        assert!(engine.mixes.is_empty());
        assert_eq!(engine.mix_metrics.participants.get(), 0);
    }

    #[tokio::test]
    async fn a_mix_recording_holds_the_room_mixer_within_max_mixed_rooms_and_releases_it() {
        let config = Config { max_mixed_rooms: 1, ..Config::default() };
        let mut engine = engine(config).await;
        let (a, b) = (room("room:a"), room("room:b"));
        let mut shared = engine.mix_record(&a).unwrap();
        assert_eq!(engine.mixes.len(), 1, "the recording alone starts the room's mixer");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), shared.recv()).await;
        assert!(got.unwrap().is_ok(), "it receives the shared mix");
        // The recording's room counts against max_mixed_rooms, for players and recordings alike.
        let err = engine.open(Role::Whep { room: b.clone() }, whep_offer()).unwrap_err();
        assert_eq!(err, EngineError::MixerFull { what: "rooms", max: 1 });
        assert_eq!(engine.mix_record(&b).unwrap_err(), EngineError::MixerFull { what: "rooms", max: 1 });
        // A mixed player of the same room shares the mixer; the recording gone, it keeps running.
        let player = engine.open(Role::Whep { room: a.clone() }, whep_offer()).unwrap();
        engine.sync_mixes();
        engine.mix_release(&a);
        assert_eq!(engine.mixes.len(), 1, "the player still needs it");
        let _ = player;
        for p in std::mem::take(&mut engine.peers) {
            engine.forget(p);
        }
        engine.mix_dirty = true;
        engine.sync_mixes();
        assert!(engine.mixes.is_empty(), "nobody needs it: stopped");
        // Two recordings of one room: the mixer runs until the last one ends.
        let _one = engine.mix_record(&b).unwrap();
        let _two = engine.mix_record(&b).unwrap();
        engine.mix_release(&b);
        assert_eq!(engine.mixes.len(), 1);
        engine.mix_release(&b);
        assert!(engine.mixes.is_empty());
    }
}
