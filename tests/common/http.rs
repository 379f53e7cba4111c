//! One HTTP/1.1 request on a fresh connection, read off the socket: what a test needs to see
//! exactly (status, headers) without a client library's interpretation.

use std::net::SocketAddr;
use std::time::Duration;

/// The status and the body's JSON object (or null). `Host` is `localhost:PORT` unless `headers`
/// has one.
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
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    // `Host: localhost:PORT` unless the test gives its own.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: localhost:{}\r\n", addr.port()));
    }
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

/// The status code of a `GET` of `url` (`http://HOST:PORT/PATH`), 0 when there is no answer:
/// for servers that may be down. Blocking, with a 2 s read timeout.
pub fn http_status(url: &str) -> u16 {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut tcp) = std::net::TcpStream::connect(host) else { return 0 };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if tcp.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    if tcp.read_exact(&mut head).is_err() {
        return 0;
    }
    std::str::from_utf8(&head[9..12]).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}
