//! The admin endpoints on media: `GET /api/rooms` and `GET /api/rooms/{room}` (rooms with peers
//! on this node: their participants from the room's presence, and the engine's snapshot of each
//! peer's tracks and receivers) and `GET /api/turn` (the TURN server's allocations and relayed
//! bytes on this node).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Value, json};
use switchboard_protocol::ErrorCode;

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

/// `/api/rooms`, `/api/rooms/{room}` and `/api/turn`.
pub fn routes(media: Media) -> Router<Arc<AppState>> {
    let (rtc, ice) = (media.rtc, media.ice);
    let one = rtc.clone();
    Router::new()
        .route(
            "/api/rooms",
            get(move |State(state): State<Arc<AppState>>, headers: HeaderMap| {
                rooms(state, headers, rtc.clone(), None)
            }),
        )
        .route(
            "/api/rooms/{room}",
            get(move |State(state): State<Arc<AppState>>, headers: HeaderMap, Path(room): Path<String>| {
                rooms(state, headers, one.clone(), Some(room))
            }),
        )
        .route(
            "/api/turn",
            get(move |State(state): State<Arc<AppState>>, headers: HeaderMap| {
                turn(state, headers, ice.clone())
            }),
        )
}

/// Every room with peers here, or only `only` (then one room, and an error when it has none).
async fn rooms(
    state: Arc<AppState>,
    headers: HeaderMap,
    rtc: Option<RtcService>,
    only: Option<String>,
) -> Result<Json<Value>, HttpError> {
    authorize(&state, &headers)?;
    let only = only.map(|r| crate::api::channel(&r)).transpose()?;
    let snapshot = match rtc {
        Some(rtc) => rtc.snapshot().await,
        None if only.is_none() => return Ok(Json(json!({"rtc": false, "rooms": []}))),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for room in snapshot.into_iter().filter(|r| only.as_ref().is_none_or(|o| o.as_str() == r.room)) {
        let channel = crate::api::channel(&room.room)?;
        let present = state.broker.presence(&channel).await?;
        let participants: Vec<Value> =
            present.iter().map(|c| json!({"client": c.client, "user": c.user, "name": c.name})).collect();
        out.push(json!({"room": room.room, "participants": participants, "peers": room.peers}));
    }
    let node = state.sampler.node();
    match only {
        None => Ok(Json(json!({"rtc": true, "node": node, "rooms": out}))),
        Some(_) if out.is_empty() => {
            Err(HttpError::new(ErrorCode::UnknownChannel, "no WebRTC peers in this room on this node"))
        }
        Some(_) => {
            let mut room = out.swap_remove(0);
            room["node"] = json!(node);
            Ok(Json(room))
        }
    }
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
