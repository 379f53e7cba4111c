//! Test helpers for shared brokers: real servers ([`servers`]), an adapter that lets the
//! conformance suite run against brokers that route per channel, and checks that only make sense
//! with several nodes and a backend that can fail.

pub mod servers;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use switchboard_protocol::frame::ClientInfo;
use switchboard_protocol::{ChannelName, Disconnect};

use super::{
    Broker, BrokerError, DeliverySink, Health, HistoryQuery, HistoryResult, PublishRequest, PublishResult,
};
use crate::config::ChannelOptions;
use crate::model::{Delivery, Payload, PresenceKind};

/// A node with a local subscriber on every channel it touches: the conformance suite checks
/// deliveries without calling `node_subscribe`, which per-channel brokers need.
pub struct Touching {
    inner: Arc<dyn Broker>,
    touched: tokio::sync::Mutex<std::collections::HashSet<ChannelName>>,
}

impl Touching {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn Broker>) -> Arc<dyn Broker> {
        Arc::new(Self { inner, touched: Default::default() })
    }

    async fn touch(&self, channel: &ChannelName) -> Result<(), BrokerError> {
        let mut touched = self.touched.lock().await;
        if !touched.contains(channel) {
            self.inner.node_subscribe(channel).await?;
            touched.insert(channel.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl Broker for Touching {
    async fn publish(&self, request: PublishRequest) -> Result<PublishResult, BrokerError> {
        self.touch(&request.channel).await?;
        self.inner.publish(request).await
    }
    async fn history(
        &self,
        channel: &ChannelName,
        query: HistoryQuery,
    ) -> Result<HistoryResult, BrokerError> {
        self.touch(channel).await?;
        self.inner.history(channel, query).await
    }
    async fn presence_add(&self, c: &ChannelName, i: Arc<ClientInfo>, a: bool) -> Result<(), BrokerError> {
        self.touch(c).await?;
        self.inner.presence_add(c, i, a).await
    }
    async fn presence_remove(&self, c: &ChannelName, i: Arc<ClientInfo>, a: bool) -> Result<(), BrokerError> {
        self.touch(c).await?;
        self.inner.presence_remove(c, i, a).await
    }
    async fn presence(&self, channel: &ChannelName) -> Result<Vec<Arc<ClientInfo>>, BrokerError> {
        self.inner.presence(channel).await
    }
    async fn claim_room(&self, room: &ChannelName, node: &str, ttl: Duration) -> Result<String, BrokerError> {
        self.inner.claim_room(room, node, ttl).await
    }
    async fn node_subscribe(&self, channel: &ChannelName) -> Result<(), BrokerError> {
        self.inner.node_subscribe(channel).await
    }
    async fn node_unsubscribe(&self, channel: &ChannelName) -> Result<(), BrokerError> {
        self.inner.node_unsubscribe(channel).await
    }
    fn health(&self) -> Health {
        self.inner.health()
    }
}

/// A sink that keeps deliveries and counts `lost` calls.
#[derive(Default)]
pub struct Node {
    deliveries: Mutex<Vec<Delivery>>,
    lost: AtomicUsize,
}

impl DeliverySink for Node {
    fn deliver(&self, delivery: Delivery) {
        self.deliveries.lock().push(delivery);
    }
    fn lost(&self, _channel: Option<&ChannelName>, _reason: Disconnect) {
        self.lost.fetch_add(1, Ordering::SeqCst);
    }
}

impl Node {
    fn offsets(&self, channel: &ChannelName) -> Vec<u64> {
        super::conformance::publication_offsets(&self.deliveries.lock(), channel)
    }

    fn joins(&self, channel: &ChannelName) -> Vec<String> {
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

fn channel(name: &str) -> ChannelName {
    ChannelName::new(&format!("shared:{name}-{}", rand::random::<u32>())).unwrap()
}

fn request(channel: &ChannelName, n: u64) -> PublishRequest {
    PublishRequest {
        channel: channel.clone(),
        payload: Payload::Json(Bytes::from(format!("{{\"n\":{n}}}"))),
        info: None,
        idempotency_key: None,
        options: ChannelOptions::default(),
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

async fn node<F, Fut>(make: &F) -> (Arc<dyn Broker>, Arc<Node>)
where
    F: Fn(Arc<dyn DeliverySink>) -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let sink = Arc::new(Node::default());
    (make(sink.clone()).await, sink)
}

/// Two nodes on one backend: publications from both reach both in one order with the same
/// offsets; presence and join events are shared; a node that unsubscribed receives nothing.
pub async fn two_nodes_share_channels<F, Fut>(make: &F, per_channel: bool)
where
    F: Fn(Arc<dyn DeliverySink>) -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let (a, sink_a) = node(make).await;
    let (b, sink_b) = node(make).await;
    let ch = channel("two");
    a.node_subscribe(&ch).await.unwrap();
    b.node_subscribe(&ch).await.unwrap();
    let tasks: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .enumerate()
        .map(|(i, broker)| {
            let ch = ch.clone();
            tokio::spawn(async move {
                for n in 0..40 {
                    broker.publish(request(&ch, i as u64 * 100 + n)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let want: Vec<u64> = (1..=80).collect();
    eventually("both nodes receive 80", || {
        sink_a.offsets(&ch).len() >= 80 && sink_b.offsets(&ch).len() >= 80
    })
    .await;
    assert_eq!(sink_a.offsets(&ch), want);
    assert_eq!(sink_b.offsets(&ch), want);
    let ha = a.history(&ch, HistoryQuery { since: None, limit: 100, reverse: false }).await.unwrap();
    let hb = b.history(&ch, HistoryQuery { since: None, limit: 100, reverse: false }).await.unwrap();
    assert_eq!(ha.top, hb.top);
    assert_eq!(ha.publications.len(), 80);

    let info = Arc::new(ClientInfo { client: "c-a".into(), user: "u".into(), name: None });
    a.presence_add(&ch, info.clone(), true).await.unwrap();
    let seen: Vec<_> = b.presence(&ch).await.unwrap().iter().map(|i| i.client.clone()).collect();
    assert_eq!(seen, vec!["c-a"]);
    eventually("both nodes see the join", || sink_a.joins(&ch).len() == 1 && sink_b.joins(&ch).len() == 1)
        .await;
    b.presence_remove(&ch, info, true).await.unwrap();
    assert!(a.presence(&ch).await.unwrap().is_empty());

    if per_channel {
        b.node_unsubscribe(&ch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.publish(request(&ch, 999)).await.unwrap();
        eventually("a receives 81", || sink_a.offsets(&ch).len() >= 81).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sink_b.offsets(&ch).len(), 80, "an unsubscribed node receives nothing");
    }
}

/// Presence entries that are not refreshed vanish after the TTL (the broker was made with a
/// presence TTL of `ttl`).
pub async fn presence_expires<F, Fut>(make: &F, ttl: Duration)
where
    F: Fn(Arc<dyn DeliverySink>) -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let (a, _) = node(make).await;
    let ch = channel("expiry");
    let info = |id: &str| Arc::new(ClientInfo { client: id.into(), user: "u".into(), name: None });
    a.presence_add(&ch, info("gone"), false).await.unwrap();
    a.presence_add(&ch, info("kept"), false).await.unwrap();
    let steps = 4;
    for _ in 0..steps {
        tokio::time::sleep(ttl / 2).await;
        a.presence_add(&ch, info("kept"), false).await.unwrap();
    }
    let left: Vec<_> = a.presence(&ch).await.unwrap().iter().map(|i| i.client.clone()).collect();
    assert_eq!(left, vec!["kept"], "an entry nobody refreshes expires; a refreshed one stays");
}

/// The backend goes away and comes back: health says so, publications are refused meanwhile,
/// the hub is told deliveries were lost, deliveries resume after reconnecting, and the epoch
/// changes exactly when the backend lost the data.
pub async fn survives_a_backend_restart<F, Fut>(make: &F, server: &mut servers::TestServer, keeps_data: bool)
where
    F: Fn(Arc<dyn DeliverySink>) -> Fut,
    Fut: Future<Output = Arc<dyn Broker>>,
{
    let (a, sink) = node(make).await;
    let ch = channel("restart");
    a.node_subscribe(&ch).await.unwrap();
    let before = a.publish(request(&ch, 1)).await.unwrap();
    eventually("delivery before", || sink.offsets(&ch) == vec![1]).await;
    assert_eq!(a.health(), Health::Ok);

    server.kill();
    eventually("health turns unavailable", || a.health() != Health::Ok).await;
    eventually("the hub is told", || sink.lost.load(Ordering::SeqCst) >= 1).await;
    let refused = a.publish(request(&ch, 2)).await;
    assert!(matches!(refused, Err(BrokerError::Unavailable(_))), "{refused:?}");

    server.restart();
    eventually("health recovers", || a.health() == Health::Ok).await;
    let mut after = None;
    for _ in 0..100 {
        match a.publish(request(&ch, 3)).await {
            Ok(r) => {
                after = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let after = after.expect("publishing works again");
    if keeps_data {
        assert_eq!((after.epoch.clone(), after.offset), (before.epoch.clone(), 2), "history survived");
    } else {
        assert_ne!(after.epoch, before.epoch, "history was lost: the epoch changed");
        assert_eq!(after.offset, 1);
    }
    eventually("deliveries flow again", || sink.offsets(&ch).len() == 2).await;
    assert_eq!(*sink.offsets(&ch).last().unwrap(), after.offset);
}
