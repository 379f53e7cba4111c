//! The application limits, each with its code and metric: connections per IP (every transport,
//! held long polls included) and per user, publishes per second, channels per node, outbound
//! bytes, the sweep of idle channels, and WebRTC offers.

mod common;

use std::time::Duration;

use common::{TestServer, http_json, http_request};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::config::ChannelOptions;
use switchboard::metrics::TransportKind;
use switchboard_client::{Error, Position, RawFrame, WsConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "limits-test-secret";

fn token(sub: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &json!({ "sub": sub }), &key).unwrap()
}

fn code(e: &Error) -> (u16, Option<u32>) {
    match e {
        Error::Http { status, code, .. } => (*status, *code),
        Error::Command { code, .. } => (0, Some(*code)),
        other => panic!("expected an HTTP or command error, got {other:?}"),
    }
}

/// Reads raw frames up to the close frame; its code.
async fn close_code(ws: &mut WsConnection) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.recv_raw()).await.expect("a close") {
            Some(Ok(RawFrame::Close { code, .. })) => return code,
            Some(Ok(RawFrame::Text(text))) => {
                assert!(!text.contains("\"connect\""), "no connect reply: {text}")
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

/// An HTTP request whose response stays open (SSE, a held long poll): its status line and
/// headers, and the socket, which holds the connection until dropped.
async fn open_request(addr: std::net::SocketAddr, path: &str) -> (u16, tokio::net::TcpStream) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", addr.port());
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head)[9..12].parse().unwrap();
    (status, tcp)
}

