//! Wake-ups that cost little per delivery: [`Signal`], a flag one task waits for, and
//! [`ReadGate`], a read side polled only when it woke. The hub's outboxes and the write loops
//! use them (re-exported from [`crate::hub`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

/// A flag that any thread raises and one task waits for and takes: what `tokio::sync::Notify`
/// does for a single waiter, without its waiter list (a lock on both sides, a node linked per
/// wait), at a fraction of the cost per delivery. As a [`std::task::Wake`], raising it is what
/// waking does, so a future polled with its waker tells whether it asked to be polled again.
#[derive(Debug, Default)]
pub struct Signal {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// A signal raised already: its first [`Signal::poll_take`] is ready.
    pub fn raised() -> Self {
        Self { raised: AtomicBool::new(true), waker: AtomicWaker::new() }
    }

    /// Raises it and wakes the task waiting for it, if one is.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Raises it without waking anyone: for the waiting task itself, to look again next time.
    pub fn keep_raised(&self) {
        self.raised.store(true, Ordering::Relaxed);
    }

    /// Ready (and lowered) when raised; otherwise the task is woken when it is. The task is
    /// registered even when it was raised: the next raise must find it (the read gate's waker
    /// raises it from a future polled right after this returns ready).
    pub fn poll_take(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        if self.raised.swap(false, Ordering::Acquire) { Poll::Ready(()) } else { Poll::Pending }
    }
}

impl std::task::Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.raise();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.raise();
    }
}

/// A read side polled only when it woke: what it read is polled with a waker that raises a
/// [`Signal`], and polled again only once that is raised. For a read whose wake-up persists
/// when its future is dropped (a socket's readiness): a subscriber that only listens would
/// otherwise pay its whole read stack (framing, TLS, the socket's readiness) once per delivery.
pub struct ReadGate {
    woken: Arc<Signal>,
    waker: std::task::Waker,
}

impl Default for ReadGate {
    fn default() -> Self {
        // Raised: the first poll registers the read side.
        let woken = Arc::new(Signal::raised());
        Self { waker: std::task::Waker::from(woken.clone()), woken }
    }
}

impl ReadGate {
    /// `read`, with the gate's waker, if the gate was raised; the task is woken when it is.
    pub fn poll<T>(
        &self,
        cx: &mut std::task::Context<'_>,
        read: impl FnOnce(&mut std::task::Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        std::task::ready!(self.woken.poll_take(cx));
        let out = std::task::ready!(read(&mut std::task::Context::from_waker(&self.waker)));
        // The reader may hold more (frames read in one go): look again next time.
        self.woken.keep_raised();
        Poll::Ready(out)
    }
}
