//! The transport lab's server side: the `/lab/control` socket's commands and errors, the session
//! limit, bytes counted exactly on a connection that opted in (and on no other), the forced drop,
//! and the impairment's delay.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::Server;
use switchboard::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn start(max_sessions: usize) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        demo: true,
        lab_max_sessions: max_sessions,
        lab_max_delay_ms: 1000,
        ..Config::default()
    }
    .with_demo_namespaces();
    let server = Server::bind(config).await.expect("binds");
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn control(addr: std::net::SocketAddr) -> (Ws, Value) {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/lab/control")).await.expect("opens");
    let hello = recv(&mut ws).await;
    (ws, hello)
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await.expect("open").expect("a frame") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            _ => continue,
        }
    }
}

async fn call(ws: &mut Ws, cmd: Value) -> Value {
    ws.send(Message::Text(cmd.to_string().into())).await.unwrap();
    recv(ws).await
}

/// Sends `head` on a fresh connection and reads the whole answer (the request closes it).
async fn raw(addr: std::net::SocketAddr, head: &str) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn control_commands_and_their_errors() {
    let (addr, _stop) = start(4).await;
    let (mut ws, hello) = control(addr).await;
    let session = hello["session"].as_str().expect("a session id");
    assert_eq!(hello["channel"], format!("lab:{session}"));
    let stats = call(&mut ws, json!({"id": 1, "op": "stats"})).await;
    assert_eq!((stats["id"].as_u64(), stats["stats"]["rx"].as_u64()), (Some(1), Some(0)));
    let published = call(&mut ws, json!({"id": 2, "op": "pub", "n": 7, "size": 10})).await;
    assert_eq!(published["offset"], 1);
    for (cmd, code) in [
        (json!({"id": 3, "op": "teleport"}), 104),
        (json!({"id": 4, "op": "pub", "size": 1_000_000}), 106),
        (json!({"id": 5, "op": "impair", "delay_ms": 5000}), 107),
        (json!({"id": 6, "op": "impair", "loss": 0.9}), 107),
    ] {
        let reply = call(&mut ws, cmd.clone()).await;
        assert_eq!(reply["error"]["code"], code, "{cmd} → {reply}");
        assert_eq!(reply["id"], cmd["id"]);
    }
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(recv(&mut ws).await["error"]["code"], 107);
    let set =
        call(&mut ws, json!({"id": 7, "op": "impair", "delay_ms": 100, "jitter_ms": 20, "loss": 0.05})).await;
    assert_eq!(set["stats"]["impairment"], json!({"delay_ms": 100, "jitter_ms": 20, "loss": 0.05}));
}

#[tokio::test]
async fn sessions_are_limited_and_freed_when_their_socket_closes() {
    let (addr, _stop) = start(1).await;
    let (mut first, _) = control(addr).await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/lab/control")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("a second session with lab_max_sessions = 1: {other:?}"),
    }
    first.close(None).await.unwrap();
    // The slot comes back once the server has seen the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if tokio_tungstenite::connect_async(format!("ws://{addr}/lab/control")).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the closed session's slot never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bytes_are_counted_exactly_and_only_on_tagged_connections() {
    let (addr, _stop) = start(4).await;
    let (mut ws, hello) = control(addr).await;
    let session = hello["session"].as_str().unwrap().to_owned();
    let plain = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    raw(addr, &plain).await;
    let tagged = format!(
        "GET /healthz?sb_lab={session} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: lab-test\r\nConnection: close\r\n\r\n"
    );
    let answer = raw(addr, &tagged).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    let stats = &call(&mut ws, json!({"op": "stats"})).await["stats"];
    assert_eq!(stats["rx"].as_u64(), Some(tagged.len() as u64), "the request head, to the byte");
    assert_eq!(stats["tx"].as_u64(), Some(answer.len() as u64), "the whole response, to the byte");
    assert_eq!((stats["requests"].as_u64(), stats["connections"].as_u64()), (Some(1), Some(1)));
    // Another session's id, or none, is not counted here.
    raw(addr, &format!("GET /healthz?sb_lab=0000 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"))
        .await;
    assert_eq!(call(&mut ws, json!({"op": "stats"})).await["stats"]["requests"], 1);
}

#[tokio::test]
async fn a_forced_drop_closes_the_sessions_connections_and_no_other() {
    let (addr, _stop) = start(4).await;
    let (mut ws, hello) = control(addr).await;
    let (session, channel) = (hello["session"].as_str().unwrap(), hello["channel"].as_str().unwrap());
    let sse = |tag: String| {
        format!(
            "GET /sse?channel={channel}{tag} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
    };
    let mut lab = TcpStream::connect(addr).await.unwrap();
    lab.write_all(sse(format!("&sb_lab={session}")).as_bytes()).await.unwrap();
    let mut other = TcpStream::connect(addr).await.unwrap();
    other.write_all(sse(String::new()).as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    for s in [&mut lab, &mut other] {
        assert!(s.read(&mut buf).await.unwrap() > 0, "the stream started");
    }
    assert_eq!(call(&mut ws, json!({"op": "drop"})).await["dropped"], true);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match lab.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the lab's stream was closed");
    // The untagged stream still gets the session's publications.
    call(&mut ws, json!({"op": "pub", "n": 1, "size": 0})).await;
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("\"n\":1") {
        let n =
            tokio::time::timeout(Duration::from_secs(5), other.read(&mut buf)).await.expect("data").unwrap();
        assert!(n > 0, "the other stream is open");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn the_impairment_delays_what_the_server_writes() {
    let (addr, _stop) = start(4).await;
    let (mut ws, hello) = control(addr).await;
    let session = hello["session"].as_str().unwrap().to_owned();
    call(&mut ws, json!({"op": "impair", "delay_ms": 300})).await;
    let began = Instant::now();
    let answer = raw(
        addr,
        &format!("GET /healthz?sb_lab={session} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    // A lower bound only: the answer cannot come before its delay.
    assert!(began.elapsed() >= Duration::from_millis(300), "answered after {:?}", began.elapsed());
}
