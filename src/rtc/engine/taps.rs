//! The engine's side of [`crate::media::tap`]: taps by room, track announcements at a track's
//! first frame, frames offered without ever waiting, and subscribers' keyframe requests.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use str0m::media::{MediaData, MediaKind};
use switchboard_protocol::ChannelName;
use tokio::sync::mpsc;

use super::Engine;
use crate::media::tap::{TapEvent, TapFrame, TapRequest, TapSender, TapTrack};

impl Engine {
    /// A new tap of `room`: the tracks already flowing are announced at once.
    pub(super) fn tap_open(&mut self, room: ChannelName, tx: mpsc::Sender<TapEvent>) {
        let mut tap = TapSender::new(room, tx);
        let mut known: Vec<_> = self
            .tracks
            .values()
            .filter(|t| t.room == tap.room)
            .filter_map(|t| t.tap.clone().map(|info| (t.created, info)))
            .collect();
        known.sort_by_key(|(created, _)| *created);
        for (_, info) in known {
            tap.added(info);
        }
        self.taps.push(tap);
    }

    pub(super) fn tap_request(&mut self, request: TapRequest) {
        match request {
            TapRequest::Keyframe { track, rid } => self.request_keyframe(&track, rid, Instant::now()),
        }
    }

    /// Offers a publisher's frame of track `id` to the taps of its room (only called with taps).
    pub(super) fn tap_frame(&mut self, id: &str, data: &MediaData) {
        self.taps.retain(|t| !t.closed());
        let Some(track) = self.tracks.get_mut(id) else {
            return;
        };
        let spec = data.params.spec();
        let info = track
            .tap
            .get_or_insert_with(|| {
                Arc::new(TapTrack {
                    id: track.info.id.clone(),
                    room: track.room.clone(),
                    participant: track.info.participant.clone(),
                    name: track.info.name.clone(),
                    label: track.info.label.clone(),
                    kind: track.kind,
                    codec: spec.codec,
                    clock_rate: spec.clock_rate.get(),
                    rids: track.layers.rids().to_vec(),
                    order: track.created,
                })
            })
            .clone();
        let frame = TapFrame {
            track: Arc::from(id),
            rid: data.rid,
            payload: Bytes::from_owner(data.data.clone()),
            time: data.time.numer(),
            clock_rate: data.time.denom(),
            keyframe: track.kind == MediaKind::Video && data.is_keyframe(),
            contiguous: data.contiguous,
            lost: 0,
            audio_level: data.ext_vals.audio_level,
            voice: data.ext_vals.voice_activity,
            at: data.network_time,
        };
        self.tap_offer(&info, frame);
    }

    /// Offers a frame of the track `info` to the taps of its room.
    pub(super) fn tap_offer(&mut self, info: &Arc<TapTrack>, frame: TapFrame) {
        let mut dropped = 0;
        for tap in self.taps.iter_mut().filter(|t| t.room == info.room) {
            if !tap.knows(&info.id) {
                tap.added(info.clone());
            }
            if !tap.frame(frame.clone()) {
                dropped += 1;
            }
        }
        self.metrics.media_tap_dropped.add(dropped);
    }

    /// Tells the taps that knew track `id` that it is gone; forgets closed taps.
    pub(super) fn tap_removed(&mut self, id: &str) {
        self.taps.retain(|t| !t.closed());
        for tap in &mut self.taps {
            tap.removed(id);
        }
    }
}
