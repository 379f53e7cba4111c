//! Negotiation: a peer is opened from an offer and renegotiated by later ones (the browser always
//! offers, the server answers). An offer is checked before str0m sees it (m-line count, codecs),
//! and `subscribe`/`layers` point receiving m-lines at tracks and simulcast layers.

use std::collections::HashMap;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::{Candidate, Rtc};

use super::mixing::MIX_TRACK;
use super::tracks::kind_name;
use super::{Engine, Peer, Receiver};
use crate::rtc::sfu::Forward;
use crate::rtc::{EngineError, Negotiation, Opened, Role};

impl Engine {
    pub(super) fn open(&mut self, role: Role, nego: Negotiation) -> Result<Opened, EngineError> {
        if self.peers.len() >= self.config.rtc_max_peers {
            return Err(EngineError::TooManyPeers { max: self.config.rtc_max_peers });
        }
        let text = nego.offer.as_deref().ok_or(EngineError::NoOffer)?;
        let (offer, media) = self.parse_offer(text)?;
        let data_only = matches!(role, Role::Data { .. });
        if data_only && media > 0 {
            return Err(EngineError::MediaOnDataChannel);
        }
        if matches!(role, Role::Whip { .. } | Role::Whep { .. }) && media == 0 {
            return Err(EngineError::NoMedia);
        }
        let whep_mix = matches!(role, Role::Whep { .. })
            && (nego.mix || role.room().is_some_and(|r| self.config.channel_options(r).audio_mix));
        self.check_whep_mix(&role, whep_mix)?;
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .set_send_buffer_video(self.config.rtc_video_send_buffer)
            .build(now);
        rtc.add_local_candidate(
            Candidate::host(self.candidate, "udp").map_err(|e| EngineError::LocalCandidate(e.to_string()))?,
        );
        let answer =
            rtc.sdp_api().accept_offer(offer).map_err(|e| EngineError::OfferRefused(e.to_string()))?;
        let answer = answer.to_sdp_string();
        let id = format!("{:032x}", rand::random::<u128>());
        let room = role.room().cloned();
        self.metrics.rtc_peers.add(1);
        self.peers.push(Peer {
            id: id.clone(),
            rtc,
            role,
            deadline: now,
            dirty: true,
            created: now,
            connected: false,
            disconnected_at: None,
            labels: labels(&nego.publish),
            pin: nego.pin.clone(),
            published: HashMap::new(),
            receivers: HashMap::new(),
            reliable: None,
            unreliable: None,
            mix_audio: whep_mix,
        });
        self.mix_dirty |= whep_mix;
        self.drive();
        let i = self.peers.len() - 1;
        if let Err(e) = self.point(i, &nego) {
            let peer = self.peers.remove(i);
            self.remove(peer);
            return Err(e);
        }
        let audio_mix = room.as_ref().is_some_and(|r| self.config.channel_options(r).audio_mix);
        let tracks = room.map(|r| self.room_tracks(&r)).unwrap_or_default();
        Ok(Opened { peer: id, sdp: answer, tracks, url: String::new(), audio_mix })
    }

    pub(super) fn update(&mut self, peer: &str, nego: Negotiation) -> Result<Option<String>, EngineError> {
        let i = self.index(peer).ok_or(EngineError::UnknownPeer)?;
        self.current = Some(i);
        let mut answer = None;
        if let Some(text) = nego.offer.as_deref() {
            let (offer, _) = self.parse_offer(text)?;
            let p = &mut self.peers[i];
            p.labels.extend(labels(&nego.publish));
            let a =
                p.rtc.sdp_api().accept_offer(offer).map_err(|e| EngineError::OfferRefused(e.to_string()))?;
            p.dirty = true;
            answer = Some(a.to_sdp_string());
            self.drive();
        }
        self.point(i, &nego)?;
        Ok(answer)
    }

    /// The offer, and how many audio and video m-lines it has.
    fn parse_offer(&self, text: &str) -> Result<(SdpOffer, usize), EngineError> {
        let media = count_media(text);
        if media > self.config.rtc_max_tracks {
            return Err(EngineError::TooManyMediaLines { max: self.config.rtc_max_tracks });
        }
        if let Some(index) = unusable_media(text) {
            return Err(EngineError::NoUsableCodec { index });
        }
        let offer = SdpOffer::from_sdp_string(text)
            .map_err(|e| EngineError::MalformedSdp(sdp_error_message(text, &e.to_string())))?;
        Ok((offer, media))
    }

