//! The broker conformance suite: the contract in [`super`]'s docs as executable checks. Every
//! broker implementation runs it (`run_all`) against a real backend.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use switchboard_protocol::frame::ClientInfo;
use switchboard_protocol::{ChannelName, Position};

use super::{Broker, DeliverySink, HistoryQuery, NewPublication};
use crate::config::ChannelOptions;
use crate::model::{Delivery, Payload, PresenceKind};

/// How the suite lets time pass for TTL checks.
#[derive(Debug, Clone, Copy)]
pub enum TimeControl {
    /// Tokio's clock is paused: advance it.
    Paused,
    /// A real backend: sleep.
    Real,
}

impl TimeControl {
    async fn pass(self, d: Duration) {
        match self {
            TimeControl::Paused => tokio::time::advance(d).await,
            TimeControl::Real => tokio::time::sleep(d).await,
        }
    }
}

/// Makes a fresh broker that delivers to the given sink: what the suite runs against. Any
/// `Fn(Arc<dyn DeliverySink>) -> impl Future<Output = Arc<dyn Broker>>` is one.
pub trait MakeBroker {
    /// A new broker on the backend under test.
    fn make(&self, sink: Arc<dyn DeliverySink>) -> BoxFuture<'static, Arc<dyn Broker>>;
}

impl<F, Fut> MakeBroker for F
where
    F: Fn(Arc<dyn DeliverySink>) -> Fut,
    Fut: Future<Output = Arc<dyn Broker>> + Send + 'static,
{
    fn make(&self, sink: Arc<dyn DeliverySink>) -> BoxFuture<'static, Arc<dyn Broker>> {
        Box::pin(self(sink))
    }
}

/// A sink that keeps what it is handed and counts `lost` calls.
#[derive(Default)]
pub struct CollectingSink {
    /// Everything delivered, in order.
    pub deliveries: Mutex<Vec<Delivery>>,
    /// How many times the broker said deliveries were lost.
    pub lost: AtomicUsize,
}

impl DeliverySink for CollectingSink {
    fn deliver(&self, delivery: Delivery) {
        self.deliveries.lock().push(delivery);
    }

    fn lost(&self, _channel: Option<&ChannelName>, _reason: switchboard_protocol::Disconnect) {
        self.lost.fetch_add(1, Ordering::SeqCst);
    }
}

impl CollectingSink {
    /// The offsets of `channel`'s publications, in delivery order.
    pub fn offsets(&self, channel: &ChannelName) -> Vec<u64> {
        self.deliveries
            .lock()
            .iter()
            .filter_map(|d| match d {
                Delivery::Publication(p) if &p.channel == channel => Some(p.offset),
                _ => None,
            })
            .collect()
    }

    /// The clients whose joins to `channel` were delivered, in delivery order.
    pub fn joins(&self, channel: &ChannelName) -> Vec<String> {
        self.deliveries
            .lock()
            .iter()
            .filter_map(|d| match d {
                Delivery::Presence(e) if &e.channel == channel && e.kind == PresenceKind::Join => {
                    Some(e.info.client.clone())
                }
                _ => None,
            })
            .collect()
    }
}

/// A channel no other check uses.
pub fn channel(name: &str) -> ChannelName {
    ChannelName::new(&format!("conformance:{name}-{}", rand::random::<u32>())).unwrap()
}

/// A publication of `{"n": n}`.
pub fn request(channel: &ChannelName, n: u64, options: &ChannelOptions) -> NewPublication {
    NewPublication {
        channel: channel.clone(),
        payload: Payload::Json(Bytes::from(format!("{{\"n\":{n}}}"))),
        info: None,
        idempotency_key: None,
        options: options.clone(),
    }
}

fn all(limit: usize) -> HistoryQuery {
    HistoryQuery { since: None, limit, reverse: false }
}

/// Runs every check against brokers made by `make`, one fresh broker per check.
pub async fn run_all(make: impl MakeBroker, time: TimeControl) {
    offsets_count_from_one_and_deliver_in_order(&make).await;
    history_reads_since_limit_and_reverse(&make).await;
    history_keeps_size_and_ttl(&make, time).await;
    idempotent_publish_stores_once(&make).await;
    presence_tracks_clients_and_announces(&make).await;
    concurrent_publishers_get_unique_ordered_offsets(&make).await;
    rooms_are_served_by_the_node_that_claims_them_first(&make).await;
}

