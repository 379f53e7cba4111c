//! The hub: this node's subscriptions, and the fan-out of each delivery to them.
//!
//! Each connection owns an [`Outbox`], a bounded queue the hub pushes into without ever blocking.
//! The connection's task takes the whole queue at once and writes it in one go, so a burst costs
//! one wake-up and one socket write per connection, not one per message. A connection whose queue
//! is full is flagged as a slow consumer; it disconnects with code 3002 and recovers from history
//! when it returns, so nothing is lost silently and no other subscriber waits for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use switchboard_protocol::{ChannelName, Disconnect};

use crate::broker::DeliverySink;
use crate::direct::{Direct, DirectChannel, Flushed, Framing};
use crate::fanout::{Turns, Written};
use crate::metrics::Metrics;
use crate::model::Delivery;
pub use crate::wake::{ReadGate, Signal};

/// A connection's id, unique in this process.
pub type ConnId = u64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// A new connection id.
pub fn next_conn_id() -> ConnId {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// A connection's bounded outbound queue, in deliveries and in bytes. The bytes count what is
/// queued and what the connection's transport is writing now ([`Outbox::set_in_flight`]: a
/// history reply counts), so a client that stops reading pins at most `capacity_bytes`.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<OutboxInner>,
    /// Raised by a push (and the rest) for [`Outbox::ready`]: the one task that reads the outbox
    /// waits on it alone.
    signal: Signal,
    capacity: usize,
    capacity_bytes: usize,
}

#[derive(Debug, Default)]
struct OutboxInner {
    queue: Vec<Delivery>,
    /// The queued deliveries' [`Delivery::weight`].
    bytes: usize,
    /// What the transport is writing.
    in_flight: usize,
    overflowed: bool,
    closed: Option<Disconnect>,
    /// Channels the node unsubscribed the connection from (an administrator's action).
    kicked: Vec<(ChannelName, Disconnect)>,
    /// The connection's socket, which the fan-out may write to while the connection lends it.
    direct: Option<Direct>,
    /// What is queued waits for the fan-out's flush ([`Outbox::flush_direct`]), not the task.
    deferred: bool,
}

impl OutboxInner {
    /// A kick or a close is queued: the task decides what of the queue still goes out, so the
    /// fan-out writes nothing.
    fn task_decides(&self) -> bool {
        !self.kicked.is_empty() || self.closed.is_some()
    }
}

/// Whether [`Outbox::offer`] may leave a delivery to the fan-out ([`crate::direct`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
    /// No: queue it for the connection's task.
    Never,
    /// Write it now (the first publication of a publisher's turn).
    Now,
    /// Queue it for the fan-out's flush once the publisher's turn ends.
    Later,
}

/// What [`Outbox::offer`] did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for the connection's task.
    Queued,
    /// Written to the socket now ([`crate::direct`]); its size.
    Written(usize),
    /// Queued for the fan-out to write ([`Outbox::flush_direct`]); `first`: nothing was
    /// waiting for it before, so the outbox must be listed for the flush.
    Deferred {
        /// The first one since the last flush.
        first: bool,
    },
    /// Refused: the queue is full (the connection is then flagged).
    Refused,
}

/// What [`Outbox::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Deliveries (possibly none) were moved out.
    Ok,
    /// The queue overflowed: the connection must end as a slow consumer.
    Overflowed,
    /// The node ended the connection (its broker may have lost deliveries).
    Closed(Disconnect),
}

