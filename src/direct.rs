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

use crate::model::{Delivery, Epoch, Publication};

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

/// Most deliveries in one vectored write.
const BATCH: usize = 64;

/// What [`Direct::flush`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Deliveries written (the last possibly in part: its rest waits in the `Direct`).
    pub written: usize,
    /// Their bytes.
    pub bytes: usize,
    /// When the oldest of them was published.
    pub oldest: Option<tokio::time::Instant>,
    /// The connection's task must look: deliveries are left that the fan-out may not write (a
    /// gap, a repeat, another epoch, a presence event), the socket had no room, a write was cut
    /// short, or the `Direct` is not lent any more.
    pub wake: bool,
}

impl Direct {
    /// A `Direct` over `socket`, not lent.
    pub fn new(socket: Socket) -> Self {
        Self {
            socket,
            channels: Vec::new(),
            rest: Vec::new(),
            framing: Framing::WebSocket,
            lent: false,
            held: false,
            stopped: false,
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

    /// Whether the fan-out may write for the connection now.
    pub fn accepts(&self) -> bool {
        self.lent && !self.held && !self.stopped
    }

    /// Writes the queued deliveries that continue the subscriptions, in order, up to [`BATCH`]
    /// per vectored write, for as long as the socket takes them whole; what is written (or
    /// begun) leaves `queue`.
    pub fn flush(&mut self, queue: &mut Vec<Delivery>) -> Flushed {
        let mut done = Flushed::default();
        while !queue.is_empty() {
            if !self.accepts() {
                done.wake = true;
                return done;
            }
            // The deliveries of this write: each continues its subscription, whose offset
            // moves now and moves back if the write does not take it.
            let (mut subs, mut before) = ([0usize; BATCH], [0u64; BATCH]);
            let mut n = 0;
            let mut not_ours = false;
            for delivery in queue.iter().take(BATCH) {
                let Some((i, p)) = self.continued(delivery) else {
                    not_ours = true;
                    break;
                };
                (subs[n], before[n]) = (i, self.channels[i].offset);
                self.channels[i].offset = p.offset;
                done.oldest.get_or_insert(p.published_at);
                n += 1;
            }
            if n == 0 {
                done.wake = true;
                return done;
            }
            let (committed, sizes, wrote) = self.write(&queue[..n]);
            for i in (committed..n).rev() {
                self.channels[subs[i]].offset = before[i];
            }
            done.written += committed;
            done.bytes += sizes[..committed].iter().sum::<usize>();
            queue.drain(..committed);
            if wrote != Wrote::Whole || not_ours {
                done.wake = true;
                return done;
            }
        }
        done
    }

    /// Writes `delivery` now if it continues a subscription and the socket takes it (or begins
    /// to: its rest is kept, as [`Direct::flush`] keeps it).
    pub fn offer(&mut self, delivery: &Delivery) -> Flushed {
        let mut done = Flushed::default();
        let Some((i, p)) = self.continued(delivery).filter(|_| self.accepts()) else { return done };
        // Not through `write`: its room for a batch would be set up for every delivery.
        let bytes = self.framed(p);
        let size = bytes.len();
        match self.socket.try_write_whole(&[IoSlice::new(bytes)]) {
            Wrote::Whole => {}
            Wrote::Part(n) => {
                self.rest = bytes[n..].to_vec();
                self.stopped = true;
                done.wake = true;
            }
            Wrote::Nothing => {
                self.stopped = true;
                return done;
            }
        }
        self.channels[i].offset = p.offset;
        (done.written, done.bytes, done.oldest) = (1, size, Some(p.published_at));
        done
    }

    /// The subscription `delivery` continues (its index), if it is a publication with the next
    /// offset of one, in the same epoch.
    fn continued<'a>(&mut self, delivery: &'a Delivery) -> Option<(usize, &'a Publication)> {
        let Delivery::Publication(p) = delivery else { return None };
        let i = self.channels.iter().position(|c| c.channel == p.channel)?;
        let sub = &mut self.channels[i];
        if !sub.channel.same(&p.channel) {
            // The broker's name, which the channel's publications share: the next ones match
            // on a pointer compare, not a string compare.
            sub.channel = p.channel.clone();
        }
        // `Arc`'s `==` compares pointers first.
        (p.offset == sub.offset + 1 && sub.epoch == p.epoch).then_some((i, &**p))
    }

    /// The bytes of `p` in this framing, encoded once for every subscriber.
    fn framed<'a>(&self, p: &'a Publication) -> &'a Bytes {
        match self.framing {
            Framing::WebSocket => p.ws_frame(),
            Framing::SseChunk => p.sse_chunk_alone(),
            Framing::NdjsonChunk => p.ndjson_chunk(),
        }
    }

    /// Writes `batch` (publications that continue their subscriptions) in one vectored write:
    /// how many it took (the last possibly in part, whose rest is kept and stops further
    /// writes), each one's size, and what the socket did.
    fn write(&mut self, batch: &[Delivery]) -> (usize, [usize; BATCH], Wrote) {
        let mut sizes = [0usize; BATCH];
        let mut slices = [IoSlice::new(&[]); BATCH];
        for ((delivery, slice), size) in batch.iter().zip(slices.iter_mut()).zip(sizes.iter_mut()) {
            if let Delivery::Publication(p) = delivery {
                let bytes = self.framed(p);
                *slice = IoSlice::new(bytes);
                *size = bytes.len();
            }
        }
        let wrote = self.socket.try_write_whole(&slices[..batch.len()]);
        let committed = match wrote {
            Wrote::Whole => batch.len(),
            Wrote::Nothing => {
                self.stopped = true;
                0
            }
            Wrote::Part(n) => {
                self.stopped = true;
                let (whole, n) = whole_buffers(sizes.iter().copied(), n);
                if n > 0
                    && let Some(Delivery::Publication(p)) = batch.get(whole)
                {
                    // Begun: the rest goes first when the task writes.
                    self.rest = self.framed(p)[n..].to_vec();
                    whole + 1
                } else {
                    whole
                }
            }
        };
        (committed, sizes, wrote)
    }
}

