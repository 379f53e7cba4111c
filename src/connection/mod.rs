//! A live connection: the [`Driver`], the thin async layer between a [`Session`] and the rest of
//! the node, and [`pump`], the one write loop every transport runs it in.
//!
//! The driver runs the operations the session asks for (hub and broker calls, room signaling
//! against presence, calls to the application's backend), feeds their results, the connection's
//! outbox and the session's timers back in, and hands the pump the outputs to write. Transports
//! only add their framing on top.

pub mod pump;
mod rpc;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use switchboard_protocol::Disconnect;
use switchboard_protocol::ErrorCode;
use switchboard_protocol::frame::{ClientFrame, Command, FrameError};
use tokio::time::{Instant, Sleep};

use crate::admission::Ticket;
use crate::direct::{Direct, DirectChannel, Framing};
use crate::hub::{ConnId, ConnMeta, Outbox, Taken, next_conn_id};
use crate::metrics::TransportKind;
use crate::model::Delivery;
use crate::session::{Now, Op, OpId, OpResult, Output, Session, SessionConfig};
use crate::state::AppState;

type OpFuture = Pin<Box<dyn Future<Output = Option<(OpId, OpResult)>> + Send>>;

/// Futures a connection runs beside its session. `FuturesUnordered` allocates its queue up
/// front (two allocations, about 150 bytes): made on first use, let go once idle.
#[derive(Default)]
struct Running(Option<FuturesUnordered<OpFuture>>);

impl Running {
    fn push(&mut self, f: OpFuture) {
        self.0.get_or_insert_with(FuturesUnordered::new).push(f);
    }

    fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(FuturesUnordered::is_empty)
    }

    async fn next(&mut self) -> Option<Option<(OpId, OpResult)>> {
        match &mut self.0 {
            Some(running) => running.next().await,
            None => None,
        }
    }

    fn release_idle(&mut self) {
        if self.0.as_ref().is_some_and(FuturesUnordered::is_empty) {
            self.0 = None;
        }
    }
}

/// Ready when `timer` is. It is polled (its budget, its entry in the timer wheel, the task's
/// waker) once after each reset, which registers the task, and after that only when the wheel
/// has marked it elapsed: not on every wake-up, most of which are deliveries.
fn poll_timer<'a>(timer: &'a mut Pin<Box<Sleep>>, armed: &'a mut bool) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        if *armed && !timer.is_elapsed() {
            return std::task::Poll::Pending;
        }
        *armed = true;
        // Out of the task's budget: a poll refused for budget would register nothing, and
        // this one would then wait for a wake-up that never comes.
        std::pin::pin!(tokio::task::unconstrained(timer.as_mut())).poll(cx)
    })
}

/// Longest a connection reclaiming a client id waits for the previous holder's clean-up.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate: f64::from(rate), burst, tokens: burst, at: Instant::now() }
    }

    /// Takes a token if there is one.
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }
}

/// Why the driver woke up.
#[derive(Debug)]
pub enum Wake {
    /// Deliveries are queued (or the queue overflowed).
    Outbox,
    /// An operation finished.
    Op(Option<(OpId, OpResult)>),
    /// A session timer is due.
    Timer,
}

