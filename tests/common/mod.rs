//! The one test harness every integration test includes (`mod common;`): the server in-process
//! on port 0 ([`server`]), real `redis-server` / `nats-server` processes on free ports
//! ([`backend`], shared with the broker unit tests), `switchboard` processes that a test may kill
//! ([`process`]), readers for client events ([`events`]) and raw HTTP ([`http`]).

// Each test binary uses a part of this.
#![allow(dead_code)]

#[path = "../../src/broker/testutil/backend.rs"]
pub mod backend;
pub mod events;
pub mod http;
pub mod media;
pub mod process;
pub mod server;
pub mod sockjs;

use std::future::Future;
use std::time::Duration;

// The short paths the tests use; each binary uses some.
#[allow(unused_imports)]
pub use events::{cursor_at_end, n_of, next, next_ws_event, publications, ready, subscribed};
#[allow(unused_imports)]
pub use http::{http_json, http_request, http_status};
#[allow(unused_imports)]
pub use server::TestServer;

/// Polls `check` every 50 ms until it holds; panics naming `what` after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`eventually`] for a check that is itself a request: awaits `check` every 50 ms until it
/// holds; panics naming `what` after `limit`.
pub async fn eventually_async<F: Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Ok(true) = tokio::time::timeout(left, check()).await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
