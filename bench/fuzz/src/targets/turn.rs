//! STUN/TURN: the codec (`frame_len`, `decode`) and the sans-IO `TurnServer` fed sequences of
//! client frames, peer datagrams, closes and time steps. Records may ask to be signed with a
//! valid user's key and the server's current nonce, so mutated attributes reach the
//! authenticated handlers (Allocate, Refresh, CreatePermission, ChannelBind) and the data paths.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_turn::codec::attr::{atype, method};
use switchboard_turn::codec::{self, Class, IntegrityKind, MessageBuilder};
use switchboard_turn::{Input, Metrics, Output, RelayId, Transport, TurnConfig, TurnServer};

use crate::Target;

const USER: &str = "fuzz";
const REALM: &str = "switchboard";
/// MD5("fuzz:switchboard:fuzzpass"), the long-term key (RFC 8489 §9.2.2).
const KEY: [u8; 16] = [74, 65, 83, 73, 6, 67, 58, 99, 2, 66, 215, 202, 196, 205, 240, 95];
/// Most records read from one input.
const MAX_RECORDS: usize = 32;

/// Record kinds (the low bits of a record's first byte).
const UDP: u8 = 0;
const TCP: u8 = 1;
const PEER: u8 = 2;
const CLOSE: u8 = 3;
const TIME: u8 = 4;
/// Flag: build the record's body as `METHOD(2) CLASS(1) TID(12) TLV...` and sign it.
const SIGN: u8 = 0x80;
/// Flag, with `SIGN`: use MESSAGE-INTEGRITY-SHA256 and add a FINGERPRINT.
const SHA256: u8 = 0x40;

/// The TURN server.
pub struct Turn {
    config: TurnConfig,
}

impl Turn {
    /// One static user; loopback peers allowed, so permissions and relaying are reachable.
    pub fn new() -> Self {
        let config = TurnConfig {
            static_users: HashMap::from([(USER.to_owned(), "fuzzpass".to_owned())]),
            allow_loopback_peers: true,
            ..TurnConfig::default()
        };
        Self { config }
    }
}

impl Default for Turn {
    fn default() -> Self {
        Self::new()
    }
}

fn client() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 40000)
}

fn peer() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 9000)
}

/// Runs the server's outputs: answers relay binds, drops the rest; returns the transmitted
/// frames.
fn drain(server: &mut TurnServer, now: Instant) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for _ in 0..64 {
        match server.poll_output() {
            Output::Timeout(_) => break,
            Output::Transmit { data, .. } => sent.push(data),
            Output::BindRelay { relay, reserve, .. } => {
                let local = |id: RelayId| {
                    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50000 + (id.0 % 1000) as u16 * 2))
                };
                if let Some(r) = reserve {
                    server.handle_input(now, Input::RelayBound { relay: r, local: local(r) });
                }
                server.handle_input(now, Input::RelayBound { relay, local: local(relay) });
            }
            Output::SendToPeer { .. } | Output::CloseRelay { .. } => {}
        }
    }
    sent
}

