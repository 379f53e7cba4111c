//! The commands of the client protocol, one method each: `connect`, `subscribe` (and its
//! completion once the history is read), `unsubscribe`, `publish`, `presence`, `history` and
//! `rpc` (and its completion once the backend answered).
//! Each checks the channel rules, then asks the driver for what it needs through an [`Op`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use switchboard_protocol::frame::{
    ChannelRequest, ClientInfo, ConnectReply, ConnectRequest, Empty, ErrorBody, HistoryRequest, Notice,
    PublishRequest, RefreshReply, RefreshRequest, Reply, ReplyBody, RpcReply, RpcRequest, SubscribeReply,
    SubscribeRequest, UnsubscribedBody,
};
use switchboard_protocol::{ChannelName, Disconnect, ErrorCode};

use super::recovery::{self, advance, latest_wins};
use super::{
    MAX_NAME_CHARS, MAX_RPC_QUEUED, Now, Op, OpId, Output, Pending, Recovering, Session, Subscription,
};
use crate::app_proxy::{AppCall, AppError};
use crate::broker::{BrokerError, HistoryQuery, HistoryResult, NewPublication};
use crate::model::{Delivery, Payload};
use crate::policy::Identity;
use crate::rules::{Actor, Denied, Destination};

impl Session {
    pub(super) fn connect(&mut self, now: Now, id: u64, req: ConnectRequest) {
        if self.info.is_some() {
            return self.reply(Reply::error(id, ErrorCode::BadRequest, "already connected"));
        }
        match self.rules.auth().authenticate(req.token.as_deref(), now.unix) {
            Ok(identity) => {
                // A valid session token keeps the earlier connection's client id (and with it
                // presence, room inboxes and SFU peers); anything else gets the fresh one.
                if let Some(client) = req.session.and_then(|s| self.rules.auth().resume(&s, &identity.user)) {
                    self.client_id = client;
                }
                let reply = ConnectReply {
                    client: self.client_id.clone(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ping: self.config.ping_interval.as_secs(),
                    session: self.rules.auth().session_token(&self.client_id, &identity.user),
                    user: identity.user.clone(),
                    heartbeat: self
                        .config
                        .pong_timeout
                        .is_none()
                        .then_some(self.config.ping_interval.as_secs()),
                    expires: identity.expires_at,
                };
                self.connect_as(now, identity, req.name);
                self.deferred = Some(Box::default());
                let op = self.op(Op::Claim { client: self.client_id.clone() });
                self.pending.insert(op, Pending::Connect(id, reply));
            }
            Err(d) => self.disconnect(d),
        }
    }

    pub(super) fn connect_as(&mut self, now: Now, identity: Identity, name: Option<String>) {
        let name = name
            .or_else(|| identity.name.clone())
            .map(|n| n.chars().take(MAX_NAME_CHARS).collect::<String>())
            .filter(|n| !n.is_empty());
        self.set_expiry(now, identity.expires_at);
        self.info =
            Some(Arc::new(ClientInfo { client: self.client_id.clone(), user: identity.user.clone(), name }));
        self.identity = identity;
    }

    /// The connection's token expires at Unix second `exp` (if ever): it is closed then, and told
    /// `token_expiry_warning` before.
    fn set_expiry(&mut self, now: Now, exp: Option<u64>) {
        self.expires_at = expiry(now, exp);
        self.expiry_warning = match (self.expires_at, exp) {
            (Some(at), Some(exp)) => {
                let warn = at.checked_sub(self.config.token_expiry_warning).unwrap_or(now.instant);
                Some((warn.max(now.instant), exp))
            }
            _ => None,
        };
    }

    /// A new token for this connection: the same user, a later expiry, and the permissions it
    /// carries for what comes next (subscriptions made already stay). A bad token is refused
    /// with an error and the connection keeps its current one until that expires.
    pub(super) fn refresh(&mut self, now: Now, id: u64, req: RefreshRequest) {
        if let Some(channel) = req.channel {
            return self.refresh_subscription(now, id, &channel, &req.token);
        }
        let identity = match self.rules.auth().authenticate(Some(&req.token), now.unix) {
            Ok(identity) => identity,
            Err(d) => return self.reply(Reply::error(id, ErrorCode::Unauthorized, d.reason)),
        };
        if identity.user != self.identity.user {
            let m = "a refreshed token must name the connection's user";
            return self.reply(Reply::error(id, ErrorCode::PermissionDenied, m));
        }
        self.set_expiry(now, identity.expires_at);
        let expires = identity.expires_at;
        let granted = std::mem::take(&mut self.identity.granted);
        self.identity = Identity { granted, ..identity };
        self.reply(Reply { id, body: ReplyBody::Refresh(RefreshReply { expires }) });
    }

    /// A subscription token checked for this connection's user on `channel`: its expiry, or
    /// the error to answer.
    fn check_subscription_token(
        &self,
        now: Now,
        channel: &ChannelName,
        token: &str,
    ) -> Result<Option<u64>, (ErrorCode, &'static str)> {
        use crate::policy::SubscriptionRefused as Refused;
        let checked = self.rules.auth().subscription(token, &self.identity.user, channel.as_str(), now.unix);
        checked.map_err(|refused| match refused {
            Refused::Invalid => (ErrorCode::Unauthorized, "invalid subscription token"),
            Refused::Expired => (ErrorCode::Unauthorized, "subscription token expired"),
            Refused::NotYours => {
                (ErrorCode::PermissionDenied, "the subscription token is for another channel or user")
            }
        })
    }

    /// A new subscription token for a subscription made with one: it lives until the new expiry.
    fn refresh_subscription(&mut self, now: Now, id: u64, channel: &str, token: &str) {
        let Some(channel) = self.channel(id, channel) else {
            return;
        };
        if !self.subs.contains_key(&channel) {
            return self.reply(Reply::error(id, ErrorCode::NotSubscribed, "not subscribed"));
        }
        let expires = match self.check_subscription_token(now, &channel, token) {
            Ok(expires) => expires,
            Err((code, m)) => return self.reply(Reply::error(id, code, m)),
        };
        self.grant(now, channel, expires);
        self.reply(Reply { id, body: ReplyBody::Refresh(RefreshReply { expires }) });
    }

    /// `channel` is open to this connection by a subscription token expiring at `exp`.
    fn grant(&mut self, now: Now, channel: ChannelName, exp: Option<u64>) {
        self.sub_expiry.retain(|(c, _)| *c != channel);
        if let Some(at) = expiry(now, exp) {
            self.sub_expiry.push((channel.clone(), at));
        }
        if !self.identity.granted.contains(&channel) {
            self.identity.granted.push(channel);
        }
    }

    /// Ends the subscriptions whose subscription token expired by `t` without a refresh.
    pub(super) fn end_expired_subscriptions(&mut self, t: tokio::time::Instant) {
        let expired: Vec<ChannelName> =
            self.sub_expiry.iter().filter(|(_, at)| *at <= t).map(|(c, _)| c.clone()).collect();
        for channel in expired {
            if let Some(sub) = self.subs.remove(&channel) {
                self.release(&channel, sub);
            }
            self.revoke(&channel);
            let d = Disconnect::TOKEN_EXPIRED;
            let body = UnsubscribedBody {
                channel: channel.to_string(),
                code: d.code,
                reason: "subscription token expired".into(),
            };
            self.out.push_back(Output::Notice(Notice::Unsubscribed(body)));
        }
    }

    /// The node unsubscribed this connection from `channel` (an administrator's action): the
    /// client is told with `reason`'s code, as when a subscription token expires.
    pub fn handle_kicked(&mut self, channel: &ChannelName, reason: Disconnect) {
        if let Some(sub) = self.subs.remove(channel) {
            self.release(channel, sub);
            let body = UnsubscribedBody {
                channel: channel.to_string(),
                code: reason.code,
                reason: reason.reason.into(),
            };
            self.out.push_back(Output::Notice(Notice::Unsubscribed(body)));
        }
    }

    /// `channel` is no longer open by a subscription token.
    fn revoke(&mut self, channel: &ChannelName) {
        self.sub_expiry.retain(|(c, _)| c != channel);
        self.identity.granted.retain(|c| c != channel);
    }

    /// Leaves `channel`'s presence and the hub.
    fn release(&mut self, channel: &ChannelName, sub: Subscription) {
        if let Subscription::Recovering(r) = &sub {
            let reply_id = &r.reply_id;
            // Every command gets one reply: a subscribe still reading its history is answered
            // now (its history result, when it comes, finds nothing to complete).
            let m = "unsubscribed before the subscription completed";
            self.reply(Reply::error(*reply_id, ErrorCode::NotSubscribed, m));
        }
        if let (Subscription::Live { present: true, .. }, Some(info)) = (&sub, self.info.clone()) {
            let announce = self.rules.options(channel).join_leave;
            self.op(Op::PresenceRemove { channel: channel.clone(), info, announce });
        }
        self.op(Op::Unsubscribe { channel: channel.clone() });
    }

    /// This connection, as the rules see it.
    pub(super) fn actor(&self) -> Actor<'_> {
        Actor::Client { identity: &self.identity, client: Some(&self.client_id) }
    }

