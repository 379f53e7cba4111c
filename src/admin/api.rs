//! The admin endpoints: this node's connections (details, disconnect, unsubscribe), an admin
//! ticket for a dashboard's connection, and the nodes' stats. Each takes the API key or
//! `admin_password` ([`super::authorize`]); the shapes are in `docs/protocol.md`.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_protocol::{ChannelName, Disconnect, ErrorCode};

use super::authorize;
use crate::broker::HistoryQuery;
use crate::http::HttpError;
use crate::hub::{ConnId, ConnMeta};
use crate::state::AppState;

/// How long an admin ticket lets a dashboard (re)connect.
const TICKET_SECONDS: u64 = 3600;
/// Most connections one `GET /api/connections` lists.
const MAX_LISTED: usize = 1000;

fn describe(state: &AppState, id: ConnId, meta: &ConnMeta) -> Value {
    let client = meta.client.get();
    json!({
        "id": id.to_string(),
        "transport": meta.transport.get().map_or("unknown", |t| t.label()),
        "remote": meta.remote.get().map(ToString::to_string),
        "client": client.map(|c| c.client.clone()),
        "user": client.map(|c| c.user.clone()),
        "name": client.and_then(|c| c.name.clone()),
        "opened_at": meta.opened.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
        "subscriptions": state.hub.subscriptions_of(id).iter().map(ChannelName::as_str).collect::<Vec<_>>(),
        "node": state.sampler.node(),
    })
}