/// See the module docs.
pub struct Driver {
    state: Arc<AppState>,
    conn: ConnId,
    outbox: Arc<Outbox>,
    /// What the server API tells about this connection.
    meta: Arc<ConnMeta>,
    session: Session,
    ops: Running,
    /// Calls to the application's backend. Apart from `ops` because a connection that ends does
    /// not wait for them: each runs as its own task and completes without it.
    calls: Running,
    batch: Vec<Delivery>,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    /// `timer` was polled since it was last reset: the task is registered with the timer wheel,
    /// which marks it elapsed when it fires ([`poll_timer`]).
    timer_armed: bool,
    /// A wake-up was taken by [`Driver::cut_off`]: the next [`Driver::wait`] looks at the outbox.
    recheck: bool,
    /// The session may have moved a timer since [`Driver::wait`] last asked: anything but a
    /// plain delivery may (a frame, an operation's result, a timer, a kick). Deliveries are most
    /// wake-ups, and asking costs a look at seven deadlines.
    timers_changed: bool,
    /// The client id this connection holds in the hub, and the signal that it let go of it.
    /// Boxed, as `publish_rate`: most connections never have one, and every idle one would
    /// hold the room.
    claim: Option<Box<(String, tokio::sync::oneshot::Sender<()>)>>,
    /// The connection's place in the node's limits; it counts for its user once `connect` says
    /// who that is. `None` for connections counted elsewhere (a SockJS session's requests).
    ticket: Option<Ticket>,
    /// Publishes allowed now (`max_publish_rate`): made full at the first publish, which is
    /// where a bucket made at connect would be too (it only fills up meanwhile).
    publish_rate: Option<Box<TokenBucket>>,
    /// The client's address, named by the connection's log lines.
    peer: Option<std::net::SocketAddr>,
    /// The outbox holds the connection's [`Direct`] ([`crate::direct`]).
    has_direct: bool,
    /// It is lent: the connection waits.
    lent: bool,
}

impl Driver {
    /// A driver for a new connection; `bidirectional` sessions expect pongs.
    pub fn new(state: Arc<AppState>, bidirectional: bool) -> Self {
        let config = state.session_configs[usize::from(bidirectional)].clone();
        Self::with_config(state, config)
    }

    /// A driver whose session has `config` (WebTransport turns datagram delivery on).
    pub fn with_config(state: Arc<AppState>, config: impl Into<Arc<SessionConfig>>) -> Self {
        let conn = next_conn_id();
        let client_id = format!("{:016x}", rand::random::<u64>());
        let session = Session::new(state.rules.clone(), config, client_id, Now::current());
        let outbox = Arc::new(Outbox::new(state.config.outbound_queue, state.config.outbound_queue_bytes));
        let meta = Arc::new(ConnMeta::default());
        state.hub.register(conn, &outbox, meta.clone());
        Self {
            state,
            conn,
            outbox,
            meta,
            session,
            ops: Running::default(),
            calls: Running::default(),
            batch: Vec::new(),
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            timer_at: None,
            timer_armed: false,
            recheck: false,
            timers_changed: true,
            claim: None,
            ticket: None,
            publish_rate: None,
            peer: None,
            has_direct: false,
            lent: false,
        }
    }

    /// Lets the hub's fan-out write publications straight to this connection's socket while
    /// it waits ([`crate::direct`]).
    pub fn with_direct(mut self, direct: Direct) -> Self {
        self.outbox.set_direct(direct);
        self.has_direct = true;
        self
    }

    /// Lends the [`Direct`], framing as `framing` says, with the session's live subscriptions,
    /// if there are any; whether it was lent. For the write loop, when nothing is left to write
    /// and it starts to wait.
    pub fn lend_direct(&mut self, framing: Option<Framing>) -> bool {
        let (true, Some(framing)) = (self.has_direct, framing) else { return false };
        let session = &self.session;
        self.lent = self.outbox.lend_direct(framing, |channels| session.direct_channels(channels));
        self.lent
    }

    /// Takes the [`Direct`] back when the wait ends; the session learns where the fan-out left
    /// each subscription, and `f` (the transport) too, with what a write cut short left, to be
    /// written first.
    pub fn take_back_direct(&mut self, f: impl FnOnce(&[DirectChannel], Option<bytes::Bytes>)) {
        if !std::mem::take(&mut self.lent) {
            return;
        }
        let session = &mut self.session;
        self.outbox.take_back_direct(|channels, rest| {
            session.direct_written(channels);
            f(channels, rest);
        });
    }

    /// Holds `ticket` (the connection's admission) for the connection's life.
    pub fn admitted(mut self, ticket: Ticket) -> Self {
        if let Some(ip) = ticket.ip() {
            let _ = self.meta.remote.set(ip);
        }
        self.ticket = Some(ticket);
        self
    }

