//! The session: one client's protocol state, as a sans-IO state machine.
//!
//! It is fed client frames, deliveries from the hub, results of the operations it asked for,
//! and the current time ([`Now`]); it answers with [`Output`]s to poll: replies and deliveries to
//! send, operations for the driver to run (hub and broker calls), and disconnects. It never
//! touches a socket, a clock or the broker, so every rule here is unit-tested with simulated time.
//!
//! Resuming without races: on `subscribe` the driver first registers the connection in the hub
//! and only then reads the history. Live publications that arrive meanwhile are held here and
//! released after the replay, skipping offsets the replay already carried, so nothing is missed or
//! duplicated between the two.

mod commands;
mod io;
pub mod recovery;
mod subs;

pub use io::{Op, OpId, OpResult, Output};

use commands::{broker_error, refusal};
use recovery::{advance, latest_wins};

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::frame::{
    ClientFrame, ClientInfo, Command, ConnectReply, Empty, ExpiringBody, FrameError, Notice, PresenceReply,
    PublishReply, Reply, ReplyBody,
};
use switchboard_protocol::{ChannelName, Disconnect, ErrorCode, Position};
use tokio::time::Instant;

use crate::app_proxy::AppCall;
use crate::model::{Delivery, Epoch, Publication};
use crate::policy::Identity;
use crate::rules::Rules;

/// Longest display name kept, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Most commands held while a `connect` waits for its client id to be claimed.
const MAX_DEFERRED: usize = 64;
/// Most backend calls (`rpc`) one connection may have waiting behind the one that runs.
const MAX_RPC_QUEUED: usize = 64;

/// The time, as a session needs it: monotonic for timers, Unix seconds for token expiry.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For timers.
    pub instant: Instant,
    /// Unix seconds, for token expiry.
    pub unix: u64,
}

impl Now {
    /// The current time (for drivers; sessions never call this).
    pub fn current() -> Self {
        let unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Self { instant: Instant::now(), unix }
    }
}

/// Bytes a publication costs in a history reply beyond its payload (its object's fields).
const HISTORY_ENTRY_OVERHEAD: usize = 96;

/// A session's limits and timers.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Between server pings (or heartbeats).
    pub ping_interval: Duration,
    /// How long a pong may take; `None` for one-way transports, which only send heartbeats.
    pub pong_timeout: Option<Duration>,
    /// Most subscriptions.
    pub max_subscriptions: usize,
    /// Largest publication payload.
    pub max_publication_bytes: usize,
    /// Most publications replayed on resume.
    pub max_recovery: usize,
    /// Most live publications held while a subscription's replay is read.
    pub max_held: usize,
    /// How often presence entries are refreshed, so shared brokers can expire dead nodes' clients.
    pub presence_refresh: Duration,
    /// Whether the transport can deliver datagrams (WebTransport): subscriptions may then ask
    /// for `datagram` delivery where their namespace enables it.
    pub datagrams: bool,
    /// How long a connection may stay without `connect` when the server requires a token.
    pub connect_timeout: Duration,
    /// Most bytes of publications in one history reply.
    pub max_history_reply_bytes: usize,
    /// How long before its token expires a connection is told so.
    pub token_expiry_warning: Duration,
}

impl SessionConfig {
    /// Limits from the server configuration; `bidirectional` sessions expect pongs.
    pub fn from_config(config: &crate::config::Config, bidirectional: bool) -> Self {
        Self {
            ping_interval: Duration::from_secs(if bidirectional {
                config.ping_interval
            } else {
                config.heartbeat_interval
            }),
            pong_timeout: bidirectional.then(|| Duration::from_secs(config.pong_timeout)),
            max_subscriptions: config.max_subscriptions,
            max_publication_bytes: config.max_publication_bytes,
            max_recovery: config.max_recovery,
            max_held: config.outbound_queue,
            presence_refresh: Duration::from_secs(config.presence_ttl / 3),
            datagrams: false,
            connect_timeout: Duration::from_secs(config.connect_timeout),
            max_history_reply_bytes: config.max_history_reply_bytes,
            token_expiry_warning: Duration::from_secs(config.token_expiry_warning),
        }
    }
}

