//! The one write loop every live connection runs, over a narrow [`Transport`] trait: frame a
//! batch, write it in one go, receive, close with a code. WebSocket, WebTransport, data channels,
//! SSE and streaming implement the trait with their framing alone; the loop does the rest (the
//! session's outputs, cut-off of consumers that stop reading, metrics, the close) once for all.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use switchboard_protocol::Disconnect;
use switchboard_protocol::encode;
use switchboard_protocol::frame::{ClientFrame, FrameError, Notice, Reply};

use super::Driver;
use crate::broker::StreamTop;
use crate::direct::{DirectChannel, Framing};
use crate::hub::{Outbox, ReadGate};
use crate::metrics::TransportKind;
use crate::model::{Delivery, Message, PresenceEvent, Publication, history_body};
use crate::session::Output;

/// How long a consumer cut off for not reading has to take its close frame (3002).
const SLOW_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Something to send, as the session asked for it.
#[derive(Debug)]
pub enum Outgoing {
    /// A reply to a command (one-way transports turn `connect` and `subscribe` into events).
    Reply(Box<Reply>),
    /// A history reply.
    History {
        /// The command id.
        id: u64,
        /// The stream's top.
        top: StreamTop,
        /// The publications, with their shared encodings.
        publications: Vec<Arc<Publication>>,
    },
    /// A publication.
    Publication(Arc<Publication>),
    /// A join or leave.
    Presence(Arc<PresenceEvent>),
    /// A ping (one-way transports: a heartbeat).
    Ping,
    /// A subscription the server ended, or a token about to expire.
    Notice(Notice),
}

impl Outgoing {
    /// Roughly the bytes it holds until written: a history reply weighs its publications.
    pub fn weight(&self) -> usize {
        match self {
            Outgoing::Reply(_) | Outgoing::Ping | Outgoing::Notice(_) => 128,
            Outgoing::History { publications, .. } => {
                128 + publications.iter().map(|p| p.weight()).sum::<usize>()
            }
            Outgoing::Publication(p) => p.weight(),
            Outgoing::Presence(e) => Delivery::Presence(e.clone()).weight(),
        }
    }

    /// The frame of the bidirectional transports (WebSocket, WebTransport, data channels):
    /// publications and presence events reuse their shared encodings.
    pub fn message(&self) -> Message {
        match self {
            Outgoing::Reply(reply) => Message::text(reply.to_json()),
            Outgoing::History { id, top, publications } => {
                Message::text(encode::history_reply(*id, &history_body(top, publications)))
            }
            Outgoing::Publication(p) => p.message().clone(),
            Outgoing::Presence(e) => e.message(),
            Outgoing::Notice(n) => Message::text(n.to_json()),
            Outgoing::Ping => Message::text(encode::PING),
        }
    }
}

/// What a transport received.
#[derive(Debug)]
pub enum Inbound {
    /// A client frame (or why it could not be read), and its size on the wire.
    Frame(Result<ClientFrame, FrameError>, usize),
    /// Nothing for the session (a WebSocket ping, a refused extra stream).
    Nothing,
    /// Bytes read that the transport decodes into frames on its next calls.
    Read(usize),
    /// The transport ends the connection with this code (a protocol error, a frame too large).
    End(Disconnect),
    /// The client is gone.
    Gone,
}

/// A connection's transport: its framing and its socket, nothing else.
pub trait Transport: Send {
    /// Which transport this is, for the connection's log line.
    fn kind(&self) -> TransportKind;

    /// Frames one output into the pending batch; `datagram` marks a publication of a datagram
    /// (latest-wins) subscription, which a transport may send unreliably. `Err` when this
    /// transport cannot carry it: the connection then ends with that code.
    fn frame(&mut self, out: Outgoing, datagram: bool) -> Result<(), Disconnect>;

    /// Whether framed output waits for [`Transport::flush`].
    fn has_pending(&self) -> bool;

    /// How the hub's fan-out may frame this transport's publications while the connection
    /// waits ([`crate::direct`]), if it may now; only asked of transports whose driver has a
    /// [`crate::direct::Direct`].
    fn direct_framing(&self) -> Option<Framing> {
        None
    }

    /// The wait ended: the fan-out wrote `channels`' publications up to their offsets, and
    /// `rest` is what a write cut short left, to be written before anything else.
    fn taken_back(&mut self, channels: &[DirectChannel], rest: Option<bytes::Bytes>) {
        let _ = channels;
        debug_assert!(rest.is_none(), "{:?} framed no direct write, yet got its rest", self.kind());
    }

    /// Writes the pending batch in one go; the bytes written, or `Err` when the client is gone.
    fn flush(&mut self) -> impl Future<Output = Result<u64, ()>> + Send;

    /// The next input. Cancel-safe: the loop races it against the session's wake-ups.
    fn recv(&mut self) -> impl Future<Output = Inbound> + Send;

