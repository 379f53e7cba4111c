//! Binding requests (RFC 8489 §6.3.1; RFC 3489 clients get MAPPED-ADDRESS only).

use std::time::Instant;

use super::{ClientKey, TurnServer};
use crate::codec::attr::{atype as at, method};
use crate::codec::{Class, Message, MessageBuilder};

impl TurnServer {
    /// Answers with the client's reflexive address. Unauthenticated unless the request
    /// carries MESSAGE-INTEGRITY(-SHA256), in which case it is checked like a TURN request
    /// and the response is signed.
    pub(super) fn on_binding(&mut self, now: Instant, client: ClientKey, msg: &Message<'_>) {
        let auth = if msg.integrity_kind().is_some() {
            match self.authenticate(now, client, msg) {
                Some(a) => Some(a),
                None => return,
            }
        } else {
            None
        };
        let b = MessageBuilder::new(method::BINDING, Class::Success, msg.transaction_id)
            .xor_addr(at::XOR_MAPPED_ADDRESS, client.addr)
            .addr(at::MAPPED_ADDRESS, client.addr);
        self.success(client, method::BINDING, b, auth.as_ref());
    }

    pub(super) fn on_legacy_binding(&mut self, client: ClientKey, msg: &Message<'_>) {
        let b = MessageBuilder::new_legacy(method::BINDING, Class::Success, &msg.raw()[4..20])
            .addr(at::MAPPED_ADDRESS, client.addr);
        self.metrics.record_request(method::BINDING, true);
        self.transmit(client, b.build());
    }
}
