//! The server API (`/api/...`), health and metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use switchboard_protocol::frame::{ClientInfo, PresenceReply, PublishReply};
use switchboard_protocol::{ChannelName, ErrorCode, Position};

use crate::broker::{Health, HistoryQuery, PublishRequest};
use crate::model::Payload;
use crate::policy::Identity;
use crate::server::AppState;
use crate::session::Now;
use crate::transport::{HttpError, bearer};

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

/// Who called the API.
pub(crate) enum Caller {
    /// The API key (or an open server): may do anything.
    Server,
    /// A client token.
    Client(Identity),
}

pub(crate) fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, HttpError> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("apikey "));
    if state.policy.api_key_ok(key) {
        return Ok(Caller::Server);
    }
    if let Some(token) = bearer(headers) {
        return state
            .policy
            .authenticate(Some(token), Now::current().unix)
            .map(Caller::Client)
            .map_err(|d| HttpError::new(ErrorCode::Unauthorized, d.reason));
    }
    Err(HttpError::new(ErrorCode::Unauthorized, "an API key or a Bearer token is required"))
}

fn channel(name: &str) -> Result<ChannelName, HttpError> {
    ChannelName::new(name).map_err(|e| HttpError::new(ErrorCode::BadRequest, e.to_string()))
}

fn may_read(state: &AppState, who: &Caller, c: &ChannelName) -> Result<(), HttpError> {
    match who {
        Caller::Client(id) if !state.policy.can_subscribe(id, c) => {
            Err(HttpError::new(ErrorCode::PermissionDenied, "permission denied"))
        }
        _ => Ok(()),
    }
}

/// `POST /api/publish`.
pub async fn publish(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<PublishReply>, HttpError> {
    state.metrics.messages_in.add(1);
    state.metrics.bytes_in.add(body.len() as u64);
    let who = caller(&state, &headers)?;
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
    if payload.len() > state.config.max_publication_bytes {
        let m = format!("payload is larger than {} bytes", state.config.max_publication_bytes);
        return Err(HttpError::new(ErrorCode::LimitExceeded, m));
    }
    if req.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 128) {
        return Err(HttpError::new(ErrorCode::BadRequest, "idempotency_key must be 1 to 128 bytes"));
    }
    let request = PublishRequest {
        options: state.config.channel_options(&channel).clone(),
        channel,
        payload,
        info,
        idempotency_key: req.idempotency_key,
    };
    let r = state.broker.publish(request).await?;
    if !r.duplicate {
        state.metrics.publications.add(1);
    }
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
    let identity = match who {
        Caller::Client(id) => Some(id),
        Caller::Server => None,
    };
    let user = identity.map_or("", |id| id.user.as_str());
    let client = session.and_then(|s| state.policy.resume(s, user));
    let inbox = state.policy.inbox(channel);
    if let Some(inbox) = inbox {
        if session.is_some() && client.is_none() {
            return Err(HttpError::new(
                ErrorCode::Unauthorized,
                "session is not one this server gave this user",
            ));
        }
        let Some(client) = client else {
            if identity.is_none() {
                return Ok(None); // the application's own server may write to any inbox
            }
            let m = "signaling over HTTP needs the session of a connection in the room";
            return Err(HttpError::new(ErrorCode::PermissionDenied, m));
        };
        let present = state.broker.presence(&inbox.room).await?;
        let Some(me) = present.iter().find(|c| c.client == client) else {
            return Err(HttpError::new(ErrorCode::PermissionDenied, "join the room first"));
        };
        if !present.iter().any(|c| c.client == inbox.client) {
            return Err(HttpError::new(ErrorCode::UnknownChannel, "that participant is not in the room"));
        }
        return Ok(Some(me.clone()));
    }
    match identity {
        Some(id) if !state.policy.can_publish(id, channel) => {
            Err(HttpError::new(ErrorCode::PermissionDenied, "permission denied"))
        }
        Some(id) => Ok(Some(Arc::new(ClientInfo {
            client: client.unwrap_or_default(),
            user: id.user.clone(),
            name: id.name.clone(),
        }))),
        None => Ok(client.map(|client| Arc::new(ClientInfo { client, user: String::new(), name: None }))),
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
}

/// `GET /api/history`.
pub async fn history(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<HistoryParams>,
) -> Result<Response, HttpError> {
    let who = caller(&state, &headers)?;
    let channel = channel(&q.channel)?;
    may_read(&state, &who, &channel)?;
    let size = state.config.channel_options(&channel).history_size;
    if size == 0 {
        return Err(HttpError::new(ErrorCode::NotAvailable, "history is off for this namespace"));
    }
    let since = match q.since.as_deref() {
        Some(s) => Some(
            Position::parse_compact(s)
                .ok_or_else(|| HttpError::new(ErrorCode::BadRequest, "since is EPOCH:OFFSET"))?,
        ),
        None => None,
    };
    let query = HistoryQuery { since, limit: q.limit.unwrap_or(size).min(size), reverse: q.reverse };
    let h = state.broker.history(&channel, query).await?;
    let mut buf = BytesMut::new();
    crate::transport::ws::put_history_body(&mut buf, &h.top, &h.publications);
    Ok(([(header::CONTENT_TYPE, "application/json")], buf.freeze()).into_response())
}

/// `?channel=` query.
#[derive(Deserialize)]
pub struct ChannelParam {
    channel: String,
}

/// `GET /api/presence`.
pub async fn presence(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ChannelParam>,
) -> Result<Json<PresenceReply>, HttpError> {
    let who = caller(&state, &headers)?;
    let channel = channel(&q.channel)?;
    may_read(&state, &who, &channel)?;
    if !state.config.channel_options(&channel).presence {
        return Err(HttpError::new(ErrorCode::NotAvailable, "presence is off for this namespace"));
    }
    let clients = state.broker.presence(&channel).await?;
    Ok(Json(PresenceReply {
        clients: clients.iter().map(|c| (c.client.clone(), c.as_ref().clone())).collect(),
    }))
}

/// `GET /api/channels`: this node's channels with local subscribers.
pub async fn channels(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, HttpError> {
    if !matches!(caller(&state, &headers)?, Caller::Server) {
        return Err(HttpError::new(ErrorCode::PermissionDenied, "the API key is required"));
    }
    let list: Vec<_> = state
        .hub
        .channels()
        .into_iter()
        .map(|(c, n)| serde_json::json!({"channel": c, "subscribers": n}))
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

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
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
    if let Some(ice) = state.ice.get() {
        text.push_str(&ice.metrics.render_prometheus());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
