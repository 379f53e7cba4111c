//! WebSocket tests over an in-memory pipe: a scripted server on one end, [`WsConnection`] on the
//! other.

use serde_json::{Value, json};
use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::*;

pub(crate) type Server = WebSocketStream<DuplexStream>;

pub(crate) async fn pair() -> (WsConnection, Server) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let client = WebSocketStream::from_raw_socket(Box::new(a) as Box<dyn Io>, Role::Client, None).await;
    let server = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
    (WsConnection::from_stream(client), server)
}

pub(crate) async fn recv_json(server: &mut Server) -> Value {
    loop {
        match server.next().await.unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Binary(b) => panic!("unexpected binary frame {b:?}"),
            _ => continue,
        }
    }
}

pub(crate) async fn send_json(server: &mut Server, value: Value) {
    server.send(Message::text(value.to_string())).await.unwrap();
}

fn publication(channel: &str, offset: u64) -> Value {
    json!({"pub": {"channel": channel, "offset": offset, "epoch": "e", "data": {"n": offset}}})
}

fn offset_of(event: Option<Result<Event, Error>>) -> u64 {
    match event {
        Some(Ok(Event::Publication(p))) => p.offset,
        other => panic!("expected a publication, got {other:?}"),
    }
}

#[tokio::test]
async fn replies_match_by_id_and_pushes_keep_their_order() {
    let (mut client, mut server) = pair().await;
    let script = tokio::spawn(async move {
        let cmd = recv_json(&mut server).await;
        assert_eq!(
            cmd,
            json!({"id": 1, "subscribe": {"channel": "c", "since": {"epoch": "e", "offset": 3}}})
        );
        send_json(&mut server, publication("c", 4)).await;
        send_json(&mut server, json!({"ping": {}})).await;
        send_json(&mut server, json!({"id": 99, "publish": {"epoch": "e", "offset": 1}})).await;
        send_json(&mut server, json!({"future_push": {}})).await;
        send_json(
            &mut server,
            json!({"id": 1, "subscribe": {"channel": "c", "epoch": "e", "offset": 3, "recovered": true, "replayed": 2}}),
        )
        .await;
        assert_eq!(recv_json(&mut server).await, json!({"pong": {}}));
        send_json(&mut server, publication("c", 5)).await;
        server
    });
    let since = Position { epoch: "e".into(), offset: 3 };
    let reply = client.subscribe("c", Some(&since)).await.unwrap();
    assert_eq!((reply.offset, reply.recovered, reply.replayed), (3, true, 2));
    assert_eq!(offset_of(client.next_event().await), 4, "buffered during the command");
    assert_eq!(offset_of(client.next_event().await), 5, "live");
    script.await.unwrap();
}

#[tokio::test]
async fn error_replies_fail_the_command_but_keep_the_connection() {
    let (mut client, mut server) = pair().await;
    let script = tokio::spawn(async move {
        let cmd = recv_json(&mut server).await;
        assert_eq!(cmd, json!({"id": 1, "publish": {"channel": "c", "data": [1], "idempotency_key": "k"}}));
        send_json(&mut server, json!({"id": 1, "error": {"code": 103, "message": "permission denied"}}))
            .await;
        assert_eq!(recv_json(&mut server).await, json!({"id": 2, "ping": {}}));
        send_json(&mut server, json!({"id": 2, "ping": {}})).await;
        assert_eq!(recv_json(&mut server).await, json!({"id": 3, "presence": {"channel": "c"}}));
        send_json(
            &mut server,
            json!({"id": 3, "presence": {"clients": {"x": {"client": "x", "user": "u"}}}}),
        )
        .await;
    });
    let err = client.publish_with_key("c", &json!([1]), "k").await.unwrap_err();
    assert!(matches!(err, Error::Command { code: 103, .. }), "{err:?}");
    client.ping().await.unwrap();
    assert_eq!(client.presence("c").await.unwrap().clients["x"].user, "u");
    script.await.unwrap();
}