    pub(super) fn channel(&mut self, id: u64, name: &str) -> Option<ChannelName> {
        match ChannelName::new(name) {
            Ok(c) => Some(c),
            Err(e) => {
                self.reply(Reply::error(id, ErrorCode::BadRequest, e.to_string()));
                None
            }
        }
    }

    pub(super) fn subscribe(&mut self, now: Now, id: u64, req: SubscribeRequest) {
        let Some(channel) = self.channel(id, &req.channel) else {
            return;
        };
        if self.subs.contains_key(&channel) {
            return self.reply(Reply::error(id, ErrorCode::AlreadySubscribed, "already subscribed"));
        }
        if self.subs.len() >= self.config.max_subscriptions {
            let m = format!("at most {} subscriptions per connection", self.config.max_subscriptions);
            return self.reply(Reply::error(id, ErrorCode::LimitExceeded, m));
        }
        if let Some(token) = &req.token {
            match self.check_subscription_token(now, &channel, token) {
                Ok(expires) => self.grant(now, channel.clone(), expires),
                Err((code, m)) => return self.reply(Reply::error(id, code, m)),
            }
        }
        if let Err(denied) = self.rules.may_read(&self.actor(), &channel) {
            return self.reply(refusal(id, denied));
        }
        if req.datagram && !self.config.datagrams {
            let m = "datagram delivery needs the WebTransport transport";
            return self.reply(Reply::error(id, ErrorCode::NotAvailable, m));
        }
        if req.datagram && !self.rules.options(&channel).datagrams {
            let m = "datagrams are off for this namespace";
            return self.reply(Reply::error(id, ErrorCode::NotAvailable, m));
        }
        // A datagram subscription is latest-wins: it never replays, it starts at the stream's end.
        let since = if req.datagram { None } else { req.since.clone() };
        let limit = if since.is_some() { self.config.max_recovery + 1 } else { 0 };
        let query = HistoryQuery { since, limit, reverse: false };
        let op = self.op(Op::Subscribe { channel: channel.clone(), query });
        self.pending.insert(op, Pending::Subscribe(channel.clone()));
        let (held, datagram) = (Vec::new(), req.datagram);
        self.subs.insert(
            channel,
            Subscription::Recovering(Box::new(Recovering {
                op,
                reply_id: id,
                since: req.since,
                held,
                datagram,
            })),
        );
    }

