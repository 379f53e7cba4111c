//! The HTTP side of WebRTC: every exchange is one offer in, one answer out (`docs/webrtc.md`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::{Extension, Router};
use serde::Deserialize;
use switchboard_protocol::{ChannelName, ErrorCode};

use super::{EngineError, Negotiation, Role, RtcService};
use crate::connection::Driver;
use crate::http::{Caller, ClientIp, HttpError, bearer, caller};
use crate::metrics::TransportKind;
use crate::rules::Actor;
use crate::session::SessionConfig;
use crate::state::AppState;

/// The routes, under the app's state.
pub fn routes(rtc: Option<RtcService>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/rtc/sfu/{room}", post(join_sfu))
        .route("/rtc/peers/{peer}", patch(update).delete(close))
        .route("/rtc/dc", post(data_channel))
        .route("/whip/{room}", post(whip_or_whep))
        .route("/whep/{room}", post(whip_or_whep))
        .layer(Extension(rtc))
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

/// The one place engine errors become HTTP answers: a status and one of our error codes.
impl From<EngineError> for HttpError {
    fn from(e: EngineError) -> Self {
        use EngineError::*;
        let (status, code) = match &e {
            TooManyPeers { .. } | TooManyMediaLines { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::LimitExceeded)
            }
            UnknownPeer | UnknownTrack => (StatusCode::NOT_FOUND, ErrorCode::UnknownChannel),
            // The request is well-formed but does not fit the peer's negotiated m-lines.
            NotAReceiver { .. } => (StatusCode::CONFLICT, ErrorCode::BadRequest),
            NoOffer
            | MediaOnDataChannel
            | NoMedia
            | NoUsableCodec { .. }
            | MalformedSdp(_)
            | OfferRefused(_)
            | BadMid(_)
            | KindMismatch { .. }
            | NoReceiveLine { .. }
            | NoSuchLayer { .. } => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            Stopped => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotAvailable),
            MixerFull { .. } => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::MixerFull),
            LocalCandidate(_) | Failed => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        };
        rtc_error(status, code, e.to_string())
    }
}

/// An HTTP error with an explicit status.
fn rtc_error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> HttpError {
    HttpError { status: Some(status), ..HttpError::new(code, message) }
}

/// The engine, when WebRTC runs.
type Engine = Extension<Option<RtcService>>;

fn service(Extension(rtc): Engine) -> Result<RtcService, HttpError> {
    rtc.ok_or_else(|| rtc_error(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotAvailable, "WebRTC is off"))
}

fn unknown_room() -> HttpError {
    rtc_error(StatusCode::NOT_FOUND, ErrorCode::UnknownChannel, "unknown room")
}

/// `name` as a room: a channel of a namespace with `rooms`, and not an inbox.
fn room(state: &AppState, name: &str) -> Result<ChannelName, HttpError> {
    let room = ChannelName::new(name).map_err(|e| HttpError::new(ErrorCode::BadRequest, e.to_string()))?;
    if !state.rules.is_room(&room) {
        return Err(unknown_room());
    }
    Ok(room)
}

/// Counts an offer from `ip` of a caller without a token against `rtc_offers_per_ip_per_minute`
/// (`429`, code 106 over it): peers cost the server a UDP flow, DTLS and memory each.
fn offer_allowed(state: &AppState, ip: ClientIp, caller: &Caller) -> Result<(), HttpError> {
    if matches!(caller, Caller::Open) && !state.rtc_offers.allow(ip.0) {
        state.metrics.rtc_offers_refused.add(1);
        let m = format!(
            "at most {} WebRTC offers a minute from one address without a token",
            state.config.rtc_offers_per_ip_per_minute
        );
        return Err(rtc_error(StatusCode::TOO_MANY_REQUESTS, ErrorCode::LimitExceeded, m));
    }
    Ok(())
}

/// The caller of an endpoint that creates peers: anyone on an open server; else a client
/// token or the API key, as every other endpoint asks (`401` without).
fn peer_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, HttpError> {
    if !state.config.requires_token() {
        return Ok(Caller::Open);
    }
    caller(&state.rules, headers).map_err(|mut e| {
        e.status = Some(StatusCode::UNAUTHORIZED);
        e
    })
}

fn forbidden() -> HttpError {
    rtc_error(StatusCode::FORBIDDEN, ErrorCode::PermissionDenied, "permission denied")
}

