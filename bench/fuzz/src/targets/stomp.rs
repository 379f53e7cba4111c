//! STOMP frames: the one-shot decoder against the streaming one (fed in pieces), for every
//! version, then version and heart-beat negotiation and re-encoding of what decoded.

use bytes::BytesMut;
use switchboard_stomp::negotiate::HeartBeat;
use switchboard_stomp::{
    Decoded, Decoder, Limits, Version, decode, encode, negotiate_heartbeat, negotiate_version,
};

use crate::Target;

/// The STOMP codec.
pub struct Stomp;

const VERSIONS: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

impl Target for Stomp {
    fn name(&self) -> &'static str {
        "stomp"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        [
            &b"CONNECT\naccept-version:1.2,1.1,1.0\nhost:x\nheart-beat:10000,10000\nlogin:a\npasscode:b\n\n\0"[..],
            b"STOMP\naccept-version:1.2\nhost:x\n\n\0\n\n",
            b"SUBSCRIBE\nid:0\ndestination:/topic/chat.lobby\nack:client-individual\n\n\0",
            b"SEND\ndestination:/topic/a\ncontent-type:text/plain\ncontent-length:5\nreceipt:r1\n\nhe\0lo\0",
            b"SEND\r\ndestination:/topic/a\\c\\n\\r\\\\b\r\n\r\nbody\0\r\n",
            b"ACK\nid:m-1\ntransaction:t1\n\n\0BEGIN\ntransaction:t1\n\n\0COMMIT\ntransaction:t1\n\n\0",
            b"UNSUBSCRIBE\nid:0\n\n\0DISCONNECT\nreceipt:77\n\n\0",
            b"\n\r\n\n",
        ]
        .iter()
        .map(|f| f.to_vec())
        .collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"\0",
            b"\n",
            b"\r\n",
            b":",
            b"\\c",
            b"\\n",
            b"\\x",
            b"\\",
            b"content-length:",
            b"heart-beat:",
            b"accept-version:",
            b"destination:",
            b"SEND\n",
            b"CONNECT\n",
            b"MESSAGE\n",
        ]
    }

    fn run(&mut self, input: &[u8]) {
        let limits = Limits { max_frame_size: 4096, max_headers: 16, max_header_line: 512, max_body: 2048 };
        for version in VERSIONS {
            let whole = one_shot(input, version, &limits);
            // Pieces of a size the input picks, so each input replays exactly.
            let piece = 1 + input.first().map_or(0, |b| usize::from(*b % 13));
            let pieces = streamed(input, version, &limits, piece);
            assert_eq!(
                whole, pieces,
                "one-shot and streamed decoding differ ({version:?}, pieces of {piece})"
            );
        }
    }
}

/// Every result of decoding `input` at once, as text (frames, heart-beats, the final error).
fn one_shot(input: &[u8], version: Version, limits: &Limits) -> Vec<String> {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        match decode(&mut buf, version, limits) {
            Ok(Some(d)) => out.push(use_decoded(d, version)),
            Ok(None) => return out,
            Err(e) => {
                out.push(format!("error {}", e.message()));
                return out;
            }
        }
    }
}

/// The same, through a [`Decoder`] fed `piece` bytes at a time.
fn streamed(input: &[u8], version: Version, limits: &Limits, piece: usize) -> Vec<String> {
    let mut decoder = Decoder::new(version, *limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in input.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(d)) => out.push(use_decoded(d, version)),
                Ok(None) => break,
                Err(e) => {
                    out.push(format!("error {}", e.message()));
                    return out;
                }
            }
        }
    }
    out
}

/// Runs what the server runs on a decoded frame, and describes it.
fn use_decoded(d: Decoded, version: Version) -> String {
    let Decoded::Frame(frame) = d else { return "heartbeat".into() };
    let _ = negotiate_version(frame.get("accept-version"));
    if let Ok(client) = HeartBeat::parse(frame.get("heart-beat")) {
        let _ = negotiate_heartbeat(client, HeartBeat { send_ms: 10_000, receive_ms: 10_000 });
    }
    let mut out = BytesMut::new();
    let _ = encode(&frame, version, &mut out);
    format!("{frame:?}")
}
