//! `/sockjs` against the SockJS protocol (0.3), over real sockets: the ground of the official
//! sockjs-protocol suite (Python 2, which CI cannot run) on the suite's test services
//! (`sockjs_test_services`: `/sockjs-test/echo`, `close`, `disabled_websocket_echo`,
//! `cookie_needed_echo`). What is ours on the real service is in `sockjs_sessions.rs`; the
//! helpers in `common/sockjs.rs`.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::sockjs::*;
use common::{TestServer, http_json};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

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