impl Outbox {
    /// A queue holding at most `capacity` deliveries and `capacity_bytes` bytes.
    pub fn new(capacity: usize, capacity_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(OutboxInner::default()),
            signal: Signal::default(),
            capacity,
            capacity_bytes,
        }
    }

    /// Queues a delivery; `false` when the queue is full (the connection is then flagged). One
    /// delivery larger than the byte bound passes when nothing else is queued or being written.
    pub fn push(&self, delivery: Delivery) -> bool {
        self.offer(delivery, FanOut::Never) != Offer::Refused
    }

    /// [`Outbox::push`], unless the connection lent its [`Direct`] and nothing the task must
    /// see is queued before it: then written now ([`FanOut::Now`]) or left for the fan-out to
    /// write ([`FanOut::Later`], [`Outbox::flush_direct`]), with no wake-up.
    pub fn offer(&self, delivery: Delivery, fan_out: FanOut) -> Offer {
        let mut inner = self.inner.lock();
        if inner.overflowed {
            return Offer::Refused;
        }
        if fan_out == FanOut::Now
            && inner.queue.is_empty()
            && !inner.task_decides()
            && let Some(direct) = inner.direct.as_mut()
        {
            let written = direct.offer(&delivery);
            if written.written == 1 {
                drop(inner);
                if written.wake {
                    // Cut short: the task writes the rest.
                    self.signal.raise();
                }
                return Offer::Written(written.bytes);
            }
        }
        let size = delivery.weight();
        let held = inner.bytes + inner.in_flight;
        if inner.queue.len() >= self.capacity || (held > 0 && held + size > self.capacity_bytes) {
            inner.overflowed = true;
            drop(inner);
            self.signal.raise();
            return Offer::Refused;
        }
        let was_empty = inner.queue.is_empty();
        let for_fan_out = fan_out != FanOut::Never
            && (was_empty || inner.deferred)
            && !inner.task_decides()
            && matches!(delivery, Delivery::Publication(_))
            && inner.direct.as_ref().is_some_and(Direct::accepts);
        inner.queue.push(delivery);
        inner.bytes += size;
        if for_fan_out {
            let first = !std::mem::replace(&mut inner.deferred, true);
            return Offer::Deferred { first };
        }
        // Anything the task must see: it takes the whole queue, in order.
        let wake = was_empty || std::mem::take(&mut inner.deferred);
        drop(inner);
        if wake {
            self.signal.raise();
        }
        Offer::Queued
    }

    /// Writes what [`Outbox::offer`] left for the fan-out, as [`Direct::flush`] does; what it
    /// cannot write wakes the connection's task.
    pub fn flush_direct(&self) -> Flushed {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        if !std::mem::take(&mut inner.deferred) {
            return Flushed::default();
        }
        let task_decides = inner.task_decides();
        let flushed = match inner.direct.as_mut() {
            Some(direct) if !task_decides => direct.flush(&mut inner.queue),
            _ => Flushed { wake: true, ..Flushed::default() },
        };
        inner.bytes = inner.queue.iter().map(Delivery::weight).sum();
        if inner.queue.is_empty() && inner.queue.capacity() > 0 {
            // An idle connection holds nothing here.
            inner.queue = Vec::new();
        }
        drop(guard);
        if flushed.wake {
            self.signal.raise();
        }
        flushed
    }

    /// Gives the outbox the connection's [`Direct`], for its life (see [`crate::direct`]).
    pub fn set_direct(&self, direct: Direct) {
        self.inner.lock().direct = Some(direct);
    }

    /// Lets the socket go with the connection.
    pub fn clear_direct(&self) {
        self.inner.lock().direct = None;
    }

    /// [`Direct::lend`]: the connection waits.
    pub fn lend_direct(&self, framing: Framing, fill: impl FnOnce(&mut Vec<DirectChannel>)) -> bool {
        self.inner.lock().direct.as_mut().is_some_and(|d| d.lend(framing, fill))
    }

    /// [`Direct::take_back`]: the wait ended. `f` learns where the fan-out left each
    /// subscription, and what a write cut short left. What the fan-out has not written yet is
    /// the task's now.
    pub fn take_back_direct(&self, f: impl FnOnce(&[DirectChannel], Option<bytes::Bytes>)) {
        let mut inner = self.inner.lock();
        let deferred = std::mem::take(&mut inner.deferred);
        if let Some(direct) = inner.direct.as_mut() {
            let rest = direct.take_back();
            f(direct.subscriptions(), rest);
        }
        drop(inner);
        if deferred {
            self.signal.raise();
        }
    }

    /// [`Direct::hold`]: the connection reads (`true`), or is done reading.
    pub fn hold_direct(&self, held: bool) {
        if let Some(direct) = self.inner.lock().direct.as_mut() {
            direct.hold(held);
        }
    }

    /// Ends the connection with `reason` at its next wake-up.
    pub fn close(&self, reason: Disconnect) {
        self.inner.lock().closed.get_or_insert(reason);
        self.signal.raise();
    }

    /// Unsubscribes the connection from `channel` at its next wake-up, telling it `reason`.
    pub fn kick(&self, channel: ChannelName, reason: Disconnect) {
        self.inner.lock().kicked.push((channel, reason));
        self.signal.raise();
    }

    /// The channels [`Outbox::kick`] asked to leave since the last call.
    pub fn take_kicked(&self) -> Vec<(ChannelName, Disconnect)> {
        std::mem::take(&mut self.inner.lock().kicked)
    }

    /// Moves every queued delivery into `into` (which should be empty; its capacity is reused).
    pub fn take(&self, into: &mut Vec<Delivery>) -> Taken {
        self.take_all(into, &mut Vec::new())
    }

    /// [`Outbox::take_kicked`] into `kicked`, then [`Outbox::take`], under one lock: a
    /// connection's every wake-up takes the lock once (the publisher's `push` contends for it).
    pub fn take_all(&self, into: &mut Vec<Delivery>, kicked: &mut Vec<(ChannelName, Disconnect)>) -> Taken {
        let mut inner = self.inner.lock();
        if !inner.kicked.is_empty() {
            std::mem::swap(&mut inner.kicked, kicked);
        }
        if let Some(reason) = inner.closed {
            return Taken::Closed(reason);
        }
        if inner.overflowed {
            return Taken::Overflowed;
        }
        inner.deferred = false;
        std::mem::swap(&mut inner.queue, into);
        inner.bytes = 0;
        Taken::Ok
    }

    /// The transport is writing `bytes` (0: its write is done); they count in the byte bound.
    pub fn set_in_flight(&self, bytes: usize) {
        self.inner.lock().in_flight = bytes;
    }

    /// Bytes queued and being written.
    pub fn held_bytes(&self) -> usize {
        let inner = self.inner.lock();
        inner.bytes + inner.in_flight
    }

    /// Whether the connection must end (overflowed or closed by the node).
    pub fn is_cut_off(&self) -> bool {
        let inner = self.inner.lock();
        inner.overflowed || inner.closed.is_some()
    }

    /// Waits until something was pushed (or the queue overflowed) since the last wake-up. For
    /// one task at a time: the outbox's reader.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| self.signal.poll_take(cx)).await;
    }
}

