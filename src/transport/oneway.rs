//! `/sse` and `/stream`: one-way streams of a session. The request carries the channels and the
//! cursor; the response carries every event, and on SSE an `id:` with the cursor of every channel
//! after it, so the browser's own reconnect (`Last-Event-ID`) resumes without loss. The server
//! keeps nothing once the response ends: no sticky sessions are needed.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use switchboard_protocol::frame::{ClientFrame, Command, ConnectRequest, Reply, ReplyBody, SubscribeRequest};
use switchboard_protocol::{ChannelName, Cursor, Disconnect, ErrorCode};
use tokio::sync::mpsc;

use super::OneWayParams;
use super::driver::Driver;
use crate::http::HttpError;
use crate::metrics::Transport;
use crate::model::Delivery;
use crate::server::AppState;
use crate::session::Output;

/// The framing of a one-way stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Sse,
    Ndjson,
}

/// `GET /sse`.
pub async fn sse(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    open(state, query, headers, Format::Sse).await
}

/// `GET /stream`.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    open(state, query, headers, Format::Ndjson).await
}

async fn open(state: Arc<AppState>, query: Option<String>, headers: HeaderMap, format: Format) -> Response {
    let params = match OneWayParams::parse(query.as_deref(), &headers, state.config.max_subscriptions) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let Ok(permit) = state.admission.clone().try_acquire_owned() else {
        return HttpError::connection_limit().into_response();
    };
    let mut driver = Driver::new(state.clone(), false);
    let connect = ConnectRequest { token: params.token, name: params.name, session: params.session };
    driver.on_frame(Ok(ClientFrame::Command { id: 1, command: Command::Connect(connect) }));
    for (i, channel) in params.channels.iter().enumerate() {
        let since = params.cursor.get(channel.as_str()).cloned();
        let request = SubscribeRequest { channel: channel.to_string(), since, datagram: false };
        driver.on_frame(Ok(ClientFrame::Command { id: i as u64 + 2, command: Command::Subscribe(request) }));
    }
    // Refusals (token, permissions) come before the first byte: answer them as HTTP errors. The
    // subscriptions wait for `connect` to claim the client id (a session may reclaim one).
    let mut first = Vec::new();
    loop {
        while let Some(output) = driver.next_output() {
            if let Some(refusal) = refusal(&output, &params.channels) {
                driver.finish();
                return refusal.into_response();
            }
            first.push(output);
        }
        if !driver.connecting() {
            break;
        }
        let wake = driver.wait().await;
        driver.on_wake(wake);
    }
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let transport = if format == Format::Sse { Transport::Sse } else { Transport::Stream };
    let guard = state.metrics.connection(transport);
    let mut writer = Writer {
        format,
        cursor: params.cursor,
        buf: BytesMut::new(),
        heartbeat: state.config.heartbeat_interval,
    };
    if format == Format::Sse {
        writer.buf.put_slice(format!("retry: {}\n\n", state.config.sse_retry_ms).as_bytes());
    }
    tokio::spawn(async move {
        run(driver, writer, first, tx).await;
        drop((guard, permit));
    });
    let content_type = match format {
        Format::Sse => "text/event-stream",
        Format::Ndjson => "application/x-ndjson",
    };
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    }));
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// The HTTP error an output stands for, when it refuses the connection or a channel.
fn refusal(output: &Output, channels: &[ChannelName]) -> Option<HttpError> {
    match output {
        Output::Disconnect(d) => Some(HttpError::new(
            if *d == Disconnect::UNAUTHORIZED || *d == Disconnect::TOKEN_EXPIRED {
                ErrorCode::Unauthorized
            } else {
                ErrorCode::BadRequest
            },
            d.reason,
        )),
        Output::Reply(Reply { id, body: ReplyBody::Error(e) }) => {
            let channel = channels.get((*id as usize).saturating_sub(2)).map_or("", |c| c.as_str());
            let code = ErrorCode::from_code(e.code).unwrap_or(ErrorCode::Internal);
            Some(HttpError::new(code, format!("channel {channel}: {}", e.message)))
        }
        _ => None,
    }
}

