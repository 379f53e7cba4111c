//! Admission of real-time connections: the node's total (`max_connections`), per client IP
//! (`max_connections_per_ip`) and per user (`max_connections_per_user`). Every transport takes a
//! [`Ticket`] before it holds anything for a client (WebSocket, SSE, streaming, a held long poll,
//! a SockJS session, a WebTransport session, a WebRTC data channel peer) and keeps it for the
//! connection's life; dropping it gives every place back. The per-IP count is here, not at
//! accept: HTTP/2 carries many connections on one socket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections`: the node is full.
    Total,
    /// `max_connections_per_ip`.
    PerIp,
    /// `max_connections_per_user`.
    PerUser,
}

impl Refused {
    /// The label of `switchboard_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::PerIp => "per_ip",
            Refused::PerUser => "per_user",
        }
    }

    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Refused::Total => "connection limit: the server is full",
            Refused::PerIp => "connection limit: too many connections from this address",
            Refused::PerUser => "connection limit: too many connections of this user",
        }
    }
}

/// See the module docs.
pub struct Admission {
    total: Arc<Semaphore>,
    per_ip: usize,
    per_user: usize,
    ips: Mutex<HashMap<IpAddr, usize>>,
    users: Mutex<HashMap<String, usize>>,
    metrics: Arc<Metrics>,
}

impl Admission {
    /// Limits of `max` in all, `per_ip` per address and `per_user` per user (0: no limit).
    pub fn new(max: usize, per_ip: usize, per_user: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            total: Arc::new(Semaphore::new(max)),
            per_ip,
            per_user,
            ips: Mutex::default(),
            users: Mutex::default(),
            metrics,
        }
    }

    /// A place for a connection from `ip` (`None`: unknown, as in-process tests call the router
    /// without a socket; only the total applies then).
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Ticket, Refused> {
        let permit = self.total.clone().try_acquire_owned().map_err(|_| self.refuse(Refused::Total))?;
        // IPv4-mapped IPv6 addresses are the IPv4 client they stand for.
        let ip = ip.map(|ip| ip.to_canonical());
        if let Some(ip) = ip {
            let mut ips = self.ips.lock();
            let n = ips.entry(ip).or_default();
            if self.per_ip > 0 && *n >= self.per_ip {
                if *n == 0 {
                    ips.remove(&ip);
                }
                return Err(self.refuse(Refused::PerIp));
            }
            *n += 1;
        }
        Ok(Ticket { admission: self.clone(), _permit: permit, ip, user: None })
    }

    fn refuse(&self, why: Refused) -> Refused {
        let m = &self.metrics;
        match why {
            Refused::Total => m.refused_total.add(1),
            Refused::PerIp => m.refused_per_ip.add(1),
            Refused::PerUser => m.refused_per_user.add(1),
        }
        why
    }

    /// Waits until `n` places are free (shutdown: every connection has ended).
    pub async fn acquire_many(
        &self,
        n: u32,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, tokio::sync::AcquireError> {
        self.total.acquire_many(n).await
    }

    /// Connections held from `ip` now.
    pub fn from_ip(&self, ip: IpAddr) -> usize {
        self.ips.lock().get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    fn release<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, usize>>, key: &K) {
        let mut map = map.lock();
        if let Some(n) = map.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                map.remove(key);
            }
        }
    }
}

/// A connection's place; see the module docs.
pub struct Ticket {
    admission: Arc<Admission>,
    _permit: OwnedSemaphorePermit,
    ip: Option<IpAddr>,
    user: Option<String>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("ip", &self.ip).field("user", &self.user).finish()
    }
}

impl Ticket {
    /// The client's IP address, when the transport knew it.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }

