//! Switchboard: one server for every real-time technique the web has, behind one channel model.
//!
//! # Layout
//!
//! Data flows `client → transport → connection (session) → hub → broker`; the whole path, with
//! who calls whom, is drawn in `docs/architecture.md`.
//!
//! The bottom of the crate (depends on nothing below it but the protocol crate):
//! - [`config`]: the configuration (file, environment, flags) and per-namespace channel options.
//! - [`model`]: publications, presence events and deliveries, with their shared encodings
//!   (cached `Bytes` per wire format, from `switchboard_protocol::encode`).
//! - [`metrics`]: Prometheus counters.
//! - [`policy`]: who a caller is: tokens, session tokens, the API key.
//! - [`rooms`]: room and signaling-inbox channel names (WebRTC signaling).
//! - [`rules`]: the channel rules, in one place: who may read, publish and see presence, and
//!   whether a publication is valid. Every path that touches a channel asks here.
//! - [`app_proxy`]: the client of the application's backend (`app_proxy_url`), which `rpc`
//!   calls and STOMP SENDs to `/app/...` go to.
//! - [`broker`]: the broker contract (memory, Redis, NATS) and its conformance suite.
//! - [`hub`]: this node's subscriptions, fan-out and the per-connection bounded outbox.
//! - [`direct`]: the fan-out's writes straight into a waiting subscriber's socket.
//! - [`fanout`]: those writes by turns, and the task that flushes what a turn queued.
//! - [`wake`]: cheap wake-ups: an outbox's [`wake::Signal`], a write loop's [`wake::ReadGate`].
//! - [`admission`]: places for real-time connections, in all, per IP and per user.
//! - [`state`]: [`AppState`], what every part needs (configuration, rules, broker, hub, metrics,
//!   admission, shutdown, the application backend's client); no optional service.
//!
//! Connections:
//! - [`session`]: the sans-IO protocol state machine of every live connection;
//!   [`session::recovery`] decides resumes.
//! - [`connection`]: the driver that runs a session's operations against the hub and broker, and
//!   [`connection::pump`], the one write loop every transport runs over a narrow trait.
//! - [`transport`]: one adapter per technique (`/ws`, `/sse`, `/stream`, `/poll`, `/wt`), framing
//!   only.
//! - [`rtc`]: WebRTC on str0m: the SFU, the data channel transport, WHIP and WHEP.
//! - [`media`]: looking inside media off the engine task ([`media::tap`]): recording, mixing, composed video and filters.
//!
//! The edge:
//! - [`http`]: HTTP helpers shared by every endpoint (the JSON error, the API caller, the
//!   `Origin` check).
//! - [`api`]: the server API (`/api/...`), health and metrics endpoints.
//! - [`admin`]: the admin endpoints (connections with disconnect and unsubscribe, node stats,
//!   rooms, TURN), the stats each node publishes on `__admin:stats`, and the `/admin` page.
//! - [`turn`]: the built-in STUN/TURN server's wiring and `/api/ice-servers` (the server itself
//!   is the crate `switchboard-turn`).
//! - [`demo`]: the demo app, the SDK files and the demo's ticker publisher.
//! - [`listener`]: the sockets: our accept loop in front of hyper (HTTP/1.1, HTTP/2, TLS with
//!   certificate reload), per-IP socket caps, header/idle/body timeouts, the drain on shutdown.
//! - [`server`]: start-up (binding, broker, the optional [`Services`]), the router, shutdown.

pub mod admin;
pub mod admission;
pub mod api;
pub mod app_proxy;
pub mod broker;
pub mod channel_rates;
pub mod config;
pub mod connection;
pub mod demo;
pub mod direct;
pub mod fanout;
pub mod game;
pub mod http;
pub mod hub;
pub mod jwks;
pub mod lab;
pub mod listener;
pub mod media;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod rooms;
pub mod rtc;
pub mod rules;
pub mod server;
pub mod session;
pub mod state;
pub mod token_keys;
pub mod transport;
pub mod turn;
pub mod wake;

pub use config::Config;
pub use server::{Server, Services, app};
pub use state::AppState;
