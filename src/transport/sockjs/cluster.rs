//! SockJS sessions across the nodes of a cluster, with no sticky sessions: a session lives on the
//! node that opened it, and requests for it that reach another node go through the broker.
//!
//! The node holding session `ID` subscribes to the internal channel `__sockjs.HEX(ID)` (its
//! inbox; `__` channels are no client's) and keeps a presence entry there, which is how other
//! nodes know that some node holds it. Through the inbox come:
//! - a send's messages (`["m1","m2"]`), from a node that got the `xhr_send` or `jsonp_send`;
//! - `{"attach": {"reply", "limit"}}` from a node that got a receiving request (a poll, a stream):
//!   the holder attaches a receiver for it and publishes the frames it takes to that node's
//!   `reply` channel (`{"frame": "a[...]"}`, then `"end"` after one frame for a poll, or after
//!   `limit` bytes for a stream, or at the close frame);
//! - `{"abort": {"reply"}}` when that request's client went away: as for a local request, the
//!   session then closes with 1002.
//!
//! Inbox and reply channels keep no history; ordering per channel is the broker's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_protocol::ChannelName;
use switchboard_protocol::frame::ClientInfo;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::session::Shell;
use crate::broker::NewPublication;
use crate::config::ChannelOptions;
use crate::hub::{ConnId, Outbox, Taken, next_conn_id};
use crate::model::{Delivery, Payload};
use crate::state::AppState;

/// Deliveries an inbox or reply channel may queue on a node before it is cut off.
const QUEUE: usize = 256;

/// What a session's inbox carries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum ToHolder {
    Messages(Vec<String>),
    Control(Control),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Control {
    Attach { reply: String, limit: usize },
    Abort { reply: String },
}

/// What a reply channel carries.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ToReceiver {
    Frame(String),
    End,
}

/// The inbox channel of session `id`.
fn inbox(id: &str) -> Option<ChannelName> {
    let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
    ChannelName::new(&format!("{}sockjs.{hex}", crate::rules::INTERNAL_PREFIX)).ok()
}

/// Options of the internal channels: nothing kept, nobody tracked.
fn options() -> ChannelOptions {
    ChannelOptions { history_size: 0, presence: false, client_publish: false, ..ChannelOptions::default() }
}

/// The presence entry in an inbox that says some node holds the session.
fn holder() -> Arc<ClientInfo> {
    Arc::new(ClientInfo { client: "sockjs".into(), user: String::new(), name: None })
}

async fn publish(state: &AppState, channel: ChannelName, body: &impl Serialize) -> bool {
    let Ok(json) = serde_json::to_vec(body) else { return false };
    let request = NewPublication {
        channel,
        payload: Payload::Json(json.into()),
        info: None,
        idempotency_key: None,
        options: options(),
    };
    state.broker.publish(request).await.is_ok()
}

/// What this node learned of the sessions other nodes hold. Asking the broker's presence for
/// every request would cost a lookup each (on NATS, a consumer), so a positive answer is kept
/// for [`Directory::KEEP`] (a second); a session that closed meanwhile loses what was sent to it then, as
/// it would have on its own node.
#[derive(Default)]
pub struct Directory {
    known: parking_lot::Mutex<HashMap<String, Instant>>,
}

impl Directory {
    /// How long a node is believed to hold a session after the broker said so.
    const KEEP: Duration = Duration::from_secs(1);
    /// The longest a lookup may take; a broker slower than that is taken to know of none.
    const LOOKUP: Duration = Duration::from_secs(2);
    /// Most entries kept.
    const MOST: usize = 10_000;

    /// Whether a node (another one, when this one has no such session) holds session `id`.
    pub async fn held(&self, state: &AppState, id: &str) -> bool {
        let now = Instant::now();
        if self.known.lock().get(id).is_some_and(|until| *until > now) {
            return true;
        }
        let Some(inbox) = inbox(id) else { return false };
        let present = tokio::time::timeout(Self::LOOKUP, state.broker.presence(&inbox)).await;
        let held = matches!(present, Ok(Ok(p)) if !p.is_empty());
        let mut known = self.known.lock();
        if known.len() >= Self::MOST {
            known.retain(|_, until| *until > now);
        }
        if held && known.len() < Self::MOST {
            known.insert(id.to_owned(), now + Self::KEEP);
        }
        held
    }

