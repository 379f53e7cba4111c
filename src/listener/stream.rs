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
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, Version, header};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tower::ServiceExt;

use super::conn::{Ctx, Tracked};

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

/// Serves a stream request: the router's response, chunked, until its body ends or the
/// client goes away; then the connection closes.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut io: Tracked<S>, req: Box<Request<Body>>, ctx: Ctx) {
    let _in_flight = ctx.activity.request_started();
    let span = tracing::info_span!("http", remote = %ctx.peer);
    // Boxed: the router's future is dead once it answered, but would size the stream's future.
    let routed = Box::pin(tracing::Instrument::instrument(ctx.router.oneshot(*req), span));
    let response = match routed.await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, mut body) = response.into_parts();
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
    drop(parts);
    if io.write_all(&head).await.is_err() {
        return;
    }
    drop(head);
    // Whatever the client sends now is not read as a request; its end is the stream's end.
    let mut scratch = [0u8; 32];
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if data.is_empty() {
                        continue;
                    }
                    if write_chunk(&mut io, &data).await.is_err() {
                        return;
                    }
                }
                Some(Err(_)) => return,
                None => break,
            },
            read = io.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
    let _ = io.write_all(b"0\r\n\r\n").await;
    let _ = io.shutdown().await;
}

/// Writes `data` as one chunk: its size line, the data and the CRLF in one vectored write,
/// without copying the data (a delivery's bytes); what the socket did not take goes on with
/// plain writes.
async fn write_chunk<W: AsyncWrite + Unpin>(io: &mut W, data: &[u8]) -> std::io::Result<()> {
    let mut size = [0u8; 20];
    let n = {
        let mut cursor = std::io::Cursor::new(&mut size[..]);
        std::io::Write::write_fmt(&mut cursor, format_args!("{:x}\r\n", data.len()))?;
        usize::try_from(cursor.position()).unwrap_or(0)
    };
    let parts: [&[u8]; 3] = [&size[..n], data, b"\r\n"];
    let slices = parts.map(std::io::IoSlice::new);
    let mut written = io.write_vectored(&slices).await?;
    if written == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    for part in parts {
        if written >= part.len() {
            written -= part.len();
            continue;
        }
        io.write_all(&part[written..]).await?;
        written = 0;
    }
    Ok(())
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
