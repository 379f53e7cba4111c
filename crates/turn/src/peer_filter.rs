//! Which peer addresses an allocation may talk to.
//!
//! Addresses are first made canonical (`::ffff:a.b.c.d` becomes `a.b.c.d`), then checked
//! against, in order: the configured allow rules, the configured deny rules, loopback (allowed
//! only with `allow_loopback_peers`), and the default deny list. The first rule that matches
//! decides; an address no rule matches is allowed.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `fc00::/7`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A CIDR rule string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR rule {0:?} (expected ADDRESS or ADDRESS/PREFIX)")]
pub struct CidrError(pub String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| err())?
            }
            Some(_) => return Err(err()),
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        let canonical = canonical_ip(addr);
        if canonical == addr {
            return Ok(Cidr { addr, prefix });
        }
        // An IPv4-mapped rule is an IPv4 rule; its prefix must cover the ::ffff:0:0/96 part.
        match prefix.checked_sub(96) {
            Some(prefix) => Ok(Cidr { addr: canonical, prefix }),
            None => Err(err()),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` (already canonical) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`; every other address unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// [`canonical_ip`] for a socket address.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

/// The networks refused by default (RFC 6890 special-purpose ranges that a public relay must
/// not reach: "this network", private, shared, loopback, link-local (cloud metadata),
/// multicast, reserved, unique-local).
pub const DEFAULT_DENIED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
    // Local-use NAT64 (RFC 8215): whatever a site's translator reaches.
    "64:ff9b:1::/48",
];

/// The compiled peer policy.
#[derive(Debug, Clone)]
pub struct PeerFilter {
    allowed: Vec<Cidr>,
    denied: Vec<Cidr>,
    allow_loopback: bool,
    default_denied: Vec<Cidr>,
}

impl PeerFilter {
    /// Builds the policy from configuration rule strings.
    pub fn new(allow_loopback: bool, allowed: &[String], denied: &[String]) -> Result<Self, CidrError> {
        let parse =
            |rules: &[String]| -> Result<Vec<Cidr>, CidrError> { rules.iter().map(|r| r.parse()).collect() };
        Ok(Self {
            allowed: parse(allowed)?,
            denied: parse(denied)?,
            allow_loopback,
            default_denied: DEFAULT_DENIED.iter().map(|r| r.parse().expect("built-in rule parses")).collect(),
        })
    }

    /// Whether relaying to/from `ip` is allowed. `ip` is made canonical first; an address of the
    /// well-known NAT64 prefix (`64:ff9b::/96`, RFC 6052) must also be allowed as the IPv4
    /// address it stands for, so that a NAT64 gateway is no way around the deny list.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        if let IpAddr::V6(v6) = ip
            && let [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] = v6.segments()
        {
            let v4 = std::net::Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
            return self.allows(ip) && self.allows(IpAddr::V4(v4));
        }
        self.allows(ip)
    }

    fn allows(&self, ip: IpAddr) -> bool {
        if self.allowed.iter().any(|c| c.contains(ip)) {
            return true;
        }
        if self.denied.iter().any(|c| c.contains(ip)) {
            return false;
        }
        if ip.is_loopback() {
            return self.allow_loopback;
        }
        !self.default_denied.iter().any(|c| c.contains(ip))
    }
}

impl Default for PeerFilter {
    fn default() -> Self {
        Self::new(false, &[], &[]).expect("empty rules parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_denies_special_ranges() {
        let f = PeerFilter::default();
        for bad in [
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "10.0.0.1",
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "100.64.1.1",
            "172.31.255.255",
            "192.168.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::c0a8:101",
            "64:ff9b:1::8.8.8.8",
        ] {
            assert!(!f.is_allowed(ip(bad)), "{bad} allowed");
        }
        assert!(f.is_allowed(ip("64:ff9b::808:808")), "a public IPv4 address through NAT64");
        for good in ["8.8.8.8", "172.32.0.1", "203.0.113.9", "2001:db8::1", "::ffff:1.1.1.1"] {
            assert!(f.is_allowed(ip(good)), "{good} denied");
        }
    }

    #[test]
    fn loopback_flag_and_rules() {
        let f = PeerFilter::new(true, &[], &[]).unwrap();
        assert!(f.is_allowed(ip("127.0.0.1")));
        assert!(f.is_allowed(ip("::ffff:127.0.0.1")));
        assert!(f.is_allowed(ip("::1")));
        assert!(!f.is_allowed(ip("10.0.0.1")));

        let f =
            PeerFilter::new(false, &["10.1.0.0/16".into()], &["8.8.8.0/24".into(), "::ffff:1.2.3.4".into()])
                .unwrap();
        assert!(f.is_allowed(ip("10.1.2.3")));
        assert!(!f.is_allowed(ip("10.2.0.1")));
        assert!(!f.is_allowed(ip("8.8.8.8")));
        assert!(!f.is_allowed(ip("1.2.3.4")));
        assert!(f.is_allowed(ip("1.2.3.5")));
    }

    #[test]
    fn malformed_rules_are_errors() {
        for bad in ["", "10.0.0.0/33", "10.0.0/8", "fe80::/129", "1.2.3.4/", "1.2.3.4/-1", "x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
            assert!(PeerFilter::new(false, &[bad.to_owned()], &[]).is_err());
        }
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().to_string(), "0.0.0.0/0");
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("2001::1")));
    }
}