#[tokio::test]
async fn binary_publications_both_ways() {
    let (mut client, mut server) = pair().await;
    let script = tokio::spawn(async move {
        let Some(Ok(Message::Binary(frame))) = server.next().await else { panic!() };
        assert_eq!(&frame[..], b"{\"id\":1,\"publish\":{\"channel\":\"c\"}}\n\x00\n\xff");
        send_json(&mut server, json!({"id": 1, "publish": {"epoch": "e", "offset": 8}})).await;
        let mut push = br#"{"pub":{"channel":"c","offset":8,"epoch":"e"}}"#.to_vec();
        push.extend_from_slice(b"\n\x00\n\xff");
        server.send(Message::binary(push)).await.unwrap();
    });
    assert_eq!(client.publish_binary("c", b"\x00\n\xff").await.unwrap().offset, 8);
    match client.next_event().await {
        Some(Ok(Event::Publication(p))) => {
            assert_eq!(p.binary.as_deref(), Some(&b"\x00\n\xff"[..]));
            assert_eq!(p.data, None);
        }
        other => panic!("{other:?}"),
    }
    script.await.unwrap();
}

#[tokio::test]
async fn a_close_during_a_command_fails_it_and_ends_the_events() {
    let (mut client, mut server) = pair().await;
    let script = tokio::spawn(async move {
        recv_json(&mut server).await;
        send_json(&mut server, publication("c", 1)).await;
        let frame = CloseFrame { code: CloseCode::from(3002), reason: "slow consumer".into() };
        server.close(Some(frame)).await.unwrap();
    });
    let err = client.history("c", Some(10)).await.unwrap_err();
    assert!(matches!(err, Error::Closed { code: Some(3002), .. }), "{err:?}");
    assert!(err.should_reconnect());
    assert_eq!(offset_of(client.next_event().await), 1);
    assert!(matches!(
        client.next_event().await,
        Some(Ok(Event::Disconnected { code: 3002, ref reason })) if reason == "slow consumer"
    ));
    assert!(client.next_event().await.is_none());
    assert!(matches!(client.ping().await, Err(Error::Closed { .. })));
    script.await.unwrap();
}

#[tokio::test]
async fn raw_frames_and_bad_frames() {
    let (mut client, mut server) = pair().await;
    let script = tokio::spawn(async move {
        let Some(Ok(Message::Text(t))) = server.next().await else { panic!() };
        assert_eq!(t.as_str(), "not json");
        send_json(&mut server, json!({"id": 1, "error": {"code": 107, "message": "bad"}})).await;
        server.send(Message::text("garbage")).await.unwrap();
        send_json(&mut server, publication("c", 2)).await;
        drop(server);
    });
    client.send_raw("not json").await.unwrap();
    assert!(matches!(client.recv_raw().await, Some(Ok(RawFrame::Text(t))) if t.contains("107")));
    assert!(matches!(client.next_event().await, Some(Err(Error::Protocol(_)))), "bad frame is reported");
    assert_eq!(offset_of(client.next_event().await), 2, "and skipped");
    assert!(matches!(client.next_event().await, Some(Err(Error::Closed { code: None, .. }))));
    assert!(client.next_event().await.is_none());
    script.await.unwrap();
}

#[test]
fn decodes_frames() {
    assert!(matches!(decode_text(r#"{"id":3,"ping":{}}"#), Ok(Incoming::Reply(3, _))));
    assert!(matches!(decode_text(r#"{"ping":{}}"#), Ok(Incoming::Push(Push::Ping))));
    assert!(matches!(decode_text("[]"), Err(Error::Protocol(_))));
    assert!(decode_binary(&Bytes::from_static(b"no header")).is_err());
    assert!(decode_binary(&Bytes::from_static(b"{\"ping\":{}}\nxx")).is_err());
    assert_eq!(
        command(7, "unsubscribe", &ChannelBody { channel: "a\"b" }).unwrap(),
        r#"{"id":7,"unsubscribe":{"channel":"a\"b"}}"#
    );
}
