//! One allocation's state: lifetime, permissions, channels and bandwidth buckets.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{AuthOk, ClientKey};

/// Permission lifetime (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Channel binding lifetime (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// Default allocation lifetime (RFC 8656 §7.2).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);

/// A token bucket of bytes per second with a one-second burst; rate 0 means unlimited.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: u64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: u64, now: Instant) -> Self {
        Self { rate, tokens: rate as f64, last: now }
    }

    /// Takes `n` bytes if available.
    pub(crate) fn take(&mut self, n: usize, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        let cap = self.rate as f64;
        self.tokens = (self.tokens + elapsed * cap).min(cap);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// A channel binding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Channel {
    pub(crate) peer: SocketAddr,
    pub(crate) expires: Instant,
}

/// An Allocate request waiting for its relay socket.
#[derive(Debug)]
pub(crate) struct PendingAllocate {
    pub(crate) auth: AuthOk,
    /// The port reserved beside this one (EVEN-PORT with the R bit), if any.
    pub(crate) reservation: Option<super::RelayId>,
}

/// One allocation.
#[derive(Debug)]
pub(crate) struct Allocation {
    pub(crate) client: ClientKey,
    pub(crate) username: String,
    pub(crate) quota_user: String,
    /// Advertised relayed address once the relay socket is bound.
    pub(crate) relayed: Option<SocketAddr>,
    pub(crate) ipv4: bool,
    pub(crate) expires: Instant,
    pub(crate) alloc_tid: [u8; 12],
    /// The success response, resent on a retransmitted Allocate.
    pub(crate) alloc_response: Option<Vec<u8>>,
    pub(crate) pending: Option<PendingAllocate>,
    pub(crate) permissions: HashMap<IpAddr, Instant>,
    pub(crate) channels: HashMap<u16, Channel>,
    pub(crate) channel_by_peer: HashMap<SocketAddr, u16>,
    /// Client → peer bandwidth.
    pub(crate) up: TokenBucket,
    /// Peer → client bandwidth.
    pub(crate) down: TokenBucket,
}

impl Allocation {
    pub(crate) fn is_active(&self) -> bool {
        self.relayed.is_some()
    }

    pub(crate) fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|&exp| exp > now)
    }

    /// Live permissions, counting `extra` not yet installed ones.
    pub(crate) fn permission_count(&self, now: Instant) -> usize {
        self.permissions.values().filter(|&&exp| exp > now).count()
    }

    pub(crate) fn channel(&self, number: u16, now: Instant) -> Option<Channel> {
        self.channels.get(&number).copied().filter(|c| c.expires > now)
    }

    pub(crate) fn channel_for_peer(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let number = *self.channel_by_peer.get(&peer)?;
        self.channel(number, now).map(|_| number)
    }

    /// Drops expired permissions and channels.
    pub(crate) fn sweep(&mut self, now: Instant) {
        self.permissions.retain(|_, exp| *exp > now);
        self.channels.retain(|_, c| c.expires > now);
        let channels = &self.channels;
        self.channel_by_peer.retain(|_, n| channels.contains_key(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        assert!(b.take(600, t0));
        assert!(!b.take(600, t0));
        assert!(b.take(600, t0 + Duration::from_millis(300)));
        assert!(!b.take(200, t0 + Duration::from_millis(300)));
        // Burst is capped at one second's worth.
        assert!(!b.take(1001, t0 + Duration::from_secs(100)));
        let mut unlimited = TokenBucket::new(0, t0);
        assert!(unlimited.take(usize::MAX, t0));
    }
}