    /// Names the client's address in the connection's log lines.
    pub fn from(mut self, peer: crate::http::Peer) -> Self {
        self.peer = peer.0;
        self
    }

    /// The span the connection's log lines go in: the request's (`http`, naming the peer),
    /// made again when a line is logged. An idle connection does not hold a span: the tracing
    /// registry keeps about 350 bytes for each one open.
    pub fn log_span(&self) -> tracing::Span {
        match self.peer {
            Some(remote) => tracing::info_span!("http", %remote),
            None => tracing::Span::none(),
        }
    }

    /// Names the connection's transport (for the server API's connection list).
    pub fn on(self, transport: TransportKind) -> Self {
        let _ = self.meta.transport.set(transport);
        self
    }

    /// The outbox, whose byte count the pump keeps up to date while it writes.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Whether the session has outputs waiting (the pump writes big backlogs in several turns).
    pub fn has_output(&self) -> bool {
        self.session.has_output()
    }

    /// Whether `connect` is still claiming the client id (later commands wait for it).
    pub fn connecting(&self) -> bool {
        self.session.connecting()
    }

    /// Whether `channel`'s publications go out as datagrams ([`Session::datagram`]).
    pub fn datagram(&self, channel: &switchboard_protocol::ChannelName) -> bool {
        self.session.datagram(channel)
    }

    /// The connected user (a token's `sub`); empty before `connect` and when anonymous.
    pub fn user(&self) -> &str {
        self.session.client_info().map_or("", |c| c.user.as_str())
    }

    /// The shared node state.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Feeds a client frame (or the error parsing it).
    pub fn on_frame(&mut self, frame: Result<ClientFrame, FrameError>) {
        self.state.metrics.messages_in.add(1);
        self.timers_changed = true;
        let frame = match frame {
            Ok(ClientFrame::Command { id, command: Command::Publish(_) }) if !self.may_publish() => {
                // Over `max_publish_rate`: this publish is refused, the connection stays.
                self.state.metrics.publish_rate_limited.add(1);
                let m = format!("at most {} publishes a second", self.state.config.max_publish_rate);
                Err(FrameError { id: Some(id), code: ErrorCode::LimitExceeded, message: m })
            }
            other => other,
        };
        let connected = self.session.client_info().is_some();
        match frame {
            Ok(f) => self.session.handle_frame(Now::current(), f),
            Err(e) => self.session.handle_frame_error(e),
        }
        let user = if connected { None } else { self.session.client_info().map(|i| i.user.clone()) };
        if !connected && let Some(info) = self.session.client_info() {
            let _ = self.meta.client.set(info.clone());
        }
        // The user is known now: count the connection for it.
        if let (Some(user), Some(ticket)) = (user, &mut self.ticket)
            && let Err(why) = ticket.set_user(&user)
        {
            self.log_span().in_scope(|| tracing::info!(user, limit = why.label(), "connection refused"));
            self.session.refuse(Disconnect::CONNECTION_LIMIT);
        }
    }

    /// Takes a token of `max_publish_rate` (always there when it is 0).
    fn may_publish(&mut self) -> bool {
        let config = &self.state.config;
        if config.max_publish_rate == 0 {
            return true;
        }
        let bucket = self.publish_rate.get_or_insert_with(|| {
            Box::new(TokenBucket::new(config.max_publish_rate, config.max_publish_burst))
        });
        bucket.take(Instant::now())
    }

