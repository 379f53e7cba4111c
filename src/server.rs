//! The node: shared state, the router, the listener, admission and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use switchboard_protocol::ChannelName;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::broker::memory::MemoryBroker;
use crate::broker::{Broker, BrokerError, DeliverySink};
use crate::config::Config;
use crate::hub::{ConnId, Hub, Outbox};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::{api, demo, transport};

/// Everything a handler needs, shared by every connection.
pub struct AppState {
    /// The configuration.
    pub config: Arc<Config>,
    /// Tokens and permissions.
    pub policy: Arc<Policy>,
    /// History, presence and cross-node delivery.
    pub broker: Arc<dyn Broker>,
    /// This node's subscriptions.
    pub hub: Arc<Hub>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// One permit per open connection (`max_connections`).
    pub admission: Arc<Semaphore>,
    /// Flips to `true` when the server stops.
    pub shutdown: watch::Sender<bool>,
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
        Arc::new(Self {
            policy: Arc::new(Policy::new(config.clone())),
            admission: Arc::new(Semaphore::new(config.max_connections)),
            config,
            broker,
            hub,
            metrics,
            shutdown: watch::Sender::new(false),
        })
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

/// The HTTP application: every endpoint on one router.
pub fn app(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/ws", get(transport::ws::handler))
        .route("/sse", get(transport::oneway::sse))
        .route("/stream", get(transport::oneway::stream))
        .route("/poll", get(transport::poll::handler))
        .route("/api/publish", post(api::publish))
        .route("/api/history", get(api::history))
        .route("/api/presence", get(api::presence))
        .route("/api/channels", get(api::channels))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .merge(demo::sdk_routes());
    if state.config.demo {
        router = router.merge(demo::routes());
    }
    if state.config.ws_echo_endpoint {
        router = router.route("/ws-echo", get(transport::ws::echo_handler));
    }
    router.layer(axum::extract::DefaultBodyLimit::max(state.config.max_frame_bytes)).with_state(state)
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listener could not be bound.
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    /// The broker could not be reached.
    #[error("cannot reach the broker: {0}")]
    Broker(BrokerError),
}

/// A bound, not yet running server.
pub struct Server {
    state: Arc<AppState>,
    listener: TcpListener,
}

impl Server {
    /// Connects the broker and binds the listener (port 0 picks a free port).
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let listener = TcpListener::bind(config.listen).await.map_err(StartError::Listen)?;
        let state = AppState::connect(config).await.map_err(StartError::Broker)?;
        Ok(Self { state, listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` completes, then tells every connection to go (code 3000) and
    /// waits up to five seconds for them to drain.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        let state = self.state.clone();
        if state.config.demo {
            tokio::spawn(demo::ticker(state.clone()));
        }
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let stop = state.shutdown.clone();
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        axum::serve(listener, app(state.clone())).with_graceful_shutdown(signal).await?;
        let all = u32::try_from(state.config.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(Duration::from_secs(5), state.admission.acquire_many(all)).await;
        Ok(())
    }
}