/// One shard of the channel → local subscribers map.
type ChannelShard = RwLock<HashMap<ChannelName, Vec<(ConnId, Arc<Outbox>)>>>;
/// One shard of the open connections: each one's outbox and what it says about itself.
type ConnectionShard = Mutex<HashMap<ConnId, (std::sync::Weak<Outbox>, Arc<ConnMeta>)>>;

/// What the node tells about an open connection (the server API's `/api/connections`).
#[derive(Debug)]
pub struct ConnMeta {
    /// When it opened.
    pub opened: std::time::SystemTime,
    /// Its transport, once the transport said.
    pub transport: std::sync::OnceLock<crate::metrics::TransportKind>,
    /// The client's IP address, when the transport knows it.
    pub remote: std::sync::OnceLock<std::net::IpAddr>,
    /// Who it is, once `connect` succeeded.
    pub client: std::sync::OnceLock<Arc<switchboard_protocol::frame::ClientInfo>>,
}

impl Default for ConnMeta {
    fn default() -> Self {
        Self {
            opened: std::time::SystemTime::now(),
            transport: Default::default(),
            remote: Default::default(),
            client: Default::default(),
        }
    }
}

/// The connection holding a client id on this node.
struct Claim {
    conn: ConnId,
    outbox: std::sync::Weak<Outbox>,
    /// Closes when the connection has ended and released its presence.
    released: tokio::sync::oneshot::Receiver<()>,
    /// Channels it joins as it takes over: the connection it displaced leaves their presence
    /// to it rather than announcing a leave and a join of the same client.
    joining: Vec<ChannelName>,
}

/// The holder a new claim displaced: end it, then wait for `released`.
pub struct Displaced {
    /// The displaced connection's outbox, if it is still open.
    pub outbox: Option<Arc<Outbox>>,
    /// Closes when its clean-up is done.
    pub released: tokio::sync::oneshot::Receiver<()>,
}

/// See the module docs.
pub struct Hub {
    shards: Box<[ChannelShard]>,
    /// Client id → the local connection holding it (`connect.session` moves an id between
    /// connections).
    claims: Mutex<HashMap<String, Claim>>,
    /// Every open connection's outbox, so the node can end them all (shutdown) without each
    /// connection also waiting on a shared signal at every wake-up.
    connections: Box<[ConnectionShard]>,
    metrics: Arc<Metrics>,
    /// Most deliveries of one publication the fan-out writes itself ([`crate::direct`]).
    direct_limit: AtomicUsize,
    turns: Arc<Turns>,
}

