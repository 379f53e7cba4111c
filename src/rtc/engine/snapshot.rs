//! What the engine carries right now, for the admin API (`GET /api/rooms`): rooms → peers →
//! the tracks each publishes (codec, layers, bitrate, picture size) and what each receives
//! (which track, which simulcast layer). Tracks measure themselves as frames pass
//! ([`TrackStats::saw`]: a few additions per frame, no allocation once a layer is known).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::format::Codec;
use str0m::media::{MediaData, MediaKind, Rid};

use super::frame_size::keyframe_size;
use super::tracks::kind_name;
use super::{Engine, Peer};
use crate::rtc::Role;

/// Bitrates are measured over windows this long; a layer silent for longer reads 0.
const WINDOW: Duration = Duration::from_secs(2);

/// A published track's measurements.
#[derive(Debug, Default)]
pub(super) struct TrackStats {
    codec: Option<Codec>,
    /// Per simulcast layer (one entry, rid `None`, without simulcast).
    layers: Vec<LayerStats>,
}

#[derive(Debug)]
struct LayerStats {
    rid: Option<Rid>,
    meter: Meter,
    /// From the layer's latest keyframe that announced one.
    size: Option<(u16, u16)>,
}

/// Bytes per window; the rate of the last full window.
#[derive(Debug, Default)]
struct Meter {
    start: Option<Instant>,
    bytes: u64,
    rate: Option<u64>,
    last: Option<Instant>,
}

impl Meter {
    fn add(&mut self, bytes: usize, now: Instant) {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= WINDOW {
            self.rate = Some(self.bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64);
            self.bytes = 0;
            self.start = Some(now);
        }
        self.bytes += bytes as u64;
        self.last = Some(now);
    }

    /// Bits per second.
    fn bps(&self, now: Instant) -> u64 {
        match (self.last, self.start) {
            (Some(last), _) if now.saturating_duration_since(last) > WINDOW => 0,
            _ if self.rate.is_some() => self.rate.unwrap_or(0),
            // The first window: what it holds so far, once it is long enough to mean something.
            (Some(_), Some(start)) => {
                let ms = now.saturating_duration_since(start).as_millis() as u64;
                if ms >= 200 { self.bytes * 8 * 1000 / ms } else { 0 }
            }
            _ => 0,
        }
    }
}

impl TrackStats {
    /// Counts a frame of the track.
    pub(super) fn saw(&mut self, data: &MediaData, now: Instant) {
        let codec = *self.codec.get_or_insert_with(|| data.params.spec().codec);
        let i = match self.layers.iter().position(|l| l.rid == data.rid) {
            Some(i) => i,
            None => {
                self.layers.push(LayerStats { rid: data.rid, meter: Meter::default(), size: None });
                self.layers.len() - 1
            }
        };
        let layer = &mut self.layers[i];
        layer.meter.add(data.data.len(), now);
        if data.is_keyframe()
            && let Some(size) = keyframe_size(codec, &data.data)
        {
            layer.size = Some(size);
        }
    }

    fn layer(&self, rid: Option<Rid>) -> Option<&LayerStats> {
        self.layers.iter().find(|l| l.rid == rid)
    }
}

/// A room with peers on this node.
#[derive(Debug, Clone, Serialize)]
pub struct RoomSnapshot {
    /// The room channel.
    pub room: String,
    /// Its peers here, oldest first.
    pub peers: Vec<PeerSnapshot>,
}

/// One peer connection of a room.
#[derive(Debug, Clone, Serialize)]
pub struct PeerSnapshot {
    /// The `/rtc/peers/{peer}` id.
    pub peer: String,
    /// `participant`, `whip` or `whep`.
    pub role: &'static str,
    /// The participant's client id.
    pub participant: Option<String>,
    /// Its display name.
    pub name: Option<String>,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// The tracks it publishes.
    pub published: Vec<TrackSnapshot>,
    /// What the server sends it, per m-line.
    pub receiving: Vec<ReceiverSnapshot>,
}

/// A published track.
#[derive(Debug, Clone, Serialize)]
pub struct TrackSnapshot {
    /// The track id.
    pub id: String,
    /// `audio` or `video`.
    pub kind: &'static str,
    /// The publisher's label.
    pub label: String,
    /// The codec of its frames (`VP8`, `H264`, `opus`, …), once one arrived.
    pub codec: Option<String>,
    /// Bits per second over the last seconds, every layer together.
    pub bitrate: u64,
    /// The largest picture size seen in its keyframes.
    pub width: Option<u16>,
    /// See `width`.
    pub height: Option<u16>,
    /// Its simulcast layers, low to high (empty without simulcast).
    pub layers: Vec<LayerSnapshot>,
}

/// A simulcast layer of a track.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSnapshot {
    /// The rid.
    pub rid: String,
    /// Bits per second.
    pub bitrate: u64,
    /// The picture size from the layer's keyframes.
    pub width: Option<u16>,
    /// See `width`.
    pub height: Option<u16>,
}

