//! Long-lived HTTP/1 streams (`GET /sse`, `GET /stream`) served without hyper.
//!
//! hyper keeps a connection's buffers for as long as a response is being sent: a read buffer
//! (16 KiB once the request is parsed) and a header buffer (8 KiB), 29 KiB of an idle SSE
//! subscriber's 30 (measured with heaptrack). A stream's request is the whole of what its
//! client says, so when a plain HTTP/1.1 connection opens with one, the listener reads that head
//! itself, runs the router, and writes the response (chunked, `connection: close`) with nothing
//! held but the body. Anything else (another path, a body, HTTP/2, a second request on a
//! kept-alive connection) is handed to hyper with the bytes read so far.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, Version, header};
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tower::ServiceExt;

use super::conn::{Ctx, InFlight, Tracked};

/// The paths served here: their responses last as long as the connection.
const PATHS: [&str; 2] = ["/sse", "/stream"];
/// Longest first head read here; a larger one goes to hyper (which has its own limits).
const MAX_HEAD: usize = 4096;
const MAX_HEADERS: usize = 48;

/// What the first read of a connection found.
pub enum First<S> {
    /// A stream request, served by [`serve`].
    Stream(Tracked<S>, Box<Request<Body>>),
    /// Anything else: hyper's, with what was read.
    Other(Prefixed<Tracked<S>>),
    /// The client went away.
    Gone,
}

/// Reads the start of a connection until it knows whether it opens with a stream request.
pub async fn first<S: AsyncRead + AsyncWrite + Unpin>(mut io: Tracked<S>, ctx: &Ctx) -> First<S> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        match io.read_buf(&mut buf).await {
            Ok(0) | Err(_) if buf.is_empty() => return First::Gone,
            Ok(0) | Err(_) => return First::Other(Prefixed { prefix: buf.freeze(), inner: io }),
            Ok(_) => {}
        }
        match parse(&buf, ctx) {
            Parsed::Partial if buf.len() < MAX_HEAD => {
                if buf.capacity() == buf.len() {
                    buf.reserve(1024);
                }
            }
            Parsed::Stream(req) => return First::Stream(io, req),
            _ => return First::Other(Prefixed { prefix: buf.freeze(), inner: io }),
        }
    }
}

enum Parsed {
    Partial,
    Stream(Box<Request<Body>>),
    Other,
}

fn parse(buf: &[u8], ctx: &Ctx) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            // Decide as soon as the request line says it is not ours.
            let not_ours = req.method.is_some_and(|m| m != "GET") || req.path.is_some_and(|p| !is_stream(p));
            return if not_ours { Parsed::Other } else { Parsed::Partial };
        }
        Err(_) => return Parsed::Other,
    };
    // Pipelined bytes, an old client, a body, an upgrade: hyper's.
    let (Some("GET"), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Other;
    };
    // A transport lab session's request is metered and impaired by hyper's path (conn::serve).
    let lab = path.contains("sb_lab=");
    if len != buf.len() || !is_stream(path) || lab || *ctx.draining.borrow() {
        return Parsed::Other;
    }
    let mut builder = Request::builder().method(Method::GET).uri(path).version(Version::HTTP_11);
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let body_or_upgrade = name.eq_ignore_ascii_case(b"content-length") && h.value != b"0"
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect");
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(h.value)) else {
            return Parsed::Other;
        };
        if body_or_upgrade {
            return Parsed::Other;
        }
        builder = builder.header(name, value);
    }
    match builder.extension(ConnectInfo(ctx.peer)).body(Body::empty()) {
        Ok(req) => Parsed::Stream(Box::new(req)),
        Err(_) => Parsed::Other,
    }
}

fn is_stream(target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    PATHS.contains(&path)
}