const SHARDS: usize = 64;

impl Hub {
    /// An empty hub.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            connections: (0..SHARDS).map(|_| Mutex::default()).collect(),
            claims: Mutex::default(),
            turns: Turns::new(metrics.clone()),
            metrics,
            direct_limit: usize::MAX.into(),
        }
    }

    /// Writes at most `limit` deliveries of a publication in the fan-out itself (the rest wake
    /// their connections); 0: none. Unbounded by default.
    pub fn set_direct_limit(&self, limit: usize) {
        self.direct_limit.store(limit, Ordering::Relaxed);
    }

    /// Registers an open connection's outbox and description.
    pub fn register(&self, conn: ConnId, outbox: &Arc<Outbox>, meta: Arc<ConnMeta>) {
        self.connections[conn as usize % SHARDS].lock().insert(conn, (Arc::downgrade(outbox), meta));
    }

    /// Every open connection's description, by id.
    pub fn connections(&self) -> Vec<(ConnId, Arc<ConnMeta>)> {
        let mut out: Vec<_> = self
            .connections
            .iter()
            .flat_map(|s| s.lock().iter().map(|(id, (_, m))| (*id, m.clone())).collect::<Vec<_>>())
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// An open connection's outbox and description.
    pub fn connection(&self, conn: ConnId) -> Option<(Arc<Outbox>, Arc<ConnMeta>)> {
        let shard = self.connections[conn as usize % SHARDS].lock();
        let (outbox, meta) = shard.get(&conn)?;
        Some((outbox.upgrade()?, meta.clone()))
    }

    /// The channels `conn` is subscribed to here (a scan: for the server API, not hot paths).
    pub fn subscriptions_of(&self, conn: ConnId) -> Vec<ChannelName> {
        let mut out: Vec<ChannelName> = self
            .shards
            .iter()
            .flat_map(|s| {
                let shard = s.read();
                shard
                    .iter()
                    .filter(|(_, v)| v.iter().any(|(c, _)| *c == conn))
                    .map(|(c, _)| c.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        out
    }

    /// The local subscribers of `channel`, by connection id.
    pub fn subscribers(&self, channel: &ChannelName) -> Vec<ConnId> {
        self.shard(channel.as_str())
            .read()
            .get(channel)
            .map_or_else(Vec::new, |v| v.iter().map(|(c, _)| *c).collect())
    }

    /// Forgets a closed connection.
    pub fn deregister(&self, conn: ConnId) {
        self.connections[conn as usize % SHARDS].lock().remove(&conn);
    }

    /// Makes `conn` the holder of client id `client`; `released` must close once `conn` has ended
    /// and released its presence. Returns the holder it displaced, if any.
    pub fn claim(
        &self,
        client: &str,
        conn: ConnId,
        outbox: &Arc<Outbox>,
        released: tokio::sync::oneshot::Receiver<()>,
        joining: Vec<ChannelName>,
    ) -> Option<Displaced> {
        let claim = Claim { conn, outbox: Arc::downgrade(outbox), released, joining };
        let old = self.claims.lock().insert(client.to_owned(), claim)?;
        Some(Displaced { outbox: old.outbox.upgrade(), released: old.released })
    }

    /// The channels whose presence `conn`, displaced from `client`, leaves to its successor.
    pub fn successor_joins(&self, client: &str, conn: ConnId) -> Vec<ChannelName> {
        match self.claims.lock().get(client) {
            Some(c) if c.conn != conn => c.joining.clone(),
            _ => Vec::new(),
        }
    }

    /// `conn` ended and released its presence: forget its claim on `client` (if still its own).
    pub fn release_claim(&self, client: &str, conn: ConnId) {
        let mut claims = self.claims.lock();
        if claims.get(client).is_some_and(|c| c.conn == conn) {
            claims.remove(client);
        }
    }

    /// Ends every open connection with `reason`.
    pub fn close_all(&self, reason: Disconnect) {
        for shard in self.connections.iter() {
            for outbox in shard.lock().values().filter_map(|(o, _)| o.upgrade()) {
                outbox.close(reason);
            }
        }
    }

    fn shard(&self, channel: &str) -> &ChannelShard {
        // FNV-1a: cheap and good enough to spread channel names.
        let h =
            channel.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// Adds a subscriber; `true` when it is the node's first for the channel.
    pub fn subscribe(&self, channel: &ChannelName, conn: ConnId, outbox: Arc<Outbox>) -> bool {
        let mut shard = self.shard(channel.as_str()).write();
        let subs = shard.entry(channel.clone()).or_default();
        subs.push((conn, outbox));
        subs.len() == 1
    }

    /// Removes a subscriber; `true` when it was the node's last for the channel.
    pub fn unsubscribe(&self, channel: &ChannelName, conn: ConnId) -> bool {
        let mut shard = self.shard(channel.as_str()).write();
        let Some(subs) = shard.get_mut(channel) else {
            return false;
        };
        if let Some(i) = subs.iter().position(|(c, _)| *c == conn) {
            subs.swap_remove(i);
        }
        if subs.is_empty() {
            shard.remove(channel);
            return true;
        }
        false
    }

    /// Every channel with local subscribers, and how many.
    pub fn channels(&self) -> Vec<(ChannelName, usize)> {
        let mut out: Vec<_> = self
            .shards
            .iter()
            .flat_map(|s| s.read().iter().map(|(c, v)| (c.clone(), v.len())).collect::<Vec<_>>())
            .collect();
        out.sort();
        out
    }

    /// How many local subscribers `channel` has.
    pub fn subscriber_count(&self, channel: &ChannelName) -> usize {
        self.shard(channel.as_str()).read().get(channel).map_or(0, Vec::len)
    }
}

impl DeliverySink for Hub {
    fn deliver(&self, mut delivery: Delivery) {
        let shard = self.shard(delivery.channel().as_str()).read();
        let Some((name, subs)) = shard.get_key_value(delivery.channel()) else {
            return;
        };
        // A publication decoded from a shared broker has a name of its own: the hub's, shared
        // by the channel's publications, lets the fan-out match subscriptions by pointer.
        if let Delivery::Publication(p) = &mut delivery
            && let Some(p) = Arc::get_mut(p)
        {
            p.channel = name.clone();
        }
        // The first publication of a turn is written now; those that follow in the same turn
        // (a publisher with frames buffered, a busy broker) wait for the flush at its end, so
        // that a write carries all of them ([`crate::fanout`]).
        let turn = self.turns.begin();
        let (mut dropped, mut fanned) = (0u64, 0usize);
        let mut written = Written::default();
        let mut listed = Vec::new();
        let limit = self.direct_limit.load(Ordering::Relaxed);
        for (_, outbox) in subs {
            match outbox.offer(delivery.clone(), if fanned < limit { turn.mode } else { FanOut::Never }) {
                Offer::Queued => {}
                Offer::Written(size) => {
                    fanned += 1;
                    written.count += 1;
                    written.bytes += size as u64;
                }
                Offer::Deferred { first } => {
                    fanned += 1;
                    if first {
                        listed.push(outbox.clone());
                    }
                }
                Offer::Refused => dropped += 1,
            }
        }
        self.turns.end(turn, listed);
        self.metrics.deliveries.add(subs.len() as u64 - dropped);
        self.metrics.deliveries_dropped.add(dropped);
        if let Delivery::Publication(p) = &delivery {
            written.oldest = Some(p.published_at);
        }
        written.record(&self.metrics);
    }

    fn lost(&self, channel: Option<&ChannelName>, reason: Disconnect) {
        for shard in self.shards.iter() {
            for (c, subs) in shard.read().iter() {
                if channel.is_none_or(|lost| lost == c) {
                    subs.iter().for_each(|(_, outbox)| outbox.close(reason));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Payload, Publication};

    fn publication(channel: &ChannelName, offset: u64) -> Delivery {
        Delivery::Publication(Arc::new(Publication::new(
            channel.clone(),
            offset,
            "e".into(),
            Payload::Json(bytes::Bytes::from_static(b"1")),
            None,
        )))
    }

    #[tokio::test]
    async fn fans_out_the_same_allocation_to_every_subscriber() {
        let hub = Hub::new(Arc::new(Metrics::default()));
        let ch = ChannelName::new("a").unwrap();
        let (a, b) = (Arc::new(Outbox::new(8, 1 << 20)), Arc::new(Outbox::new(8, 1 << 20)));
        assert!(hub.subscribe(&ch, 1, a.clone()));
        assert!(!hub.subscribe(&ch, 2, b.clone()));
        hub.deliver(publication(&ch, 1));
        hub.deliver(publication(&ChannelName::new("other").unwrap(), 1));
        let (mut qa, mut qb) = (Vec::new(), Vec::new());
        a.ready().await;
        assert_eq!(a.take(&mut qa), Taken::Ok);
        assert_eq!(b.take(&mut qb), Taken::Ok);
        assert_eq!((qa.len(), qb.len()), (1, 1));
        let (Delivery::Publication(pa), Delivery::Publication(pb)) = (&qa[0], &qb[0]) else { panic!() };
        assert!(Arc::ptr_eq(pa, pb));
        assert!(!hub.unsubscribe(&ch, 1));
        assert!(hub.unsubscribe(&ch, 2));
        assert!(hub.channels().is_empty());
    }

    #[tokio::test]
    async fn a_full_outbox_flags_only_its_own_connection() {
        let hub = Hub::new(Arc::new(Metrics::default()));
        let ch = ChannelName::new("a").unwrap();
        let (slow, fast) = (Arc::new(Outbox::new(2, 1 << 20)), Arc::new(Outbox::new(100, 1 << 20)));
        hub.subscribe(&ch, 1, slow.clone());
        hub.subscribe(&ch, 2, fast.clone());
        for n in 1..=5 {
            hub.deliver(publication(&ch, n));
        }
        let mut q = Vec::new();
        assert_eq!(slow.take(&mut q), Taken::Overflowed);
        let mut q = Vec::new();
        assert_eq!(fast.take(&mut q), Taken::Ok);
        assert_eq!(q.len(), 5);
    }

    #[tokio::test]
    async fn the_byte_bound_counts_queued_and_in_flight_bytes() {
        let ch = ChannelName::new("a").unwrap();
        let big = |offset| {
            Delivery::Publication(Arc::new(Publication::new(
                ch.clone(),
                offset,
                "e".into(),
                Payload::Json(bytes::Bytes::from(vec![b'1'; 10_000])),
                None,
            )))
        };
        let outbox = Outbox::new(1000, 35_000);
        for n in 1..=3 {
            assert!(outbox.push(big(n)), "three 10 kB publications fit in 35 kB");
        }
        assert!((30_000..35_000).contains(&outbox.held_bytes()));
        assert!(!outbox.push(big(4)), "a fourth does not, whatever the message bound");
        assert_eq!(outbox.take(&mut Vec::new()), Taken::Overflowed);

        let outbox = Outbox::new(1000, 35_000);
        assert!(outbox.push(big(1)));
        let mut taken = Vec::new();
        assert_eq!(outbox.take(&mut taken), Taken::Ok);
        assert_eq!(outbox.held_bytes(), 0);
        // A 30 kB reply being written counts: room for no more than one publication.
        outbox.set_in_flight(30_000);
        assert!(!outbox.push(big(2)));
        let outbox = Outbox::new(1000, 5_000);
        assert!(outbox.push(big(1)), "one delivery larger than the bound passes alone");
        assert!(!outbox.push(big(2)));
    }

    #[tokio::test]
    async fn lost_deliveries_close_the_channels_subscribers() {
        let hub = Hub::new(Arc::new(Metrics::default()));
        let (a, b) = (ChannelName::new("a").unwrap(), ChannelName::new("b").unwrap());
        let (on_a, on_b) = (Arc::new(Outbox::new(8, 1 << 20)), Arc::new(Outbox::new(8, 1 << 20)));
        hub.subscribe(&a, 1, on_a.clone());
        hub.subscribe(&b, 2, on_b.clone());
        hub.lost(Some(&a), Disconnect::BROKER_UNAVAILABLE);
        on_a.ready().await;
        assert_eq!(on_a.take(&mut Vec::new()), Taken::Closed(Disconnect::BROKER_UNAVAILABLE));
        assert_eq!(on_b.take(&mut Vec::new()), Taken::Ok);
        hub.lost(None, Disconnect::INSUFFICIENT_STATE);
        assert_eq!(on_b.take(&mut Vec::new()), Taken::Closed(Disconnect::INSUFFICIENT_STATE));
    }
}
