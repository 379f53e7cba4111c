//! The data channel transport's side in the engine: its two channels (`switchboard`, reliable;
//! `switchboard-unreliable`, for datagram subscriptions), their events, and writes to them.

use str0m::channel::ChannelId;

use super::Engine;
use crate::rtc::{DcEvent, Role};

/// The data channel labels of the transport.
pub(super) const DC_RELIABLE: &str = "switchboard";
/// The unreliable, unordered channel (datagram subscriptions).
pub(super) const DC_UNRELIABLE: &str = "switchboard-unreliable";

impl Engine {
    pub(super) fn channel_open(&mut self, i: usize, id: ChannelId, label: &str) {
        let peer = &mut self.peers[i];
        let Role::Data { events } = &peer.role else {
            return;
        };
        match label {
            DC_RELIABLE => {
                peer.reliable = Some(id);
                let _ = events.try_send(DcEvent::Open);
            }
            DC_UNRELIABLE => peer.unreliable = Some(id),
            _ => {}
        }
    }

    pub(super) fn channel_data(&mut self, i: usize, binary: bool, data: Vec<u8>) {
        let peer = &mut self.peers[i];
        if let Role::Data { events } = &peer.role
            && events.try_send(DcEvent::Message { binary, data }).is_err()
        {
            // The session cannot keep up with what its client sends.
            tracing::debug!(peer = %peer.id, "data channel input overflow");
            peer.rtc.disconnect();
        }
    }

    /// The reliable channel closing ends the transport.
    pub(super) fn channel_close(&mut self, i: usize, id: ChannelId) {
        let peer = &mut self.peers[i];
        if peer.reliable == Some(id) {
            peer.rtc.disconnect();
        }
    }

    /// Queues a message on the peer's reliable or unreliable channel; a full buffer tells its
    /// session the client does not keep up.
    pub(super) fn send(&mut self, peer: &str, reliable: bool, binary: bool, data: &[u8]) {
        let Some(i) = self.index(peer) else {
            return;
        };
        self.current = Some(i);
        let p = &mut self.peers[i];
        let id = if reliable { p.reliable } else { p.unreliable.or(p.reliable) };
        let Some(mut channel) = id.and_then(|id| p.rtc.channel(id)) else {
            return;
        };
        let accepted = channel.write(binary, data).unwrap_or(false);
        p.dirty = true;
        if !accepted
            && (reliable || p.unreliable.is_none())
            && let Role::Data { events } = &p.role
        {
            let _ = events.try_send(DcEvent::Blocked);
        }
    }
}
