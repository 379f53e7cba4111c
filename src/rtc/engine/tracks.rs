//! The track registry: a publisher's receiving m-line becomes a track of its room, and goes with
//! the m-line or the peer. Rooms whose tracks changed get their list on their channel, and WHEP
//! players follow their room's newest tracks.

use bytes::Bytes;
use str0m::media::{Direction, MediaKind, Mid, Rid};
use switchboard_protocol::ChannelName;

use super::{Engine, Track};
use crate::rtc::sfu::Layers;
use crate::rtc::{Role, TrackInfo};

impl Engine {
    pub(super) fn media_added(
        &mut self,
        i: usize,
        mid: Mid,
        kind: MediaKind,
        direction: Direction,
        simulcast: Option<str0m::media::Simulcast>,
    ) {
        let max_tracks = self.config.rtc_max_tracks;
        let receives = matches!(direction, Direction::RecvOnly | Direction::SendRecv);
        let sends = matches!(direction, Direction::SendOnly | Direction::SendRecv);
        if sends {
            self.ensure_receiver(i, mid);
        }
        let peer = &mut self.peers[i];
        let Some(room) = peer.role.room().cloned() else {
            return;
        };
        let (participant, name) = match &peer.role {
            Role::Participant { client, name, .. } => (client.clone(), name.clone()),
            Role::Whip { .. } => ("whip".to_owned(), Some("WHIP".to_owned())),
            _ => (String::new(), None),
        };
        if !receives || participant.is_empty() || peer.published.len() >= max_tracks {
            if sends {
                // A new receiver: WHEP players follow the room's newest tracks.
                self.dirty_rooms.insert(room);
            }
            return;
        }
        let rids: Vec<Rid> = simulcast
            .map(|s| if s.recv.is_empty() { s.send } else { s.recv })
            .unwrap_or_default()
            .into_iter()
            .map(|l| l.rid)
            .collect();
        self.track_seq += 1;
        let id = format!("{}-{}", &peer.id[..12], &*mid);
        let label = peer.labels.get(&mid).cloned().unwrap_or_else(|| kind_name(kind).to_owned());
        let info = TrackInfo {
            id: id.clone(),
            participant,
            name,
            kind: kind_name(kind),
            label,
            layers: rids.iter().map(|r| r.to_string()).collect(),
        };
        tracing::debug!(peer = %peer.id, track = %id, "track published");
        peer.published.insert(mid, id.clone());
        let track = Track {
            info,
            room: room.clone(),
            owner: peer.id.clone(),
            mid,
            kind,
            layers: Layers::new(rids),
            created: self.track_seq,
            keyframe_requests: Vec::new(),
            stats: Default::default(),
            tap: None,
        };
        self.tracks.insert(id, track);
        self.dirty_rooms.insert(room);
    }

    /// A renegotiation changed an m-line's direction: a publisher that stopped sending loses
    /// the track; a line the server now sends on becomes a receiver.
    pub(super) fn media_changed(&mut self, i: usize, mid: Mid, direction: Direction) {
        if matches!(direction, Direction::SendOnly | Direction::SendRecv) {
            self.ensure_receiver(i, mid);
        } else {
            self.peers[i].receivers.remove(&mid);
        }
        if matches!(direction, Direction::RecvOnly | Direction::SendRecv) {
            return;
        }
        if let Some(id) = self.peers[i].published.remove(&mid)
            && let Some(t) = self.tracks.remove(&id)
        {
            self.dirty_rooms.insert(t.room);
            self.release(&id);
        }
    }

    /// Receivers of a track that is gone go idle.
    pub(super) fn release(&mut self, track: &str) {
        if !self.taps.is_empty() {
            self.tap_removed(track);
        }
        for p in &mut self.peers {
            for r in p.receivers.values_mut() {
                if r.track.as_deref() == Some(track) {
                    r.track = None;
                }
            }
        }
    }

    /// Publishes the track list of every room whose tracks changed, and points WHEP players at
    /// their room's newest tracks.
    pub(super) fn announce(&mut self) {
        if !self.dirty_rooms.is_empty() {
            self.mix_dirty = true;
        }
        for room in std::mem::take(&mut self.dirty_rooms) {
            self.follow_newest(&room);
            let tracks = self.room_tracks(&room);
            let options = self.config.channel_options(&room).clone();
            // Participants of an `audio_mix` room receive the room's mix, not the audio tracks.
            let body = match options.audio_mix {
                true => serde_json::json!({"sfu": {"tracks": tracks, "audio_mix": true}}),
                false => serde_json::json!({"sfu": {"tracks": tracks}}),
            }
            .to_string();
            let _ = self.announcements.send((room, Bytes::from(body), options));
        }
    }

    fn follow_newest(&mut self, room: &ChannelName) {
        for peer in &mut self.peers {
            if peer.role.room() != Some(room) {
                continue;
            }
            for r in peer.receivers.values_mut().filter(|r| r.auto) {
                let pinned = peer.pin.as_ref().filter(|_| r.kind == MediaKind::Video);
                let newest = self
                    .tracks
                    .values()
                    .filter(|t| &t.room == room && t.kind == r.kind && t.owner != peer.id)
                    .filter(|t| pinned.is_none_or(|p| *p == t.info.id))
                    .max_by_key(|t| t.created)
                    .map(|t| t.info.id.clone());
                if newest != r.track {
                    tracing::debug!(peer = %peer.id, track = ?newest, "following the newest track");
                    r.track = newest;
                    r.forward.restart();
                }
            }
        }
    }

    pub(super) fn room_tracks(&self, room: &ChannelName) -> Vec<TrackInfo> {
        let mut tracks: Vec<&Track> = self.tracks.values().filter(|t| &t.room == room).collect();
        tracks.sort_by_key(|t| t.created);
        tracks.into_iter().map(|t| t.info.clone()).collect()
    }
}

pub(super) fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}