    /// Whether a pending [`Transport::recv`] leaves its wake-up registered when dropped (a
    /// socket's readiness does; a timer or a `Notified` does not). The loop then polls it again
    /// only when it woke, not after every batch it wrote: for a subscriber that only listens,
    /// that is the whole read stack (framing, TLS, the socket's readiness) once per delivery.
    fn recv_wake_persists(&self) -> bool {
        false
    }

    /// Ends the connection, telling the client why (the loop bounds how long that may take for
    /// a client that stopped reading).
    fn close(self, d: Disconnect) -> impl Future<Output = ()> + Send;
}

/// What of a session output a transport sends: `None` for operations and the disconnect, which
/// the loop handles itself.
pub fn outgoing(output: Output) -> Option<Outgoing> {
    Some(match output {
        Output::Reply(reply) => Outgoing::Reply(reply),
        Output::History { id, top, publications } => Outgoing::History { id, top, publications },
        Output::Deliver(Delivery::Publication(p)) => Outgoing::Publication(p),
        Output::Deliver(Delivery::Presence(e)) => Outgoing::Presence(e),
        Output::Ping => Outgoing::Ping,
        Output::Notice(n) => Outgoing::Notice(n),
        Output::Disconnect(_) | Output::Op(..) => return None,
    })
}

/// Runs `driver`'s session over `transport` until either side ends it, then logs the
/// connection's one `info` line: transport, user, duration and close code (none when the
/// client went away). Never a token: the user is the token's `sub`.
///
/// The transport and the driver live in one box that the future points to: an async fn stores
/// its arguments apart from its locals, so passing them by value down two calls would hold them
/// three times in every idle connection's future (measured: 5.7 KiB of a WebSocket's 10).
pub fn run<T: Transport>(transport: T, driver: Driver) -> impl Future<Output = ()> + Send {
    let conn = Box::new(Conn { transport, driver });
    async move {
        let kind = conn.transport.kind();
        let started = std::time::Instant::now();
        let (user, code, span) = pump(conn).await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        span.in_scope(|| {
            tracing::info!(transport = kind.label(), user, duration_ms, code, "connection closed")
        });
    }
}

/// A live connection's two halves.
struct Conn<T> {
    transport: T,
    driver: Driver,
}

/// Resolves when a write must be given up: the outbox overflowed (or the node closed it), or
/// the write has taken `stalled`.
async fn cut_off(driver: &mut Driver, stalled: std::time::Duration) {
    tokio::select! {
        () = driver.cut_off() => {}
        () = tokio::time::sleep(stalled) => {}
    }
}

/// Writes the transport's batch; `None` when the write was given up ([`cut_off`]). Its own
/// async fn, so that the write is one future in the loop's: a local kept across two awaits
/// would have a place of its own in every connection's future.
async fn write<T: Transport>(
    transport: &mut T,
    driver: &mut Driver,
    outbox: &Outbox,
    weight: usize,
    stalled: std::time::Duration,
) -> Option<Result<u64, ()>> {
    let mut flush = std::pin::pin!(transport.flush());
    match std::future::poll_fn(|cx| Poll::Ready(flush.as_mut().poll(cx))).await {
        // The usual case: the socket took it all at once, no timer armed, and nothing held.
        Poll::Ready(written) => Some(written),
        // The race with the cut-off, boxed: the stall timer and the outbox's wake-up would
        // otherwise be stored in every connection's future (what each idle connection holds),
        // for the rare write that waits.
        Poll::Pending => {
            // What waits to be written counts in the outbox's byte bound.
            outbox.set_in_flight(weight);
            let cut = Box::pin(cut_off(driver, stalled));
            let written = tokio::select! {
                biased;
                written = flush => Some(written),
                () = cut => None,
            };
            outbox.set_in_flight(0);
            written
        }
    }
}

/// [`Transport::recv`], polled only when its own wake-up fired since it last returned pending
/// (when the transport's wake-up persists, [`Transport::recv_wake_persists`]).
///
/// `lent`: the connection lent its socket to the fan-out ([`crate::direct`]), whose writes are
/// held while the transport reads: a read may write (a WebSocket answers a close frame there),
/// and no publication may follow that.
async fn recv<T: Transport>(transport: &mut T, gate: Option<&ReadGate>, lent: Option<&Outbox>) -> Inbound {
    let Some(gate) = gate else { return transport.recv().await };
    let mut recv = std::pin::pin!(transport.recv());
    std::future::poll_fn(|cx| {
        gate.poll(cx, |cx| {
            let Some(outbox) = lent else { return recv.as_mut().poll(cx) };
            outbox.hold_direct(true);
            let read = recv.as_mut().poll(cx);
            if read.is_pending() {
                outbox.hold_direct(false);
            }
            read
        })
    })
    .await
}

/// How a connection ended: its user (empty when anonymous), close code and log span.
type Ended = (String, Option<u16>, tracing::Span);

/// The connection's [`Ended`], and the session's release.
fn finish(driver: Driver, code: Option<u16>) -> Ended {
    let user = driver.user().to_owned();
    let span = driver.log_span();
    driver.finish();
    (user, code, span)
}

