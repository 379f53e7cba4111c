//! The node: start-up (the listener, the broker, the optional services), the router, and
//! graceful shutdown. The shared state is [`crate::state`].

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::broker::BrokerError;
use crate::config::Config;
use crate::rtc::RtcService;
use crate::state::AppState;
use crate::transport::wt::Advert;
use crate::turn::IceInfo;
use crate::{api, demo, transport};

/// The optional services a node runs beside its channels, once started: each is handed to the
/// routes that use it, so the shared state depends on none of them.
#[derive(Clone, Default)]
pub struct Services {
    /// The HTTP/3 (WebTransport) endpoint's port and certificate hash.
    pub webtransport: Option<Arc<Advert>>,
    /// The STUN/TURN server.
    pub ice: Option<IceInfo>,
    /// The WebRTC engine (SFU, data channels, WHIP/WHEP).
    pub rtc: Option<RtcService>,
    /// Room recording (with WebRTC).
    pub recorder: Option<Arc<crate::media::record::Recorder>>,
    /// Compositions and filter pipelines (with WebRTC).
    pub video: Option<Arc<crate::media::video::service::VideoService>>,
}

/// The HTTP application: every endpoint on one router.
pub fn app(state: Arc<AppState>, services: &Services) -> Router {
    let mut router = Router::new()
        .route("/ws", get(transport::ws::handler))
        .route("/stomp", get(transport::stomp::handler))
        .route("/sse", get(transport::oneway::sse))
        .route("/stream", get(transport::oneway::stream))
        .route("/poll", get(transport::poll::handler))
        .route("/api/publish", post(api::publish))
        .route("/api/history", get(api::history))
        .route("/api/presence", get(api::presence))
        .route("/api/channels", get(api::channels))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .merge(crate::turn::routes(services.ice.clone()))
        .merge(transport::wt::routes(services.webtransport.clone()))
        .merge(crate::rtc::http::routes(services.rtc.clone()))
        .merge(crate::media::record::http::routes(services.recorder.clone(), services.video.clone()))
        .merge(crate::media::video::http::routes(services.video.clone()))
        .merge(crate::admin::routes(services))
        .merge(demo::sdk_routes());
    let lab = state.lab.clone();
    if state.config.demo {
        router = router.merge(demo::routes()).merge(crate::game::routes());
        if state.config.lab_max_sessions > 0 {
            router = router.merge(crate::lab::routes(lab.clone()));
            let rendered = lab.clone();
            state.metrics.add_source(move |out| rendered.render(out));
        }
    }
    if state.config.admin {
        router = router.merge(crate::admin::page_routes());
    }
    if state.config.ws_echo_endpoint {
        router = router.route("/ws-echo", get(transport::ws::echo_handler));
    }
    router = router
        .fallback(|| async {
            crate::http::HttpError::new(switchboard_protocol::ErrorCode::MethodNotFound, "no such endpoint")
        })
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_frame_bytes))
        .layer(axum::middleware::map_response_with_state(services.webtransport.clone(), alt_svc))
        .layer(axum::middleware::map_response(crate::http::json_errors));
    if let Some(cors) = cors(&state.config.allowed_origins) {
        router = router.layer(cors);
    }
    // SockJS answers in its own words (plain-text errors, its own CORS): outside both layers.
    let mut router = router.with_state(state.clone()).merge(transport::sockjs::routes(&state));
    // What guards an open server guards every route, SockJS's too.
    if !state.config.requires_token() {
        let config = state.config.clone();
        router = router.layer(axum::middleware::from_fn_with_state(config, crate::http::same_origin_writes));
    }
    // The sockjs-protocol suite's services (test use only) take any page's writes, as its CORS
    // cases expect: they reach no channel.
    router = router.merge(transport::sockjs::test_routes(&state));
    // Outermost but for the Host check: any endpoint's request may attach to a lab session.
    router = router.layer(axum::middleware::from_fn_with_state(lab, crate::lab::tap));
    if state.config.open_on_loopback() {
        let config = state.config.clone();
        router = router.layer(axum::middleware::from_fn_with_state(config, crate::http::loopback_host));
    }
    router
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
    axum::extract::State(advert): axum::extract::State<Option<Arc<Advert>>>,
    mut response: axum::response::Response,
) -> axum::response::Response {
    if let Some(advert) = advert
        && let Ok(value) = axum::http::HeaderValue::from_str(&advert.alt_svc())
    {
        response.headers_mut().insert(axum::http::header::ALT_SVC, value);
    }
    response
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
    /// The TLS certificate or key of the HTTPS listener could not be loaded.
    #[error("cannot serve HTTPS: {0}")]
    Tls(String),
    /// The plain-HTTP redirect listener could not be bound.
    #[error("cannot listen on {addr} (http_redirect_listen): {source}")]
    RedirectListen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The WebRTC engine could not start.
    #[error("cannot start WebRTC: {0} (or run without it: --no-rtc, rtc = false)")]
    Rtc(String),
}

async fn start_turn(state: &Arc<AppState>) -> Result<IceInfo, StartError> {
    let mut config = state.config.turn_server().map_err(StartError::Turn)?;
    let secret = config.auth_secret.get_or_insert_with(crate::turn::random_secret).clone();
    let mut stop = state.shutdown.subscribe();
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let handle = switchboard_turn::serve(config.clone(), shutdown)
        .await
        .map_err(|e| StartError::Turn(crate::turn::start_error(&config, &e)))?;
    let info = IceInfo {
        addr: handle.udp_addr(),
        tls_addr: handle.tls_addr(),
        tcp: handle.tcp_addr().is_some(),
        external_ip: config.external_ip,
        secret,
        ttl: Duration::from_secs(state.config.turn_credential_ttl),
        metrics: handle.metrics(),
    };
    let metrics = info.metrics.clone();
    state.metrics.add_source(move |out| out.push_str(&metrics.render_prometheus()));
    tokio::spawn(handle.wait());
    Ok(info)
}

