//! [`TurnConfig`]: every option of the TURN server, its default, and its validation.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::error::ConfigError;
use crate::peer_filter::PeerFilter;

/// Limits that keep one user or allocation from costing others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Allocations one user may hold at once (486 beyond). Default 16.
    /// For time-limited credentials the user is the part after `EXPIRY:`.
    pub max_allocations_per_user: usize,
    /// Allocations one client IP address may hold at once, whatever its users (486 beyond), so
    /// one host cannot take the server's relays with many credentials. 0 = unlimited.
    /// Default 64.
    pub max_allocations_per_ip: usize,
    /// Allocations the server holds at once (508 beyond). Default 4096.
    pub max_allocations: usize,
    /// Relayed bytes per second per allocation, each direction, token bucket with a burst of
    /// one second; excess packets are dropped. 0 = unlimited. Default 5,000,000 (40 Mbit/s).
    pub bandwidth_bytes_per_sec: u64,
    /// Peer IP permissions per allocation (508 beyond). Default 64.
    pub max_permissions_per_allocation: usize,
    /// Channels per allocation (508 beyond). Default 64.
    pub max_channels_per_allocation: usize,
    /// TCP client connections at once; further connections are closed. Default 1024.
    pub max_tcp_connections: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            max_allocations_per_user: 16,
            max_allocations_per_ip: 64,
            max_allocations: 4096,
            bandwidth_bytes_per_sec: 5_000_000,
            max_permissions_per_allocation: 64,
            max_channels_per_allocation: 64,
            max_tcp_connections: 1024,
        }
    }
}

/// TURN over TLS (RFC 8656 §3.1, usually port 5349): the same framing as TCP inside TLS.
#[derive(Clone)]
pub struct TlsListener {
    /// Address of the TLS listener. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The server's TLS configuration (certificate and key).
    pub config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
}

impl TlsListener {
    /// A TLS listener on `listen` serving the PEM certificate chain and private key given.
    pub fn from_pem(listen: SocketAddr, cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, ConfigError> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let tls = |e: &dyn std::fmt::Display| ConfigError::Tls(e.to_string());
        let certs =
            CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>().map_err(|e| tls(&e))?;
        if certs.is_empty() {
            return Err(ConfigError::Tls("no certificate in the PEM data".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| tls(&e))?;
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls(&e))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| tls(&e))?;
        Ok(Self { listen, config: std::sync::Arc::new(config) })
    }
}

/// Configuration of the STUN/TURN server. Start from [`TurnConfig::default`].
#[derive(Clone)]
pub struct TurnConfig {
    /// Address of the UDP (and TCP) listener. Port 0 picks a free port, the same for UDP and
    /// TCP. Default `127.0.0.1:3478`.
    pub listen: SocketAddr,
    /// Also listen on TCP (RFC 8656 §3.1 framing). Default true.
    pub tcp: bool,
    /// Also listen for TURN over TLS. Default none.
    pub tls: Option<TlsListener>,
    /// REALM of the long-term credentials. Default `"switchboard"`.
    pub realm: String,
    /// Address advertised in XOR-RELAYED-ADDRESS instead of the relay socket's own address
    /// (for servers behind 1:1 NAT). Default none.
    pub external_ip: Option<IpAddr>,
    /// Address the relay sockets bind to. Default: the listen address's IP.
    pub relay_ip: Option<IpAddr>,
    /// Ports the relay sockets bind to. Default 49152..=65535.
    pub relay_port_range: RangeInclusive<u16>,
    /// Long-term credentials: user name → password. Default empty.
    pub static_users: HashMap<String, String>,
    /// Shared secret for time-limited credentials (coturn's `use-auth-secret`). Default none.
    pub auth_secret: Option<String>,
    /// Let allocations reach loopback peers (coturn's `allow-loopback-peers`). Default false.
    pub allow_loopback_peers: bool,
    /// CIDR rules of peers always allowed, checked first. Default empty.
    pub allowed_peers: Vec<String>,
    /// CIDR rules of peers denied in addition to the default deny list. Default empty.
    pub denied_peers: Vec<String>,
    /// Resource limits.
    pub quotas: Quotas,
    /// How long a nonce stays valid before 438 Stale Nonce. Default 600 s.
    pub nonce_lifetime: Duration,
    /// Longest allocation lifetime granted per Allocate/Refresh. Default 3600 s.
    pub max_allocation_lifetime: Duration,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3478),
            tcp: true,
            tls: None,
            realm: "switchboard".to_owned(),
            external_ip: None,
            relay_ip: None,
            relay_port_range: 49152..=65535,
            static_users: HashMap::new(),
            auth_secret: None,
            allow_loopback_peers: false,
            allowed_peers: Vec::new(),
            denied_peers: Vec::new(),
            quotas: Quotas::default(),
            nonce_lifetime: Duration::from_secs(600),
            max_allocation_lifetime: Duration::from_secs(3600),
        }
    }
}

