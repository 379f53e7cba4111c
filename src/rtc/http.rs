//! The HTTP side of WebRTC: every exchange is one offer in, one answer out (`docs/webrtc.md`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use serde::Deserialize;
use switchboard_protocol::{ChannelName, ErrorCode};

use super::{Negotiation, Role, RtcService, rtc_error};
use crate::api::{Caller, caller};
use crate::metrics::Transport;
use crate::server::AppState;
use crate::session::SessionConfig;
use crate::transport::driver::Driver;
use crate::transport::{HttpError, bearer};

/// The routes, under the app's state.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rtc/sfu/{room}", post(join_sfu))
        .route("/rtc/peers/{peer}", patch(update).delete(close))
        .route("/rtc/dc", post(data_channel))
        .route("/whip/{room}", post(whip))
        .route("/whep/{room}", post(whep))
}

/// `POST /rtc/sfu/{room}` body.
#[derive(Deserialize)]
struct JoinBody {
    client: String,
    sdp: String,
    #[serde(default)]
    publish: HashMap<String, String>,
    #[serde(default)]
    subscribe: HashMap<String, Option<String>>,
}

/// `PATCH /rtc/peers/{peer}` body.
#[derive(Deserialize)]
struct UpdateBody {
    #[serde(default)]
    sdp: Option<String>,
    #[serde(default)]
    publish: HashMap<String, String>,
    #[serde(default)]
    subscribe: HashMap<String, Option<String>>,
    #[serde(default)]
    layers: HashMap<String, String>,
}

fn service(state: &AppState) -> Result<RtcService, HttpError> {
    state
        .rtc
        .get()
        .cloned()
        .ok_or_else(|| rtc_error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotAvailable, "WebRTC is off"))
}

fn unknown_room() -> HttpError {
    rtc_error(StatusCode::NOT_FOUND, ErrorCode::UnknownChannel, "unknown room")
}

/// `name` as a room: a channel of a namespace with `rooms`, and not an inbox.
fn room(state: &AppState, name: &str) -> Result<ChannelName, HttpError> {
    let room = ChannelName::new(name).map_err(|e| HttpError::new(ErrorCode::BadRequest, e.to_string()))?;
    if !state.policy.options(&room).rooms || crate::rooms::inbox(&room).is_some() {
        return Err(unknown_room());
    }
    Ok(room)
}

fn forbidden() -> HttpError {
    rtc_error(StatusCode::FORBIDDEN, ErrorCode::PermissionDenied, "permission denied")
}

/// The caller, for WHIP and WHEP: the API key also counts as a Bearer token (OBS sends only that).
fn whip_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, HttpError> {
    let key = bearer(headers);
    if key.is_some() && state.policy.api_key_ok(key) && !state.config.api_key.is_empty() {
        return Ok(Caller::Server);
    }
    caller(state, headers).map_err(|mut e| {
        e.status = Some(StatusCode::UNAUTHORIZED);
        e
    })
}

fn sdp_body(headers: &HeaderMap, body: Bytes) -> Result<String, HttpError> {
    let ty = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ty.starts_with("application/sdp") {
        let m = "the body must be an SDP offer (Content-Type: application/sdp)";
        return Err(rtc_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorCode::BadRequest, m));
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| HttpError::new(ErrorCode::BadRequest, "the SDP is not UTF-8"))
}

fn created_sdp(peer: &str, sdp: String) -> Response {
    let location = format!("/rtc/peers/{peer}");
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/sdp".to_owned()), (header::LOCATION, location)],
        sdp,
    )
        .into_response()
}