/// Boxed in [`Subscription`]: only while a subscription reads its history; a live one (what
/// an idle connection holds, one per channel) is then a third of the size.
struct Recovering {
    op: OpId,
    reply_id: u64,
    since: Option<Position>,
    held: Vec<Arc<Publication>>,
    datagram: bool,
}

enum Subscription {
    Recovering(Box<Recovering>),
    Live { epoch: Epoch, offset: u64, present: bool, datagram: bool },
}

enum Pending {
    Connect(u64, ConnectReply),
    Subscribe(ChannelName),
    Publish(u64),
    History(u64),
    Presence(u64),
    Rpc(u64),
}

/// See the module docs.
pub struct Session {
    rules: Arc<Rules>,
    config: Arc<SessionConfig>,
    client_id: String,
    info: Option<Arc<ClientInfo>>,
    identity: Identity,
    subs: subs::Subs,
    pending: HashMap<OpId, Pending>,
    next_op: OpId,
    out: VecDeque<Output>,
    next_ping: Instant,
    next_presence_refresh: Instant,
    pong_deadline: Option<Instant>,
    expires_at: Option<Instant>,
    /// When to send the `expiring` notice, and the expiry (Unix seconds) it announces.
    expiry_warning: Option<(Instant, u64)>,
    /// When each subscription opened by a subscription token ends, unless refreshed.
    /// A vector: few subscriptions have one, and a map's hasher alone is 16 bytes per session.
    sub_expiry: Vec<(ChannelName, Instant)>,
    /// Commands that came while `connect` claimed the client id, run once it has.
    /// Boxed, as `rpc_queue`: a session rarely has one, and every idle one would hold its room.
    #[allow(clippy::box_collection)] // the point: 8 bytes inline instead of 32
    deferred: Option<Box<VecDeque<(u64, Command, Now)>>>,
    /// Backend calls waiting for the one that runs: a connection's calls reach the backend one
    /// at a time, in the order they were made.
    #[allow(clippy::box_collection)]
    rpc_queue: Option<Box<VecDeque<(u64, AppCall)>>>,
    /// A backend call is running.
    rpc_running: bool,
    /// When a connection that has not sent `connect` is closed (a token is required).
    connect_deadline: Option<Instant>,
    closed: bool,
}

impl Session {
    /// A new session for the connection `client_id`, opened at `now`.
    pub fn new(
        rules: Arc<Rules>,
        config: impl Into<Arc<SessionConfig>>,
        client_id: String,
        now: Now,
    ) -> Self {
        let config = config.into();
        // A token is required: a connection that never authenticates does not hold a place.
        let connect_deadline = rules.config().requires_token().then(|| now.instant + config.connect_timeout);
        Self {
            connect_deadline,
            rules,
            next_ping: now.instant + config.ping_interval,
            next_presence_refresh: now.instant + config.presence_refresh,
            config,
            client_id,
            info: None,
            identity: Identity::default(),
            subs: subs::Subs::default(),
            pending: HashMap::new(),
            next_op: 1,
            out: VecDeque::new(),
            pong_deadline: None,
            expires_at: None,
            expiry_warning: None,
            sub_expiry: Vec::new(),
            deferred: None,
            rpc_queue: None,
            rpc_running: false,
            closed: false,
        }
    }

