//! Bad input gets a stable code, never a panic, and costs other clients nothing.

mod common;

use std::time::Duration;

use common::{TestServer, http_request, publications, subscribed};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::config::Config;
use switchboard_client::{Error, RawFrame, Transport, WsConnection};
use tokio_tungstenite::tungstenite::Message;

/// The status of a plain HTTP/1.1 GET.
async fn get_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    http_request(addr, "GET", path, &[], "").await.0
}

/// Reads raw frames up to the close frame; its code.
async fn close_code(ws: &mut WsConnection) -> Option<u16> {
    loop {
        match ws.recv_raw().await {
            Some(Ok(RawFrame::Close { code, .. })) => return code,
            Some(Ok(_)) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

fn http_code(e: &Error) -> (u16, Option<u32>) {
    match e {
        Error::Http { status, code, .. } => (*status, *code),
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_frames_get_codes_and_other_clients_keep_their_stream() {
    let server = TestServer::start(Config { max_subscriptions: 2, ..Config::default() }).await;
    let client = server.client();
    let mut bystander = client.subscribe(Transport::WebSocket, &["calm"], None).await.unwrap();
    subscribed(&mut bystander).await;

    let mut ws = client.websocket().await.unwrap();
    let cases = [
        (r#"{"id":1,"subscribe":{"channel":"bad name"}}"#, 107),
        (r#"{"id":2,"frobnicate":{}}"#, 104),
        (r#"{"id":3,"subscribe":{"chan":"x"}}"#, 107),
        (r#"{"id":4,"publish":{"channel":"x"}}"#, 107),
        (r#"{"id":5,"unsubscribe":{"channel":"never"}}"#, 110),
    ];
    for (frame, code) in cases {
        ws.send_raw(frame).await.unwrap();
        let reply = ws.recv_raw().await.unwrap().unwrap();
        let RawFrame::Text(text) = reply else { panic!("{reply:?}") };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], code, "{frame} → {text}");
    }
    ws.subscribe("a", None).await.unwrap();
    ws.subscribe("b", None).await.unwrap();
    match ws.subscribe("c", None).await {
        Err(Error::Command { code, .. }) => assert_eq!(code, 106),
        other => panic!("{other:?}"),
    }
    match ws.subscribe("a", None).await {
        Err(Error::Command { code, .. }) => assert_eq!(code, 105),
        other => panic!("{other:?}"),
    }
    // Not JSON at all: the connection ends with 3500.
    ws.send_raw("}{").await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(3500));
    client.publish("calm", &json!({"n": 1})).await.unwrap();
    assert_eq!(publications(&mut bystander, 1).await.len(), 1, "others are unaffected");
    server.stop().await;
}

#[tokio::test]
async fn oversize_frames_close_with_1009_and_oversize_payloads_get_106() {
    let server =
        TestServer::start(Config { max_frame_bytes: 4096, max_publication_bytes: 1024, ..Config::default() })
            .await;
    let client = server.client();
    let mut ws = client.websocket().await.unwrap();
    let big = "x".repeat(2000);
    match ws.publish("c", &json!(big)).await {
        Err(Error::Command { code, .. }) => assert_eq!(code, 106),
        other => panic!("{other:?}"),
    }
    match client.publish("c", &json!(big)).await {
        Err(e) => assert_eq!(http_code(&e), (413, Some(106))),
        Ok(r) => panic!("{r:?}"),
    }
    ws.send_raw(&format!(r#"{{"id":9,"publish":{{"channel":"c","data":"{}"}}}}"#, "y".repeat(8000)))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
    server.stop().await;
}

#[tokio::test]
async fn http_transports_refuse_bad_queries_with_codes() {
    let server = TestServer::start(Config::default()).await;
    let client = server.client();
    for transport in [Transport::Sse, Transport::Stream, Transport::Poll] {
        let e = client.subscribe(transport, &["bad name"], None).await;
        let e = match transport {
            Transport::Poll => {
                let mut sub = e.unwrap();
                sub.next().await.unwrap().unwrap_err()
            }
            _ => e.unwrap_err(),
        };
        assert_eq!(http_code(&e), (400, Some(107)), "{transport:?}");
    }
    for path in [
        "/sse?channel=a&since=not-a-cursor",
        "/poll",
        "/stream?channel=a&wait=x",
        "/poll?channel=a&since=%FF",
    ] {
        assert_eq!(get_status(server.addr, path).await, 400, "{path}");
    }
    assert_eq!(get_status(server.addr, "/api/history?channel=a&since=nope").await, 400);
    server.stop().await;
}

#[tokio::test]
async fn tokens_are_enforced_on_every_transport() {
    let server = TestServer::start(Config { token_secret: "s3cret".into(), ..Config::default() }).await;
    let client = server.client();
    for transport in [Transport::Sse, Transport::Stream] {
        let e = client.subscribe(transport, &["a"], None).await.unwrap_err();
        assert_eq!(http_code(&e), (401, Some(101)), "{transport:?}");
    }
    let e = client.publish("a", &json!(1)).await.unwrap_err();
    assert_eq!(http_code(&e).0, 401);
    // A WebSocket whose first frame is not connect is closed with 3501.
    let url = format!("ws://{}/ws", server.addr);
    let (mut raw, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    raw.send(Message::text(r#"{"id":1,"subscribe":{"channel":"a"}}"#)).await.unwrap();
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = raw.next().await {
            if let Ok(Message::Close(Some(frame))) = m {
                return Some(u16::from(frame.code));
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(close, Some(3501));
    server.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_with_3002_and_others_keep_up() {
    let server = TestServer::start(Config { outbound_queue: 8, ..Config::default() }).await;
    let client = server.client();
    let mut fast = client.subscribe(Transport::WebSocket, &["firehose"], None).await.unwrap();
    subscribed(&mut fast).await;
    // A raw subscriber that never reads.
    let url = format!("ws://{}/ws", server.addr);
    let (mut slow, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    slow.send(Message::text(r#"{"id":1,"subscribe":{"channel":"firehose"}}"#)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let payload = "z".repeat(60_000);
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move {
            for n in 0..300u64 {
                client.publish("firehose", &json!({"n": n, "pad": payload})).await.unwrap();
            }
        })
    };
    // The fast one keeps reading meanwhile.
    let fast = tokio::spawn(async move { publications(&mut fast, 300).await });
    // Once it is cut off, it reads: after the frames it had been sent comes the close, 3002.
    let metrics = server.state.metrics.clone();
    common::eventually("the slow consumer is cut off", Duration::from_secs(20), || {
        metrics.slow_consumers.get() == 1
    })
    .await;
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
    .expect("the slow consumer's connection ends");
    assert_eq!(ended, Some(3002), "the promised close code");
    let got = fast.await.unwrap();
    assert_eq!(got.last().unwrap().offset, 300, "the fast subscriber got everything");
    publisher.await.unwrap();
    assert_eq!(server.state.metrics.slow_consumers.get(), 1);
    server.stop().await;
}

#[tokio::test]
async fn websockets_from_pages_of_other_origins_are_refused() {
    let config = Config { allowed_origins: vec!["https://app.example".into()], ..Config::default() };
    let server = TestServer::start(config).await;
    let host = format!("localhost:{}", server.addr.port());
    let handshake = |origin: Option<String>| {
        let mut headers = vec![
            ("Host".to_owned(), host.clone()),
            ("Upgrade".to_owned(), "websocket".to_owned()),
            ("Connection".to_owned(), "Upgrade".to_owned()),
            ("Sec-WebSocket-Key".to_owned(), "dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
            ("Sec-WebSocket-Version".to_owned(), "13".to_owned()),
            ("Sec-WebSocket-Protocol".to_owned(), switchboard_protocol::WS_SUBPROTOCOL.to_owned()),
        ];
        headers.extend(origin.map(|o| ("Origin".to_owned(), o)));
        let addr = server.addr;
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut request = "GET /ws HTTP/1.1\r\n".to_owned();
            for (k, v) in headers {
                request.push_str(&format!("{k}: {v}\r\n"));
            }
            request.push_str("\r\n");
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut head = [0u8; 12];
            tcp.read_exact(&mut head).await.unwrap();
            String::from_utf8_lossy(&head[9..12]).parse::<u16>().unwrap()
        }
    };
    assert_eq!(handshake(None).await, 101, "not a browser");
    assert_eq!(handshake(Some(format!("http://{host}"))).await, 101, "the page's own origin");
    assert_eq!(handshake(Some("https://app.example".into())).await, 101, "allowed");
    assert_eq!(handshake(Some("https://evil.example".into())).await, 403);
    server.stop().await;
}

#[tokio::test]
async fn every_http_error_is_the_json_error_with_a_code() {
    let server =
        TestServer::start(Config { max_frame_bytes: 1024, max_publication_bytes: 512, ..Config::default() })
            .await;
    let big = "x".repeat(4096);
    let cases: [(&str, &str, &str, u16, u64); 6] = [
        ("GET", "/api/history", "", 400, 107),
        ("GET", "/api/presence?chan=x", "", 400, 107),
        ("GET", "/api/history?channel=a&limit=many", "", 400, 107),
        ("GET", "/ws", "", 400, 107),
        ("GET", "/api/nothing-here", "", 404, 104),
        ("POST", "/api/publish", &big, 413, 106),
    ];
    for (method, path, body, status, code) in cases {
        let (got, head, json) = common::http_request(server.addr, method, path, &[], body).await;
        assert_eq!((got, json["error"]["code"].as_u64()), (status, Some(code)), "{method} {path}: {json}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {json}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{path}: {head}");
    }
    server.stop().await;
}
