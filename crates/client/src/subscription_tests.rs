//! Subscription tests over in-memory bodies and an in-memory WebSocket.

use bytes::Bytes;
use futures_util::stream;
use serde_json::json;
use switchboard_protocol::Position;

use super::*;
use crate::ws::tests::{pair, recv_json, send_json};

fn pos(epoch: &str, offset: u64) -> Position {
    Position { epoch: epoch.into(), offset }
}

fn body(text: &[u8], cut_every: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, Error>> =
        text.chunks(cut_every).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Box::pin(stream::iter(chunks))
}

fn cursor_of(pairs: &[(&str, Position)]) -> Cursor {
    let mut c = Cursor::new();
    for (ch, p) in pairs {
        c.set(ch, p.clone());
    }
    c
}

#[tokio::test]
async fn sse_yields_events_and_tracks_the_cursor() {
    let after_121 = cursor_of(&[("news", pos("P", 121)), ("chat", pos("C", 3))]);
    let text = format!(
        "retry: 2000\n\nevent: connected\ndata: {{\"client\":\"x\"}}\n\n\
         id: {sub}\nevent: subscribed\ndata: {{\"channel\":\"news\",\"epoch\":\"P\",\"offset\":120,\"recovered\":true,\"replayed\":0}}\n\n\
         id: {id}\r\ndata: {{\"channel\":\"news\",\"offset\":121,\"epoch\":\"P\",\"data\":{{\"title\":\"t\"}}}}\r\n\r\n\
         : ping\n\nevent: join\ndata: {{\"channel\":\"news\",\"client\":\"y\",\"user\":\"u\"}}\n\n\
         event: join\ndata: not json\n\n\
         event: disconnect\ndata: {{\"code\":3002,\"reason\":\"slow consumer\"}}\n\n",
        sub = cursor_of(&[("news", pos("P", 120)), ("chat", pos("C", 3))]).encode(),
        id = after_121.encode(),
    );
    for cut in [1, 7, 4096] {
        let since = cursor_of(&[("chat", pos("C", 3)), ("other", pos("O", 1))]);
        let mut sub = Subscription::over_sse(body(text.as_bytes(), cut), since);
        assert_eq!(sub.cursor().get("news"), None);
        assert_eq!(sub.next().await.unwrap().unwrap(), Event::Connected { client: "x".into() });
        assert!(matches!(sub.next().await, Some(Ok(Event::Subscribed(s))) if s.offset == 120));
        assert_eq!(sub.cursor().get("news"), Some(&pos("P", 120)));
        let Some(Ok(Event::Publication(p))) = sub.next().await else { panic!() };
        assert_eq!((p.offset, p.data), (121, Some(json!({"title": "t"}))));
        assert_eq!(sub.cursor().get("news"), Some(&pos("P", 121)));
        assert_eq!(sub.cursor().get("other"), Some(&pos("O", 1)), "channels of `since` are kept");
        assert!(matches!(sub.next().await, Some(Ok(Event::Join(j))) if j.info.client == "y"));
        assert!(matches!(sub.next().await, Some(Err(Error::Protocol(_)))));
        assert!(matches!(sub.next().await, Some(Ok(Event::Disconnected { code: 3002, .. }))));
        assert!(sub.next().await.is_none());
        assert!(sub.next().await.is_none());
    }
}

