use bytes::BytesMut;

use super::{decode_all, decode_error, decode_error_with, one_frame};
use crate::{Command, DecodeError, Decoded, Decoder, Limits, Version, decode};

/// What @stomp/stompjs 7 sends first: no `host`.
const STOMPJS_CONNECT: &[u8] = b"CONNECT\naccept-version:1.2,1.1,1.0\nheart-beat:10000,10000\n\n\0";
/// What stomp.py 9 sends first for STOMP 1.2 (the STOMP command).
const STOMP_PY_CONNECT: &[u8] =
    b"STOMP\naccept-version:1.2\nhost:127.0.0.1\nheart-beat:0,0\nlogin:alice\npasscode:s\\e:cret\n\n\0";

#[test]
fn stompjs_connect_needs_no_host() {
    let frame = one_frame(STOMPJS_CONNECT, Version::V1_2);
    assert_eq!(frame.command, Command::Connect);
    assert_eq!(frame.get("accept-version"), Some("1.2,1.1,1.0"));
    assert_eq!(frame.get("heart-beat"), Some("10000,10000"));
    assert_eq!(frame.get("host"), None);
    assert!(frame.body.is_empty());
}

#[test]
fn stomp_py_stomp_frame_is_escaped_but_colons_in_values_pass() {
    // STOMP (unlike CONNECT) is escaped: `\e` is undefined.
    assert_eq!(decode_error(STOMP_PY_CONNECT, Version::V1_2), DecodeError::InvalidEscape);
    let ok = b"STOMP\naccept-version:1.2\nhost:127.0.0.1\nlogin:alice\npasscode:se:cret\\\\\n\n\0";
    let frame = one_frame(ok, Version::V1_2);
    assert_eq!(frame.command, Command::Stomp);
    assert_eq!(frame.get("passcode"), Some("se:cret\\"));
}

#[test]
fn connect_and_connected_are_never_unescaped() {
    let connect = b"CONNECT\nlogin:a\\c\\z\npasscode:x\\ny\n\n\0";
    let frame = one_frame(connect, Version::V1_2);
    assert_eq!(frame.get("login"), Some("a\\c\\z"));
    assert_eq!(frame.get("passcode"), Some("x\\ny"));
    let connected = one_frame(b"CONNECTED\nserver:sw\\c1\n\n\0", Version::V1_1);
    assert_eq!(connected.get("server"), Some("sw\\c1"));
}

#[test]
fn escapes_per_version() {
    let frame = b"SEND\ndestination:a\\r\\n\\c\\\\b\n\n\0";
    assert_eq!(one_frame(frame, Version::V1_2).get("destination"), Some("a\r\n:\\b"));
    // 1.1 defines no \r, but @stomp/stompjs sends it for 1.1 too: read as CR.
    assert_eq!(one_frame(frame, Version::V1_1).get("destination"), Some("a\r\n:\\b"));
    assert_eq!(decode_error(b"SEND\ndestination:a\\tb\n\n\0", Version::V1_1), DecodeError::InvalidEscape);
    let frame = b"SEND\ndestination:a\\n\\c\\\\b\n\n\0";
    assert_eq!(one_frame(frame, Version::V1_1).get("destination"), Some("a\n:\\b"));
    assert_eq!(one_frame(frame, Version::V1_0).get("destination"), Some("a\\n\\c\\\\b"));
    // Names are unescaped too.
    assert_eq!(one_frame(b"SEND\nx\\cy:1\n\n\0", Version::V1_2).headers, [("x:y".into(), "1".into())]);
}

#[test]
fn undefined_escapes_are_errors() {
    for bad in [&b"SEND\na:\\t\n\n\0"[..], b"SEND\na:b\\\n\n\0", b"SEND\n\\x:b\n\n\0"] {
        assert_eq!(decode_error(bad, Version::V1_2), DecodeError::InvalidEscape);
        assert_eq!(decode_error(bad, Version::V1_1), DecodeError::InvalidEscape);
        assert!(matches!(decode_all(bad, Version::V1_0, &Limits::default()).1, Ok(())));
    }
}

