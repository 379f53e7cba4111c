//! `/lab/control`: one lab session per WebSocket, JSON commands with an `id` echoed in the
//! reply (docs/lab.md):
//! `{"op":"pub","n":N,"size":BYTES}` publishes `{"n":N,"pad":"..."}` on the session's channel;
//! `{"op":"stats"}` answers the session's counters; `{"op":"drop"}` closes every connection
//! of the session; `{"op":"impair","delay_ms","jitter_ms","loss"}` sets the impairment.
//! The control socket itself is not in the session: it is neither counted nor impaired.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard_protocol::{ChannelName, ErrorCode};

use super::{Impairment, Lab, Session};
use crate::broker::NewPublication;
use crate::http::HttpError;
use crate::model::Payload;
use crate::state::AppState;

/// The largest padding a `pub` may ask for.
const MAX_PAD: usize = 16 * 1024;

/// Upgrades to a control socket, or `503` with code 106 when `lab_max_sessions` are open.
pub async fn handler(
    State(state): State<Arc<AppState>>,
    Extension(lab): Extension<Arc<Lab>>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(session) = lab.open() else {
        let mut e = HttpError::new(ErrorCode::LimitExceeded, "too many lab sessions (lab_max_sessions)");
        e.status = Some(axum::http::StatusCode::SERVICE_UNAVAILABLE);
        return e.into_response();
    };
    ws.on_upgrade(move |socket| run(state, session, socket))
}

async fn run(state: Arc<AppState>, session: Session, mut socket: WebSocket) {
    let channel = format!("lab:{}", session.id);
    let hello = json!({
        "session": session.id, "channel": channel,
        "max_delay_ms": session.lab.max_delay_ms, "rto_ms": super::RTO.as_millis() as u64,
    });
    if socket.send(Message::Text(hello.to_string().into())).await.is_err() {
        return;
    }
    let Ok(name) = ChannelName::new(&channel) else { return };
    let options = state.config.channel_options(&name).clone();
    let mut shutdown = state.shutdown.subscribe();
    loop {
        let message = tokio::select! {
            m = socket.recv() => m,
            _ = shutdown.changed() => return,
        };
        let text = match message {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        };
        let reply = match serde_json::from_str::<Value>(text.as_str()) {
            Ok(cmd) => command(&state, &session, &name, &options, &cmd).await,
            Err(e) => error(&Value::Null, ErrorCode::BadRequest, format!("not JSON: {e}")),
        };
        if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
            return;
        }
    }
}

fn error(id: &Value, code: ErrorCode, message: impl Into<String>) -> Value {
    json!({"id": id, "error": {"code": code.code(), "message": message.into()}})
}

async fn command(
    state: &AppState,
    session: &Session,
    channel: &ChannelName,
    options: &crate::config::ChannelOptions,
    cmd: &Value,
) -> Value {
    let id = cmd.get("id").cloned().unwrap_or(Value::Null);
    let meter = &session.meter;
    match cmd.get("op").and_then(Value::as_str) {
        Some("pub") => {
            let n = cmd.get("n").and_then(Value::as_u64).unwrap_or(0);
            let size = cmd.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
            if size > MAX_PAD {
                return error(&id, ErrorCode::LimitExceeded, format!("size is at most {MAX_PAD}"));
            }
            let data = json!({"n": n, "pad": "x".repeat(size)});
            let request = NewPublication {
                channel: channel.clone(),
                payload: Payload::Json(data.to_string().into()),
                info: None,
                idempotency_key: None,
                options: options.clone(),
            };
            match state.publish(request).await {
                Ok(r) => json!({"id": id, "offset": r.offset}),
                Err(e) => error(&id, ErrorCode::BrokerUnavailable, e.to_string()),
            }
        }
        Some("stats") => json!({"id": id, "stats": meter.snapshot()}),
        Some("drop") => {
            meter.drop_all();
            session.lab.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            json!({"id": id, "dropped": true})
        }
        Some("impair") => {
            let max = session.lab.max_delay_ms;
            let ms = |k: &str| cmd.get(k).and_then(Value::as_u64).unwrap_or(0);
            let loss = cmd.get("loss").and_then(Value::as_f64).unwrap_or(0.0);
            if ms("delay_ms") > max || ms("jitter_ms") > max || !(0.0..=0.5).contains(&loss) {
                return error(
                    &id,
                    ErrorCode::BadRequest,
                    format!("delay_ms and jitter_ms are at most {max} (lab_max_delay_ms), loss in 0..0.5"),
                );
            }
            meter.set_impairment(Impairment {
                delay: Duration::from_millis(ms("delay_ms")),
                jitter: Duration::from_millis(ms("jitter_ms")),
                loss,
            });
            json!({"id": id, "stats": meter.snapshot()})
        }
        _ => error(&id, ErrorCode::MethodNotFound, "op is one of pub, stats, drop, impair"),
    }
}
