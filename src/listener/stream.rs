//! Long-lived HTTP/1 streams (`GET /sse`, `GET /stream`) served without hyper.
//!
//! hyper keeps a connection's buffers for as long as a response is being sent: a read buffer
//! (16 KiB once the request is parsed) and a header buffer (8 KiB), 29 KiB of an idle SSE
//! subscriber's 30 (measured with heaptrack). A stream's request is the whole of what its
//! client says, so when a plain HTTP/1.1 connection opens with one, the listener reads that head
//! itself, runs the router, and writes the response (chunked, `connection: close`) with nothing
//! held but the body. Anything else (another path, a body, HTTP/2, a second request on a
//! kept-alive connection) is handed to hyper with the bytes read so far.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, Version, header};
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tower::ServiceExt;

use super::conn::{Ctx, InFlight, Tracked};
use crate::hub::ReadGate;

type BoxedLoop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A stream response's write loop (its session, writing into the body), handed to the listener
/// in the response's extensions. A stream the listener serves runs it inside the connection's
/// own task ([`Relay`]): a delivery then wakes one task, not two (the loop's, then the body's).
/// Any other (served by hyper: a second request on a kept-alive connection, HTTP/2, a lab
/// session) is spawned as a task of its own once the response's head is dropped.
#[derive(Clone)]
pub struct WriteLoop(Arc<LoopSlot>);

struct LoopSlot(Mutex<Option<BoxedLoop>>);

impl WriteLoop {
    /// Wraps the write loop `run`.
    pub fn new(run: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Arc::new(LoopSlot(Mutex::new(Some(Box::pin(run))))))
    }

    fn take(&self) -> Option<BoxedLoop> {
        self.0.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Runs `run` as a task of its own, if a runtime is there to run it (a server shutting down
/// drops it, as it drops every connection's task).
fn detach(run: BoxedLoop) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(run);
    }
}

impl Drop for LoopSlot {
    fn drop(&mut self) {
        if let Some(run) = self.0.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            detach(run);
        }
    }
}

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
    let mut req = {
        let boxed = req;
        *boxed
    };
    // The stream's write loop writes to the socket itself ([`crate::direct`]).
    if let Some(socket) = &ctx.socket {
        req.extensions_mut().insert(socket.clone());
    }
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
    // A head not written leaves the write loop in `parts`: it is spawned, learns that the body
    // is gone, and releases its session.
    io.write_all(&head).await.ok()?;
    let write_loop = parts.extensions.get::<WriteLoop>().and_then(WriteLoop::take);
    Some(Relay {
        io,
        body,
        write_loop,
        read_gate: ReadGate::default(),
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
    /// The response's write loop, run here ([`WriteLoop`]); `None` once it ended.
    write_loop: Option<BoxedLoop>,
    /// The socket is read (for its end) only when its read side woke.
    read_gate: ReadGate,
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
        self.size_len = size_line(data.len(), &mut self.size_line);
        self.data = data;
        self.written = 0;
    }

    /// Polls the write loop, which puts its next batch in the body. Its wake-ups are this task's.
    fn poll_write_loop(&mut self, cx: &mut Context<'_>) {
        if let Some(run) = &mut self.write_loop
            && run.as_mut().poll(cx).is_ready()
        {
            self.write_loop = None;
        }
    }
}

/// Writes a chunk's size line (`len` in hex, then CRLF) into `line`; its length. By hand: the
/// formatting machinery cost more than the rest of a delivery's framing.
fn size_line(len: usize, line: &mut [u8; 18]) -> u8 {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = ((usize::BITS - len.leading_zeros()).div_ceil(4)).max(1) as usize;
    for (i, digit) in line[..digits].iter_mut().rev().enumerate() {
        *digit = HEX[(len >> (4 * i)) & 0xf];
    }
    line[digits..digits + 2].copy_from_slice(b"\r\n");
    (digits + 2) as u8
}

/// `body` as one chunk of a chunked HTTP/1.1 body (size line, body, CRLF), in one buffer; and
/// where `body` starts in it.
pub(crate) fn chunk(body: &[u8]) -> (bytes::Bytes, usize) {
    let mut line = [0u8; 18];
    let n = usize::from(size_line(body.len(), &mut line));
    let mut chunk = Vec::with_capacity(n + body.len() + 2);
    chunk.extend_from_slice(&line[..n]);
    chunk.extend_from_slice(body);
    chunk.extend_from_slice(b"\r\n");
    (chunk.into(), n)
}

/// A relay that ends (the client went away, the server shuts down) leaves its write loop to
/// finish as a task of its own: it learns that the body is gone and releases its session.
impl<S> Drop for Relay<S> {
    fn drop(&mut self) {
        if let Some(run) = self.write_loop.take() {
            detach(run);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> std::future::Future for Relay<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Once per wake-up, first: the write loop makes its next batch, or acts while a write
        // waits (it cuts off a client that stopped reading once its outbox overflows). A loop
        // that waited for the body to take a batch is woken by the body when it does.
        this.poll_write_loop(cx);
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
                let io = &mut this.io;
                let read = this.read_gate.poll(cx, |cx| {
                    let mut buf = ReadBuf::new(&mut scratch);
                    Pin::new(io).poll_read(cx, &mut buf).map_ok(|()| buf.filled().len())
                });
                match read {
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(_)) => continue,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_line_is_the_length_in_hex_then_crlf() {
        for len in [0usize, 1, 9, 10, 15, 16, 255, 256, 4095, 65_536, 1 << 40, usize::MAX] {
            let mut line = [0u8; 18];
            let n = usize::from(size_line(len, &mut line));
            assert_eq!(&line[..n], format!("{len:x}\r\n").as_bytes(), "{len}");
        }
    }
}