#[test]
fn heartbeats_between_frames() {
    let stream = b"\n\r\nSEND\ndestination:/a\n\nhi\0\n\r\n\nRECEIPT\nreceipt-id:1\n\n\0\r";
    let (items, end, rest) = decode_all(stream, Version::V1_2, &Limits::default());
    assert_eq!(end, Ok(()));
    assert_eq!(&rest[..], b"\r", "a lone CR waits for its LF");
    let kinds: Vec<_> = items
        .iter()
        .map(|item| match item {
            Decoded::Heartbeat => "hb",
            Decoded::Frame(frame) => frame.command.as_str(),
        })
        .collect();
    assert_eq!(kinds, ["hb", "hb", "SEND", "hb", "hb", "hb", "RECEIPT"]);
    assert_eq!(decode_error(b"\rX", Version::V1_2), DecodeError::BareCarriageReturn);
}

#[test]
fn lines_may_end_in_crlf() {
    let frame = one_frame(b"SEND\r\ndestination:/a\r\nx:\r\n\r\nhi\0", Version::V1_2);
    assert_eq!(frame.command, Command::Send);
    assert_eq!(frame.headers, [("destination".into(), "/a".into()), ("x".into(), String::new())]);
    assert_eq!(&frame.body[..], b"hi");
    assert_eq!(decode_error(b"SEND\ndestination:/\ra\n\n\0", Version::V1_2), DecodeError::BareCarriageReturn);
}

#[test]
fn content_length_body_may_hold_nul_and_is_not_a_header() {
    let frame = one_frame(b"SEND\ndestination:/a\ncontent-length:5\n\na\0b\0c\0", Version::V1_2);
    assert_eq!(&frame.body[..], b"a\0b\0c");
    assert_eq!(frame.headers, [("destination".into(), "/a".into())]);
    // The first content-length wins; the later one is ignored.
    let frame = one_frame(b"SEND\ncontent-length:1\ncontent-length:9\n\n\0\0", Version::V1_2);
    assert_eq!(&frame.body[..], b"\0");
}

#[test]
fn without_content_length_the_body_ends_at_the_first_nul() {
    let (items, end, rest) = decode_all(b"SEND\n\nab\0SEND\n\ncd\0", Version::V1_2, &Limits::default());
    assert_eq!((end, rest.len()), (Ok(()), 0));
    let [Decoded::Frame(first), Decoded::Frame(second)] = &items[..] else { panic!("{items:?}") };
    assert_eq!((&first.body[..], &second.body[..]), (&b"ab"[..], &b"cd"[..]));
}

#[test]
fn every_prefix_is_incomplete_and_nothing_is_consumed() {
    let stream = b"SEND\r\ndestination:/a\ncontent-length:3\n\na\0b\0";
    for len in 0..stream.len() {
        let mut buf = BytesMut::from(&stream[..len]);
        assert_eq!(decode(&mut buf, Version::V1_2, &Limits::default()), Ok(None), "prefix {len}");
        assert_eq!(buf.len(), len);
    }
}

#[test]
fn repeated_headers_are_kept_and_the_first_wins() {
    let frame = one_frame(b"MESSAGE\nfoo:World\nfoo:Hello\n\n\0", Version::V1_2);
    assert_eq!(frame.get("foo"), Some("World"));
    assert_eq!(frame.headers.len(), 2);
}

#[test]
fn raw_colons_in_values_are_accepted() {
    let frame = one_frame(b"SUBSCRIBE\nid:0\ndestination:/topic/chat:lobby\n\n\0", Version::V1_2);
    assert_eq!(frame.get("destination"), Some("/topic/chat:lobby"));
}

#[test]
fn unknown_commands() {
    assert_eq!(decode_error(b"send\n\n\0", Version::V1_2), DecodeError::UnknownCommand);
    assert_eq!(decode_error(b"CONNECT \n\n\0", Version::V1_2), DecodeError::UnknownCommand);
    // Known as soon as the line is longer than any command, before its LF.
    assert_eq!(decode_error(b"UNSUBSCRIBEX", Version::V1_2), DecodeError::UnknownCommand);
    assert_eq!(decode_all(b"UNSUBSCRIBE", Version::V1_2, &Limits::default()).1, Ok(()));
}