async fn rooms_are_served_by_the_node_that_claims_them_first(make: &impl MakeBroker) {
    let (broker, _) = new(make).await;
    let (room, other) = (channel("room"), channel("room"));
    let ttl = Duration::from_secs(60);
    assert_eq!(broker.claim_room(&room, "http://a", ttl).await.unwrap(), "http://a");
    assert_eq!(broker.claim_room(&room, "http://b", ttl).await.unwrap(), "http://a", "held by a");
    assert_eq!(broker.claim_room(&room, "http://a", ttl).await.unwrap(), "http://a", "renewed by a");
    assert_eq!(broker.claim_room(&other, "http://b", ttl).await.unwrap(), "http://b", "rooms are apart");
}

/// A claim nobody renews lapses after `ttl` (the broker's presence TTL for NATS) and another
/// node may take the room.
pub async fn room_claims_lapse(make: impl MakeBroker, time: TimeControl, ttl: Duration) {
    let (broker, _) = new(&make).await;
    let room = channel("lapse");
    assert_eq!(broker.claim_room(&room, "http://a", ttl).await.unwrap(), "http://a");
    time.pass(ttl / 2).await;
    assert_eq!(broker.claim_room(&room, "http://a", ttl).await.unwrap(), "http://a", "renewed");
    time.pass(ttl * 3 / 4).await;
    assert_eq!(broker.claim_room(&room, "http://b", ttl).await.unwrap(), "http://a", "the renewal counts");
    time.pass(ttl + Duration::from_millis(1500)).await;
    assert_eq!(broker.claim_room(&room, "http://b", ttl).await.unwrap(), "http://b", "lapsed");
}

/// A broker from `make` and the sink it delivers to.
pub async fn new(make: &impl MakeBroker) -> (Arc<dyn Broker>, Arc<CollectingSink>) {
    let sink = Arc::new(CollectingSink::default());
    let broker = make.make(sink.clone()).await;
    (broker, sink)
}

