//! The node: shared state, the router, the listener, admission and graceful shutdown.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
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
    /// The HTTP/3 (WebTransport) endpoint's port and certificate hash, once it is bound.
    pub webtransport: std::sync::OnceLock<Arc<transport::wt::Advert>>,
    /// The running STUN/TURN server, once started.
    pub ice: std::sync::OnceLock<crate::turn::IceInfo>,
    /// The WebRTC engine (SFU, data channels, WHIP/WHEP), once started.
    pub rtc: std::sync::OnceLock<crate::rtc::RtcService>,
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
            webtransport: std::sync::OnceLock::new(),
            ice: std::sync::OnceLock::new(),
            rtc: std::sync::OnceLock::new(),
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
        .route("/api/ice-servers", get(crate::turn::ice_servers))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/wt/cert-hash", get(wt_cert_hash))
        .merge(crate::rtc::http::routes())
        .merge(demo::sdk_routes());
    if state.config.demo {
        router = router.merge(demo::routes());
    }
    if state.config.ws_echo_endpoint {
        router = router.route("/ws-echo", get(transport::ws::echo_handler));
    }
    router = router
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_frame_bytes))
        .layer(axum::middleware::map_response_with_state(state.clone(), alt_svc));
    if let Some(cors) = cors(&state.config.allowed_origins) {
        router = router.layer(cors);
    }
    router.with_state(state)
}

/// CORS for pages of `allowed_origins` (`*`: any) calling the HTTP endpoints from elsewhere,
/// e.g. an app's own origin, or a cluster node sending a page to the node serving its room.
fn cors(allowed: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if allowed.is_empty() {
        return None;
    }
    let origins = if allowed.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(allowed.iter().filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::ACCEPT,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([header::LOCATION, HeaderName::from_static(transport::poll::CURSOR_HEADER)])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

/// `Alt-Svc: h3=":PORT"` on every response while the HTTP/3 endpoint runs.
async fn alt_svc(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    mut response: axum::response::Response,
) -> axum::response::Response {
    if let Some(advert) = state.webtransport.get()
        && let Ok(value) = axum::http::HeaderValue::from_str(&advert.alt_svc())
    {
        response.headers_mut().insert(axum::http::header::ALT_SVC, value);
    }
    response
}

/// `GET /wt/cert-hash`: the SHA-256 of the self-signed HTTP/3 certificate, for a browser's
/// `serverCertificateHashes`; `404` (code 108) when WebTransport is off or uses a configured
/// certificate.
async fn wt_cert_hash(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some((advert, (hash, not_after))) =
        state.webtransport.get().and_then(|a| a.dev_cert().map(|c| (a.clone(), c)))
    else {
        let e = transport::HttpError {
            status: Some(axum::http::StatusCode::NOT_FOUND),
            ..transport::HttpError::new(
                switchboard_protocol::ErrorCode::NotAvailable,
                "no self-signed WebTransport certificate",
            )
        };
        return e.into_response();
    };
    let body = serde_json::json!({
        "algorithm": "sha-256",
        "hash": hash,
        "not_after": not_after,
        "port": advert.port,
        "path": transport::wt::endpoint::PATH,
    });
    (
        [
            (axum::http::header::CONTENT_TYPE, "application/json"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The HTTP listener could not be bound.
    #[error(
        "cannot listen on {addr}: {source}; pick another address with --listen ADDR:PORT \
         (listen in the configuration file, SWITCHBOARD_LISTEN)"
    )]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The broker could not be reached.
    #[error("cannot reach the broker: {0}")]
    Broker(BrokerError),
    /// The STUN/TURN server could not start; the text says what to change.
    #[error("cannot start the STUN/TURN server: {0}")]
    Turn(String),
    /// The HTTP/3 (WebTransport) endpoint could not start.
    #[error(
        "cannot serve WebTransport: {0} (HTTP/3 uses UDP at the port number of --listen; \
         webtransport = false or SWITCHBOARD_WEBTRANSPORT=false turns it off)"
    )]
    WebTransport(transport::wt::WtError),
    /// The WebRTC engine could not start.
    #[error("cannot start WebRTC: {0} (or run without it: --no-rtc, rtc = false)")]
    Rtc(String),
}

async fn start_turn(state: &Arc<AppState>) -> Result<(), StartError> {
    let mut config = crate::turn::turn_config(&state.config).map_err(StartError::Turn)?;
    let secret = config.auth_secret.get_or_insert_with(crate::turn::random_secret).clone();
    let mut stop = state.shutdown.subscribe();
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let handle = switchboard_turn::serve(config.clone(), shutdown)
        .await
        .map_err(|e| StartError::Turn(crate::turn::start_error(&config, &e)))?;
    let info = crate::turn::IceInfo {
        addr: handle.udp_addr(),
        tls_addr: handle.tls_addr(),
        tcp: handle.tcp_addr().is_some(),
        external_ip: config.external_ip,
        secret,
        ttl: Duration::from_secs(state.config.turn_credential_ttl),
        metrics: handle.metrics(),
    };
    let _ = state.ice.set(info);
    tokio::spawn(handle.wait());
    Ok(())
}

/// Starts the WebRTC engine on `rtc_listen` (default: the HTTP listener's IP, any free port).
async fn start_rtc(state: &Arc<AppState>, http_ip: IpAddr) -> Result<(), StartError> {
    let config = &state.config;
    let addr = match config.rtc_listen.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => SocketAddr::new(http_ip, 0),
    };
    let advertise = match config.rtc_external_ip.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) if addr.ip().is_unspecified() => {
            return Err(StartError::Rtc(format!(
                "rtc listens on {addr}: set rtc_external_ip (--rtc-external-ip) to the address browsers reach"
            )));
        }
        Err(_) => addr.ip(),
    };
    let service =
        crate::rtc::start(addr, advertise, config.clone(), state.broker.clone(), state.metrics.clone())
            .await
            .map_err(|e| StartError::Rtc(format!("cannot bind {addr}: {e}")))?;
    if !config.node_url.is_empty() {
        let node = config.node_base().to_owned();
        let ttl = std::time::Duration::from_secs(config.presence_ttl);
        tokio::spawn(crate::rtc::http::renew_claims(Arc::downgrade(state), node, ttl));
    }
    let _ = state.rtc.set(service);
    Ok(())
}

