//! The channel rules hold on every read path: a signaling inbox is its participant's alone
//! whether it is read by history, polling, long polling, SSE, streaming, presence or WebSocket,
//! with and without a token secret; polling refuses what it cannot answer; abandoned long polls
//! leave nothing behind. (WebTransport and data channels run the same session: `e2e/` checks
//! them in Chromium.)

mod common;

use std::time::Duration;

use common::{TestServer, http_json};
use switchboard::config::{ChannelOptions, Config};
use switchboard_client::Error;

const SECRET: &str = "rules-secret";

fn config(secret: bool) -> Config {
    let mut config = Config::default();
    let room = ChannelOptions { join_leave: true, rooms: true, ..ChannelOptions::default() };
    config.namespaces.insert("room".into(), room);
    config.namespaces.insert("quiet".into(), ChannelOptions { history_size: 0, ..ChannelOptions::default() });
    if secret {
        config.token_secret = SECRET.into();
        config.api_key = "rules-key".into();
    }
    config
}

fn token(sub: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &serde_json::json!({ "sub": sub }), &key).unwrap()
}

fn command_code<T: std::fmt::Debug>(r: Result<T, Error>) -> u32 {
    match r {
        Err(Error::Command { code, .. }) => code,
        other => panic!("expected a command error, got {other:?}"),
    }
}

/// Ann and Bob in `room:r1`, Bob having signalled into Ann's inbox; Eve, a third party,
/// then tries every read path on that inbox.
async fn a_third_party_cannot_read_an_inbox(secret: bool) {
    let server = TestServer::start(config(secret)).await;
    let client = server.client();
    let tok = |who: &str| secret.then(|| token(who));
    let (mut ann, mut bob, mut eve) = (
        client.websocket().await.unwrap(),
        client.websocket().await.unwrap(),
        client.websocket().await.unwrap(),
    );
    let ann_reply = ann.connect(tok("ann").as_deref(), Some("ann")).await.unwrap();
    let a = ann_reply.client.clone();
    bob.connect(tok("bob").as_deref(), Some("bob")).await.unwrap();
    let eve_session = eve.connect(tok("eve").as_deref(), Some("eve")).await.unwrap().session;
    ann.subscribe("room:r1", None).await.unwrap();
    bob.subscribe("room:r1", None).await.unwrap();
    eve.subscribe("room:r1", None).await.unwrap();
    let inbox = format!("room:r1@{a}");
    ann.subscribe(&inbox, None).await.unwrap();
    let sent = bob.publish(&inbox, &serde_json::json!({"type": "offer", "sdp": "SECRET-SDP"})).await.unwrap();
    let cursor = format!("{}:{}", sent.epoch, sent.offset - 1);

    // The WebSocket protocol: subscribe, history and presence.
    assert_eq!(command_code(eve.subscribe(&inbox, None).await), 103);
    assert_eq!(command_code(eve.history(&inbox, None).await), 103);
    assert_eq!(command_code(eve.presence(&inbox).await), 103);

    // The HTTP paths, with Eve's token when there is a secret (and with nothing otherwise).
    let bearer = tok("eve").map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
    let mut since = switchboard_client::Cursor::new();
    since.set(&inbox, switchboard_client::Position { epoch: sent.epoch.clone(), offset: sent.offset - 1 });
    let since = since.encode();
    let token_q = tok("eve").map(|t| format!("&token={t}")).unwrap_or_default();
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let paths = [
        format!("/api/history?channel={}", enc(&inbox)),
        format!("/api/history?channel={}&since={}", enc(&inbox), enc(&cursor)),
        format!("/api/presence?channel={}", enc(&inbox)),
        format!("/api/history?channel={}&session={}", enc(&inbox), enc(&eve_session)),
        format!("/poll?channel={}&since={}{token_q}", enc(&inbox), enc(&since)),
        format!("/poll?channel={}&since={}&wait=1{token_q}", enc(&inbox), enc(&since)),
        format!("/sse?channel={}&since={}{token_q}", enc(&inbox), enc(&since)),
        format!("/stream?channel={}&since={}{token_q}", enc(&inbox), enc(&since)),
    ];
    let mut paths = paths.to_vec();
    if secret {
        // A session is bound to its user: Ann's, presented with Eve's token, names no one.
        paths.push(format!("/api/history?channel={}&session={}", enc(&inbox), enc(&ann_reply.session)));
    }
    for path in &paths {
        let (status, body) = http_json(server.addr, "GET", path, &headers, "").await;
        assert_eq!((status, body["error"]["code"].as_u64()), (403, Some(103)), "{path}: {body}");
        assert!(!body.to_string().contains("SECRET-SDP"), "{path} leaked the signal");
    }
    // Its owner still reads it, over her connection and through the API as that connection:
    // the rule is about who, not a blanket ban.
    let history = ann.history(&inbox, None).await.unwrap();
    assert_eq!(history.publications.len(), 1);
    let as_ann = tok("ann").map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = as_ann.iter().map(|b| ("Authorization", b.as_str())).collect();
    let path = format!("/api/history?channel={}&session={}", enc(&inbox), enc(&ann_reply.session));
    let (status, body) = http_json(server.addr, "GET", &path, &headers, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["publications"][0]["data"]["sdp"], "SECRET-SDP");
    server.stop().await;
}

