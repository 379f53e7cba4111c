//! ChannelBind requests (RFC 8656 §11).

use std::time::Instant;

use super::allocation::{CHANNEL_LIFETIME, Channel, PERMISSION_LIFETIME};
use super::{AuthOk, ClientKey, TurnServer};
use crate::codec::attr::{atype as at, code, method};
use crate::codec::{Class, Message, MessageBuilder};

/// Channel numbers accepted: RFC 8656 allots 0x4000..=0x4FFF, but RFC 5766 allowed up to
/// 0x7FFF and clients still use it (coturn's `turnutils_uclient` picks from all of it), so the
/// RFC 5766 range is accepted. Every such number starts with the bits 01, which is what
/// tells ChannelData from STUN on the wire.
pub(crate) const CHANNEL_RANGE: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFF;

impl TurnServer {
    /// Binds (or refreshes) a channel to one peer and installs/refreshes its permission.
    pub(super) fn on_channel_bind(
        &mut self,
        now: Instant,
        client: ClientKey,
        msg: &Message<'_>,
        auth: AuthOk,
    ) {
        let Some(id) = self.allocation_for(client, msg, &auth) else {
            return;
        };
        let number = match msg.get(at::CHANNEL_NUMBER) {
            Some(&[hi, lo, _, _]) => u16::from_be_bytes([hi, lo]),
            _ => return self.error(client, msg, code::BAD_REQUEST, Some(&auth)),
        };
        if !CHANNEL_RANGE.contains(&number) || msg.get_all(at::XOR_PEER_ADDRESS).count() != 1 {
            return self.error(client, msg, code::BAD_REQUEST, Some(&auth));
        }
        let ipv4 = self.allocations.get(&id).is_some_and(|a| a.ipv4);
        let peer = match self.peer_addresses(msg, ipv4) {
            Ok(p) => p[0],
            Err(c) => return self.error(client, msg, c, Some(&auth)),
        };
        let max_channels = self.quotas.max_channels_per_allocation;
        let max_permissions = self.quotas.max_permissions_per_allocation;
        let Some(a) = self.allocations.get_mut(&id) else {
            return;
        };
        a.sweep(now);
        let same_channel = a.channels.get(&number).map(|c| c.peer);
        let same_peer = a.channel_by_peer.get(&peer).copied();
        let refresh = match (same_channel, same_peer) {
            (None, None) => false,
            (Some(p), Some(n)) if p == peer && n == number => true,
            // The channel is bound to another peer, or the peer to another channel.
            _ => return self.error(client, msg, code::BAD_REQUEST, Some(&auth)),
        };
        let needs_permission = !a.permissions.contains_key(&peer.ip());
        if (!refresh && a.channels.len() >= max_channels)
            || (needs_permission && a.permissions.len() >= max_permissions)
        {
            return self.error(client, msg, code::INSUFFICIENT_CAPACITY, Some(&auth));
        }
        a.channels.insert(number, Channel { peer, expires: now + CHANNEL_LIFETIME });
        a.channel_by_peer.insert(peer, number);
        a.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        let b = MessageBuilder::new(method::CHANNEL_BIND, Class::Success, msg.transaction_id);
        self.success(client, method::CHANNEL_BIND, b, Some(&auth));
    }
}
