use bytes::{Bytes, BytesMut};

use super::{decode_all, one_frame};
use crate::{
    Command, Decoded, EncodeError, Frame, HEARTBEAT, Limits, MessageTemplate, Version, encode,
    encode_to_bytes,
};

fn encoded(frame: &Frame, version: Version) -> Vec<u8> {
    encode_to_bytes(frame, version).expect("encodable").to_vec()
}

#[test]
fn writes_content_length_for_bodies_only() {
    let send = Frame::new(Command::Send).header("destination", "/topic/a").body("hello");
    assert_eq!(encoded(&send, Version::V1_2), b"SEND\ndestination:/topic/a\ncontent-length:5\n\nhello\0");
    let subscribe = Frame::new(Command::Subscribe).header("id", "0").header("destination", "/topic/a");
    assert_eq!(encoded(&subscribe, Version::V1_2), b"SUBSCRIBE\nid:0\ndestination:/topic/a\n\n\0");
    // A content-length header of the caller's is replaced by the true one.
    let lying = Frame::new(Command::Send).header("content-length", "99").body(&b"a\0b"[..]);
    assert_eq!(encoded(&lying, Version::V1_2), b"SEND\ncontent-length:3\n\na\0b\0");
}

#[test]
fn escapes_per_version() {
    let frame = Frame::new(Command::Message).header("k:1", "a:b\nc\\d");
    assert_eq!(encoded(&frame, Version::V1_2), b"MESSAGE\nk\\c1:a\\cb\\nc\\\\d\n\n\0");
    assert_eq!(encoded(&frame, Version::V1_1), b"MESSAGE\nk\\c1:a\\cb\\nc\\\\d\n\n\0");
    let cr = Frame::new(Command::Message).header("k", "a\rb");
    assert_eq!(encoded(&cr, Version::V1_2), b"MESSAGE\nk:a\\rb\n\n\0");
    assert_eq!(encode_to_bytes(&cr, Version::V1_1), Err(EncodeError::Unencodable { name: "k".into() }));
    let raw = Frame::new(Command::Message).header("k", "a:b\\c");
    assert_eq!(encoded(&raw, Version::V1_0), b"MESSAGE\nk:a:b\\c\n\n\0");
    let connected = Frame::new(Command::Connected).header("server", "switchboard:1\\x");
    assert_eq!(encoded(&connected, Version::V1_2), b"CONNECTED\nserver:switchboard:1\\x\n\n\0");
}

#[test]
fn refuses_what_cannot_be_carried_and_leaves_out_alone() {
    let cases = [
        (Frame::new(Command::Message).header("k", "a\nb"), Version::V1_0),
        (Frame::new(Command::Connected).header("k", "a\nb"), Version::V1_2),
        (Frame::new(Command::Connected).header("k:x", "v"), Version::V1_2),
        (Frame::new(Command::Message).header("k", "a\0b"), Version::V1_2),
        (Frame::new(Command::Message).header("", "v"), Version::V1_2),
    ];
    for (frame, version) in cases {
        let mut out = BytesMut::from(&b"before"[..]);
        assert!(
            matches!(encode(&frame, version, &mut out), Err(EncodeError::Unencodable { .. })),
            "{frame:?}"
        );
        assert_eq!(&out[..], b"before");
    }
    let ack = Frame::new(Command::Ack).header("id", "1").body("x");
    assert_eq!(
        encode_to_bytes(&ack, Version::V1_2),
        Err(EncodeError::BodyNotAllowed { command: Command::Ack })
    );
}

#[test]
fn round_trips_in_every_version() {
    let body = Bytes::from_static(b"\0binary\0\xff\n");
    for version in Version::ALL {
        for command in Command::ALL {
            let mut frame = Frame::new(command).header("destination", "/topic/chat:lobby").header("x", "");
            frame = frame.header("x", "second").header("back\\slash", "v\\");
            if version == Version::V1_2 && command.escapes_headers() {
                frame = frame.header("lines", "a\r\nb");
            }
            if command.allows_body() {
                frame = frame.body(body.clone());
            }
            let bytes = encoded(&frame, version);
            assert_eq!(one_frame(&bytes, version), frame, "{version:?} {command:?}");
        }
    }
}

#[test]
fn heartbeat_decodes_as_one() {
    let (items, end, rest) = decode_all(HEARTBEAT, Version::V1_2, &Limits::default());
    assert_eq!((items, end, rest.len()), (vec![Decoded::Heartbeat], Ok(()), 0));
}

fn shared_headers() -> Vec<(&'static str, &'static str)> {
    vec![("destination", "/topic/chat:lobby"), ("content-type", "text/plain"), ("content-length", "1")]
}

#[test]
fn message_template_writes_what_encode_writes() {
    let body = Bytes::from_static(b"hi\0there");
    for version in Version::ALL {
        let template = MessageTemplate::new(version, &shared_headers(), body.clone()).expect("template");
        for ack in [None, Some("ack-7")] {
            let mut frame =
                Frame::new(Command::Message).header("subscription", "sub-0").header("message-id", "m1");
            if let Some(ack) = ack {
                frame = frame.header("ack", ack);
            }
            frame = frame
                .header("destination", "/topic/chat:lobby")
                .header("content-type", "text/plain")
                .body(body.clone());
            let expected = encoded(&frame, version);
            assert_eq!(
                template.to_bytes("sub-0", "m1", ack).expect("bytes").to_vec(),
                expected,
                "{version:?}"
            );
            let [head, shared] = template.parts_for("sub-0", "m1", ack).expect("parts");
            assert_eq!([&head[..], &shared[..]].concat(), expected);
            let mut out = BytesMut::from(&b"\n"[..]);
            template.write_for("sub-0", "m1", ack, &mut out).expect("write");
            assert_eq!(&out[1..], expected);
        }
    }
}

#[test]
fn message_template_shares_one_encoding() {
    let template =
        MessageTemplate::new(Version::V1_2, &shared_headers(), Bytes::from_static(b"x")).expect("template");
    let [head_a, shared_a] = template.parts_for("a", "1", None).expect("a");
    let [head_b, shared_b] = template.parts_for("b:\n", "1", None).expect("b");
    assert_eq!(shared_a.as_ptr(), shared_b.as_ptr(), "the shared part is not copied");
    assert_eq!(shared_a.as_ptr(), template.shared().as_ptr());
    assert_eq!(&head_a[..], b"MESSAGE\nsubscription:a\nmessage-id:1\n");
    assert_eq!(
        &head_b[..],
        b"MESSAGE\nsubscription:b\\c\\n\nmessage-id:1\n",
        "per-subscriber headers are escaped"
    );
}

#[test]
fn message_template_refuses_per_subscriber_and_unencodable_headers() {
    let error = MessageTemplate::new(Version::V1_2, &[("ack", "1")], Bytes::new()).map(|_| ());
    assert_eq!(error, Err(EncodeError::PerSubscriberHeader { name: "ack".into() }));
    let error = MessageTemplate::new(Version::V1_0, &[("destination", "a\nb")], Bytes::new()).map(|_| ());
    assert_eq!(error, Err(EncodeError::Unencodable { name: "destination".into() }));
    let template =
        MessageTemplate::new(Version::V1_0, &[("destination", "/a")], Bytes::new()).expect("template");
    let mut out = BytesMut::new();
    assert!(template.write_for("bad\nid", "1", None, &mut out).is_err());
    assert!(out.is_empty());
}
