//! The fan-out's direct writes ([`switchboard::direct`]): a waiting WebSocket subscriber's
//! publications are written by the fan-out itself, and the connection goes on from where those
//! writes left its subscriptions.

mod common;

use std::time::Duration;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame as JSON; panics on a close or after 10 s.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a frame in time");
        match m.expect("the connection stays open").expect("a frame") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// Reads frames until `n` publications of `channel` came; their `(offset, data.n)`, and the
/// other frames.
async fn publications(ws: &mut Ws, channel: &str, n: usize) -> (Vec<(u64, u64)>, Vec<Value>) {
    let (mut pubs, mut others) = (Vec::new(), Vec::new());
    while pubs.len() < n {
        let frame = next_json(ws).await;
        match &frame["pub"] {
            Value::Object(p) if p["channel"] == channel => {
                pubs.push((p["offset"].as_u64().unwrap(), p["data"]["n"].as_u64().unwrap()))
            }
            _ => others.push(frame),
        }
    }
    (pubs, others)
}

async fn subscribed(server: &TestServer, channels: &[&str]) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)).await.unwrap();
    for (id, channel) in channels.iter().enumerate() {
        let command = json!({"id": id + 1, "subscribe": {"channel": channel}});
        ws.send(Message::text(command.to_string())).await.unwrap();
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["id"], id + 1, "the subscribe reply: {reply}");
    }
    ws
}

#[tokio::test]
async fn a_subscriber_goes_on_from_where_the_fan_outs_writes_left_it() {
    let server = TestServer::with(|_| {}).await;
    let client = server.client();
    let metrics = server.state.metrics.clone();
    let mut ws = subscribed(&server, &["a"]).await;

    for n in 1..=10u64 {
        client.publish("a", &json!({ "n": n })).await.unwrap();
    }
    let (got, _) = publications(&mut ws, "a", 10).await;
    assert_eq!(got, (1..=10).map(|n| (n, n)).collect::<Vec<_>>());
    assert!(metrics.direct_writes.get() > 0, "the fan-out wrote to the waiting subscriber itself");

    // The subscriber's own command wakes its task, which takes its socket back: its session
    // must know that offsets 1 to 10 went out (or offset 11 would look like a gap and end the
    // connection with 3010), and send 11 on.
    let publish = json!({"id": 7, "publish": {"channel": "a", "data": {"n": 11}}});
    ws.send(Message::text(publish.to_string())).await.unwrap();
    for n in 12..=20u64 {
        client.publish("a", &json!({ "n": n })).await.unwrap();
    }
    let (got, others) = publications(&mut ws, "a", 10).await;
    assert_eq!(got, (11..=20).map(|n| (n, n)).collect::<Vec<_>>());
    let reply = match others.as_slice() {
        [reply] => reply.clone(),
        [] => next_json(&mut ws).await,
        more => panic!("only the publish reply besides the publications: {more:?}"),
    };
    assert_eq!(reply["id"], 7);
    assert_eq!(reply["publish"]["offset"], 11);
    server.stop().await;
}

