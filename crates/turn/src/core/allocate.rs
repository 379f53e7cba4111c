//! Allocate requests (RFC 8656 §7.2), EVEN-PORT / RESERVATION-TOKEN, and the driver's answer
//! to [`Output::BindRelay`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::allocation::{Allocation, DEFAULT_LIFETIME, PendingAllocate, TokenBucket};
use super::{AuthOk, ClientKey, Output, RelayId, TurnServer};
use crate::codec::attr::{atype as at, code, method};
use crate::codec::{Class, Message, MessageBuilder};

/// REQUESTED-TRANSPORT value for UDP.
const UDP: u8 = 17;
/// How long a port reserved by EVEN-PORT's R bit is kept (RFC 8656 §7.2: about 30 s).
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// A relay port held for a later Allocate with RESERVATION-TOKEN.
#[derive(Debug)]
pub(crate) struct Reservation {
    token: [u8; 8],
    /// Set once the driver has bound the socket.
    local: Option<SocketAddr>,
    expires: Instant,
}

impl TurnServer {
    pub(super) fn on_allocate(&mut self, now: Instant, client: ClientKey, msg: &Message<'_>, auth: AuthOk) {
        if let Some(id) = self.by_client.get(&client).copied()
            && let Some(a) = self.allocations.get(&id)
        {
            // A retransmitted Allocate gets the same answer; any other is a mismatch.
            if a.alloc_tid == msg.transaction_id && a.username == auth.username {
                if let Some(resp) = a.alloc_response.clone() {
                    self.metrics.record_request(method::ALLOCATE, true);
                    self.transmit(client, resp);
                }
                return;
            }
            return self.error(client, msg, code::ALLOCATION_MISMATCH, Some(&auth));
        }
        match msg.get(at::REQUESTED_TRANSPORT) {
            Some([UDP, ..]) => {}
            Some([_, _, _, _]) => {
                return self.error(client, msg, code::UNSUPPORTED_TRANSPORT, Some(&auth));
            }
            _ => return self.error(client, msg, code::BAD_REQUEST, Some(&auth)),
        }
        let family = msg.get(at::REQUESTED_ADDRESS_FAMILY);
        let token = msg.get(at::RESERVATION_TOKEN);
        let even_port = msg.get(at::EVEN_PORT);
        if token.is_some() && (family.is_some() || even_port.is_some()) {
            return self.error(client, msg, code::BAD_REQUEST, Some(&auth));
        }
        let want_v4 = match family {
            None => self.relay_ip.is_ipv4(),
            Some([1, ..]) => true,
            Some([2, ..]) => false,
            Some(_) => return self.error(client, msg, code::BAD_REQUEST, Some(&auth)),
        };
        if want_v4 != self.relay_ip.is_ipv4() {
            return self.error(client, msg, code::ADDRESS_FAMILY_NOT_SUPPORTED, Some(&auth));
        }
        let (even_port, reserve_next) = match even_port {
            None => (false, false),
            Some([flags, ..]) => (true, flags & 0x80 != 0),
            Some([]) => return self.error(client, msg, code::BAD_REQUEST, Some(&auth)),
        };
        // A token must name a live, bound reservation (else 508, RFC 8656 §7.2).
        let reserved = match token {
            None => None,
            Some(t) => {
                let found = <[u8; 8]>::try_from(t)
                    .ok()
                    .and_then(|t| self.tokens.get(&t).copied())
                    .and_then(|rid| Some((rid, self.reservations.get(&rid)?.local?)));
                match found {
                    Some(r) => Some(r),
                    None => {
                        return self.error(client, msg, code::INSUFFICIENT_CAPACITY, Some(&auth));
                    }
                }
            }
        };
        let Ok(lifetime) = self.lifetime(msg) else {
            return self.error(client, msg, code::BAD_REQUEST, Some(&auth));
        };
        let lifetime = if lifetime.is_zero() { DEFAULT_LIFETIME.min(self.max_lifetime) } else { lifetime };
        let quota_user = crate::auth::quota_user(&auth.username).to_owned();
        if self.per_user.get(&quota_user).copied().unwrap_or(0) >= self.quotas.max_allocations_per_user {
            return self.error(client, msg, code::ALLOCATION_QUOTA_REACHED, Some(&auth));
        }
        let ip = client.addr.ip().to_canonical();
        let per_ip = self.quotas.max_allocations_per_ip;
        if per_ip > 0 && self.per_ip.get(&ip).copied().unwrap_or(0) >= per_ip {
            return self.error(client, msg, code::ALLOCATION_QUOTA_REACHED, Some(&auth));
        }
        if self.allocations.len() + self.reservations.len() >= self.quotas.max_allocations {
            return self.error(client, msg, code::INSUFFICIENT_CAPACITY, Some(&auth));
        }

        let id = match reserved {
            Some((rid, _)) => {
                // The reserved socket becomes this allocation's relay socket.
                if let Some(r) = self.reservations.remove(&rid) {
                    self.tokens.remove(&r.token);
                    self.reservation_expiries.remove(&(r.expires, rid));
                }
                rid
            }
            None => self.new_relay_id(),
        };
        let rate = self.quotas.bandwidth_bytes_per_sec;
        let alloc = Allocation {
            client,
            username: auth.username.clone(),
            quota_user: quota_user.clone(),
            relayed: None,
            ipv4: want_v4,
            expires: now + lifetime,
            alloc_tid: msg.transaction_id,
            alloc_response: None,
            pending: Some(PendingAllocate { auth, reservation: None }),
            permissions: Default::default(),
            channels: Default::default(),
            channel_by_peer: Default::default(),
            up: TokenBucket::new(rate, now),
            down: TokenBucket::new(rate, now),
        };
        self.expiries.insert((alloc.expires, id));
        self.allocations.insert(id, alloc);
        self.by_client.insert(client, id);
        *self.per_user.entry(quota_user).or_insert(0) += 1;
        *self.per_ip.entry(ip).or_insert(0) += 1;
        self.metrics.allocations_active.fetch_add(1, Relaxed);
        if let Some((_, local)) = reserved {
            return self.on_relay_bound(now, id, Some(local));
        }
        let reserve = reserve_next.then(|| {
            let rid = self.new_relay_id();
            let mut token = [0u8; 8];
            crate::crypto::random_bytes(&mut token);
            let expires = now + RESERVATION_LIFETIME;
            self.reservations.insert(rid, Reservation { token, local: None, expires });
            self.tokens.insert(token, rid);
            self.reservation_expiries.insert((expires, rid));
            if let Some(p) = self.allocations.get_mut(&id).and_then(|a| a.pending.as_mut()) {
                p.reservation = Some(rid);
            }
            rid
        });
        self.outputs.push_back(Output::BindRelay { relay: id, ip: self.relay_ip, even_port, reserve });
    }