#[tokio::test]
async fn ndjson_yields_events_and_ends_with_the_body() {
    let text = concat!(
        "{\"connected\":{\"client\":\"x\"}}\n",
        "{\"subscribed\":{\"channel\":\"a\",\"epoch\":\"E\",\"offset\":2,\"recovered\":false,\"replayed\":0}}\r\n",
        "{\"ping\":{}}\n",
        "{\"pub\":{\"channel\":\"a\",\"offset\":3,\"epoch\":\"E\",\"data\":\"x\\ny\"}}\n",
        "{\"leave\":{\"channel\":\"a\",\"client\":\"z\",\"user\":\"\"}}\n",
        "{\"pub\":{\"channel\":\"a\",\"offset\":4,\"epoch\":\"E\",\"data\":null}}",
    );
    for cut in [1, 5, 4096] {
        let mut sub = Subscription::over_stream(body(text.as_bytes(), cut), Cursor::new());
        assert!(matches!(sub.next().await, Some(Ok(Event::Connected { .. }))));
        assert!(matches!(sub.next().await, Some(Ok(Event::Subscribed(s))) if !s.recovered));
        let Some(Ok(Event::Publication(p))) = sub.next().await else { panic!() };
        assert_eq!(p.data, Some(json!("x\ny")));
        assert_eq!(sub.cursor().get("a"), Some(&pos("E", 3)));
        assert!(matches!(sub.next().await, Some(Ok(Event::Leave(_)))));
        assert!(sub.next().await.is_none(), "an unterminated last line is not an event");
        assert_eq!(sub.cursor().get("a"), Some(&pos("E", 3)));
    }
}

#[tokio::test]
async fn a_broken_body_is_reported_once() {
    let chunks: Vec<Result<Bytes, Error>> = vec![
        Ok(Bytes::from_static(b"{\"connected\":{\"client\":\"x\"}}\n")),
        Err(Error::Protocol("connection reset".into())),
    ];
    let mut sub = Subscription::over_stream(Box::pin(stream::iter(chunks)), Cursor::new());
    assert!(matches!(sub.next().await, Some(Ok(Event::Connected { .. }))));
    assert!(matches!(sub.next().await, Some(Err(_))));
    assert!(sub.next().await.is_none());
}

#[tokio::test]
async fn websocket_subscription_keeps_wire_order() {
    let (conn, mut server) = pair().await;
    let script = tokio::spawn(async move {
        assert_eq!(recv_json(&mut server).await, json!({"id": 1, "connect": {"token": "t"}}));
        send_json(&mut server, json!({"id": 1, "connect": {"client": "c1", "version": "0", "ping": 25}}))
            .await;
        assert_eq!(
            recv_json(&mut server).await,
            json!({"id": 2, "subscribe": {"channel": "a", "since": {"epoch": "E", "offset": 1}}})
        );
        send_json(&mut server, json!({"id": 2, "subscribe": {"channel": "a", "epoch": "E", "offset": 1, "recovered": true, "replayed": 1}})).await;
        send_json(&mut server, json!({"pub": {"channel": "a", "offset": 2, "epoch": "E", "data": 1}})).await;
        assert_eq!(recv_json(&mut server).await, json!({"id": 3, "subscribe": {"channel": "b"}}));
        send_json(&mut server, json!({"id": 3, "subscribe": {"channel": "b", "epoch": "F", "offset": 7, "recovered": false, "replayed": 0}})).await;
        send_json(&mut server, json!({"pub": {"channel": "b", "offset": 8, "epoch": "F", "data": 2}})).await;
        server
    });
    let since = cursor_of(&[("a", pos("E", 1))]);
    let mut sub = Subscription::over_ws(conn, Some("t"), None, &["a", "b"], since).await.unwrap();
    assert_eq!(sub.next().await.unwrap().unwrap(), Event::Connected { client: "c1".into() });
    assert!(matches!(sub.next().await, Some(Ok(Event::Subscribed(s))) if s.channel == "a"));
    assert!(matches!(sub.next().await, Some(Ok(Event::Publication(p))) if p.offset == 2));
    assert!(matches!(sub.next().await, Some(Ok(Event::Subscribed(s))) if s.channel == "b"));
    assert!(matches!(sub.next().await, Some(Ok(Event::Publication(p))) if p.offset == 8));
    assert_eq!(sub.cursor(), cursor_of(&[("a", pos("E", 2)), ("b", pos("F", 8))]));
    let server = script.await.unwrap();
    drop(server);
    assert!(matches!(sub.next().await, Some(Err(Error::Closed { code: None, .. }))));
    assert!(sub.next().await.is_none());
}