/// The caller, for WHIP and WHEP: the API key also counts as a Bearer token (OBS sends only that).
fn whip_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, HttpError> {
    let key = bearer(headers);
    if key.is_some() && state.rules.auth().api_key_ok(key) && !state.config.api_key.is_empty() {
        return Ok(Caller::Server);
    }
    caller(&state.rules, headers).map_err(|mut e| {
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

/// A peer's resource: absolute with `node_url` (the client may have come through another node).
fn peer_url(state: &AppState, peer: &str) -> String {
    format!("{}/rtc/peers/{peer}", state.config.node_base())
}

/// In a cluster (`node_url` set) a room's media lives on the node holding its claim. `None`:
/// this node serves `room` (and holds it a while longer); else the base URL of the one that does.
pub(crate) async fn elsewhere(state: &AppState, room: &ChannelName) -> Result<Option<String>, HttpError> {
    let node = state.config.node_base();
    if node.is_empty() {
        return Ok(None);
    }
    let ttl = std::time::Duration::from_secs(state.config.presence_ttl);
    let holder = state.broker.claim_room(room, node, ttl).await?;
    Ok((holder != node).then_some(holder))
}

/// `421` with code 111 and the node that holds `room`'s media. JSON, not a redirect: the SDK
/// posts there itself (a redirect would cost its CORS origin).
pub(crate) fn served_elsewhere(room: &ChannelName, holder: &str) -> Response {
    let m = format!("{room} is served by {holder}");
    let body =
        serde_json::json!({"error": {"code": ErrorCode::Elsewhere.code(), "message": m}, "node": holder});
    (StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response()
}

/// Keeps the claims of the rooms this node serves while they have peers here, until the node
/// stops.
pub async fn renew_claims(
    state: std::sync::Weak<AppState>,
    rtc: RtcService,
    node: String,
    ttl: std::time::Duration,
) {
    let mut tick = tokio::time::interval(ttl / 3);
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        for room in rtc.rooms().await {
            match state.broker.claim_room(&room, &node, ttl).await {
                Ok(holder) if holder != node => {
                    tracing::warn!(%room, %holder, "another node took this room over while it has peers here")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(%room, error = %e, "renewing a room's claim failed"),
            }
        }
    }
}

fn created_sdp(state: &AppState, peer: &str, sdp: String) -> Response {
    let location = peer_url(state, peer);
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/sdp".to_owned()), (header::LOCATION, location)],
        sdp,
    )
        .into_response()
}

async fn join_sfu(
    State(state): State<Arc<AppState>>,
    rtc: Engine,
    ip: ClientIp,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let rtc = service(rtc)?;
    let room = room(&state, &name)?;
    if !state.config.requires_token() {
        offer_allowed(&state, ip, &Caller::Open)?;
    }
    let body: JoinBody = serde_json::from_slice(&body)
        .map_err(|e| HttpError::new(ErrorCode::BadRequest, format!("bad request body: {e}")))?;
    let user = match state.config.requires_token() {
        true => match caller(&state.rules, &headers)? {
            Caller::Client(id) => {
                state.rules.may_read(&Actor::Client { identity: &id, client: None }, &room)?;
                Some(id.user)
            }
            Caller::Server | Caller::Open => None,
        },
        false => None,
    };
    // The caller must be in the room, as the participant it says it is.
    let present = state.broker.presence(&room).await?;
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
    if let Some(holder) = elsewhere(&state, &room).await? {
        return Ok(served_elsewhere(&room, &holder));
    }
    let role = Role::Participant { room, client: body.client, name: me.name.clone() };
    let nego = Negotiation {
        offer: Some(body.sdp),
        publish: body.publish,
        subscribe: body.subscribe,
        ..Default::default()
    };
    let mut opened = rtc.open(role, nego).await?;
    opened.url = peer_url(&state, &opened.peer);
    Ok((StatusCode::CREATED, [(header::LOCATION, opened.url.clone())], Json(opened)).into_response())
}

async fn update(
    rtc: Engine,
    Path(peer): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let rtc = service(rtc)?;
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
        ..Negotiation::default()
    };
    let answer = rtc.update(peer, nego).await?;
    Ok(Json(serde_json::json!({ "sdp": answer })).into_response())
}

async fn close(rtc: Engine, Path(peer): Path<String>) -> Result<Response, HttpError> {
    match service(rtc)?.close(peer).await {
        true => Ok(StatusCode::OK.into_response()),
        false => Err(EngineError::UnknownPeer.into()),
    }
}

/// `POST /whip/{room}` (ingest) or `/whep/{room}` (playback) with an `application/sdp` offer:
/// `201` with the answer. A client token must allow publishing (WHIP) or subscribing (WHEP) there.
async fn whip_or_whep(
    State(state): State<Arc<AppState>>,
    rtc: Engine,
    ip: ClientIp,
    Path(name): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let ingest = uri.path().starts_with("/whip/");
    let room = room(&state, &name)?;
    let who = whip_caller(&state, &headers)?;
    offer_allowed(&state, ip, &who)?;
    if let Caller::Client(identity) = who {
        let who = Actor::Client { identity: &identity, client: None };
        let allowed = if ingest {
            state.rules.may_publish(&who, &room).map(|_| ())
        } else {
            state.rules.may_read(&who, &room)
        };
        allowed.map_err(|_| forbidden())?;
    }
    let rtc = service(rtc)?;
    let offer = sdp_body(&headers, body)?;
    if let Some(holder) = elsewhere(&state, &room).await? {
        // WHIP and WHEP clients follow redirects (RFC 9725 §4.5).
        let to = format!("{holder}{}", uri.path_and_query().map_or("", |p| p.as_str()));
        return Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response());
    }
    let role = if ingest { Role::Whip { room } } else { Role::Whep { room } };
    // `/whep/{room}?audio=mix`: the whole room's audio as one mixed track.
    let mix = !ingest
        && form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .any(|(k, v)| k == "audio" && v == "mix");
    // WHEP `?track=ID`: play that video track (a composition's) rather than the newest.
    let pin = (!ingest)
        .then(|| form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).find(|(k, _)| k == "track"))
        .flatten()
        .map(|(_, v)| v.into_owned());
    let nego = Negotiation { offer: Some(offer), mix, pin, ..Default::default() };
    let opened = rtc.open(role, nego).await?;
    Ok(created_sdp(&state, &opened.peer, opened.sdp))
}

