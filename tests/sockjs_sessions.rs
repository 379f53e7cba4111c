//! `/sockjs`, the real service, over real sockets: STOMP or the JSON protocol inside a session,
//! bad input, shutdown, and sessions whose requests land on another node (Redis, NATS). The
//! protocol's own ground is in `sockjs.rs`; the helpers in `common/sockjs.rs`.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::backend::{Backend, Kind};
use common::sockjs::*;
use common::{TestServer, http_json, next_ws_event};
use futures_util::SinkExt;
use serde_json::json;
use switchboard_client::Event;
use tokio_tungstenite::tungstenite::Message;

// STOMP over SockJS (the real service)
// ====================================

#[tokio::test]
async fn stomp_over_xhr_streaming_meets_the_json_protocol_on_the_same_channel() {
    let server = TestServer::with(lean).await;
    let addr = server.addr;
    let mut stomp = SockjsSession::open(addr, addr, REAL).await;
    stomp.send(&[CONNECT]).await;
    let connected = stomp.stomp().await;
    assert_eq!(command(&connected), "CONNECTED");
    assert_eq!(header(&connected, "version").as_deref(), Some("1.2"));
    assert!(header(&connected, "session").is_some_and(|s| !s.is_empty()));

    stomp.send(&["SUBSCRIBE\nid:0\ndestination:/topic/chat:lobby\nreceipt:r1\n\n\0"]).await;
    let receipt = stomp.stomp().await;
    assert_eq!(command(&receipt), "RECEIPT");
    assert_eq!(header(&receipt, "receipt-id").as_deref(), Some("r1"));
    assert_eq!(header(&receipt, "recovered").as_deref(), Some("false"));

    // A publication of the server API arrives as a MESSAGE with its position.
    let (status, published) =
        http_json(addr, "POST", "/api/publish", &[], r#"{"channel":"chat:lobby","data":{"text":"hi"}}"#)
            .await;
    assert_eq!(status, 200, "{published}");
    let message = stomp.stomp().await;
    assert_eq!(command(&message), "MESSAGE");
    assert_eq!(header(&message, "destination").as_deref(), Some("/topic/chat:lobby"));
    assert_eq!(header(&message, "subscription").as_deref(), Some("0"));
    assert_eq!(header(&message, "content-type").as_deref(), Some("application/json"));
    let position = format!("{}:{}", published["epoch"].as_str().unwrap(), published["offset"]);
    assert_eq!(header(&message, "position").as_deref(), Some(position.as_str()));
    assert_eq!(serde_json::from_str::<serde_json::Value>(body(&message)).unwrap(), json!({"text": "hi"}));

    // SockJS carries text only: a body that is not UTF-8 comes as base64, and says so.
    let (status, _) =
        http_json(addr, "POST", "/api/publish", &[], r#"{"channel":"chat:lobby","b64":"/wCA"}"#).await;
    assert_eq!(status, 200);
    let message = stomp.stomp().await;
    assert_eq!(header(&message, "content-type").as_deref(), Some("application/octet-stream"));
    assert_eq!(header(&message, "content-transfer-encoding").as_deref(), Some("base64"));
    assert_eq!(body(&message), "/wCA");

    // A SEND reaches a JSON-protocol subscriber of the same channel on /ws, and itself.
    let client = server.client();
    let mut ws = client.websocket().await.unwrap();
    ws.subscribe("chat:lobby", None).await.unwrap();
    stomp.send(&["SEND\ndestination:/topic/chat:lobby\nreceipt:s1\n\n{\"from\":\"stomp\"}\0"]).await;
    let mut receipt = None;
    let mut echoed = None;
    while receipt.is_none() || echoed.is_none() {
        let frame = stomp.stomp().await;
        match command(&frame) {
            "RECEIPT" => receipt = Some(frame),
            "MESSAGE" => echoed = Some(frame),
            _ => panic!("unexpected {frame:?}"),
        }
    }
    let sent_at = header(receipt.as_ref().unwrap(), "position").expect("a SEND's receipt has its position");
    assert_eq!(header(echoed.as_ref().unwrap(), "position"), Some(sent_at.clone()));
    let publication = loop {
        if let Event::Publication(p) = next_ws_event(&mut ws).await {
            break p;
        }
    };
    assert_eq!(publication.data, Some(json!({"from": "stomp"})));
    assert_eq!(format!("{}:{}", publication.epoch, publication.offset), sent_at);
    ws.close().await.unwrap();

    // DISCONNECT: its receipt, then a normal close.
    stomp.send(&["DISCONNECT\nreceipt:bye\n\n\0"]).await;
    let (frames, close) = stomp.until_closed().await;
    assert!(frames.iter().any(|f| header(f, "receipt-id").as_deref() == Some("bye")), "{frames:?}");
    assert!(close.starts_with("c[1000,"), "{close}");
    server.stop().await;
}

#[tokio::test]
async fn stomp_user_destinations_over_sockjs_need_a_token() {
    const SECRET: &str = "sockjs-secret";
    let server = TestServer::with(|c| {
        lean(c);
        c.token_secret = SECRET.into();
        c.api_key = "sockjs-key".into();
    })
    .await;
    let addr = server.addr;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let token =
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &json!({"sub": "alice"}), &key).unwrap();

    let mut alice = SockjsSession::open(addr, addr, REAL).await;
    alice.send(&[&format!("CONNECT\naccept-version:1.2\nheart-beat:0,0\npasscode:{token}\n\n\0")]).await;
    assert_eq!(command(&alice.stomp().await), "CONNECTED");
    alice.send(&["SUBSCRIBE\nid:0\ndestination:/user/queue/inbox\nreceipt:r\n\n\0"]).await;
    assert_eq!(command(&alice.stomp().await), "RECEIPT");
    let (status, _) = http_json(
        addr,
        "POST",
        "/api/publish",
        &[("X-API-Key", "sockjs-key")],
        r#"{"channel":"inbox#alice","data":{"for":"alice"}}"#,
    )
    .await;
    assert_eq!(status, 200);
    let message = alice.stomp().await;
    assert_eq!(command(&message), "MESSAGE");
    assert_eq!(header(&message, "destination").as_deref(), Some("/user/queue/inbox"));
    assert_eq!(body(&message), r#"{"for":"alice"}"#);

    // Without a token there is no session at all with a secret set; the CONNECT is refused.
    let mut anonymous = SockjsSession::open(addr, addr, REAL).await;
    anonymous.send(&[CONNECT]).await;
    let (frames, close) = anonymous.until_closed().await;
    assert_eq!(command(&error_of(&frames)), "ERROR");
    assert!(close.starts_with("c[3501,"), "{close}");
    server.stop().await;
}

#[tokio::test]
async fn stomp_over_the_websocket_transport() {
    let server = TestServer::with(lean).await;
    let mut ws = ws_open(&format!("ws://{}{REAL}/000/{}/websocket", server.addr, sid())).await;
    assert_eq!(ws_text(&mut ws).await, "o");
    ws.send(Message::text(serde_json::to_string(&[CONNECT]).unwrap())).await.unwrap();
    let frame = ws_text(&mut ws).await;
    let connected = &messages(&frame)[0];
    assert_eq!(command(connected), "CONNECTED");
    let subscribe = "SUBSCRIBE\nid:0\ndestination:/topic/ws\nreceipt:r\n\n\0";
    ws.send(Message::text(serde_json::to_string(&[subscribe]).unwrap())).await.unwrap();
    assert_eq!(command(&messages(&ws_text(&mut ws).await)[0]), "RECEIPT");
    http_json(server.addr, "POST", "/api/publish", &[], r#"{"channel":"ws","data":{"n":1}}"#).await;
    let message = &messages(&ws_text(&mut ws).await)[0];
    assert_eq!(command(message), "MESSAGE");
    assert_eq!(body_json(message), json!({"n": 1}));
    server.stop().await;
}

// The JSON protocol over SockJS
// =============================

#[tokio::test]
async fn the_json_protocol_over_xhr_polling() {
    let server = TestServer::with(lean).await;
    let addr = server.addr;
    let url = format!("{REAL}/000/{}", sid());
    let mut poller = Poller { addr, url: url.clone(), queue: VecDeque::new() };
    assert_eq!(poll(addr, &url).await, "o\n");

    // A JSON object first: the session speaks the JSON protocol.
    assert_eq!(
        xhr_send(addr, &url, &serde_json::to_string(&[r#"{"id":1,"connect":{}}"#]).unwrap()).await,
        204
    );
    let reply = poller.json().await;
    assert_eq!(reply["id"], 1);
    assert!(reply["connect"]["client"].as_str().is_some_and(|c| !c.is_empty()), "{reply}");

    let subscribe = r#"{"id":2,"subscribe":{"channel":"news"}}"#;
    assert_eq!(xhr_send(addr, &url, &serde_json::to_string(&[subscribe]).unwrap()).await, 204);
    let reply = poller.json().await;
    assert_eq!(reply["id"], 2);
    assert_eq!(reply["subscribe"]["channel"], "news", "{reply}");

    // A publication, with characters SockJS must escape on the way.
    let (status, _) = http_json(
        addr,
        "POST",
        "/api/publish",
        &[],
        "{\"channel\":\"news\",\"data\":{\"t\":\"a\u{2028}b\"}}",
    )
    .await;
    assert_eq!(status, 200);
    let raw = poller.raw().await;
    assert!(raw.contains("\\u2028") && !raw.contains('\u{2028}'), "{raw:?}");
    let publication: serde_json::Value = serde_json::from_str(&messages(&raw)[0]).unwrap();
    assert_eq!(publication["pub"]["channel"], "news");
    assert_eq!(publication["pub"]["data"]["t"], "a\u{2028}b");

    // Publishing from the session: a reply, and the publication back.
    let publish = r#"{"id":3,"publish":{"channel":"news","data":{"n":1}}}"#;
    assert_eq!(xhr_send(addr, &url, &serde_json::to_string(&[publish]).unwrap()).await, 204);
    let (mut replied, mut echoed) = (false, false);
    while !(replied && echoed) {
        let m = poller.json().await;
        replied |= m["id"] == 3 && m["publish"]["offset"] == 2;
        echoed |= m["pub"]["data"] == json!({"n": 1});
    }
    server.stop().await;
}

#[tokio::test]
async fn a_session_nobody_receives_from_is_cut_off_as_a_slow_consumer() {
    let server = TestServer::with(|c| {
        lean(c);
        c.outbound_queue = 8;
        // Not the idle timeout: the queue's bound must end it.
        c.sockjs_disconnect_delay_ms = 60_000;
        // 300 publishes, each on a fresh connection from loopback.
        c.http_accept_rate_per_ip = 0;
    })
    .await;
    let addr = server.addr;
    let url = format!("{REAL}/000/{}", sid());
    let mut poller = Poller { addr, url: url.clone(), queue: VecDeque::new() };
    assert_eq!(poll(addr, &url).await, "o\n");
    let subscribe = r#"{"id":1,"subscribe":{"channel":"flood"}}"#;
    assert_eq!(xhr_send(addr, &url, &serde_json::to_string(&[subscribe]).unwrap()).await, 204);
    assert_eq!(poller.json().await["id"], 1);

    // 300 KiB for a session that nobody polls: it holds what fits, then it is cut off.
    let data = "x".repeat(1024);
    for n in 0..300 {
        let body = json!({"channel": "flood", "data": {"n": n, "pad": data}}).to_string();
        assert_eq!(http_json(addr, "POST", "/api/publish", &[], &body).await.0, 200);
    }
    let held = poll(addr, &url).await;
    assert!(held.len() < 200 * 1024, "{} bytes were held for the session", held.len());
    let ns: Vec<u64> = messages(&held)
        .iter()
        .map(|m| serde_json::from_str::<serde_json::Value>(m).unwrap()["pub"]["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..ns.len() as u64).collect::<Vec<_>>(), "what was held, in order");
    assert_eq!(poll(addr, &url).await, "c[3002,\"slow consumer\"]\n");
    server.stop().await;
}

// Bad input on /sockjs
// ====================

#[tokio::test]
async fn bad_input_gets_an_error_then_a_close_and_others_carry_on() {
    let server = TestServer::with(lean).await;
    let addr = server.addr;
    let mut calm = SockjsSession::open(addr, addr, REAL).await;
    calm.send(&[CONNECT]).await;
    assert_eq!(command(&calm.stomp().await), "CONNECTED");
    calm.send(&["SUBSCRIBE\nid:0\ndestination:/topic/calm\nreceipt:r\n\n\0"]).await;
    assert_eq!(command(&calm.stomp().await), "RECEIPT");

    let huge_body = format!("SEND\ndestination:/topic/calm\n\n{}\0", "x".repeat(70 * 1024));
    let cases: [(&str, Vec<String>, Option<&str>, &str); 6] = [
        ("a frame before CONNECT", vec!["SEND\ndestination:/topic/a\n\n{}\0".into()], Some("107"), "c[3500,"),
        ("an unknown command", vec![format!("{CONNECT}FOO\n\n\0")], None, "c[3500,"),
        (
            "a destination we do not serve",
            vec![CONNECT.into(), "SUBSCRIBE\nid:1\ndestination:/app/x\n\n\0".into()],
            Some("108"),
            "c[3500,",
        ),
        ("a body over max_publication_bytes", vec![CONNECT.into(), huge_body], None, "c[3500,"),
        ("a second CONNECT", vec![CONNECT.into(), CONNECT.into()], Some("107"), "c[3500,"),
        (
            "/user/ without a token",
            vec![CONNECT.into(), "SUBSCRIBE\nid:1\ndestination:/user/queue/a\n\n\0".into()],
            Some("108"),
            "c[3500,",
        ),
    ];
    for (what, input, code, close_prefix) in cases {
        let mut s = SockjsSession::open(addr, addr, REAL).await;
        let input: Vec<&str> = input.iter().map(String::as_str).collect();
        s.send(&input).await;
        let (frames, close) = s.until_closed().await;
        let error = error_of(&frames);
        assert!(header(&error, "message").is_some(), "{what}: {error:?}");
        if let Some(code) = code {
            assert_eq!(header(&error, "code").as_deref(), Some(code), "{what}: {error:?}");
        }
        assert!(close.starts_with(close_prefix), "{what}: {close}");
        assert_eq!(xhr_send(addr, &s.url, "[]").await, 404, "{what}: the session is gone");
    }

    // JSON-protocol mode (a `{` first) with broken JSON: closed with 3500, no STOMP ERROR.
    let mut s = SockjsSession::open(addr, addr, REAL).await;
    s.send(&["{not json"]).await;
    let (frames, close) = s.until_closed().await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(close, "c[3500,\"bad request\"]\n");

    // A body over max_frame_bytes is refused before it reaches the session, which goes on.
    let mut s = SockjsSession::open(addr, addr, REAL).await;
    let huge = serde_json::to_string(&["x".repeat(200 * 1024)]).unwrap();
    let r = request(addr, "POST", &format!("{}/xhr_send", s.url), &[], &huge).await;
    assert_eq!(r.status, 413, "{}", r.body);
    s.send(&[CONNECT]).await;
    assert_eq!(command(&s.stomp().await), "CONNECTED");

    // Meanwhile the calm session kept its subscription.
    http_json(addr, "POST", "/api/publish", &[], r#"{"channel":"calm","data":1}"#).await;
    assert_eq!(command(&calm.stomp().await), "MESSAGE");
    server.stop().await;
}

#[tokio::test]
async fn a_polling_client_gets_the_last_frames_before_the_close() {
    let server = TestServer::with(lean).await;
    let addr = server.addr;
    // The ERROR that says why, though no poll was waiting when the session closed.
    let url = format!("{REAL}/000/{}", sid());
    assert_eq!(poll(addr, &url).await, "o\n");
    assert_eq!(
        xhr_send(addr, &url, &serde_json::to_string(&["SEND\ndestination:/topic/a\n\n\0"]).unwrap()).await,
        204
    );
    let mut poller = Poller { addr, url: url.clone(), queue: VecDeque::new() };
    let error = poller.message().await;
    assert_eq!(command(&error), "ERROR");
    assert_eq!(header(&error, "code").as_deref(), Some("107"));
    assert_eq!(poll(addr, &url).await, "c[3500,\"bad request\"]\n");

    // A DISCONNECT's RECEIPT (what STOMP clients wait for before they go).
    let url = format!("{REAL}/000/{}", sid());
    let mut poller = Poller { addr, url: url.clone(), queue: VecDeque::new() };
    assert_eq!(poll(addr, &url).await, "o\n");
    assert_eq!(xhr_send(addr, &url, &serde_json::to_string(&[CONNECT]).unwrap()).await, 204);
    assert_eq!(command(&poller.message().await), "CONNECTED");
    let bye = "DISCONNECT\nreceipt:bye\n\n\0";
    assert_eq!(xhr_send(addr, &url, &serde_json::to_string(&[bye]).unwrap()).await, 204);
    assert_eq!(header(&poller.message().await, "receipt-id").as_deref(), Some("bye"));
    assert_eq!(poll(addr, &url).await, "c[1000,\"disconnect\"]\n");
    server.stop().await;
}

// Shutdown
// ========

#[tokio::test]
async fn stopping_the_server_closes_sessions_with_3000() {
    let server = TestServer::with(lean).await;
    let addr = server.addr;
    let mut connected = SockjsSession::open(addr, addr, REAL).await;
    connected.send(&[CONNECT]).await;
    assert_eq!(command(&connected.stomp().await), "CONNECTED");
    let started = Instant::now();
    let stopping = tokio::spawn(server.stop());
    let (frames, close) = connected.until_closed().await;
    assert_eq!(header(&error_of(&frames), "message").as_deref(), Some("shutdown"));
    assert_eq!(close, "c[3000,\"shutdown\"]\n");
    tokio::time::timeout(WAIT, stopping).await.expect("the server stops in time").unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the stop waited {:?}", started.elapsed());
}

#[tokio::test]
async fn stopping_the_server_closes_a_session_that_has_not_spoken_yet() {
    let server = TestServer::with(lean).await;
    let mut silent = SockjsSession::open(server.addr, server.addr, REAL).await;
    let started = Instant::now();
    let stopping = tokio::spawn(server.stop());
    let (frames, close) = silent.until_closed().await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(close, "c[3000,\"shutdown\"]\n");
    tokio::time::timeout(WAIT, stopping).await.expect("the server stops in time").unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the stop waited {:?}", started.elapsed());
}

// Sessions across nodes
// =====================

/// Node A holds the session (its receiving request); every send goes to node B, which forwards
/// it through the broker.
async fn a_session_on_one_node_takes_sends_through_another(kind: Kind) {
    let Some(backend) = Backend::start(kind) else { return };
    let (a, b) = two_nodes(&backend).await;
    let mut s = SockjsSession::open(a.addr, b.addr, REAL).await;
    // Until B can reach the session (see the next test: `o` may come before that).
    let (url, b_addr) = (&s.url, b.addr);
    common::eventually_async("B reaches the session", WAIT, || async move {
        xhr_send(b_addr, url, "[]").await == 204
    })
    .await;
    s.send(&[CONNECT]).await;
    assert_eq!(command(&s.stomp().await), "CONNECTED");
    s.send(&["SUBSCRIBE\nid:0\ndestination:/topic/chat:multi\nreceipt:r\n\n\0"]).await;
    assert_eq!(command(&s.stomp().await), "RECEIPT");
    for (n, node) in [(1, &a), (2, &b)] {
        let body = format!(r#"{{"channel":"chat:multi","data":{{"n":{n}}}}}"#);
        assert_eq!(http_json(node.addr, "POST", "/api/publish", &[], &body).await.0, 200);
        let message = s.stomp().await;
        assert_eq!(command(&message), "MESSAGE");
        assert_eq!(body_json(&message), json!({"n": n}), "published on node {n}");
    }
    // Several messages in one send, in order.
    s.send(&[
        "SEND\ndestination:/topic/chat:multi\n\n{\"n\":3}\0",
        "SEND\ndestination:/topic/chat:multi\nreceipt:s4\n\n{\"n\":4}\0",
    ])
    .await;
    let mut seen = Vec::new();
    while !seen.iter().any(|f: &String| header(f, "receipt-id").as_deref() == Some("s4")) || seen.len() < 3 {
        seen.push(s.stomp().await);
    }
    let ns: Vec<serde_json::Value> =
        seen.iter().filter(|f| command(f) == "MESSAGE").map(|f| body_json(f)["n"].clone()).collect();
    assert_eq!(ns, vec![json!(3), json!(4)]);

    // No node holds this one: 404 from B (and from A).
    let nowhere = format!("{REAL}/000/{}", sid());
    assert_eq!(xhr_send(b.addr, &nowhere, r#"["x"]"#).await, 404);
    assert_eq!(xhr_send(a.addr, &nowhere, r#"["x"]"#).await, 404);

    // A DISCONNECT through B closes it on A.
    s.send(&["DISCONNECT\n\n\0"]).await;
    let (_, close) = s.until_closed().await;
    assert!(close.starts_with("c[1000,"), "{close}");
    a.stop().await;
    b.stop().await;
}

/// Every request balanced round-robin over two nodes, as a load balancer without stickiness
/// would: polls and streams that reach B take their frames from the session on A, through the
/// broker; a stream on B whose client goes away closes the session on A (1002), as a local one.
async fn receiving_requests_reach_the_session_through_another_node(kind: Kind) {
    let Some(backend) = Backend::start(kind) else { return };
    let (a, b) = two_nodes(&backend).await;
    let url = format!("{REAL}/000/{}", sid());
    assert_eq!(poll(a.addr, &url).await, "o\n", "opened on A");
    let nodes = [a.addr, b.addr];
    let payload = |frame: &str| serde_json::to_string(&[frame]).unwrap();
    assert_eq!(xhr_send(nodes[1], &url, &payload(CONNECT)).await, 204);
    let connected = poll_until(nodes[1], &url, |b| b.starts_with("a[")).await;
    assert!(connected.contains("CONNECTED"), "B's poll carries A's CONNECTED: {connected}");
    let subscribe = "SUBSCRIBE\nid:0\ndestination:/topic/chat:rr\nreceipt:r\n\n\0";
    assert_eq!(xhr_send(nodes[0], &url, &payload(subscribe)).await, 204);
    let receipt = poll_until(nodes[1], &url, |b| b.starts_with("a[")).await;
    assert!(receipt.contains("RECEIPT"), "{receipt}");

    // A stream through B: a publication made on either node reaches it.
    let mut stream = open_stream(b.addr, &format!("{url}/xhr_streaming")).await;
    stream.until(&xhr_prelude()).await;
    for (n, node) in [(1, &a), (2, &b)] {
        let body = format!(r#"{{"channel":"chat:rr","data":{{"n":{n}}}}}"#);
        assert_eq!(http_json(node.addr, "POST", "/api/publish", &[], &body).await.0, 200);
        let frame = stream.until("\n").await;
        let message = messages(&frame).pop().unwrap_or_default();
        assert_eq!(command(&message), "MESSAGE", "{frame}");
        assert_eq!(body_json(&message), json!({"n": n}));
    }
    // Its client goes away: the session on A closes as for a local request. (Until A hears of
    // it, a poll there is refused with 2010: B's request is still the session's receiver.)
    drop(stream);
    let closed = poll_until(a.addr, &url, |b| !b.starts_with("c[2010,")).await;
    assert_eq!(closed, "c[1002,\"Connection interrupted\"]\n");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_receiving_requests_reach_the_session_through_another_node() {
    receiving_requests_reach_the_session_through_another_node(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_receiving_requests_reach_the_session_through_another_node() {
    receiving_requests_reach_the_session_through_another_node(Kind::Nats).await;
}

/// Once a session closes on A, B stops forwarding to it (A takes its inbox out of the presence).
/// Ten sessions, as the NATS hang below needs a few.
async fn a_closed_session_is_gone_from_every_node(kind: Kind) {
    let Some(backend) = Backend::start(kind) else { return };
    let (a, b) = two_nodes(&backend).await;
    for _ in 0..10 {
        let mut s = SockjsSession::open(a.addr, b.addr, REAL).await;
        let (url, b_addr) = (&s.url, b.addr);
        common::eventually_async("B reaches the session", WAIT, || async move {
            xhr_send(b_addr, url, "[]").await == 204
        })
        .await;
        s.send(&[CONNECT, "DISCONNECT\n\n\0"]).await;
        let (_, close) = s.until_closed().await;
        assert!(close.starts_with("c[1000,"), "{close}");
        let (url, b_addr) = (&s.url, b.addr);
        common::eventually_async("B sees the session gone", WAIT, || async move {
            xhr_send(b_addr, url, "[]").await == 404
        })
        .await;
    }
    a.stop().await;
    b.stop().await;
}

/// sockjs-client sends its first message (STOMP's CONNECT) as soon as it sees `o`: a session
/// must be reachable from every node by then. Fifty sessions, as the window is narrow.
async fn a_first_send_right_after_open_reaches_the_session_from_another_node(kind: Kind) {
    let Some(backend) = Backend::start(kind) else { return };
    let (a, b) = two_nodes(&backend).await;
    let mut refused = Vec::new();
    for _ in 0..50 {
        let s = SockjsSession::open(a.addr, b.addr, REAL).await;
        let payload = serde_json::to_string(&[CONNECT]).unwrap();
        let r = request(b.addr, "POST", &format!("{}/xhr_send", s.url), &[], &payload).await;
        if r.status != 204 {
            refused.push((s.url.clone(), r.status));
        }
    }
    assert!(refused.is_empty(), "{} of 50 first sends refused: {refused:?}", refused.len());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_session_on_node_a_takes_sends_through_node_b() {
    a_session_on_one_node_takes_sends_through_another(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_session_on_node_a_takes_sends_through_node_b() {
    a_session_on_one_node_takes_sends_through_another(Kind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_closed_session_is_gone_from_every_node() {
    a_closed_session_is_gone_from_every_node(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// A NATS presence read right after a purge can hang (a broker issue); SockJS bounds its lookups
// to 2 s, so B still answers.
async fn nats_a_closed_session_is_gone_from_every_node() {
    a_closed_session_is_gone_from_every_node(Kind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_first_send_right_after_open_reaches_the_session_from_another_node() {
    a_first_send_right_after_open_reaches_the_session_from_another_node(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_first_send_right_after_open_reaches_the_session_from_another_node() {
    a_first_send_right_after_open_reaches_the_session_from_another_node(Kind::Nats).await;
}