    /// Waits for the next thing to feed the session. Cancel-safe.
    pub async fn wait(&mut self) -> Wake {
        if std::mem::take(&mut self.recheck) {
            return Wake::Outbox;
        }
        let deadline = if std::mem::take(&mut self.timers_changed) {
            // Let go of what an idle connection need not hold, but not after a plain delivery:
            // the next one would allocate it again (deliveries are most wake-ups). A burst's
            // buffers are let go at the next timer (a ping) at the latest.
            self.session.release_idle();
            self.ops.release_idle();
            self.calls.release_idle();
            self.session.poll_timeout()
        } else {
            self.timer_at
        };
        if deadline != self.timer_at {
            self.timer_at = deadline;
            if let Some(at) = deadline {
                self.timer.as_mut().reset(at);
                self.timer_armed = false;
            }
        }
        let has_timer = self.timer_at.is_some();
        // In this order, not select!'s random one (a random number per wake-up): operations
        // and timers are few and cannot starve the outbox, which a busy channel keeps ready.
        tokio::select! {
            biased;
            Some(r) = self.ops.next(), if !self.ops.is_empty() => Wake::Op(r),
            Some(r) = self.calls.next(), if !self.calls.is_empty() => Wake::Op(r),
            () = poll_timer(&mut self.timer, &mut self.timer_armed), if has_timer => Wake::Timer,
            _ = self.outbox.ready() => Wake::Outbox,
        }
    }

    /// Resolves when the outbox overflows (or the node closes it) while the transport is busy
    /// writing to a client that does not read. Cancel-safe; deliveries stay queued for `wait`.
    pub async fn cut_off(&mut self) {
        loop {
            self.outbox.ready().await;
            self.recheck = true;
            if self.outbox.is_cut_off() {
                return;
            }
        }
    }

    /// Feeds what [`Driver::wait`] returned into the session.
    pub fn on_wake(&mut self, wake: Wake) {
        // A plain delivery leaves the session's timers as they were; anything else may not.
        self.timers_changed |= !matches!(wake, Wake::Outbox);
        match wake {
            Wake::Outbox => {
                // Unsubscribed first: what was queued for those channels is then dropped.
                let mut kicked = Vec::new();
                let taken = self.outbox.take_all(&mut self.batch, &mut kicked);
                self.timers_changed |= !kicked.is_empty() || taken != Taken::Ok;
                for (channel, reason) in kicked {
                    self.session.handle_kicked(&channel, reason);
                }
                self.on_taken(taken);
            }
            Wake::Op(Some((id, result))) => self.session.handle_result(id, result),
            Wake::Op(None) => {}
            Wake::Timer => {
                self.timer_at = None;
                self.session.handle_timeout(Now::current());
            }
        }
    }

    fn on_taken(&mut self, taken: Taken) {
        match taken {
            Taken::Overflowed => {
                self.state.metrics.slow_consumers.add(1);
                self.session.handle_overflow();
            }
            Taken::Closed(reason) => self.session.handle_disconnect(reason),
            Taken::Ok => {
                for d in self.batch.drain(..) {
                    self.session.handle_delivery(d);
                }
            }
        }
    }

    /// Ends the connection from the outside (transport error, shutdown).
    pub fn end(&mut self, d: Disconnect) {
        self.timers_changed = true;
        self.session.handle_disconnect(d);
    }

    /// The next output for the transport to write; operations are started here, not returned.
    pub fn next_output(&mut self) -> Option<Output> {
        loop {
            match self.session.poll_output()? {
                Output::Op(id, op) => match *op {
                    Op::Rpc(call) => self.calls.push(rpc::start(self.state.clone(), id, call)),
                    op => {
                        if let Some(f) = self.prepare(id, op) {
                            self.ops.push(f);
                        }
                    }
                },
                other => return Some(other),
            }
        }
    }

