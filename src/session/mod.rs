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

pub mod recovery;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::frame::{
    ChannelRequest, ClientFrame, ClientInfo, Command, ConnectReply, ConnectRequest, Empty, FrameError,
    HistoryRequest, PresenceReply, PublishReply, PublishRequest as PublishCommand, Reply, ReplyBody,
    SubscribeReply, SubscribeRequest,
};
use switchboard_protocol::{ChannelName, Disconnect, ErrorCode, Position};
use tokio::time::Instant;

use crate::broker::{BrokerError, HistoryQuery, HistoryResult, PublishRequest, PublishResult, StreamTop};
use crate::model::{Delivery, Epoch, Payload, Publication};
use crate::policy::Identity;
use crate::rooms::Inbox;
use crate::rules::{Actor, Denied, Destination, Rules};

/// Longest display name kept, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Most commands held while a `connect` waits for its client id to be claimed.
const MAX_DEFERRED: usize = 64;

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
        }
    }
}

/// An operation's id, to match its result.
pub type OpId = u64;

/// Work for the driver.
#[derive(Debug)]
pub enum Op {
    /// Register this connection in the hub for `channel`, then read the history with `query`;
    /// answer [`OpResult::History`].
    Subscribe {
        /// The channel.
        channel: ChannelName,
        /// The history read.
        query: HistoryQuery,
    },
    /// Remove this connection from the hub for `channel`. No result.
    Unsubscribe {
        /// The channel.
        channel: ChannelName,
    },
    /// Publish; answer [`OpResult::Published`].
    Publish(PublishRequest),
    /// Publish to a signaling inbox if its participant is in the room ([`Rules::signal_target`]);
    /// answer [`OpResult::Published`] or [`OpResult::Refused`].
    Signal {
        /// The inbox.
        inbox: Inbox,
        /// The publication to it.
        request: PublishRequest,
    },
    /// Read history; answer [`OpResult::History`].
    History {
        /// The channel.
        channel: ChannelName,
        /// The read.
        query: HistoryQuery,
    },
    /// Read presence; answer [`OpResult::Presence`].
    Presence {
        /// The channel.
        channel: ChannelName,
    },
    /// Add the client to presence. No result.
    PresenceAdd {
        /// The channel.
        channel: ChannelName,
        /// The client.
        info: Arc<ClientInfo>,
        /// Send a join event.
        announce: bool,
    },
    /// Take client id `client` on this node, ending a connection that still holds it and
    /// waiting for its clean-up (presence); answer [`OpResult::Claimed`].
    Claim {
        /// The client id.
        client: String,
    },
    /// Remove the client from presence. No result.
    PresenceRemove {
        /// The channel.
        channel: ChannelName,
        /// The client.
        info: Arc<ClientInfo>,
        /// Send a leave event.
        announce: bool,
    },
}

/// The result of an [`Op`].
#[derive(Debug)]
pub enum OpResult {
    /// Of `Subscribe` and `History`.
    History(Result<HistoryResult, BrokerError>),
    /// Of `Publish`.
    Published(Result<PublishResult, BrokerError>),
    /// Of `Presence`.
    Presence(Result<Vec<Arc<ClientInfo>>, BrokerError>),
    /// Of `Signal`: the rules refused it (the target is not in the room); nothing was published.
    Refused(Denied),
    /// Of `Claim`: the client id is this connection's.
    Claimed,
}

/// What the session wants done.
#[derive(Debug)]
pub enum Output {
    /// Send a reply (one-way transports turn `connect` and `subscribe` replies into events).
    Reply(Reply),
    /// Send a history reply; its publications keep their shared encodings.
    History {
        /// The command id.
        id: u64,
        /// The stream's top.
        top: StreamTop,
        /// The publications.
        publications: Vec<Arc<Publication>>,
    },
    /// Send a publication or a join/leave event.
    Deliver(Delivery),
    /// Send a ping (one-way transports: a heartbeat).
    Ping,
    /// Run an operation; those that answer are fed back with [`Session::handle_result`].
    Op(OpId, Op),
    /// End the connection. The session is closed; call [`Session::close`] for the clean-up ops.
    Disconnect(Disconnect),
}

enum Subscription {
    Recovering {
        op: OpId,
        reply_id: u64,
        since: Option<Position>,
        held: Vec<Arc<Publication>>,
        datagram: bool,
    },
    Live {
        epoch: Epoch,
        offset: u64,
        present: bool,
        datagram: bool,
    },
}

enum Pending {
    Connect(u64, ConnectReply),
    Subscribe(ChannelName),
    Publish(u64),
    History(u64),
    Presence(u64),
}