#[tokio::test]
async fn publications_of_several_channels_each_arrive_in_order() {
    let server = TestServer::with(|_| {}).await;
    let client = server.client();
    let mut ws = subscribed(&server, &["a", "b"]).await;
    for n in 1..=20u64 {
        client.publish(if n % 3 == 0 { "b" } else { "a" }, &json!({ "n": n })).await.unwrap();
    }
    let mut seen: Vec<(String, u64)> = Vec::new();
    while seen.len() < 20 {
        let frame = next_json(&mut ws).await;
        let p = &frame["pub"];
        seen.push((p["channel"].as_str().unwrap().to_owned(), p["offset"].as_u64().unwrap()));
    }
    for channel in ["a", "b"] {
        let offsets: Vec<u64> = seen.iter().filter(|(c, _)| c == channel).map(|(_, o)| *o).collect();
        let count = if channel == "b" { 6 } else { 14 };
        assert_eq!(offsets, (1..=count).collect::<Vec<_>>(), "{channel}'s publications");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_workers_the_fan_out_writes_at_most_its_limit_per_publication() {
    let server = TestServer::with(|c| c.direct_writes_per_publication = 1).await;
    let client = server.client();
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        subscribers.push(subscribed(&server, &["a"]).await);
    }
    for n in 1..=5u64 {
        client.publish("a", &json!({ "n": n })).await.unwrap();
    }
    for ws in &mut subscribers {
        let (got, _) = publications(ws, "a", 5).await;
        assert_eq!(got, (1..=5).map(|n| (n, n)).collect::<Vec<_>>());
    }
    let written = server.state.metrics.direct_writes.get();
    assert!((1..=5).contains(&written), "at most one of each publication's 3 deliveries: {written}");
    // Gone before the server stops: it would wait for their close handshakes.
    drop(subscribers);
    server.stop().await;
}

#[tokio::test]
async fn a_limit_of_0_turns_direct_writes_off() {
    let server = TestServer::with(|c| c.direct_writes_per_publication = 0).await;
    let client = server.client();
    let mut ws = subscribed(&server, &["a"]).await;
    for n in 1..=5u64 {
        client.publish("a", &json!({ "n": n })).await.unwrap();
    }
    let (got, _) = publications(&mut ws, "a", 5).await;
    assert_eq!(got, (1..=5).map(|n| (n, n)).collect::<Vec<_>>());
    assert_eq!(server.state.metrics.direct_writes.get(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_burst_of_publications_reaches_every_subscriber_whole_and_in_order() {
    let server = TestServer::with(|_| {}).await;
    let metrics = server.state.metrics.clone();
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        subscribers.push(subscribed(&server, &["a"]).await);
    }
    // 200 publishes in one write: the publisher's turn fans out many, the first written at
    // once, the rest by the flush at the turn's end, several to a write.
    let (mut publisher, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)).await.unwrap();
    for n in 1..=200u64 {
        let publish = json!({"id": n, "publish": {"channel": "a", "data": {"n": n}}});
        publisher.feed(Message::text(publish.to_string())).await.unwrap();
    }
    publisher.flush().await.unwrap();
    for ws in &mut subscribers {
        let (got, others) = publications(ws, "a", 200).await;
        assert_eq!(got, (1..=200).map(|n| (n, n)).collect::<Vec<_>>());
        assert!(others.is_empty(), "{others:?}");
    }
    assert!(metrics.direct_writes.get() > 3, "the fan-out wrote more than the turns' first");
    drop(subscribers);
    server.stop().await;
}

#[tokio::test]
async fn a_flush_longer_than_one_slice_reaches_every_subscriber_in_order() {
    // More subscribers than one slice of the flush (256): the flush yields between slices,
    // the publisher's next publications join the outboxes still waiting, and the outboxes
    // already written queue again behind them. Every subscriber still gets everything, once,
    // in order.
    const SUBSCRIBERS: usize = 700;
    const PUBLICATIONS: u64 = 40;
    let server = TestServer::with(|c| {
        // All from one address.
        c.max_connections_per_ip = 1000;
        c.http_accept_rate_per_ip = 0;
    })
    .await;
    let metrics = server.state.metrics.clone();
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        subscribers.push(subscribed(&server, &["a"]).await);
    }
    let (mut publisher, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)).await.unwrap();
    for n in 1..=PUBLICATIONS {
        let publish = json!({"id": n, "publish": {"channel": "a", "data": {"n": n}}});
        publisher.feed(Message::text(publish.to_string())).await.unwrap();
    }
    publisher.flush().await.unwrap();
    let want: Vec<(u64, u64)> = (1..=PUBLICATIONS).map(|n| (n, n)).collect();
    let reads = subscribers.iter_mut().map(|ws| publications(ws, "a", PUBLICATIONS as usize));
    for (got, others) in futures_util::future::join_all(reads).await {
        assert_eq!(got, want);
        assert!(others.is_empty(), "{others:?}");
    }
    assert!(
        metrics.direct_writes.get() > SUBSCRIBERS as u64,
        "the flushes wrote beyond the turns' first publication"
    );
    drop(subscribers);
    server.stop().await;
}