#[tokio::test]
async fn a_third_party_cannot_read_an_inbox_on_an_open_server() {
    a_third_party_cannot_read_an_inbox(false).await;
}

#[tokio::test]
async fn a_third_party_cannot_read_an_inbox_with_a_token_secret() {
    a_third_party_cannot_read_an_inbox(true).await;
}

#[tokio::test]
async fn polling_a_namespace_without_history_is_refused_with_a_code() {
    let server = TestServer::start(config(false)).await;
    for path in
        ["/poll?channel=quiet:x", "/poll?channel=quiet:x&wait=1", "/poll?channel=news&channel=quiet:x"]
    {
        let (status, body) = http_json(server.addr, "GET", path, &[], "").await;
        assert_eq!((status, body["error"]["code"].as_u64()), (404, Some(108)), "{path}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("history"), "{body}");
    }
    let (status, _) = http_json(server.addr, "GET", "/poll?channel=news", &[], "").await;
    assert_eq!(status, 204);
    server.stop().await;
}

/// Subscribers of `channel` in `/api/channels`.
async fn subscribers(server: &TestServer, channel: &str) -> u64 {
    let (_, body) = http_json(server.addr, "GET", "/api/channels", &[], "").await;
    let list = body["channels"].as_array().cloned().unwrap_or_default();
    list.iter().find(|c| c["channel"] == channel).and_then(|c| c["subscribers"].as_u64()).unwrap_or(0)
}

#[tokio::test]
async fn an_abandoned_long_poll_releases_its_subscription() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(config(false)).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let request = "GET /poll?channel=news:leak&wait=30 HTTP/1.1\r\nHost: localhost\r\n\r\n";
        tcp.write_all(request.as_bytes()).await.unwrap();
        held.push(tcp);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while subscribers(&server, "news:leak").await < 5 {
        assert!(tokio::time::Instant::now() < deadline, "the long polls are held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held); // the clients go away mid-wait, long before the 30 s are up
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while subscribers(&server, "news:leak").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "abandoned long polls still subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

/// `switchboard_publications_total` from `/metrics`.
async fn publications_total(server: &TestServer) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    let line = text.lines().find(|l| l.starts_with("switchboard_publications_total ")).expect("the counter");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_publication_counts_once_whatever_path_it_came_by() {
    let server = TestServer::start(config(false)).await;
    let client = server.client();
    client.publish_with_key("news", &serde_json::json!(1), "k1").await.unwrap();
    client.publish_with_key("news", &serde_json::json!(1), "k1").await.unwrap(); // a retry
    let mut ws = client.websocket().await.unwrap();
    ws.connect(None, None).await.unwrap();
    ws.publish("news", &serde_json::json!(2)).await.unwrap();
    ws.publish_with_key("news", &serde_json::json!(2), "k2").await.unwrap();
    ws.publish_with_key("news", &serde_json::json!(2), "k2").await.unwrap(); // a retry
    assert_eq!(publications_total(&server).await, 3, "API once, WebSocket twice; retries not at all");
    server.stop().await;
}

#[tokio::test]
async fn a_personal_channel_reaches_every_connection_of_its_user_and_no_one_else() {
    let server = TestServer::start(config(true)).await;
    let client = server.client();
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let mut ws = client.websocket().await.unwrap();
        let reply = ws.connect(Some(&token("alice")), None).await.unwrap();
        assert_eq!(reply.user, "alice", "connect says whose personal channels are whose");
        ws.subscribe("notes#alice", None).await.unwrap();
        tabs.push(ws);
    }
    let mut bob = client.websocket().await.unwrap();
    bob.connect(Some(&token("bob")), None).await.unwrap();
    assert_eq!(command_code(bob.subscribe("notes#alice", None).await), 103);
    assert_eq!(command_code(bob.history("notes#alice", None).await), 103);
    assert_eq!(command_code(bob.publish("notes#alice", &serde_json::json!(1)).await), 103);
    let (status, body) = http_json(
        server.addr,
        "GET",
        "/api/history?channel=notes%23alice",
        &[("X-API-Key", "rules-key")],
        "",
    )
    .await;
    assert_eq!(status, 200, "the application's server may read it: {body}");

    let body = serde_json::json!({"channel": "notes#alice", "data": {"to": "alice"}}).to_string();
    let headers = [("Content-Type", "application/json"), ("X-API-Key", "rules-key")];
    let (status, _) = http_json(server.addr, "POST", "/api/publish", &headers, &body).await;
    assert_eq!(status, 200);
    for ws in &mut tabs {
        let event = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(Ok(switchboard_client::Event::Publication(p))) = ws.next_event().await {
                    return p;
                }
            }
        })
        .await
        .expect("alice's connections each get it");
        assert_eq!(event.channel, "notes#alice");
    }
    server.stop().await;
}