async fn run(mut driver: Driver, mut writer: Writer, first: Vec<Output>, tx: mpsc::Sender<Bytes>) {
    let metrics = driver.state().metrics.clone();
    let mut pending = first;
    loop {
        let mut ended = false;
        let mut events = 0u64;
        for output in pending.drain(..).chain(std::iter::from_fn(|| driver.next_output())) {
            events += 1;
            if !writer.write(output) {
                ended = true;
                break;
            }
        }
        if !writer.buf.is_empty() {
            let chunk = writer.buf.split().freeze();
            metrics.messages_out.add(events);
            metrics.bytes_out.add(chunk.len() as u64);
            tokio::select! {
                sent = tx.send(chunk) => if sent.is_err() {
                    break;
                },
                // The client stopped reading and its outbox overflowed meanwhile.
                _ = driver.cut_off() => {
                    metrics.slow_consumers.add(1);
                    break;
                }
            }
        }
        if ended {
            break;
        }
        tokio::select! {
            wake = driver.wait() => driver.on_wake(wake),
            _ = tx.closed() => break,
        }
    }
    driver.finish();
}

struct Writer {
    format: Format,
    cursor: Cursor,
    buf: BytesMut,
    heartbeat: u64,
}

impl Writer {
    /// Frames one output; `false` when the stream must end.
    fn write(&mut self, output: Output) -> bool {
        match output {
            Output::Reply(Reply { body: ReplyBody::Connect(c), .. }) => {
                let body = serde_json::json!({"client": c.client, "session": c.session, "heartbeat": self.heartbeat});
                self.event("connected", None, &body.to_string());
            }
            Output::Reply(Reply { body: ReplyBody::Subscribe(s), .. }) => {
                self.cursor.advance(&s.channel, &s.epoch, s.offset);
                let json = serde_json::to_string(&s).unwrap_or_default();
                let id = self.cursor.encode();
                self.event("subscribed", Some(&id), &json);
            }
            Output::Reply(_) | Output::History { .. } | Output::Op(..) => {
                // A late refusal can only be the broker failing a subscription.
                return self.disconnect(Disconnect::BROKER_UNAVAILABLE);
            }
            Output::Deliver(Delivery::Publication(p)) => {
                self.cursor.advance(p.channel.as_str(), &p.epoch, p.offset);
                match self.format {
                    Format::Sse => {
                        self.buf.put_slice(p.sse_data());
                        self.buf.put_slice(b"id: ");
                        self.buf.put_slice(self.cursor.encode().as_bytes());
                        self.buf.put_slice(b"\n\n");
                    }
                    Format::Ndjson => self.buf.put_slice(p.ndjson_line()),
                }
            }
            Output::Deliver(Delivery::Presence(e)) => match self.format {
                Format::Sse => {
                    self.buf.put_slice(e.sse_event());
                    self.buf.put_slice(b"\n");
                }
                Format::Ndjson => self.buf.put_slice(e.ndjson_line()),
            },
            Output::Ping => match self.format {
                Format::Sse => self.buf.put_slice(b": ping\n\n"),
                Format::Ndjson => self.buf.put_slice(b"{\"ping\":{}}\n"),
            },
            Output::Disconnect(d) => return self.disconnect(d),
        }
        true
    }

    fn disconnect(&mut self, d: Disconnect) -> bool {
        let body = serde_json::json!({"code": d.code, "reason": d.reason}).to_string();
        self.event("disconnect", None, &body);
        false
    }

    fn event(&mut self, name: &str, id: Option<&str>, json: &str) {
        match self.format {
            Format::Sse => {
                if let Some(id) = id {
                    self.buf.put_slice(format!("id: {id}\n").as_bytes());
                }
                self.buf.put_slice(format!("event: {name}\ndata: {json}\n\n").as_bytes());
            }
            Format::Ndjson => self.buf.put_slice(format!("{{\"{name}\":{json}}}\n").as_bytes()),
        }
    }
}
