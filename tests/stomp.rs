//! STOMP bad input against the server: each gets its ERROR frame (with a code where one applies)
//! and a close code, nothing panics, and another client on the same channel is untouched.
//! (Real clients, @stomp/stompjs and stomp.py, are in `e2e/`.)

mod common;

use std::time::Duration;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(server: &TestServer) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/stomp", server.addr)).await.unwrap();
    socket
}

async fn send(socket: &mut Socket, frame: &str) {
    socket.send(Message::text(frame)).await.unwrap();
}

/// The frames the server sends until it closes: (the STOMP frames' text, the close code).
async fn until_closed(socket: &mut Socket) -> (Vec<String>, Option<u16>) {
    let mut frames = Vec::new();
    let read = async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Text(t)) => frames.push(t.to_string()),
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let code = tokio::time::timeout(Duration::from_secs(10), read).await.expect("the server closes in time");
    (frames, code)
}

/// The first ERROR frame among `frames`, as its header lines.
fn error_of(frames: &[String]) -> String {
    frames
        .iter()
        .find(|f| f.starts_with("ERROR\n"))
        .cloned()
        .unwrap_or_else(|| panic!("no ERROR in {frames:?}"))
}

const CONNECT: &str = "CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0";

#[tokio::test]
async fn bad_frames_get_an_error_and_a_close_and_others_carry_on() {
    let server = TestServer::start(Default::default()).await;
    let mut other = open(&server).await;
    send(&mut other, CONNECT).await;
    send(&mut other, "SUBSCRIBE\nid:0\ndestination:/topic/calm\nreceipt:r\n\n\0").await;
    let cases: [(&str, &str, Option<&str>); 5] = [
        ("an unknown command", "FOO\n\n\0", None),
        ("a frame before CONNECT", "SEND\ndestination:/topic/a\n\n{}\0", Some("107")),
        (
            "huge headers",
            &format!("{CONNECT}SEND\ndestination:/topic/a\n{}\n\n\0", "h:v\n".repeat(500)),
            None,
        ),
        (
            "a destination we do not serve",
            &format!("{CONNECT}SUBSCRIBE\nid:1\ndestination:/app/x\n\n\0"),
            Some("108"),
        ),
        (
            "a bad position",
            &format!("{CONNECT}SUBSCRIBE\nid:1\ndestination:/topic/a\nposition:nope\n\n\0"),
            Some("107"),
        ),
    ];
    for (what, input, code) in cases {
        let mut socket = open(&server).await;
        send(&mut socket, input).await;
        let (frames, close) = until_closed(&mut socket).await;
        let error = error_of(&frames);
        assert!(error.contains("\nmessage:"), "{what}: {error}");
        if let Some(code) = code {
            assert!(error.contains(&format!("\ncode:{code}\n")), "{what}: {error}");
        }
        assert_eq!(close, Some(3500), "{what}");
    }
    // A frame split over messages, and a missing NUL, are only incomplete: nothing is answered
    // until the rest comes.
    let mut socket = open(&server).await;
    send(&mut socket, "CONNECT\naccept-ver").await;
    send(&mut socket, "sion:1.2\n\n\0").await;
    let connected =
        tokio::time::timeout(Duration::from_secs(5), socket.next()).await.unwrap().unwrap().unwrap();
    assert!(connected.to_text().unwrap().starts_with("CONNECTED\n"));

    // The calm client still gets its publications.
    common::http_json(server.addr, "POST", "/api/publish", &[], r#"{"channel":"calm","data":1}"#).await;
    let mut got_message = false;
    while !got_message {
        let message =
            tokio::time::timeout(Duration::from_secs(5), other.next()).await.unwrap().unwrap().unwrap();
        got_message = message.to_text().unwrap().starts_with("MESSAGE\n");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_client_silent_past_its_heart_beat_is_dropped_with_an_error() {
    let server = TestServer::with(|config| config.heartbeat_interval = 1).await;
    let mut socket = open(&server).await;
    // It promises a heart-beat every second, then sends nothing.
    send(&mut socket, "CONNECT\naccept-version:1.2\nheart-beat:1000,0\n\n\0").await;
    let (frames, close) = until_closed(&mut socket).await;
    assert!(frames[0].starts_with("CONNECTED\n"));
    assert!(error_of(&frames).contains("message:no pong"));
    assert_eq!(close, Some(3003));
    server.stop().await;
}

/// The next MESSAGE frame on `socket` (skipping others), within 10 s.
async fn next_message(socket: &mut Socket) -> String {
    let read = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with("MESSAGE\n") => return t.to_string(),
                Some(Ok(_)) => {}
                other => panic!("the socket ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("a MESSAGE in time")
}

#[tokio::test]
async fn joins_and_leaves_reach_the_subscriptions_that_ask_for_them() {
    let mut config = switchboard::config::Config::default();
    let chat = switchboard::config::ChannelOptions { join_leave: true, ..Default::default() };
    config.namespaces.insert("chat".into(), chat);
    let server = TestServer::start(config).await;
    let (mut watcher, mut plain) = (open(&server).await, open(&server).await);
    send(&mut watcher, CONNECT).await;
    send(&mut watcher, "SUBSCRIBE\nid:0\ndestination:/topic/chat:jl\njoin-leave:true\nreceipt:r\n\n\0").await;
    send(&mut plain, CONNECT).await;
    send(&mut plain, "SUBSCRIBE\nid:0\ndestination:/topic/chat:jl\nreceipt:r\n\n\0").await;

    let mut bob = open(&server).await;
    send(&mut bob, CONNECT).await;
    let connected = loop {
        match bob.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with("CONNECTED\n") => break t.to_string(),
            Some(Ok(_)) => {}
            other => panic!("no CONNECTED: {other:?}"),
        }
    };
    let bob_id = connected.lines().find_map(|l| l.strip_prefix("user-name:")).unwrap().to_owned();
    send(&mut bob, "SUBSCRIBE\nid:0\ndestination:/topic/chat:jl\nreceipt:r\n\n\0").await;
    // The watcher's own join and plain's come first.
    let mut joins = Vec::new();
    while !joins.iter().any(|j: &String| j.contains(&bob_id)) {
        assert!(joins.len() < 3, "no join of bob among {joins:?}");
        joins.push(next_message(&mut watcher).await);
    }
    let join = joins.pop().unwrap();
    assert!(join.contains("\nevent:join\n"), "{join:?}");
    assert!(joins.iter().all(|j| j.contains("\nevent:join\n")), "{joins:?}");
    assert!(join.contains("\ndestination:/topic/chat\\cjl\n"), "{join:?}");
    drop(bob);
    let leave = next_message(&mut watcher).await;
    assert!(
        leave.contains("\nevent:leave\n") && leave.contains(&format!("\"client\":\"{bob_id}\"")),
        "{leave:?}"
    );

    // A subscription that did not ask sees publications only.
    send(&mut watcher, "SEND\ndestination:/topic/chat:jl\n\n{\"n\":1}\0").await;
    let first = next_message(&mut plain).await;
    assert!(!first.contains("\nevent:"), "{first:?}");
    assert!(first.ends_with("{\"n\":1}\0"), "{first:?}");
}

#[tokio::test]
async fn a_private_destination_takes_a_subscription_token_header_and_an_expired_one_ends_the_connection() {
    use jsonwebtoken::{EncodingKey, Header};
    let secret = "stomp-sub-secret";
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .unwrap()
    };
    let server = TestServer::with(|c| {
        c.token_secret = secret.into();
        let private = switchboard::config::ChannelOptions { private: true, ..Default::default() };
        c.namespaces.insert("vip".into(), private);
    })
    .await;
    let connect = format!(
        "CONNECT\naccept-version:1.2\nheart-beat:0,0\npasscode:{}\n\n\0",
        sign(serde_json::json!({"sub": "al"}))
    );

    // Without the header: refused.
    let mut socket = open(&server).await;
    send(&mut socket, &connect).await;
    send(&mut socket, "SUBSCRIBE\nid:0\ndestination:/topic/vip:a\nreceipt:r\n\n\0").await;
    let (frames, _) = until_closed(&mut socket).await;
    assert!(error_of(&frames).contains("subscription token"), "{frames:?}");

    // With a token that expires in 2 s: subscribed, then an ERROR saying the token expired.
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 2;
    let token = sign(serde_json::json!({"sub": "al", "channel": "vip:a", "exp": exp}));
    let mut socket = open(&server).await;
    send(&mut socket, &connect).await;
    send(&mut socket, &format!("SUBSCRIBE\nid:0\ndestination:/topic/vip:a\ntoken:{token}\nreceipt:r\n\n\0"))
        .await;
    let (frames, _) = until_closed(&mut socket).await;
    assert!(frames.iter().any(|f| f.starts_with("RECEIPT\n")), "subscribed first: {frames:?}");
    assert!(error_of(&frames).contains("token expired"), "{frames:?}");
    server.stop().await;
}