    pub(super) fn subscribed(
        &mut self,
        op: OpId,
        channel: ChannelName,
        result: Result<HistoryResult, BrokerError>,
    ) {
        let Some(Subscription::Recovering(current)) = self.subs.get(&channel) else {
            return;
        };
        if current.op != op {
            return;
        }
        let Some(Subscription::Recovering(recovering)) = self.subs.remove(&channel) else {
            return;
        };
        let Recovering { reply_id, since, held, datagram, .. } = *recovering;
        let history = match result {
            Ok(h) => h,
            Err(e) => {
                self.op(Op::Unsubscribe { channel });
                return self.reply(broker_error(reply_id, &e));
            }
        };
        let top = (history.top.epoch.clone(), history.top.offset);
        let asked = since.is_some();
        let since = if datagram { None } else { since };
        let mut rec = recovery::recover(since.as_ref(), history, self.config.max_recovery);
        if datagram && asked {
            // Latest-wins subscriptions do not resume: say so instead of pretending.
            rec.recovered = false;
        }
        if rec.truncated {
            rec = recovery::Recovery {
                recovered: false,
                epoch: top.0,
                offset: top.1,
                publications: Vec::new(),
                truncated: false,
            };
        }
        self.reply(Reply {
            id: reply_id,
            body: ReplyBody::Subscribe(SubscribeReply {
                channel: channel.to_string(),
                epoch: rec.epoch.to_string(),
                offset: rec.offset,
                recovered: rec.recovered,
                replayed: rec.publications.len() as u64,
            }),
        });
        let (epoch, mut offset) = (rec.epoch, rec.offset);
        for p in rec.publications {
            offset = p.offset;
            self.out.push_back(Output::Deliver(Delivery::Publication(p)));
        }
        let mut epoch = epoch;
        for p in held {
            if datagram {
                if latest_wins(&mut epoch, &mut offset, &p) {
                    self.out.push_back(Output::Deliver(Delivery::Publication(p)));
                }
                continue;
            }
            match advance(&epoch, &mut offset, &p) {
                Ok(true) => self.out.push_back(Output::Deliver(Delivery::Publication(p))),
                Ok(false) => {}
                Err(d) => return self.disconnect(d),
            }
        }
        let options = self.rules.options(&channel);
        let (present, announce) =
            (options.presence && self.rules.inbox(&channel).is_none(), options.join_leave);
        if let (true, Some(info)) = (present, self.info.clone()) {
            self.op(Op::PresenceAdd { channel: channel.clone(), info, announce });
        }
        self.subs.insert(channel, Subscription::Live { epoch, offset, present, datagram });
    }