/// How many of buffers of `sizes`, in order, a write of `written` bytes took whole, and how
/// many bytes of the next one it took.
pub(crate) fn whole_buffers(sizes: impl IntoIterator<Item = usize>, mut written: usize) -> (usize, usize) {
    let whole = sizes.into_iter().take_while(|&size| {
        let fits = size <= written;
        if fits {
            written -= size;
        }
        fits
    });
    (whole.count(), written)
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

    fn publication(channel: &str, epoch: &Epoch, offset: u64, size: usize) -> Delivery {
        let data = format!("\"{}\"", "x".repeat(size));
        let channel = ChannelName::new(channel).unwrap();
        Delivery::Publication(Arc::new(Publication::new(
            channel,
            offset,
            epoch.clone(),
            Payload::Json(data.into()),
            None,
        )))
    }

    fn ws_frame(d: &Delivery) -> Bytes {
        let Delivery::Publication(p) = d else { panic!("a publication") };
        p.ws_frame().clone()
    }

    fn lent(socket: Socket, framing: Framing, epoch: &Epoch, offset: u64) -> Direct {
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
    async fn writes_the_publications_that_continue_a_subscription_in_one_write() {
        let (socket, mut client) = pair().await;
        let epoch: Epoch = "e".into();
        let mut direct = lent(socket, Framing::WebSocket, &epoch, 4);
        let mut queue = vec![publication("a", &epoch, 5, 8), publication("a", &epoch, 6, 8)];
        let expected: Vec<u8> = queue.iter().flat_map(|d| ws_frame(d).to_vec()).collect();

        let flushed = direct.flush(&mut queue);
        assert_eq!((flushed.written, flushed.bytes, flushed.wake), (2, expected.len(), false));
        assert!(queue.is_empty());
        assert_eq!(read_exactly(&mut client, expected.len()).await, expected);
        assert_eq!(direct.subscriptions()[0].offset, 6);
    }

    #[tokio::test]
    async fn takes_the_publications_name_so_the_next_match_is_a_pointer_compare() {
        let (socket, _client) = pair().await;
        let epoch: Epoch = "e".into();
        let mut direct = lent(socket, Framing::WebSocket, &epoch, 4);
        let first = publication("a", &epoch, 5, 8);
        let Delivery::Publication(p) = &first else { unreachable!() };
        assert!(!direct.subscriptions()[0].channel.same(&p.channel), "two allocations of one name");
        assert_eq!(direct.offer(&first).written, 1);
        assert!(direct.subscriptions()[0].channel.same(&p.channel));
    }

    #[tokio::test]
    async fn leaves_what_does_not_continue_a_subscription_to_the_task() {
        let (socket, _client) = pair().await;
        let epoch: Epoch = "e".into();
        // A repeat, a gap, another epoch, another channel: the session decides, not the fan-out.
        for other in [
            publication("a", &epoch, 5, 8),
            publication("a", &epoch, 7, 8),
            publication("a", &"f".into(), 6, 8),
            publication("b", &epoch, 6, 8),
        ] {
            let mut direct = lent(socket.clone(), Framing::WebSocket, &epoch, 4);
            let mut queue = vec![publication("a", &epoch, 5, 8), other];
            let flushed = direct.flush(&mut queue);
            assert_eq!((flushed.written, flushed.wake, queue.len()), (1, true, 1), "{queue:?}");
            assert_eq!(direct.subscriptions()[0].offset, 5);
        }
        // Held while the connection reads: nothing written.
        let mut direct = lent(socket, Framing::WebSocket, &epoch, 4);
        direct.hold(true);
        let mut queue = vec![publication("a", &epoch, 5, 8)];
        assert_eq!((direct.flush(&mut queue).written, queue.len()), (0, 1));
        assert_eq!(direct.subscriptions()[0].offset, 4);
    }

    #[tokio::test]
    async fn frames_a_stream_publication_as_one_chunk() {
        let (socket, mut client) = pair().await;
        let epoch: Epoch = "e".into();
        let mut direct = lent(socket, Framing::SseChunk, &epoch, 0);
        let mut queue = vec![publication("a", &epoch, 1, 3)];
        let Delivery::Publication(p) = &queue[0] else { unreachable!() };
        let event = p.sse_event_alone().clone();
        let mut expected = format!("{:x}\r\n", event.len()).into_bytes();
        expected.extend_from_slice(&event);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(direct.flush(&mut queue).bytes, expected.len());
        assert_eq!(read_exactly(&mut client, expected.len()).await, expected);
    }

    #[tokio::test]
    async fn a_write_cut_short_leaves_its_rest_and_the_rest_of_the_queue() {
        let (socket, mut client) = pair().await;
        socket2::SockRef::from(socket.tcp()).set_send_buffer_size(4096).unwrap();
        let epoch: Epoch = "e".into();
        let mut direct = lent(socket.clone(), Framing::WebSocket, &epoch, 0);
        // Far more than the socket takes while its client does not read.
        let mut queue = vec![publication("a", &epoch, 1, 1 << 20), publication("a", &epoch, 2, 8)];
        let (big, small) = (ws_frame(&queue[0]), ws_frame(&queue[1]));
        let flushed = direct.flush(&mut queue);
        assert_eq!((flushed.written, flushed.bytes, flushed.wake), (1, big.len(), true));
        assert_eq!(queue.len(), 1, "the second waits for the task");
        assert_eq!(direct.subscriptions()[0].offset, 1, "begun counts as written");
        assert!(direct.stopped(), "the socket could not take 1 MiB at once");
        // Nobody else writes before the rest.
        assert_eq!(socket.try_write_whole(&[IoSlice::new(b"x")]), Wrote::Nothing);
        let rest = direct.take_back().expect("the rest of the frame");
        assert!(!rest.is_empty() && rest.len() < big.len());
        assert_eq!(direct.flush(&mut queue).written, 0, "not lent now");

        // The task writes the rest, then the queue (through the socket's writer, which lifts
        // the stop); the client reads both frames whole, in order.
        let expected: Vec<u8> = [&big[..], &small[..]].concat();
        let reader = tokio::spawn(async move { read_exactly(&mut client, expected.len()).await == expected });
        let mut writer = socket.clone();
        tokio::io::AsyncWriteExt::write_all(&mut writer, &rest).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut writer, &small).await.unwrap();
        assert!(reader.await.unwrap(), "the frames arrived whole, in order");
        assert_eq!(socket.try_write_whole(&[IoSlice::new(b"x")]), Wrote::Whole);
    }

    #[tokio::test]
    async fn a_socket_without_room_writes_nothing_and_stops() {
        let (socket, _client) = pair().await;
        socket2::SockRef::from(socket.tcp()).set_send_buffer_size(4096).unwrap();
        let filler = vec![0u8; 64 * 1024];
        while socket.tcp().try_write(&filler).is_ok() {}
        let epoch: Epoch = "e".into();
        let mut direct = lent(socket, Framing::WebSocket, &epoch, 0);
        let mut queue = vec![publication("a", &epoch, 1, 8)];
        let flushed = direct.flush(&mut queue);
        assert_eq!((flushed.written, flushed.wake, queue.len()), (0, true, 1));
        assert!(direct.stopped());
        assert_eq!(direct.subscriptions()[0].offset, 0, "nothing was written");
    }
}
