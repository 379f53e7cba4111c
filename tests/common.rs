//! Shared helpers: a server in-process on port 0.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard::config::{ChannelOptions, Config};
use switchboard::{AppState, Server, Services};
use switchboard_client::{Client, Event, Publication, Subscription};
use tokio::sync::oneshot;

/// A running in-process server; dropping it shuts the server down.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub services: Services,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        Self::start_on(Config { listen: "127.0.0.1:0".parse().unwrap(), ..config }).await
    }

    /// A server on `config.listen` as given (a node whose URL its configuration names).
    pub async fn start_on(config: Config) -> Self {
        let server = Server::bind(Config { demo: false, ..config }).await.expect("server binds");
        let addr = server.local_addr().unwrap();
        let state = server.state().clone();
        let services = server.services().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self { addr, state, services, stop: Some(stop), task: Some(task) }
    }

    /// A server whose namespace `small` keeps only two publications.
    pub async fn with_small_history() -> Self {
        let mut config = Config::default();
        config
            .namespaces
            .insert("small".into(), ChannelOptions { history_size: 2, ..ChannelOptions::default() });
        config
            .namespaces
            .insert("room".into(), ChannelOptions { join_leave: true, ..ChannelOptions::default() });
        Self::start(config).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url()).unwrap().with_poll_interval(Duration::from_millis(50))
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A cursor at the current end of `channel`, from the server API: polling clients start from it
/// so that their first request already knows its position.
pub async fn cursor_at_end(client: &Client, channel: &str) -> switchboard_client::Cursor {
    let h = client.history(channel, Some(0)).await.expect("history");
    let mut cursor = switchboard_client::Cursor::new();
    cursor.set(channel, switchboard_client::Position { epoch: h.epoch, offset: h.offset });
    cursor
}

/// Waits for the subscription to stand: the `Subscribed` event on the streaming transports; the
/// polling transports report nothing until there is something, so they start from a cursor.
pub async fn ready(sub: &mut Subscription, transport: switchboard_client::Transport) {
    use switchboard_client::Transport;
    if !matches!(transport, Transport::Poll | Transport::LongPoll) {
        subscribed(sub).await;
    }
}

/// The next event, or a panic after five seconds.
pub async fn next(sub: &mut Subscription) -> Event {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream goes on")
        .expect("no error")
}

/// Skips to the next `Subscribed` event for any channel.
pub async fn subscribed(sub: &mut Subscription) -> switchboard_client::SubscribeReply {
    loop {
        if let Event::Subscribed(s) = next(sub).await {
            return s;
        }
    }
}

/// The next `n` publications, skipping other events.
pub async fn publications(sub: &mut Subscription, n: usize) -> Vec<Publication> {
    let mut out = Vec::new();
    while out.len() < n {
        if let Event::Publication(p) = next(sub).await {
            out.push(p);
        }
    }
    out
}

pub fn n_of(p: &Publication) -> u64 {
    p.data.as_ref().and_then(|d| d["n"].as_u64()).expect("data.n")
}

/// One HTTP/1.1 request on a fresh connection: the status and the body's JSON object (or null).
pub async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, _, json) = http_request(addr, method, path, headers, body).await;
    (status, json)
}

/// [`http_json`] with the response's header block too.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        addr.port(),
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // Chunked or not, the JSON object is the only `{...}` in the body.
    let json = body.find('{').and_then(|s| body.rfind('}').map(|e| &body[s..=e])).unwrap_or("null");
    (status, head.to_owned(), serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
}
