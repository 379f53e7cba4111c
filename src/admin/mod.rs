//! The dashboard's server side: the admin endpoints of the server API (this node's connections,
//! with disconnect and unsubscribe; the nodes' stats; rooms; TURN) and the stats this node
//! publishes every `admin_stats_interval_ms` on [`STATS_CHANNEL`]. The page at `/admin`
//! (`demo/admin.*`) uses only these documented endpoints and the channel: no private back door.
//!
//! - [`api`]: the endpoints; each takes the API key or `admin_password` ([`authorize`]).
//! - [`stats`]: one node's snapshot, and the task publishing it.
//! - [`media`]: rooms and TURN, from the running services.

pub mod api;
pub mod media;
pub mod stats;

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use switchboard_protocol::ErrorCode;

use crate::http::HttpError;
use crate::server::Services;
use crate::state::AppState;

/// The channel each node publishes its stats on: readable with the API key (history) and by a
/// dashboard's connection (an admin ticket), by nobody else.
pub const STATS_CHANNEL: &str = "__admin:stats";

/// The admin endpoints (always served: they answer only to the key or the admin password).
pub fn routes(services: &Services) -> Router<Arc<AppState>> {
    let media = media::Media { rtc: services.rtc.clone(), ice: services.ice.clone() };
    Router::new()
        .route("/api/admin/ticket", post(api::ticket))
        .route("/api/admin/node", get(api::node))
        .route("/api/admin/nodes", get(api::nodes))
        .route("/api/connections", get(api::connections))
        .route("/api/connections/{id}", get(api::connection))
        .route("/api/connections/{id}/disconnect", post(api::disconnect))
        .route("/api/connections/{id}/unsubscribe", post(api::unsubscribe))
        .merge(media::routes(media))
}

/// The dashboard page (`admin = true`): public HTML that asks for the key or the password.
pub fn page_routes() -> Router<Arc<AppState>> {
    let html = crate::demo::asset("text/html; charset=utf-8", include_str!("../../demo/admin.html"));
    let js = crate::demo::asset("text/javascript; charset=utf-8", include_str!("../../demo/admin.js"));
    let css = crate::demo::asset("text/css; charset=utf-8", include_str!("../../demo/admin.css"));
    let rec = crate::demo::asset("text/javascript; charset=utf-8", include_str!("../../demo/admin-rec.js"));
    let chart = crate::demo::asset("text/javascript; charset=utf-8", include_str!("../../demo/chart.js"));
    let demo_css = crate::demo::asset("text/css; charset=utf-8", include_str!("../../demo/demo.css"));
    Router::new()
        .route("/admin", get(move || async move { html }))
        .route("/admin/admin.js", get(move || async move { js }))
        .route("/admin/admin.css", get(move || async move { css }))
        .route("/admin/admin-rec.js", get(move || async move { rec }))
        .route("/admin/chart.js", get(move || async move { chart }))
        .route("/admin/demo.css", get(move || async move { demo_css }))
}

/// Lets the caller through when it presents the API key or the admin password (`X-API-Key` or
/// `Authorization: apikey KEY`); an open loopback server with neither configured is open.
pub fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("apikey "));
    if state.rules.auth().admin_ok(key) {
        return Ok(());
    }
    state.metrics.admin_refused.add(1);
    Err(HttpError::new(
        ErrorCode::Unauthorized,
        "the admin endpoints take the API key or admin_password (X-API-Key: KEY)",
    ))
}
