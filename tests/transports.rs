//! Every transport against an in-process server, through the Rust client: subscribe, receive,
//! resume after a forced disconnect with no loss and in order, and `recovered: false` past the
//! history.

mod common;

use common::{
    TestServer, cursor_at_end, http_request, n_of, next, next_ws_event, publications, ready, subscribed,
};
use serde_json::json;
use switchboard::config::Config;
use switchboard_client::{Event, Transport};

const ALL: [Transport; 5] =
    [Transport::WebSocket, Transport::Sse, Transport::Stream, Transport::LongPoll, Transport::Poll];

#[tokio::test]
async fn every_transport_receives_and_resumes_without_loss() {
    let server = TestServer::with_small_history().await;
    let client = server.client();
    for (i, transport) in ALL.into_iter().enumerate() {
        let channel = format!("news:{i}");
        let start = cursor_at_end(&client, &channel).await;
        let mut sub = client.subscribe(transport, &[&channel], Some(start)).await.unwrap();
        ready(&mut sub, transport).await;
        for n in 1..=3 {
            client.publish(&channel, &json!({ "n": n })).await.unwrap();
        }
        let got = publications(&mut sub, 3).await;
        assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), vec![1, 2, 3], "{transport:?}");
        assert_eq!(got.iter().map(|p| p.offset).collect::<Vec<_>>(), vec![1, 2, 3]);

        // A forced disconnect, publications meanwhile, and a resume from the cursor.
        let cursor = sub.cursor();
        sub.close().await;
        for n in 4..=6 {
            client.publish(&channel, &json!({ "n": n })).await.unwrap();
        }
        let mut sub = client.subscribe(transport, &[&channel], Some(cursor)).await.unwrap();
        if !matches!(transport, Transport::Poll | Transport::LongPoll) {
            let resumed = subscribed(&mut sub).await;
            assert!(resumed.recovered, "{transport:?} resumes within the history");
        }
        client.publish(&channel, &json!({ "n": 7 })).await.unwrap();
        let got = publications(&mut sub, 4).await;
        assert_eq!(
            got.iter().map(n_of).collect::<Vec<_>>(),
            vec![4, 5, 6, 7],
            "{transport:?}: no loss, no duplicate, in order"
        );
        sub.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn every_transport_says_recovered_false_past_the_history() {
    let server = TestServer::with_small_history().await;
    let client = server.client();
    for (i, transport) in ALL.into_iter().enumerate() {
        let channel = format!("small:{i}");
        client.publish(&channel, &json!({ "n": 0 })).await.unwrap();
        let cursor = cursor_at_end(&client, &channel).await;
        // Five publications while away; the history keeps two.
        for n in 1..=5 {
            client.publish(&channel, &json!({ "n": n })).await.unwrap();
        }
        let mut sub = client.subscribe(transport, &[&channel], Some(cursor)).await.unwrap();
        let s = subscribed(&mut sub).await;
        assert!(!s.recovered, "{transport:?} must say the position was not honoured");
        client.publish(&channel, &json!({ "n": 6 })).await.unwrap();
        let got = publications(&mut sub, 1).await;
        assert_eq!(n_of(&got[0]), 6, "{transport:?} goes on live after recovered:false");
        sub.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_fresh_streaming_subscription_says_it_has_nothing_to_recover() {
    let server = TestServer::with_small_history().await;
    let client = server.client();
    for transport in [Transport::WebSocket, Transport::Sse, Transport::Stream] {
        let mut sub = client.subscribe(transport, &["fresh"], None).await.unwrap();
        let s = subscribed(&mut sub).await;
        assert!(!s.recovered, "{transport:?}: no position, so the app must load its state");
        sub.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_cursor_from_one_transport_resumes_on_another() {
    let server = TestServer::with_small_history().await;
    let client = server.client();
    let mut sse = client.subscribe(Transport::Sse, &["a", "b"], None).await.unwrap();
    subscribed(&mut sse).await;
    subscribed(&mut sse).await;
    client.publish("a", &json!({ "n": 1 })).await.unwrap();
    publications(&mut sse, 1).await;
    let cursor = sse.cursor();
    sse.close().await;
    client.publish("a", &json!({ "n": 2 })).await.unwrap();
    client.publish("b", &json!({ "n": 3 })).await.unwrap();
    let mut ws = client.subscribe(Transport::WebSocket, &["a", "b"], Some(cursor.clone())).await.unwrap();
    let got = publications(&mut ws, 2).await;
    let mut ns: Vec<_> = got.iter().map(n_of).collect();
    ns.sort();
    assert_eq!(ns, vec![2, 3]);
    let mut poll = client.subscribe(Transport::Poll, &["a", "b"], Some(cursor)).await.unwrap();
    let got = publications(&mut poll, 2).await;
    assert_eq!(got.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn websocket_commands_presence_history_idempotency_and_binary() {
    let server = TestServer::with_small_history().await;
    let client = server.client();
    let mut a = client.websocket().await.unwrap();
    a.connect(None, Some("alice")).await.unwrap();
    let mut b = client.websocket().await.unwrap();
    b.connect(None, Some("bob")).await.unwrap();
    a.subscribe("room:1", None).await.unwrap();
    b.subscribe("room:1", None).await.unwrap();
    // Alice sees Bob join.
    let joined = loop {
        if let Event::Join(j) = next_ws_event(&mut a).await
            && j.info.name.as_deref() == Some("bob")
        {
            break j;
        }
    };
    assert_eq!(joined.channel, "room:1");
    let mut names: Vec<_> = loop {
        let p = a.presence("room:1").await.unwrap();
        if p.clients.len() == 2 {
            break p.clients.values().filter_map(|c| c.name.clone()).collect();
        }
        tokio::task::yield_now().await;
    };
    names.sort();
    assert_eq!(names, vec!["alice", "bob"]);

    let first = a.publish_with_key("room:1", &json!({"n": 1}), "k").await.unwrap();
    let again = a.publish_with_key("room:1", &json!({"n": 1}), "k").await.unwrap();
    assert_eq!(first, again, "a retried publish is stored once");
    let bin = a.publish_binary("room:1", b"\x00\x01\xff").await.unwrap();
    assert_eq!(bin.offset, first.offset + 1);
    let h = b.history("room:1", None).await.unwrap();
    assert_eq!(h.publications.len(), 2);
    assert_eq!(h.offset, bin.offset);

    let got = loop {
        if let Event::Publication(p) = next_ws_event(&mut b).await
            && p.offset == bin.offset
        {
            break p;
        }
    };
    assert_eq!(got.binary.as_deref(), Some(&b"\x00\x01\xff"[..]));
    assert_eq!(got.info.unwrap().name.as_deref(), Some("alice"));

    // Bob leaves; Alice sees it.
    b.close().await.unwrap();
    let left = loop {
        if let Event::Leave(l) = next_ws_event(&mut a).await {
            break l;
        }
    };
    assert_eq!(left.info.name.as_deref(), Some("bob"));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_tells_websocket_and_sse_clients_to_reconnect() {
    let server = TestServer::with_small_history().await;
    let client = server.client();
    let mut ws = client.subscribe(Transport::WebSocket, &["x"], None).await.unwrap();
    subscribed(&mut ws).await;
    let mut sse = client.subscribe(Transport::Sse, &["x"], None).await.unwrap();
    subscribed(&mut sse).await;
    let stopping = tokio::spawn(server.stop());
    for sub in [&mut ws, &mut sse] {
        loop {
            match next(sub).await {
                Event::Disconnected { code, .. } => {
                    assert_eq!(code, 3000);
                    break;
                }
                _ => continue,
            }
        }
    }
    stopping.await.unwrap();
}

#[tokio::test]
async fn cors_lets_pages_of_allowed_origins_call_the_http_endpoints() {
    let config = Config { allowed_origins: vec!["https://app.example".into()], ..Config::default() };
    let server = TestServer::start(config).await;
    let preflight = |origin: &'static str| {
        let headers = [
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type,authorization"),
        ];
        async move { http_request(server.addr, "OPTIONS", "/api/publish", &headers, "").await }
    };
    let (status, head, _) = preflight("https://app.example").await;
    let head = head.to_ascii_lowercase();
    assert_eq!(status, 200);
    assert!(head.contains("access-control-allow-origin: https://app.example"), "{head}");
    assert!(head.contains("access-control-allow-headers: content-type,authorization"), "{head}");
    let (_, head, _) = preflight("https://evil.example").await;
    assert!(!head.to_ascii_lowercase().contains("access-control-allow-origin"), "{head}");
    // A simple request gets the header too (and Location is readable by the page).
    let headers = [("Origin", "https://app.example")];
    let (status, head, _) = http_request(server.addr, "GET", "/healthz", &headers, "").await;
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("access-control-expose-headers: location"), "{head}");
    server.stop().await;
}
