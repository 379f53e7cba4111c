//! One connection's clocks: what it is doing (waiting for a request, reading one's headers,
//! serving requests) and the deadline that goes with it, the request body's stall timer, and
//! the service that feeds each request to the router with its peer address.
//!
//! hyper 1.x's own `header_read_timeout` (HTTP/1 only) starts whenever the connection waits
//! for a head, the wait between keep-alive requests included, so it would cut every idle
//! keep-alive connection at the header timeout; HTTP/2 has none at all. So we keep our own:
//! the header clock runs from accept, or from the first byte after a keep-alive connection
//! went idle (HTTP/1); the idle clock runs while nothing is in flight (both versions). A
//! request is in flight from its head to the end of its response body, so SSE, streaming and
//! held long polls are never idle; an upgraded WebSocket leaves hyper, and these clocks, behind.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tower::ServiceExt;

use super::ListenerMetrics;
use super::guard::Slot;
use crate::lab::{LabIo, Meter};

const NONE: u64 = u64::MAX;

/// Whether any connection ever joined a lab session: until one does, a socket's reads and writes
/// need not look at their [`Activity`] (another allocation, a cache miss per write at scale).
static LAB_IN_USE: AtomicBool = AtomicBool::new(false);

/// The timeouts of [`crate::config::Config`], `None` where switched off.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// `http_header_timeout`.
    pub header: Option<Duration>,
    /// `http_idle_timeout`.
    pub idle: Option<Duration>,
    /// `http_body_timeout`.
    pub body: Option<Duration>,
}

/// Which clock closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// Headers not complete in time.
    Header,
    /// No request for too long.
    Idle,
}

/// What a connection is doing, shared by its socket, its requests and its watchdog.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    http2: AtomicBool,
    in_flight: AtomicUsize,
    /// Milliseconds since `start` when the connection last had nothing in flight.
    idle_since: AtomicU64,
    /// Milliseconds since `start` when a head began arriving on an idle connection ([`NONE`]:
    /// none is arriving). Accept counts as the first head's start.
    head_since: AtomicU64,
    changed: Notify,
    /// The transport lab session this connection opted into (`?sb_lab=`), if any.
    lab: OnceLock<Arc<Meter>>,
    lab_attached: Notify,
}

impl Activity {
    /// A connection just accepted; `http2` when ALPN chose it already.
    pub fn new(http2: bool) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            http2: AtomicBool::new(http2),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            changed: Notify::new(),
            lab: OnceLock::new(),
            lab_attached: Notify::new(),
        })
    }

    /// Whether the connection speaks HTTP/2 (ALPN said so).
    pub fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn read(&self, bytes: &[u8], first: bool) {
        // h2c with prior knowledge: its frames between requests (SETTINGS, PING) are no head.
        if first && bytes.starts_with(b"PRI * HTTP/2.0") {
            self.http2.store(true, Ordering::Relaxed);
        }
        let idle = self.in_flight.load(Ordering::Relaxed) == 0;
        if idle
            && self
                .head_since
                .compare_exchange(NONE, self.now(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // The header clock is shorter than the idle one the watchdog sleeps on.
            self.changed.notify_one();
        }
    }

    /// Counts this connection into a lab session from now on; `head` is the size of the request
    /// head that asked for it (read before the meter was attached). False when the connection
    /// is already in a session (its first one stays).
    pub fn attach_lab(&self, meter: &Arc<Meter>, head: usize) -> bool {
        if self.lab.set(meter.clone()).is_err() {
            return false;
        }
        LAB_IN_USE.store(true, Ordering::Relaxed);
        meter.rx.fetch_add(head as u64, Ordering::Relaxed);
        meter.connections.fetch_add(1, Ordering::Relaxed);
        self.lab_attached.notify_waiters();
        true
    }

    /// Resolves when the lab drops the session this connection is in.
    pub async fn lab_dropped(&self) {
        loop {
            let attached = self.lab_attached.notified();
            if let Some(meter) = self.lab.get() {
                return meter.dropped().await;
            }
            attached.await;
        }
    }

    pub(super) fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the connection is to be closed, and why; `None` while a request is in flight.
    fn deadline(&self, t: &Timeouts) -> Option<(Instant, Expired)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let at = |ms: u64, d: Duration| self.start + Duration::from_millis(ms) + d;
        let head = self.head_since.load(Ordering::Relaxed);
        match (head, t.header) {
            (h, Some(d)) if h != NONE && !self.http2.load(Ordering::Relaxed) => {
                Some((at(h, d), Expired::Header))
            }
            _ => t.idle.map(|d| (at(self.idle_since.load(Ordering::Relaxed), d), Expired::Idle)),
        }
    }

    /// Resolves when the connection's deadline passes.
    pub async fn expired(&self, t: Timeouts) -> Expired {
        loop {
            let changed = self.changed.notified();
            match self.deadline(&t) {
                None => changed.await,
                Some((at, why)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {
                            if self.deadline(&t).is_some_and(|(now, _)| now <= Instant::now()) {
                                return why;
                            }
                        }
                        _ = changed => {}
                    }
                }
            }
        }
    }
}

/// A request in flight; dropping it (with the response body) may make the connection idle.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
            self.0.changed.notify_one();
        }
    }
}

/// The socket (TCP or TLS), telling [`Activity`] of what it reads and holding the IP's slot
/// for as long as it is open, through a WebSocket upgrade too.
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    read_any: bool,
    /// Set once the connection opts into the lab: only then is anything counted or delayed,
    /// so an ordinary socket pays one load of [`Activity::lab`] per read or write.
    lab: Option<Box<LabIo>>,
    _slot: Slot,
    _open: super::OpenGuard,
}

