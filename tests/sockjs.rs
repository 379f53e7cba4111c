//! `/sockjs` against the SockJS protocol (0.3), over real sockets: the ground of the official
//! sockjs-protocol suite (Python 2, which CI cannot run) on the suite's test services
//! (`sockjs_test_services`: `/sockjs-test/echo`, `close`, `disabled_websocket_echo`,
//! `cookie_needed_echo`), then what is ours on the real service: STOMP or the JSON protocol inside
//! a session, bad input, slow consumers, shutdown, and sessions whose sends land on another node.
//!
//! Requests are written and read off the socket by hand (helpers at the bottom), so that framing,
//! chunk by chunk, and headers are seen exactly as a browser gets them.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::backend::{Backend, Kind};
use common::{TestServer, http_json, next_ws_event};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard::config::Config;
use switchboard_client::Event;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const ECHO: &str = "/sockjs-test/echo";
const CLOSE: &str = "/sockjs-test/close";
const WS_OFF: &str = "/sockjs-test/disabled_websocket_echo";
const COOKIE: &str = "/sockjs-test/cookie_needed_echo";
const REAL: &str = "/sockjs";

const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";
const JS: &str = "application/javascript;charset=UTF-8";
const TEXT: &str = "text/plain;charset=UTF-8";
const HTML: &str = "text/html;charset=UTF-8";
const GO_AWAY: &str = "c[3000,\"Go away!\"]\n";
const ANOTHER: &str = "c[2010,\"Another connection still open\"]\n";
const INTERRUPTED: &str = "c[1002,\"Connection interrupted\"]\n";
const CONNECT: &str = "CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0";

/// The configuration the suite expects of a test server: its services, and a 4 KiB response
/// limit. What the tests do not use (TURN, WebTransport, WebRTC) stays off.
fn suite(config: &mut Config) {
    config.sockjs_test_services = true;
    config.sockjs_response_limit = 4096;
    lean(config);
}

fn lean(config: &mut Config) {
    config.turn = false;
    config.webtransport = false;
    config.rtc = false;
}

async fn suite_server() -> TestServer {
    TestServer::with(suite).await
}

// Static URLs
// ===========