async fn pump<T: Transport>(mut conn: Box<Conn<T>>) -> Ended {
    let Conn { transport, driver } = &mut *conn;
    let metrics = driver.state().metrics.clone();
    // A backlog (a long replay) is written in batches of about this much, so that what a
    // connection holds stays within its outbox's byte bound.
    let batch_bytes = (driver.state().config.outbound_queue_bytes / 4).max(1);
    let outbox = driver.outbox().clone();
    // A write that does not complete for two ping rounds: the client stopped reading (or its
    // network is gone) even if nothing more is queued for it, and it could not answer a ping.
    let config = &driver.state().config;
    let stalled = std::time::Duration::from_secs(2 * (config.ping_interval + config.pong_timeout));
    let gate = transport.recv_wake_persists().then(ReadGate::default);
    let mut reads_first = false;
    loop {
        let mut framed = 0u64;
        let mut weight = 0usize;
        let mut oldest = None;
        let mut disconnect = None;
        while weight < batch_bytes
            && let Some(output) = driver.next_output()
        {
            if let Output::Disconnect(d) = output {
                disconnect = Some(d);
                break;
            }
            let Some(out) = outgoing(output) else { continue };
            let datagram = match &out {
                Outgoing::Publication(p) => {
                    oldest.get_or_insert(p.published_at);
                    driver.datagram(&p.channel)
                }
                _ => false,
            };
            weight += out.weight();
            if let Err(d) = transport.frame(out, datagram) {
                disconnect = Some(d);
                break;
            }
            framed += 1;
        }
        if transport.has_pending() {
            // A consumer whose socket stays blocked while its outbox overflows is cut off here:
            // it cannot be written to any more. Its client resumes from history.
            match write(transport, driver, &outbox, weight, stalled).await {
                Some(Ok(bytes)) => metrics.bytes_out.add(bytes),
                Some(Err(())) => return finish(conn.driver, None),
                None => {
                    metrics.slow_consumers.add(1);
                    let Conn { transport, driver } = *conn;
                    let ended = finish(driver, Some(Disconnect::SLOW_CONSUMER.code));
                    // The close goes after what the socket still holds: a client that catches
                    // up within the grace reads 3002 there; one that does not is dropped.
                    // Boxed with its timer, like the other close: rare paths stay out of every
                    // connection's future (its size is what each idle connection holds).
                    let close =
                        tokio::time::timeout(SLOW_CLOSE_GRACE, transport.close(Disconnect::SLOW_CONSUMER));
                    let _ = Box::pin(close).await;
                    return ended;
                }
            }
        }
        if framed > 0 {
            metrics.messages_out.add(framed);
            if let Some(at) = oldest {
                metrics.fanout_latency.observe(at.elapsed());
            }
        }
        if let Some(d) = disconnect {
            let Conn { transport, driver } = *conn;
            let ended = finish(driver, Some(d.code));
            Box::pin(transport.close(d)).await;
            return ended;
        }
        if driver.has_output() {
            // The rest of a backlog: the next batch.
            continue;
        }
        // Nothing is left to write: the fan-out may write to the socket until the wait ends.
        let lent = driver.lend_direct(transport.direct_framing()).then_some(&*outbox);
        // Neither a client flooding frames nor a busy channel starves the other side: which is
        // looked at first alternates (select!'s own order is a random number per wake-up).
        reads_first = !reads_first;
        let next = if reads_first {
            tokio::select! {
                biased;
                inbound = recv(transport, gate.as_ref(), lent) => Next::Inbound(inbound),
                wake = driver.wait() => Next::Wake(wake),
            }
        } else {
            tokio::select! {
                biased;
                wake = driver.wait() => Next::Wake(wake),
                inbound = recv(transport, gate.as_ref(), lent) => Next::Inbound(inbound),
            }
        };
        driver.take_back_direct(|channels, rest| transport.taken_back(channels, rest));
        let mut read_frame = false;
        match next {
            Next::Wake(wake) => driver.on_wake(wake),
            Next::Inbound(inbound) => match inbound {
                Inbound::Frame(frame, bytes) => {
                    metrics.bytes_in.add(bytes as u64);
                    driver.on_frame(frame);
                    read_frame = true;
                }
                Inbound::Nothing => {}
                Inbound::Read(bytes) => metrics.bytes_in.add(bytes as u64),
                Inbound::End(d) => {
                    if d == Disconnect::SLOW_CONSUMER {
                        metrics.slow_consumers.add(1);
                    }
                    driver.end(d);
                }
                Inbound::Gone => return finish(conn.driver, None),
            },
        }
        if read_frame {
            // A frame costs a unit of the task's budget: frames read in one go are decoded
            // without touching the socket, and a publisher with hundreds buffered would
            // otherwise fan them all out before any subscriber's task ran. Awaited here, not
            // in the match: there the frame's place would be kept in every connection's future.
            tokio::task::consume_budget().await;
        }
    }
}

/// What the loop waits for next: the client or the session.
enum Next {
    Inbound(Inbound),
    Wake(super::Wake),
}