impl fmt::Debug for TurnConfig {
    // Credentials are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&String> = self.static_users.keys().collect();
        f.debug_struct("TurnConfig")
            .field("listen", &self.listen)
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.as_ref().map(|t| t.listen))
            .field("realm", &self.realm)
            .field("external_ip", &self.external_ip)
            .field("relay_ip", &self.relay_ip)
            .field("relay_port_range", &self.relay_port_range)
            .field("static_users", &users)
            .field("auth_secret", &self.auth_secret.as_ref().map(|_| "<redacted>"))
            .field("allow_loopback_peers", &self.allow_loopback_peers)
            .field("allowed_peers", &self.allowed_peers)
            .field("denied_peers", &self.denied_peers)
            .field("quotas", &self.quotas)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("max_allocation_lifetime", &self.max_allocation_lifetime)
            .finish()
    }
}

impl TurnConfig {
    /// The IP relay sockets bind to.
    pub fn effective_relay_ip(&self) -> IpAddr {
        self.relay_ip.unwrap_or(self.listen.ip())
    }

    /// Whether any credentials are configured; without them only STUN Binding is served.
    pub fn has_credentials(&self) -> bool {
        !self.static_users.is_empty() || self.auth_secret.is_some()
    }

    /// Checks every field; the server refuses to start on error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.realm.is_empty() || self.realm.len() > 127 || self.realm.chars().any(char::is_control) {
            return Err(ConfigError::Realm);
        }
        if self.relay_port_range.is_empty() || *self.relay_port_range.start() == 0 {
            return Err(ConfigError::PortRange);
        }
        let relay = self.effective_relay_ip();
        if relay.is_unspecified() && self.external_ip.is_none() {
            return Err(ConfigError::RelayAddress(relay));
        }
        if let Some(ext) = self.external_ip
            && ext.is_ipv4() != relay.is_ipv4()
        {
            return Err(ConfigError::ExternalFamily);
        }
        self.peer_filter()?;
        if self.static_users.iter().any(|(u, p)| u.is_empty() || p.is_empty()) {
            return Err(ConfigError::StaticUser);
        }
        if self.auth_secret.as_deref() == Some("") {
            return Err(ConfigError::Secret);
        }
        let q = &self.quotas;
        for (name, v) in [
            ("quotas.max_allocations_per_user", q.max_allocations_per_user),
            ("quotas.max_allocations", q.max_allocations),
            ("quotas.max_permissions_per_allocation", q.max_permissions_per_allocation),
            ("quotas.max_channels_per_allocation", q.max_channels_per_allocation),
            ("quotas.max_tcp_connections", q.max_tcp_connections),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.nonce_lifetime.is_zero() {
            return Err(ConfigError::Zero("nonce_lifetime"));
        }
        if self.max_allocation_lifetime.is_zero() {
            return Err(ConfigError::Zero("max_allocation_lifetime"));
        }
        Ok(())
    }

    /// The compiled peer policy.
    pub fn peer_filter(&self) -> Result<PeerFilter, ConfigError> {
        Ok(PeerFilter::new(self.allow_loopback_peers, &self.allowed_peers, &self.denied_peers)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_debug_hides_secrets() {
        let mut c = TurnConfig::default();
        c.validate().unwrap();
        c.static_users.insert("alice".into(), "hunter2".into());
        c.auth_secret = Some("topsecret".into());
        let dbg = format!("{c:?}");
        assert!(dbg.contains("alice"));
        assert!(!dbg.contains("hunter2"));
        assert!(!dbg.contains("topsecret"));
    }

    #[test]
    fn invalid_configs() {
        type Mutation = Box<dyn Fn(&mut TurnConfig)>;
        let bad: Vec<Mutation> = vec![
            Box::new(|c| c.realm.clear()),
            Box::new(|c| c.relay_port_range = 0..=10),
            #[allow(clippy::reversed_empty_ranges)]
            Box::new(|c| c.relay_port_range = 10..=9),
            Box::new(|c| c.listen = "0.0.0.0:3478".parse().unwrap()),
            Box::new(|c| c.external_ip = Some("::1".parse().unwrap())),
            Box::new(|c| c.denied_peers = vec!["10.0.0.0/99".into()]),
            Box::new(|c| c.allowed_peers = vec!["nonsense".into()]),
            Box::new(|c| {
                c.static_users.insert("u".into(), String::new());
            }),
            Box::new(|c| c.auth_secret = Some(String::new())),
            Box::new(|c| c.quotas.max_allocations = 0),
        ];
        for (i, f) in bad.iter().enumerate() {
            let mut c = TurnConfig::default();
            f(&mut c);
            assert!(c.validate().is_err(), "case {i} accepted");
        }
        let mut c = TurnConfig {
            listen: "0.0.0.0:3478".parse().unwrap(),
            external_ip: Some("203.0.113.1".parse().unwrap()),
            ..Default::default()
        };
        c.validate().unwrap();
        c.relay_ip = Some("192.0.2.1".parse().unwrap());
        c.validate().unwrap();
    }
}
