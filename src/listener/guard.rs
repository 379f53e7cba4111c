//! Per-IP accounting at accept: how many sockets one address holds open and how fast it opens
//! new ones. A refused socket is closed before any byte (or TLS handshake) is spent on it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Why a socket was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The IP holds `http_max_sockets_per_ip` sockets already.
    TooManySockets,
    /// The IP opens sockets faster than `http_accept_rate_per_ip`.
    TooFast,
}

impl Refusal {
    /// The metric label and the log's reason.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TooManySockets => "sockets_per_ip",
            Refusal::TooFast => "accept_rate_per_ip",
        }
    }
}

/// One warning line per IP at most this often, so a flood cannot flood the logs too.
const WARN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Entry {
    open: usize,
    tokens: f64,
    refilled: Instant,
    warned: Option<Instant>,
}

/// The per-IP table. Entries of addresses with no socket open are swept once their bucket is
/// full again, so the table holds only addresses seen in the last second or so.
#[derive(Debug)]
pub struct IpGuard {
    max_sockets: usize,
    rate: f64,
    table: Mutex<HashMap<IpAddr, Entry>>,
}

/// A socket counted against its IP; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    guard: Arc<IpGuard>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut table = self.guard.table.lock();
        if let Some(e) = table.get_mut(&self.ip) {
            e.open = e.open.saturating_sub(1);
        }
    }
}

/// The address a socket is counted against: an IPv4 address (also when a dual-stack listener
/// sees it as `::ffff:a.b.c.d`), or an IPv6 /64, what one subscriber (or one attacker) gets.
pub fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

impl IpGuard {
    /// `max_sockets` and `rate` (per second) of 0 mean no limit.
    pub fn new(max_sockets: usize, rate: u32) -> Arc<Self> {
        Arc::new(Self { max_sockets, rate: f64::from(rate), table: Mutex::new(HashMap::new()) })
    }

    /// Counts a new socket from `ip`, or says why it is refused and whether to log it now
    /// (`true` at most once per [`WARN_EVERY`] per IP).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Slot, (Refusal, bool)> {
        let ip = key(ip);
        let mut table = self.table.lock();
        let burst = self.rate.max(1.0);
        let e = table.entry(ip).or_insert(Entry { open: 0, tokens: burst, refilled: now, warned: None });
        let refusal = if self.max_sockets > 0 && e.open >= self.max_sockets {
            Some(Refusal::TooManySockets)
        } else if self.rate > 0.0 {
            let elapsed = now.saturating_duration_since(e.refilled).as_secs_f64();
            e.tokens = (e.tokens + elapsed * self.rate).min(burst);
            e.refilled = now;
            if e.tokens >= 1.0 {
                e.tokens -= 1.0;
                None
            } else {
                Some(Refusal::TooFast)
            }
        } else {
            None
        };
        match refusal {
            None => {
                e.open += 1;
                Ok(Slot { guard: self.clone(), ip })
            }
            Some(why) => {
                let log = e.warned.is_none_or(|t| now.saturating_duration_since(t) >= WARN_EVERY);
                if log {
                    e.warned = Some(now);
                }
                Err((why, log))
            }
        }
    }

    /// Forgets addresses with nothing open whose bucket has refilled and whose last warning
    /// is old: what remembering them would change is nothing.
    pub fn sweep(&self, now: Instant) {
        let refill = Duration::from_secs(1) + Duration::from_millis(1);
        self.table.lock().retain(|_, e| {
            e.open > 0
                || now.saturating_duration_since(e.refilled) < refill
                || e.warned.is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY)
        });
    }

    /// Addresses remembered (for tests).
    pub fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn caps_open_sockets_and_frees_a_slot_on_drop() {
        let guard = IpGuard::new(2, 0);
        let now = Instant::now();
        let a = guard.admit(IP, now).unwrap();
        let _b = guard.admit(IP, now).unwrap();
        assert_eq!(guard.admit(IP, now).unwrap_err(), (Refusal::TooManySockets, true));
        assert_eq!(guard.admit(IP, now).unwrap_err(), (Refusal::TooManySockets, false), "logged once");
        let other = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
        assert!(guard.admit(other, now).is_ok(), "another IP has its own count");
        drop(a);
        assert!(guard.admit(IP, now).is_ok());
    }

    #[test]
    fn rate_refills_over_time() {
        let guard = IpGuard::new(0, 2);
        let now = Instant::now();
        let slots: Vec<_> = (0..2).map(|_| guard.admit(IP, now).unwrap()).collect();
        assert_eq!(guard.admit(IP, now).unwrap_err().0, Refusal::TooFast);
        assert!(guard.admit(IP, now + Duration::from_millis(500)).is_ok(), "one token in half a second");
        drop(slots);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let guard = IpGuard::new(1, 0);
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let _held = guard.admit(a, now).unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(guard.admit(same_64, now).unwrap_err().0, Refusal::TooManySockets);
        assert!(guard.admit("2001:db8:1:3::1".parse().unwrap(), now).is_ok(), "another /64");
        let _v4 = guard.admit("192.0.2.7".parse().unwrap(), now).unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(guard.admit(mapped, now).unwrap_err().0, Refusal::TooManySockets, "the same IPv4 host");
        assert!(guard.admit("::ffff:192.0.2.8".parse().unwrap(), now).is_ok(), "not all IPv4 in one /64");
    }

    #[test]
    fn sweep_forgets_idle_addresses() {
        let guard = IpGuard::new(10, 10);
        let now = Instant::now();
        drop(guard.admit(IP, now).unwrap());
        let held = guard.admit(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), now).unwrap();
        guard.sweep(now + Duration::from_secs(5));
        assert_eq!(guard.len(), 1, "only the address holding a socket stays");
        drop(held);
    }
}