#[test]
fn malformed_headers() {
    assert_eq!(decode_error(b"SEND\nnocolon\n\n\0", Version::V1_2), DecodeError::MalformedHeader);
    assert_eq!(decode_error(b"SEND\n:value\n\n\0", Version::V1_2), DecodeError::MalformedHeader);
    assert_eq!(decode_error(b"SEND\na:\xff\n\n\0", Version::V1_2), DecodeError::InvalidUtf8);
    assert_eq!(decode_error(b"SEND\na:b\0\n\n\0", Version::V1_2), DecodeError::UnexpectedNul);
    assert_eq!(decode_error(b"\0", Version::V1_2), DecodeError::UnexpectedNul);
    assert_eq!(decode_error(b"SEND\na:b\n\0", Version::V1_2), DecodeError::UnexpectedNul);
}

#[test]
fn invalid_content_lengths() {
    for value in ["", "x", "-1", " 1", "1 ", "+1", "99999999999999999999999"] {
        let frame = format!("SEND\ncontent-length:{value}\n\n\0");
        assert_eq!(
            decode_error(frame.as_bytes(), Version::V1_2),
            DecodeError::InvalidContentLength,
            "{value:?}"
        );
    }
    assert_eq!(decode_error(b"SEND\ncontent-length:2\n\nabc\0", Version::V1_2), DecodeError::MissingNul);
}

#[test]
fn only_send_message_and_error_have_bodies() {
    let error = DecodeError::BodyNotAllowed { command: Command::Subscribe };
    assert_eq!(decode_error(b"SUBSCRIBE\nid:1\n\nx\0", Version::V1_2), error);
    assert_eq!(
        decode_error(b"SUBSCRIBE\ncontent-length:1\n\n", Version::V1_2),
        error,
        "known before the body"
    );
    assert_eq!(one_frame(b"SUBSCRIBE\ncontent-length:0\n\n\0", Version::V1_2).command, Command::Subscribe);
    for command in ["SEND", "MESSAGE", "ERROR"] {
        let frame = one_frame(format!("{command}\n\nbody\0").as_bytes(), Version::V1_2);
        assert_eq!(&frame.body[..], b"body");
    }
}

fn small() -> Limits {
    Limits { max_frame_size: 64, max_headers: 3, max_header_line: 20, max_body: 20 }
}

#[test]
fn limits_hold_exactly_at_their_value() {
    // 20-byte header line, 3 headers, 20-byte body.
    let frame = b"SEND\naaaaaaaaaaaaaaaaaa:b\nc:d\ne:f\n\n01234567890123456789\0";
    assert_eq!(one_frame_with(frame, &small()).body.len(), 20);
    let tight = Limits { max_frame_size: frame.len(), ..small() };
    assert_eq!(one_frame_with(frame, &tight).body.len(), 20);
    let tighter = Limits { max_frame_size: frame.len() - 1, ..small() };
    assert_eq!(
        decode_error_with(frame, Version::V1_2, &tighter),
        DecodeError::FrameTooLarge { limit: frame.len() - 1 }
    );
}