/// A sending m-line (from the server's side): which track it carries, at which layer.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverSnapshot {
    /// The m-line.
    pub mid: String,
    /// `audio` or `video`.
    pub kind: &'static str,
    /// The track, `None` when idle.
    pub track: Option<String>,
    /// The simulcast layer being sent (`None` without simulcast, or before the first keyframe).
    pub layer: Option<String>,
    /// The layer the receiver asked for (`None`: the highest).
    pub wanted: Option<String>,
    /// Bits per second of what it gets.
    pub bitrate: u64,
    /// The picture size it gets.
    pub width: Option<u16>,
    /// See `width`.
    pub height: Option<u16>,
}

impl Engine {
    /// Every room with peers here, by name.
    pub(super) fn snapshot(&self, now: Instant) -> Vec<RoomSnapshot> {
        let mut rooms: BTreeMap<String, Vec<PeerSnapshot>> = BTreeMap::new();
        for peer in &self.peers {
            if let Some(room) = peer.role.room() {
                rooms.entry(room.as_str().to_owned()).or_default().push(self.peer_snapshot(peer, now));
            }
        }
        rooms.into_iter().map(|(room, peers)| RoomSnapshot { room, peers }).collect()
    }

    fn peer_snapshot(&self, peer: &Peer, now: Instant) -> PeerSnapshot {
        let (role, participant, name) = match &peer.role {
            Role::Participant { client, name, .. } => ("participant", Some(client.clone()), name.clone()),
            Role::Whip { .. } => ("whip", None, None),
            _ => ("whep", None, None),
        };
        let mut published: Vec<(u64, TrackSnapshot)> = peer
            .published
            .values()
            .filter_map(|id| self.tracks.get(id))
            .map(|t| {
                let s = &t.stats;
                let biggest =
                    s.layers.iter().filter_map(|l| l.size).max_by_key(|(w, h)| *w as u32 * *h as u32);
                let layers = t
                    .layers
                    .rids()
                    .iter()
                    .map(|rid| {
                        let l = s.layer(Some(*rid));
                        LayerSnapshot {
                            rid: rid.to_string(),
                            bitrate: l.map_or(0, |l| l.meter.bps(now)),
                            width: l.and_then(|l| l.size).map(|s| s.0),
                            height: l.and_then(|l| l.size).map(|s| s.1),
                        }
                    })
                    .collect();
                let track = TrackSnapshot {
                    id: t.info.id.clone(),
                    kind: t.info.kind,
                    label: t.info.label.clone(),
                    codec: s.codec.map(|c| c.to_string()),
                    bitrate: s.layers.iter().map(|l| l.meter.bps(now)).sum(),
                    width: biggest.map(|s| s.0),
                    height: biggest.map(|s| s.1),
                    layers,
                };
                (t.created, track)
            })
            .collect();
        published.sort_by_key(|(created, _)| *created);
        let mut receiving: Vec<ReceiverSnapshot> = peer
            .receivers
            .iter()
            .map(|(mid, r)| {
                let current = r.forward.current();
                let layer = current.flatten();
                let stats = r.track.as_ref().and_then(|t| self.tracks.get(t)).map(|t| &t.stats);
                // Video flows from a keyframe on (audio has no such start): before it, nothing.
                let flowing = r.kind == MediaKind::Audio || current.is_some();
                let got = stats.filter(|_| flowing).and_then(|s| s.layer(layer));
                ReceiverSnapshot {
                    mid: mid.to_string(),
                    kind: kind_name(r.kind),
                    track: r.track.clone(),
                    layer: layer.map(|r| r.to_string()),
                    wanted: r.forward.want.map(|r| r.to_string()),
                    bitrate: got.map_or(0, |l| l.meter.bps(now)),
                    width: got.and_then(|l| l.size).map(|s| s.0),
                    height: got.and_then(|l| l.size).map(|s| s.1),
                }
            })
            .collect();
        receiving.sort_by(|a, b| a.mid.cmp(&b.mid));
        PeerSnapshot {
            peer: peer.id.clone(),
            role,
            participant,
            name,
            connected: peer.connected,
            published: published.into_iter().map(|(_, t)| t).collect(),
            receiving,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_reports_the_last_window_and_zero_once_silent() {
        let t0 = Instant::now();
        let mut m = Meter::default();
        assert_eq!(m.bps(t0), 0);
        m.add(1000, t0);
        assert_eq!(m.bps(t0 + Duration::from_millis(100)), 0, "too early to say");
        assert_eq!(m.bps(t0 + Duration::from_millis(500)), 16_000, "the first window so far");
        for i in 1..=20 {
            m.add(1000, t0 + Duration::from_millis(100 * i));
        }
        // 20 000 bytes in the first 2 s window (the 21st frame opened the next one).
        assert_eq!(m.bps(t0 + Duration::from_millis(2100)), 80_000);
        assert_eq!(m.bps(t0 + Duration::from_secs(5)), 0, "silent for longer than a window");
    }
}
