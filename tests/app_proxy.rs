//! The application's backend (`app_proxy_url`) against a real HTTP backend started here: the
//! JSON protocol's `rpc` and STOMP SENDs to `/app/...` reach it with the caller's user, client
//! and data; its result comes back, its publications reach their channels (a user's personal
//! channel included), its errors pass through with their code; a backend that is too slow gets
//! 113 and holds up nobody else; without a backend both paths get a clear error.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::config::Config;
use switchboard_client::{Error, Event, WsConnection};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "app-secret";
/// The server's deadline for one backend call in these tests.
const TIMEOUT_MS: u64 = 400;

fn token(sub: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &json!({ "sub": sub }), &key).unwrap()
}

/// The calls the backend received, in order.
type Seen = Arc<Mutex<Vec<Value>>>;

/// A tiny application backend on a free loopback port; what it does depends on the method
/// (or, for a STOMP SEND, the destination).
async fn backend() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new().route("/rpc", axum::routing::post(answer)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

async fn answer(State(seen): State<Seen>, Json(call): Json<Value>) -> Response {
    seen.lock().unwrap().push(call.clone());
    let user = call["user"].as_str().unwrap_or_default().to_owned();
    let name = call["method"].as_str().or(call["destination"].as_str()).unwrap_or_default();
    match name {
        "echo" => Json(json!({"result": {"user": user, "client": call["client"], "data": call["data"]}}))
            .into_response(),
        // Answers the caller on their personal channel, as Spring's convertAndSendToUser does.
        "notify" => Json(json!({
            "result": "sent",
            "publish": [{"channel": format!("inbox#{user}"), "data": {"hello": call["data"]}}]
        }))
        .into_response(),
        "chat.send" => Json(json!({
            "publish": [{"channel": "chat:room", "data": {"from": user, "text": call["data"]["text"]}}]
        }))
        .into_response(),
        "refuse" => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": {"code": 4001, "message": "no such room"}})),
        )
            .into_response(),
        "bad-publish" => Json(json!({"result": 1, "publish": [{"channel": "ok", "data": 1}, {"channel": "no spaces", "data": 2}]}))
            .into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Json(json!({"result": "too late"})).into_response()
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
    }
}

async fn server_with_backend(backend: SocketAddr) -> TestServer {
    TestServer::start(Config {
        token_secret: SECRET.into(),
        app_proxy_url: format!("http://{backend}/rpc"),
        app_proxy_timeout_ms: TIMEOUT_MS,
        ..Config::default()
    })
    .await
}

async fn connected(server: &TestServer, user: &str) -> (WsConnection, String) {
    let mut ws = server.client().websocket().await.unwrap();
    let reply = ws.connect(Some(&token(user)), None).await.unwrap();
    (ws, reply.client)
}

fn command_error<T: std::fmt::Debug>(r: Result<T, Error>) -> (u32, String) {
    match r {
        Err(Error::Command { code, message }) => (code, message),
        other => panic!("expected a command error, got {other:?}"),
    }
}

#[tokio::test]
async fn rpc_answers_the_caller_publishes_for_the_backend_and_passes_its_errors_on() {
    let (addr, seen) = backend().await;
    let server = server_with_backend(addr).await;
    let (mut alice, client) = connected(&server, "alice").await;
    // Another connection of Alice's listens on her personal channel.
    let (mut inbox, _) = connected(&server, "alice").await;
    inbox.subscribe("inbox#alice", None).await.unwrap();

    let result = alice.rpc("echo", &json!({"x": [1, 2]})).await.unwrap();
    assert_eq!(result, json!({"user": "alice", "client": client, "data": {"x": [1, 2]}}));
    assert_eq!(
        seen.lock().unwrap()[0],
        json!({"kind": "rpc", "user": "alice", "client": client, "method": "echo", "data": {"x": [1, 2]}})
    );

    // The answer's publications are out before the result comes back.
    assert_eq!(alice.rpc("notify", &json!("hi")).await.unwrap(), json!("sent"));
    let history = alice.history("inbox#alice", None).await.unwrap();
    assert_eq!(history.publications.len(), 1, "published before the reply");
    let p = loop {
        if let Event::Publication(p) = common::next_ws_event(&mut inbox).await {
            break p;
        }
    };
    assert_eq!((p.channel.as_str(), p.data), ("inbox#alice", Some(json!({"hello": "hi"}))));
    assert!(p.info.is_none(), "published by the server, not by a client");

    // The backend's own error, with its code; a failing backend; an invalid answer, of which
    // nothing is published.
    assert_eq!(command_error(alice.rpc("refuse", &Value::Null).await), (4001, "no such room".into()));
    let (code, message) = command_error(alice.rpc("boom", &Value::Null).await);
    assert_eq!(code, 112);
    assert!(message.contains("HTTP 500"), "{message}");
    let (code, message) = command_error(alice.rpc("bad-publish", &Value::Null).await);
    assert_eq!(code, 112);
    assert!(message.contains("no spaces"), "{message}");
    assert_eq!(alice.history("ok", None).await.unwrap().publications.len(), 0, "nothing of a bad answer");

    // The connection carries on.
    assert_eq!(alice.rpc("echo", &json!(3)).await.unwrap()["data"], json!(3));
    server.stop().await;
}