    /// The connect deadline, while it matters.
    fn connect_deadline(&self) -> Option<Instant> {
        self.connect_deadline.filter(|_| self.info.is_none())
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Lets go of the queue and the operation map an idle session keeps from its last burst:
    /// idle connections are the many, and each kept about 1 KiB of them after `subscribe`.
    /// Cheap to refill: one allocation per wake-up that has output.
    pub fn release_idle(&mut self) {
        if self.out.is_empty() && self.out.capacity() > 0 {
            self.out = VecDeque::new();
        }
        if self.pending.is_empty() && self.pending.capacity() > 0 {
            self.pending = HashMap::new();
        }
    }

    /// Whether outputs wait for [`Session::poll_output`].
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// When [`Session::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let deadlines = [
            self.pong_deadline,
            self.expires_at,
            self.connect_deadline(),
            self.expiry_warning.map(|(at, _)| at),
            self.sub_expiry.iter().map(|(_, at)| *at).min(),
        ];
        [Some(self.next_ping), Some(self.next_presence_refresh)].into_iter().chain(deadlines).flatten().min()
    }

    /// Whether the session ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The channels of subscriptions waiting for `connect` to claim the client id.
    pub fn deferred_channels(&self) -> Vec<ChannelName> {
        let deferred = self.deferred.iter().flat_map(|d| d.iter());
        deferred
            .filter_map(|(_, c, _)| match c {
                Command::Subscribe(req) => ChannelName::new(&req.channel).ok(),
                _ => None,
            })
            .collect()
    }

    /// Whether `connect` is waiting for its client id to be claimed; commands wait meanwhile.
    pub fn connecting(&self) -> bool {
        self.deferred.is_some()
    }

    /// The connection's client info, once connected.
    pub fn client_info(&self) -> Option<&Arc<ClientInfo>> {
        self.info.as_ref()
    }

    /// The live, in-order subscriptions whose next publications the hub's fan-out may write
    /// itself while the connection waits ([`crate::direct`]), into `into`. None once closed.
    pub fn direct_channels(&self, into: &mut Vec<crate::direct::DirectChannel>) {
        if self.closed {
            return;
        }
        // Exactly: a first push would make room for four (an idle connection holds this).
        into.reserve_exact(self.subs.len());
        for (channel, sub) in self.subs.iter() {
            if let Subscription::Live { epoch, offset, datagram: false, .. } = sub {
                let (channel, epoch, offset) = (channel.clone(), epoch.clone(), *offset);
                into.push(crate::direct::DirectChannel { channel, epoch, offset });
            }
        }
    }

    /// The fan-out wrote `channels`' publications up to their offsets: as if they had been
    /// delivered here.
    pub fn direct_written(&mut self, channels: &[crate::direct::DirectChannel]) {
        for written in channels {
            if let Some(Subscription::Live { epoch, offset, datagram: false, .. }) =
                self.subs.get_mut(&written.channel)
                && Arc::ptr_eq(epoch, &written.epoch)
                && written.offset > *offset
            {
                *offset = written.offset;
            }
        }
    }

    /// Whether `channel`'s publications go out as datagrams (latest-wins) rather than in order
    /// on the connection's stream.
    pub fn datagram(&self, channel: &ChannelName) -> bool {
        // Most transports take no datagrams: skip the lookup on every delivery.
        self.config.datagrams
            && match self.subs.get(channel) {
                Some(Subscription::Live { datagram, .. }) => *datagram,
                Some(Subscription::Recovering(r)) => r.datagram,
                None => false,
            }
    }

    /// A frame that could not be parsed.
    pub fn handle_frame_error(&mut self, error: FrameError) {
        match error.id {
            Some(id) => self.reply(Reply::error(id, error.code, error.message)),
            None => self.disconnect(Disconnect::BAD_REQUEST),
        }
    }

    /// A frame from the client.
    pub fn handle_frame(&mut self, now: Now, frame: ClientFrame) {
        if self.closed {
            return;
        }
        let (id, command) = match frame {
            ClientFrame::Pong => {
                self.pong_deadline = None;
                return;
            }
            ClientFrame::Command { id, command } => (id, command),
        };
        if let Some(deferred) = &mut self.deferred {
            if deferred.len() >= MAX_DEFERRED {
                return self.disconnect(Disconnect::BAD_REQUEST);
            }
            deferred.push_back((id, command, now));
            return;
        }
        if let Command::Connect(req) = command {
            return self.connect(now, id, req);
        }
        if self.info.is_none() {
            if self.rules.config().requires_token() {
                return self.disconnect(Disconnect::UNAUTHORIZED);
            }
            self.connect_as(now, Identity::default(), None);
        }
        self.dispatch(now, id, command);
    }

    fn dispatch(&mut self, now: Now, id: u64, command: Command) {
        match command {
            Command::Connect(_) => {}
            Command::Subscribe(req) => self.subscribe(now, id, req),
            Command::Unsubscribe(req) => self.unsubscribe(id, req),
            Command::Publish(req) => self.publish(id, req),
            Command::Presence(req) => self.presence(id, req),
            Command::History(req) => self.history(id, req),
            Command::Rpc(req) => self.rpc(id, req),
            Command::Refresh(req) => self.refresh(now, id, req),
            Command::Ping => self.reply(Reply { id, body: ReplyBody::Ping(Empty {}) }),
        }
    }

    /// A delivery from the hub.
    pub fn handle_delivery(&mut self, delivery: Delivery) {
        if self.closed {
            return;
        }
        let publication = match delivery {
            Delivery::Presence(event) => {
                if matches!(self.subs.get(&event.channel), Some(Subscription::Live { .. })) {
                    self.out.push_back(Output::Deliver(Delivery::Presence(event)));
                }
                return;
            }
            Delivery::Publication(p) => p,
        };
        let max_held = self.config.max_held;
        match self.subs.get_mut(&publication.channel) {
            None => {}
            Some(Subscription::Recovering(r)) => {
                if r.held.len() >= max_held {
                    return self.disconnect(Disconnect::SLOW_CONSUMER);
                }
                r.held.push(publication);
            }
            Some(Subscription::Live { epoch, offset, datagram: true, .. }) => {
                if !latest_wins(epoch, offset, &publication) {
                    return;
                }
                self.out.push_back(Output::Deliver(Delivery::Publication(publication)));
            }
            Some(Subscription::Live { epoch, offset, .. }) => match advance(epoch, offset, &publication) {
                Ok(true) => self.out.push_back(Output::Deliver(Delivery::Publication(publication))),
                Ok(false) => {}
                Err(d) => self.disconnect(d),
            },
        }
    }

    /// The transport or the server ends the connection.
    pub fn handle_disconnect(&mut self, d: Disconnect) {
        self.disconnect(d);
    }

    /// Refuses the connection right after `connect` (a connection limit of its user): nothing
    /// queued goes out, not even the `connect` reply, only the disconnect.
    pub fn refuse(&mut self, d: Disconnect) {
        self.out.clear();
        self.pending.clear();
        self.deferred = None;
        self.disconnect(d);
    }

    /// The connection's outbound queue overflowed.
    pub fn handle_overflow(&mut self) {
        self.disconnect(Disconnect::SLOW_CONSUMER);
    }

    /// The result of an operation this session asked for.
    pub fn handle_result(&mut self, op: OpId, result: OpResult) {
        if self.closed {
            return;
        }
        let Some(pending) = self.pending.remove(&op) else {
            return;
        };
        match (pending, result) {
            (Pending::Connect(id, reply), OpResult::Claimed) => {
                self.reply(Reply { id, body: ReplyBody::Connect(reply) });
                for (id, command, now) in self.deferred.take().map(|d| *d).unwrap_or_default() {
                    if matches!(command, Command::Connect(_)) {
                        self.reply(Reply::error(id, ErrorCode::BadRequest, "already connected"));
                    } else {
                        self.dispatch(now, id, command);
                    }
                }
            }
            (Pending::Subscribe(channel), OpResult::History(result)) => self.subscribed(op, channel, result),
            (Pending::Publish(id), OpResult::Published(result)) => match result {
                Ok(r) => self.reply(Reply {
                    id,
                    body: ReplyBody::Publish(PublishReply { epoch: r.epoch.to_string(), offset: r.offset }),
                }),
                Err(e) => self.reply(broker_error(id, &e)),
            },
            (Pending::Publish(id), OpResult::Refused(denied)) => self.reply(refusal(id, denied)),
            (Pending::History(id), OpResult::History(result)) => match result {
                Ok(h) => {
                    // A reply is bounded in bytes (a client that asks for much and never reads
                    // must not pin it all): the client pages on from the last one it got.
                    let mut publications = h.publications;
                    let mut bytes = 0;
                    let keep = publications
                        .iter()
                        .position(|p| {
                            bytes += p.payload.len() + HISTORY_ENTRY_OVERHEAD;
                            bytes > self.config.max_history_reply_bytes
                        })
                        .map_or(publications.len(), |i| i.max(1));
                    publications.truncate(keep);
                    self.out.push_back(Output::History { id, top: h.top, publications })
                }
                Err(e) => self.reply(broker_error(id, &e)),
            },
            (Pending::Presence(id), OpResult::Presence(result)) => match result {
                Ok(clients) => self.reply(Reply {
                    id,
                    body: ReplyBody::Presence(PresenceReply {
                        clients: clients.iter().map(|c| (c.client.clone(), c.as_ref().clone())).collect(),
                    }),
                }),
                Err(e) => self.reply(broker_error(id, &e)),
            },
            (Pending::Rpc(id), OpResult::Rpc(result)) => self.rpc_done(id, result),
            _ => self.disconnect(Disconnect::INTERNAL),
        }
    }

    /// Time passed: send pings, enforce pong and token deadlines.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.closed {
            return;
        }
        let t = now.instant;
        if self.pong_deadline.is_some_and(|d| d <= t) {
            return self.disconnect(Disconnect::NO_PONG);
        }
        if self.expires_at.is_some_and(|d| d <= t) {
            return self.disconnect(Disconnect::TOKEN_EXPIRED);
        }
        if self.connect_deadline().is_some_and(|d| d <= t) {
            return self.disconnect(Disconnect::CONNECT_TIMEOUT);
        }
        if let Some((at, expires)) = self.expiry_warning
            && at <= t
        {
            self.expiry_warning = None;
            self.out.push_back(Output::Notice(Notice::Expiring(ExpiringBody { expires })));
        }
        self.end_expired_subscriptions(t);
        if self.next_presence_refresh <= t {
            self.next_presence_refresh = t + self.config.presence_refresh;
            self.refresh_presence();
        }
        if self.next_ping <= t {
            self.out.push_back(Output::Ping);
            self.next_ping = t + self.config.ping_interval;
            if let (Some(timeout), None) = (self.config.pong_timeout, self.pong_deadline) {
                self.pong_deadline = Some(t + timeout);
            }
        }
    }

    /// The connection ended: the operations that release its subscriptions and presence.
    pub fn close(&mut self) -> Vec<Op> {
        self.closed = true;
        let info = self.info.clone();
        let mut ops = Vec::new();
        for (channel, sub) in self.subs.drain() {
            if let (Subscription::Live { present: true, .. }, Some(info)) = (&sub, &info) {
                let announce = self.rules.options(&channel).join_leave;
                ops.push(Op::PresenceRemove { channel: channel.clone(), info: info.clone(), announce });
            }
            ops.push(Op::Unsubscribe { channel });
        }
        ops
    }

    fn refresh_presence(&mut self) {
        let Some(info) = self.info.clone() else { return };
        let present: Vec<ChannelName> = self
            .subs
            .iter()
            .filter(|(_, s)| matches!(s, Subscription::Live { present: true, .. }))
            .map(|(c, _)| c.clone())
            .collect();
        for channel in present {
            self.op(Op::PresenceAdd { channel, info: info.clone(), announce: false });
        }
    }

    fn reply(&mut self, reply: Reply) {
        self.out.push_back(Output::Reply(Box::new(reply)));
    }

    fn op(&mut self, op: Op) -> OpId {
        let id = self.next_op;
        self.next_op += 1;
        self.out.push_back(Output::Op(id, Box::new(op)));
        id
    }

    fn disconnect(&mut self, d: Disconnect) {
        if !self.closed {
            self.closed = true;
            self.out.push_back(Output::Disconnect(d));
        }
    }
}

#[cfg(test)]
mod tests;
