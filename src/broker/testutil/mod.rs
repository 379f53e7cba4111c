//! Test helpers for shared brokers: real servers ([`backend`]), an adapter that lets the
//! conformance suite run against brokers that route per channel, checks that only make sense
//! with several nodes and a backend that can fail, and [`shared_backend_tests!`], the tests
//! every shared broker runs with them.

pub mod backend;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_protocol::ChannelName;
use switchboard_protocol::frame::ClientInfo;

use super::conformance::{self, MakeBroker, channel, request};
use super::{
    Broker, BrokerError, DeliverySink, Health, HistoryQuery, HistoryResult, NewPublication, PublishResult,
};
use crate::config::ChannelOptions;

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

    /// Makes what `make` makes, wrapped.
    pub fn around(make: impl MakeBroker) -> impl MakeBroker {
        move |sink| {
            let inner = make.make(sink);
            async move { Self::wrap(inner.await) }
        }
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
    async fn publish(&self, request: NewPublication) -> Result<PublishResult, BrokerError> {
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

/// A [`MakeBroker`] for the backend at `url`: `connect(url, presence_ttl_secs, sink)`.
pub fn on_backend<C, Fut>(connect: C, url: String, presence_ttl: u64) -> impl MakeBroker
where
    C: Fn(String, u64, Arc<dyn DeliverySink>) -> Fut,
    Fut: Future<Output = Arc<dyn Broker>> + Send + 'static,
{
    move |sink| connect(url.clone(), presence_ttl, sink)
}

fn publish_request(channel: &ChannelName, n: u64) -> NewPublication {
    request(channel, n, &ChannelOptions::default())
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

/// Two nodes on one backend: publications from both reach both in one order with the same
/// offsets; presence and join events are shared; a node that unsubscribed receives nothing.
pub async fn two_nodes_share_channels(make: &impl MakeBroker, per_channel: bool) {
    let (a, sink_a) = conformance::new(make).await;
    let (b, sink_b) = conformance::new(make).await;
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
                    broker.publish(publish_request(&ch, i as u64 * 100 + n)).await.unwrap();
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
        a.publish(publish_request(&ch, 999)).await.unwrap();
        eventually("a receives 81", || sink_a.offsets(&ch).len() >= 81).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(sink_b.offsets(&ch).len(), 80, "an unsubscribed node receives nothing");
    }
}

/// Presence entries that are not refreshed vanish after the TTL (the broker was made with a
/// presence TTL of `ttl`).
pub async fn presence_expires(make: &impl MakeBroker, ttl: Duration) {
    let (a, _) = conformance::new(make).await;
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
pub async fn survives_a_backend_restart(
    make: &impl MakeBroker,
    server: &mut backend::Backend,
    keeps_data: bool,
) {
    let (a, sink) = conformance::new(make).await;
    let ch = channel("restart");
    a.node_subscribe(&ch).await.unwrap();
    let before = a.publish(publish_request(&ch, 1)).await.unwrap();
    eventually("delivery before", || sink.offsets(&ch) == vec![1]).await;
    assert_eq!(a.health(), Health::Ok);

    server.kill();
    eventually("health turns unavailable", || a.health() != Health::Ok).await;
    eventually("the hub is told", || sink.lost.load(Ordering::SeqCst) >= 1).await;
    let refused = a.publish(publish_request(&ch, 2)).await;
    assert!(matches!(refused, Err(BrokerError::Unavailable(_))), "{refused:?}");

    server.restart();
    eventually("health recovers", || a.health() == Health::Ok).await;
    let mut after = None;
    for _ in 0..100 {
        match a.publish(publish_request(&ch, 3)).await {
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

/// The tests every broker on a shared backend runs against a real server: the conformance suite,
/// room claims lapsing, two nodes sharing channels, presence expiry, and a restart of a backend
/// that keeps its data. Invoked inside the broker's `tests` module:
///
/// - `connect`: `async fn(url: String, presence_ttl_secs: u64, sink) -> Arc<dyn Broker>`;
/// - `backend`: the [`backend::Kind`] the tests run against;
/// - `persistent`: the kind whose restart keeps the data;
/// - `per_channel`: whether the broker routes per channel (a node that unsubscribed receives
///   nothing).
macro_rules! shared_backend_tests {
    (connect: $connect:path, backend: $kind:expr, persistent: $persistent:expr, per_channel: $per_channel:expr $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn passes_the_broker_conformance_suite() {
            use $crate::broker::{conformance, testutil};
            let Some(backend) = testutil::backend::Backend::start($kind) else { return };
            let make = testutil::on_backend($connect, backend.url(), 60);
            conformance::run_all(testutil::Touching::around(make), conformance::TimeControl::Real).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn room_claims_lapse() {
            use $crate::broker::{conformance, testutil};
            let Some(backend) = testutil::backend::Backend::start($kind) else { return };
            let make = testutil::on_backend($connect, backend.url(), 3);
            let ttl = ::std::time::Duration::from_secs(3);
            conformance::room_claims_lapse(make, conformance::TimeControl::Real, ttl).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn nodes_share_channels() {
            use $crate::broker::testutil;
            let Some(backend) = testutil::backend::Backend::start($kind) else { return };
            let make = testutil::on_backend($connect, backend.url(), 60);
            testutil::two_nodes_share_channels(&make, $per_channel).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn presence_entries_expire() {
            use $crate::broker::testutil;
            let Some(backend) = testutil::backend::Backend::start($kind) else { return };
            let make = testutil::on_backend($connect, backend.url(), 3);
            testutil::presence_expires(&make, ::std::time::Duration::from_secs(3)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_restart_of_a_persistent_backend_keeps_the_stream() {
            use $crate::broker::testutil;
            let Some(mut backend) = testutil::backend::Backend::start($persistent) else { return };
            let make = testutil::on_backend($connect, backend.url(), 60);
            testutil::survives_a_backend_restart(&make, &mut backend, true).await;
        }
    };
}
pub(crate) use shared_backend_tests;
