//! Forwarding: a publisher's frames go to every receiver of its track, through the simulcast
//! layer each receiver wants ([`crate::rtc::sfu`]), with the header extensions players use;
//! keyframe requests go back to the publisher, at most one per layer and interval.

use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid, Rid};

use super::Engine;

/// At most one keyframe request per track this often.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);

impl Engine {
    /// A receiver asked for a keyframe: ask the publisher of its track, for the layer it gets.
    pub(super) fn keyframe_requested(&mut self, i: usize, mid: Mid, now: Instant) {
        let Some(r) = self.peers[i].receivers.get(&mid) else {
            return;
        };
        if let Some(t) = r.track.clone() {
            let want = r.forward.want;
            let target = self.tracks.get(&t).and_then(|t| t.layers.target(want, now));
            self.request_keyframe(&t, target, now);
        }
    }

    /// Sends a publisher's frame to every receiver of its track.
    pub(super) fn forward(&mut self, i: usize, data: MediaData, now: Instant) {
        let Some(id) = self.peers[i].published.get(&data.mid).cloned() else {
            return;
        };
        let Some(track) = self.tracks.get_mut(&id) else {
            return;
        };
        track.layers.saw(data.rid, now);
        track.stats.saw(&data, now);
        if !self.taps.is_empty() {
            self.tap_frame(&id, &data);
        }
        let Some(track) = self.tracks.get_mut(&id) else {
            return;
        };
        let video = track.kind == MediaKind::Video;
        if video && !data.contiguous {
            // Lost packets the NACKs did not recover: the decoder needs a fresh start.
            self.request_keyframe(&id, data.rid, now);
        }
        let Some(track) = self.tracks.get(&id) else {
            return;
        };
        let keyframe = video && data.is_keyframe();
        let mut wanted = Vec::new();
        let mut sent = 0u64;
        for (j, peer) in self.peers.iter_mut().enumerate() {
            if j == i || !peer.connected {
                continue;
            }
            for (mid, r) in peer.receivers.iter_mut() {
                if r.track.as_deref() != Some(id.as_str()) {
                    continue;
                }
                if video {
                    let target = track.layers.target(r.forward.want, now);
                    let verdict = r.forward.video(data.rid, keyframe, target);
                    if verdict.keyframe {
                        wanted.push(target);
                    }
                    if !verdict.send {
                        continue;
                    }
                }
                let Some(mut writer) = peer.rtc.writer(*mid) else {
                    continue;
                };
                let Some(pt) = writer.match_params(data.params) else {
                    tracing::debug!(peer = %peer.id, %mid, "no matching payload type");
                    continue;
                };
                // Header extensions the players use: speaker levels, and the camera's rotation.
                let ext = &data.ext_vals;
                if let Some(level) = ext.audio_level {
                    writer = writer.audio_level(level, ext.voice_activity.unwrap_or(false));
                }
                if let Some(o) = ext.video_orientation {
                    writer = writer.video_orientation(o);
                }
                match writer.write(pt, data.network_time, data.time, data.data.clone()) {
                    Ok(()) => sent += 1,
                    Err(_) => peer.rtc.disconnect(),
                }
                peer.dirty = true;
            }
        }
        self.metrics.rtc_frames_forwarded.add(sent);
        self.metrics.rtc_bytes_forwarded.add(sent * data.data.len() as u64);
        wanted.dedup();
        for rid in wanted {
            self.request_keyframe(&id, rid, now);
        }
    }

    pub(super) fn request_keyframe(&mut self, track: &str, rid: Option<Rid>, now: Instant) {
        if self.serve_keyframe(track) {
            return;
        }
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        if t.kind != MediaKind::Video {
            return;
        }
        match t.keyframe_requests.iter_mut().find(|(r, _)| *r == rid) {
            Some((_, at)) if now.saturating_duration_since(*at) < KEYFRAME_INTERVAL => return,
            Some((_, at)) => *at = now,
            None => t.keyframe_requests.push((rid, now)),
        }
        let (owner, mid) = (t.owner.clone(), t.mid);
        let Some(o) = self.index(&owner) else {
            return;
        };
        let peer = &mut self.peers[o];
        if let Some(mut writer) = peer.rtc.writer(mid) {
            let _ = writer.request_keyframe(rid, KeyframeRequestKind::Pli);
            peer.dirty = true;
        }
    }
}
