//! Signaling: a minimal HTTP/1.1 client (one request per connection), WHIP/WHEP for our server
//! and the Janus HTTP API (one plugin: VideoRoom here, AudioBridge in bench/mixer, which shares
//! this file) for the peer.

use std::io;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn err(m: impl Into<String>) -> io::Error {
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
    let status =
        head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| err("bad status line"))?;
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

/// WHIP or WHEP: POST the offer, the answer comes back in the body with `201`.
pub async fn post_sdp(url: &str, offer: &str) -> io::Result<String> {
    let (status, body) = http("POST", url, "application/sdp", offer).await?;
    if status != 201 {
        return Err(err(format!("POST {url}: {status} {body}")));
    }
    Ok(body)
}

/// A Janus session with one handle attached to a plugin.
pub struct Janus {
    session: String,
    handle: String,
    plugin: &'static str,
    tx: u64,
}

impl Janus {
    /// `base` is `http://HOST:PORT/janus`; `plugin`: `videoroom`, `audiobridge`.
    pub async fn attach(base: &str, plugin: &'static str) -> io::Result<Self> {
        let created = janus_post(base, json!({"janus": "create", "transaction": "c"})).await?;
        let session = format!("{base}/{}", created["data"]["id"]);
        let attached = janus_post(
            &session,
            json!({"janus": "attach", "plugin": format!("janus.plugin.{plugin}"), "transaction": "a"}),
        )
        .await?;
        let handle = format!("{session}/{}", attached["data"]["id"]);
        Ok(Self { session, handle, plugin, tx: 0 })
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
                let (_, text) =
                    http("GET", &format!("{}?maxev=1", self.session), "application/json", "").await?;
                let e: Value = serde_json::from_str(&text).map_err(|e| err(format!("janus: {e}: {text}")))?;
                // Other events (webrtcup, media, keepalive...) are not ours to wait for.
                if e["janus"] == "event" && e["transaction"] == tx.as_str() {
                    break e;
                }
            },
            _ => return Err(err(format!("janus: {reply}"))),
        };
        if let Some(e) = event["plugindata"]["data"].get("error") {
            return Err(err(format!("{}: {e}", self.plugin)));
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