    /// Starts the synchronous part of `op` (hub changes) and returns the rest, if any.
    fn prepare(&mut self, id: OpId, op: Op) -> Option<OpFuture> {
        let state = self.state.clone();
        Some(match op {
            Op::Subscribe { channel, query } => {
                state.hub.subscribe(&channel, self.conn, self.outbox.clone());
                Box::pin(async move {
                    if let Err(e) = state.broker.node_subscribe(&channel).await {
                        return Some((id, OpResult::History(Err(e))));
                    }
                    Some((id, OpResult::History(state.broker.history(&channel, query).await)))
                })
            }
            Op::Unsubscribe { channel } => {
                state.hub.unsubscribe(&channel, self.conn);
                Box::pin(async move {
                    let _ = state.broker.node_unsubscribe(&channel).await;
                    None
                })
            }
            Op::Publish(req) => Box::pin(async move {
                let r = state.publish(req).await;
                Some((id, OpResult::Published(r)))
            }),
            Op::Signal { inbox, request } => Box::pin(async move {
                match state.broker.presence(&inbox.room).await {
                    Ok(present) => {
                        if let Err(denied) = state.rules.signal_target(&present, &inbox) {
                            return Some((id, OpResult::Refused(denied)));
                        }
                    }
                    Err(e) => return Some((id, OpResult::Published(Err(e)))),
                }
                let r = state.publish(request).await;
                Some((id, OpResult::Published(r)))
            }),
            Op::History { channel, query } => {
                Box::pin(
                    async move { Some((id, OpResult::History(state.broker.history(&channel, query).await))) },
                )
            }
            Op::Presence { channel } => {
                Box::pin(async move { Some((id, OpResult::Presence(state.broker.presence(&channel).await))) })
            }
            Op::PresenceAdd { channel, info, announce } => Box::pin(async move {
                if let Err(e) = state.broker.presence_add(&channel, info, announce).await {
                    tracing::warn!(%channel, error = %e, "presence add failed");
                }
                None
            }),
            Op::Claim { client } => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let joining = self.session.deferred_channels();
                let displaced = state.hub.claim(&client, self.conn, &self.outbox, rx, joining);
                self.claim = Some(Box::new((client, tx)));
                Box::pin(async move {
                    if let Some(d) = displaced {
                        if let Some(outbox) = d.outbox {
                            outbox.close(Disconnect::REPLACED);
                        }
                        // Its presence removals must land before ours are added; a stuck broker
                        // does not hold the new connection for long.
                        let _ = tokio::time::timeout(CLAIM_WAIT, d.released).await;
                    }
                    Some((id, OpResult::Claimed))
                })
            }
            Op::Rpc(call) => rpc::start(state, id, call),
            Op::PresenceRemove { channel, info, announce } => Box::pin(async move {
                if let Err(e) = state.broker.presence_remove(&channel, info, announce).await {
                    tracing::warn!(%channel, error = %e, "presence remove failed");
                }
                None
            }),
        })
    }

    /// The connection is gone: release its subscriptions and presence, after any operation
    /// still running (so a presence add never lands after its remove).
    pub fn finish(mut self) {
        self.state.hub.deregister(self.conn);
        // Displaced by a newer connection of the same client: what it joins stays present.
        let kept = match self.claim.as_deref() {
            Some((client, _)) => self.state.hub.successor_joins(client, self.conn),
            None => Vec::new(),
        };
        let ops = self
            .session
            .close()
            .into_iter()
            .filter(|op| !matches!(op, Op::PresenceRemove { channel, .. } if kept.contains(channel)));
        let close: Vec<OpFuture> = ops.filter_map(|op| self.prepare(0, op)).collect();
        let mut running = std::mem::take(&mut self.ops.0).unwrap_or_default();
        let claim = self.claim.take().map(|c| *c);
        let (state, conn) = (self.state.clone(), self.conn);
        let release = move || {
            if let Some((client, released)) = claim {
                state.hub.release_claim(&client, conn);
                drop(released);
            }
        };
        if running.is_empty() && close.is_empty() {
            return release();
        }
        tokio::spawn(async move {
            while running.next().await.is_some() {}
            for f in close {
                f.await;
            }
            release();
        });
    }
}

/// A connection that ends (or whose future is dropped while it waits: a task aborted at
/// shutdown) takes its socket back from the fan-out: the hub may hold the outbox a while longer.
impl Drop for Driver {
    fn drop(&mut self) {
        if self.has_direct {
            self.outbox.clear_direct();
        }
    }
}