    /// Counts the connection for `user` once it is known (an anonymous user, empty, is not
    /// counted: the per-IP limit covers it). A ticket counts for one user, the first it is given.
    pub fn set_user(&mut self, user: &str) -> Result<(), Refused> {
        if user.is_empty() || self.user.is_some() {
            return Ok(());
        }
        let mut users = self.admission.users.lock();
        let n = users.entry(user.to_owned()).or_default();
        if self.admission.per_user > 0 && *n >= self.admission.per_user {
            if *n == 0 {
                users.remove(user);
            }
            drop(users);
            return Err(self.admission.refuse(Refused::PerUser));
        }
        *n += 1;
        self.user = Some(user.to_owned());
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(ip) = &self.ip {
            Admission::release(&self.admission.ips, ip);
        }
        if let Some(user) = &self.user {
            Admission::release(&self.admission.users, user);
        }
    }
}

/// Requests per client IP address per minute (a fixed window per address): `None` when one
/// more is over `per_minute` (0: no limit). Addresses whose window has passed are forgotten as
/// others come, so the map holds only the last minute's addresses.
pub struct PerIpRate {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (tokio::time::Instant, u32)>>,
}

impl PerIpRate {
    /// A limit of `per_minute` requests per address.
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute, windows: Mutex::default() }
    }

    /// Counts one request from `ip`; `false` when it is over the limit.
    pub fn allow(&self, ip: Option<IpAddr>) -> bool {
        let (Some(ip), true) = (ip, self.per_minute > 0) else { return true };
        let now = tokio::time::Instant::now();
        let minute = std::time::Duration::from_secs(60);
        let mut windows = self.windows.lock();
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| *start + minute > now);
        }
        let (start, n) = windows.entry(ip.to_canonical()).or_insert((now, 0));
        if *start + minute <= now {
            (*start, *n) = (now, 0);
        }
        *n += 1;
        *n <= self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_total_per_ip_and_per_user_and_gives_places_back() {
        let metrics = Arc::new(Metrics::default());
        let a = Arc::new(Admission::new(4, 2, 1, metrics.clone()));
        let (ip1, ip2): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut t1 = a.admit(Some(ip1)).unwrap();
        let t2 = a.admit(Some(ip1)).unwrap();
        assert_eq!(a.admit(Some(ip1)).unwrap_err(), Refused::PerIp);
        // The same client over IPv4-mapped IPv6 is the same address.
        assert_eq!(a.admit(Some("::ffff:10.0.0.1".parse().unwrap())).unwrap_err(), Refused::PerIp);
        let mut t3 = a.admit(Some(ip2)).unwrap();
        t1.set_user("alice").unwrap();
        assert_eq!(t3.set_user("alice").unwrap_err(), Refused::PerUser);
        t3.set_user("").unwrap();
        let t4 = a.admit(None).unwrap();
        assert_eq!(a.admit(Some(ip2)).unwrap_err(), Refused::Total);
        drop((t1, t2, t4));
        assert_eq!(a.from_ip(ip1), 0);
        let mut t5 = a.admit(Some(ip1)).unwrap();
        t5.set_user("alice").unwrap();
        let m = &metrics;
        assert_eq!((m.refused_total.get(), m.refused_per_ip.get(), m.refused_per_user.get()), (1, 2, 1));
        drop((t3, t5));
        assert!(a.ips.lock().is_empty() && a.users.lock().is_empty(), "nothing kept for gone clients");
    }

    #[tokio::test(start_paused = true)]
    async fn per_ip_rate_resets_each_minute() {
        let rate = PerIpRate::new(2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(rate.allow(Some(a)) && rate.allow(Some(a)));
        assert!(!rate.allow(Some(a)));
        assert!(rate.allow(Some(b)), "other addresses are not affected");
        assert!(rate.allow(None), "unknown addresses are not limited");
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        assert!(rate.allow(Some(a)));
    }

    #[test]
    fn zero_means_no_limit() {
        let a = Arc::new(Admission::new(100, 0, 0, Arc::new(Metrics::default())));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let tickets: Vec<_> = (0..50)
            .map(|_| {
                let mut t = a.admit(Some(ip)).unwrap();
                t.set_user("bench").unwrap();
                t
            })
            .collect();
        assert_eq!(a.from_ip(ip), 50);
        drop(tickets);
    }
}