#[tokio::test]
async fn connections_per_ip_count_every_transport_and_held_long_polls() {
    let server = TestServer::with(|c| c.max_connections_per_ip = 3).await;
    let client = server.client();
    let metrics = server.state.metrics.clone();
    let mut ws = client.websocket().await.unwrap();
    ws.subscribe("a", None).await.unwrap();
    let (status, _sse) = open_request(server.addr, "/sse?channel=a").await;
    assert_eq!(status, 200);
    // A long poll that waits is a connection too: it counts here and in the gauge.
    let poll = {
        let addr = server.addr;
        tokio::spawn(async move { http_json(addr, "GET", "/poll?channel=a&wait=30", &[], "").await })
    };
    common::eventually("the long poll is held", Duration::from_secs(10), || {
        metrics.open_connections(TransportKind::LongPoll) == 1
    })
    .await;
    assert_eq!(server.state.admission.from_ip("127.0.0.1".parse().unwrap()), 3);
    // The fourth, whatever its transport, is refused before it starts: 429, code 106.
    let e = client.websocket().await.unwrap_err();
    assert_eq!(code(&e), (429, Some(106)), "{e}");
    let (status, body) = http_json(server.addr, "GET", "/stream?channel=a", &[], "").await;
    assert_eq!((status, body["error"]["code"].as_u64()), (429, Some(106)), "{body}");
    let (status, body) = http_json(server.addr, "GET", "/poll?channel=b&wait=5", &[], "").await;
    assert_eq!((status, body["error"]["code"].as_u64()), (429, Some(106)), "{body}");
    // A short poll holds nothing and is not a connection.
    let (status, _) = http_json(server.addr, "GET", "/poll?channel=a", &[], "").await;
    assert!(status == 200 || status == 204, "{status}");
    assert!(metrics.render().contains("switchboard_connections_refused_total{reason=\"per_ip\"} 3"));
    // A publication answers the long poll; its place, and the WebSocket's, come back.
    client.publish("a", &json!(1)).await.unwrap();
    assert_eq!(poll.await.unwrap().0, 200);
    assert_eq!(metrics.open_connections(TransportKind::LongPoll), 0);
    drop(ws);
    common::eventually("places come back", Duration::from_secs(10), || {
        server.state.admission.from_ip("127.0.0.1".parse().unwrap()) == 1
    })
    .await;
    let mut again = client.websocket().await.unwrap();
    again.subscribe("a", None).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_sockjs_session_is_a_connection_of_its_address() {
    let server = TestServer::with(|c| c.max_connections_per_ip = 1).await;
    let mut ws = server.client().websocket().await.unwrap();
    ws.subscribe("a", None).await.unwrap();
    // A new session from the same address is refused with the close frame of the limit.
    let (status, _, _) = http_request(server.addr, "POST", "/sockjs/000/limited/xhr", &[], "").await;
    assert_eq!(status, 200, "SockJS answers in its own frames");
    let (_, body) = raw_body(server.addr, "/sockjs/000/limited2/xhr").await;
    assert!(body.contains("c[3503,"), "{body}");
    assert!(server.state.metrics.refused_per_ip.get() >= 1);
    drop(ws);
    common::eventually("the place comes back", Duration::from_secs(10), || {
        server.state.admission.from_ip("127.0.0.1".parse().unwrap()) == 0
    })
    .await;
    let (_, body) = raw_body(server.addr, "/sockjs/000/limited3/xhr").await;
    assert!(body.starts_with('o'), "a session opens once there is room: {body}");
    server.stop().await;
}

/// A `POST` answered with a body that is not JSON (SockJS frames): status and body.
async fn raw_body(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        addr.port()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Chunked: the frame is the line after the chunk size.
    let body = body.lines().find(|l| l.starts_with('o') || l.starts_with('c')).unwrap_or(body).to_owned();
    (status, body)
}

#[tokio::test]
async fn connections_per_user_are_counted_at_connect_or_at_the_request() {
    let server = TestServer::with(|c| {
        c.token_secret = SECRET.into();
        c.max_connections_per_user = 1;
    })
    .await;
    let client = server.client();
    let mut alice = client.websocket().await.unwrap();
    alice.connect(Some(&token("alice")), None).await.unwrap();
    // Alice's second connection is closed with 3503 instead of a connect reply.
    let mut second = client.websocket().await.unwrap();
    second.send_raw(&json!({"id": 1, "connect": {"token": token("alice")}}).to_string()).await.unwrap();
    assert_eq!(close_code(&mut second).await, Some(3503));
    // On a token-in-URL transport the refusal comes before the stream: 429, code 106.
    let path = format!("/sse?channel=a&token={}", token("alice"));
    let (status, body) = http_json(server.addr, "GET", &path, &[], "").await;
    assert_eq!((status, body["error"]["code"].as_u64()), (429, Some(106)), "{body}");
    // Others are not affected.
    let mut bob = client.websocket().await.unwrap();
    bob.connect(Some(&token("bob")), None).await.unwrap();
    assert_eq!(server.state.metrics.refused_per_user.get(), 2);
    // Alice's place comes back when her connection ends.
    drop(alice);
    common::eventually_async("alice may connect again", Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            // A refused connect closes its socket: each try opens a new one.
            let Ok(mut ws) = client.websocket().await else { return false };
            ws.connect(Some(&token("alice")), None).await.is_ok()
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn publishes_over_the_rate_get_106_and_the_connection_stays() {
    let server = TestServer::with(|c| {
        c.max_publish_rate = 1;
        c.max_publish_burst = 3;
    })
    .await;
    let mut ws = server.client().websocket().await.unwrap();
    for n in 0..3 {
        ws.publish("a", &json!(n)).await.unwrap();
    }
    let e = ws.publish("a", &json!(3)).await.unwrap_err();
    assert_eq!(code(&e), (0, Some(106)), "{e}");
    // The connection is still there and serves other commands.
    let reply = ws.subscribe("a", None).await.unwrap();
    assert_eq!(reply.offset, 3, "the refused publish was not stored");
    assert_eq!(server.state.metrics.publish_rate_limited.get(), 1);
    server.stop().await;
}

#[tokio::test]
async fn channels_beyond_max_channels_are_refused_with_106() {
    let server = TestServer::with(|c| {
        c.max_channels = 2;
        // The node's stats channel (`__admin:stats`) would hold one of the two.
        c.admin = false;
    })
    .await;
    let client = server.client();
    client.publish("one", &json!(1)).await.unwrap();
    client.publish("two", &json!(1)).await.unwrap();
    let e = client.publish("three", &json!(1)).await.unwrap_err();
    assert_eq!(code(&e), (429, Some(106)), "{e}");
    let mut ws = client.websocket().await.unwrap();
    let e = ws.subscribe("four", None).await.unwrap_err();
    assert_eq!(code(&e), (0, Some(106)), "{e}");
    // Existing channels still work.
    ws.subscribe("one", None).await.unwrap();
    client.publish("two", &json!(2)).await.unwrap();
    assert!(server.state.metrics.render().contains("switchboard_channels 2"));
    assert_eq!(server.state.metrics.channel_limit_refused.get(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_by_bytes_with_3002() {
    // The message bound is far away: only the byte bound can cut the consumer off.
    let server = TestServer::with(|c| {
        c.outbound_queue = 100_000;
        c.outbound_queue_bytes = 2 * 1024 * 1024;
    })
    .await;
    let client = server.client();
    let url = format!("ws://{}/ws", server.addr);
    let (mut slow, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    slow.send(Message::text(r#"{"id":1,"subscribe":{"channel":"flood"}}"#)).await.unwrap();
    common::eventually("the slow client is subscribed", Duration::from_secs(10), || {
        server.state.hub.subscriber_count(&switchboard_protocol::ChannelName::new("flood").unwrap()) == 1
    })
    .await;
    let metrics = server.state.metrics.clone();
    let payload = "z".repeat(60_000);
    // 40 MB: more than the socket buffers and the outbox's 2 MiB can hold.
    for n in 0..700u64 {
        client.publish("flood", &json!({"n": n, "pad": payload})).await.unwrap();
        if metrics.slow_consumers.get() > 0 {
            break;
        }
    }
    assert_eq!(metrics.slow_consumers.get(), 1, "cut off before the flood ended");
    // It reads now: after what it had been sent comes the promised close, 3002.
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(m) = slow.next().await {
            match m {
                Ok(Message::Close(Some(frame))) => return Some(u16::from(frame.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the connection ends");
    assert_eq!(ended, Some(3002));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_its_history_replies_is_cut_off_when_the_write_stalls() {
    // Nothing is published while it waits: no outbox overflows, only the stalled write ends it
    // (after two ping rounds, 4 s here).
    let server = TestServer::with(|c| {
        c.ping_interval = 1;
        c.pong_timeout = 1;
    })
    .await;
    let client = server.client();
    let payload = "z".repeat(60_000);
    for n in 0..100u64 {
        client.publish("big", &json!({"n": n, "pad": payload})).await.unwrap();
    }
    let url = format!("ws://{}/ws", server.addr);
    let (mut slow, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // 40 history replies of 1 MiB each: far more than the socket buffers take.
    for id in 1..=40 {
        let command = json!({"id": id, "history": {"channel": "big", "limit": 1000}});
        slow.send(Message::text(command.to_string())).await.unwrap();
    }
    let metrics = server.state.metrics.clone();
    common::eventually("the stalled client is cut off", Duration::from_secs(30), || {
        metrics.slow_consumers.get() == 1
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn idle_channels_are_swept_and_come_back_with_a_new_epoch() {
    let server = TestServer::with(|c| {
        c.channel_idle_ttl = 1;
        // No stats channel (`__admin:stats`) among the channels counted here.
        c.admin = false;
        // History that outlives the idle time keeps a channel; this one expires at once.
        c.namespaces.insert("once".into(), ChannelOptions { history_size: 0, ..ChannelOptions::default() });
    })
    .await;
    let client = server.client();
    let metrics = server.state.metrics.clone();
    let first = client.publish("once:x", &json!(1)).await.unwrap();
    for n in 0..50 {
        client.publish(&format!("once:{n}"), &json!(n)).await.unwrap();
    }
    // A channel with a subscriber is never swept.
    let mut ws = client.websocket().await.unwrap();
    let kept = ws.subscribe("once:kept", None).await.unwrap();
    assert_eq!(metrics.channels.get() + metrics.channels_swept.get() as i64, 52);
    common::eventually("idle channels are swept", Duration::from_secs(20), || metrics.channels.get() == 1)
        .await;
    assert_eq!(metrics.channels_swept.get(), 51);
    assert!(metrics.render().contains("switchboard_channels_swept_total 51"));
    // The channel comes back with a new epoch: a client resuming from the old one learns it.
    let next = client.publish("once:x", &json!(2)).await.unwrap();
    assert_ne!(next.epoch, first.epoch, "a swept channel starts a new epoch");
    assert_eq!(next.offset, 1);
    let old = Position { epoch: first.epoch, offset: first.offset };
    let reply = ws.subscribe("once:x", Some(&old)).await.unwrap();
    assert!(!reply.recovered, "{reply:?}");
    // The subscribed channel kept its stream all along.
    let published = client.publish("once:kept", &json!(1)).await.unwrap();
    assert_eq!(published.epoch, kept.epoch);
    server.stop().await;
}

#[tokio::test]
async fn webrtc_offers_need_the_token_and_are_limited_per_ip_without_one() {
    let sdp_headers = [("Content-Type", "application/sdp")];
    // Open server: offers without a token are counted per address.
    let server = TestServer::with(|c| {
        c.rtc_offers_per_ip_per_minute = 2;
        c.namespaces.insert("room".into(), ChannelOptions { rooms: true, ..ChannelOptions::default() });
    })
    .await;
    for _ in 0..2 {
        let (status, body) = http_json(server.addr, "POST", "/rtc/dc", &sdp_headers, "v=0\nbogus\n").await;
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.contains("0x"), "no heap address in {message:?}");
    }
    let (status, body) = http_json(server.addr, "POST", "/rtc/dc", &sdp_headers, "v=0\n").await;
    assert_eq!((status, body["error"]["code"].as_u64()), (429, Some(106)), "{body}");
    let (status, _) = http_json(server.addr, "POST", "/whep/room:x", &sdp_headers, "v=0\n").await;
    assert_eq!(status, 429);
    assert!(server.state.metrics.rtc_offers_refused.get() >= 2);
    server.stop().await;

    // With a token required, `/rtc/dc` takes it as every other endpoint does.
    let server = TestServer::with(|c| c.token_secret = SECRET.into()).await;
    let (status, body) = http_json(server.addr, "POST", "/rtc/dc", &sdp_headers, "v=0\n").await;
    assert_eq!((status, body["error"]["code"].as_u64()), (401, Some(101)), "{body}");
    let bearer = format!("Bearer {}", token("alice"));
    let headers = [("Content-Type", "application/sdp"), ("Authorization", bearer.as_str())];
    let (status, _, body) = http_request(server.addr, "POST", "/rtc/dc", &headers, "v=0\n").await;
    assert_eq!(status, 400, "past auth, the SDP is judged: {body}");
    server.stop().await;
}
