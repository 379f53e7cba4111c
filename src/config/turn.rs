//! The built-in TURN server's configuration, converted from ours.

use std::net::SocketAddr;

use super::Config;

impl Config {
    /// The built-in TURN server's configuration (its own crate's), from ours.
    pub fn turn_server(&self) -> Result<switchboard_turn::TurnConfig, String> {
        let config = self;
        let listen: SocketAddr = if config.turn_listen.is_empty() {
            let port = if config.listen.port() == 0 { 0 } else { 3478 };
            SocketAddr::new(config.listen.ip(), port)
        } else {
            config
                .turn_listen
                .parse()
                .map_err(|_| format!("turn_listen {:?} is not ADDR:PORT", config.turn_listen))?
        };
        let external_ip = match config.turn_external_ip.as_str() {
            "" => None,
            ip => Some(
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("turn_external_ip {ip:?} is not an IP"))?,
            ),
        };
        if listen.ip().is_unspecified() && external_ip.is_none() {
            return Err(format!(
                "listening on {} needs turn_external_ip (the address peers reach the relay at; \
                 --turn-external-ip), or turn = false (--no-turn)",
                listen.ip()
            ));
        }
        let (low, high) = config
            .turn_relay_ports
            .split_once('-')
            .and_then(|(l, h)| Some((l.trim().parse::<u16>().ok()?, h.trim().parse::<u16>().ok()?)))
            .filter(|(l, h)| l <= h)
            .ok_or_else(|| format!("turn_relay_ports {:?} is not LOW-HIGH", config.turn_relay_ports))?;
        let tls = if config.tls_cert.is_empty() {
            None
        } else {
            let tls_listen: SocketAddr = if config.turn_tls_listen.is_empty() {
                SocketAddr::new(listen.ip(), if config.listen.port() == 0 { 0 } else { 5349 })
            } else {
                config
                    .turn_tls_listen
                    .parse()
                    .map_err(|_| format!("turn_tls_listen {:?} is not ADDR:PORT", config.turn_tls_listen))?
            };
            let read = |path: &str| std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"));
            let (cert, key) = (read(&config.tls_cert)?, read(&config.tls_key)?);
            Some(
                switchboard_turn::TlsListener::from_pem(tls_listen, &cert, &key)
                    .map_err(|e| e.to_string())?,
            )
        };
        let turn = switchboard_turn::TurnConfig {
            listen,
            tls,
            external_ip,
            relay_port_range: low..=high,
            static_users: config.turn_users.clone().into_iter().collect(),
            auth_secret: Some(config.turn_secret.clone()).filter(|s| !s.is_empty()),
            allow_loopback_peers: config.turn_allow_loopback_peers,
            allowed_peers: config.turn_allowed_peers.clone(),
            denied_peers: config.turn_denied_peers.clone(),
            quotas: switchboard_turn::Quotas {
                max_allocations_per_user: config.turn_max_allocations_per_user,
                max_allocations_per_ip: config.turn_max_allocations_per_ip,
                bandwidth_bytes_per_sec: config.turn_bandwidth_bytes_per_sec,
                ..Default::default()
            },
            ..switchboard_turn::TurnConfig::default()
        };
        turn.validate().map_err(|e| e.to_string())?;
        Ok(turn)
    }
}