/// Starts the WebRTC engine on `rtc_listen` (default: the HTTP listener's IP, any free port).
async fn start_rtc(state: &Arc<AppState>, http_ip: IpAddr) -> Result<RtcService, StartError> {
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
        let renew = crate::rtc::http::renew_claims(Arc::downgrade(state), service.clone(), node, ttl);
        tokio::spawn(renew);
    }
    Ok(service)
}

/// A bound, not yet running server.
pub struct Server {
    state: Arc<AppState>,
    services: Services,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    redirect: Option<TcpListener>,
    webtransport: Option<transport::wt::WtEndpoint>,
}

impl Server {
    /// Connects the broker and binds the listener (port 0 picks a free port).
    pub async fn bind(config: Config) -> Result<Self, StartError> {
        let addr = config.listen;
        let listen_error = |source| StartError::Listen { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
        let tls = match config.tls_cert.is_empty() {
            true => None,
            false => {
                let (cert, key) =
                    (std::path::Path::new(&config.tls_cert), std::path::Path::new(&config.tls_key));
                Some(crate::listener::tls::server_config(cert, key).map_err(StartError::Tls)?)
            }
        };
        let redirect = match config.http_redirect_listen.parse::<SocketAddr>() {
            Ok(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::RedirectListen { addr, source })?,
            ),
            Err(_) => None,
        };
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
        let mut services = Services {
            webtransport: webtransport.as_ref().map(|wt| wt.advert().clone()),
            ..Services::default()
        };
        if state.config.turn {
            services.ice = Some(start_turn(&state).await?);
        }
        if state.config.rtc {
            let ip = listener.local_addr().map_err(listen_error)?.ip();
            let rtc = start_rtc(&state, ip).await?;
            let recorder = crate::media::record::Recorder::start(
                state.config.clone(),
                rtc.clone(),
                state.broker.clone(),
                state.metrics.clone(),
            )
            .map_err(|e| StartError::Rtc(format!("recordings_dir {}: {e}", state.config.recordings_dir)))?;
            services.video = Some(crate::media::video::service::VideoService::new(
                state.config.clone(),
                rtc.clone(),
                state.broker.clone(),
                state.metrics.clone(),
            ));
            services.rtc = Some(rtc);
            services.recorder = Some(recorder);
        }
        Ok(Self { state, services, listener, tls, redirect, webtransport })
    }

    /// The WebRTC media address, when WebRTC runs.
    pub fn rtc_addr(&self) -> Option<SocketAddr> {
        self.services.rtc.as_ref().map(|r| r.local_addr())
    }

    /// The TURN server's address, when it runs.
    pub fn turn_addr(&self) -> Option<SocketAddr> {
        self.services.ice.as_ref().map(|i| i.addr)
    }

    /// The optional services that started (for tests and embedding).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether the listener serves HTTPS (`tls_cert` is set).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The plain-HTTP redirect listener's address, when `http_redirect_listen` is set.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().and_then(|r| r.local_addr().ok())
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains: readiness turns 503, every real-time
    /// connection is told to go (code 3000), the listener stops accepting and lets requests in
    /// flight finish; all within `shutdown_timeout`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        use crate::listener::{Listener, ListenerMetrics, Options, redirect_router};
        let state = self.state.clone();
        if state.config.demo {
            tokio::spawn(demo::ticker(state.clone()));
        }
        if state.config.admin {
            tokio::spawn(crate::admin::stats::publish(state.clone()));
        }
        let webtransport = self.webtransport.map(|wt| tokio::spawn(wt.serve(state.clone())));
        let (stop, hub) = (state.shutdown.clone(), state.hub.clone());
        let began = Arc::new(std::sync::OnceLock::new());
        let began_at = began.clone();
        let recorder = self.services.recorder.clone();
        let video = self.services.video.clone();
        tokio::spawn(async move {
            shutdown.await;
            if let Some(video) = video {
                video.stop_all();
            }
            if let Some(recorder) = recorder {
                // Close the files: their manifests say `stopped`, not `interrupted`.
                recorder.stop_all().await;
            }
            let _ = began_at.set(tokio::time::Instant::now());
            tracing::info!("shutting down: draining connections");
            stop.send_replace(true);
            hub.close_all(switchboard_protocol::Disconnect::SHUTDOWN);
        });
        let metrics = Arc::new(ListenerMetrics::default());
        let rendered = metrics.clone();
        state.metrics.add_source(move |out| rendered.render(out));
        let options = Options::new(&state.config);
        if let Some(redirect) = self.redirect {
            let port = self.listener.local_addr()?.port();
            let listener = Listener::new(redirect, None, options.clone(), metrics.clone());
            tokio::spawn(listener.serve(redirect_router(port), state.shutdown.subscribe()));
        }
        let listener = Listener::new(self.listener, self.tls, options, metrics);
        listener.serve(app(state.clone(), &self.services), state.shutdown.subscribe()).await;
        // What the listener's drain left of shutdown_timeout goes to upgraded connections
        // (WebSockets, told to go) and WebTransport sessions.
        let limit = Duration::from_secs(state.config.shutdown_timeout);
        let left = began.get().map_or(limit, |t| limit.saturating_sub(t.elapsed()));
        let all = u32::try_from(state.config.max_connections).unwrap_or(u32::MAX);
        let rest = async {
            if let Some(wt) = webtransport {
                let _ = wt.await;
            }
            let _ = state.admission.acquire_many(all).await;
        };
        let _ = tokio::time::timeout(left, rest).await;
        Ok(())
    }
}