    /// Hands `messages` to session `id` on whichever node holds it; `false` when none does.
    pub async fn forward(&self, state: &AppState, id: &str, messages: Vec<String>) -> bool {
        match inbox(id) {
            Some(inbox) if self.held(state, id).await => {
                publish(state, inbox, &ToHolder::Messages(messages)).await
            }
            _ => false,
        }
    }
}

/// This node holds a session: what others send it reaches it until [`Membership::leave`].
pub struct Membership {
    state: Arc<AppState>,
    inbox: ChannelName,
    conn: ConnId,
    task: tokio::task::JoinHandle<()>,
}

impl Membership {
    /// Subscribes to session `id`'s inbox and says this node holds it.
    pub async fn join(state: &Arc<AppState>, id: &str, shell: Arc<Shell>) -> Option<Membership> {
        let inbox = inbox(id)?;
        let conn = next_conn_id();
        let outbox = Arc::new(Outbox::new(QUEUE, usize::MAX));
        state.subscribe_local(&inbox, conn, outbox.clone()).await.ok()?;
        // Findable before the session is announced to its client (the relay refreshes it).
        let _ = state.broker.presence_add(&inbox, holder(), false).await;
        let task = tokio::spawn(relay(state.clone(), inbox.clone(), outbox, shell));
        Some(Membership { state: state.clone(), inbox, conn, task })
    }

    /// The session ended: other nodes stop finding it.
    pub async fn leave(self) {
        self.task.abort();
        self.state.unsubscribe_local(&self.inbox, self.conn);
        let _ = self.state.broker.presence_remove(&self.inbox, holder(), false).await;
    }
}

/// Takes what comes through the inbox (sends, attachments of other nodes' receiving requests),
/// and keeps the presence entry fresh (shared brokers expire what a dead node stops refreshing).
async fn relay(state: Arc<AppState>, inbox: ChannelName, outbox: Arc<Outbox>, shell: Arc<Shell>) {
    let mut batch = Vec::new();
    let refresh = Duration::from_secs((state.config.presence_ttl / 3).max(1));
    let mut next_refresh = Instant::now() + refresh;
    let mut aborts: HashMap<String, oneshot::Sender<()>> = HashMap::new();
    loop {
        if Instant::now() >= next_refresh {
            let _ = state.broker.presence_add(&inbox, holder(), false).await;
            next_refresh = Instant::now() + refresh;
        }
        tokio::select! {
            _ = outbox.ready() => {}
            _ = tokio::time::sleep_until(next_refresh) => continue,
        }
        if outbox.take(&mut batch) != Taken::Ok {
            // Lost deliveries: what was sent may be gone, as when a request breaks.
            let (code, reason) = super::session::INTERRUPTED;
            return shell.close(code, reason);
        }
        for delivery in batch.drain(..) {
            let Delivery::Publication(p) = delivery else { continue };
            let Payload::Json(json) = &p.payload else { continue };
            match serde_json::from_slice::<ToHolder>(json) {
                Ok(ToHolder::Messages(m)) => {
                    if !shell.deliver(m).await {
                        return;
                    }
                }
                Ok(ToHolder::Control(Control::Attach { reply, limit })) => {
                    let (tx, rx) = oneshot::channel();
                    aborts.retain(|_, tx| !tx.is_closed());
                    aborts.insert(reply.clone(), tx);
                    tokio::spawn(serve_remote(state.clone(), shell.clone(), reply, limit, rx));
                }
                Ok(ToHolder::Control(Control::Abort { reply })) => {
                    if let Some(tx) = aborts.remove(&reply) {
                        let _ = tx.send(());
                    }
                }
                Err(_) => {}
            }
        }
    }
}