    pub(super) fn unsubscribe(&mut self, id: u64, req: ChannelRequest) {
        let Some(channel) = self.channel(id, &req.channel) else {
            return;
        };
        let Some(sub) = self.subs.remove(&channel) else {
            return self.reply(Reply::error(id, ErrorCode::NotSubscribed, "not subscribed"));
        };
        self.release(&channel, sub);
        self.revoke(&channel);
        self.reply(Reply { id, body: ReplyBody::Unsubscribe(Empty {}) });
    }

    pub(super) fn publish(&mut self, id: u64, req: PublishRequest) {
        let Some(channel) = self.channel(id, &req.channel) else {
            return;
        };
        let destination = match self.rules.may_publish(&self.actor(), &channel) {
            Ok(d) => d,
            Err(denied) => return self.reply(refusal(id, denied)),
        };
        // A signal's sender is in the room when this connection has joined it (it is present
        // there as soon as the join completes, which the broker's presence may not show yet).
        if let Destination::Inbox(inbox) = &destination
            && !matches!(self.subs.get(&inbox.room), Some(Subscription::Live { .. }))
        {
            return self.reply(Reply::error(id, ErrorCode::PermissionDenied, "join the room first"));
        }
        let payload = match (req.data, req.binary) {
            (Some(data), None) => Payload::Json(bytes::Bytes::copy_from_slice(data.get().as_bytes())),
            (None, Some(binary)) => Payload::Binary(binary),
            _ => {
                return self.reply(Reply::error(id, ErrorCode::BadRequest, "publish needs data"));
            }
        };
        if let Err(denied) = self.rules.check_publication(&payload, req.idempotency_key.as_deref()) {
            return self.reply(refusal(id, denied));
        }
        let request = NewPublication {
            options: self.rules.options(&channel).clone(),
            channel,
            payload,
            info: self.info.clone(),
            idempotency_key: req.idempotency_key,
        };
        let op = match destination {
            Destination::Inbox(inbox) => self.op(Op::Signal { inbox, request }),
            Destination::Channel => self.op(Op::Publish(request)),
        };
        self.pending.insert(op, Pending::Publish(id));
    }

    pub(super) fn presence(&mut self, id: u64, req: ChannelRequest) {
        let Some(channel) = self.channel(id, &req.channel) else {
            return;
        };
        if let Err(denied) = self.rules.may_see_presence(&self.actor(), &channel) {
            return self.reply(refusal(id, denied));
        }
        let op = self.op(Op::Presence { channel });
        self.pending.insert(op, Pending::Presence(id));
    }

