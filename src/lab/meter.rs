//! One lab session's meter: the bytes and requests of every connection that opted into it,
//! the impairment applied to them, and the "drop them now" switch.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::Waker;
use std::time::Duration;

/// What a lab session's connections have done, and what is done to them.
#[derive(Debug, Default)]
pub struct Meter {
    /// Bytes read from the lab's sockets (client to server), request heads included.
    pub rx: AtomicU64,
    /// Bytes written to the lab's sockets (server to client), before any impairment delay.
    pub tx: AtomicU64,
    /// HTTP requests (and WebSocket upgrades) that named this session.
    pub requests: AtomicU64,
    /// Connections that opted into this session.
    pub connections: AtomicU64,
    /// Writes held back as if their segment was lost (a retransmission timeout each).
    pub lost_segments: AtomicU64,
    /// Datagrams (WebTransport) dropped by the impairment: real loss, nothing resends them.
    pub lost_datagrams: AtomicU64,
    /// Bumped by [`Meter::drop_all`]: a connection attached at an older generation closes.
    generation: AtomicU64,
    delay_ms: AtomicU32,
    jitter_ms: AtomicU32,
    /// Loss probability in parts per million.
    loss_ppm: AtomicU32,
    /// Tasks to wake when the connections are to be dropped.
    wakers: Mutex<Vec<Waker>>,
    dropped: tokio::sync::Notify,
}

/// The impairment applied to a session's connections (server to client).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Added to every write.
    pub delay: Duration,
    /// Up to this much more, uniformly drawn per write.
    pub jitter: Duration,
    /// Probability that a write's segment is "lost": on a reliable stream it arrives one
    /// retransmission timeout late, and everything behind it waits (head-of-line blocking).
    pub loss: f64,
}

impl Impairment {
    /// Whether it changes anything.
    pub fn is_none(&self) -> bool {
        self.delay.is_zero() && self.jitter.is_zero() && self.loss <= 0.0
    }
}

impl Meter {
    /// The current generation, to compare with [`Meter::is_dropped`] later.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the connections attached at `generation` have been told to close.
    pub fn is_dropped(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) != generation
    }

    /// Closes every connection attached so far (the lab's forced drop).
    pub fn drop_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.dropped.notify_waiters();
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves at the next [`Meter::drop_all`].
    pub async fn dropped(&self) {
        self.dropped.notified().await;
    }

    /// Wakes `waker` at the next drop (an upgraded socket's reader, which no other clock watches).
    pub fn wake_on_drop(&self, waker: &Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            // Bounded: a session's connections are few, and a drop empties the list.
            if wakers.len() >= 256 {
                wakers.remove(0);
            }
            wakers.push(waker.clone());
        }
    }

    /// Sets the impairment (clamped by the caller to the configured maxima).
    pub fn set_impairment(&self, i: Impairment) {
        let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        self.delay_ms.store(ms(i.delay), Ordering::Relaxed);
        self.jitter_ms.store(ms(i.jitter), Ordering::Relaxed);
        self.loss_ppm.store((i.loss.clamp(0.0, 1.0) * 1e6) as u32, Ordering::Relaxed);
    }

    /// The impairment now in force.
    pub fn impairment(&self) -> Impairment {
        Impairment {
            delay: Duration::from_millis(self.delay_ms.load(Ordering::Relaxed).into()),
            jitter: Duration::from_millis(self.jitter_ms.load(Ordering::Relaxed).into()),
            loss: f64::from(self.loss_ppm.load(Ordering::Relaxed)) / 1e6,
        }
    }

    /// What becomes of a datagram sent now: `None` when lost (counted), else how long to hold
    /// it (`delay + U(0, jitter)`; datagrams may overtake each other, as on a real network).
    pub fn datagram_delay(&self) -> Option<Duration> {
        let i = self.impairment();
        if i.loss > 0.0 && rand::random::<f64>() < i.loss {
            self.lost_datagrams.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(i.delay + i.jitter.mul_f64(rand::random::<f64>()))
    }

    /// The counters as the lab page reads them.
    pub fn snapshot(&self) -> serde_json::Value {
        let i = self.impairment();
        serde_json::json!({
            "rx": self.rx.load(Ordering::Relaxed),
            "tx": self.tx.load(Ordering::Relaxed),
            "requests": self.requests.load(Ordering::Relaxed),
            "connections": self.connections.load(Ordering::Relaxed),
            "lost_segments": self.lost_segments.load(Ordering::Relaxed),
            "lost_datagrams": self.lost_datagrams.load(Ordering::Relaxed),
            "impairment": {
                "delay_ms": i.delay.as_millis() as u64,
                "jitter_ms": i.jitter.as_millis() as u64,
                "loss": i.loss,
            },
        })
    }
}
