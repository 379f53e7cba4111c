//! A server without secrets (loopback only) refuses what a hostile page in the user's browser
//! could do with it: requests on a foreign `Host` (DNS rebinding) and writes from pages of other
//! origins that need no CORS preflight (a `text/plain` POST). A protected server's `/metrics`
//! takes the API key.

mod common;

use common::{TestServer, http_json};
use switchboard::config::Config;

/// `GET path` with `Host: host`: the status and the error code, if any.
async fn get_with_host(server: &TestServer, path: &str, host: &str) -> (u16, Option<u64>) {
    let (status, body) = http_json(server.addr, "GET", path, &[("Host", host)], "").await;
    (status, body["error"]["code"].as_u64())
}

#[tokio::test]
async fn an_open_server_answers_only_loopback_hosts() {
    let server = TestServer::start(Config::default()).await;
    let port = server.addr.port();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("app.localhost:{port}")] {
        assert_eq!(get_with_host(&server, "/api/history?channel=news", &host).await.0, 200, "{host}");
        assert_eq!(get_with_host(&server, "/sockjs/info", &host).await.0, 200, "{host}");
    }
    let rebound = format!("rebind.evil.example:{port}");
    for path in ["/api/history?channel=news", "/healthz", "/metrics", "/sockjs/info", "/nowhere"] {
        assert_eq!(get_with_host(&server, path, &rebound).await, (403, Some(103)), "{path}");
    }
    let (status, body) = http_json(
        server.addr,
        "POST",
        "/api/publish",
        &[("Host", &rebound), ("Content-Type", "text/plain")],
        r#"{"channel":"news","data":1}"#,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("allowed_hosts") && message.contains("token_secret"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn an_open_server_refuses_websockets_on_a_foreign_host() {
    let server = TestServer::start(Config::default()).await;
    let rebound = format!("rebind.evil.example:{}", server.addr.port());
    let origin = format!("http://{rebound}");
    let upgrade = [
        ("Host", rebound.as_str()),
        ("Origin", origin.as_str()),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    for path in ["/ws", "/stomp", "/sockjs/000/abc/websocket"] {
        let (status, body) = http_json(server.addr, "GET", path, &upgrade, "").await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn allowed_hosts_adds_names_and_secrets_lift_the_check() {
    let server = TestServer::with(|c| c.allowed_hosts = vec!["dev.test".into()]).await;
    let port = server.addr.port();
    assert_eq!(get_with_host(&server, "/healthz", &format!("dev.test:{port}")).await.0, 200);
    assert_eq!(get_with_host(&server, "/healthz", &format!("other.test:{port}")).await.0, 403);
    server.stop().await;

    let server = TestServer::with(|c| c.token_secret = "open-server-secret".into()).await;
    let host = format!("switchboard.example:{}", server.addr.port());
    assert_eq!(get_with_host(&server, "/healthz", &host).await.0, 200, "tokens protect it");
    server.stop().await;
}

/// `POST path` of `body` as `text/plain` (no CORS preflight) with `Origin: origin`, if any.
async fn post_from(
    server: &TestServer,
    path: &str,
    origin: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut headers = vec![("Content-Type", "text/plain")];
    headers.extend(origin.map(|o| ("Origin", o)));
    http_json(server.addr, "POST", path, &headers, body).await
}

#[tokio::test]
async fn an_open_server_takes_writes_only_from_its_own_pages_and_allowed_origins() {
    let server = TestServer::with(|c| c.allowed_origins = vec!["https://app.example".into()]).await;
    let own = format!("http://localhost:{}", server.addr.port());
    let publish = r#"{"channel":"news","data":1}"#;
    let (status, body) = post_from(&server, "/api/publish", Some("https://evil.example"), publish).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (403, Some(103)), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("allowed_origins") && message.contains("https://evil.example"), "{message}");
    assert_eq!(post_from(&server, "/api/publish", Some("null"), publish).await.0, 403, "a sandboxed page");
    let (status, history) = http_json(server.addr, "GET", "/api/history?channel=news", &[], "").await;
    assert_eq!(
        (status, history["publications"].as_array().map(Vec::len)),
        (200, Some(0)),
        "nothing published"
    );
    for origin in [None, Some(own.as_str()), Some("https://app.example")] {
        assert_eq!(post_from(&server, "/api/publish", origin, publish).await.0, 200, "{origin:?}");
    }
    // SockJS's own POSTs: a session's xhr_send from another page is refused, the page's own passes.
    let (status, _) = post_from(&server, "/sockjs/000/csrf/xhr", Some(&own), "").await;
    assert_eq!(status, 200, "the page's own origin opens a session");
    let send = r#"["{\"connect\":{}}"]"#;
    let (status, _) =
        post_from(&server, "/sockjs/000/csrf/xhr_send", Some("https://evil.example"), send).await;
    assert_eq!(status, 403);
    let (status, _) = post_from(&server, "/sockjs/000/csrf/xhr_send", Some(&own), send).await;
    assert_eq!(status, 204, "the page's own origin sends");
    server.stop().await;
}

#[tokio::test]
async fn with_a_token_secret_tokens_guard_writes_instead() {
    let server = TestServer::with(|c| c.token_secret = "open-server-secret".into()).await;
    let (status, body) =
        post_from(&server, "/api/publish", Some("https://evil.example"), r#"{"channel":"news","data":1}"#)
            .await;
    assert_eq!((status, body["error"]["code"].as_u64()), (401, Some(101)), "no token: {body}");
    server.stop().await;
}

#[tokio::test]
async fn metrics_take_the_api_key_when_one_is_configured() {
    let server = TestServer::with(|c| {
        c.token_secret = "metrics-token-secret".into();
        c.api_key = "metrics-key".into();
    })
    .await;
    let metrics = |headers: &'static [(&'static str, &'static str)]| {
        let addr = server.addr;
        async move { common::http_request(addr, "GET", "/metrics", headers, "").await }
    };
    let (status, _, body) = metrics(&[]).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (401, Some(101)), "{body}");
    assert_eq!(metrics(&[("X-API-Key", "wrong")]).await.0, 401);
    assert_eq!(metrics(&[("Authorization", "Bearer wrong")]).await.0, 401);
    for headers in [
        &[("X-API-Key", "metrics-key")][..],
        &[("Authorization", "Bearer metrics-key")],
        &[("Authorization", "apikey metrics-key")],
    ] {
        let (status, head, _) = metrics(headers).await;
        assert_eq!(status, 200, "{headers:?}");
        assert!(head.contains("text/plain"), "{head}");
    }
    server.stop().await;

    let server = TestServer::start(Config::default()).await;
    assert_eq!(common::http_request(server.addr, "GET", "/metrics", &[], "").await.0, 200, "no key: open");
    server.stop().await;
}
