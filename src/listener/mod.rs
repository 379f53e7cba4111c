//! The HTTP listener: our own accept loop in front of hyper (HTTP/1.1 and HTTP/2, TLS or
//! plain TCP with h2c), so that sockets are counted and refused per IP before a byte is read
//! ([`guard`]), every connection has a header, idle and body clock ([`conn`]), TLS
//! certificates reload without a restart ([`tls`]), and a shutdown drains within a deadline.
//! Every request carries `ConnectInfo<SocketAddr>`, the TCP peer, in its extensions.

pub mod conn;
pub mod guard;
pub(crate) mod stream;
pub use stream::WriteLoop;
pub mod tls;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::metrics::{Counter, Gauge};
use conn::{Activity, Ctx, Expired, Timeouts, Tracked};
use guard::{IpGuard, Refusal};

/// The listener's metrics, rendered with the node's.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    open: Gauge,
    accepted: Counter,
    refused_sockets: Counter,
    refused_rate: Counter,
    header_timeouts: Counter,
    idle_timeouts: Counter,
    /// Requests answered 408 because their body stalled.
    pub body_timeouts: Counter,
    tls_failures: Counter,
    accept_errors: Counter,
    drain_aborted: Counter,
}

impl ListenerMetrics {
    /// Prometheus text.
    pub fn render(&self, s: &mut String) {
        let _ = write!(
            s,
            "# HELP switchboard_http_sockets Open TCP/TLS connections of the HTTP listener.\n\
             # TYPE switchboard_http_sockets gauge\nswitchboard_http_sockets {}\n\
             # HELP switchboard_http_sockets_accepted_total Sockets accepted.\n\
             # TYPE switchboard_http_sockets_accepted_total counter\nswitchboard_http_sockets_accepted_total {}\n\
             # HELP switchboard_http_sockets_refused_total Sockets closed at accept, by reason.\n\
             # TYPE switchboard_http_sockets_refused_total counter\n\
             switchboard_http_sockets_refused_total{{reason=\"sockets_per_ip\"}} {}\n\
             switchboard_http_sockets_refused_total{{reason=\"accept_rate_per_ip\"}} {}\n\
             # HELP switchboard_http_timeouts_total Connections closed or requests ended by a timeout.\n\
             # TYPE switchboard_http_timeouts_total counter\n\
             switchboard_http_timeouts_total{{timeout=\"header\"}} {}\n\
             switchboard_http_timeouts_total{{timeout=\"idle\"}} {}\n\
             switchboard_http_timeouts_total{{timeout=\"body\"}} {}\n\
             # HELP switchboard_http_tls_handshake_failures_total TLS handshakes that failed or timed out.\n\
             # TYPE switchboard_http_tls_handshake_failures_total counter\nswitchboard_http_tls_handshake_failures_total {}\n\
             # HELP switchboard_http_accept_errors_total Errors accepting a socket (e.g. out of file descriptors).\n\
             # TYPE switchboard_http_accept_errors_total counter\nswitchboard_http_accept_errors_total {}\n\
             # HELP switchboard_http_drain_aborted_total Connections still open when shutdown_timeout ended a drain.\n\
             # TYPE switchboard_http_drain_aborted_total counter\nswitchboard_http_drain_aborted_total {}\n",
            self.open.get(),
            self.accepted.get(),
            self.refused_sockets.get(),
            self.refused_rate.get(),
            self.header_timeouts.get(),
            self.idle_timeouts.get(),
            self.body_timeouts.get(),
            self.tls_failures.get(),
            self.accept_errors.get(),
            self.drain_aborted.get(),
        );
    }
}

/// Counts an open socket in [`ListenerMetrics`] until dropped.
#[derive(Debug)]
pub struct OpenGuard(Arc<ListenerMetrics>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.add(-1);
    }
}

/// What the listener needs of the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    timeouts: Timeouts,
    shutdown: Duration,
    max_sockets_per_ip: usize,
    accept_rate_per_ip: u32,
    tcp_user_timeout: Option<Duration>,
}

impl Options {
    /// From the node's configuration (0 switches a timeout off).
    pub fn new(config: &Config) -> Self {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Self {
            timeouts: Timeouts {
                header: secs(config.http_header_timeout),
                idle: secs(config.http_idle_timeout),
                body: secs(config.http_body_timeout),
            },
            shutdown: Duration::from_secs(config.shutdown_timeout),
            max_sockets_per_ip: config.http_max_sockets_per_ip,
            accept_rate_per_ip: config.http_accept_rate_per_ip,
            tcp_user_timeout: secs(config.tcp_user_timeout),
        }
    }
}