    fn new_relay_id(&mut self) -> RelayId {
        let id = RelayId(self.next_relay);
        self.next_relay += 1;
        id
    }

    pub(super) fn remove_reservation(&mut self, rid: RelayId) {
        if let Some(r) = self.reservations.remove(&rid) {
            self.tokens.remove(&r.token);
            self.reservation_expiries.remove(&(r.expires, rid));
            self.outputs.push_back(Output::CloseRelay { relay: rid });
        }
    }

    pub(super) fn on_relay_bound(&mut self, now: Instant, id: RelayId, local: Option<SocketAddr>) {
        if let Some(r) = self.reservations.get_mut(&id) {
            match local {
                Some(l) => r.local = Some(l),
                None => self.remove_reservation(id),
            }
            return;
        }
        let Some(a) = self.allocations.get_mut(&id) else {
            // The allocation went away while its socket was being bound.
            self.outputs.push_back(Output::CloseRelay { relay: id });
            return;
        };
        let Some(pending) = a.pending.take() else {
            return;
        };
        let client = a.client;
        let tid = a.alloc_tid;
        let Some(local) = local else {
            let b =
                MessageBuilder::new(method::ALLOCATE, Class::Error, tid).error(code::INSUFFICIENT_CAPACITY);
            self.metrics.record_request(method::ALLOCATE, false);
            let bytes = b.integrity(pending.auth.kind, &pending.auth.key).fingerprint().build();
            self.transmit(client, bytes);
            self.remove_allocation(id);
            return;
        };
        let ip: IpAddr = self.external_ip.unwrap_or(local.ip());
        let relayed = SocketAddr::new(ip, local.port());
        a.relayed = Some(relayed);
        self.metrics.allocations_total.fetch_add(1, Relaxed);
        let lifetime = a.expires.saturating_duration_since(now).as_secs();
        let mut b = MessageBuilder::new(method::ALLOCATE, Class::Success, tid)
            .xor_addr(at::XOR_RELAYED_ADDRESS, relayed)
            .u32(at::LIFETIME, u32::try_from(lifetime).unwrap_or(u32::MAX));
        let token =
            pending.reservation.and_then(|rid| self.reservations.get(&rid)).filter(|r| r.local.is_some());
        if let Some(r) = token {
            b = b.attr(at::RESERVATION_TOKEN, &r.token);
        }
        let b = b.xor_addr(at::XOR_MAPPED_ADDRESS, client.addr);
        let bytes = self.success(client, method::ALLOCATE, b, Some(&pending.auth));
        if let Some(a) = self.allocations.get_mut(&id) {
            a.alloc_response = Some(bytes);
        }
    }
}
