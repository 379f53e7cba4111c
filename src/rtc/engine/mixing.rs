//! The audio MCU's seam in the engine: receiving audio m-lines marked `mix` are fed by the room's
//! mixer ([`crate::media::mix`], a task of its own) instead of one track each. The mixer reads
//! the room through a media tap (bounded: the engine never waits for it), and the engine writes
//! the packets it sends back: a speaker's own mix-minus, else the shared mix. A room's mixer
//! starts with its first mix receiver and stops with its last (its tap closes with it).

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

/// The track id that asks for the room's mix in `subscribe`.
pub const MIX_TRACK: &str = "mix";

impl Engine {
    /// Rooms with mix receivers, and the mix receivers, on this node.
    fn mix_load(&self) -> (HashSet<&ChannelName>, usize) {
        let mut rooms = HashSet::new();
        let mut receivers = 0;
        for p in &self.peers {
            let n = p.receivers.values().filter(|r| r.mix).count();
            if n > 0 {
                receivers += n;
                rooms.extend(p.role.room());
            }
        }
        (rooms, receivers)
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
        let mut receivers = 0i64;
        for p in &self.peers {
            let n = p.receivers.values().filter(|r| r.mix).count();
            receivers += n as i64;
            if let (true, Some(room)) = (n > 0, p.role.room()) {
                wanted.entry(room.clone()).or_default();
            }
        }
        for t in self.tracks.values().filter(|t| t.kind == MediaKind::Audio) {
            if let Some(inputs) = wanted.get_mut(&t.room) {
                let listens =
                    self.index(&t.owner).is_some_and(|o| self.peers[o].receivers.values().any(|r| r.mix));
                inputs.insert(t.info.id.clone(), listens);
            }
        }
        let gauge = &self.mix_metrics.participants;
        gauge.add(receivers - gauge.get());
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
