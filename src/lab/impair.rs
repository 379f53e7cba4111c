//! A lab connection's side of its socket: counts its bytes into the session's [`Meter`],
//! closes it when the lab forces a drop, and delays what the server writes as the session's
//! impairment says.
//!
//! The impairment is emulated in user space on the server's sending side only: each write is
//! queued with a release time of `now + delay + U(0, jitter)`, never earlier than the write
//! before it (a TCP stream does not reorder), and with probability `loss` it is held one more
//! retransmission timeout ([`RTO`], Linux's minimum) as if its segment had been lost and
//! resent; everything written after it waits behind it. That is what loss looks like on a
//! reliable stream to the application: late data and head-of-line blocking, never a gap.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

use super::meter::Meter;

/// A lost segment arrives this much later (Linux's minimum retransmission timeout).
pub const RTO: Duration = Duration::from_millis(200);

/// Impaired writes held at once before the writer is made to wait.
const MAX_QUEUED_BYTES: usize = 4 << 20;

/// The lab's state of one connection.
pub struct LabIo {
    meter: Arc<Meter>,
    generation: u64,
    queue: VecDeque<(Instant, Vec<u8>)>,
    queued: usize,
    last_release: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl LabIo {
    /// A connection that has just opted into `meter`'s session.
    pub fn new(meter: Arc<Meter>) -> Self {
        let generation = meter.generation();
        Self { meter, generation, queue: VecDeque::new(), queued: 0, last_release: None, sleep: None }
    }

    /// An error once the lab has dropped the session's connections; otherwise remembers who
    /// to wake when it does.
    pub fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        if self.meter.is_dropped(self.generation) {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "dropped by the transport lab"));
        }
        self.meter.wake_on_drop(cx.waker());
        Ok(())
    }

    /// Counts bytes read.
    pub fn read(&self, n: usize) {
        self.meter.rx.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Writes `buf`, now or (impaired) later.
    pub fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        let impairment = self.meter.impairment();
        if impairment.is_none() && self.queue.is_empty() {
            let n = ready!(Pin::new(inner).poll_write(cx, buf))?;
            self.meter.tx.fetch_add(n as u64, Ordering::Relaxed);
            return Poll::Ready(Ok(n));
        }
        let _ = self.poll_drain(inner, cx)?;
        if self.queued >= MAX_QUEUED_BYTES {
            return Poll::Pending; // poll_drain's timer or socket wakes us
        }
        let now = Instant::now();
        let jitter = impairment.jitter.mul_f64(rand::random::<f64>());
        let mut release = now + impairment.delay + jitter;
        if impairment.loss > 0.0 && rand::random::<f64>() < impairment.loss {
            release += RTO;
            self.meter.lost_segments.fetch_add(1, Ordering::Relaxed);
        }
        let release = self.last_release.map_or(release, |last| release.max(last));
        self.last_release = Some(release);
        self.queue.push_back((release, buf.to_vec()));
        self.queued += buf.len();
        self.meter.tx.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let _ = self.poll_drain(inner, cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    /// Writes every queued write whose time has come; `Pending` (with a wake-up set) while
    /// some are still held.
    pub fn poll_drain<S: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let Some((release, bytes)) = self.queue.front_mut() else {
                self.sleep = None;
                return Poll::Ready(Ok(()));
            };
            if *release > Instant::now() {
                let at = *release;
                let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                sleep.as_mut().reset(at);
                ready!(sleep.as_mut().poll(cx));
                continue;
            }
            let n = ready!(Pin::new(&mut *inner).poll_write(cx, bytes))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.queued -= n;
            if n == bytes.len() {
                self.queue.pop_front();
            } else {
                bytes.drain(..n);
            }
        }
    }
}
