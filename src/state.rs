//! The node's shared state: what every part needs (configuration, rules, broker, hub, metrics,
//! admission, shutdown, the application backend's client when one is configured). The optional
//! services (WebTransport, TURN, WebRTC) are started by [`crate::server`] and handed to the
//! routes that use them, so this module, at the bottom of the crate, depends on none of them.

use std::sync::Arc;

use switchboard_protocol::ChannelName;
use tokio::sync::watch;

use crate::admission::{Admission, PerIpRate};
use crate::app_proxy::AppProxy;
use crate::broker::memory::MemoryBroker;
use crate::broker::{Broker, BrokerError, DeliverySink, NewPublication, PublishResult};
use crate::config::Config;
use crate::hub::{ConnId, Hub, Outbox};
use crate::metrics::Metrics;
use crate::rules::Rules;

/// Everything a handler needs, shared by every connection.
pub struct AppState {
    /// The configuration.
    pub config: Arc<Config>,
    /// Who callers are and what they may do on each channel.
    pub rules: Arc<Rules>,
    /// History, presence and cross-node delivery.
    pub broker: Arc<dyn Broker>,
    /// This node's subscriptions.
    pub hub: Arc<Hub>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// This node's name and message rates, for the dashboard ([`crate::admin::stats`]).
    pub sampler: crate::admin::stats::Sampler,
    /// Places for real-time connections: in all, per IP and per user.
    pub admission: Arc<Admission>,
    /// WebRTC offers without a token, per IP (`rtc_offers_per_ip_per_minute`).
    pub rtc_offers: PerIpRate,
    /// Flips to `true` when the server stops.
    pub shutdown: watch::Sender<bool>,
    /// The application's backend (`app_proxy_url`), when there is one.
    pub app_proxy: Option<AppProxy>,
    /// The transport lab's sessions (`/lab`).
    pub lab: Arc<crate::lab::Lab>,
    /// The session configuration of one-way (`[0]`) and bidirectional (`[1]`) connections,
    /// shared: each connection would otherwise hold a 128-byte copy.
    pub session_configs: [Arc<crate::session::SessionConfig>; 2],
}

impl AppState {
    /// A node with the broker the configuration names.
    pub async fn connect(config: Config) -> Result<Arc<Self>, BrokerError> {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(metrics.clone()));
        let broker = crate::broker::connect(&config, hub.clone() as Arc<dyn DeliverySink>).await?;
        Ok(Self::with_parts(config, metrics, hub, broker))
    }

    /// A node with the in-memory broker.
    pub fn new(config: Config) -> Arc<Self> {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(metrics.clone()));
        let broker = Arc::new(MemoryBroker::new(hub.clone() as Arc<dyn DeliverySink>));
        Self::with_parts(config, metrics, hub, broker)
    }

    fn with_parts(
        config: Config,
        metrics: Arc<Metrics>,
        hub: Arc<Hub>,
        broker: Arc<dyn Broker>,
    ) -> Arc<Self> {
        let config = Arc::new(config);
        metrics.channel_rates.set_max(config.admin_rate_channels);
        hub.set_direct_limit(direct_limit(config.direct_writes_per_publication));
        let admission = Admission::new(
            config.max_connections,
            config.max_connections_per_ip,
            config.max_connections_per_user,
            metrics.clone(),
        );
        broker.limit_channels(config.max_channels, metrics.clone());
        let state = Arc::new(Self {
            lab: crate::lab::Lab::new(&config),
            session_configs: [false, true].map(|bidirectional| {
                Arc::new(crate::session::SessionConfig::from_config(&config, bidirectional))
            }),
            rules: Arc::new(Rules::new(config.clone())),
            admission: Arc::new(admission),
            rtc_offers: PerIpRate::new(config.rtc_offers_per_ip_per_minute),
            app_proxy: AppProxy::from_config(&config),
            sampler: crate::admin::stats::Sampler::new(&config.node_url),
            config,
            broker,
            hub,
            metrics,
            shutdown: watch::Sender::new(false),
        });
        crate::broker::sweep::start(&state);
        state
    }

    /// Publishes, and counts the publication (once: a retried duplicate is not counted). Every
    /// path of the node publishes through here, so the count does not depend on the path.
    pub async fn publish(&self, request: NewPublication) -> Result<PublishResult, BrokerError> {
        crate::broker::publish(self.broker.as_ref(), &self.metrics, request).await
    }

    /// Registers a local subscriber and the node's interest in the channel.
    pub async fn subscribe_local(
        &self,
        channel: &ChannelName,
        conn: ConnId,
        outbox: Arc<Outbox>,
    ) -> Result<(), BrokerError> {
        self.hub.subscribe(channel, conn, outbox);
        self.broker.node_subscribe(channel).await
    }

    /// Removes a local subscriber and the node's interest it held.
    pub fn unsubscribe_local(&self, channel: &ChannelName, conn: ConnId) {
        self.hub.unsubscribe(channel, conn);
        let (broker, channel) = (self.broker.clone(), channel.clone());
        tokio::spawn(async move { broker.node_unsubscribe(&channel).await });
    }
}

/// How many deliveries of a publication the fan-out writes itself: all it can on a node with
/// one worker thread (nothing would write them in parallel), at most `configured` with more
/// (the rest wake their connections, which write on the other workers meanwhile).
fn direct_limit(configured: usize) -> usize {
    let workers = tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
    if configured == 0 || workers > 1 { configured } else { usize::MAX }
}
