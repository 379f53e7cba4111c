//! What runs inside a SockJS session: Switchboard itself (STOMP, or the JSON protocol when the
//! first message is a JSON object, through the same [`pump`] as every connection), or one of the
//! sockjs-protocol suite's test services (`echo`, `close`).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use switchboard_protocol::frame::{ClientInfo, parse_client_frame};
use switchboard_protocol::{ChannelName, Disconnect, sockjs};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::session::Shell;
use crate::broker::NewPublication;
use crate::config::ChannelOptions;
use crate::connection::Driver;
use crate::connection::pump::{self, Inbound, Outgoing, Transport};
use crate::hub::{Outbox, next_conn_id};
use crate::metrics::TransportKind;
use crate::model::{Delivery, Payload};
use crate::session::SessionConfig;
use crate::state::AppState;
use crate::transport::stomp::StompCodec;

/// What a service's sessions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// STOMP or the JSON protocol, on the node's channels.
    Switchboard,
    /// Sends every message back (the suite's `echo` services).
    Echo,
    /// Closes at once with `c[3000,"Go away!"]` (the suite's `close` service).
    Close,
}

/// Starts what runs inside a new session.
pub fn start(kind: Kind, state: Arc<AppState>, id: &str, shell: Arc<Shell>, rx: mpsc::Receiver<Vec<String>>) {
    match kind {
        Kind::Switchboard => {
            let inbox = inbox_channel(id);
            tokio::spawn(switchboard(state, inbox, shell, rx));
        }
        Kind::Echo => {
            tokio::spawn(echo(shell, rx));
        }
        Kind::Close => shell.close(3000, "Go away!"),
    }
}

async fn echo(shell: Arc<Shell>, mut rx: mpsc::Receiver<Vec<String>>) {
    loop {
        tokio::select! {
            messages = rx.recv() => match messages {
                Some(m) => {
                    shell.push(m.iter().map(|m| Bytes::from(sockjs::json_string(m))));
                }
                None => return,
            },
            _ = shell.wait_closed() => return,
        }
    }
}

/// The broker channel through which another node's `xhr_send` reaches session `id` here:
/// internal (`__`), so no client may name it.
pub fn inbox_channel(id: &str) -> Option<ChannelName> {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    ChannelName::new(&format!("{}sockjs.{hex}", crate::rules::INTERNAL_PREFIX)).ok()
}

/// Options of an inbox channel: nothing kept, nobody tracked.
pub fn inbox_options() -> ChannelOptions {
    ChannelOptions { history_size: 0, presence: false, client_publish: false, ..ChannelOptions::default() }
}

/// The presence entry in a session's inbox channel that tells other nodes a node holds it.
fn inbox_presence() -> Arc<ClientInfo> {
    Arc::new(ClientInfo { client: "sockjs".into(), user: String::new(), name: None })
}

/// Hands `messages` to session `id` on whichever node holds it; `false` when none does.
pub async fn forward(state: &AppState, id: &str, messages: Vec<String>) -> bool {
    let Some(inbox) = inbox_channel(id) else { return false };
    match state.broker.presence(&inbox).await {
        Ok(present) if !present.is_empty() => {}
        _ => return false,
    }
    let Ok(json) = serde_json::to_vec(&messages) else { return false };
    let request = NewPublication {
        channel: inbox,
        payload: Payload::Json(json.into()),
        info: None,
        idempotency_key: None,
        options: inbox_options(),
    };
    state.broker.publish(request).await.is_ok()
}

/// Switchboard inside a session: waits for the first message to know the protocol, then runs the
/// session through the pump. Meanwhile the session's inbox channel brings in what other nodes
/// were sent for it.
async fn switchboard(
    state: Arc<AppState>,
    inbox: Option<ChannelName>,
    shell: Arc<Shell>,
    mut rx: mpsc::Receiver<Vec<String>>,
) {
    let conn = next_conn_id();
    let outbox = Arc::new(Outbox::new(64));
    let forwarded = if let Some(inbox) = &inbox {
        let _ = state.subscribe_local(inbox, conn, outbox.clone()).await;
        Some(tokio::spawn(relay(state.clone(), inbox.clone(), outbox.clone(), shell.clone())))
    } else {
        None
    };
    // Until the pump runs, the hub cannot tell this session to go: a stop must, or its open
    // response would hold the graceful shutdown.
    let mut stopping = state.shutdown.subscribe();
    let first = tokio::select! {
        m = rx.recv() => m,
        _ = shell.wait_closed() => None,
        _ = stopping.wait_for(|stop| *stop) => {
            shell.close(Disconnect::SHUTDOWN.code, Disconnect::SHUTDOWN.reason);
            None
        }
    };
    if let Some(first) = first {
        let json = first.first().is_some_and(|m| m.trim_start().starts_with('{'));
        let (inner, config) = if json {
            (Inner::Json, SessionConfig::from_config(&state.config, false))
        } else {
            let (codec, config) = StompCodec::new(&state, None, true);
            (Inner::Stomp(Box::new(codec)), config)
        };
        let _guard = state.metrics.connection(TransportKind::Sockjs);
        let transport = SockjsTransport {
            shell: shell.clone(),
            rx,
            pending: first.into(),
            inner,
            batch: Vec::new(),
            limit: state.config.max_frame_bytes.max(64 * 1024),
        };
        pump::run(transport, Driver::with_config(state.clone(), config)).await;
    }
    shell.close(1000, "Normal closure");
    if let Some(task) = forwarded {
        task.abort();
    }
    if let Some(inbox) = &inbox {
        state.unsubscribe_local(inbox, conn);
        let _ = state.broker.presence_remove(inbox, inbox_presence(), false).await;
    }
}

