//! Signaling: a minimal HTTP/1.1 client (one request per connection), our room join (WebSocket
//! presence, then `POST /rtc/sfu/{room}` in mixed mode) and the Janus HTTP API (AudioBridge).

use std::io;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn err(m: impl Into<String>) -> io::Error {
    io::Error::other(m.into())
}

/// `METHOD url` with an optional body; the status and the body.
pub async fn http(method: &str, url: &str, content_type: &str, body: &str) -> io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| err(format!("not an http:// URL: {url}")))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = TcpStream::connect(host).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| err("truncated HTTP response"))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| err("bad status line"))?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(body) } else { body.to_owned() }))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Joins `room` on our server as a participant over `/ws` (the socket must stay open: presence),
/// then opens its SFU peer publishing on `mid` and receiving the room's mix on the same m-line.
/// The WebSocket and the answer.
pub async fn join_ours(url: &str, room: &str, name: &str, offer: &str, mid: &str) -> io::Result<(Ws, String)> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let ws_url = format!("{}/ws", url.replacen("http://", "ws://", 1));
    let mut req = ws_url.into_client_request().map_err(io::Error::other)?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", "switchboard.v1.json".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.map_err(io::Error::other)?;
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"id": 1, "connect": {"name": name}}))).await.map_err(io::Error::other)?;
    ws.send(send(json!({"id": 2, "subscribe": {"channel": room}}))).await.map_err(io::Error::other)?;
    let mut client = None;
    loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else { return Err(err("ws closed")) };
        let v: Value = serde_json::from_str(&t).map_err(io::Error::other)?;
        if v["id"] == 1 {
            client = v["connect"]["client"].as_str().map(str::to_owned);
        }
        if v["id"] == 2 {
            if v.get("error").is_some() {
                return Err(err(format!("subscribe {room}: {v}")));
            }
            break;
        }
    }
    let client = client.ok_or_else(|| err("no client id"))?;
    let body = json!({"client": client, "sdp": offer, "publish": {mid: "mic"}, "subscribe": {mid: "mix"}});
    let path = format!("{url}/rtc/sfu/{}", room.replace(':', "%3A"));
    // The room's presence may lag the subscribe's reply a moment: 404 (code 102) is retried.
    let mut tries = 0;
    let (status, text) = loop {
        let (status, text) = http("POST", &path, "application/json", &body.to_string()).await?;
        tries += 1;
        if status != 404 || tries == 20 {
            break (status, text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    if status != 201 {
        return Err(err(format!("POST {path}: {status} {text}")));
    }
    let v: Value = serde_json::from_str(&text).map_err(io::Error::other)?;
    let sdp = v["sdp"].as_str().ok_or_else(|| err("no sdp"))?.to_owned();
    Ok((ws, sdp))
}

/// A participant's WebSocket, kept open for its presence.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A Janus session with one handle attached to the AudioBridge plugin.
pub struct Janus {
    session: String,
    handle: String,
    tx: u64,
}

impl Janus {
    /// `base` is `http://HOST:PORT/janus`.
    pub async fn attach(base: &str) -> io::Result<Self> {
        let created = janus_post(base, json!({"janus": "create", "transaction": "c"})).await?;
        let session = format!("{base}/{}", created["data"]["id"]);
        let attached =
            janus_post(&session, json!({"janus": "attach", "plugin": "janus.plugin.audiobridge", "transaction": "a"})).await?;
        let handle = format!("{session}/{}", attached["data"]["id"]);
        Ok(Self { session, handle, tx: 0 })
    }

    /// Sends a plugin message (with a JSEP when given) and returns the plugin's reply: the
    /// synchronous `success`, or the event of this transaction read from the session's long poll.
    pub async fn message(&mut self, body: Value, jsep: Option<Value>) -> io::Result<Value> {
        self.tx += 1;
        let tx = self.tx.to_string();
        let mut msg = json!({"janus": "message", "body": body, "transaction": tx});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let reply = janus_post(&self.handle, msg).await?;
        let event = match reply["janus"].as_str() {
            Some("success") => reply,
            Some("ack") => loop {
                let (_, text) = http("GET", &format!("{}?maxev=1", self.session), "application/json", "").await?;
                let e: Value = serde_json::from_str(&text).map_err(|e| err(format!("janus: {e}: {text}")))?;
                // Other events (webrtcup, media, keepalive...) are not ours to wait for.
                if e["janus"] == "event" && e["transaction"] == tx.as_str() {
                    break e;
                }
            },
            _ => return Err(err(format!("janus: {reply}"))),
        };
        if let Some(e) = event["plugindata"]["data"].get("error") {
            return Err(err(format!("audiobridge: {e}")));
        }
        Ok(event)
    }
}

async fn janus_post(url: &str, msg: Value) -> io::Result<Value> {
    let (status, text) = http("POST", url, "application/json", &msg.to_string()).await?;
    let v: Value = serde_json::from_str(&text).map_err(|e| err(format!("janus {status}: {e}: {text}")))?;
    if v["janus"] == "error" {
        return Err(err(format!("janus: {v}")));
    }
    Ok(v)
}
