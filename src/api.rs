//! The server API (`/api/...`), health and metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_protocol::frame::{ClientInfo, PresenceReply, PublishReply};
use switchboard_protocol::{ChannelName, ErrorCode, Position};

use crate::broker::{Health, HistoryQuery, NewPublication};
use crate::http::{Caller, HttpError, caller};
use crate::model::Payload;
use crate::rules::Destination;
use crate::state::AppState;

/// `POST /api/publish` body.
#[derive(Deserialize)]
pub struct PublishBody {
    channel: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    b64: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    /// The `session` of a connection's connect reply: publish as that connection's client
    /// (needed to signal into a room inbox over HTTP).
    #[serde(default)]
    session: Option<String>,
}

/// `name` as a channel, or a 400 saying why not.
pub fn channel(name: &str) -> Result<ChannelName, HttpError> {
    ChannelName::new(name).map_err(|e| HttpError::new(ErrorCode::BadRequest, e.to_string()))
}

/// `POST /api/publish`.
pub async fn publish(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PublishReply>, HttpError> {
    state.metrics.messages_in.add(1);
    state.metrics.bytes_in.add(body.len() as u64);
    let who = caller(&state.rules, &headers)?;
    let req: PublishBody = serde_json::from_slice(&body)
        .map_err(|e| HttpError::new(ErrorCode::BadRequest, format!("body is not a publish request: {e}")))?;
    let channel = channel(&req.channel)?;
    let info = publisher(&state, &who, &channel, req.session.as_deref()).await?;
    let payload = match (req.data, req.b64) {
        (Some(data), None) => Payload::Json(Bytes::copy_from_slice(data.get().as_bytes())),
        (None, Some(b64)) => Payload::Binary(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| HttpError::new(ErrorCode::BadRequest, "b64 is not base64"))?
                .into(),
        ),
        _ => {
            return Err(HttpError::new(ErrorCode::BadRequest, "give exactly one of data and b64"));
        }
    };
    state.rules.check_publication(&payload, req.idempotency_key.as_deref())?;
    let request = NewPublication {
        options: state.config.channel_options(&channel).clone(),
        channel,
        payload,
        info,
        idempotency_key: req.idempotency_key,
    };
    let r = state.publish(request).await?;
    Ok(Json(PublishReply { epoch: r.epoch.to_string(), offset: r.offset }))
}

/// Who a publication is from, after checking `who` may publish it. A client with a session
/// publishes as its connection; a room inbox takes only participants signaling participants
/// (the rules of the WebSocket protocol, checked against the room's presence). Elsewhere a
/// session the server cannot verify (it restarted, say) is ignored: it only names the sender.
async fn publisher(
    state: &AppState,
    who: &Caller,
    channel: &ChannelName,
    session: Option<&str>,
) -> Result<Option<Arc<ClientInfo>>, HttpError> {
    let client = session.and_then(|s| state.rules.auth().resume(s, who.user()));
    // Elsewhere a session the server cannot verify (it restarted, say) only fails to name the
    // sender; an inbox needs it.
    if session.is_some() && client.is_none() && state.rules.inbox(channel).is_some() {
        return Err(HttpError::new(ErrorCode::Unauthorized, "session is not one this server gave this user"));
    }
    match state.rules.may_publish(&who.actor(client.as_deref()), channel)? {
        Destination::Inbox(inbox) => {
            // Only the application's server writes inboxes without a session (the rules said so).
            let Some(client) = client else { return Ok(None) };
            let present = state.broker.presence(&inbox.room).await?;
            let me = state.rules.signal_sender(&present, &client)?;
            state.rules.signal_target(&present, &inbox)?;
            Ok(Some(me))
        }
        Destination::Channel => Ok(match who {
            Caller::Client(id) => Some(Arc::new(ClientInfo {
                client: client.unwrap_or_default(),
                user: id.user.clone(),
                name: id.name.clone(),
            })),
            _ => client.map(|client| Arc::new(ClientInfo { client, user: String::new(), name: None })),
        }),
    }
}

/// `GET /api/history` query.
#[derive(Deserialize)]
pub struct HistoryParams {
    channel: String,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    reverse: bool,
    /// A connection's session token: read as that connection (its own signaling inbox).
    #[serde(default)]
    session: Option<String>,
}

