//! Direct writes: the hub's fan-out writes a publication straight into an idle subscriber's
//! socket, with no wake-up of the subscriber's task.
//!
//! Most deliveries go to a connection that is waiting: nothing queued, nothing half-written, a
//! socket with room. Handing such a delivery to the connection's task costs a wake-up, a poll of
//! its write loop and its session, for a `write()` the fan-out could make itself. So a
//! connection that starts to wait lends its [`Outbox`](crate::hub::Outbox) a [`Direct`]: its
//! socket, how it frames a publication, and where each of its live subscriptions stands. While
//! it is lent, a publication that continues one of those subscriptions, arriving at an empty
//! outbox, is written by the fan-out; anything else (a gap, another epoch, a presence event, a
//! socket without room) is queued as before and wakes the task, which takes the `Direct` back,
//! moves its subscriptions to where the fan-out left them, and goes on as if it had written
//! those publications itself.
//!
//! Only plain TCP sockets of the listener ([`Socket`]) are lent, never TLS ones (their records
//! are the task's to encrypt) or a lab session's (its writes are counted and delayed).

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use parking_lot::Mutex;
use switchboard_protocol::ChannelName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::model::{Epoch, Publication};

/// A plain TCP socket that its connection's task and the hub's fan-out may both write to.
///
/// Writes take a lock, which also remembers whether the last one was cut short: its writer then
/// holds the rest of a frame, and nobody else may write before that rest (see
/// [`Socket::try_write_whole`]). Reads need no lock.
#[derive(Clone, Debug)]
pub struct Socket(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    tcp: TcpStream,
    /// The last write took only part of what it was given.
    cut_short: Mutex<bool>,
}

/// What [`Socket::try_write_whole`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Wrote {
    /// All of it.
    Whole,
    /// The first `n` bytes (more than none): the caller must write the rest before anything else.
    Part(usize),
    /// Nothing: another writer is mid-frame, or the socket has no room.
    Nothing,
}

