//! The SockJS tests' helpers (`tests/sockjs.rs`, `tests/sockjs_sessions.rs`): the services' URLs,
//! test servers, and requests written and read off the socket by hand, so that framing, chunk by
//! chunk, and headers are seen exactly as a browser gets them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use switchboard::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::TestServer;
use super::backend::Backend;

pub const ECHO: &str = "/sockjs-test/echo";
pub const CLOSE: &str = "/sockjs-test/close";
pub const WS_OFF: &str = "/sockjs-test/disabled_websocket_echo";
pub const COOKIE: &str = "/sockjs-test/cookie_needed_echo";
pub const REAL: &str = "/sockjs";

pub const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";
pub const JS: &str = "application/javascript;charset=UTF-8";
pub const TEXT: &str = "text/plain;charset=UTF-8";
pub const HTML: &str = "text/html;charset=UTF-8";
pub const GO_AWAY: &str = "c[3000,\"Go away!\"]\n";
pub const ANOTHER: &str = "c[2010,\"Another connection still open\"]\n";
pub const INTERRUPTED: &str = "c[1002,\"Connection interrupted\"]\n";
pub const CONNECT: &str = "CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0";

/// The configuration the suite expects of a test server: its services, and a 4 KiB response
/// limit. What the tests do not use (TURN, WebTransport, WebRTC) stays off.
pub fn suite(config: &mut Config) {
    config.sockjs_test_services = true;
    config.sockjs_response_limit = 4096;
    lean(config);
}

pub fn lean(config: &mut Config) {
    config.turn = false;
    config.webtransport = false;
    config.rtc = false;
}

pub async fn suite_server() -> TestServer {
    TestServer::with(suite).await
}

/// Two nodes on `backend`'s broker.
pub async fn two_nodes(backend: &Backend) -> (TestServer, TestServer) {
    let node = || {
        TestServer::with(|c| {
            lean(c);
            c.broker = backend.url();
        })
    };
    (node().await, node().await)
}

/// How long any one read waits before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A session id no other session of this process uses.
pub fn sid() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("t{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn xhr_prelude() -> String {
    format!("{}\n", "h".repeat(2048))
}

pub fn iframe_page(script: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
         <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  \
         <script src=\"{script}\"></script>\n  <script>\n    document.domain = document.domain;\n    \
         SockJS.bootstrap_iframe();\n  </script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  \
         <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>"
    )
}

pub fn htmlfile_head(callback: &str) -> String {
    format!(
        "<!doctype html>\n<html><head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
         <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n</head><body><h2>Don't \
         panic!</h2>\n  <script>\n    document.domain = document.domain;\n    var c = parent.{callback};\n    \
         c.start();\n    function p(d) {{c.message(d);}};\n    window.onload = function() {{c.stop();}};\n  \
         </script>"
    )
}

/// The messages of an `a[...]` frame.
pub fn messages(frame: &str) -> Vec<String> {
    let json = frame.trim_end().strip_prefix('a').unwrap_or_else(|| panic!("not an a frame: {frame:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {frame:?}"))
}

pub fn command(frame: &str) -> &str {
    frame.split('\n').next().unwrap_or_default()
}

/// A STOMP header's value, unescaped (1.2 escapes `:` as `\c` outside CONNECT and CONNECTED).
pub fn header(frame: &str, name: &str) -> Option<String> {
    let head = frame.split("\n\n").next().unwrap_or_default();
    let raw = head.lines().skip(1).find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))?;
    let (mut out, mut chars) = (String::new(), raw.chars());
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('c') => ':',
            Some('n') => '\n',
            Some('r') => '\r',
            Some(other) => other,
            None => '\\',
        });
    }
    Some(out)
}

pub fn body(frame: &str) -> &str {
    frame.split_once("\n\n").map_or("", |(_, b)| b.trim_end_matches('\0'))
}

pub fn body_json(frame: &str) -> serde_json::Value {
    serde_json::from_str(body(frame)).unwrap_or_else(|e| panic!("{e}: {frame:?}"))
}

/// The first ERROR among `frames`.
pub fn error_of(frames: &[String]) -> String {
    frames.iter().find(|f| command(f) == "ERROR").cloned().unwrap_or_else(|| panic!("no ERROR in {frames:?}"))
}

pub fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