/// Serves another node's receiving request: frames taken here go to its `reply` channel.
async fn serve_remote(
    state: Arc<AppState>,
    shell: Arc<Shell>,
    reply: String,
    limit: usize,
    mut abort: oneshot::Receiver<()>,
) {
    let Ok(channel) = ChannelName::new(&reply) else { return };
    if !reply.starts_with(crate::rules::INTERNAL_PREFIX) {
        return;
    }
    let heartbeat = Duration::from_millis(state.config.sockjs_heartbeat_ms.max(1));
    let mut receiver = match shell.attach() {
        Ok(r) => r,
        Err(closed) => {
            let frame = closed.frame();
            publish(&state, channel.clone(), &ToReceiver::Frame(String::from_utf8_lossy(&frame).into()))
                .await;
            publish(&state, channel, &ToReceiver::End).await;
            return;
        }
    };
    let mut sent = 0;
    loop {
        let next = tokio::select! {
            next = receiver.next(heartbeat) => next,
            // The client went away (or the relay did): drop the receiver unfinished.
            _ = &mut abort => return,
        };
        let (frame, closed) = next.into_frame();
        sent += frame.len();
        let text = String::from_utf8_lossy(&frame).into_owned();
        if !publish(&state, channel.clone(), &ToReceiver::Frame(text)).await {
            return;
        }
        if closed || sent >= limit {
            receiver.finish();
            publish(&state, channel, &ToReceiver::End).await;
            return;
        }
    }
}

/// A receiving request on this node for a session another node holds: the frames come through
/// its own reply channel. Dropped before the end (its client went away), it tells the holder.
pub struct RemoteReceiver {
    state: Arc<AppState>,
    inbox: ChannelName,
    reply: ChannelName,
    conn: ConnId,
    outbox: Arc<Outbox>,
    batch: Vec<Delivery>,
    /// Frames received but not yet handed out.
    frames: std::collections::VecDeque<String>,
    ended: bool,
}

impl RemoteReceiver {
    /// Attaches to session `id` on the node holding it, for at most `limit` bytes of frames (a
    /// poll: 1, one frame).
    pub async fn attach(state: &Arc<AppState>, id: &str, limit: usize) -> Option<RemoteReceiver> {
        let inbox = inbox(id)?;
        let name = format!("{}sockjs.r.{:016x}", crate::rules::INTERNAL_PREFIX, rand::random::<u64>());
        let reply = ChannelName::new(&name).ok()?;
        let conn = next_conn_id();
        let outbox = Arc::new(Outbox::new(QUEUE, usize::MAX));
        // Subscribed before asking, so that no frame can come before we listen.
        state.subscribe_local(&reply, conn, outbox.clone()).await.ok()?;
        let mut r = RemoteReceiver {
            state: state.clone(),
            inbox: inbox.clone(),
            reply,
            conn,
            outbox,
            batch: Vec::new(),
            frames: Default::default(),
            ended: false,
        };
        let attach = ToHolder::Control(Control::Attach { reply: name, limit });
        if !publish(state, inbox, &attach).await {
            r.ended = true;
            return None;
        }
        Some(r)
    }

    /// The next frame, or `None` at the end (or if the holder went quiet for `patience`).
    pub async fn next(&mut self, patience: Duration) -> Option<String> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some(frame);
            }
            if self.ended {
                return None;
            }
            if self.outbox.take(&mut self.batch) != Taken::Ok {
                self.ended = true;
                return None;
            }
            for delivery in self.batch.drain(..) {
                let Delivery::Publication(p) = delivery else { continue };
                let Payload::Json(json) = &p.payload else { continue };
                match serde_json::from_slice::<ToReceiver>(json) {
                    Ok(ToReceiver::Frame(f)) => self.frames.push_back(f),
                    Ok(ToReceiver::End) => self.ended = true,
                    Err(_) => {}
                }
            }
            if !self.frames.is_empty() || self.ended {
                continue;
            }
            tokio::select! {
                _ = self.outbox.ready() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }
}

impl Drop for RemoteReceiver {
    fn drop(&mut self) {
        self.state.unsubscribe_local(&self.reply, self.conn);
        if !self.ended {
            let (state, inbox) = (self.state.clone(), self.inbox.clone());
            let abort = ToHolder::Control(Control::Abort { reply: self.reply.to_string() });
            tokio::spawn(async move { publish(&state, inbox, &abort).await });
        }
    }
}