/// See the module docs.
pub struct Session {
    rules: Arc<Rules>,
    config: SessionConfig,
    client_id: String,
    info: Option<Arc<ClientInfo>>,
    identity: Identity,
    subs: HashMap<ChannelName, Subscription>,
    pending: HashMap<OpId, Pending>,
    next_op: OpId,
    out: VecDeque<Output>,
    next_ping: Instant,
    next_presence_refresh: Instant,
    pong_deadline: Option<Instant>,
    expires_at: Option<Instant>,
    /// Commands that came while `connect` claimed the client id, run once it has.
    deferred: Option<VecDeque<(u64, Command)>>,
    closed: bool,
}

impl Session {
    /// A new session for the connection `client_id`, opened at `now`.
    pub fn new(rules: Arc<Rules>, config: SessionConfig, client_id: String, now: Now) -> Self {
        Self {
            rules,
            next_ping: now.instant + config.ping_interval,
            next_presence_refresh: now.instant + config.presence_refresh,
            config,
            client_id,
            info: None,
            identity: Identity::default(),
            subs: HashMap::new(),
            pending: HashMap::new(),
            next_op: 1,
            out: VecDeque::new(),
            pong_deadline: None,
            expires_at: None,
            deferred: None,
            closed: false,
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Session::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        [Some(self.next_ping), Some(self.next_presence_refresh), self.pong_deadline, self.expires_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the session ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The channels of subscriptions waiting for `connect` to claim the client id.
    pub fn deferred_channels(&self) -> Vec<ChannelName> {
        let deferred = self.deferred.iter().flatten();
        deferred
            .filter_map(|(_, c)| match c {
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

    /// Whether `channel`'s publications go out as datagrams (latest-wins) rather than in order
    /// on the connection's stream.
    pub fn datagram(&self, channel: &ChannelName) -> bool {
        matches!(
            self.subs.get(channel),
            Some(Subscription::Live { datagram: true, .. } | Subscription::Recovering { datagram: true, .. })
        )
    }

    /// The channels held.
    pub fn channels(&self) -> impl Iterator<Item = &ChannelName> {
        self.subs.keys()
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
            deferred.push_back((id, command));
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
        self.dispatch(id, command);
    }

    fn dispatch(&mut self, id: u64, command: Command) {
        match command {
            Command::Connect(_) => {}
            Command::Subscribe(req) => self.subscribe(id, req),
            Command::Unsubscribe(req) => self.unsubscribe(id, req),
            Command::Publish(req) => self.publish(id, req),
            Command::Presence(req) => self.presence(id, req),
            Command::History(req) => self.history(id, req),
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
            Some(Subscription::Recovering { held, .. }) => {
                if held.len() >= max_held {
                    return self.disconnect(Disconnect::SLOW_CONSUMER);
                }
                held.push(publication);
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
                for (id, command) in self.deferred.take().unwrap_or_default() {
                    if matches!(command, Command::Connect(_)) {
                        self.reply(Reply::error(id, ErrorCode::BadRequest, "already connected"));
                    } else {
                        self.dispatch(id, command);
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
                Ok(h) => self.out.push_back(Output::History { id, top: h.top, publications: h.publications }),
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
        self.out.push_back(Output::Reply(reply));
    }

    fn op(&mut self, op: Op) -> OpId {
        let id = self.next_op;
        self.next_op += 1;
        self.out.push_back(Output::Op(id, op));
        id
    }

    fn disconnect(&mut self, d: Disconnect) {
        if !self.closed {
            self.closed = true;
            self.out.push_back(Output::Disconnect(d));
        }
    }

    fn connect(&mut self, now: Now, id: u64, req: ConnectRequest) {
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
                    heartbeat: self
                        .config
                        .pong_timeout
                        .is_none()
                        .then_some(self.config.ping_interval.as_secs()),
                };
                self.connect_as(now, identity, req.name);
                self.deferred = Some(VecDeque::new());
                let op = self.op(Op::Claim { client: self.client_id.clone() });
                self.pending.insert(op, Pending::Connect(id, reply));
            }
            Err(d) => self.disconnect(d),
        }
    }

    fn connect_as(&mut self, now: Now, identity: Identity, name: Option<String>) {
        let name = name
            .or_else(|| identity.name.clone())
            .map(|n| n.chars().take(MAX_NAME_CHARS).collect::<String>())
            .filter(|n| !n.is_empty());
        // `exp` comes from the network: one too far ahead to represent simply never comes.
        self.expires_at = identity
            .expires_at
            .and_then(|exp| now.instant.checked_add(Duration::from_secs(exp.saturating_sub(now.unix))));
        self.info =
            Some(Arc::new(ClientInfo { client: self.client_id.clone(), user: identity.user.clone(), name }));
        self.identity = identity;
    }

    /// This connection, as the rules see it.
    fn actor(&self) -> Actor<'_> {
        Actor::Client { identity: &self.identity, client: Some(&self.client_id) }
    }

    fn channel(&mut self, id: u64, name: &str) -> Option<ChannelName> {
        match ChannelName::new(name) {
            Ok(c) => Some(c),
            Err(e) => {
                self.reply(Reply::error(id, ErrorCode::BadRequest, e.to_string()));
                None
            }
        }
    }

    fn subscribe(&mut self, id: u64, req: SubscribeRequest) {
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
        self.subs
            .insert(channel, Subscription::Recovering { op, reply_id: id, since: req.since, held, datagram });
    }

    fn subscribed(&mut self, op: OpId, channel: ChannelName, result: Result<HistoryResult, BrokerError>) {
        let Some(Subscription::Recovering { op: current, .. }) = self.subs.get(&channel) else {
            return;
        };
        if *current != op {
            return;
        }
        let Some(Subscription::Recovering { reply_id, since, held, datagram, .. }) =
            self.subs.remove(&channel)
        else {
            return;
        };
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

    fn unsubscribe(&mut self, id: u64, req: ChannelRequest) {
        let Some(channel) = self.channel(id, &req.channel) else {
            return;
        };
        let Some(sub) = self.subs.remove(&channel) else {
            return self.reply(Reply::error(id, ErrorCode::NotSubscribed, "not subscribed"));
        };
        // Every command gets one reply: a subscribe still reading its history is answered now
        // (its history result, when it comes, finds nothing to complete).
        if let Subscription::Recovering { reply_id, .. } = &sub {
            let m = "unsubscribed before the subscription completed";
            self.reply(Reply::error(*reply_id, ErrorCode::NotSubscribed, m));
        }
        if let (Subscription::Live { present: true, .. }, Some(info)) = (&sub, self.info.clone()) {
            let announce = self.rules.options(&channel).join_leave;
            self.op(Op::PresenceRemove { channel: channel.clone(), info, announce });
        }
        self.op(Op::Unsubscribe { channel });
        self.reply(Reply { id, body: ReplyBody::Unsubscribe(Empty {}) });
    }

    fn publish(&mut self, id: u64, req: PublishCommand) {
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
        if let Err(denied) = self.rules.check_publication(payload.len(), req.idempotency_key.as_deref()) {
            return self.reply(refusal(id, denied));
        }
        let request = PublishRequest {
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

    fn presence(&mut self, id: u64, req: ChannelRequest) {
        let Some(channel) = self.channel(id, &req.channel) else {
            return;
        };
        if let Err(denied) = self.rules.may_see_presence(&self.actor(), &channel) {
            return self.reply(refusal(id, denied));
        }
        let op = self.op(Op::Presence { channel });
        self.pending.insert(op, Pending::Presence(id));
    }

    fn history(&mut self, id: u64, req: HistoryRequest) {
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
}

/// Checks that `p` continues a live subscription at `(epoch, offset)`: `Ok(true)` when it is the
/// next one (and `offset` advanced), `Ok(false)` when it was already delivered. A gap or another
/// epoch means the subscription can no longer vouch for continuity.
fn advance(epoch: &Epoch, offset: &mut u64, p: &Publication) -> Result<bool, Disconnect> {
    if *p.epoch != **epoch || p.offset > *offset + 1 {
        return Err(Disconnect::INSUFFICIENT_STATE);
    }
    if p.offset == *offset + 1 {
        *offset = p.offset;
        return Ok(true);
    }
    Ok(false)
}

/// Latest-wins continuation for datagram subscriptions: `true` (and the position moves) when `p`
/// is newer than what was sent, or from a new epoch; older and repeated offsets are dropped. Gaps
/// are expected here: datagram delivery never promised every publication.
fn latest_wins(epoch: &mut Epoch, offset: &mut u64, p: &Publication) -> bool {
    if *p.epoch != **epoch {
        *epoch = p.epoch.clone();
        *offset = p.offset;
        return true;
    }
    if p.offset > *offset {
        *offset = p.offset;
        return true;
    }
    false
}

fn refusal(id: u64, denied: Denied) -> Reply {
    Reply::error(id, denied.code, denied.message)
}

fn broker_error(id: u64, e: &BrokerError) -> Reply {
    Reply::error(id, ErrorCode::BrokerUnavailable, e.to_string())
}

#[cfg(test)]
mod tests;
