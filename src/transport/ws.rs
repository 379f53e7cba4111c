//! `/ws`: the JSON protocol over WebSocket. Frames in become session input; session output
//! becomes frames, fed to the socket in a batch and flushed once, so a burst of publications for
//! one connection costs one write.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use futures_util::SinkExt;
use switchboard_protocol::WS_SUBPROTOCOL;
use switchboard_protocol::frame::{parse_binary_frame, parse_client_frame};

use super::driver::Driver;
use crate::broker::StreamTop;
use crate::http::HttpError;
use crate::metrics::Transport;
use crate::model::{Delivery, Publication};
use crate::server::AppState;
use crate::session::Output;

/// Read buffer per connection: small, because most connections are idle subscribers sending
/// small commands (tungstenite grows it for a larger frame). Measured: 4 KiB → 1 KiB took an idle
/// subscribed connection from 9.6 to 6.6 KiB of RSS, and tungstenite zero-fills it per read.
const READ_BUFFER: usize = 1024;

fn configure(ws: WebSocketUpgrade, state: &AppState) -> WebSocketUpgrade {
    let max = state.config.max_frame_bytes;
    ws.read_buffer_size(READ_BUFFER).max_message_size(max).max_frame_size(max)
}

fn foreign_origin() -> Response {
    let m = "this page's origin may not open WebSockets here: add it to allowed_origins";
    HttpError::new(switchboard_protocol::ErrorCode::PermissionDenied, m).into_response()
}

/// `GET /ws`.
pub async fn handler(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !crate::http::origin_allowed(&state.config, origin, host) {
        return foreign_origin();
    }
    let Ok(permit) = state.admission.clone().try_acquire_owned() else {
        return HttpError::connection_limit().into_response();
    };
    configure(ws, &state).protocols([WS_SUBPROTOCOL]).on_upgrade(move |socket| async move {
        let _guard = state.metrics.connection(Transport::WebSocket);
        run(socket, Driver::new(state.clone(), true)).await;
        drop(permit);
    })
}

async fn run(mut socket: WebSocket, mut driver: Driver) {
    let metrics = driver.state().metrics.clone();
    let mut batch: Vec<Message> = Vec::new();
    loop {
        let mut bytes = 0u64;
        let mut oldest = None;
        let mut disconnect = None;
        while let Some(output) = driver.next_output() {
            let message = match output {
                Output::Reply(reply) => Message::Text(reply.to_json().into()),
                Output::History { id, top, publications } => {
                    Message::Text(history_reply(id, &top, &publications))
                }
                Output::Deliver(Delivery::Publication(p)) => {
                    oldest.get_or_insert(p.published_at);
                    p.ws_message().clone()
                }
                Output::Deliver(Delivery::Presence(e)) => e.ws_message(),
                Output::Ping => Message::Text(Utf8Bytes::from_static("{\"ping\":{}}")),
                Output::Disconnect(d) => {
                    disconnect = Some(d);
                    break;
                }
                Output::Op(..) => continue,
            };
            bytes += message_len(&message) as u64;
            batch.push(message);
        }
        if !batch.is_empty() {
            let written = batch.len() as u64;
            // A consumer whose socket stays blocked while its outbox overflows is cut off here:
            // it cannot even be sent a close frame. Its client resumes from history.
            tokio::select! {
                result = write_all(&mut socket, &mut batch) => if result.is_err() {
                    return driver.finish();
                },
                _ = driver.cut_off() => {
                    metrics.slow_consumers.add(1);
                    return driver.finish();
                }
            }
            metrics.messages_out.add(written);
            metrics.bytes_out.add(bytes);
            if let Some(at) = oldest {
                metrics.fanout_latency.observe(at.elapsed());
            }
        }
        if let Some(d) = disconnect {
            driver.finish();
            return close(socket, d.code, d.reason).await;
        }
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    metrics.bytes_in.add(text.len() as u64);
                    driver.on_frame(parse_client_frame(text.as_str()));
                }
                Some(Ok(Message::Binary(data))) => {
                    metrics.bytes_in.add(data.len() as u64);
                    driver.on_frame(parse_binary_frame(&data));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    // tungstenite queued the answering close frame; send it before going.
                    let _ = socket.flush().await;
                    return driver.finish();
                }
                None => return driver.finish(),
                Some(Err(e)) => {
                    driver.finish();
                    // Oversize messages end with the standard 1009; a broken socket just ends.
                    if is_too_big(e) {
                        close(socket, 1009, "message too big").await;
                    }
                    return;
                }
            },
            wake = driver.wait() => driver.on_wake(wake),
        }
    }
}

/// Feeds every message (tungstenite buffers them) and flushes once: one write for the batch.
async fn write_all(socket: &mut WebSocket, batch: &mut Vec<Message>) -> Result<(), axum::Error> {
    for message in batch.drain(..) {
        socket.feed(message).await?;
    }
    socket.flush().await
}

/// Sends a close frame and waits (briefly) for the client's answer, as RFC 6455 asks.
async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

fn is_too_big(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    matches!(e.into_inner().downcast::<Error>().as_deref(), Ok(Error::Capacity(_)))
}

fn message_len(m: &Message) -> usize {
    match m {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        _ => 0,
    }
}

/// `{"id":N,"history":{"epoch":E,"offset":O,"publications":[...]}}`, reusing each publication's
/// shared encoding.
pub fn history_reply(id: u64, top: &StreamTop, publications: &[Arc<Publication>]) -> Utf8Bytes {
    let mut buf =
        BytesMut::with_capacity(64 + publications.iter().map(|p| p.object().len() + 1).sum::<usize>());
    buf.put_slice(format!("{{\"id\":{id},\"history\":").as_bytes());
    put_history_body(&mut buf, top, publications);
    buf.put_slice(b"}");
    Utf8Bytes::from(String::from_utf8_lossy(&buf).into_owned())
}

/// `{"epoch":E,"offset":O,"publications":[...]}`, the body shared with `GET /api/history`.
pub fn put_history_body(buf: &mut BytesMut, top: &StreamTop, publications: &[Arc<Publication>]) {
    let head = serde_json::json!({"epoch": &*top.epoch, "offset": top.offset}).to_string();
    buf.put_slice(&head.as_bytes()[..head.len() - 1]);
    buf.put_slice(b",\"publications\":[");
    for (i, p) in publications.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(p.object());
    }
    buf.put_slice(b"]}");
}

/// `GET /ws-echo`: a plain echo server on the same WebSocket stack as `/ws`, for the Autobahn
/// conformance suite. Only routed when `ws_echo_endpoint` is set.
pub async fn echo_handler(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
    let max = state.config.max_frame_bytes.max(16 * 1024 * 1024);
    ws.max_message_size(max).max_frame_size(max).on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            let reply = match message {
                Message::Text(_) | Message::Binary(_) => message,
                Message::Close(_) => {
                    let _ = socket.flush().await;
                    break;
                }
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}
