//! The HTTP/3 endpoint: bound on UDP at the TCP listener's address and port, it accepts
//! WebTransport sessions at `/wt` (anything else gets `404`), admits them against
//! `max_connections` (`429` when full) and runs each with [`super::run`]. With a self-signed
//! certificate it replaces it every [`cert::RENEW_EVERY`]; sessions already open keep theirs.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use wtransport::endpoint::IncomingSession;
use wtransport::endpoint::endpoint_side::Server as ServerSide;
use wtransport::quinn::{IdleTimeout, TransportConfig, VarInt as QuicVarInt};
use wtransport::{Endpoint, ServerConfig, VarInt};

use super::cert::{self, Cert, CertError};
use crate::config::Config;
use crate::connection::Driver;
use crate::metrics::TransportKind;
use crate::session::SessionConfig;
use crate::state::AppState;

/// The one path that takes WebTransport sessions.
pub const PATH: &str = "/wt";
/// How long a QUIC and WebTransport handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// QUIC keep-alive, so NATs keep the flow between the session's own pings.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// QUIC idle timeout in milliseconds (the peer's may be shorter; keep-alives cover both).
const IDLE_TIMEOUT_MS: u32 = 60_000;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WtError {
    /// The UDP port could not be bound.
    #[error("cannot bind UDP {addr} for HTTP/3: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// No certificate.
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// What the HTTP side tells browsers about the endpoint: its port (`Alt-Svc`) and, for a
/// self-signed certificate, its hash (`GET /wt/cert-hash`).
#[derive(Debug)]
pub struct Advert {
    /// The UDP port.
    pub port: u16,
    /// `(sha-256 hex, not_after unix seconds)` of the self-signed certificate in use.
    dev_cert: RwLock<Option<(String, u64)>>,
}

impl Advert {
    /// The self-signed certificate's hash and expiry, `None` with a configured certificate.
    pub fn dev_cert(&self) -> Option<(String, u64)> {
        self.dev_cert.read().clone()
    }

    /// `h3=":PORT"; ma=86400`.
    pub fn alt_svc(&self) -> String {
        format!("h3=\":{}\"; ma=86400", self.port)
    }
}

/// A bound endpoint, not yet accepting.
pub struct WtEndpoint {
    endpoint: Endpoint<ServerSide>,
    advert: Arc<Advert>,
    self_signed: bool,
    host: Option<std::net::IpAddr>,
    max_streams: u32,
}

fn transport_config(max_streams: u32) -> TransportConfig {
    let mut t = TransportConfig::default();
    // The client's HTTP/3 CONNECT request takes a bidirectional stream of its own, and HTTP/3
    // its control and QPACK streams three unidirectional ones.
    t.max_concurrent_bidi_streams(QuicVarInt::from_u32(max_streams.saturating_add(1)));
    t.max_concurrent_uni_streams(QuicVarInt::from_u32(max_streams.saturating_add(3)));
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.max_idle_timeout(Some(IdleTimeout::from(QuicVarInt::from_u32(IDLE_TIMEOUT_MS))));
    t
}

fn server_config(bind: ServerConfigBind, identity: wtransport::Identity, max_streams: u32) -> ServerConfig {
    let builder = match bind {
        ServerConfigBind::Socket(socket) => ServerConfig::builder().with_bind_socket(socket),
        ServerConfigBind::Unused(addr) => ServerConfig::builder().with_bind_address(addr),
    };
    builder.with_custom_transport(identity, transport_config(max_streams)).build()
}

enum ServerConfigBind {
    Socket(UdpSocket),
    Unused(SocketAddr),
}

impl WtEndpoint {
    /// Binds UDP at `addr` (the TCP listener's, with the port it got) with the configured
    /// certificate, or a fresh self-signed one.
    pub async fn bind(config: &Config, addr: SocketAddr) -> Result<Self, WtError> {
        let host = Some(config.listen.ip());
        let (cert, self_signed) = if config.tls_cert.is_empty() {
            (Cert::self_signed(host)?, true)
        } else {
            (Cert::load(Path::new(&config.tls_cert), Path::new(&config.tls_key)).await?, false)
        };
        let socket = UdpSocket::bind(addr).map_err(|source| WtError::Bind { addr, source })?;
        let port = socket.local_addr().map_err(|source| WtError::Bind { addr, source })?.port();
        let max_streams = config.webtransport_max_streams;
        let server =
            server_config(ServerConfigBind::Socket(socket), cert.identity.clone_identity(), max_streams);
        let endpoint = Endpoint::server(server).map_err(|source| WtError::Bind { addr, source })?;
        let dev_cert = self_signed.then(|| (cert.hash_hex(), cert.not_after.unwrap_or(0)));
        let advert = Arc::new(Advert { port, dev_cert: RwLock::new(dev_cert) });
        Ok(Self { endpoint, advert, self_signed, host, max_streams })
    }

    /// What the HTTP side advertises.
    pub fn advert(&self) -> &Arc<Advert> {
        &self.advert
    }

    /// Accepts sessions until the server shuts down, then gives them up to five seconds to say
    /// goodbye (code 3000) and closes the endpoint.
    pub async fn serve(self, state: Arc<AppState>) {
        let mut shutdown = state.shutdown.subscribe();
        let start = tokio::time::Instant::now() + cert::RENEW_EVERY;
        let mut renew = tokio::time::interval_at(start, cert::RENEW_EVERY);
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => {
                    tokio::spawn(session(incoming, state.clone()));
                }
                _ = renew.tick(), if self.self_signed => self.renew(),
                _ = shutdown.changed() => break,
            }
        }
        let drained = async {
            while self.endpoint.open_connections() > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drained).await;
        self.endpoint.close(VarInt::from_u32(0), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// Replaces the self-signed certificate; new sessions get the new one.
    fn renew(&self) {
        let cert = match Cert::self_signed(self.host) {
            Ok(c) => c,
            Err(e) => return tracing::warn!(error = %e, "cannot renew the WebTransport certificate"),
        };
        let Ok(addr) = self.endpoint.local_addr() else { return };
        let config =
            server_config(ServerConfigBind::Unused(addr), cert.identity.clone_identity(), self.max_streams);
        match self.endpoint.reload_config(config, false) {
            Ok(()) => {
                *self.advert.dev_cert.write() = Some((cert.hash_hex(), cert.not_after.unwrap_or(0)));
                tracing::info!(hash = %cert.hash_hex(), "renewed the WebTransport development certificate");
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the WebTransport certificate"),
        }
    }
}

async fn session(incoming: IncomingSession, state: Arc<AppState>) {
    let request = match tokio::time::timeout(HANDSHAKE, incoming).await {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => return tracing::debug!(error = %e, "webtransport handshake failed"),
        Err(_) => return tracing::debug!("webtransport handshake timed out"),
    };
    if request.path().split('?').next() != Some(PATH) {
        return request.not_found().await;
    }
    if !crate::http::origin_allowed(&state.config, request.origin(), request.authority()) {
        return request.forbidden().await;
    }
    // An open server's rule of every HTTP route (`crate::http::loopback_host`) holds here too.
    if state.config.open_on_loopback() && !crate::http::host_allowed(&state.config, request.authority()) {
        return request.forbidden().await;
    }
    // A session is a connection: it counts in the node's, the address's and (after `connect`)
    // the user's limits. Streams need no count of their own: QUIC caps each session's at
    // `webtransport_max_streams`, so an address holds at most that many per session.
    let Ok(ticket) = state.admission.admit(Some(request.remote_address().ip())) else {
        return request.too_many_requests().await;
    };
    // A lab page's session (`?sb_lab=ID`): its datagrams get the lab's impairment.
    let lab = request.path().split_once('?').and_then(|(_, q)| state.lab.meter_of_query(q));
    let conn = match request.accept().await {
        Ok(conn) => conn,
        Err(e) => return tracing::debug!(error = %e, "webtransport session not established"),
    };
    let _guard = state.metrics.connection(TransportKind::WebTransport);
    let mut config = SessionConfig::from_config(&state.config, true);
    config.datagrams = true;
    let max_streams = state.config.webtransport_max_streams;
    super::run(
        conn,
        Driver::with_config(state, config).admitted(ticket).on(TransportKind::WebTransport),
        max_streams,
        lab,
    )
    .await;
}