#[tokio::test]
async fn greeting_and_unknown_paths() {
    let server = suite_server().await;
    for base in [ECHO, REAL] {
        for url in [base.to_owned(), format!("{base}/")] {
            let r = request(server.addr, "GET", &url, &[], "").await;
            assert_eq!(r.status, 200, "{url}");
            assert_eq!(r.content_type(), TEXT, "{url}");
            assert_eq!(r.body, "Welcome to SockJS!\n", "{url}");
            assert_eq!(r.header("set-cookie"), None, "{url}");
        }
        for suffix in ["/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"] {
            let r = request(server.addr, "GET", &format!("{base}{suffix}"), &[], "").await;
            assert_eq!(r.status, 404, "{base}{suffix}");
        }
        // Session URLs need a server id and a session id, neither empty nor with dots.
        for ids in ["//", "/a./a", "/a/a.", "/./.", "/", "///", "/a/b/c"] {
            for method in ["GET", "POST"] {
                let url = format!("{base}{ids}/xhr");
                assert_eq!(request(server.addr, method, &url, &[], "").await.status, 404, "{method} {url}");
            }
        }
        let r = request(server.addr, "POST", &format!("{base}/a/a/nonsense"), &[], "").await;
        assert_eq!(r.status, 404, "an unknown transport");
        // Ids of up to 128 bytes: no SockJS client makes longer ones.
        let (longest, too_long) = ("i".repeat(128), "i".repeat(129));
        assert_eq!(
            request(server.addr, "POST", &format!("{base}/a/{longest}/xhr"), &[], "").await.body,
            "o\n"
        );
        assert_eq!(
            request(server.addr, "POST", &format!("{base}/a/{too_long}/xhr"), &[], "").await.status,
            404
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn info_says_what_the_service_offers_uncached_with_cors() {
    let server = suite_server().await;
    let r = request(server.addr, "GET", &format!("{ECHO}/info"), &[("Origin", "test")], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "application/json;charset=UTF-8");
    assert_not_cached(&r);
    assert_cors(&r, Some("test"));
    assert_eq!(r.header("set-cookie"), None);
    let info: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(info["websocket"], true);
    assert_eq!(info["cookie_needed"], false);
    assert_eq!(info["origins"], json!(["*:*"]));
    let first = info["entropy"].as_u64().expect("entropy is an integer");
    assert!(first <= u64::from(u32::MAX));

    // Without an Origin: `*`, and no credentials.
    let r = request(server.addr, "GET", &format!("{ECHO}/info"), &[], "").await;
    assert_cors(&r, None);
    let second: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_ne!(second["entropy"].as_u64(), Some(first), "entropy is fresh on every request");

    let info_of = |base: &'static str| {
        let addr = server.addr;
        async move {
            let r = request(addr, "GET", &format!("{base}/info"), &[], "").await;
            assert_eq!(r.status, 200, "{base}");
            assert_eq!(r.header("set-cookie"), None, "{base}: /info sets no cookie");
            serde_json::from_str::<serde_json::Value>(&r.body).unwrap()
        }
    };
    assert_eq!(info_of(WS_OFF).await["websocket"], false);
    assert_eq!(info_of(COOKIE).await["cookie_needed"], true);
    let real = info_of(REAL).await;
    assert_eq!((real["websocket"].as_bool(), real["cookie_needed"].as_bool()), (Some(true), Some(false)));

    // Only GET and OPTIONS.
    let r = request(server.addr, "POST", &format!("{ECHO}/info"), &[], "").await;
    assert_405(&r, "GET");
    server.stop().await;
}

#[tokio::test]
async fn options_preflights_are_cacheable_and_echo_what_was_asked() {
    let server = suite_server().await;
    let cases = [
        (format!("{ECHO}/info"), "OPTIONS, GET"),
        (format!("{ECHO}/abc/abc/xhr"), "OPTIONS, POST"),
        (format!("{ECHO}/abc/abc/xhr_send"), "OPTIONS, POST"),
        (format!("{ECHO}/abc/abc/xhr_streaming"), "OPTIONS, POST"),
        (format!("{ECHO}/abc/abc/jsonp"), "OPTIONS, GET"),
        (format!("{ECHO}/abc/abc/jsonp_send"), "OPTIONS, POST"),
    ];
    for (url, methods) in &cases {
        // `null` is what a page from file:// sends: it is echoed too.
        for origin in ["test", "null"] {
            let headers = [("Access-Control-Request-Method", *methods), ("Origin", origin)];
            let r = request(server.addr, "OPTIONS", url, &headers, "").await;
            assert_eq!(r.status, 204, "{url}");
            let cache = r.header("cache-control").unwrap_or_default();
            assert!(cache.contains("public") && cache.contains("max-age=31536000"), "{url}: {cache}");
            assert!(r.header("expires").is_some(), "{url}");
            let max_age: u64 = r.header("access-control-max-age").unwrap().parse().unwrap();
            assert!(max_age > 1_000_000, "{url}");
            let allowed = r.header("access-control-allow-methods").unwrap_or_default();
            for m in methods.split(", ") {
                assert!(allowed.contains(m), "{url}: {m} in {allowed}");
            }
            assert!(r.body.is_empty(), "{url}");
            assert_cors(&r, Some(origin));
        }
    }
    // Switchboard's own service lets in the origins `allowed_origins` does, as /ws: a foreign
    // page gets no CORS headers (its browser then refuses the answer), a same-origin one does.
    let preflight = |origin| [("Access-Control-Request-Method", "POST"), ("Origin", origin)];
    let url = format!("{REAL}/abc/abc/xhr_send");
    let r = request(server.addr, "OPTIONS", &url, &preflight("http://elsewhere.example"), "").await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), None);
    let own = format!("http://{}", server.addr);
    let r = request(server.addr, "OPTIONS", &url, &preflight(&own), "").await;
    assert_cors(&r, Some(own.as_str()));
    // Access-Control-Request-Headers comes back as Access-Control-Allow-Headers, if not empty.
    let url = format!("{ECHO}/000/{}/xhr", sid());
    let ask = |asked: Option<&'static str>| {
        let mut h = vec![("Origin", "test"), ("Access-Control-Request-Method", "POST")];
        h.extend(asked.map(|a| ("Access-Control-Request-Headers", a)));
        h
    };
    let r = request(server.addr, "OPTIONS", &url, &ask(Some("a, b, c")), "").await;
    assert_eq!(r.header("access-control-allow-headers"), Some("a, b, c"));
    assert_cors(&r, Some("test"));
    for asked in [Some(""), None] {
        let r = request(server.addr, "OPTIONS", &url, &ask(asked), "").await;
        assert_eq!(r.status, 204);
        assert_eq!(r.header("access-control-allow-headers"), None, "{asked:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_iframe_page_is_cacheable_and_its_script_is_served() {
    let server = suite_server().await;
    let mut etag = None;
    for suffix in [
        "/iframe.html",
        "/iframe-a.html",
        "/iframe-.html",
        "/iframe-0.1.2.html",
        "/iframe-0.1.2abc-dirty.2144.html",
        "/iframe-a.html?t=1234",
        "/iframe-0.1.2abc-dirty.2144.html?t=qweqweq123",
    ] {
        let r = request(server.addr, "GET", &format!("{ECHO}{suffix}"), &[], "").await;
        assert_eq!(r.status, 200, "{suffix}");
        assert_eq!(r.content_type(), HTML, "{suffix}");
        let cache = r.header("cache-control").unwrap_or_default();
        assert!(cache.contains("public") && cache.contains("max-age=31536000"), "{suffix}: {cache}");
        assert!(r.header("expires").is_some(), "{suffix}");
        assert!(r.header("last-modified").is_none(), "{suffix}");
        assert_eq!(r.header("set-cookie"), None, "{suffix}");
        assert_eq!(r.body.trim(), iframe_page(&format!("{ECHO}/sockjs.min.js")), "{suffix}");
        // The same page whatever the version asked: one ETag.
        let tag = r.header("etag").expect("an ETag").to_owned();
        assert_eq!(etag.get_or_insert_with(|| tag.clone()), &tag, "{suffix}");
    }
    let tag = etag.unwrap();
    let r = request(server.addr, "GET", &format!("{ECHO}/iframe.html"), &[("If-None-Match", &tag)], "").await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("content-type"), None);
    assert!(r.body.is_empty());

    for suffix in
        ["/iframe.htm", "/iframe", "/IFRAME.HTML", "/IFRAME", "/iframe.HTML", "/iframe.xml", "/iframe-/.html"]
    {
        let r = request(server.addr, "GET", &format!("{ECHO}{suffix}"), &[], "").await;
        assert_eq!(r.status, 404, "{suffix}");
    }

    // The real service's page loads sockjs-client from this node (no CDN), and it is there.
    let r = request(server.addr, "GET", &format!("{REAL}/iframe.html"), &[], "").await;
    assert_eq!(r.body.trim(), iframe_page("/sockjs/sockjs.min.js"));
    let js = request(server.addr, "GET", "/sockjs/sockjs.min.js", &[], "").await;
    assert_eq!(js.status, 200);
    assert_eq!(js.content_type(), JS);
    assert!(js.header("cache-control").unwrap_or_default().contains("max-age=31536000"));
    assert!(js.body.len() > 10_000 && js.body.contains("SockJS"), "the sockjs-client bundle");
    server.stop().await;
}

#[tokio::test]
async fn the_websocket_url_refuses_plain_http() {
    let server = suite_server().await;
    for base in [ECHO, REAL] {
        let url = format!("{base}/0/0/websocket");
        assert_eq!(request(server.addr, "GET", &url, &[], "").await.status, 400, "{url}");
        // A proxy that rewrote `Connection`.
        let h = [("Upgrade", "WebSocket"), ("Connection", "close")];
        assert_eq!(request(server.addr, "GET", &url, &h, "").await.status, 400, "{url}");
        for h in [&[("Upgrade", "WebSocket"), ("Connection", "Upgrade")][..], &[]] {
            assert_405(&request(server.addr, "POST", &url, h, "").await, "GET");
        }
    }
    // No WebSockets on the service that has them off.
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{}{WS_OFF}/0/0/websocket", server.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("expected a 404, got {:?}", other.map(|_| ())),
    }
    server.stop().await;
}

// XHR polling
// ===========

