//! Relayed data: Send indications and ChannelData from clients, datagrams from peers
//! (RFC 8656 §10, §12). Nothing here is ever answered; what cannot be relayed is dropped.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::{ClientKey, Output, RelayId, Transport, TurnServer};
use crate::codec::attr::{atype as at, method};
use crate::codec::{self, Class, Message, MessageBuilder};

impl TurnServer {
    pub(super) fn on_send_indication(&mut self, now: Instant, client: ClientKey, msg: &Message<'_>) {
        let Some(&id) = self.by_client.get(&client) else {
            return;
        };
        let (Some(peer), Some(data)) = (msg.get(at::XOR_PEER_ADDRESS), msg.get(at::DATA)) else {
            return;
        };
        let Some(peer) = codec::attr::decode_address(peer, Some(&msg.transaction_id)) else {
            return;
        };
        let peer = crate::peer_filter::canonical(peer);
        if !self.filter.is_allowed(peer.ip()) {
            self.metrics.peers_denied.fetch_add(1, Relaxed);
            return;
        }
        self.relay_to_peer(now, id, peer, data);
    }

    pub(super) fn on_channel_data(&mut self, now: Instant, client: ClientKey, number: u16, data: &[u8]) {
        let Some(&id) = self.by_client.get(&client) else {
            return;
        };
        let Some(channel) = self.allocations.get(&id).and_then(|a| a.channel(number, now)) else {
            return;
        };
        self.relay_to_peer(now, id, channel.peer, data);
    }

    fn relay_to_peer(&mut self, now: Instant, id: RelayId, peer: SocketAddr, data: &[u8]) {
        let Some(a) = self.allocations.get_mut(&id) else {
            return;
        };
        if !a.is_active() || peer.is_ipv4() != a.ipv4 || !a.has_permission(peer.ip(), now) {
            return;
        }
        if !a.up.take(data.len(), now) {
            self.metrics.packets_dropped_bandwidth.fetch_add(1, Relaxed);
            return;
        }
        self.metrics.packets_to_peer.fetch_add(1, Relaxed);
        self.metrics.bytes_to_peer.fetch_add(data.len() as u64, Relaxed);
        self.outputs.push_back(Output::SendToPeer { relay: id, to: peer, data: data.to_vec() });
    }

    /// A datagram from a peer: relayed as ChannelData when a channel is bound to the peer,
    /// else as a Data indication; dropped without a permission for the peer's IP.
    pub(super) fn on_peer(&mut self, now: Instant, id: RelayId, from: SocketAddr, data: &[u8]) {
        let from = crate::peer_filter::canonical(from);
        let Some(a) = self.allocations.get_mut(&id) else {
            return;
        };
        if !a.has_permission(from.ip(), now) || !self.filter.is_allowed(from.ip()) {
            return;
        }
        if data.len() > 0xFFFF - 64 {
            return;
        }
        if !a.down.take(data.len(), now) {
            self.metrics.packets_dropped_bandwidth.fetch_add(1, Relaxed);
            return;
        }
        let client = a.client;
        let bytes = match a.channel_for_peer(from, now) {
            Some(number) => {
                let padded =
                    if client.transport == Transport::Tcp { data.len().div_ceil(4) * 4 } else { data.len() };
                let mut out = Vec::with_capacity(4 + padded);
                out.extend_from_slice(&number.to_be_bytes());
                out.extend_from_slice(&(data.len() as u16).to_be_bytes());
                out.extend_from_slice(data);
                out.resize(4 + padded, 0);
                out
            }
            None => {
                let mut tid = [0u8; 12];
                crate::crypto::random_bytes(&mut tid);
                MessageBuilder::new(method::DATA, Class::Indication, tid)
                    .xor_addr(at::XOR_PEER_ADDRESS, from)
                    .attr(at::DATA, data)
                    .build()
            }
        };
        self.metrics.packets_to_client.fetch_add(1, Relaxed);
        self.metrics.bytes_to_client.fetch_add(data.len() as u64, Relaxed);
        self.transmit(client, bytes);
    }
}