async fn join_sfu(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let rtc = service(&state)?;
    let room = room(&state, &name)?;
    let body: JoinBody = serde_json::from_slice(&body)
        .map_err(|e| HttpError::new(ErrorCode::BadRequest, format!("bad request body: {e}")))?;
    let user = match state.config.requires_token() {
        true => match caller(&state, &headers)? {
            Caller::Client(id) if !state.policy.can_subscribe(&id, &room) => return Err(forbidden()),
            Caller::Client(id) => Some(id.user),
            Caller::Server => None,
        },
        false => None,
    };
    // The caller must be in the room, as the participant it says it is.
    let present = state.broker.presence(&room).await.map_err(|e| {
        rtc_error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::BrokerUnavailable, e.to_string())
    })?;
    let me = present.iter().find(|c| c.client == body.client).ok_or_else(|| {
        rtc_error(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownChannel,
            "that client is not in the room; join it first",
        )
    })?;
    if user.as_ref().is_some_and(|u| *u != me.user) {
        return Err(forbidden());
    }
    let role = Role::Participant { room, client: body.client, name: me.name.clone() };
    let nego = Negotiation {
        offer: Some(body.sdp),
        publish: body.publish,
        subscribe: body.subscribe,
        ..Default::default()
    };
    let opened = rtc.open(role, nego).await?;
    let location = format!("/rtc/peers/{}", opened.peer);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(opened)).into_response())
}

async fn update(
    State(state): State<Arc<AppState>>,
    Path(peer): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let rtc = service(&state)?;
    let ty = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ty.starts_with("application/trickle-ice-sdpfrag") {
        let m = "trickle ICE is not supported: put the candidates in the offer";
        return Err(rtc_error(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotFound, m));
    }
    let body: UpdateBody = serde_json::from_slice(&body)
        .map_err(|e| HttpError::new(ErrorCode::BadRequest, format!("bad request body: {e}")))?;
    let nego = Negotiation {
        offer: body.sdp,
        publish: body.publish,
        subscribe: body.subscribe,
        layers: body.layers,
    };
    let answer = rtc.update(peer, nego).await?;
    Ok(Json(serde_json::json!({ "sdp": answer })).into_response())
}

async fn close(State(state): State<Arc<AppState>>, Path(peer): Path<String>) -> Result<Response, HttpError> {
    match service(&state)?.close(peer).await {
        true => Ok(StatusCode::OK.into_response()),
        false => Err(rtc_error(StatusCode::NOT_FOUND, ErrorCode::UnknownChannel, "no such peer")),
    }
}

async fn whip(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    open_sdp(&state, &name, &headers, body, true).await
}

async fn whep(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    open_sdp(&state, &name, &headers, body, false).await
}

/// Opens a WHIP (`ingest`) or WHEP peer in room `name` from an `application/sdp` offer: `201`
/// with the answer. A client token must allow publishing (WHIP) or subscribing (WHEP) there.
async fn open_sdp(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    body: Bytes,
    ingest: bool,
) -> Result<Response, HttpError> {
    let room = room(state, name)?;
    if let Caller::Client(id) = whip_caller(state, headers)? {
        let allowed = if ingest {
            state.policy.can_publish(&id, &room)
        } else {
            state.policy.can_subscribe(&id, &room)
        };
        if !allowed {
            return Err(forbidden());
        }
    }
    let rtc = service(state)?;
    let offer = sdp_body(headers, body)?;
    let role = if ingest { Role::Whip { room } } else { Role::Whep { room } };
    let opened = rtc.open(role, Negotiation { offer: Some(offer), ..Default::default() }).await?;
    Ok(created_sdp(&opened.peer, opened.sdp))
}

async fn data_channel(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let rtc = service(&state)?;
    let offer = sdp_body(&headers, body)?;
    let permit = state.admission.clone().try_acquire_owned().map_err(|_| HttpError::connection_limit())?;
    let (events, rx) = tokio::sync::mpsc::channel(256);
    let opened =
        rtc.open(Role::Data { events }, Negotiation { offer: Some(offer), ..Default::default() }).await?;
    let mut config = SessionConfig::from_config(&state.config, true);
    config.datagrams = true;
    let driver = Driver::with_config(state.clone(), config);
    let peer = opened.peer.clone();
    tokio::spawn(async move {
        let _guard = state.metrics.connection(Transport::WebRtc);
        super::datachannel::run(rtc, peer, rx, driver).await;
        drop(permit);
    });
    Ok(created_sdp(&opened.peer, opened.sdp))
}