#[tokio::test]
async fn xhr_polling_opens_sends_and_receives() {
    let server = suite_server().await;
    let addr = server.addr;
    let id = sid();
    let url = format!("{ECHO}/000/{id}");
    let r = request(addr, "POST", &format!("{url}/xhr"), &[("Origin", "test")], "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "o\n"));
    assert_eq!(r.content_type(), JS);
    assert_cors(&r, Some("test"));
    assert_not_cached(&r);

    let r = request(addr, "POST", &format!("{url}/xhr_send"), &[("Origin", "test")], r#"["x"]"#).await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    // text/plain even on a 204 (Firefox would take it for XML).
    assert_eq!(r.content_type(), TEXT);
    assert_cors(&r, Some("test"));
    assert_not_cached(&r);
    // The server id is the load balancer's, not part of the session's name.
    assert_eq!(poll(addr, &format!("{ECHO}/999/{id}")).await, "a[\"x\"]\n");

    // Any server and session ids, percent-encoded ones too.
    for ids in ["/a/a", "/_/_", "/1/1", "/abcdefgh_i-j%20/abcdefg_i-j%20"] {
        assert_eq!(poll(addr, &format!("{ECHO}{ids}{id}")).await, "o\n", "{ids}");
    }

    // Empty frames are allowed (a client's heartbeat), and any content type.
    assert_eq!(xhr_send(addr, &url, "[]").await, 204);
    let types = ["text/plain", "T", "application/json", "application/xml", "", "text/xml; charset=utf-8"];
    for ct in types {
        let r = request(addr, "POST", &format!("{url}/xhr_send"), &[("Content-Type", ct)], r#"["a"]"#).await;
        assert_eq!(r.status, 204, "{ct:?}");
    }
    let expected = format!("a[{}]\n", vec!["\"a\""; types.len()].join(","));
    assert_eq!(poll(addr, &url).await, expected, "one frame for everything queued, in order");

    // Sending to a session that does not exist is a 404.
    let r = request(addr, "POST", &format!("{ECHO}/000/{}/xhr_send", sid()), &[], r#"["x"]"#).await;
    assert_eq!(r.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn xhr_send_refuses_broken_and_empty_payloads() {
    let server = suite_server().await;
    let url = format!("{ECHO}/000/{}", sid());
    assert_eq!(poll(server.addr, &url).await, "o\n");
    for (payload, why) in
        [(r#"["x"#, "Broken JSON encoding."), ("[1]", "Broken JSON encoding."), ("", "Payload expected.")]
    {
        let r = request(server.addr, "POST", &format!("{url}/xhr_send"), &[], payload).await;
        assert_eq!(r.status, 500, "{payload:?}");
        assert!(r.body.contains(why), "{payload:?}: {}", r.body);
    }
    // The session took no harm.
    assert_eq!(xhr_send(server.addr, &url, r#"["a"]"#).await, 204);
    assert_eq!(poll(server.addr, &url).await, "a[\"a\"]\n");
    server.stop().await;
}

#[tokio::test]
async fn a_second_poll_is_refused_and_an_aborted_poll_closes_the_session() {
    let server = suite_server().await;
    let addr = server.addr;
    let url = format!("{ECHO}/000/{}", sid());
    assert_eq!(poll(addr, &url).await, "o\n");

    // Two polls at once: the one the server takes second gets 2010 at once, the other is held.
    let held = held_poll(addr, &url).await;
    // 2010 does not close the session: the held poll still gets what is sent.
    assert_eq!(xhr_send(addr, &url, r#"["m"]"#).await, 204);
    assert_eq!(Stream::read_head(held).await.rest().await, "a[\"m\"]\n");

    // A poll whose client goes away before it is answered: what it would have carried may be
    // lost, so the session ends with 1002.
    drop(held_poll(addr, &url).await);
    let after = poll_until(addr, &url, |body| body != ANOTHER).await;
    assert_eq!(after, INTERRUPTED);
    assert_eq!(poll(addr, &url).await, INTERRUPTED, "the close frame is answered again");
    assert_eq!(xhr_send(addr, &url, r#"["x"]"#).await, 404, "a closed session takes nothing");
    server.stop().await;
}

#[tokio::test]
async fn the_close_service_says_go_away_on_every_request() {
    let server = suite_server().await;
    let url = format!("{CLOSE}/000/{}", sid());
    assert_eq!(poll(server.addr, &url).await, "o\n");
    for _ in 0..3 {
        assert_eq!(poll(server.addr, &url).await, GO_AWAY);
    }

    // Streaming too: the close frame, then the response ends; a later request gets it again.
    let url = format!("{CLOSE}/000/{}", sid());
    let mut first = open_stream(server.addr, &format!("{url}/xhr_streaming")).await;
    first.expect(&xhr_prelude()).await;
    first.expect("o\n").await;
    first.expect(GO_AWAY).await;
    first.end().await;
    let mut second = open_stream(server.addr, &format!("{url}/xhr_streaming")).await;
    second.expect(&xhr_prelude()).await;
    second.expect(GO_AWAY).await;
    second.end().await;
    server.stop().await;
}

// Streaming transports
// ====================

#[tokio::test]
async fn xhr_streaming_frames_as_sent_and_ends_at_the_response_limit() {
    let server = suite_server().await;
    let addr = server.addr;
    let url = format!("{ECHO}/000/{}", sid());
    let mut s = Stream::open(addr, "POST", &format!("{url}/xhr_streaming"), &[("Origin", "test")], b"").await;
    assert_eq!(s.status, 200);
    assert_eq!(s.content_type(), JS);
    assert_cors_of(&s.headers, Some("test"));
    assert_not_cached_of(&s.headers);
    s.expect(&xhr_prelude()).await;
    s.expect("o\n").await;
    assert_eq!(xhr_send(addr, &url, r#"["x"]"#).await, 204);
    s.expect("a[\"x\"]\n").await;

    // A second receiving request meanwhile is refused, and its response ends.
    let mut second = open_stream(addr, &format!("{url}/xhr_streaming")).await;
    second.expect(&xhr_prelude()).await;
    second.expect(ANOTHER).await;
    second.end().await;

    // 4096 bytes (framing included) and the response ends, so the browser can free it: 7 bytes
    // of `a["x"]` before, then 134 a frame, so the 31st passes 4096 (a frame sent after the end
    // would wait for the next request, and fail the expect).
    let msg = format!("\"{}\"", "x".repeat(128));
    for _ in 0..31 {
        assert_eq!(xhr_send(addr, &url, &format!("[{msg}]")).await, 204);
        s.expect(&format!("a[{msg}]\n")).await;
    }
    s.end().await;

    // The session outlives its response: the next one picks up where it left off.
    assert_eq!(xhr_send(addr, &url, r#"["after"]"#).await, 204);
    let mut next = open_stream(addr, &format!("{url}/xhr_streaming")).await;
    next.expect(&xhr_prelude()).await;
    next.expect("a[\"after\"]\n").await;
    drop(next);
    server.stop().await;
}

#[tokio::test]
async fn a_streaming_request_that_goes_away_closes_the_session() {
    let server = suite_server().await;
    let url = format!("{ECHO}/000/{}", sid());
    let mut first = open_stream(server.addr, &format!("{url}/xhr_streaming")).await;
    first.expect(&xhr_prelude()).await;
    first.expect("o\n").await;
    drop(first);
    // The server notices the drop when it next polls the connection: until then, 2010.
    let mut frames = Vec::new();
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            let mut s = open_stream(server.addr, &format!("{url}/xhr_streaming")).await;
            s.expect(&xhr_prelude()).await;
            let frame = s.until("\n").await;
            frames.push(frame.clone());
            if frame != ANOTHER {
                return frame;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the session never noticed; frames: {frames:?}"));
    assert_eq!(closed, INTERRUPTED);
    server.stop().await;
}

#[tokio::test]
async fn eventsource_frames_and_escapes() {
    let server = suite_server().await;
    let addr = server.addr;
    let url = format!("{ECHO}/000/{}", sid());
    let mut s = open_stream_get(addr, &format!("{url}/eventsource")).await;
    assert_eq!(s.content_type(), "text/event-stream");
    assert_not_cached_of(&s.headers);
    s.expect("\r\n").await;
    s.expect("data: o\r\n\r\n").await;
    assert_eq!(xhr_send(addr, &url, r#"["x"]"#).await, 204);
    s.expect("data: a[\"x\"]\r\n\r\n").await;
    // NUL and line breaks inside a message cannot break the event: they travel escaped.
    assert_eq!(xhr_send(addr, &url, r#"["  \u0000\n\r "]"#).await, 204);
    s.expect("data: a[\"  \\u0000\\n\\r \"]\r\n\r\n").await;
    // (An open response of a test service would hold the server's graceful stop.)
    drop(s);

    let url = format!("{ECHO}/000/{}", sid());
    let mut s = open_stream_get(addr, &format!("{url}/eventsource")).await;
    s.expect("\r\n").await;
    s.expect("data: o\r\n\r\n").await;
    let msg = format!("\"{}\"", "x".repeat(4096));
    assert_eq!(xhr_send(addr, &url, &format!("[{msg}]")).await, 204);
    s.expect(&format!("data: a[{msg}]\r\n\r\n")).await;
    s.end().await;
    server.stop().await;
}

#[tokio::test]
async fn htmlfile_needs_a_valid_callback_and_frames_as_script_tags() {
    let server = suite_server().await;
    let addr = server.addr;
    for transport in ["htmlfile", "jsonp"] {
        let r = request(addr, "GET", &format!("{ECHO}/a/a/{transport}"), &[], "").await;
        assert_eq!(r.status, 500, "{transport}");
        assert!(r.body.contains("\"callback\" parameter required"), "{transport}: {}", r.body);
        for callback in ["%20", "*", "abc(", "abc%28"] {
            let r = request(addr, "GET", &format!("{ECHO}/a/a/{transport}?c={callback}"), &[], "").await;
            assert_eq!(r.status, 500, "{transport} {callback}");
            assert!(r.body.contains("invalid \"callback\" parameter"), "{transport} {callback}: {}", r.body);
        }
    }

    let url = format!("{ECHO}/000/{}", sid());
    let mut s = open_stream_get(addr, &format!("{url}/htmlfile?c=%63allback")).await;
    assert_eq!(s.content_type(), HTML);
    assert_not_cached_of(&s.headers);
    let prelude = s.until("\r\n\r\n").await;
    assert_eq!(prelude.trim(), htmlfile_head("callback"));
    assert!(prelude.len() > 1024, "IE renders nothing before 1 KiB: {}", prelude.len());
    s.expect("<script>\np(\"o\");\n</script>\r\n").await;
    assert_eq!(xhr_send(addr, &url, r#"["x"]"#).await, 204);
    s.expect("<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n").await;
    drop(s);

    let url = format!("{ECHO}/000/{}", sid());
    let mut s = open_stream_get(addr, &format!("{url}/htmlfile?c=callback")).await;
    s.until("\r\n\r\n").await;
    s.expect("<script>\np(\"o\");\n</script>\r\n").await;
    let msg = "x".repeat(4096);
    assert_eq!(xhr_send(addr, &url, &format!("[\"{msg}\"]")).await, 204);
    s.expect(&format!("<script>\np(\"a[\\\"{msg}\\\"]\");\n</script>\r\n")).await;
    s.end().await;
    server.stop().await;
}

#[tokio::test]
async fn jsonp_polling_and_jsonp_send() {
    let server = suite_server().await;
    let addr = server.addr;
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let url = format!("{ECHO}/000/{}", sid());
    let r = request(addr, "GET", &format!("{url}/jsonp?c=%63allback"), &[], "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "/**/callback(\"o\");\r\n"));
    assert_eq!(r.content_type(), JS);
    assert_not_cached(&r);

    let r = request(addr, "POST", &format!("{url}/jsonp_send"), &form, "d=%5B%22x%22%5D").await;
    // `ok` rather than a 204, for Konqueror.
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(r.content_type(), TEXT);
    assert_not_cached(&r);
    let r = request(addr, "GET", &format!("{url}/jsonp?c=%63allback"), &[], "").await;
    assert_eq!(r.body, "/**/callback(\"a[\\\"x\\\"]\");\r\n");

    // Bad payloads.
    let r = request(addr, "POST", &format!("{url}/jsonp_send"), &form, "d=%5B%22x").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("Broken JSON encoding."), "{}", r.body);
    for data in ["", "d=", "p=p"] {
        let r = request(addr, "POST", &format!("{url}/jsonp_send"), &form, data).await;
        assert_eq!(r.status, 500, "{data:?}");
        assert!(r.body.contains("Payload expected."), "{data:?}: {}", r.body);
    }
    // A form, a raw body (any other content type), and an empty frame.
    let raw = [("Content-Type", "text/plain")];
    for (headers, body) in [(&form, "d=%5B%22abc%22%5D"), (&raw, r#"["%61bc"]"#), (&form, "d=%5B%5D")] {
        let r = request(addr, "POST", &format!("{url}/jsonp_send"), headers, body).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "{body}");
    }
    let r = request(addr, "GET", &format!("{url}/jsonp?c=x"), &[], "").await;
    assert_eq!(r.body, "/**/x(\"a[\\\"abc\\\",\\\"%61bc\\\"]\");\r\n");

    let url = format!("{CLOSE}/000/{}", sid());
    let r = request(addr, "GET", &format!("{url}/jsonp?c=x"), &[], "").await;
    assert_eq!(r.body, "/**/x(\"o\");\r\n");
    for _ in 0..2 {
        let r = request(addr, "GET", &format!("{url}/jsonp?c=x"), &[], "").await;
        assert_eq!(r.body, "/**/x(\"c[3000,\\\"Go away!\\\"]\");\r\n");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_cookie_needed_service_sets_jsessionid_on_session_requests() {
    let server = suite_server().await;
    let addr = server.addr;
    let cookie_of = |headers: &[(String, String)]| {
        let c = header_of(headers, "set-cookie").unwrap_or_else(|| panic!("no Set-Cookie in {headers:?}"));
        let mut parts = c.split(';').map(str::trim);
        (parts.next().unwrap_or_default().to_owned(), parts.next().unwrap_or_default().to_lowercase())
    };
    let dummy = ("JSESSIONID=dummy".to_owned(), "path=/".to_owned());

    let url = format!("{COOKIE}/000/{}", sid());
    let r = request(addr, "POST", &format!("{url}/xhr"), &[], "").await;
    assert_eq!(r.body, "o\n");
    assert_eq!(cookie_of(&r.headers), dummy);
    // One the client has is echoed.
    let url2 = format!("{COOKIE}/000/{}", sid());
    let r = request(addr, "POST", &format!("{url2}/xhr"), &[("Cookie", "JSESSIONID=abcdef")], "").await;
    assert_eq!(cookie_of(&r.headers), ("JSESSIONID=abcdef".to_owned(), "path=/".to_owned()));

    for (method, transport) in [
        ("POST", "xhr_streaming"),
        ("GET", "eventsource"),
        ("GET", "htmlfile?c=callback"),
        ("GET", "jsonp?c=x"),
    ] {
        let s = Stream::open(addr, method, &format!("{COOKIE}/000/{}/{transport}", sid()), &[], b"").await;
        assert_eq!(s.status, 200, "{transport}");
        assert_eq!(cookie_of(&s.headers), dummy, "{transport}");
    }
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = request(addr, "POST", &format!("{url}/jsonp_send"), &form, "d=%5B%22x%22%5D").await;
    assert_eq!(r.body, "ok");
    assert_eq!(cookie_of(&r.headers), dummy);

    // The other services set none.
    let r = request(addr, "POST", &format!("{ECHO}/000/{}/xhr", sid()), &[], "").await;
    assert_eq!(r.header("set-cookie"), None);
    server.stop().await;
}

// Escaping
// ========

#[tokio::test]
async fn the_server_escapes_what_browsers_mangle() {
    let server = suite_server().await;
    let url = format!("{ECHO}/000/{}", sid());
    assert_eq!(poll(server.addr, &url).await, "o\n");

    // The protocol's list above U+00FF: zero-width and direction marks, line and paragraph
    // separators, the specials block. serde_json sends them raw; they must come back as \uXXXX.
    let mangled: String = (0xff..=0xffffu32)
        .filter_map(char::from_u32)
        .filter(
            |c| matches!(*c as u32, 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff),
        )
        .collect();
    assert!(mangled.contains('\u{2028}') && mangled.contains('\u{ffff}') && mangled.contains('\u{200c}'));
    assert_eq!(xhr_send(server.addr, &url, &serde_json::to_string(&[&mangled]).unwrap()).await, 204);
    let expected: String = mangled.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    assert_eq!(poll(server.addr, &url).await, format!("a[\"{expected}\"]\n"));

    // Control characters are escaped too; other text passes as it is.
    let controls: String = (0u8..0x20).map(char::from).chain("é✓".chars()).collect();
    assert_eq!(xhr_send(server.addr, &url, &serde_json::to_string(&[&controls]).unwrap()).await, 204);
    let body = poll(server.addr, &url).await;
    let frame = body.strip_suffix('\n').unwrap();
    assert!(!frame.bytes().any(|b| b < 0x20), "a raw control character in {frame:?}");
    for escaped in ["\\u0000", "\\u0001", "\\u001f", "\\n", "\\r"] {
        assert!(frame.contains(escaped), "{escaped} in {frame:?}");
    }
    assert!(frame.contains("é✓"));
    assert_eq!(messages(frame), vec![controls]);

    // What the client escapes the server decodes (a surrogate pair included).
    let sent = r#"["\u00ad\u0600\u2000\u20ff\ufeff\ud83d\ude00\\\""]"#;
    assert_eq!(xhr_send(server.addr, &url, sent).await, 204);
    let frame = poll(server.addr, &url).await;
    assert_eq!(messages(&frame), serde_json::from_str::<Vec<String>>(sent).unwrap());
    server.stop().await;
}

// WebSocket
// =========

#[tokio::test]
async fn websocket_transport_frames_echoes_and_closes() {
    let server = suite_server().await;
    let url = format!("ws://{}{ECHO}/000/{}/websocket", server.addr, sid());
    let mut ws = ws_open(&url).await;
    assert_eq!(ws_text(&mut ws).await, "o");
    ws.send(Message::text(r#"["a"]"#)).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, r#"a["a"]"#);
    // Empty frames and frames with no message are ignored; one JSON string is a message.
    ws.send(Message::text("")).await.unwrap();
    ws.send(Message::text("[]")).await.unwrap();
    ws.send(Message::text(r#""b""#)).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, r#"a["b"]"#);

    // The id may be reused by another WebSocket at the same time: separate sessions.
    let mut twin = ws_open(&url).await;
    assert_eq!(ws_text(&mut twin).await, "o");
    twin.send(Message::text(r#"["twin"]"#)).await.unwrap();
    ws.send(Message::text(r#"["first"]"#)).await.unwrap();
    assert_eq!(ws_text(&mut twin).await, r#"a["twin"]"#);
    assert_eq!(ws_text(&mut ws).await, r#"a["first"]"#);

    // Broken JSON ends the connection at once.
    ws.send(Message::text(r#"["a"#)).await.unwrap();
    let (texts, close) = ws_until_closed(&mut ws).await;
    assert!(texts.is_empty(), "{texts:?}");
    assert_eq!(close, Some(1002));
    twin.send(Message::text(r#"["still"]"#)).await.unwrap();
    assert_eq!(ws_text(&mut twin).await, r#"a["still"]"#, "the twin took no harm");

    // The close service: its close frame, then the socket closes.
    let mut ws = ws_open(&format!("ws://{}{CLOSE}/000/{}/websocket", server.addr, sid())).await;
    assert_eq!(ws_text(&mut ws).await, "o");
    let (texts, close) = ws_until_closed(&mut ws).await;
    assert_eq!(texts, vec![GO_AWAY.trim_end().to_owned()]);
    assert!(close.is_some(), "a close frame");
    server.stop().await;
}

#[tokio::test]
async fn the_raw_websocket_url_carries_messages_without_framing() {
    let server = suite_server().await;
    let mut ws = ws_open(&format!("ws://{}{ECHO}/websocket", server.addr)).await;
    ws.send(Message::text("Hello world!\u{ffff}")).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "Hello world!\u{ffff}");
    ws.send(Message::text("[\"not parsed\"")).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "[\"not parsed\"");

    let mut ws = ws_open(&format!("ws://{}{CLOSE}/websocket", server.addr)).await;
    let frame = tokio::time::timeout(WAIT, ws.next()).await.expect("a close in time");
    match frame {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!(u16::from(f.code), 3000);
            assert_eq!(f.reason.as_str(), "Go away!");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn the_real_services_websocket_checks_the_origin_as_ws_does() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = TestServer::with(lean).await;
    let url = format!("ws://{}{REAL}/000/{}/websocket", server.addr, sid());
    let mut foreign = url.as_str().into_client_request().unwrap();
    foreign.headers_mut().insert("Origin", "http://elsewhere.example".parse().unwrap());
    match tokio_tungstenite::connect_async(foreign).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
    let mut own = url.as_str().into_client_request().unwrap();
    own.headers_mut().insert("Origin", format!("http://{}", server.addr).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(own).await.unwrap();
    assert_eq!(ws_text(&mut ws).await, "o");
    drop(ws);
    server.stop().await;
}

// Heartbeats
// ==========

#[tokio::test]
async fn idle_receiving_requests_get_heartbeats() {
    let server = TestServer::with(|c| {
        suite(c);
        c.sockjs_heartbeat_ms = 100;
    })
    .await;
    let addr = server.addr;
    let url = format!("{ECHO}/000/{}", sid());
    assert_eq!(poll(addr, &url).await, "o\n");
    assert_eq!(poll(addr, &url).await, "h\n", "a poll with nothing to say answers `h`");

    let url = format!("{ECHO}/000/{}", sid());
    let mut s = open_stream(addr, &format!("{url}/xhr_streaming")).await;
    s.expect(&xhr_prelude()).await;
    s.expect("o\n").await;
    s.expect("h\n").await;
    s.expect("h\n").await;
    drop(s);

    let url = format!("{ECHO}/000/{}", sid());
    let mut s = open_stream_get(addr, &format!("{url}/eventsource")).await;
    s.expect("\r\n").await;
    s.expect("data: o\r\n\r\n").await;
    s.expect("data: h\r\n\r\n").await;
    drop(s);

    let mut ws = ws_open(&format!("ws://{addr}{ECHO}/000/{}/websocket", sid())).await;
    assert_eq!(ws_text(&mut ws).await, "o");
    assert_eq!(ws_text(&mut ws).await, "h");
    drop(ws);
    server.stop().await;
}

// Session timeout
// ===============

#[tokio::test]
async fn a_session_without_a_receiving_request_times_out_then_is_forgotten() {
    let server = TestServer::with(|c| {
        suite(c);
        c.sockjs_disconnect_delay_ms = 500;
    })
    .await;
    let addr = server.addr;
    let url = format!("{ECHO}/000/{}", sid());
    let started = Instant::now();
    assert_eq!(poll(addr, &url).await, "o\n");
    assert_eq!(xhr_send(addr, &url, "[]").await, 204, "alive at first");

    // No receiving request for 500 ms: closed, so sends find no session.
    let u = &url;
    common::eventually_async("the session times out", WAIT, || async move {
        xhr_send(addr, u, "[]").await == 404
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(500), "not before the delay: {:?}", started.elapsed());
    // It answers its close frame for a while, then is forgotten: the id opens a new session.
    assert_eq!(poll(addr, &url).await, "c[1000,\"session timed out\"]\n");
    let reopened = poll_until(addr, &url, |body| body != "c[1000,\"session timed out\"]\n").await;
    assert_eq!(reopened, "o\n");

    // On the real service the connection inside ends too: its subscriber leaves the presence.
    let url = format!("{REAL}/000/{}", sid());
    let mut poller = Poller { addr, url: url.clone(), queue: VecDeque::new() };
    assert_eq!(poll(addr, &url).await, "o\n");
    let subscribe = "SUBSCRIBE\nid:0\ndestination:/topic/chat:idle\nreceipt:r\n\n\0";
    assert_eq!(xhr_send(addr, &url, &serde_json::to_string(&[CONNECT, subscribe]).unwrap()).await, 204);
    let mut frames = Vec::new();
    while !frames.iter().any(|f: &String| command(f) == "RECEIPT") {
        frames.push(poller.message().await);
    }
    let present = || async move {
        let (_, p) = http_json(addr, "GET", "/api/presence?channel=chat:idle", &[], "").await;
        p["clients"].as_object().map_or(0, |c| c.len())
    };
    assert_eq!(present().await, 1, "the STOMP subscriber is present");
    let u = &url;
    common::eventually_async("the STOMP session times out", WAIT, || async move {
        xhr_send(addr, u, "[]").await == 404
    })
    .await;
    common::eventually_async("its subscriber leaves", WAIT, || async move { present().await == 0 }).await;
    server.stop().await;
}

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

// Helpers
// =======

/// Two nodes on `backend`'s broker.
async fn two_nodes(backend: &Backend) -> (TestServer, TestServer) {
    let node = || {
        TestServer::with(|c| {
            lean(c);
            c.broker = backend.url();
        })
    };
    (node().await, node().await)
}

/// How long any one read waits before the test fails.
const WAIT: Duration = Duration::from_secs(5);

/// A session id no other session of this process uses.
fn sid() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("t{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn xhr_prelude() -> String {
    format!("{}\n", "h".repeat(2048))
}

fn iframe_page(script: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
         <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  \
         <script src=\"{script}\"></script>\n  <script>\n    document.domain = document.domain;\n    \
         SockJS.bootstrap_iframe();\n  </script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  \
         <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>"
    )
}

fn htmlfile_head(callback: &str) -> String {
    format!(
        "<!doctype html>\n<html><head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
         <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n</head><body><h2>Don't \
         panic!</h2>\n  <script>\n    document.domain = document.domain;\n    var c = parent.{callback};\n    \
         c.start();\n    function p(d) {{c.message(d);}};\n    window.onload = function() {{c.stop();}};\n  \
         </script>"
    )
}

/// The messages of an `a[...]` frame.
fn messages(frame: &str) -> Vec<String> {
    let json = frame.trim_end().strip_prefix('a').unwrap_or_else(|| panic!("not an a frame: {frame:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {frame:?}"))
}

fn command(frame: &str) -> &str {
    frame.split('\n').next().unwrap_or_default()
}

/// A STOMP header's value, unescaped (1.2 escapes `:` as `\c` outside CONNECT and CONNECTED).
fn header(frame: &str, name: &str) -> Option<String> {
    let head = frame.split("\n\n").next().unwrap_or_default();
    let raw = head.lines().skip(1).find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))?;
    let (mut out, mut chars) = (String::new(), raw.chars());
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('c') => ':',
            Some('n') => '\n',
            Some('r') => '\r',
            Some(other) => other,
            None => '\\',
        });
    }
    Some(out)
}

fn body(frame: &str) -> &str {
    frame.split_once("\n\n").map_or("", |(_, b)| b.trim_end_matches('\0'))
}

fn body_json(frame: &str) -> serde_json::Value {
    serde_json::from_str(body(frame)).unwrap_or_else(|e| panic!("{e}: {frame:?}"))
}

/// The first ERROR among `frames`.
fn error_of(frames: &[String]) -> String {
    frames.iter().find(|f| command(f) == "ERROR").cloned().unwrap_or_else(|| panic!("no ERROR in {frames:?}"))
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn assert_cors(r: &Reply, origin: Option<&str>) {
    assert_cors_of(&r.headers, origin);
}

fn assert_cors_of(headers: &[(String, String)], origin: Option<&str>) {
    match origin {
        Some(o) => {
            assert_eq!(header_of(headers, "access-control-allow-origin"), Some(o));
            assert_eq!(header_of(headers, "access-control-allow-credentials"), Some("true"));
        }
        None => {
            assert_eq!(header_of(headers, "access-control-allow-origin"), Some("*"));
            assert_eq!(header_of(headers, "access-control-allow-credentials"), None);
        }
    }
}

fn assert_not_cached(r: &Reply) {
    assert_not_cached_of(&r.headers);
}

fn assert_not_cached_of(headers: &[(String, String)]) {
    assert_eq!(header_of(headers, "cache-control"), Some(NO_CACHE));
    assert_eq!(header_of(headers, "expires"), None);
    assert_eq!(header_of(headers, "last-modified"), None);
}

fn assert_405(r: &Reply, allow: &str) {
    assert_eq!(r.status, 405);
    assert_eq!(r.header("content-type"), None);
    assert_eq!(r.header("allow"), Some(allow));
    assert!(r.body.is_empty());
}

/// A whole response.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    /// The content type without spaces, as the suite compares it.
    fn content_type(&self) -> String {
        self.header("content-type").unwrap_or_default().replace(' ', "")
    }
}

/// One request on a fresh connection, and its whole response.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = Stream::open(addr, method, path, headers, body.as_bytes()).await;
    let body = s.rest().await;
    Reply { status: s.status, headers: s.headers, body }
}

/// One `xhr` poll: its body.
async fn poll(addr: SocketAddr, session_url: &str) -> String {
    let r = request(addr, "POST", &format!("{session_url}/xhr"), &[], "").await;
    assert_eq!(r.status, 200, "{session_url}/xhr: {}", r.body);
    r.body
}

/// Polls until `done` holds of a poll's body (each poll answering at once), within [`WAIT`].
async fn poll_until(addr: SocketAddr, session_url: &str, done: impl Fn(&str) -> bool) -> String {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let body = poll(addr, session_url).await;
            if done(&body) {
                return body;
            }
            seen.push(body);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{session_url}: polls never got there; got {seen:?}"))
}

/// Two `xhr` polls of a session with nothing to send at once: the one the server takes second
/// must be refused with 2010 at once; the other, still held, is returned unread.
async fn held_poll(addr: SocketAddr, session_url: &str) -> TcpStream {
    let path = format!("{session_url}/xhr");
    let a = send_request(addr, "POST", &path, &[], b"").await;
    let b = send_request(addr, "POST", &path, &[], b"").await;
    let (mut byte_a, mut byte_b) = ([0u8; 1], [0u8; 1]);
    let answered_first = tokio::time::timeout(WAIT, async {
        tokio::select! {
            _ = a.peek(&mut byte_a) => true,
            _ = b.peek(&mut byte_b) => false,
        }
    })
    .await
    .expect("one of two polls is answered at once");
    let (refused, held) = if answered_first { (a, b) } else { (b, a) };
    let mut refused = Stream::read_head(refused).await;
    assert_eq!((refused.status, refused.rest().await.as_str()), (200, ANOTHER));
    held
}

/// An `xhr_send`: its status.
async fn xhr_send(addr: SocketAddr, session_url: &str, payload: &str) -> u16 {
    request(addr, "POST", &format!("{session_url}/xhr_send"), &[], payload).await.status
}

async fn open_stream(addr: SocketAddr, path: &str) -> Stream {
    let s = Stream::open(addr, "POST", path, &[], b"").await;
    assert_eq!(s.status, 200, "{path}");
    s
}

async fn open_stream_get(addr: SocketAddr, path: &str) -> Stream {
    let s = Stream::open(addr, "GET", path, &[], b"").await;
    assert_eq!(s.status, 200, "{path}");
    s
}

/// Writes a request on a fresh connection (`Connection: close`) and reads nothing yet.
async fn send_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        addr.port(),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer (413) and close before it reads a huge body: not our failure.
    let _ = tcp.write_all(&bytes).await;
    tcp
}

/// A response read as it comes: its head, then its body (de-chunked) bit by bit, as a browser's
/// XHR or EventSource sees it.
struct Stream {
    tcp: TcpStream,
    status: u16,
    headers: Vec<(String, String)>,
    /// Bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// Body bytes not yet consumed.
    body: Vec<u8>,
    chunked: bool,
    /// Body bytes still to come, with a Content-Length.
    remaining: Option<usize>,
    /// The body is complete (last chunk, Content-Length reached, or the connection closed).
    ended: bool,
}

impl Stream {
    async fn open(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        Self::read_head(send_request(addr, method, path, headers, body).await).await
    }

    async fn read_head(mut tcp: TcpStream) -> Self {
        let mut raw = Vec::new();
        let read = async {
            loop {
                if let Some(end) = find(&raw, b"\r\n\r\n") {
                    return end;
                }
                let mut buf = [0u8; 8192];
                let n = tcp.read(&mut buf).await.expect("a response");
                assert!(
                    n > 0,
                    "the connection closed before a response head: {:?}",
                    String::from_utf8_lossy(&raw)
                );
                raw.extend_from_slice(&buf[..n]);
            }
        };
        let end = tokio::time::timeout(WAIT, read).await.expect("a response head in time");
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let raw = raw[end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.get(9..12)).and_then(|s| s.parse().ok()).expect("a status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked =
            header_of(&headers, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
        let mut remaining = header_of(&headers, "content-length").and_then(|l| l.parse().ok());
        if status == 204 || status == 304 {
            remaining = Some(0);
        }
        let mut s = Stream { tcp, status, headers, raw, body: Vec::new(), chunked, remaining, ended: false };
        s.decode();
        s
    }

    fn content_type(&self) -> String {
        header_of(&self.headers, "content-type").unwrap_or_default().replace(' ', "")
    }

    /// Moves what `raw` holds of the body into `body`.
    fn decode(&mut self) {
        if self.chunked {
            while !self.ended {
                let Some(line) = find(&self.raw, b"\r\n") else { return };
                let size = String::from_utf8_lossy(&self.raw[..line]);
                let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or_else(|_| panic!("a bad chunk size line: {size:?}"));
                if size == 0 {
                    self.ended = true;
                    return;
                }
                if self.raw.len() < line + 2 + size + 2 {
                    return;
                }
                self.body.extend_from_slice(&self.raw[line + 2..line + 2 + size]);
                self.raw.drain(..line + 2 + size + 2);
            }
        } else if let Some(remaining) = &mut self.remaining {
            let n = self.raw.len().min(*remaining);
            self.body.extend(self.raw.drain(..n));
            *remaining -= n;
            self.ended = *remaining == 0;
        } else {
            self.body.append(&mut self.raw);
        }
    }

    /// Reads once more from the socket; `false` at the end of the body.
    async fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let mut buf = [0u8; 16384];
        let n = self.tcp.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            assert!(!self.chunked, "the connection closed mid-body, before the last chunk");
            self.ended = true;
            return false;
        }
        self.raw.extend_from_slice(&buf[..n]);
        self.decode();
        true
    }

    /// Waits until the body so far holds `pattern`; what comes up to its end, consumed.
    async fn until(&mut self, pattern: &str) -> String {
        let read = async {
            loop {
                if let Some(at) = find(&self.body, pattern.as_bytes()) {
                    let taken: Vec<u8> = self.body.drain(..at + pattern.len()).collect();
                    return Some(String::from_utf8(taken).expect("UTF-8"));
                }
                if !self.fill().await {
                    return None;
                }
            }
        };
        match tokio::time::timeout(WAIT, read).await {
            Ok(Some(text)) => text,
            Ok(None) => {
                panic!("the body ended before {pattern:?}: {:?}", String::from_utf8_lossy(&self.body))
            }
            Err(_) => panic!("no {pattern:?} in time; have {:?}", String::from_utf8_lossy(&self.body)),
        }
    }

    /// The next bytes of the body are exactly `expected`.
    async fn expect(&mut self, expected: &str) {
        let read = async { while self.body.len() < expected.len() && self.fill().await {} };
        // Short (timed out, or the body ended): the comparison below says what came.
        let _ = tokio::time::timeout(WAIT, read).await;
        let n = expected.len().min(self.body.len());
        let got: Vec<u8> = self.body.drain(..n).collect();
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    /// The body ends, with nothing more in it.
    async fn end(&mut self) {
        let read = async { while self.fill().await {} };
        tokio::time::timeout(WAIT, read).await.unwrap_or_else(|_| {
            panic!("the response did not end; have {:?}", String::from_utf8_lossy(&self.body))
        });
        assert!(self.body.is_empty(), "more after the end: {:?}", String::from_utf8_lossy(&self.body));
    }

    /// The rest of the body, to its end.
    async fn rest(&mut self) -> String {
        let read = async { while self.fill().await {} };
        tokio::time::timeout(WAIT, read).await.expect("the whole response in time");
        String::from_utf8(std::mem::take(&mut self.body)).expect("UTF-8")
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A SockJS session as sockjs-client runs one where WebSockets do not pass: `xhr_streaming` to
/// receive (on `recv`'s node), `xhr_send` to send (to `send`'s).
struct SockjsSession {
    send_to: SocketAddr,
    /// `/BASE/SERVER/SESSION`.
    url: String,
    stream: Stream,
    queue: VecDeque<String>,
}

impl SockjsSession {
    async fn open(recv: SocketAddr, send: SocketAddr, base: &str) -> Self {
        let url = format!("{base}/000/{}", sid());
        let mut stream = open_stream(recv, &format!("{url}/xhr_streaming")).await;
        stream.expect(&xhr_prelude()).await;
        stream.expect("o\n").await;
        SockjsSession { send_to: send, url, stream, queue: VecDeque::new() }
    }

    async fn send(&self, messages: &[&str]) {
        let payload = serde_json::to_string(messages).unwrap();
        let r = request(self.send_to, "POST", &format!("{}/xhr_send", self.url), &[], &payload).await;
        assert_eq!(r.status, 204, "xhr_send to {}: {}", self.url, r.body);
    }

    /// The next frame, heartbeats skipped.
    async fn frame(&mut self) -> String {
        loop {
            let frame = self.stream.until("\n").await;
            if frame != "h\n" {
                return frame;
            }
        }
    }

    /// The next message; a close frame fails the test.
    async fn message(&mut self) -> String {
        while self.queue.is_empty() {
            let frame = self.frame().await;
            assert!(frame.starts_with('a'), "expected messages, got {frame:?}");
            self.queue.extend(messages(&frame));
        }
        self.queue.pop_front().unwrap()
    }

    /// The next STOMP frame, heart-beats skipped.
    async fn stomp(&mut self) -> String {
        loop {
            let m = self.message().await;
            if !m.trim().is_empty() {
                return m;
            }
        }
    }

    /// The messages until the close frame, and the close frame; the response then ends.
    async fn until_closed(&mut self) -> (Vec<String>, String) {
        let mut seen: Vec<String> = self.queue.drain(..).collect();
        loop {
            let frame = self.frame().await;
            if frame.starts_with('c') {
                self.stream.end().await;
                return (seen, frame);
            }
            seen.extend(messages(&frame));
        }
    }
}

/// The JSON protocol over `xhr` polls.
struct Poller {
    addr: SocketAddr,
    url: String,
    queue: VecDeque<String>,
}

impl Poller {
    /// The next poll's `a[...]` frame, as it came.
    async fn raw(&mut self) -> String {
        let frame = poll(self.addr, &self.url).await;
        assert!(frame.starts_with('a'), "{frame:?}");
        frame
    }

    /// The next message.
    async fn message(&mut self) -> String {
        while self.queue.is_empty() {
            let frame = self.raw().await;
            self.queue.extend(messages(&frame));
        }
        self.queue.pop_front().unwrap()
    }

    /// The next message, as JSON.
    async fn json(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.message().await).unwrap()
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws_open(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("a handshake in time")
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    ws
}

/// The next text message.
async fn ws_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The text messages until the server closes, and its close code.
async fn ws_until_closed(ws: &mut Ws) -> (Vec<String>, Option<u16>) {
    let mut texts = Vec::new();
    let read = async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Text(t)) => texts.push(t.to_string()),
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    let code = tokio::time::timeout(WAIT, read).await.expect("the server closes in time");
    (texts, code)
}