async fn wait_for(sink: &CollectingSink, count: usize) {
    for _ in 0..500 {
        if sink.deliveries.lock().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn offsets_count_from_one_and_deliver_in_order(make: &impl MakeBroker) {
    let (broker, sink) = new(make).await;
    let ch = channel("order");
    let opts = ChannelOptions::default();
    let empty = broker.history(&ch, all(10)).await.unwrap();
    assert_eq!(empty.top.offset, 0, "a new stream starts at 0");
    let mut epoch = None;
    for n in 1..=5 {
        let r = broker.publish(request(&ch, n, &opts)).await.unwrap();
        assert_eq!(r.offset, n);
        assert!(!r.duplicate);
        assert_eq!(*epoch.get_or_insert(r.epoch.clone()), r.epoch, "epoch stays while history is intact");
    }
    assert_eq!(broker.history(&ch, all(10)).await.unwrap().top.epoch, epoch.unwrap());
    wait_for(&sink, 5).await;
    assert_eq!(sink.offsets(&ch), vec![1, 2, 3, 4, 5]);
}

async fn history_reads_since_limit_and_reverse(make: &impl MakeBroker) {
    let (broker, _) = new(make).await;
    let ch = channel("history");
    let opts = ChannelOptions::default();
    for n in 1..=10 {
        broker.publish(request(&ch, n, &opts)).await.unwrap();
    }
    let h = broker.history(&ch, all(100)).await.unwrap();
    assert_eq!(h.top.offset, 10);
    let offsets = |h: &super::HistoryResult| h.publications.iter().map(|p| p.offset).collect::<Vec<_>>();
    assert_eq!(offsets(&h), (1..=10).collect::<Vec<_>>());
    assert_eq!(&h.publications[0].payload, &Payload::Json(Bytes::from_static(b"{\"n\":1}")));
    let since = Position { epoch: h.top.epoch.to_string(), offset: 7 };
    let h2 = broker
        .history(&ch, HistoryQuery { since: Some(since.clone()), limit: 100, reverse: false })
        .await
        .unwrap();
    assert_eq!(offsets(&h2), vec![8, 9, 10]);
    let h3 =
        broker.history(&ch, HistoryQuery { since: Some(since), limit: 2, reverse: false }).await.unwrap();
    assert_eq!(offsets(&h3), vec![8, 9]);
    let h4 = broker.history(&ch, HistoryQuery { since: None, limit: 3, reverse: true }).await.unwrap();
    assert_eq!(offsets(&h4), vec![10, 9, 8]);
    let foreign = Position { epoch: "not-this-one".into(), offset: 9 };
    let h5 =
        broker.history(&ch, HistoryQuery { since: Some(foreign), limit: 100, reverse: false }).await.unwrap();
    assert_eq!(h5.publications.len(), 10, "a foreign epoch's offset means nothing here");
}

async fn history_keeps_size_and_ttl(make: &impl MakeBroker, time: TimeControl) {
    let (broker, _) = new(make).await;
    let ch = channel("size");
    let opts = ChannelOptions { history_size: 3, ..ChannelOptions::default() };
    for n in 1..=5 {
        broker.publish(request(&ch, n, &opts)).await.unwrap();
    }
    let h = broker.history(&ch, all(100)).await.unwrap();
    assert_eq!(h.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![3, 4, 5]);

    let ch = channel("ttl");
    let opts = ChannelOptions { history_ttl: 1, ..ChannelOptions::default() };
    broker.publish(request(&ch, 1, &opts)).await.unwrap();
    assert_eq!(broker.history(&ch, all(10)).await.unwrap().publications.len(), 1);
    time.pass(Duration::from_millis(2100)).await;
    let h = broker.history(&ch, all(10)).await.unwrap();
    assert!(h.publications.is_empty(), "publications leave the history after their TTL");
    assert_eq!(h.top.offset, 1, "the stream keeps its top after its history expired");

    let ch = channel("none");
    let opts = ChannelOptions { history_size: 0, ..ChannelOptions::default() };
    broker.publish(request(&ch, 1, &opts)).await.unwrap();
    let h = broker.history(&ch, all(10)).await.unwrap();
    assert!(h.publications.is_empty());
    assert_eq!(h.top.offset, 1, "offsets advance without history too");
}

async fn idempotent_publish_stores_once(make: &impl MakeBroker) {
    let (broker, sink) = new(make).await;
    let ch = channel("idem");
    let opts = ChannelOptions::default();
    let mut req = request(&ch, 1, &opts);
    req.idempotency_key = Some("k1".into());
    let first = broker.publish(req.clone()).await.unwrap();
    let again = broker.publish(req).await.unwrap();
    assert_eq!(again.offset, first.offset);
    assert!(again.duplicate && !first.duplicate);
    let mut other = request(&ch, 2, &opts);
    other.idempotency_key = Some("k2".into());
    assert_eq!(broker.publish(other).await.unwrap().offset, first.offset + 1);
    assert_eq!(broker.history(&ch, all(10)).await.unwrap().publications.len(), 2);
    wait_for(&sink, 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sink.offsets(&ch), vec![1, 2], "a duplicate is not delivered");
}

async fn presence_tracks_clients_and_announces(make: &impl MakeBroker) {
    let (broker, sink) = new(make).await;
    let ch = channel("presence");
    let info = |id: &str| Arc::new(ClientInfo { client: id.into(), user: format!("u-{id}"), name: None });
    broker.presence_add(&ch, info("a"), true).await.unwrap();
    broker.presence_add(&ch, info("a"), true).await.unwrap();
    broker.presence_add(&ch, info("b"), false).await.unwrap();
    let mut present: Vec<_> = broker.presence(&ch).await.unwrap().iter().map(|i| i.client.clone()).collect();
    present.sort();
    assert_eq!(present, vec!["a", "b"]);
    broker.presence_remove(&ch, info("a"), true).await.unwrap();
    broker.presence_remove(&ch, info("a"), true).await.unwrap();
    assert_eq!(broker.presence(&ch).await.unwrap().len(), 1);
    wait_for(&sink, 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let events: Vec<_> = sink
        .deliveries
        .lock()
        .iter()
        .filter_map(|d| match d {
            Delivery::Presence(e) if e.channel == ch => Some((e.kind, e.info.client.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(events, vec![(PresenceKind::Join, "a".into()), (PresenceKind::Leave, "a".into())]);
}

async fn concurrent_publishers_get_unique_ordered_offsets(make: &impl MakeBroker) {
    let (broker, sink) = new(make).await;
    let ch = channel("concurrent");
    let opts = ChannelOptions::default();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (broker, ch, opts) = (broker.clone(), ch.clone(), opts.clone());
            tokio::spawn(async move {
                let mut offsets = Vec::new();
                for n in 0..50 {
                    offsets.push(broker.publish(request(&ch, t * 100 + n, &opts)).await.unwrap().offset);
                }
                offsets
            })
        })
        .collect();
    let mut all_offsets = Vec::new();
    for t in tasks {
        all_offsets.extend(t.await.unwrap());
    }
    all_offsets.sort();
    assert_eq!(all_offsets, (1..=200).collect::<Vec<_>>(), "every publish got its own offset");
    wait_for(&sink, 200).await;
    assert_eq!(sink.offsets(&ch), (1..=200).collect::<Vec<_>>(), "delivered in offset order");
}
