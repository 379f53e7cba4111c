//! CreatePermission requests (RFC 8656 §9).

use std::time::Instant;

use super::allocation::PERMISSION_LIFETIME;
use super::{AuthOk, ClientKey, TurnServer};
use crate::codec::attr::{code, method};
use crate::codec::{Class, Message, MessageBuilder};

impl TurnServer {
    /// Installs or refreshes a permission for each XOR-PEER-ADDRESS; all or none (403 when
    /// any peer is denied by the peer policy).
    pub(super) fn on_create_permission(
        &mut self,
        now: Instant,
        client: ClientKey,
        msg: &Message<'_>,
        auth: AuthOk,
    ) {
        let Some(id) = self.allocation_for(client, msg, &auth) else {
            return;
        };
        let ipv4 = self.allocations.get(&id).is_some_and(|a| a.ipv4);
        let peers = match self.peer_addresses(msg, ipv4) {
            Ok(p) => p,
            Err(c) => return self.error(client, msg, c, Some(&auth)),
        };
        let max = self.quotas.max_permissions_per_allocation;
        let Some(a) = self.allocations.get_mut(&id) else {
            return;
        };
        let new = peers.iter().filter(|p| !a.has_permission(p.ip(), now)).count();
        if a.permission_count(now) + new > max {
            return self.error(client, msg, code::INSUFFICIENT_CAPACITY, Some(&auth));
        }
        if a.permissions.len() >= max {
            a.sweep(now);
        }
        for p in peers {
            a.permissions.insert(p.ip(), now + PERMISSION_LIFETIME);
        }
        let b = MessageBuilder::new(method::CREATE_PERMISSION, Class::Success, msg.transaction_id);
        self.success(client, method::CREATE_PERMISSION, b, Some(&auth));
    }
}