/// Starts serving a stream request: runs the router and writes the response's head. The
/// [`Relay`] returned sends the body; `None` when the client went away first.
pub async fn start<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: Tracked<S>,
    req: Box<Request<Body>>,
    ctx: Ctx,
) -> Option<Relay<S>> {
    let in_flight = ctx.activity.request_started();
    let span = tracing::info_span!("http", remote = %ctx.peer);
    // Boxed: the router's future is dead once it answered, but would size the caller's future.
    // Unboxed in a block of its own, whose end frees the box: `*req` here would keep it (a
    // moved-out box is freed at the end of its scope).
    let req = {
        let boxed = req;
        *boxed
    };
    let routed = Box::pin(tracing::Instrument::instrument(ctx.router.oneshot(req), span));
    let response = match routed.await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let mut head = Vec::with_capacity(256);
    let reason = parts.status.canonical_reason().unwrap_or("");
    head.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", parts.status.as_u16()).as_bytes());
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::CONNECTION {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(header::DATE) {
        head.extend_from_slice(
            format!("date: {}\r\n", httpdate::fmt_http_date(std::time::SystemTime::now())).as_bytes(),
        );
    }
    head.extend_from_slice(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    io.write_all(&head).await.ok()?;
    Some(Relay {
        io,
        body,
        _in_flight: in_flight,
        size_line: [0; 18],
        size_len: 0,
        data: Bytes::new(),
        written: 0,
        ending: false,
    })
}

/// A stream response whose head is written, as a future that sends its body chunked until it
/// ends or the client goes away; then the connection closes. Written by hand rather than as an
/// async fn: it is what an idle subscriber's task holds, and an async fn's state (its argument,
/// its locals, the write futures) came to 3 to 4 times this struct.
pub struct Relay<S> {
    io: Tracked<S>,
    body: Body,
    _in_flight: InFlight,
    /// The chunk being written: its size line, its data (a delivery's bytes, not copied) and a
    /// CRLF; `written` of those bytes are sent.
    size_line: [u8; 18],
    size_len: u8,
    data: Bytes,
    written: usize,
    /// The body ended: the last chunk (`0\r\n\r\n`) goes, then the socket is shut down.
    ending: bool,
}

impl<S> Relay<S> {
    fn total(&self) -> usize {
        if self.size_len == 0 { 0 } else { usize::from(self.size_len) + self.data.len() + 2 }
    }

    fn set_chunk(&mut self, data: Bytes) {
        let mut cursor = std::io::Cursor::new(&mut self.size_line[..]);
        // At most 16 hex digits and a CRLF: always fits.
        let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{:x}\r\n", data.len()));
        self.size_len = u8::try_from(cursor.position()).unwrap_or(0);
        self.data = data;
        self.written = 0;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> std::future::Future for Relay<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let total = this.total();
            if this.written < total {
                let size = usize::from(this.size_len);
                let parts: [&[u8]; 3] = [&this.size_line[..size], &this.data, b"\r\n"];
                let mut skip = this.written;
                let mut slices = [std::io::IoSlice::new(&[]); 3];
                for (slice, part) in slices.iter_mut().zip(parts) {
                    let from = skip.min(part.len());
                    skip -= from;
                    *slice = std::io::IoSlice::new(&part[from..]);
                }
                match ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &slices)) {
                    Ok(0) | Err(_) => return Poll::Ready(()),
                    Ok(n) => this.written += n,
                }
                continue;
            }
            if this.ending {
                let _ = ready!(Pin::new(&mut this.io).poll_shutdown(cx));
                return Poll::Ready(());
            }
            this.size_len = 0;
            this.data = Bytes::new();
            // Whatever the client sends now is not read as a request; its end is the stream's.
            let mut scratch = [0u8; 64];
            loop {
                let mut buf = ReadBuf::new(&mut scratch);
                match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(())) => continue,
                    Poll::Pending => break,
                }
            }
            match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        this.set_chunk(data);
                    }
                }
                Some(Err(_)) => return Poll::Ready(()),
                None => {
                    // The last chunk: a size line of `0\r\n` and the closing CRLF.
                    this.set_chunk(Bytes::new());
                    this.ending = true;
                }
            }
        }
    }
}

/// A socket whose first bytes were already read: they are read again first.
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// A socket nothing was read from.
    pub fn new(inner: S) -> Self {
        Self { prefix: Bytes::new(), inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            if this.prefix.is_empty() {
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
