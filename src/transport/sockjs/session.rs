//! A SockJS session's shell: what outlives the HTTP requests that carry it. Messages for the
//! client wait in its queue until a receiving request (a poll, a stream, a WebSocket) takes them;
//! messages from the client (`xhr_send`, `jsonp_send`, the broker for another node's sends) go to
//! whatever runs inside ([`super::app`]). One receiving request at a time; a session with none
//! for `sockjs_disconnect_delay_ms` is closed, and a closed one answers what it still held, then
//! its close frame, that long before it is forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use switchboard_protocol::sockjs;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// How many client payloads may wait for the app before senders wait.
const INBOUND_QUEUE: usize = 64;

/// Why a session was closed, as its `c[code,"reason"]` frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code.
    pub code: u16,
    /// The reason.
    pub reason: String,
}

impl Closed {
    /// The `c[code,"reason"]` frame.
    pub fn frame(&self) -> Vec<u8> {
        sockjs::close(self.code, &self.reason)
    }
}

/// A receiving request found the session already served by another.
pub const ANOTHER_CONNECTION: (u16, &str) = (2010, "Another connection still open");
/// A receiving request went away before it was answered: messages may be lost, the session ends.
pub const INTERRUPTED: (u16, &str) = (1002, "Connection interrupted");

/// See the module docs.
pub struct Shell {
    state: Mutex<ShellState>,
    /// Frames were queued, or the session closed: for the receiving request.
    to_receiver: Notify,
    /// The queue was drained, or the session closed: for the app.
    to_app: Notify,
    inbound: mpsc::Sender<Vec<String>>,
}

struct ShellState {
    /// Messages for the client, each already a SockJS-escaped JSON string.
    queue: Vec<Bytes>,
    queued_bytes: usize,
    /// The receiving request attached now.
    receiver: Option<u64>,
    next_receiver: u64,
    closed: Option<Closed>,
    /// Since when no receiving request was attached, or the session closed.
    idle_since: Instant,
}

/// What a receiving request found.
pub enum Attach {
    /// A new session: send the open frame first.
    Opened(Receiver),
    /// An existing session, now this request's.
    Attached(Receiver),
    /// The session is served by another request, or closed: send this close frame and end.
    Refused(Closed),
}

/// What a receiving request sends next.
pub enum Next {
    /// Messages for an `a[...]` frame.
    Messages(Vec<Bytes>),
    /// Nothing for a heartbeat's time: an `h` frame.
    Heartbeat,
    /// The session is closed: its close frame.
    Closed(Closed),
}

impl Next {
    /// The SockJS frame for it, and whether it closes the session.
    pub fn into_frame(self) -> (Vec<u8>, bool) {
        match self {
            Next::Messages(m) => (sockjs::array(m.iter().map(|b| b.as_ref())), false),
            Next::Heartbeat => (sockjs::HEARTBEAT.to_vec(), false),
            Next::Closed(c) => (c.frame(), true),
        }
    }
}

impl Shell {
    /// A new session's shell, and the client's messages for what runs inside. A registry's, or
    /// a WebSocket's own (its id may be reused by another socket at the same time).
    pub fn new() -> (Arc<Self>, mpsc::Receiver<Vec<String>>) {
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let state = ShellState {
            queue: Vec::new(),
            queued_bytes: 0,
            receiver: None,
            next_receiver: 1,
            closed: None,
            idle_since: Instant::now(),
        };
        let shell = Shell {
            state: Mutex::new(state),
            to_receiver: Notify::new(),
            to_app: Notify::new(),
            inbound: tx,
        };
        (Arc::new(shell), rx)
    }

    /// Queues messages for the client (each a SockJS-escaped JSON string); the queue's size after.
    pub fn push(&self, messages: impl IntoIterator<Item = Bytes>) -> usize {
        let mut s = self.state.lock();
        if s.closed.is_some() {
            return s.queued_bytes;
        }
        for m in messages {
            s.queued_bytes += m.len();
            s.queue.push(m);
        }
        let queued = s.queued_bytes;
        drop(s);
        self.to_receiver.notify_one();
        queued
    }