/// Moves what other nodes sent through the inbox channel into the session, and keeps the
/// inbox's presence entry fresh (shared brokers expire entries a dead node stops refreshing).
async fn relay(state: Arc<AppState>, inbox: ChannelName, outbox: Arc<Outbox>, shell: Arc<Shell>) {
    let mut batch = Vec::new();
    let refresh = std::time::Duration::from_secs((state.config.presence_ttl / 3).max(1));
    let mut next_refresh = Instant::now();
    loop {
        if Instant::now() >= next_refresh {
            let _ = state.broker.presence_add(&inbox, inbox_presence(), false).await;
            next_refresh = Instant::now() + refresh;
        }
        tokio::select! {
            _ = outbox.ready() => {}
            _ = tokio::time::sleep_until(next_refresh) => continue,
        }
        let _ = outbox.take(&mut batch);
        for delivery in batch.drain(..) {
            if let Delivery::Publication(p) = delivery
                && let Payload::Json(json) = &p.payload
                && let Ok(messages) = serde_json::from_slice::<Vec<String>>(json)
                && !shell.deliver(messages).await
            {
                return;
            }
        }
    }
}

/// The protocol a session speaks inside.
enum Inner {
    Stomp(Box<StompCodec>),
    Json,
}

/// The pump's view of a SockJS session: frames go to the shell's queue, client messages come
/// from its senders.
struct SockjsTransport {
    shell: Arc<Shell>,
    rx: mpsc::Receiver<Vec<String>>,
    /// Client messages not yet read.
    pending: VecDeque<String>,
    inner: Inner,
    /// Framed messages, each a SockJS-escaped JSON string.
    batch: Vec<Bytes>,
    /// Most bytes waiting for the client before the session stops taking more (then its outbox
    /// fills and it is cut off as a slow consumer).
    limit: usize,
}

impl Transport for SockjsTransport {
    fn frame(&mut self, out: Outgoing, _datagram: bool) -> Result<(), Disconnect> {
        match &mut self.inner {
            Inner::Stomp(codec) => codec.frame(out),
            Inner::Json => {
                let escaped = match &out {
                    Outgoing::Publication(p) => p.sockjs_string().clone(),
                    other => {
                        let m = other.message();
                        Bytes::from(sockjs::json_string(&String::from_utf8_lossy(&m.bytes)))
                    }
                };
                self.batch.push(escaped);
                Ok(())
            }
        }
    }

    fn has_pending(&self) -> bool {
        !self.batch.is_empty() || matches!(&self.inner, Inner::Stomp(c) if c.has_pending())
    }

    async fn flush(&mut self) -> Result<u64, ()> {
        if let Inner::Stomp(codec) = &mut self.inner {
            for m in codec.take() {
                self.batch.push(Bytes::from(sockjs::json_string(&String::from_utf8_lossy(&m.bytes))));
            }
        }
        let bytes = self.batch.iter().map(|b| b.len() as u64).sum();
        self.shell.push(self.batch.drain(..));
        if self.shell.room(self.limit).await { Ok(bytes) } else { Err(()) }
    }

    async fn recv(&mut self) -> Inbound {
        loop {
            if let Inner::Stomp(codec) = &mut self.inner
                && let Some(inbound) = codec.next_inbound()
            {
                return inbound;
            }
            if let Some(message) = self.pending.pop_front() {
                match &mut self.inner {
                    Inner::Stomp(codec) => {
                        codec.feed(message.as_bytes());
                        continue;
                    }
                    Inner::Json if message.is_empty() => continue,
                    Inner::Json => return Inbound::Frame(parse_client_frame(&message), message.len()),
                }
            }
            let deadline = match &self.inner {
                Inner::Stomp(codec) => codec.receive_deadline(),
                Inner::Json => None,
            };
            tokio::select! {
                messages = self.rx.recv() => match messages {
                    Some(m) => {
                        if let Inner::Stomp(codec) = &mut self.inner {
                            codec.seen();
                        }
                        let bytes = m.iter().map(String::len).sum();
                        self.pending.extend(m);
                        return Inbound::Read(bytes);
                    }
                    None => return Inbound::Gone,
                },
                _ = self.shell.wait_closed() => return Inbound::Gone,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    return Inbound::End(Disconnect::NO_PONG);
                }
            }
        }
    }

    async fn close(mut self, d: Disconnect, writable: bool) {
        if writable {
            let framed = match &mut self.inner {
                Inner::Stomp(codec) => codec.closing(d),
                Inner::Json => false,
            };
            if framed {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.flush()).await;
            }
        }
        self.shell.close(d.code, d.reason);
    }
}
