//! Errors of configuration and of the drivers. Errors on the wire are STUN error codes
//! (see [`crate::codec::attr::code`]) and never surface here.

use std::io;

/// A configuration value that cannot work. Each variant names the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `realm` is empty, too long (over 127 bytes) or has control characters.
    #[error("turn.realm must be 1 to 127 printable characters")]
    Realm,
    /// `relay_port_range` is empty or starts at port 0.
    #[error("turn.relay_port_range must be a non-empty range of non-zero ports")]
    PortRange,
    /// The relay address would be unusable as an advertised address.
    #[error("turn.relay_ip resolves to an unspecified address ({0}); set turn.relay_ip or turn.external_ip")]
    RelayAddress(std::net::IpAddr),
    /// `external_ip` and the relay address are of different families.
    #[error("turn.external_ip and turn.relay_ip must be of the same address family")]
    ExternalFamily,
    /// A peer rule in `allowed_peers` / `denied_peers` does not parse.
    #[error("turn peer rule: {0}")]
    PeerRule(#[from] crate::peer_filter::CidrError),
    /// A static user has an empty name or password.
    #[error("turn.static_users: user names and passwords must not be empty")]
    StaticUser,
    /// `auth_secret` is set but empty.
    #[error("turn.auth_secret must not be empty when set")]
    Secret,
    /// A quota or duration is zero where it must not be.
    #[error("turn.{0} must be greater than zero")]
    Zero(&'static str),
    /// The TLS certificate or key cannot be used.
    #[error("turn TLS: {0}")]
    Tls(String),
}

/// Error starting or running the TURN drivers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TurnError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not be bound or used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl TurnError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io { what: what.into(), source }
    }
}