/// `POST /api/admin/ticket`: a connection token for a dashboard, which reads the stats channel.
pub async fn ticket(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, HttpError> {
    authorize(&state, &headers)?;
    let exp = crate::session::Now::current().unix + TICKET_SECONDS;
    let ticket = state.rules.auth().admin_ticket(exp);
    Ok(Json(json!({"ticket": ticket, "expires_at": exp, "channel": super::STATS_CHANNEL})))
}

/// `GET /api/admin/node`: this node's stats now.
pub async fn node(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, HttpError> {
    authorize(&state, &headers)?;
    Ok(Json(state.sampler.snapshot(&state)))
}

/// `GET /api/admin/nodes`: every node's latest stats, from the stats channel's history (a node
/// silent for 3 intervals is reported `"stale": true`).
pub async fn nodes(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Value>, HttpError> {
    authorize(&state, &headers)?;
    let channel = ChannelName::new(super::STATS_CHANNEL)
        .map_err(|_| HttpError::new(ErrorCode::Internal, "bad channel"))?;
    let query = HistoryQuery { since: None, limit: 100, reverse: true };
    let history = state.broker.history(&channel, query).await?;
    let mut nodes: Vec<Value> = Vec::new();
    for p in &history.publications {
        let crate::model::Payload::Json(json) = &p.payload else { continue };
        let Ok(v) = serde_json::from_slice::<Value>(json) else { continue };
        if !nodes.iter().any(|n| n["node"] == v["node"]) {
            nodes.push(v);
        }
    }
    let me = state.sampler.snapshot(&state);
    nodes.retain(|n| n["node"] != me["node"]);
    let now = me["at_ms"].as_u64().unwrap_or(0);
    let stale_ms = 3 * state.config.admin_stats_interval_ms;
    for n in &mut nodes {
        let stale = now.saturating_sub(n["at_ms"].as_u64().unwrap_or(0)) > stale_ms;
        n["stale"] = json!(stale);
    }
    nodes.insert(0, me);
    Ok(Json(json!({ "nodes": nodes })))
}

/// `GET /api/connections` filters.
#[derive(Deserialize)]
pub struct ConnFilter {
    #[serde(default)]
    transport: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

/// `GET /api/connections?transport=&channel=&user=`: this node's connections.
pub async fn connections(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(f): Query<ConnFilter>,
) -> Result<Json<Value>, HttpError> {
    authorize(&state, &headers)?;
    let on_channel: Option<Vec<ConnId>> = match f.channel.as_deref() {
        Some(c) => Some(state.hub.subscribers(&crate::api::channel(c)?)),
        None => None,
    };
    let all = state.hub.connections();
    let total = all.len();
    let list: Vec<Value> = all
        .into_iter()
        .filter(|(id, m)| {
            f.transport.as_deref().is_none_or(|t| m.transport.get().is_some_and(|k| k.label() == t))
                && on_channel.as_ref().is_none_or(|ids| ids.contains(id))
                && f.user.as_deref().is_none_or(|u| m.client.get().is_some_and(|c| c.user == u))
        })
        .take(MAX_LISTED)
        .map(|(id, m)| describe(&state, id, &m))
        .collect();
    Ok(Json(json!({"node": state.sampler.node(), "total": total, "connections": list})))
}

fn find(state: &AppState, id: &str) -> Result<(ConnId, Arc<crate::hub::Outbox>, Arc<ConnMeta>), HttpError> {
    let missing = || HttpError::new(ErrorCode::UnknownChannel, "no such connection on this node");
    let id: ConnId = id.parse().map_err(|_| missing())?;
    let (outbox, meta) = state.hub.connection(id).ok_or_else(missing)?;
    Ok((id, outbox, meta))
}

/// `GET /api/connections/{id}`.
pub async fn connection(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    authorize(&state, &headers)?;
    let (id, _, meta) = find(&state, &id)?;
    Ok(Json(describe(&state, id, &meta)))
}

/// `POST /api/connections/{id}/disconnect` and `/unsubscribe` body.
#[derive(Deserialize, Default)]
pub struct Action {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    channel: Option<String>,
}

/// The close code an administrator chose: 3000–4999 (3000–3499 and 4000–4499 tell the client to
/// reconnect, 3500–3999 and 4500–4999 not to; 4000–4999 are the application's).
fn chosen(code: Option<u16>, default: Disconnect) -> Result<Disconnect, HttpError> {
    match code {
        None => Ok(default),
        Some(c @ 3000..=4999) => Ok(Disconnect::new(c, default.reason)),
        _ => Err(HttpError::new(ErrorCode::BadRequest, "code must be 3000 to 4999")),
    }
}

/// `POST /api/connections/{id}/disconnect {"code"?}`: ends the connection with that code
/// (default 3505, do not reconnect).
pub async fn disconnect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<Action>>,
) -> Result<Json<Value>, HttpError> {
    authorize(&state, &headers)?;
    let action = body.map(|b| b.0).unwrap_or_default();
    let reason = chosen(action.code, Disconnect::BY_ADMIN)?;
    let (id, outbox, _) = find(&state, &id)?;
    outbox.close(reason);
    state.metrics.admin_actions.add(1);
    tracing::info!(conn = id, code = reason.code, "connection ended by an administrator");
    Ok(Json(json!({"disconnected": id.to_string(), "code": reason.code})))
}

/// `POST /api/connections/{id}/unsubscribe {"channel", "code"?}`: ends one subscription; the
/// client gets an `unsubscribed` push with the code (default 3506).
pub async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(action): Json<Action>,
) -> Result<Json<Value>, HttpError> {
    authorize(&state, &headers)?;
    let reason = chosen(action.code, Disconnect::UNSUBSCRIBED_BY_ADMIN)?;
    let channel = crate::api::channel(action.channel.as_deref().unwrap_or_default())?;
    let (id, outbox, _) = find(&state, &id)?;
    if !state.hub.subscriptions_of(id).contains(&channel) {
        return Err(HttpError::new(
            ErrorCode::NotSubscribed,
            "that connection is not subscribed to this channel here",
        ));
    }
    outbox.kick(channel.clone(), reason);
    state.metrics.admin_actions.add(1);
    Ok(Json(json!({"unsubscribed": id.to_string(), "channel": channel.as_str(), "code": reason.code})))
}