    /// Applies `subscribe` and `layers`: which track and layer each receive m-line carries.
    fn point(&mut self, i: usize, nego: &Negotiation) -> Result<(), EngineError> {
        let now = Instant::now();
        // Releases first: a PATCH that moves the mix from one m-line to another frees it before
        // taking it again, whatever the map's order.
        let mut subscribe: Vec<_> = nego.subscribe.iter().collect();
        subscribe.sort_by_key(|(_, track)| track.is_some());
        for (mid, track) in subscribe {
            let mid = to_mid(mid)?;
            self.ensure_receiver(i, mid);
            let peer = &self.peers[i];
            let Some(r) = peer.receivers.get(&mid) else {
                return Err(EngineError::NotAReceiver { mid: mid.to_string() });
            };
            let Some(id) = track else {
                let r = self.peers[i].receivers.get_mut(&mid).expect("checked");
                (r.track, r.mix) = (None, false);
                self.mix_dirty = true;
                continue;
            };
            // The room's mix: asked for by name, or any audio track in an `audio_mix` room (on
            // one m-line of the peer; its other audio m-lines stay idle).
            let has_mix = peer.receivers.iter().any(|(m, r)| r.mix && *m != mid);
            let audio_track = self.tracks.get(id).is_some_and(|t| t.kind == MediaKind::Audio);
            let room_mixes = self.room_mixes(peer) && r.kind == MediaKind::Audio && audio_track;
            if id == MIX_TRACK || room_mixes {
                if r.kind != MediaKind::Audio {
                    return Err(EngineError::KindMismatch {
                        mid: mid.to_string(),
                        line: "video",
                        track: "audio",
                    });
                }
                let mix = !has_mix;
                if mix && !r.mix {
                    let room = peer.role.room().cloned().ok_or(EngineError::UnknownTrack)?;
                    self.admit_mix(&room)?;
                }
                let r = self.peers[i].receivers.get_mut(&mid).expect("checked");
                (r.track, r.mix, r.auto) = (None, mix, false);
                self.mix_dirty = true;
                continue;
            }
            let t = self
                .tracks
                .get(id)
                .filter(|t| Some(&t.room) == peer.role.room())
                .ok_or(EngineError::UnknownTrack)?;
            if t.kind != r.kind {
                let (line, track) = (kind_name(r.kind), t.info.kind);
                return Err(EngineError::KindMismatch { mid: mid.to_string(), line, track });
            }
            let r = self.peers[i].receivers.get_mut(&mid).expect("checked");
            r.track = Some(id.clone());
            (r.auto, r.mix) = (false, false);
            r.forward.restart();
            let target = t.layers.target(r.forward.want, now);
            self.request_keyframe(id, target, now);
        }
        for (mid, rid) in &nego.layers {
            let mid = to_mid(mid)?;
            let r = self.peers[i]
                .receivers
                .get_mut(&mid)
                .ok_or_else(|| EngineError::NoReceiveLine { mid: mid.to_string() })?;
            let layers =
                r.track.as_ref().and_then(|t| self.tracks.get(t)).map(|t| t.layers.rids()).unwrap_or(&[]);
            let rid = layers
                .iter()
                .find(|l| ***l == *rid.as_str())
                .ok_or_else(|| EngineError::NoSuchLayer { mid: mid.to_string(), rid: rid.clone() })?;
            r.forward.want = Some(*rid);
        }
        Ok(())
    }

    /// Makes sure a sending m-line has its receiver entry, even before its `MediaAdded` event.
    pub(super) fn ensure_receiver(&mut self, i: usize, mid: Mid) {
        let peer = &mut self.peers[i];
        if peer.receivers.contains_key(&mid) || peer.receivers.len() >= self.config.rtc_max_tracks {
            return;
        }
        if let Some(m) = peer.rtc.media(mid)
            && matches!(m.direction(), Direction::SendOnly | Direction::SendRecv)
        {
            let mix = peer.mix_audio && m.kind() == MediaKind::Audio;
            let auto = matches!(peer.role, Role::Whep { .. }) && !mix;
            peer.receivers.insert(
                mid,
                Receiver { kind: m.kind(), track: None, auto, mix, forward: Forward::default() },
            );
            self.mix_dirty |= mix;
        }
    }
}

