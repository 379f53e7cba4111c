//! What runs inside a SockJS session: Switchboard itself (STOMP, or the JSON protocol when the
//! first message is a JSON object, through the same [`pump`] as every connection), or one of the
//! sockjs-protocol suite's test services (`echo`, `close`).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use switchboard_protocol::frame::parse_client_frame;
use switchboard_protocol::{Disconnect, sockjs};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::cluster::Membership;
use super::session::Shell;
use crate::admission::Ticket;
use crate::connection::Driver;
use crate::connection::pump::{self, Inbound, Outgoing, Transport};
use crate::metrics::TransportKind;
use crate::session::SessionConfig;
use crate::state::AppState;
use crate::transport::stomp::StompCodec;

/// The id prefix of sessions carried by a WebSocket (`/websocket`, `SESSION/websocket`).
pub const WEBSOCKET_SESSION: &str = "ws-";

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
/// `permit` is the session's place in the node's connection limits, held while it lives. For
/// Switchboard sessions, the answer says when every node can reach the session (its open frame
/// waits for that, or a client's first send through another node could miss it).
pub fn start(
    kind: Kind,
    state: Arc<AppState>,
    id: &str,
    shell: Arc<Shell>,
    rx: mpsc::Receiver<Vec<String>>,
    permit: Option<Ticket>,
) -> Option<oneshot::Receiver<()>> {
    match kind {
        Kind::Switchboard => {
            let id = id.to_owned();
            let (reachable, ready) = oneshot::channel();
            tokio::spawn(async move {
                switchboard(state, id, shell, rx, reachable, permit).await;
            });
            return Some(ready);
        }
        Kind::Echo => {
            tokio::spawn(echo(shell, rx));
        }
        Kind::Close => shell.close(3000, "Go away!"),
    }
    None
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

/// Switchboard inside a session: waits for the first message to know the protocol, then runs the
/// session through the pump. Meanwhile the session's inbox channel brings in what other nodes
/// were sent for it.
async fn switchboard(
    state: Arc<AppState>,
    id: String,
    shell: Arc<Shell>,
    mut rx: mpsc::Receiver<Vec<String>>,
    reachable: oneshot::Sender<()>,
    ticket: Option<Ticket>,
) {
    // WebSocket sessions are their socket's alone: no other node needs to find them.
    let membership = match id.starts_with(WEBSOCKET_SESSION) {
        true => None,
        false => Membership::join(&state, &id, shell.clone()).await,
    };
    let _ = reachable.send(());
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
        let driver = Driver::with_config(state.clone(), config).on(TransportKind::Sockjs);
        let driver = match ticket {
            Some(ticket) => driver.admitted(ticket),
            None => driver,
        };
        pump::run(transport, driver).await;
    }
    shell.close(1000, "Normal closure");
    if let Some(membership) = membership {
        membership.leave().await;
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
    fn kind(&self) -> crate::metrics::TransportKind {
        crate::metrics::TransportKind::Sockjs
    }

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

    async fn close(mut self, d: Disconnect) {
        let framed = match &mut self.inner {
            Inner::Stomp(codec) => codec.closing(d),
            Inner::Json => false,
        };
        if framed {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.flush()).await;
        }
        self.shell.close(d.code, d.reason);
    }
}
