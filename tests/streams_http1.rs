//! `/sse` and `/stream` on a connection they open are served by the listener itself, without
//! hyper (`listener::stream`): chunked, `connection: close`. Anything else on the same paths
//! (a second request of a kept-alive connection, a body, another method) is still hyper's.

mod common;

use std::time::Duration;

use common::{TestServer, http_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(20);

/// Reads until `needle` was read (or the socket closed, which fails); everything read.
async fn read_until(tcp: &mut TcpStream, needle: &str) -> String {
    let mut seen = String::new();
    tokio::time::timeout(LIMIT, async {
        let mut buf = [0u8; 4096];
        while !seen.contains(needle) {
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            assert!(n > 0, "closed before {needle:?}: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} within {LIMIT:?}: {seen}"));
    seen
}

async fn read_to_end(tcp: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let read = tokio::time::timeout(LIMIT, tcp.read_to_end(&mut all)).await;
    assert!(read.is_ok(), "the server did not close the socket");
    String::from_utf8_lossy(&all).into_owned()
}

/// A stream opening its connection (the listener serves it), read up to its `subscribed` event;
/// the socket and what was read.
async fn open_stream(server: &TestServer, path: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let head = read_until(&mut tcp, "subscribed").await;
    (tcp, head)
}

/// A stream as a kept-alive connection's second request (hyper serves it), read up to its
/// `subscribed` event; the socket and what was read after the first response.
async fn open_stream_after_a_request(server: &TestServer, path: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    read_until(&mut tcp, "\r\n\r\n").await;
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let head = read_until(&mut tcp, "subscribed").await;
    (tcp, head)
}

async fn publish(server: &TestServer, data: &str) {
    let body = format!(r#"{{"channel":"news","data":"{data}"}}"#);
    let ct = [("Content-Type", "application/json")];
    assert_eq!(http_request(server.addr, "POST", "/api/publish", &ct, &body).await.0, 200);
}

#[tokio::test]
async fn a_stream_opening_its_connection_is_chunked_and_ends_the_connection() {
    let server = TestServer::with(|_| {}).await;
    let port = server.addr.port();
    for (path, marker) in [("/sse?channel=news", "event: subscribed"), ("/stream?channel=news", "subscribed")]
    {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        // The head in two reads: the listener waits for the rest.
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nAccept: */*\r\n\r\n");
        tcp.write_all(&request.as_bytes()[..9]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        tcp.write_all(&request.as_bytes()[9..]).await.unwrap();
        let head = read_until(&mut tcp, marker).await.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert!(head.contains("connection: close\r\n"), "{head}");
        assert!(head.contains("cache-control: no-cache\r\n"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        publish(&server, "first").await;
        let body = read_until(&mut tcp, "first").await;
        // One chunk: its size in hex, then exactly that many bytes.
        let (size, rest) = body.split_once("\r\n").expect("a chunk");
        let size = usize::from_str_radix(size, 16).expect("a chunk size");
        assert_eq!(&rest[size..size + 2], "\r\n", "{body:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_refused_stream_gets_its_error_and_the_connection_closes() {
    let server = TestServer::with(|_| {}).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let all = read_to_end(&mut tcp).await;
    assert!(all.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{all}");
    assert!(all.contains("channel="), "the error says what is missing: {all}");
    assert!(all.ends_with("0\r\n\r\n"), "the chunked body is ended: {all}");
    server.stop().await;
}

#[tokio::test]
async fn streams_that_do_not_open_their_connection_are_served_by_hyper() {
    let server = TestServer::with(|_| {}).await;
    // A second request on a kept-alive connection.
    let (mut tcp, head) = open_stream_after_a_request(&server, "/sse?channel=news").await;
    let head = head.to_ascii_lowercase();
    let second =
        &head[head.find("http/1.1 200 ok\r\ncontent-type: text/event-stream").expect("the SSE head")..];
    assert!(!second.contains("connection: close"), "{second}");
    publish(&server, "kept-alive").await;
    read_until(&mut tcp, "kept-alive").await;

    // Another method, and a body: not a stream request.
    for request in [
        "POST /sse?channel=news HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}",
        "GET /sse?channel=news HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}",
    ] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let head = read_until(&mut tcp, "\r\n\r\n").await.to_ascii_lowercase();
        assert!(!head.contains("transfer-encoding: chunked\r\nconnection: close"), "{head}");
    }
    server.stop().await;
}

fn subscribers(server: &TestServer) -> usize {
    server.state.hub.subscribers(&switchboard_protocol::ChannelName::new("news").unwrap()).len()
}

/// The stream's session runs inside the listener's connection task when the listener serves it,
/// and in a task of its own when hyper does: either way a client that goes away releases it.
#[tokio::test]
async fn a_streams_session_ends_with_its_client_on_either_path() {
    let server = TestServer::with(|_| {}).await;
    let (mut own, _) = open_stream(&server, "/sse?channel=news").await;
    let (mut kept, _) = open_stream_after_a_request(&server, "/stream?channel=news").await;
    assert_eq!(subscribers(&server), 2);
    publish(&server, "both").await;
    read_until(&mut own, "both").await;
    read_until(&mut kept, "both").await;

    drop(own);
    common::eventually("the listener's stream releases its session", LIMIT, || subscribers(&server) == 1)
        .await;
    drop(kept);
    common::eventually("hyper's stream releases its session", LIMIT, || subscribers(&server) == 0).await;
    server.stop().await;
}

/// A client that stops reading is cut off while the socket is blocked (the session is polled on
/// every wake-up of the connection, not only when a write completes), and others keep up.
#[tokio::test]
async fn a_stream_that_stops_reading_is_cut_off_and_others_keep_up() {
    let server = TestServer::with(|c| c.outbound_queue = 8).await;
    let (mut slow, _) = open_stream(&server, "/sse?channel=news").await;
    let (mut fast, _) = open_stream(&server, "/stream?channel=news").await;
    // Keeps reading (only the tail is kept: the stream is megabytes) until the last publication.
    let reader = tokio::spawn(async move {
        let mut tail = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !String::from_utf8_lossy(&tail).contains("\"last\"") {
            let n = tokio::time::timeout(LIMIT, fast.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "the fast stream ended");
            tail.extend_from_slice(&buf[..n]);
            tail.drain(..tail.len().saturating_sub(64));
        }
    });
    let pad = "z".repeat(60_000);
    let metrics = server.state.metrics.clone();
    for sent in 0.. {
        assert!(sent < 300, "still not cut off after {sent} publications of 60 kB");
        publish(&server, &pad).await;
        if metrics.slow_consumers.get() == 1 {
            break;
        }
    }
    // Read within the close's grace: after what it had been sent comes why.
    let rest = read_to_end(&mut slow).await;
    assert!(rest.contains("event: disconnect"), "{}", &rest[rest.len().saturating_sub(300)..]);
    assert!(rest.contains("3002"), "the slow consumer's code");
    common::eventually("its session is released", LIMIT, || subscribers(&server) == 1).await;
    publish(&server, "last").await;
    reader.await.unwrap();
    server.stop().await;
}

/// The chunks of a chunked body, whole ones only; panics on a malformed one.
fn chunks(mut body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).unwrap_or_else(|_| panic!("a chunk size: {body:?}"));
        if rest.len() < size + 2 {
            break;
        }
        assert_eq!(&rest[size..size + 2], "\r\n", "a chunk ends with CRLF: {body:?}");
        out.push(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

#[tokio::test]
async fn a_streams_publications_written_by_the_fan_out_are_whole_chunks_and_it_goes_on_after_its_ping() {
    // Pings every second: the write loop wakes for them, takes its socket back from the
    // fan-out, and must go on from where the fan-out's writes left its subscription.
    let server = TestServer::with(|c| c.ping_interval = 1).await;
    for (path, ping) in [("/sse?channel=news", ": ping"), ("/stream?channel=news", "{\"ping\":{}}")] {
        let written = server.state.metrics.direct_writes.get();
        let (mut tcp, head) = open_stream(&server, path).await;
        let mut body = head.split_once("\r\n\r\n").expect("the head").1.to_owned();
        for n in 0..5 {
            publish(&server, &format!("m{n}")).await;
        }
        body += &read_until(&mut tcp, "m4").await;
        assert!(server.state.metrics.direct_writes.get() > written, "{path}: the fan-out wrote");
        body += &read_until(&mut tcp, ping).await;
        for n in 5..10 {
            publish(&server, &format!("m{n}")).await;
        }
        publish(&server, "end").await;
        body += &read_until(&mut tcp, "end").await;
        let data = chunks(&body).concat();
        assert!(!data.contains("disconnect"), "{path}: {data}");
        let mut at = 0;
        for n in 0..10 {
            let found = data[at..]
                .find(&format!("\"m{n}\""))
                .unwrap_or_else(|| panic!("{path}: m{n} after m{}: {data}", n - 1));
            at += found;
        }
    }
    server.stop().await;
}