/// `POST /rtc/dc`: a data channel peer, the JSON protocol inside. Behind the same auth as every
/// other endpoint when a token is required (the session inside still sends `connect`); a peer
/// is a connection of the limits (total, IP, and the token's user).
async fn data_channel(
    State(state): State<Arc<AppState>>,
    rtc: Engine,
    ip: ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let rtc = service(rtc)?;
    let who = peer_caller(&state, &headers)?;
    offer_allowed(&state, ip, &who)?;
    let offer = sdp_body(&headers, body)?;
    let mut ticket = state.admission.admit(ip.0).map_err(HttpError::connection_limit)?;
    ticket.set_user(who.user()).map_err(HttpError::connection_limit)?;
    let (events, rx) = tokio::sync::mpsc::channel(256);
    let opened =
        rtc.open(Role::Data { events }, Negotiation { offer: Some(offer), ..Default::default() }).await?;
    let mut config = SessionConfig::from_config(&state.config, true);
    config.datagrams = true;
    let driver = Driver::with_config(state.clone(), config).admitted(ticket).on(TransportKind::WebRtc);
    let peer = opened.peer.clone();
    let created = created_sdp(&state, &opened.peer, opened.sdp);
    tokio::spawn(async move {
        let _guard = state.metrics.connection(TransportKind::WebRtc);
        super::datachannel::run(rtc, peer, rx, driver).await;
    });
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statuses and codes of `docs/webrtc.md`'s error table.
    #[test]
    fn engine_errors_answer_the_documented_status_and_code() {
        let cases = [
            (EngineError::MalformedSdp("x".into()), 400, 107),
            (EngineError::NoUsableCodec { index: 1 }, 400, 107),
            (EngineError::NoSuchLayer { mid: "1".into(), rid: "h".into() }, 400, 107),
            (EngineError::UnknownPeer, 404, 102),
            (EngineError::UnknownTrack, 404, 102),
            (EngineError::NotAReceiver { mid: "0".into() }, 409, 107),
            (EngineError::TooManyMediaLines { max: 8 }, 413, 106),
            (EngineError::TooManyPeers { max: 8 }, 413, 106),
            (EngineError::Stopped, 503, 108),
            (EngineError::MixerFull { what: "rooms", max: 1 }, 503, 114),
            (EngineError::Failed, 500, 100),
        ];
        for (e, status, code) in cases {
            let message = e.to_string();
            let h = HttpError::from(e);
            assert_eq!((h.status.map(|s| s.as_u16()), h.code.code()), (Some(status), code), "{message}");
            assert_eq!(h.message, message, "the message is the engine's");
        }
    }
}