    /// Waits until at most `limit` bytes wait for the client; `false` when the session closed.
    pub async fn room(&self, limit: usize) -> bool {
        loop {
            let notified = self.to_app.notified();
            {
                let s = self.state.lock();
                if s.closed.is_some() {
                    return false;
                }
                if s.queued_bytes <= limit {
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Closes the session: receivers get `c[code,"reason"]` from now on.
    pub fn close(&self, code: u16, reason: &str) {
        let mut s = self.state.lock();
        if s.closed.is_none() {
            s.closed = Some(Closed { code, reason: reason.to_owned() });
            s.idle_since = Instant::now();
        }
        drop(s);
        self.to_receiver.notify_one();
        self.to_app.notify_waiters();
        self.to_app.notify_one();
    }

    /// Why the session closed, if it did.
    pub fn closed(&self) -> Option<Closed> {
        self.state.lock().closed.clone()
    }

    /// Waits until the session is closed (by a receiver going away, or the timeout).
    pub async fn wait_closed(&self) {
        loop {
            let notified = self.to_app.notified();
            if self.state.lock().closed.is_some() {
                return;
            }
            notified.await;
        }
    }

    /// Hands a client's messages to the app; `false` if the session is gone.
    pub async fn deliver(&self, messages: Vec<String>) -> bool {
        if messages.is_empty() {
            return self.closed().is_none();
        }
        self.closed().is_none() && self.inbound.send(messages).await.is_ok()
    }

    /// Attaches a receiving request: refused with the close frame to send when the session is
    /// closed or another request is attached.
    pub fn attach(self: &Arc<Self>) -> Result<Receiver, Closed> {
        let mut s = self.state.lock();
        // What was queued before the close (a STOMP ERROR saying why, a DISCONNECT's RECEIPT)
        // still goes out, then the close frame.
        if let Some(closed) = &s.closed
            && s.queue.is_empty()
        {
            return Err(closed.clone());
        }
        if s.receiver.is_some() {
            let (code, reason) = ANOTHER_CONNECTION;
            return Err(Closed { code, reason: reason.to_owned() });
        }
        let id = s.next_receiver;
        s.next_receiver += 1;
        s.receiver = Some(id);
        Ok(Receiver { shell: self.clone(), id, done: false })
    }
}

/// The receiving request attached to a session. Dropped before [`Receiver::finish`] (the client
/// went away mid-request), it closes the session: what it was sent may not have arrived.
pub struct Receiver {
    shell: Arc<Shell>,
    id: u64,
    done: bool,
}

impl Receiver {
    /// The next thing to send: queued messages, else waits up to `heartbeat` for some.
    pub async fn next(&mut self, heartbeat: Duration) -> Next {
        let deadline = Instant::now() + heartbeat;
        loop {
            let notified = self.shell.to_receiver.notified();
            {
                let mut s = self.shell.state.lock();
                if !s.queue.is_empty() {
                    s.queued_bytes = 0;
                    let messages = std::mem::take(&mut s.queue);
                    drop(s);
                    self.shell.to_app.notify_one();
                    return Next::Messages(messages);
                }
                if let Some(closed) = &s.closed {
                    return Next::Closed(closed.clone());
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return Next::Heartbeat,
            }
        }
    }

    /// The request ends normally: the session waits for the next one.
    pub fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut s = self.shell.state.lock();
        if s.receiver != Some(self.id) {
            return;
        }
        s.receiver = None;
        s.idle_since = Instant::now();
        drop(s);
        if !self.done {
            let (code, reason) = INTERRUPTED;
            self.shell.close(code, reason);
        }
    }
}

/// The sessions of one SockJS service on this node.
pub struct Registry {
    sessions: Mutex<HashMap<String, Arc<Shell>>>,
    disconnect_delay: Duration,
}

impl Registry {
    /// A registry whose idle sessions close after `disconnect_delay`; a task sweeps it while it
    /// lives.
    pub fn new(disconnect_delay: Duration) -> Arc<Self> {
        let registry = Arc::new(Registry { sessions: Mutex::new(HashMap::new()), disconnect_delay });
        let weak = Arc::downgrade(&registry);
        tokio::spawn(sweep(weak, disconnect_delay));
        registry
    }

    /// Attaches a receiving request to session `id`, opening it when there is none: `open` then
    /// starts what runs inside, given the shell and the client's messages.
    pub fn attach(&self, id: &str, open: impl FnOnce(Arc<Shell>, mpsc::Receiver<Vec<String>>)) -> Attach {
        let mut sessions = self.sessions.lock();
        if let Some(shell) = sessions.get(id) {
            return match shell.attach() {
                Ok(r) => Attach::Attached(r),
                Err(closed) => Attach::Refused(closed),
            };
        }
        let (shell, rx) = Shell::new();
        sessions.insert(id.to_owned(), shell.clone());
        drop(sessions);
        let receiver = shell.attach().map_err(|_| ()).expect("a new session has no receiver");
        open(shell, rx);
        Attach::Opened(receiver)
    }

    /// The session `id` on this node.
    pub fn get(&self, id: &str) -> Option<Arc<Shell>> {
        self.sessions.lock().get(id).cloned()
    }

    /// How many sessions this node holds.
    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }

    /// Whether this node holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes sessions idle past the delay, and forgets those closed for longer.
    fn sweep_once(&self) {
        let now = Instant::now();
        let mut timed_out = Vec::new();
        self.sessions.lock().retain(|_, shell| {
            let s = shell.state.lock();
            let idle = s.receiver.is_none() && now.duration_since(s.idle_since) >= self.disconnect_delay;
            match (&s.closed, idle) {
                (Some(_), true) => false,
                (None, true) => {
                    timed_out.push(shell.clone());
                    true
                }
                _ => true,
            }
        });
        for shell in timed_out {
            shell.close(1000, "session timed out");
        }
    }
}

async fn sweep(registry: Weak<Registry>, delay: Duration) {
    let period = (delay / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        let Some(registry) = registry.upgrade() else { return };
        registry.sweep_once();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test]
    async fn one_receiver_at_a_time_and_an_abort_closes() {
        let registry = Registry::new(Duration::from_secs(5));
        let mut opened = None;
        let Attach::Opened(first) = registry.attach("s", |shell, rx| opened = Some((shell, rx))) else {
            panic!("a new session opens")
        };
        let (shell, _rx) = opened.unwrap();
        let Attach::Refused(c) = registry.attach("s", |_, _| unreachable!()) else { panic!("busy") };
        assert_eq!(c.code, 2010);
        first.finish();
        let Attach::Attached(second) = registry.attach("s", |_, _| unreachable!()) else { panic!("free") };
        drop(second);
        assert_eq!(shell.closed().unwrap().code, 1002, "an aborted receiver closes the session");
        let Attach::Refused(c) = registry.attach("s", |_, _| unreachable!()) else { panic!("closed") };
        assert_eq!(c.code, 1002);
    }

    #[tokio::test]
    async fn receivers_take_queued_messages_and_the_app_waits_for_room() {
        let registry = Registry::new(Duration::from_secs(5));
        let mut opened = None;
        let Attach::Opened(mut r) = registry.attach("s", |shell, rx| opened = Some((shell, rx))) else {
            panic!()
        };
        let (shell, _rx) = opened.unwrap();
        assert_eq!(shell.push([b("\"a\""), b("\"bb\"")]), 7);
        let room = shell.room(3);
        tokio::pin!(room);
        assert!(room.as_mut().now_or_never().is_none(), "7 bytes wait, the limit is 3");
        let Next::Messages(m) = r.next(Duration::from_secs(1)).await else { panic!() };
        assert_eq!(m, vec![b("\"a\""), b("\"bb\"")]);
        assert!(room.await);
        assert!(matches!(r.next(Duration::from_millis(10)).await, Next::Heartbeat));
        shell.close(3000, "Go away!");
        assert!(matches!(r.next(Duration::from_secs(1)).await, Next::Closed(c) if c.code == 3000));
    }

    #[tokio::test]
    async fn a_closed_session_hands_over_what_it_held_then_its_close_frame() {
        let registry = Registry::new(Duration::from_secs(5));
        let mut opened = None;
        let Attach::Opened(r) = registry.attach("s", |shell, rx| opened = Some((shell, rx))) else {
            panic!()
        };
        r.finish();
        let (shell, _rx) = opened.unwrap();
        shell.push([b("\"ERROR\"")]);
        shell.close(3500, "bad request");
        let Attach::Attached(mut r) = registry.attach("s", |_, _| unreachable!()) else { panic!("held") };
        assert!(
            matches!(r.next(Duration::from_secs(1)).await, Next::Messages(m) if m == vec![b("\"ERROR\"")])
        );
        assert!(matches!(r.next(Duration::from_secs(1)).await, Next::Closed(c) if c.code == 3500));
        r.finish();
        let Attach::Refused(c) = registry.attach("s", |_, _| unreachable!()) else { panic!("closed") };
        assert_eq!(c.code, 3500);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_time_out_and_closed_ones_are_forgotten() {
        let registry = Registry::new(Duration::from_secs(5));
        let mut opened = None;
        let Attach::Opened(r) = registry.attach("s", |shell, rx| opened = Some((shell, rx))) else {
            panic!()
        };
        let (shell, _rx) = opened.unwrap();
        r.finish();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(shell.closed().is_some(), "no receiver for 5 s");
        assert_eq!(registry.len(), 1, "a closed session still answers its close frame");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(registry.is_empty());
    }
}