/// Finds a peer that vanished without a FIN: unacknowledged data (a heartbeat, a publication)
/// ends the connection after `timeout`, and an idle one is probed after as long.
fn dead_peer_detection(stream: &tokio::net::TcpStream, timeout: Duration) {
    let socket = socket2::SockRef::from(stream);
    let probes = socket2::TcpKeepalive::new().with_time(timeout).with_interval(timeout / 4).with_retries(4);
    let _ = socket.set_tcp_keepalive(&probes);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket.set_tcp_user_timeout(Some(timeout));
}

/// A bound listener, served by [`Listener::serve`].
pub struct Listener {
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    options: Options,
    metrics: Arc<ListenerMetrics>,
}

/// Wait this long after an accept error (out of file descriptors, most likely) before the next
/// accept, instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

impl Listener {
    /// Wraps a bound socket; `tls` makes it HTTPS.
    pub fn new(
        tcp: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        options: Options,
        metrics: Arc<ListenerMetrics>,
    ) -> Self {
        Self { tcp, tls: tls.map(tokio_rustls::TlsAcceptor::from), options, metrics }
    }

    /// Serves `router` until `draining` turns true, then stops accepting, asks every
    /// connection to finish (HTTP/1 keep-alive off, HTTP/2 GOAWAY; new requests get 503 with
    /// `Retry-After`), and returns once they have or `shutdown_timeout` has passed, closing
    /// whatever is left (half-sent requests included).
    pub async fn serve(self, router: Router, draining: watch::Receiver<bool>) {
        let Self { tcp, tls, options, metrics } = self;
        let guard = IpGuard::new(options.max_sockets_per_ip, options.accept_rate_per_ip);
        let mut stop = draining.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|d| *d).await;
        };
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Our own clocks replace hyper's header timeout ([`conn`] says why).
        builder.http1().timer(TokioTimer::new()).header_read_timeout(None);
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
        let mut tasks = JoinSet::new();
        let mut sweep = tokio::time::interval(Duration::from_secs(5));
        let mut last_error_log: Option<Instant> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = sweep.tick() => guard.sweep(Instant::now()),
                accepted = tcp.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            metrics.accept_errors.add(1);
                            if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                                tracing::warn!("cannot accept a connection: {e} (backing off; raise the open file limit?)");
                                last_error_log = Some(Instant::now());
                            }
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                            continue;
                        }
                    };
                    let slot = match guard.admit(peer.ip(), Instant::now()) {
                        Ok(slot) => slot,
                        Err((why, log)) => {
                            match why {
                                Refusal::TooManySockets => metrics.refused_sockets.add(1),
                                Refusal::TooFast => metrics.refused_rate.add(1),
                            }
                            if log {
                                tracing::warn!(ip = %peer.ip(), reason = why.label(), "refusing sockets from {} (logged once per 10 s per address)", peer.ip());
                            }
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    if let Some(timeout) = options.tcp_user_timeout {
                        dead_peer_detection(&stream, timeout);
                    }
                    metrics.accepted.add(1);
                    metrics.open.add(1);
                    let open = OpenGuard(metrics.clone());
                    tracing::info!(remote = %peer, "connection opened");
                    let ctx = Ctx {
                        router: router.clone(),
                        peer,
                        activity: Activity::new(false),
                        timeouts: options.timeouts,
                        draining: draining.clone(),
                        metrics: metrics.clone(),
                        socket: None,
                    };
                    let builder = builder.clone();
                    match tls.clone() {
                        None => {
                            // Shared: the hub's fan-out may write to it ([`crate::direct`]).
                            let socket = crate::direct::Socket::new(stream);
                            let ctx = Ctx { socket: Some(socket.clone()), ..ctx };
                            tasks.spawn(connection(builder, Tracked::new(socket, ctx.activity.clone(), slot, open), ctx));
                        }
                        Some(acceptor) => {
                            tasks.spawn(async move {
                                let handshake = acceptor.accept(stream);
                                let tls = match ctx.timeouts.header {
                                    Some(limit) => tokio::time::timeout(limit, handshake).await.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
                                    None => handshake.await,
                                };
                                match tls {
                                    Ok(tls) => {
                                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                                        let ctx = Ctx { activity: Activity::new(h2), ..ctx };
                                        connection(builder, Tracked::new(tls, ctx.activity.clone(), slot, open), ctx).await;
                                    }
                                    Err(e) => {
                                        ctx.metrics.tls_failures.add(1);
                                        tracing::debug!(remote = %ctx.peer, "TLS handshake failed: {e}");
                                    }
                                }
                            });
                        }
                    }
                }
            }
        }
        drop(tcp);
        let open = tasks.len();
        let finished =
            tokio::time::timeout(options.shutdown, async { while tasks.join_next().await.is_some() {} })
                .await;
        if finished.is_err() {
            let left = tasks.len();
            metrics.drain_aborted.add(left as u64);
            tracing::warn!("shutdown_timeout reached: closing {left} of {open} connections still open");
            tasks.shutdown().await;
        }
    }
}