/// `GET /api/history`.
pub async fn history(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HistoryParams>,
) -> Result<Response, HttpError> {
    let who = caller(&state.rules, &headers)?;
    let channel = channel(&q.channel)?;
    let client = q.session.as_deref().and_then(|s| state.rules.auth().resume(s, who.user()));
    let size = state.rules.may_read_history(&who.actor(client.as_deref()), &channel)?;
    let since = match q.since.as_deref() {
        Some(s) => Some(
            Position::parse_compact(s)
                .ok_or_else(|| HttpError::new(ErrorCode::BadRequest, "since is EPOCH:OFFSET"))?,
        ),
        None => None,
    };
    let query = HistoryQuery { since, limit: q.limit.unwrap_or(size).min(size), reverse: q.reverse };
    let h = state.broker.history(&channel, query).await?;
    let body = crate::model::history_body(&h.top, &h.publications);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `?channel=` query, with the session of the connection asking, if any.
#[derive(Deserialize)]
pub struct ChannelParam {
    channel: String,
    #[serde(default)]
    session: Option<String>,
}

/// `GET /api/presence`.
pub async fn presence(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ChannelParam>,
) -> Result<Json<PresenceReply>, HttpError> {
    let who = caller(&state.rules, &headers)?;
    let channel = channel(&q.channel)?;
    let client = q.session.as_deref().and_then(|s| state.rules.auth().resume(s, who.user()));
    state.rules.may_see_presence(&who.actor(client.as_deref()), &channel)?;
    let clients = state.broker.presence(&channel).await?;
    Ok(Json(PresenceReply {
        clients: clients.iter().map(|c| (c.client.clone(), c.as_ref().clone())).collect(),
    }))
}

/// `GET /api/channels`: this node's channels with local subscribers or recent publications, busiest
/// first (publications per second accepted here, [`crate::channel_rates`]), then by subscribers.
pub async fn channels(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, HttpError> {
    if matches!(caller(&state.rules, &headers)?, Caller::Client(_)) {
        return Err(HttpError::new(ErrorCode::PermissionDenied, "the API key is required"));
    }
    let now = crate::channel_rates::now_seconds();
    let mut rows: std::collections::HashMap<ChannelName, (usize, f64)> =
        state.hub.channels().into_iter().map(|(c, n)| (c, (n, 0.0))).collect();
    for (c, rate) in state.metrics.channel_rates.all(now) {
        // A channel quiet long enough to read 0.0 and without subscribers here is not listed.
        if rate >= 0.05 || rows.contains_key(&c) {
            rows.entry(c).or_default().1 = rate;
        }
    }
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_by(|(a, (an, ar)), (b, (bn, br))| br.total_cmp(ar).then(bn.cmp(an)).then(a.cmp(b)));
    let list: Vec<_> = rows
        .into_iter()
        .map(|(c, (n, rate))| {
            let rate = (rate * 10.0).round() / 10.0;
            serde_json::json!({"channel": c, "subscribers": n, "rate": rate})
        })
        .collect();
    Ok(Json(serde_json::json!({ "channels": list })))
}

/// `GET /healthz`.
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.broker.health() {
        Health::Ok => Json(serde_json::json!({"status": "ok"})).into_response(),
        Health::Unavailable(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "reason": why})),
        )
            .into_response(),
    }
}

/// `GET /readyz`: whether this node should get new clients (a load balancer's check), 503
/// while it drains for a shutdown or its broker is unreachable. `/healthz` is liveness.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let unready = |reason: &str| {
        let body = Json(serde_json::json!({"status": "unavailable", "reason": reason}));
        (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], body).into_response()
    };
    if *state.shutdown.borrow() {
        return unready("shutting down");
    }
    match state.broker.health() {
        Health::Ok => Json(serde_json::json!({"status": "ready"})).into_response(),
        Health::Unavailable(why) => unready(&why),
    }
}

/// `GET /metrics`: open when no `api_key` is configured, else it takes the key (`X-API-Key`,
/// `Authorization: apikey KEY`, or `Authorization: Bearer KEY` as Prometheus sends it).
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if !state.config.api_key.is_empty() {
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("apikey "))
            .or_else(|| crate::http::bearer(&headers));
        if !state.rules.auth().api_key_ok(key) {
            let m = "/metrics takes the API key: X-API-Key: KEY or Authorization: Bearer KEY";
            return HttpError::new(ErrorCode::Unauthorized, m).into_response();
        }
    }
    let mut text = state.metrics.render();
    let up = u8::from(state.broker.health() == Health::Ok);
    let kind = state.config.broker.split("://").next().unwrap_or("memory");
    text.push_str(&format!(
        "# HELP switchboard_broker_up Whether the broker is reachable.\n# TYPE switchboard_broker_up gauge\n\
         switchboard_broker_up{{broker=\"{kind}\"}} {up}\n\
         # HELP switchboard_broker_reconnects_total Connections to the broker lost and made again.\n\
         # TYPE switchboard_broker_reconnects_total counter\nswitchboard_broker_reconnects_total {}\n",
        state.broker.reconnects()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