#[tokio::test]
async fn a_slow_backend_times_out_with_113_and_holds_up_nobody_else() {
    let (addr, _) = backend().await;
    let server = server_with_backend(addr).await;
    let (mut alice, _) = connected(&server, "alice").await;
    let (mut bob, _) = connected(&server, "bob").await;
    let started = Instant::now();
    let (slow, others) = tokio::join!(alice.rpc("slow", &Value::Null), async {
        // While Alice waits, Bob calls, publishes and reads as usual.
        let echo = bob.rpc("echo", &json!("quick")).await.unwrap();
        bob.publish("news", &json!(1)).await.unwrap();
        (echo, started.elapsed())
    });
    let (code, message) = command_error(slow);
    assert_eq!(code, 113);
    assert!(message.contains(&format!("{TIMEOUT_MS} ms")), "{message}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(TIMEOUT_MS) && waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(others.0["data"], json!("quick"));
    assert!(others.1 < Duration::from_millis(TIMEOUT_MS), "Bob was not held up: {:?}", others.1);
    // Alice's connection carries on too.
    assert_eq!(alice.rpc("echo", &json!(2)).await.unwrap()["data"], json!(2));
    server.stop().await;
}

#[tokio::test]
async fn a_backend_that_is_not_there_is_unavailable() {
    // A port that was free a moment ago: the connection is refused (and tried once more).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = server_with_backend(free).await;
    let (mut alice, _) = connected(&server, "alice").await;
    let (code, message) = command_error(alice.rpc("echo", &Value::Null).await);
    assert_eq!(code, 112);
    assert!(message.contains("unavailable"), "{message}");
    server.stop().await;
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn stomp(server: &TestServer, passcode: Option<&str>) -> Socket {
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/stomp", server.addr)).await.unwrap();
    let passcode = passcode.map(|p| format!("passcode:{p}\n")).unwrap_or_default();
    send(&mut socket, &format!("CONNECT\naccept-version:1.2\nheart-beat:0,0\n{passcode}\n\0")).await;
    let connected = next_frame(&mut socket).await.expect("CONNECTED");
    assert!(connected.starts_with("CONNECTED\n"), "{connected}");
    socket
}

async fn send(socket: &mut Socket, frame: &str) {
    socket.send(Message::text(frame)).await.unwrap();
}

/// The next STOMP frame (heart-beats skipped), or `None` once the server closed; the close code
/// after it is returned by [`closed`].
async fn next_frame(socket: &mut Socket) -> Option<String> {
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("a frame in time");
        match message {
            Some(Ok(Message::Text(t))) if t.as_str() != "\n" => return Some(t.to_string()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Frames until the server closes, and the close code.
async fn closed(socket: &mut Socket) -> (Vec<String>, Option<u16>) {
    let mut frames = Vec::new();
    loop {
        let message =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await.expect("closes in time");
        match message {
            Some(Ok(Message::Text(t))) => frames.push(t.to_string()),
            Some(Ok(Message::Close(frame))) => return (frames, frame.map(|f| u16::from(f.code))),
            None | Some(Err(_)) => return (frames, None),
            Some(Ok(_)) => {}
        }
    }
}

/// Frames until every one of `wanted` has come (each names a frame by a part of its text).
async fn frames_until(socket: &mut Socket, wanted: &[&str]) -> Vec<String> {
    let mut frames: Vec<String> = Vec::new();
    while !wanted.iter().all(|w| frames.iter().any(|f| f.contains(w))) {
        frames.push(next_frame(socket).await.unwrap_or_else(|| panic!("closed after {frames:?}")));
    }
    frames
}

fn frame<'a>(frames: &'a [String], starts: &str) -> &'a str {
    frames.iter().find(|f| f.starts_with(starts)).unwrap_or_else(|| panic!("no {starts} in {frames:?}"))
}

#[tokio::test]
async fn stomp_sends_to_app_reach_the_backend_and_get_their_receipt() {
    let (addr, seen) = backend().await;
    let server = server_with_backend(addr).await;
    let mut socket = stomp(&server, Some(&token("alice"))).await;
    send(&mut socket, "SUBSCRIBE\nid:0\ndestination:/topic/chat:room\nreceipt:s0\n\n\0").await;
    send(&mut socket, "SUBSCRIBE\nid:1\ndestination:/user/queue/inbox\nreceipt:s1\n\n\0").await;
    frames_until(&mut socket, &["receipt-id:s1"]).await;

    // A @MessageMapping("chat.send")-style call: the backend publishes to the topic.
    send(
        &mut socket,
        "SEND\ndestination:/app/chat.send\nreceipt:r1\ncontent-type:application/json\n\n{\"text\":\"hi\"}\0",
    )
    .await;
    let frames = frames_until(&mut socket, &["MESSAGE\n", "receipt-id:r1"]).await;
    let message = frame(&frames, "MESSAGE\n");
    // (STOMP 1.2 escapes the `:` of a header value as `\c`.)
    assert!(message.contains("destination:/topic/chat\\croom\n"), "{message}");
    assert!(message.contains(r#"{"from":"alice","text":"hi"}"#), "{message}");
    let receipt = frame(&frames, "RECEIPT\n");
    assert!(receipt.contains("receipt-id:r1\n") && !receipt.contains("position:"), "{receipt}");
    let call = seen.lock().unwrap()[0].clone();
    assert_eq!(call["kind"], "send");
    assert_eq!(call["destination"], "chat.send");
    assert_eq!(call["user"], "alice");
    assert_eq!(call["data"], json!({"text": "hi"}));
    assert!(call.get("method").is_none(), "{call}");

    // An answer to the user alone: /user/queue/inbox is the personal channel inbox#alice. A body
    // that is not JSON travels as binary_b64.
    send(&mut socket, "SEND\ndestination:/app/notify\nreceipt:r2\n\nplain text\0").await;
    let frames = frames_until(&mut socket, &["MESSAGE\n", "receipt-id:r2"]).await;
    let message = frame(&frames, "MESSAGE\n");
    assert!(message.contains("destination:/user/queue/inbox\n"), "{message}");
    assert!(message.contains(r#"{"hello":null}"#), "{message}");
    let call = seen.lock().unwrap()[1].clone();
    assert_eq!((call["data"].clone(), call["binary_b64"].clone()), (Value::Null, json!("cGxhaW4gdGV4dA==")));

    // The backend's error is an ERROR with its code, and the connection ends.
    send(&mut socket, "SEND\ndestination:/app/refuse\nreceipt:r3\n\n{}\0").await;
    let (frames, close) = closed(&mut socket).await;
    let error = frames.iter().find(|f| f.starts_with("ERROR\n")).expect("an ERROR");
    assert!(error.contains("\ncode:4001\n") && error.contains("message:no such room"), "{error}");
    assert!(error.contains("receipt-id:r3"), "{error}");
    assert_eq!(close, Some(3500));
    server.stop().await;
}

#[tokio::test]
async fn without_a_backend_rpc_and_app_destinations_get_a_clear_error() {
    let server = TestServer::start(Config::default()).await;
    let mut ws = server.client().websocket().await.unwrap();
    let (code, message) = command_error(ws.rpc("echo", &Value::Null).await);
    assert_eq!(code, 108);
    assert!(message.contains("app_proxy_url"), "{message}");

    let mut socket = stomp(&server, None).await;
    send(&mut socket, "SEND\ndestination:/app/chat.send\nreceipt:r1\n\n{}\0").await;
    let (frames, close) = closed(&mut socket).await;
    let error = frames.iter().find(|f| f.starts_with("ERROR\n")).expect("an ERROR");
    assert!(error.contains("\ncode:108\n") && error.contains("app_proxy_url"), "{error}");
    assert_eq!(close, Some(3500));
    // The JSON connection is untouched.
    ws.ping().await.unwrap();
    server.stop().await;
}
