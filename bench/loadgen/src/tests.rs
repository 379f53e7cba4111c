use super::*;

#[test]
fn chunked_bodies_decode_across_reads() {
    let wire = b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n";
    // Every split point: what a read left incomplete is decoded with the next one.
    for split in 0..wire.len() {
        let (mut c, mut out) = (Chunked::default(), Vec::new());
        let used = c.decode(&wire[..split], &mut out).unwrap();
        let mut rest = wire[used..split].to_vec();
        rest.extend_from_slice(&wire[split..]);
        c.decode(&rest, &mut out).unwrap();
        assert_eq!(out, b"hello!", "split at {split}");
        assert!(c.done());
    }
}

#[test]
fn sockjs_frames_and_messages() {
    let mut b = SockjsBody::new(false);
    b.body.extend_from_slice(
        b"hhh\no\na[\"{\\\"pub\\\":{\\\"data\\\":{\\\"t\\\":42}}}\",\"x\\\\\\\"y\"]\nc[3000,\"Go",
    );
    assert!(matches!(b.next_frame(), Some(SockjsFrame::Heartbeat)));
    assert!(matches!(b.next_frame(), Some(SockjsFrame::Open)));
    let Some(SockjsFrame::Messages(array)) = b.next_frame() else { panic!() };
    let m: Vec<&[u8]> = SockjsMessages { rest: array }.collect();
    assert_eq!(m, vec![&br#"{\"pub\":{\"data\":{\"t\":42}}}"#[..], &br#"x\\\"y"#[..]]);
    assert!(matches!(JSON_IN_SOCKJS.event(m[0]), JsonEvent::Pub(Some(42))));
    assert!(b.next_frame().is_none(), "an incomplete line waits");
    assert!(matches!(JSON_IN_SOCKJS.event(br#"{\"id\":1,\"error\":{}}"#), JsonEvent::Refused));
    assert!(matches!(JSON_IN_SOCKJS.event(br#"{\"id\":1,\"subscribe\":{}}"#), JsonEvent::Subscribed));
}

#[test]
fn stomp_frames() {
    let events: Vec<StompEvent> = StompFrames {
        rest: b"MESSAGE\nsubscription:0\n\n{\"t\":7,\"p\":\"x\"}\0\nRECEIPT\nreceipt-id:sub\n\n\0",
    }
    .collect();
    assert!(matches!(events[..], [StompEvent::Message(Some(7)), StompEvent::Receipt]));
    assert_eq!(StompFrames { rest: b"\n" }.count(), 0, "a heart-beat");
    let Some(StompEvent::Error(e)) = (StompFrames { rest: b"ERROR\ncode:105\nmessage:no\n\n\0" }).next()
    else {
        panic!()
    };
    assert_eq!(e, "STOMP ERROR: no");
}
