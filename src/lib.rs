//! Switchboard: one server for every real-time technique the web has, behind one channel model.
//!
//! # Layout
//!
//! Data flows `client → transport → session → hub → broker` (see `docs/architecture.md`).
//!
//! - [`config`]: the configuration (file, environment, flags) and per-namespace channel options.
//! - [`model`]: publications, presence events and deliveries, with their shared wire encodings.
//! - [`broker`]: the broker contract and the in-memory broker; its conformance suite.
//! - [`hub`]: this node's subscriptions, fan-out and the per-connection bounded outbox.
//! - [`session`]: the sans-IO protocol state machine every bidirectional and streaming transport
//!   drives; [`session::recovery`] decides resumes.
//! - [`policy`]: tokens, API keys and permissions.
//! - [`rooms`]: room and signaling-inbox channel names (WebRTC signaling).
//! - [`rtc`]: WebRTC on str0m: the SFU, the data channel transport, WHIP and WHEP.
//! - [`transport`]: one adapter per technique (`/ws`, `/sse`, `/stream`, `/poll`), framing only.
//! - [`api`]: the server API (`/api/...`), health and metrics endpoints.
//! - [`server`]: shared state, the router, the listener, admission and graceful shutdown.
//! - [`demo`]: the demo app, the SDK files and the demo's ticker publisher.
//! - [`metrics`]: Prometheus counters.
//! - [`turn`]: the built-in STUN/TURN server's wiring and `/api/ice-servers` (the server itself is
//!   the crate `switchboard-turn`).

pub mod api;
pub mod broker;
pub mod config;
pub mod connection;
pub mod demo;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod rooms;
pub mod rtc;
pub mod rules;
pub mod server;
pub mod session;
pub mod state;
pub mod transport;
pub mod turn;

pub use config::Config;
pub use server::{Server, Services, app};
pub use state::AppState;