/// Serves one connection until it ends, its clock expires, or a drain has let it finish.
///
/// What reads the first request, runs hyper or starts a stream is boxed and freed once a
/// stream is under way: a task holds its future's largest state for its whole life, and an
/// idle SSE subscriber needs only its [`stream::Relay`] (measured: a 2 KiB task otherwise).
fn connection<S>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    io: Tracked<S>,
    ctx: Ctx,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::FutureExt;
    // Combinators rather than an async block, which would hold the relay twice (its binding
    // and its await).
    Box::pin(setup(builder, io, ctx)).then(futures_util::future::OptionFuture::from).map(|_: Option<()>| ())
}

/// Serves a connection with hyper, or up to the head of a stream's response.
async fn setup<S>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    io: Tracked<S>,
    ctx: Ctx,
) -> Option<stream::Relay<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (activity, metrics, peer, timeouts) =
        (ctx.activity.clone(), ctx.metrics.clone(), ctx.peer, ctx.timeouts);
    let expired = activity.expired(timeouts);
    tokio::pin!(expired);
    // A plain HTTP/1 connection opening with a stream request is served without hyper.
    let io = if activity.is_http2() {
        stream::Prefixed::new(io)
    } else {
        let first = tokio::select! {
            first = stream::first(io, &ctx) => first,
            why = &mut expired => {
                timed_out(&metrics, peer, why);
                return None;
            }
        };
        match first {
            stream::First::Stream(io, req) => return stream::start(io, req, ctx).await,
            stream::First::Other(io) => io,
            stream::First::Gone => return None,
        }
    };
    let mut draining = ctx.draining.clone();
    let service = hyper::service::service_fn(move |req| conn::serve(ctx.clone(), req));
    // Boxed: hyper's future is large, and a stream's setup need not carry it.
    let mut conn = Box::pin(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    let mut drain_started = false;
    loop {
        // Biased, hyper first: a request whose head is already here gets its answer (a 503 if
        // the drain began first) rather than a connection closed as if idle.
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(remote = %peer, "connection ended: {e}");
                }
                return None;
            }
            why = &mut expired => {
                timed_out(&metrics, peer, why);
                return None;
            }
            () = activity.lab_dropped() => {
                tracing::debug!(remote = %peer, "closing the connection: the transport lab dropped it");
                return None;
            }
            _ = draining.wait_for(|d| *d), if !drain_started => {
                drain_started = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

fn timed_out(metrics: &ListenerMetrics, peer: std::net::SocketAddr, why: Expired) {
    match why {
        Expired::Header => metrics.header_timeouts.add(1),
        Expired::Idle => metrics.idle_timeouts.add(1),
    }
    tracing::debug!(remote = %peer, "closing the connection: {why:?} timeout");
}

/// The router of `http_redirect_listen`: every request gets a 301 to the same host and path
/// over https on `https_port`.
pub fn redirect_router(https_port: u16) -> Router {
    use axum::http::{HeaderMap, StatusCode, Uri, header};
    use axum::response::IntoResponse;
    Router::new().fallback(move |headers: HeaderMap, uri: Uri| async move {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        // Drop the port the client used (the plain-HTTP one) and name the HTTPS one.
        let name = match host.rsplit_once(':') {
            Some((name, port))
                if !name.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(']') =>
            {
                name
            }
            _ => host,
        };
        if name.is_empty() || name.contains(['/', '\\', '@', ' ']) {
            return (StatusCode::BAD_REQUEST, "a Host header is needed for the https redirect\n")
                .into_response();
        }
        let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let location = format!("https://{name}{port}{path}");
        (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, F>(_: impl Fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// An idle SSE or streaming subscriber's connection task holds this future for its whole
    /// life: keep it to the relay (it was 2 KiB with the request's setup inline).
    #[test]
    fn a_streams_task_stays_small() {
        let size = future_size(connection::<tokio::net::TcpStream>);
        assert!(size <= 256, "connection's future is {size} bytes");
    }
}