/// The NONCE of the server's 401 answer to an unauthenticated Allocate.
fn nonce(server: &mut TurnServer, now: Instant) -> Vec<u8> {
    let allocate = MessageBuilder::new(method::ALLOCATE, Class::Request, [7; 12])
        .attr(atype::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .build();
    server
        .handle_input(now, Input::FromClient { transport: Transport::Udp, from: client(), data: &allocate });
    for frame in drain(server, now) {
        if let Ok(codec::Frame::Stun(m)) = codec::decode(&frame)
            && let Some(n) = m.get(atype::NONCE)
        {
            return n.to_vec();
        }
    }
    Vec::new()
}

/// Builds and signs a request from `METHOD(2) CLASS(1) TID(12) (TYPE(2) LEN(2) VALUE)*`.
fn signed(body: &[u8], nonce: &[u8], sha256: bool) -> Option<Vec<u8>> {
    if body.len() < 15 {
        return None;
    }
    let m = u16::from_be_bytes([body[0], body[1]]) & 0x0fff;
    let class = [Class::Request, Class::Indication, Class::Request, Class::Success][usize::from(body[2] % 4)];
    let mut tid = [0u8; 12];
    tid.copy_from_slice(&body[3..15]);
    let mut b = MessageBuilder::new(m, class, tid);
    let mut rest = &body[15..];
    while rest.len() >= 4 {
        let typ = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        b = b.attr(typ, &rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    b = b
        .attr(atype::USERNAME, USER.as_bytes())
        .attr(atype::REALM, REALM.as_bytes())
        .attr(atype::NONCE, nonce);
    Some(if sha256 {
        b.integrity(IntegrityKind::Sha256, &KEY).fingerprint().build()
    } else {
        b.integrity(IntegrityKind::Sha1, &KEY).build()
    })
}

/// A signed-request record's body.
fn request(m: u16, tid: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = m.to_be_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&[tid; 12]);
    for (typ, value) in attrs {
        body.extend_from_slice(&typ.to_be_bytes());
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
    }
    body
}

/// One record: `KIND LEN(2) BODY`.
fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![kind];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

/// XOR-PEER-ADDRESS of 127.0.0.3:9000.
fn xor_peer() -> Vec<u8> {
    let port = 9000u16 ^ 0x2112;
    let ip = u32::from(Ipv4Addr::new(127, 0, 0, 3)) ^ codec::MAGIC_COOKIE;
    let mut v = vec![0, 1];
    v.extend_from_slice(&port.to_be_bytes());
    v.extend_from_slice(&ip.to_be_bytes());
    v
}

impl Target for Turn {
    fn name(&self) -> &'static str {
        "turn"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        let peer = xor_peer();
        let binding = MessageBuilder::new(method::BINDING, Class::Request, [1; 12]).fingerprint().build();
        let allocate = request(
            method::ALLOCATE,
            2,
            &[(atype::REQUESTED_TRANSPORT, &[17, 0, 0, 0]), (atype::LIFETIME, &[0, 0, 2, 88])],
        );
        let even = request(
            method::ALLOCATE,
            3,
            &[(atype::REQUESTED_TRANSPORT, &[17, 0, 0, 0]), (atype::EVEN_PORT, &[0x80])],
        );
        let perm = request(method::CREATE_PERMISSION, 4, &[(atype::XOR_PEER_ADDRESS, &peer)]);
        let bind = request(
            method::CHANNEL_BIND,
            5,
            &[(atype::CHANNEL_NUMBER, &[0x40, 0, 0, 0]), (atype::XOR_PEER_ADDRESS, &peer)],
        );
        let refresh = request(method::REFRESH, 6, &[(atype::LIFETIME, &[0, 0, 0, 0])]);
        let mut send = MessageBuilder::new(method::SEND, Class::Indication, [8; 12]);
        send = send.attr(atype::XOR_PEER_ADDRESS, &peer).attr(atype::DATA, b"hello peer");
        let send = send.build();
        let channel_data = [&[0x40, 0, 0, 5][..], b"hello", &[0, 0, 0]].concat();
        let legacy = [&[0, 1, 0, 0][..], &[9; 16]].concat();
        let session = [
            record(SIGN | UDP, &allocate),
            record(SIGN | UDP, &perm),
            record(SIGN | SHA256 | UDP, &bind),
            record(UDP, &send),
            record(UDP, &channel_data),
            record(PEER, b"from the peer"),
            record(TIME, &[0; 30]),
            record(SIGN | UDP, &refresh),
        ]
        .concat();
        let tcp = [
            record(SIGN | TCP, &even),
            record(SIGN | TCP, &perm),
            record(SIGN | TCP, &bind),
            record(TCP, &channel_data),
            record(PEER, b"x"),
            record(CLOSE, &[]),
        ]
        .concat();
        vec![record(UDP, &binding), record(UDP, &legacy), record(TCP, &binding), session, tcp]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"\x21\x12\xa4\x42",
            b"\x80\x28\x00\x04",
            b"\x00\x08\x00\x14",
            b"\x00\x19\x00\x04\x11\x00\x00\x00",
            b"\x40\x00",
            b"\x7f\xff",
            b"\x00\x12\x00\x08\x00\x01",
            b"\x00\x12\x00\x14\x00\x02",
        ]
    }

    fn run(&mut self, input: &[u8]) {
        self.responses(input);
    }
}

impl Turn {
    /// Runs one input; returns every frame the server sent to the client.
    pub fn responses(&self, input: &[u8]) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        let start = Instant::now();
        let mut now = start;
        let Ok(mut server) = TurnServer::new(&self.config, Arc::new(Metrics::default()), now, 1_700_000_000)
        else {
            return sent;
        };
        let nonce = nonce(&mut server, now);
        let mut rest = input;
        for _ in 0..MAX_RECORDS {
            if rest.len() < 3 {
                break;
            }
            let kind = rest[0];
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
            let body = &rest[3..3 + len];
            rest = &rest[3 + len..];
            // The codec on its own, as the TCP listener cuts frames and the UDP one decodes.
            if let Ok(Some(n)) = codec::frame_len(body) {
                let _ = codec::decode(&body[..n.min(body.len())]);
            }
            let _ = codec::decode(body);
            let signed_body;
            let data = if kind & SIGN != 0 {
                match signed(body, &nonce, kind & SHA256 != 0) {
                    Some(b) => {
                        signed_body = b;
                        &signed_body[..]
                    }
                    None => body,
                }
            } else {
                body
            };
            let input = match kind & 0x0f {
                UDP => Input::FromClient { transport: Transport::Udp, from: client(), data },
                TCP => Input::FromClient { transport: Transport::Tcp, from: client(), data },
                PEER => Input::FromPeer { relay: RelayId(1 + u64::from(kind >> 4 & 3)), from: peer(), data },
                CLOSE => Input::ClientClosed { from: client() },
                TIME => {
                    now += Duration::from_secs(len as u64 * 20);
                    Input::Timeout
                }
                _ => continue,
            };
            server.handle_input(now, input);
            sent.extend(drain(&mut server, now));
        }
        sent
    }
}
