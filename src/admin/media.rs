//! The admin endpoints on media: `GET /api/rooms` (rooms with peers on this node, and their
//! participants from the room's presence) and `GET /api/turn` (the TURN server's allocations and
//! relayed bytes on this node).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Value, json};

use super::authorize;
use crate::http::HttpError;
use crate::rtc::RtcService;
use crate::state::AppState;
use crate::turn::IceInfo;

/// The running media services, when they run.
#[derive(Clone)]
pub struct Media {
    /// The WebRTC engine.
    pub rtc: Option<RtcService>,
    /// The STUN/TURN server.
    pub ice: Option<IceInfo>,
}

/// `/api/rooms` and `/api/turn`.
pub fn routes(media: Media) -> Router<Arc<AppState>> {
    let (rtc, ice) = (media.rtc, media.ice);
    Router::new()
        .route(
            "/api/rooms",
            get(move |State(state): State<Arc<AppState>>, headers: HeaderMap| {
                rooms(state, headers, rtc.clone())
            }),
        )
        .route(
            "/api/turn",
            get(move |State(state): State<Arc<AppState>>, headers: HeaderMap| {
                turn(state, headers, ice.clone())
            }),
        )
}

async fn rooms(
    state: Arc<AppState>,
    headers: HeaderMap,
    rtc: Option<RtcService>,
) -> Result<Json<Value>, HttpError> {
    authorize(&state, &headers)?;
    let Some(rtc) = rtc else { return Ok(Json(json!({"rtc": false, "rooms": []}))) };
    let mut out = Vec::new();
    for room in rtc.rooms().await {
        let present = state.broker.presence(&room).await?;
        let participants: Vec<Value> =
            present.iter().map(|c| json!({"client": c.client, "user": c.user, "name": c.name})).collect();
        out.push(json!({"room": room.as_str(), "participants": participants}));
    }
    Ok(Json(json!({"rtc": true, "node": state.sampler.node(), "rooms": out})))
}

async fn turn(
    state: Arc<AppState>,
    headers: HeaderMap,
    ice: Option<IceInfo>,
) -> Result<Json<Value>, HttpError> {
    authorize(&state, &headers)?;
    let Some(ice) = ice else { return Ok(Json(json!({"turn": false}))) };
    let m = &ice.metrics;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Ok(Json(json!({
        "turn": true,
        "node": state.sampler.node(),
        "address": ice.addr.to_string(),
        "allocations": get(&m.allocations_active),
        "allocations_total": get(&m.allocations_total),
        "bytes_to_peer": get(&m.bytes_to_peer),
        "bytes_to_client": get(&m.bytes_to_client),
        "auth_failures": get(&m.auth_failures),
        "peers_denied": get(&m.peers_denied),
    })))
}