pub fn assert_cors(r: &Reply, origin: Option<&str>) {
    assert_cors_of(&r.headers, origin);
}

pub fn assert_cors_of(headers: &[(String, String)], origin: Option<&str>) {
    match origin {
        Some(o) => {
            assert_eq!(header_of(headers, "access-control-allow-origin"), Some(o));
            assert_eq!(header_of(headers, "access-control-allow-credentials"), Some("true"));
        }
        None => {
            assert_eq!(header_of(headers, "access-control-allow-origin"), Some("*"));
            assert_eq!(header_of(headers, "access-control-allow-credentials"), None);
        }
    }
}

pub fn assert_not_cached(r: &Reply) {
    assert_not_cached_of(&r.headers);
}

pub fn assert_not_cached_of(headers: &[(String, String)]) {
    assert_eq!(header_of(headers, "cache-control"), Some(NO_CACHE));
    assert_eq!(header_of(headers, "expires"), None);
    assert_eq!(header_of(headers, "last-modified"), None);
}

pub fn assert_405(r: &Reply, allow: &str) {
    assert_eq!(r.status, 405);
    assert_eq!(r.header("content-type"), None);
    assert_eq!(r.header("allow"), Some(allow));
    assert!(r.body.is_empty());
}

/// A whole response.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    /// The content type without spaces, as the suite compares it.
    pub fn content_type(&self) -> String {
        self.header("content-type").unwrap_or_default().replace(' ', "")
    }
}

/// One request on a fresh connection, and its whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut s = Stream::open(addr, method, path, headers, body.as_bytes()).await;
    let body = s.rest().await;
    Reply { status: s.status, headers: s.headers, body }
}

/// One `xhr` poll: its body.
pub async fn poll(addr: SocketAddr, session_url: &str) -> String {
    let r = request(addr, "POST", &format!("{session_url}/xhr"), &[], "").await;
    assert_eq!(r.status, 200, "{session_url}/xhr: {}", r.body);
    r.body
}

/// Polls until `done` holds of a poll's body (each poll answering at once), within [`WAIT`].
pub async fn poll_until(addr: SocketAddr, session_url: &str, done: impl Fn(&str) -> bool) -> String {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let body = poll(addr, session_url).await;
            if done(&body) {
                return body;
            }
            seen.push(body);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{session_url}: polls never got there; got {seen:?}"))
}

/// Two `xhr` polls of a session with nothing to send at once: the one the server takes second
/// must be refused with 2010 at once; the other, still held, is returned unread.
pub async fn held_poll(addr: SocketAddr, session_url: &str) -> TcpStream {
    let path = format!("{session_url}/xhr");
    let a = send_request(addr, "POST", &path, &[], b"").await;
    let b = send_request(addr, "POST", &path, &[], b"").await;
    let (mut byte_a, mut byte_b) = ([0u8; 1], [0u8; 1]);
    let answered_first = tokio::time::timeout(WAIT, async {
        tokio::select! {
            _ = a.peek(&mut byte_a) => true,
            _ = b.peek(&mut byte_b) => false,
        }
    })
    .await
    .expect("one of two polls is answered at once");
    let (refused, held) = if answered_first { (a, b) } else { (b, a) };
    let mut refused = Stream::read_head(refused).await;
    assert_eq!((refused.status, refused.rest().await.as_str()), (200, ANOTHER));
    held
}

/// An `xhr_send`: its status.
pub async fn xhr_send(addr: SocketAddr, session_url: &str, payload: &str) -> u16 {
    request(addr, "POST", &format!("{session_url}/xhr_send"), &[], payload).await.status
}

pub async fn open_stream(addr: SocketAddr, path: &str) -> Stream {
    let s = Stream::open(addr, "POST", path, &[], b"").await;
    assert_eq!(s.status, 200, "{path}");
    s
}

pub async fn open_stream_get(addr: SocketAddr, path: &str) -> Stream {
    let s = Stream::open(addr, "GET", path, &[], b"").await;
    assert_eq!(s.status, 200, "{path}");
    s
}

/// Writes a request on a fresh connection (`Connection: close`) and reads nothing yet.
pub async fn send_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        addr.port(),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer (413) and close before it reads a huge body: not our failure.
    let _ = tcp.write_all(&bytes).await;
    tcp
}