impl<S> Tracked<S> {
    /// Wraps an accepted socket.
    pub fn new(inner: S, activity: Arc<Activity>, slot: Slot, open: super::OpenGuard) -> Self {
        Self { inner, activity, read_any: false, lab: None, _slot: slot, _open: open }
    }

    fn lab(&mut self) -> Option<&mut LabIo> {
        if self.lab.is_none() {
            if !LAB_IN_USE.load(Ordering::Relaxed) {
                return None;
            }
            self.lab = Some(Box::new(LabIo::new(self.activity.lab.get()?.clone())));
        }
        self.lab.as_deref_mut()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.lab().is_some()
            && let Some(lab) = this.lab.as_deref_mut()
        {
            lab.check(cx)?;
            // Impaired writes fall due while the task waits to read (an idle WebSocket).
            if let Poll::Ready(Err(e)) = lab.poll_drain(&mut this.inner, cx) {
                return Poll::Ready(Err(e));
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let got = &buf.filled()[before..];
        if !got.is_empty() {
            this.activity.read(got, !this.read_any);
            this.read_any = true;
            if let Some(lab) = this.lab.as_deref() {
                lab.read(got.len());
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.lab().is_some()
            && let Some(lab) = this.lab.as_deref_mut()
        {
            return lab.poll_write(&mut this.inner, cx, buf);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(lab) = this.lab.as_deref_mut() {
            lab.check(cx)?;
            // Held writes do not hold up the flush (a writer that waits for its flush would
            // otherwise send one message per delay); their timer wakes the task to send them.
            if let Poll::Ready(Err(e)) = lab.poll_drain(&mut this.inner, cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(lab) = this.lab.as_deref_mut() {
            // What the impairment still holds goes out before the FIN.
            ready!(lab.poll_drain(&mut this.inner, cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.lab().is_some() {
            // Lab connections write one buffer at a time, through the counting path.
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &**b);
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The request body stalled for `http_body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body stalled for longer than http_body_timeout")]
pub struct BodyTimeout;

/// A request body whose reads may not stall longer than the timeout; `fired` tells the
/// service to answer 408 whatever the handler made of the error.
struct TimedBody {
    inner: Incoming,
    timeout: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    fired: Arc<AtomicBool>,
}

impl hyper::body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let Some(timeout) = this.timeout else { return Poll::Pending };
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(sleep.as_mut().poll(cx));
                this.fired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(BodyTimeout.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request in flight until hyper has sent (or dropped) it.
pub struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection of a request that asked for the transport lab (`crate::lab::tap`).
#[derive(Clone)]
pub struct LabTap(pub Arc<Activity>);

/// What every request of a connection shares.
#[derive(Clone)]
pub struct Ctx {
    pub router: Router,
    pub peer: SocketAddr,
    pub activity: Arc<Activity>,
    pub timeouts: Timeouts,
    pub draining: tokio::sync::watch::Receiver<bool>,
    pub metrics: Arc<ListenerMetrics>,
    /// The plain TCP socket (not TLS), which a WebSocket or a stream may lend to the hub's
    /// fan-out ([`crate::direct`]).
    pub socket: Option<crate::direct::Socket>,
}

/// Probes still answered while the node drains, so orchestrators see it go unready.
fn is_probe(path: &str) -> bool {
    matches!(path, "/readyz" | "/healthz" | "/metrics")
}

/// Serves one request: the peer address in its extensions, its body timed, its response
/// kept in flight; 503 with `Retry-After` once the node drains; 408 when the body stalled.
pub async fn serve(ctx: Ctx, req: Request<Incoming>) -> Result<Response<TrackedBody>, Infallible> {
    let in_flight = ctx.activity.request_started();
    let fired = Arc::new(AtomicBool::new(false));
    let mut req = req.map(|inner| {
        Body::new(TimedBody { inner, timeout: ctx.timeouts.body, sleep: None, fired: fired.clone() })
    });
    req.extensions_mut().insert(ConnectInfo(ctx.peer));
    // A request that names a transport lab session may attach its connection to it.
    if req.uri().query().is_some_and(|q| q.contains("sb_lab=")) {
        req.extensions_mut().insert(LabTap(ctx.activity.clone()));
    } else if req.headers().contains_key(header::UPGRADE)
        && let Some(socket) = &ctx.socket
    {
        // A WebSocket's connection may lend its socket to the fan-out (not in a lab session,
        // whose writes the lab counts and delays).
        req.extensions_mut().insert(socket.clone());
    }
    // HTTP/2 names the host in `:authority`, not `Host`; handlers (Host checks, URLs handed out)
    // read `Host`, so give them one.
    if !req.headers().contains_key(header::HOST)
        && let Some(value) =
            req.uri().authority().and_then(|a| header::HeaderValue::from_str(a.as_str()).ok())
    {
        req.headers_mut().insert(header::HOST, value);
    }
    let response = if *ctx.draining.borrow() && !is_probe(req.uri().path()) {
        refusal(StatusCode::SERVICE_UNAVAILABLE, "shutting down: retry on another node\n")
    } else {
        // Every line logged for the request, and for a connection it opens, names the peer.
        let span = tracing::info_span!("http", remote = %ctx.peer);
        let response = match tracing::Instrument::instrument(ctx.router.oneshot(req), span).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        if fired.load(Ordering::Relaxed) {
            ctx.metrics.body_timeouts.add(1);
            refusal(StatusCode::REQUEST_TIMEOUT, "request body timed out (http_body_timeout)\n")
        } else {
            response
        }
    };
    Ok(response.map(|inner| TrackedBody { inner, _in_flight: in_flight }))
}

/// A plain-text refusal that ends the connection (its state is unknown after a stalled body).
fn refusal(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    let headers = r.headers_mut();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}
