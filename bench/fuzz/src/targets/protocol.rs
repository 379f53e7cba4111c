//! The protocol crate: client JSON and binary frames, cursors and positions, channel names,
//! SockJS payloads and escaping.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use switchboard_protocol::frame::{parse_binary_frame, parse_client_frame};
use switchboard_protocol::{ChannelName, Cursor, ErrorCode, Position, sockjs};

use crate::Target;

/// Client frames: text (`parse_client_frame`) and binary (`parse_binary_frame`).
pub struct Frames;

const FRAMES: &[&str] = &[
    r#"{"id":1,"connect":{"token":"t","name":"ann","session":"c.tag","data":{"x":1}}}"#,
    r#"{"id":2,"subscribe":{"channel":"chat:lobby","since":{"epoch":"e1","offset":5},"recover":true}}"#,
    r#"{"id":3,"unsubscribe":{"channel":"chat:lobby"}}"#,
    r#"{"id":4,"publish":{"channel":"chat:lobby","data":{"text":"hi","n":[1,2,3]},"idempotency_key":"k1"}}"#,
    r#"{"id":5,"presence":{"channel":"chat:lobby"}}"#,
    r#"{"id":6,"history":{"channel":"chat:lobby","limit":10,"since":{"epoch":"e1","offset":0},"reverse":true}}"#,
    r#"{"id":7,"rpc":{"method":"m","data":{"a":"b"}}}"#,
    r#"{"id":8,"refresh":{"token":"t2"}}"#,
    r#"{"id":9,"ping":{}}"#,
    r#"{"pong":{}}"#,
    r#"{"id":10,"publish":{"channel":"$user:alice","data":"\u00e9\ud83d\ude00"}}"#,
];

impl Target for Frames {
    fn name(&self) -> &'static str {
        "frame"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        let mut c: Vec<Vec<u8>> = FRAMES.iter().map(|f| f.as_bytes().to_vec()).collect();
        c.push(b"{\"id\":11,\"publish\":{\"channel\":\"bin:x\"}}\n\x00\x01\x02\xff".to_vec());
        c
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"\"id\":",
            b"\"connect\":{}",
            b"\"subscribe\":",
            b"\"publish\":",
            b"\"history\":",
            b"\"channel\":",
            b"\"since\":",
            b"\"offset\":",
            b"\"epoch\":",
            b"\"data\":",
            b"\"limit\":",
            b"null",
            b"true",
            b"[[[[[[[[",
            b"{\"a\":{\"a\":{\"a\":",
            b"\\u0000",
            b"\\ud800",
            b"\n",
        ]
    }

    fn run(&mut self, input: &[u8]) {
        if let Ok(text) = std::str::from_utf8(input)
            && let Err(e) = parse_client_frame(text)
        {
            // Bad input gets one of the two stable codes, never another.
            assert!(matches!(e.code, ErrorCode::BadRequest | ErrorCode::MethodNotFound), "{e:?}");
        }
        let _ = parse_binary_frame(&Bytes::copy_from_slice(input));
    }
}

/// Cursors (`since=`, `Last-Event-ID`), compact positions and channel names.
pub struct Cursors;

impl Target for Cursors {
    fn name(&self) -> &'static str {
        "cursor"
    }

    /// First byte 0: the rest is the cursor's JSON, base64-encoded before decoding (to reach
    /// the JSON shape checks); otherwise the input is the cursor text itself.
    fn corpus(&self) -> Vec<Vec<u8>> {
        let mut c = Vec::new();
        for json in [
            r#"{"chat:lobby":["e1",5]}"#,
            r#"{"a":["x",0],"b:c":["yyyy",18446744073709551615],"$user:z":["",1]}"#,
            r#"{}"#,
        ] {
            let mut raw = vec![0u8];
            raw.extend_from_slice(json.as_bytes());
            c.push(raw);
            let mut text = vec![1u8];
            text.extend_from_slice(URL_SAFE_NO_PAD.encode(json).as_bytes());
            c.push(text);
        }
        c.push(b"\x02e1:42".to_vec());
        c.push(b"\x02chat:lobby".to_vec());
        c
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[b"[\"e\",1]", b"\"ch\":", b"==", b"-_", b":", b"$user:", b"18446744073709551616", b"\\u0000"]
    }

    fn run(&mut self, input: &[u8]) {
        let Some((&mode, rest)) = input.split_first() else { return };
        let text =
            if mode == 0 { URL_SAFE_NO_PAD.encode(rest) } else { String::from_utf8_lossy(rest).into_owned() };
        if let Ok(cursor) = Cursor::decode(&text) {
            // What decodes must encode to a cursor that decodes to the same positions.
            let again = Cursor::decode(&cursor.encode());
            assert_eq!(again.as_ref(), Ok(&cursor), "cursor round trip");
        }
        if let Some(p) = Position::parse_compact(&text) {
            let again = Position::parse_compact(&format!("{}:{}", p.epoch, p.offset));
            assert_eq!(again.as_ref(), Some(&p), "compact position round trip");
        }
        if let Ok(name) = ChannelName::new(&text) {
            let _ = (name.owner(), name.namespace());
        }
    }
}

/// SockJS payloads (`parse_messages`), JSONP callback names, and the escaping of what we send.
pub struct SockJs;

impl Target for SockJs {
    fn name(&self) -> &'static str {
        "sockjs"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        [
            r#"["a","b"]"#,
            r#""one""#,
            r#"["{\"id\":1,\"connect\":{}}","x\u2028y\ud83d\ude00"]"#,
            r#"["\u0000\u200c\ufff0\uffff"]"#,
            "[\"SEND\\ndestination:/topic/x\\n\\nbody\\u0000\"]",
            "  [ ]  ",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[b"\"", b"\\u", b"\\ud800", b"\\udc00", b"\\u2028", b"\\uffff", b",", b"[", b"]", b"null"]
    }

    fn run(&mut self, input: &[u8]) {
        if let Ok(messages) = sockjs::parse_messages(input) {
            for m in &messages {
                // Our escaping must read back as the same text in any JSON parser.
                let encoded = sockjs::json_string(m);
                let back: String = serde_json::from_slice(&encoded).expect("escaped string is JSON");
                assert_eq!(&back, m, "SockJS escaping round trip");
            }
            let encoded: Vec<Vec<u8>> = messages.iter().map(|m| sockjs::json_string(m)).collect();
            let frame = sockjs::array(encoded.iter().map(Vec::as_slice));
            let back: Vec<String> = serde_json::from_slice(&frame[1..]).expect("a[...] holds JSON");
            assert_eq!(back, messages);
        }
        let text = String::from_utf8_lossy(input);
        let _ = sockjs::valid_callback(&text);
        let close = sockjs::close(u16::from(input.first().copied().unwrap_or(0)) * 100, &text);
        let _: serde_json::Value = serde_json::from_slice(&close[1..]).expect("c[...] holds JSON");
    }
}