/// A response read as it comes: its head, then its body (de-chunked) bit by bit, as a browser's
/// XHR or EventSource sees it.
pub struct Stream {
    pub tcp: TcpStream,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Bytes read and not yet de-chunked.
    pub raw: Vec<u8>,
    /// Body bytes not yet consumed.
    pub body: Vec<u8>,
    pub chunked: bool,
    /// Body bytes still to come, with a Content-Length.
    pub remaining: Option<usize>,
    /// The body is complete (last chunk, Content-Length reached, or the connection closed).
    pub ended: bool,
}

impl Stream {
    pub async fn open(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Self {
        Self::read_head(send_request(addr, method, path, headers, body).await).await
    }

    pub async fn read_head(mut tcp: TcpStream) -> Self {
        let mut raw = Vec::new();
        let read = async {
            loop {
                if let Some(end) = find(&raw, b"\r\n\r\n") {
                    return end;
                }
                let mut buf = [0u8; 8192];
                let n = tcp.read(&mut buf).await.expect("a response");
                assert!(
                    n > 0,
                    "the connection closed before a response head: {:?}",
                    String::from_utf8_lossy(&raw)
                );
                raw.extend_from_slice(&buf[..n]);
            }
        };
        let end = tokio::time::timeout(WAIT, read).await.expect("a response head in time");
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let raw = raw[end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.get(9..12)).and_then(|s| s.parse().ok()).expect("a status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked =
            header_of(&headers, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        let mut remaining = header_of(&headers, "content-length").and_then(|l| l.parse().ok());
        if status == 204 || status == 304 {
            remaining = Some(0);
        }
        let mut s = Stream { tcp, status, headers, raw, body: Vec::new(), chunked, remaining, ended: false };
        s.decode();
        s
    }

    pub fn content_type(&self) -> String {
        header_of(&self.headers, "content-type").unwrap_or_default().replace(' ', "")
    }

    /// Moves what `raw` holds of the body into `body`.
    pub fn decode(&mut self) {
        if self.chunked {
            while !self.ended {
                let Some(line) = find(&self.raw, b"\r\n") else { return };
                let size = String::from_utf8_lossy(&self.raw[..line]);
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or_else(|_| panic!("a bad chunk size line: {size:?}"));
                if size == 0 {
                    self.ended = true;
                    return;
                }
                if self.raw.len() < line + 2 + size + 2 {
                    return;
                }
                self.body.extend_from_slice(&self.raw[line + 2..line + 2 + size]);
                self.raw.drain(..line + 2 + size + 2);
            }
        } else if let Some(remaining) = &mut self.remaining {
            let n = self.raw.len().min(*remaining);
            self.body.extend(self.raw.drain(..n));
            *remaining -= n;
            self.ended = *remaining == 0;
        } else {
            self.body.append(&mut self.raw);
        }
    }

    /// Reads once more from the socket; `false` at the end of the body.
    pub async fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let mut buf = [0u8; 16384];
        let n = self.tcp.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            assert!(!self.chunked, "the connection closed mid-body, before the last chunk");
            self.ended = true;
            return false;
        }
        self.raw.extend_from_slice(&buf[..n]);
        self.decode();
        true
    }

    /// Waits until the body so far holds `pattern`; what comes up to its end, consumed.
    pub async fn until(&mut self, pattern: &str) -> String {
        let read = async {
            loop {
                if let Some(at) = find(&self.body, pattern.as_bytes()) {
                    let taken: Vec<u8> = self.body.drain(..at + pattern.len()).collect();
                    return Some(String::from_utf8(taken).expect("UTF-8"));
                }
                if !self.fill().await {
                    return None;
                }
            }
        };
        match tokio::time::timeout(WAIT, read).await {
            Ok(Some(text)) => text,
            Ok(None) => {
                panic!("the body ended before {pattern:?}: {:?}", String::from_utf8_lossy(&self.body))
            }
            Err(_) => panic!("no {pattern:?} in time; have {:?}", String::from_utf8_lossy(&self.body)),
        }
    }

    /// The next bytes of the body are exactly `expected`.
    pub async fn expect(&mut self, expected: &str) {
        let read = async { while self.body.len() < expected.len() && self.fill().await {} };
        // Short (timed out, or the body ended): the comparison below says what came.
        let _ = tokio::time::timeout(WAIT, read).await;
        let n = expected.len().min(self.body.len());
        let got: Vec<u8> = self.body.drain(..n).collect();
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    /// The body ends, with nothing more in it.
    pub async fn end(&mut self) {
        let read = async { while self.fill().await {} };
        tokio::time::timeout(WAIT, read).await.unwrap_or_else(|_| {
            panic!("the response did not end; have {:?}", String::from_utf8_lossy(&self.body))
        });
        assert!(self.body.is_empty(), "more after the end: {:?}", String::from_utf8_lossy(&self.body));
    }

    /// The rest of the body, to its end.
    pub async fn rest(&mut self) -> String {
        let read = async { while self.fill().await {} };
        tokio::time::timeout(WAIT, read).await.expect("the whole response in time");
        String::from_utf8(std::mem::take(&mut self.body)).expect("UTF-8")
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A SockJS session as sockjs-client runs one where WebSockets do not pass: `xhr_streaming` to
/// receive (on `recv`'s node), `xhr_send` to send (to `send`'s).
pub struct SockjsSession {
    pub send_to: SocketAddr,
    /// `/BASE/SERVER/SESSION`.
    pub url: String,
    pub stream: Stream,
    pub queue: VecDeque<String>,
}

impl SockjsSession {
    pub async fn open(recv: SocketAddr, send: SocketAddr, base: &str) -> Self {
        let url = format!("{base}/000/{}", sid());
        let mut stream = open_stream(recv, &format!("{url}/xhr_streaming")).await;
        stream.expect(&xhr_prelude()).await;
        stream.expect("o\n").await;
        SockjsSession { send_to: send, url, stream, queue: VecDeque::new() }
    }

    pub async fn send(&self, messages: &[&str]) {
        let payload = serde_json::to_string(messages).unwrap();
        let r = request(self.send_to, "POST", &format!("{}/xhr_send", self.url), &[], &payload).await;
        assert_eq!(r.status, 204, "xhr_send to {}: {}", self.url, r.body);
    }

    /// The next frame, heartbeats skipped.
    pub async fn frame(&mut self) -> String {
        loop {
            let frame = self.stream.until("\n").await;
            if frame != "h\n" {
                return frame;
            }
        }
    }

    /// The next message; a close frame fails the test.
    pub async fn message(&mut self) -> String {
        while self.queue.is_empty() {
            let frame = self.frame().await;
            assert!(frame.starts_with('a'), "expected messages, got {frame:?}");
            self.queue.extend(messages(&frame));
        }
        self.queue.pop_front().unwrap()
    }

    /// The next STOMP frame, heart-beats skipped.
    pub async fn stomp(&mut self) -> String {
        loop {
            let m = self.message().await;
            if !m.trim().is_empty() {
                return m;
            }
        }
    }

    /// The messages until the close frame, and the close frame; the response then ends.
    pub async fn until_closed(&mut self) -> (Vec<String>, String) {
        let mut seen: Vec<String> = self.queue.drain(..).collect();
        loop {
            let frame = self.frame().await;
            if frame.starts_with('c') {
                self.stream.end().await;
                return (seen, frame);
            }
            seen.extend(messages(&frame));
        }
    }
}

/// The JSON protocol over `xhr` polls.
pub struct Poller {
    pub addr: SocketAddr,
    pub url: String,
    pub queue: VecDeque<String>,
}

impl Poller {
    /// The next poll's `a[...]` frame, as it came.
    pub async fn raw(&mut self) -> String {
        let frame = poll(self.addr, &self.url).await;
        assert!(frame.starts_with('a'), "{frame:?}");
        frame
    }

    /// The next message.
    pub async fn message(&mut self) -> String {
        while self.queue.is_empty() {
            let frame = self.raw().await;
            self.queue.extend(messages(&frame));
        }
        self.queue.pop_front().unwrap()
    }

    /// The next message, as JSON.
    pub async fn json(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.message().await).unwrap()
    }
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

pub async fn ws_open(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("a handshake in time")
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    ws
}

/// The next text message.
pub async fn ws_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The text messages until the server closes, and its close code.
pub async fn ws_until_closed(ws: &mut Ws) -> (Vec<String>, Option<u16>) {
    let mut texts = Vec::new();
    let read = async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Text(t)) => texts.push(t.to_string()),
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let code = tokio::time::timeout(WAIT, read).await.expect("the server closes in time");
    (texts, code)
}
