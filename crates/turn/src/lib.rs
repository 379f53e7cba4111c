//! Switchboard's built-in STUN/TURN server.
//!
//! STUN Binding (RFC 8489, with RFC 5389/3489 clients served too) and TURN over UDP and TCP
//! (RFC 8656: Allocate, Refresh, CreatePermission, ChannelBind, Send/Data indications,
//! ChannelData), with long-term credentials from static users or from a shared secret
//! (coturn's `use-auth-secret`), a peer address policy that refuses private, loopback,
//! link-local and metadata addresses by default, and per-user, per-allocation and global
//! quotas. See `docs/turn.md` for the configuration and the safe defaults.
//!
//! # Using it
//!
//! ```no_run
//! # async fn run() -> Result<(), switchboard_turn::TurnError> {
//! let mut config = switchboard_turn::TurnConfig::default();
//! config.auth_secret = Some("shared secret".into());
//! let server = switchboard_turn::serve(config, std::future::pending()).await?;
//! println!("TURN on {}", server.udp_addr());
//! server.wait().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`codec`]: the wire format — check a frame is complete ([`codec::frame_len`]), parse it
//!   ([`codec::decode`]), verify integrity and fingerprint, build messages
//!   ([`codec::MessageBuilder`]). Own code; the crate docs of `codec` say why.
//! - [`core`]: the sans-IO server, [`TurnServer`]: fed [`Input`] with the time, returns
//!   [`Output`] from `poll_output()`. One file per request kind.
//! - `auth`: long-term credential lookup, [`make_credential`], stateless nonces.
//! - [`peer_filter`]: CIDR rules, the default deny list, IPv4-mapped address handling.
//! - [`config`]: [`TurnConfig`] and [`Quotas`] with defaults and validation.
//! - [`metrics`]: [`Metrics`] counters and their Prometheus rendering.
//! - `crypto`: HMAC/SHA through aws-lc-rs; MD5 and CRC-32 for the two RFC checksums.
//! - `driver`: the thin tokio layer — UDP listener, TCP listener with RFC 8656 framing,
//!   UDP relay sockets — behind [`serve`] and [`ServerHandle`].
//! - `error`: [`ConfigError`] and [`TurnError`].

mod auth;
pub mod codec;
pub mod config;
pub mod core;
mod crypto;
mod driver;
mod error;
pub mod metrics;
pub mod peer_filter;

pub use auth::make_credential;
pub use config::{Quotas, TlsListener, TurnConfig};
pub use core::{Input, Output, RelayId, Transport, TurnServer};
pub use driver::{ServerHandle, serve};
pub use error::{ConfigError, TurnError};
pub use metrics::Metrics;