/// A bound, not yet running server.
pub struct Server {
    state: Arc<AppState>,
    listener: TcpListener,
    webtransport: Option<transport::wt::WtEndpoint>,
}

impl Server {
    /// Connects the broker and binds the listener (port 0 picks a free port).
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let addr = config.listen;
        let listen_error = |source| StartError::Listen { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
        // HTTP/3 on UDP at the port number TCP got (port 0 picks it once, for both).
        let webtransport = match config.webtransport {
            true => {
                let addr = listener.local_addr().map_err(listen_error)?;
                let wt = transport::wt::WtEndpoint::bind(&config, addr).await;
                Some(wt.map_err(StartError::WebTransport)?)
            }
            false => None,
        };
        let state = AppState::connect(config).await.map_err(StartError::Broker)?;
        if let Some(wt) = &webtransport {
            let _ = state.webtransport.set(wt.advert().clone());
        }
        if state.config.turn {
            start_turn(&state).await?;
        }
        if state.config.rtc {
            let ip = listener.local_addr().map_err(listen_error)?.ip();
            start_rtc(&state, ip).await?;
        }
        Ok(Self { state, listener, webtransport })
    }

    /// The WebRTC media address, when WebRTC runs.
    pub fn rtc_addr(&self) -> Option<SocketAddr> {
        self.state.rtc.get().map(|r| r.local_addr())
    }

    /// The TURN server's address, when it runs.
    pub fn turn_addr(&self) -> Option<SocketAddr> {
        self.state.ice.get().map(|i| i.addr)
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
        let webtransport = self.webtransport.map(|wt| tokio::spawn(wt.serve(state.clone())));
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let (stop, hub) = (state.shutdown.clone(), state.hub.clone());
        let signal = async move {
            shutdown.await;
            let _ = stop.send(true);
            hub.close_all(switchboard_protocol::Disconnect::SHUTDOWN);
        };
        axum::serve(listener, app(state.clone())).with_graceful_shutdown(signal).await?;
        if let Some(wt) = webtransport {
            let _ = wt.await;
        }
        let all = u32::try_from(state.config.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(Duration::from_secs(5), state.admission.acquire_many(all)).await;
        Ok(())
    }
}