impl Socket {
    /// Shares an accepted socket.
    pub fn new(tcp: TcpStream) -> Self {
        Self(Arc::new(Shared { tcp, cut_short: Mutex::new(false) }))
    }

    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.0.tcp
    }

    /// Writes `bufs` without waiting, unless a write of the task was cut short (its writer
    /// holds the rest of a frame).
    pub fn try_write_whole(&self, bufs: &[IoSlice<'_>]) -> Wrote {
        let mut cut_short = self.0.cut_short.lock();
        if *cut_short {
            return Wrote::Nothing;
        }
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        // One buffer (a WebSocket frame): a plain write, cheaper in the kernel than a vectored one.
        let wrote = match bufs {
            [one] => self.0.tcp.try_write(one),
            _ => self.0.tcp.try_write_vectored(bufs),
        };
        match wrote {
            Ok(n) if n == len => Wrote::Whole,
            Ok(0) | Err(_) => Wrote::Nothing,
            Ok(n) => {
                *cut_short = true;
                Wrote::Part(n)
            }
        }
    }

    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        len: usize,
        write: impl Fn(&TcpStream) -> std::io::Result<usize>,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.0.tcp.poll_write_ready(cx))?;
            let mut cut_short = self.0.cut_short.lock();
            match write(&self.0.tcp) {
                Ok(n) => {
                    *cut_short = n < len;
                    return Poll::Ready(Ok(n));
                }
                // `try_write` cleared the readiness: the next poll registers the task.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            ready!(self.0.tcp.poll_read_ready(cx))?;
            match self.0.tcp.try_read_buf(buf) {
                Ok(_) => return Poll::Ready(Ok(())),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.poll_write_with(cx, buf.len(), |tcp| tcp.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.poll_write_with(cx, len, |tcp| tcp.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let sock = socket2::SockRef::from(&self.0.tcp);
        Poll::Ready(match sock.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}

/// How a transport frames a publication, the same bytes for every subscriber of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The JSON protocol's WebSocket frame ([`Publication::ws_frame`]).
    WebSocket,
    /// An SSE event of a one-channel stream, as a chunk of a chunked HTTP/1.1 body.
    SseChunk,
    /// An NDJSON line, as a chunk of a chunked HTTP/1.1 body.
    NdjsonChunk,
}

/// A live subscription as the fan-out sees it: the next publication it may write is
/// `offset + 1` of `epoch`.
#[derive(Debug)]
pub struct DirectChannel {
    /// The channel.
    pub channel: ChannelName,
    /// Its epoch.
    pub epoch: Epoch,
    /// The last offset written.
    pub offset: u64,
}

/// What a connection lends its outbox while it waits (see the module docs). It stays in the
/// outbox for the connection's life; the connection lends it ([`Direct::lend`]) and takes it
/// back ([`Direct::take_back`]) under the outbox's lock.
#[derive(Debug)]
pub struct Direct {
    socket: Socket,
    /// The connection's live subscriptions while lent, filled by its session.
    channels: Vec<DirectChannel>,
    /// What a write cut short left, for the task to write first; no more direct writes then.
    rest: Vec<u8>,
    framing: Framing,
    /// The connection waits: the fan-out may write.
    lent: bool,
    /// The connection reads (which may write): the fan-out may not.
    held: bool,
    /// A write was cut short or found no room: no more until the task took it back.
    stopped: bool,
}

/// What [`Direct::offer`] did with a publication.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered {
    /// Written (or begun: the task writes the rest); its size.
    Written(usize),
    /// Not this one: queue it for the task.
    Declined,
}

impl Direct {
    /// A `Direct` over `socket`, not lent.
    pub fn new(socket: Socket) -> Self {
        let (lent, held, stopped) = (false, false, false);
        Self {
            socket,
            channels: Vec::new(),
            rest: Vec::new(),
            framing: Framing::WebSocket,
            lent,
            held,
            stopped,
        }
    }

    /// Lends it, framing publications as `framing` says, with the subscriptions `fill` puts in
    /// (the list is cleared first, its capacity kept). Not lent, `false`, when there are none.
    pub fn lend(&mut self, framing: Framing, fill: impl FnOnce(&mut Vec<DirectChannel>)) -> bool {
        self.channels.clear();
        fill(&mut self.channels);
        self.framing = framing;
        self.lent = !self.channels.is_empty();
        self.held = false;
        self.stopped = false;
        self.lent
    }

    /// Takes it back: what a write cut short left, to be written first.
    pub fn take_back(&mut self) -> Option<Bytes> {
        self.lent = false;
        self.stopped = false;
        (!self.rest.is_empty()).then(|| std::mem::take(&mut self.rest).into())
    }

    /// Holds direct writes while the connection reads (`true`), or lets them go on.
    pub fn hold(&mut self, held: bool) {
        self.held = held;
    }

    /// The subscriptions, and where the fan-out left them.
    pub fn subscriptions(&self) -> &[DirectChannel] {
        &self.channels
    }

    /// Whether a write was cut short or found no room: the task must look.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Writes `p` if it is the next publication of one of the subscriptions and the socket takes
    /// it now.
    pub fn offer(&mut self, p: &Publication) -> Offered {
        if !self.lent || self.held || self.stopped {
            return Offered::Declined;
        }
        let Some(sub) = self.channels.iter_mut().find(|c| c.channel == p.channel) else {
            return Offered::Declined;
        };
        if p.offset != sub.offset + 1 || !(Arc::ptr_eq(&sub.epoch, &p.epoch) || sub.epoch == p.epoch) {
            // A gap, a repeat or another epoch: the session decides.
            return Offered::Declined;
        }
        let mut size_line = [0u8; 18];
        let (head, body): (&[u8], &Bytes) = match self.framing {
            Framing::WebSocket => (&[], p.ws_frame()),
            Framing::SseChunk | Framing::NdjsonChunk => {
                let event =
                    if self.framing == Framing::SseChunk { p.sse_event_alone() } else { p.ndjson_line() };
                let n = crate::listener::stream::size_line(event.len(), &mut size_line);
                (&size_line[..usize::from(n)], event)
            }
        };
        let tail: &[u8] = if head.is_empty() { &[] } else { b"\r\n" };
        let size = head.len() + body.len() + tail.len();
        let parts = [IoSlice::new(head), IoSlice::new(body), IoSlice::new(tail)];
        let parts = if head.is_empty() { &parts[1..2] } else { &parts[..] };
        match self.socket.try_write_whole(parts) {
            Wrote::Whole => {}
            Wrote::Part(n) => {
                let mut rest = Vec::with_capacity(size);
                for part in [head, &body[..], tail] {
                    rest.extend_from_slice(part);
                }
                rest.drain(..n);
                self.rest = rest;
                self.stopped = true;
            }
            Wrote::Nothing => {
                self.stopped = true;
                return Offered::Declined;
            }
        }
        sub.offset = p.offset;
        Offered::Written(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Payload;
    use tokio::io::AsyncReadExt;

    /// A connected pair on loopback: ours (shared) and the client's end.
    async fn pair() -> (Socket, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Socket::new(server), client)
    }

    fn publication(channel: &str, epoch: &Epoch, offset: u64, size: usize) -> Publication {
        let data = format!("\"{}\"", "x".repeat(size));
        Publication::new(
            ChannelName::new(channel).unwrap(),
            offset,
            epoch.clone(),
            Payload::Json(data.into()),
            None,
        )
    }

    fn direct(socket: Socket, framing: Framing, epoch: &Epoch, offset: u64) -> Direct {
        let mut direct = Direct::new(socket);
        let channel = ChannelName::new("a").unwrap();
        assert!(direct.lend(framing, |c| c.push(DirectChannel { channel, epoch: epoch.clone(), offset })));
        direct
    }

    async fn read_exactly(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        client.read_exact(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn writes_only_the_next_publication_of_a_subscription() {
        let (socket, mut client) = pair().await;
        let epoch: Epoch = "e".into();
        let mut direct = direct(socket, Framing::WebSocket, &epoch, 4);

        let next = publication("a", &epoch, 5, 8);
        assert_eq!(direct.offer(&next), Offered::Written(next.ws_frame().len()));
        assert_eq!(read_exactly(&mut client, next.ws_frame().len()).await, next.ws_frame()[..]);
        assert_eq!(direct.subscriptions()[0].offset, 5);

        // A repeat, a gap, another epoch, another channel: the session decides, not the fan-out.
        for other in [
            publication("a", &epoch, 5, 8),
            publication("a", &epoch, 7, 8),
            publication("a", &"f".into(), 6, 8),
            publication("b", &epoch, 6, 8),
        ] {
            assert_eq!(direct.offer(&other), Offered::Declined);
        }
        assert_eq!(direct.subscriptions()[0].offset, 5);
        assert!(!direct.stopped());
    }

    #[tokio::test]
    async fn frames_a_stream_publication_as_one_chunk() {
        let (socket, mut client) = pair().await;
        let epoch: Epoch = "e".into();
        let mut direct = direct(socket, Framing::SseChunk, &epoch, 0);
        let p = publication("a", &epoch, 1, 3);
        let event = p.sse_event_alone().clone();
        let mut expected = format!("{:x}\r\n", event.len()).into_bytes();
        expected.extend_from_slice(&event);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(direct.offer(&p), Offered::Written(expected.len()));
        assert_eq!(read_exactly(&mut client, expected.len()).await, expected);
    }

    #[tokio::test]
    async fn a_write_cut_short_leaves_its_rest_and_stops_until_taken_back() {
        let (socket, mut client) = pair().await;
        socket2::SockRef::from(socket.tcp()).set_send_buffer_size(4096).unwrap();
        let epoch: Epoch = "e".into();
        let mut direct = direct(socket.clone(), Framing::WebSocket, &epoch, 0);
        // Far more than the socket takes while its client does not read.
        let big = publication("a", &epoch, 1, 1 << 20);
        let frame = big.ws_frame().clone();
        assert_eq!(direct.offer(&big), Offered::Written(frame.len()));
        assert!(direct.stopped(), "the socket could not take 1 MiB at once");
        // Nobody else writes before the rest.
        assert_eq!(socket.try_write_whole(&[IoSlice::new(b"x")]), Wrote::Nothing);
        assert_eq!(direct.offer(&publication("a", &epoch, 2, 8)), Offered::Declined);
        let rest = direct.take_back().expect("the rest of the frame");
        assert!(!rest.is_empty() && rest.len() < frame.len());
        assert!(!direct.stopped());
        assert_eq!(direct.offer(&publication("a", &epoch, 2, 8)), Offered::Declined, "not lent now");

        // The task writes the rest (through the socket's writer, which lifts the stop); the
        // client reads the frame whole.
        let reader = tokio::spawn(async move { read_exactly(&mut client, frame.len()).await == frame[..] });
        let mut writer = socket.clone();
        tokio::io::AsyncWriteExt::write_all(&mut writer, &rest).await.unwrap();
        assert!(reader.await.unwrap(), "the frame arrived whole, in order");
        assert_eq!(socket.try_write_whole(&[IoSlice::new(b"x")]), Wrote::Whole);
    }

    #[tokio::test]
    async fn a_socket_without_room_declines_and_stops() {
        let (socket, _client) = pair().await;
        socket2::SockRef::from(socket.tcp()).set_send_buffer_size(4096).unwrap();
        let filler = vec![0u8; 64 * 1024];
        while socket.tcp().try_write(&filler).is_ok() {}
        let epoch: Epoch = "e".into();
        let mut direct = direct(socket, Framing::WebSocket, &epoch, 0);
        assert_eq!(direct.offer(&publication("a", &epoch, 1, 8)), Offered::Declined);
        assert!(direct.stopped());
        assert_eq!(direct.subscriptions()[0].offset, 0, "nothing was written");
    }
}