fn to_mid(s: &str) -> Result<Mid, EngineError> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(EngineError::BadMid(s.to_owned()));
    }
    Ok(Mid::from(s))
}

fn labels(publish: &HashMap<String, String>) -> HashMap<Mid, String> {
    publish
        .iter()
        .filter_map(|(mid, label)| Some((to_mid(mid).ok()?, label.chars().take(32).collect())))
        .collect()
}

/// Audio and video m-lines in an SDP.
fn count_media(sdp: &str) -> usize {
    sdp.lines().filter(|l| l.starts_with("m=audio") || l.starts_with("m=video")).count()
}

/// Codecs the SFU forwards; every publisher and receiver must share one.
const CODECS: [&str; 3] = ["opus", "vp8", "h264"];

/// The index of the first enabled audio/video m-line whose payload types name none of [`CODECS`].
fn unusable_media(offer: &str) -> Option<usize> {
    let mut sections: Vec<(bool, Vec<&str>, bool)> = Vec::new();
    for line in offer.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let media = matches!(f.next(), Some("audio" | "video"));
            let enabled = f.next() != Some("0");
            sections.push((media && enabled, f.skip(1).collect(), false));
        } else if let (Some(map), Some((_, pts, usable))) =
            (line.strip_prefix("a=rtpmap:"), sections.last_mut())
        {
            let (pt, codec) = map.split_once(' ').unwrap_or((map, ""));
            let name = codec.split('/').next().unwrap_or("").to_ascii_lowercase();
            if pts.contains(&pt) && CODECS.contains(&name.as_str()) {
                *usable = true;
            }
        }
    }
    sections.iter().position(|(checked, _, usable)| *checked && !usable)
}

/// str0m's parse error names the failing position as a pointer into `text` (`Parse error at
/// 0x7f...`): a heap address, which must not reach a client. It becomes a line and column.
pub(crate) fn sdp_error_message(text: &str, message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("0x") {
        out.push_str(&rest[..i]);
        let hex: String = rest[i + 2..].chars().take_while(char::is_ascii_hexdigit).collect();
        rest = &rest[i + 2 + hex.len()..];
        // `PointerOffset(0x...)` says nothing to a client but the position.
        if let Some(kept) = out.strip_suffix("PointerOffset(") {
            out.truncate(kept.len());
            rest = rest.strip_prefix(')').unwrap_or(rest);
        }
        let offset = usize::from_str_radix(&hex, 16)
            .ok()
            .and_then(|addr| addr.checked_sub(text.as_ptr() as usize))
            .filter(|offset| *offset <= text.len() && text.is_char_boundary(*offset));
        match offset {
            Some(offset) => {
                let before = &text[..offset];
                let line = before.matches('\n').count() + 1;
                let column = offset - before.rfind('\n').map_or(0, |n| n + 1) + 1;
                out.push_str(&format!("line {line}, column {column}"));
            }
            None => out.push_str("(position)"),
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_media_lines_without_a_usable_codec() {
        let ok = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                  m=video 9 UDP/TLS/RTP/SAVPF 96 45\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:45 AV1/90000\r\n";
        assert_eq!(unusable_media(ok), None);
        assert_eq!(count_media(ok), 2);
        let av1 = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 45\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:45 AV1/90000\r\n";
        assert_eq!(unusable_media(av1), Some(1), "VP8 is mapped but not offered on the m-line");
        let off = "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 45\r\na=rtpmap:45 AV1/90000\r\nm=application 9 x\r\n";
        assert_eq!(unusable_media(off), None, "a disabled m-line needs nothing");
    }

    #[test]
    fn a_malformed_sdp_is_reported_by_line_and_column_not_by_address() {
        let text = "v=0\no=- 1 1 IN IP4 0.0.0.0\nbogus line\n";
        let err = SdpOffer::from_sdp_string(text).unwrap_err().to_string();
        let shown = super::sdp_error_message(text, &err);
        assert!(
            !shown.contains("0x") && !shown.contains("Pointer"),
            "no address in {shown:?} (from {err:?})"
        );
        let wrapped = format!("Parse error at PointerOffset({:p})", &text.as_bytes()[4]);
        assert_eq!(super::sdp_error_message(text, &wrapped), "Parse error at line 2, column 1");
        let addr = format!("at {:p}", &text.as_bytes()[4]);
        assert_eq!(super::sdp_error_message(text, &addr), "at line 2, column 1");
    }
}