    pub(super) fn history(&mut self, id: u64, req: HistoryRequest) {
        let Some(channel) = self.channel(id, &req.channel) else {
            return;
        };
        let size = match self.rules.may_read_history(&self.actor(), &channel) {
            Ok(size) => size,
            Err(denied) => return self.reply(refusal(id, denied)),
        };
        let limit = req.limit.unwrap_or(size).min(size);
        let query = HistoryQuery { since: req.since, limit, reverse: req.reverse };
        let op = self.op(Op::History { channel, query });
        self.pending.insert(op, Pending::History(id));
    }

    /// `rpc` (and a STOMP SEND to the application prefix): queued for the backend, which hears a
    /// connection's calls one at a time, in order.
    pub(super) fn rpc(&mut self, id: u64, req: RpcRequest) {
        if self.rules.config().app_proxy_url.is_empty() {
            return self.reply(app_error(id, &AppError::NotConfigured));
        }
        if req.method.is_empty()
            || req.method.len() > MAX_METHOD_BYTES
            || req.method.contains(char::is_control)
        {
            let m = format!(
                "the method (or destination) must be 1 to {MAX_METHOD_BYTES} bytes, no control characters"
            );
            return self.reply(Reply::error(id, ErrorCode::BadRequest, m));
        }
        let len = req.data.as_ref().map_or(0, |d| d.get().len()) + req.binary.as_ref().map_or(0, |b| b.len());
        if len > self.config.max_publication_bytes {
            let m = format!("rpc data is larger than {} bytes", self.config.max_publication_bytes);
            return self.reply(Reply::error(id, ErrorCode::LimitExceeded, m));
        }
        if self.rpc_queue.as_ref().is_some_and(|q| q.len() >= MAX_RPC_QUEUED) {
            let m = format!("at most {MAX_RPC_QUEUED} rpc calls may wait per connection");
            return self.reply(Reply::error(id, ErrorCode::LimitExceeded, m));
        }
        let call = AppCall {
            kind: req.kind,
            user: self.identity.user.clone(),
            client: self.client_id.clone(),
            method: req.method,
            data: req.data,
            binary: req.binary,
        };
        self.rpc_queue.get_or_insert_default().push_back((id, call));
        self.next_rpc();
    }

    /// The running backend call finished: answer it and start the next.
    pub(super) fn rpc_done(&mut self, id: u64, result: Result<Box<RawValue>, AppError>) {
        self.rpc_running = false;
        match result {
            Ok(data) => self.reply(Reply { id, body: ReplyBody::Rpc(RpcReply { data }) }),
            Err(e) => self.reply(app_error(id, &e)),
        }
        self.next_rpc();
    }

    fn next_rpc(&mut self) {
        if self.rpc_running {
            return;
        }
        let next = self.rpc_queue.as_mut().and_then(|q| q.pop_front());
        if self.rpc_queue.as_ref().is_some_and(|q| q.is_empty()) {
            self.rpc_queue = None;
        }
        if let Some((id, call)) = next {
            let op = self.op(Op::Rpc(call));
            self.pending.insert(op, Pending::Rpc(id));
            self.rpc_running = true;
        }
    }
}

/// Longest `rpc` method (or STOMP destination after the application prefix), in bytes.
const MAX_METHOD_BYTES: usize = 255;

fn app_error(id: u64, e: &AppError) -> Reply {
    Reply { id, body: ReplyBody::Error(ErrorBody { code: e.code(), message: e.to_string() }) }
}

/// When a token expiring at Unix second `exp` expires on the session's clock. `exp` comes from
/// the network: one too far ahead to represent simply never comes.
fn expiry(now: Now, exp: Option<u64>) -> Option<tokio::time::Instant> {
    exp.and_then(|exp| now.instant.checked_add(Duration::from_secs(exp.saturating_sub(now.unix))))
}

pub(super) fn refusal(id: u64, denied: Denied) -> Reply {
    Reply::error(id, denied.code, denied.message)
}

pub(super) fn broker_error(id: u64, e: &BrokerError) -> Reply {
    let code = match e {
        BrokerError::ChannelLimit(_) => ErrorCode::LimitExceeded,
        _ => ErrorCode::BrokerUnavailable,
    };
    Reply::error(id, code, e.to_string())
}