fn one_frame_with(bytes: &[u8], limits: &Limits) -> crate::Frame {
    match decode_all(bytes, Version::V1_2, limits) {
        (items, Ok(()), rest) if rest.is_empty() && items.len() == 1 => match items.into_iter().next() {
            Some(Decoded::Frame(frame)) => frame,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn limits_reject_before_the_frame_is_complete() {
    let limits = small();
    // The header line is too long before its LF arrives.
    assert_eq!(
        decode_error_with(b"SEND\naaaaaaaaaaaaaaaaaaaaa", Version::V1_2, &limits),
        DecodeError::HeaderLineTooLong { limit: 20 }
    );
    assert_eq!(
        decode_error_with(b"SEND\na:1\nb:2\nc:3\nd:4\n", Version::V1_2, &limits),
        DecodeError::TooManyHeaders { limit: 3 }
    );
    // content-length over the body limit: rejected with only the headers buffered.
    assert_eq!(
        decode_error_with(b"SEND\ncontent-length:21\n\n", Version::V1_2, &limits),
        DecodeError::BodyTooLarge { limit: 20 }
    );
    // content-length within the body limit but not the frame limit.
    let limits = Limits { max_frame_size: 30, ..small() };
    assert_eq!(
        decode_error_with(b"SEND\ncontent-length:19\n\n", Version::V1_2, &limits),
        DecodeError::FrameTooLarge { limit: 30 }
    );
    // No NUL: rejected once one byte more than the body limit is buffered, not later.
    let mut stream = b"SEND\n\n".to_vec();
    stream.extend_from_slice(&[b'x'; 20]);
    assert_eq!(decode_all(&stream, Version::V1_2, &small()).1, Ok(()));
    stream.push(b'x');
    assert_eq!(decode_error_with(&stream, Version::V1_2, &small()), DecodeError::BodyTooLarge { limit: 20 });
    // Headers alone over the frame limit.
    let limits = Limits { max_frame_size: 12, ..small() };
    assert_eq!(
        decode_error_with(b"SEND\na:1\nb:2\n", Version::V1_2, &limits),
        DecodeError::FrameTooLarge { limit: 12 }
    );
}

#[test]
fn errors_leave_the_buffer_alone() {
    let stream = b"SEND\na:\\q\n\n\0";
    let mut buf = BytesMut::from(&stream[..]);
    assert_eq!(decode(&mut buf, Version::V1_2, &Limits::default()), Err(DecodeError::InvalidEscape));
    assert_eq!(&buf[..], stream);
}

#[test]
fn error_messages_fit_an_error_header() {
    let errors = [
        DecodeError::UnknownCommand,
        DecodeError::FrameTooLarge { limit: 1 },
        DecodeError::BodyTooLarge { limit: 1 },
        DecodeError::TooManyHeaders { limit: 1 },
        DecodeError::HeaderLineTooLong { limit: 1 },
        DecodeError::MalformedHeader,
        DecodeError::InvalidEscape,
        DecodeError::InvalidUtf8,
        DecodeError::InvalidContentLength,
        DecodeError::MissingNul,
        DecodeError::UnexpectedNul,
        DecodeError::BareCarriageReturn,
        DecodeError::BodyNotAllowed { command: Command::Ack },
    ];
    for error in errors {
        let message = error.message();
        assert!(!message.is_empty() && message.bytes().all(|b| (b' '..=b'~').contains(&b)), "{message:?}");
    }
    assert_eq!(
        DecodeError::BodyNotAllowed { command: Command::Ack }.message(),
        "ACK frames must not have a body"
    );
}

#[test]
fn decoder_resumes_instead_of_rescanning() {
    // 1 MiB without content-length, one byte per call: rescanning from the start each time
    // would look at ~5 * 10^11 bytes and not finish in time; resuming looks at each once.
    let body = 1 << 20;
    let limits = Limits { max_frame_size: 2 * body, max_body: body, ..Limits::default() };
    let mut stream = b"SEND\ndestination:/a\n\n".to_vec();
    stream.resize(stream.len() + body, b'x');
    stream.push(0);
    let mut decoder = Decoder::new(Version::V1_2, limits);
    let mut buf = BytesMut::new();
    let (started, limit) = (std::time::Instant::now(), std::time::Duration::from_secs(5));
    for (i, byte) in stream.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        assert!(i % 4096 != 0 || started.elapsed() < limit, "{i} bytes after {limit:?}: rescanning");
        let decoded = decoder.decode(&mut buf);
        if i + 1 < stream.len() {
            assert_eq!(decoded, Ok(None));
        } else {
            let Ok(Some(Decoded::Frame(frame))) = decoded else { panic!("{decoded:?}") };
            assert_eq!(frame.body.len(), body);
        }
    }
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());
}

#[test]
fn decoder_switches_version_after_connect() {
    let mut decoder = Decoder::new(Version::V1_2, Limits::default());
    let mut buf = BytesMut::from(&b"CONNECT\naccept-version:1.0\n\n\0SEND\ndestination:a\\b\n\n\0"[..]);
    assert!(matches!(decoder.decode(&mut buf), Ok(Some(Decoded::Frame(_)))));
    decoder.set_version(Version::V1_0);
    let Ok(Some(Decoded::Frame(send))) = decoder.decode(&mut buf) else { panic!() };
    assert_eq!(send.get("destination"), Some("a\\b"), "1.0 has no escapes");
    assert_eq!(decoder.version(), Version::V1_0);
}
