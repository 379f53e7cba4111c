//! Refresh requests (RFC 8656 §7.3).

use std::time::Instant;

use super::{AuthOk, ClientKey, TurnServer};
use crate::codec::attr::{atype as at, code, method};
use crate::codec::{Class, Message, MessageBuilder};

impl TurnServer {
    pub(super) fn on_refresh(&mut self, now: Instant, client: ClientKey, msg: &Message<'_>, auth: AuthOk) {
        let Some(id) = self.allocation_for(client, msg, &auth) else {
            return;
        };
        let ipv4 = self.allocations.get(&id).is_some_and(|a| a.ipv4);
        match msg.get(at::REQUESTED_ADDRESS_FAMILY) {
            None => {}
            Some([1, ..]) if ipv4 => {}
            Some([2, ..]) if !ipv4 => {}
            Some(_) => {
                return self.error(client, msg, code::PEER_ADDRESS_FAMILY_MISMATCH, Some(&auth));
            }
        }
        let Ok(lifetime) = self.lifetime(msg) else {
            return self.error(client, msg, code::BAD_REQUEST, Some(&auth));
        };
        if lifetime.is_zero() {
            self.remove_allocation(id);
        } else {
            self.set_expiry(id, now + lifetime);
        }
        let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
        let b =
            MessageBuilder::new(method::REFRESH, Class::Success, msg.transaction_id).u32(at::LIFETIME, secs);
        self.success(client, method::REFRESH, b, Some(&auth));
    }
}
