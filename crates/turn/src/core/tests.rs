//! Core tests driven with simulated time: authentication, allocations, permissions, expiry,
//! the peer policy and bad input. Relaying is in `tests_relay.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::codec::attr::{atype as at, code, decode_address, method};
use crate::codec::{IntegrityKind, MessageBuilder, long_term_key};

pub(super) const REALM: &str = "test.realm";
pub(super) const UNIX0: u64 = 1_700_000_000;

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A server under test with simulated time.
pub(super) struct Harness {
    pub(super) s: TurnServer,
    pub(super) now: Instant,
    pub(super) metrics: Arc<Metrics>,
    tid: u64,
}

pub(super) fn config() -> TurnConfig {
    let mut users = HashMap::new();
    users.insert("alice".to_owned(), "wonderland".to_owned());
    users.insert("bob".to_owned(), "builder".to_owned());
    TurnConfig {
        realm: REALM.into(),
        static_users: users,
        auth_secret: Some("rest-secret".into()),
        relay_ip: Some("192.0.2.10".parse().unwrap()),
        ..TurnConfig::default()
    }
}

/// A decoded response, owned.
#[derive(Debug)]
pub(super) struct Resp {
    pub(super) method: u16,
    pub(super) class: Class,
    pub(super) code: Option<u16>,
    pub(super) attrs: HashMap<u16, Vec<u8>>,
    pub(super) tid: [u8; 12],
    pub(super) raw: Vec<u8>,
}

impl Resp {
    pub(super) fn parse(raw: &[u8]) -> Resp {
        let Ok(crate::codec::Frame::Stun(m)) = crate::codec::decode(raw) else { panic!("not STUN: {raw:?}") };
        assert!(m.has_fingerprint || m.method == method::DATA, "responses carry FINGERPRINT");
        let mut attrs = HashMap::new();
        for t in [
            at::XOR_MAPPED_ADDRESS,
            at::MAPPED_ADDRESS,
            at::XOR_RELAYED_ADDRESS,
            at::LIFETIME,
            at::REALM,
            at::NONCE,
            at::UNKNOWN_ATTRIBUTES,
            at::XOR_PEER_ADDRESS,
            at::DATA,
            at::ERROR_CODE,
        ] {
            if let Some(v) = m.get(t) {
                attrs.insert(t, v.to_vec());
            }
        }
        let code = m.get(at::ERROR_CODE).map(|v| u16::from(v[2]) * 100 + u16::from(v[3]));
        Resp { method: m.method, class: m.class, code, attrs, tid: m.transaction_id, raw: raw.to_vec() }
    }

    pub(super) fn xor_addr(&self, typ: u16) -> Option<SocketAddr> {
        decode_address(self.attrs.get(&typ)?, Some(&self.tid))
    }

    pub(super) fn verifies(&self, key: &[u8]) -> bool {
        let Ok(crate::codec::Frame::Stun(m)) = crate::codec::decode(&self.raw) else {
            return false;
        };
        m.verify_integrity(key)
    }
}

impl Harness {
    pub(super) fn new(cfg: TurnConfig) -> Self {
        cfg.validate().unwrap();
        let metrics = Arc::new(Metrics::default());
        let now = Instant::now();
        let s = TurnServer::new(&cfg, Arc::clone(&metrics), now, UNIX0).unwrap();
        Harness { s, now, metrics, tid: 0 }
    }

    pub(super) fn tid(&mut self) -> [u8; 12] {
        self.tid += 1;
        let mut t = [0u8; 12];
        t[4..].copy_from_slice(&self.tid.to_be_bytes());
        t
    }

    pub(super) fn drain(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        loop {
            match self.s.poll_output() {
                Output::Timeout(t) => {
                    assert!(t > self.now, "timeout in the past");
                    return out;
                }
                o => out.push(o),
            }
        }
    }

    pub(super) fn input(&mut self, input: Input<'_>) -> Vec<Output> {
        self.s.handle_input(self.now, input);
        self.drain()
    }

    pub(super) fn udp(&mut self, from: SocketAddr, data: &[u8]) -> Vec<Output> {
        self.input(Input::FromClient { transport: Transport::Udp, from, data })
    }

    pub(super) fn advance(&mut self, d: Duration) -> Vec<Output> {
        self.now += d;
        self.input(Input::Timeout)
    }

    /// Sends and expects exactly one response to `from`.
    pub(super) fn request(&mut self, transport: Transport, from: SocketAddr, data: &[u8]) -> Resp {
        let outs = self.input(Input::FromClient { transport, from, data });
        let resps: Vec<Resp> = outs
            .iter()
            .filter_map(|o| match o {
                Output::Transmit { to, data, transport: t }
                    if *to == crate::peer_filter::canonical(from) && *t == transport =>
                {
                    Some(Resp::parse(data))
                }
                _ => None,
            })
            .collect();
        assert_eq!(resps.len(), 1, "expected one response, got {outs:?}");
        resps.into_iter().next().unwrap()
    }
}

/// A TURN client that learns the nonce from a 401 and signs its requests.
pub(super) struct Client {
    pub(super) addr: SocketAddr,
    pub(super) transport: Transport,
    pub(super) user: String,
    pub(super) pass: String,
    pub(super) nonce: Option<Vec<u8>>,
    pub(super) kind: IntegrityKind,
}

impl Client {
    pub(super) fn new(addr: &str, user: &str, pass: &str) -> Self {
        Client {
            addr: addr.parse().unwrap(),
            transport: Transport::Udp,
            user: user.into(),
            pass: pass.into(),
            nonce: None,
            kind: IntegrityKind::Sha1,
        }
    }

    pub(super) fn key(&self) -> [u8; 16] {
        long_term_key(&self.user, REALM, &self.pass)
    }

    pub(super) fn build(&self, method: u16, tid: [u8; 12], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = MessageBuilder::new(method, Class::Request, tid);
        for (t, v) in attrs {
            b = b.attr(*t, v);
        }
        if let Some(n) = &self.nonce {
            b = b
                .attr(at::USERNAME, self.user.as_bytes())
                .attr(at::REALM, REALM.as_bytes())
                .attr(at::NONCE, n)
                .integrity(self.kind, &self.key());
        }
        b.fingerprint().build()
    }

    /// Sends `method` with `attrs`, retrying once after a 401/438 challenge.
    pub(super) fn call(&mut self, h: &mut Harness, method: u16, attrs: &[(u16, Vec<u8>)]) -> Resp {
        for _ in 0..2 {
            let tid = h.tid();
            let msg = self.build(method, tid, attrs);
            let outs = h.input(Input::FromClient { transport: self.transport, from: self.addr, data: &msg });
            let mut resp = None;
            for o in outs {
                match o {
                    Output::Transmit { to, data, .. } if to == self.addr => resp = Some(Resp::parse(&data)),
                    Output::BindRelay { relay, reserve, .. } => {
                        if let Some(rid) = reserve {
                            let local =
                                SocketAddr::new("192.0.2.10".parse().unwrap(), 50_001 + 2 * relay.0 as u16);
                            assert!(h.input(Input::RelayBound { relay: rid, local: Some(local) }).is_empty());
                        }
                        let outs = h.input(Input::RelayBound {
                            relay,
                            local: Some(SocketAddr::new(
                                "192.0.2.10".parse().unwrap(),
                                50_000 + 2 * relay.0 as u16,
                            )),
                        });
                        for o in outs {
                            if let Output::Transmit { data, .. } = o {
                                resp = Some(Resp::parse(&data));
                            }
                        }
                    }
                    _ => {}
                }
            }
            let resp = resp.expect("a response");
            assert_eq!(resp.tid, tid);
            if matches!(resp.code, Some(code::UNAUTHENTICATED | code::STALE_NONCE))
                && resp.attrs.contains_key(&at::NONCE)
            {
                let had = self.nonce.replace(resp.attrs[&at::NONCE].clone());
                if had.is_none() || resp.code == Some(code::STALE_NONCE) {
                    continue;
                }
            }
            return resp;
        }
        panic!("challenge loop")
    }

    pub(super) fn allocate(&mut self, h: &mut Harness) -> Resp {
        self.call(h, method::ALLOCATE, &[(at::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])])
    }

    pub(super) fn peer_attr(tid_free_peer: &str) -> (u16, Vec<u8>) {
        // XOR-PEER-ADDRESS depends on the transaction ID only for IPv6; tests use the helper
        // below for IPv6 peers.
        let a: SocketAddr = tid_free_peer.parse().unwrap();
        (at::XOR_PEER_ADDRESS, crate::codec::attr::encode_address(a, Some(&[0; 12])))
    }
}

fn success(r: &Resp, m: u16) {
    assert_eq!((r.method, r.class, r.code), (m, Class::Success, None), "{r:?}");
}

#[test]
fn binding_returns_reflexive_address() {
    let mut h = Harness::new(config());
    let from = addr("198.51.100.7:5000");
    let tid = h.tid();
    let req = MessageBuilder::new(method::BINDING, Class::Request, tid).fingerprint().build();
    let r = h.request(Transport::Udp, from, &req);
    success(&r, method::BINDING);
    assert_eq!(r.xor_addr(at::XOR_MAPPED_ADDRESS), Some(from));
    assert_eq!(decode_address(&r.attrs[&at::MAPPED_ADDRESS], None), Some(from));
    assert_eq!(h.metrics.requests(method::BINDING), (1, 0));

    // An IPv6 client, and an IPv4-mapped one reported as IPv4.
    let v6 = addr("[2001:db8::5]:7000");
    let r = h.request(Transport::Udp, v6, &req);
    assert_eq!(r.xor_addr(at::XOR_MAPPED_ADDRESS), Some(v6));
    let mapped = addr("[::ffff:198.51.100.8]:7000");
    let r = h.request(Transport::Udp, mapped, &req);
    assert_eq!(r.xor_addr(at::XOR_MAPPED_ADDRESS), Some(addr("198.51.100.8:7000")));
    // Binding indications are keep-alives: no answer.
    let ind = MessageBuilder::new(method::BINDING, Class::Indication, tid).build();
    assert!(h.udp(from, &ind).is_empty());
}

#[test]
fn legacy_rfc3489_binding() {
    let mut h = Harness::new(config());
    let from = addr("198.51.100.7:5000");
    let mut req = vec![0x00, 0x01, 0x00, 0x00];
    req.extend_from_slice(&[0xAB; 16]);
    let outs = h.udp(from, &req);
    let [Output::Transmit { data, .. }] = &outs[..] else { panic!("{outs:?}") };
    assert_eq!(&data[..2], &[0x01, 0x01]);
    assert_eq!(&data[4..20], &[0xAB; 16]);
    assert_eq!(decode_address(&data[24..32], None), Some(from));
}

#[test]
fn binding_with_integrity_is_checked_and_signed() {
    let mut h = Harness::new(config());
    for kind in [IntegrityKind::Sha1, IntegrityKind::Sha256] {
        let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
        c.kind = kind;
        c.nonce = Some(b"bogus-nonce".to_vec());
        let r = c.call(&mut h, method::BINDING, &[]);
        success(&r, method::BINDING);
        assert!(r.verifies(&c.key()));
        c.pass = "wrong".into();
        let r = c.call(&mut h, method::BINDING, &[]);
        assert_eq!(r.code, Some(code::UNAUTHENTICATED));
    }
}

#[test]
fn allocate_requires_valid_credentials() {
    let mut h = Harness::new(config());
    let from = addr("198.51.100.7:5000");
    let tid = h.tid();
    let req = MessageBuilder::new(method::ALLOCATE, Class::Request, tid)
        .attr(at::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .fingerprint()
        .build();
    let r = h.request(Transport::Udp, from, &req);
    assert_eq!(r.code, Some(code::UNAUTHENTICATED));
    assert_eq!(r.attrs[&at::REALM], REALM.as_bytes());
    assert!(r.attrs.contains_key(&at::NONCE));

    let mut wrong = Client::new("198.51.100.7:5000", "alice", "not-it");
    assert_eq!(wrong.allocate(&mut h).code, Some(code::UNAUTHENTICATED));
    let mut unknown = Client::new("198.51.100.7:5000", "mallory", "x");
    assert_eq!(unknown.allocate(&mut h).code, Some(code::UNAUTHENTICATED));
    assert_eq!(h.metrics.auth_failures.load(Relaxed), 2);
    assert_eq!(h.s.allocation_count(), 0);

    // MESSAGE-INTEGRITY without NONCE/REALM is a bad request.
    let tid = h.tid();
    let req = MessageBuilder::new(method::ALLOCATE, Class::Request, tid)
        .attr(at::USERNAME, b"alice")
        .integrity(IntegrityKind::Sha1, &long_term_key("alice", REALM, "wonderland"))
        .build();
    assert_eq!(h.request(Transport::Udp, from, &req).code, Some(code::BAD_REQUEST));
}

#[test]
fn allocate_succeeds_and_is_signed() {
    let mut h = Harness::new(config());
    for (i, kind) in [IntegrityKind::Sha1, IntegrityKind::Sha256].into_iter().enumerate() {
        let mut c = Client::new(&format!("198.51.100.7:{}", 5000 + i), "alice", "wonderland");
        c.kind = kind;
        let r = c.allocate(&mut h);
        success(&r, method::ALLOCATE);
        assert!(r.verifies(&c.key()), "response signed with the user's key");
        let relayed = r.xor_addr(at::XOR_RELAYED_ADDRESS).unwrap();
        assert_eq!(relayed.ip(), "192.0.2.10".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(r.xor_addr(at::XOR_MAPPED_ADDRESS), Some(c.addr));
        assert_eq!(r.attrs[&at::LIFETIME], 600u32.to_be_bytes());
    }
    assert_eq!(h.metrics.allocations_active.load(Relaxed), 2);

    // A retransmission gets the same answer; a new Allocate on the same 5-tuple gets 437.
    let mut c = Client::new("198.51.100.9:1", "bob", "builder");
    let first = c.allocate(&mut h);
    let tid = first.tid;
    let again = c.build(method::ALLOCATE, tid, &[(at::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])]);
    let r = h.request(Transport::Udp, c.addr, &again);
    assert_eq!(r.raw, first.raw);
    assert_eq!(c.allocate(&mut h).code, Some(code::ALLOCATION_MISMATCH));
}

#[test]
fn external_ip_is_advertised() {
    let mut cfg = config();
    cfg.external_ip = Some("203.0.113.77".parse().unwrap());
    let mut h = Harness::new(cfg);
    let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
    let r = c.allocate(&mut h);
    assert_eq!(
        r.xor_addr(at::XOR_RELAYED_ADDRESS).unwrap().ip(),
        "203.0.113.77".parse::<std::net::IpAddr>().unwrap()
    );
}

#[test]
fn allocations_per_ip_are_bounded_whatever_the_user() {
    let mut cfg = config();
    cfg.quotas.max_allocations_per_ip = 2;
    let mut h = Harness::new(cfg);
    for (port, user, pass) in [(1, "alice", "wonderland"), (2, "bob", "builder")] {
        let mut c = Client::new(&format!("198.51.100.7:{port}"), user, pass);
        success(&c.allocate(&mut h), method::ALLOCATE);
    }
    let mut third = Client::new("198.51.100.7:3", "bob", "builder");
    assert_eq!(third.allocate(&mut h).code, Some(code::ALLOCATION_QUOTA_REACHED), "486 at the third");
    let mut elsewhere = Client::new("198.51.100.8:3", "bob", "builder");
    success(&elsewhere.allocate(&mut h), method::ALLOCATE);
}

#[test]
fn allocate_checks_transport_family_and_quotas() {
    let mut cfg = config();
    cfg.quotas.max_allocations_per_user = 2;
    cfg.quotas.max_allocations = 3;
    let mut h = Harness::new(cfg);
    let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
    let r = c.call(&mut h, method::ALLOCATE, &[(at::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])]);
    assert_eq!(r.code, Some(code::UNSUPPORTED_TRANSPORT));
    assert!(r.verifies(&c.key()), "errors after authentication are signed");
    assert_eq!(c.call(&mut h, method::ALLOCATE, &[]).code, Some(code::BAD_REQUEST));
    let r = c.call(
        &mut h,
        method::ALLOCATE,
        &[(at::REQUESTED_TRANSPORT, vec![17, 0, 0, 0]), (at::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])],
    );
    assert_eq!(r.code, Some(code::ADDRESS_FAMILY_NOT_SUPPORTED));
    let r = c.call(
        &mut h,
        method::ALLOCATE,
        &[(at::REQUESTED_TRANSPORT, vec![17, 0, 0, 0]), (at::RESERVATION_TOKEN, vec![0; 8])],
    );
    assert_eq!(r.code, Some(code::INSUFFICIENT_CAPACITY));

    for port in [1, 2] {
        let mut c = Client::new(&format!("198.51.100.7:{port}"), "alice", "wonderland");
        success(&c.allocate(&mut h), method::ALLOCATE);
    }
    let mut third = Client::new("198.51.100.7:3", "alice", "wonderland");
    assert_eq!(third.allocate(&mut h).code, Some(code::ALLOCATION_QUOTA_REACHED));
    let mut bob = Client::new("198.51.100.7:4", "bob", "builder");
    success(&bob.allocate(&mut h), method::ALLOCATE);
    let mut bob2 = Client::new("198.51.100.7:5", "bob", "builder");
    assert_eq!(bob2.allocate(&mut h).code, Some(code::INSUFFICIENT_CAPACITY));
}

#[test]
fn time_limited_credentials() {
    let mut h = Harness::new(config());
    let (user, pass) = crate::make_credential("rest-secret", "carol", Duration::from_secs(60), UNIX0);
    let mut c = Client::new("198.51.100.7:5000", &user, &pass);
    success(&c.allocate(&mut h), method::ALLOCATE);
    // A plain EXPIRY username works too.
    let (user, pass) = crate::make_credential("rest-secret", "", Duration::from_secs(60), UNIX0);
    let mut plain = Client::new("198.51.100.7:5001", &user, &pass);
    success(&plain.allocate(&mut h), method::ALLOCATE);
    // Wrong secret.
    let (user, pass) = crate::make_credential("other-secret", "carol", Duration::from_secs(60), UNIX0);
    let mut forged = Client::new("198.51.100.7:5002", &user, &pass);
    assert_eq!(forged.allocate(&mut h).code, Some(code::UNAUTHENTICATED));
    // Expired: 61 s later the same credential is refused (with a fresh nonce first).
    h.advance(Duration::from_secs(61));
    let r = c.call(&mut h, method::REFRESH, &[]);
    assert_eq!(r.code, Some(code::UNAUTHENTICATED));
}

#[test]
fn stale_nonce_gets_438_then_works() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
    success(&c.allocate(&mut h), method::ALLOCATE);
    h.advance(Duration::from_secs(300));
    success(&c.call(&mut h, method::REFRESH, &[]), method::REFRESH);
    h.advance(Duration::from_secs(301));
    let old = c.nonce.clone();
    let tid = h.tid();
    let refresh = c.build(method::REFRESH, tid, &[]);
    let r = h.request(Transport::Udp, c.addr, &refresh);
    assert_eq!(r.code, Some(code::STALE_NONCE));
    assert_ne!(r.attrs.get(&at::NONCE), old.as_ref());
    success(&c.call(&mut h, method::REFRESH, &[]), method::REFRESH);
}

#[test]
fn allocation_expires_and_refresh_extends_or_deletes() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
    success(&c.allocate(&mut h), method::ALLOCATE);
    let outs = h.advance(Duration::from_secs(500));
    assert!(outs.is_empty());
    let r = c.call(&mut h, method::REFRESH, &[(at::LIFETIME, 1200u32.to_be_bytes().to_vec())]);
    success(&r, method::REFRESH);
    assert_eq!(r.attrs[&at::LIFETIME], 1200u32.to_be_bytes());
    // Past the first expiry, still alive.
    assert!(h.advance(Duration::from_secs(200)).is_empty());
    assert_eq!(h.s.allocation_count(), 1);
    // Then it expires.
    let outs = h.advance(Duration::from_secs(1001));
    assert!(matches!(outs[..], [Output::CloseRelay { .. }]), "{outs:?}");
    assert_eq!(h.s.allocation_count(), 0);
    assert_eq!(h.metrics.allocations_active.load(Relaxed), 0);
    assert_eq!(c.call(&mut h, method::REFRESH, &[]).code, Some(code::ALLOCATION_MISMATCH));

    // Lifetime above the maximum is capped; LIFETIME 0 deletes at once.
    let r = c.call(
        &mut h,
        method::ALLOCATE,
        &[(at::REQUESTED_TRANSPORT, vec![17, 0, 0, 0]), (at::LIFETIME, 99_999u32.to_be_bytes().to_vec())],
    );
    assert_eq!(r.attrs[&at::LIFETIME], 3600u32.to_be_bytes());
    let tid = h.tid();
    let del = c.build(method::REFRESH, tid, &[(at::LIFETIME, vec![0; 4])]);
    let outs = h.udp(c.addr, &del);
    assert!(outs.iter().any(|o| matches!(o, Output::CloseRelay { .. })));
    assert_eq!(h.s.allocation_count(), 0);
}

#[test]
fn other_user_on_same_five_tuple_gets_441() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
    success(&c.allocate(&mut h), method::ALLOCATE);
    let mut b = Client::new("198.51.100.7:5000", "bob", "builder");
    assert_eq!(b.call(&mut h, method::REFRESH, &[]).code, Some(code::WRONG_CREDENTIALS));
}

#[test]
fn denied_peers_get_403_and_no_traffic() {
    let mut h = Harness::new(config());
    let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
    success(&c.allocate(&mut h), method::ALLOCATE);
    for peer in ["127.0.0.1:9", "[::ffff:127.0.0.1]:9", "0.0.0.0:9", "10.0.0.1:9", "169.254.169.254:80"] {
        let r = c.call(&mut h, method::CREATE_PERMISSION, &[Client::peer_attr(peer)]);
        assert_eq!(r.code, Some(code::FORBIDDEN), "{peer}");
        let r = c.call(
            &mut h,
            method::CHANNEL_BIND,
            &[(at::CHANNEL_NUMBER, vec![0x40, 0, 0, 0]), Client::peer_attr(peer)],
        );
        assert_eq!(r.code, Some(code::FORBIDDEN), "{peer}");
        // A Send indication to it is dropped silently.
        let tid = h.tid();
        let a: SocketAddr = peer.parse().unwrap();
        let send = MessageBuilder::new(method::SEND, Class::Indication, tid)
            .xor_addr(at::XOR_PEER_ADDRESS, a)
            .attr(at::DATA, b"hello")
            .build();
        assert!(h.udp(c.addr, &send).is_empty(), "{peer}");
        // And the peer cannot reach the client.
        let outs = h.input(Input::FromPeer { relay: RelayId(1), from: a, data: b"x" });
        assert!(outs.is_empty());
    }
    // One denied peer among allowed ones refuses the whole request.
    let r = c.call(
        &mut h,
        method::CREATE_PERMISSION,
        &[Client::peer_attr("203.0.113.1:1"), Client::peer_attr("10.1.1.1:1")],
    );
    assert_eq!(r.code, Some(code::FORBIDDEN));
    let allowed_outs =
        h.input(Input::FromPeer { relay: RelayId(1), from: addr("203.0.113.1:1"), data: b"x" });
    assert!(allowed_outs.is_empty(), "no permission was installed");
    assert!(h.metrics.peers_denied.load(Relaxed) >= 11);
}

#[test]
fn allow_loopback_peers_flag() {
    let mut cfg = config();
    cfg.allow_loopback_peers = true;
    let mut h = Harness::new(cfg);
    let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
    success(&c.allocate(&mut h), method::ALLOCATE);
    success(
        &c.call(&mut h, method::CREATE_PERMISSION, &[Client::peer_attr("127.0.0.1:9")]),
        method::CREATE_PERMISSION,
    );
    success(
        &c.call(&mut h, method::CREATE_PERMISSION, &[Client::peer_attr("[::ffff:127.0.0.1]:9")]),
        method::CREATE_PERMISSION,
    );
    assert_eq!(
        c.call(&mut h, method::CREATE_PERMISSION, &[Client::peer_attr("10.0.0.1:9")]).code,
        Some(code::FORBIDDEN)
    );
}

#[test]
fn bad_input_is_answered_or_dropped() {
    let mut h = Harness::new(config());
    let from = addr("198.51.100.7:5000");
    // Truncated and oversized datagrams are dropped.
    let tid = h.tid();
    let ok = MessageBuilder::new(method::BINDING, Class::Request, tid).attr(at::SOFTWARE, b"x").build();
    for n in 0..ok.len() {
        assert!(h.udp(from, &ok[..n]).is_empty());
    }
    assert!(h.udp(from, &vec![0u8; 70_000]).is_empty());
    // A sound header with a broken attribute gets 400.
    let mut broken = ok.clone();
    broken[22..24].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(h.request(Transport::Udp, from, &broken).code, Some(code::BAD_REQUEST));
    // Unknown comprehension-required attribute → 420 listing it; optional ones are fine.
    let tid = h.tid();
    let req = MessageBuilder::new(method::ALLOCATE, Class::Request, tid)
        .attr(0x0777, b"?")
        .attr(0xC001, b"optional")
        .attr(at::USERHASH, &[0; 32])
        .fingerprint()
        .build();
    let r = h.request(Transport::Udp, from, &req);
    assert_eq!(r.code, Some(code::UNKNOWN_ATTRIBUTE));
    assert_eq!(r.attrs[&at::UNKNOWN_ATTRIBUTES], vec![0x07, 0x77, 0x00, 0x1E]);
    // Wrong integrity → 401.
    let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
    success(&c.allocate(&mut h), method::ALLOCATE);
    let tid = h.tid();
    let mut refresh = MessageBuilder::new(method::REFRESH, Class::Request, tid)
        .attr(at::USERNAME, b"alice")
        .attr(at::REALM, REALM.as_bytes())
        .attr(at::NONCE, c.nonce.as_ref().unwrap())
        .integrity(IntegrityKind::Sha1, &c.key())
        .build();
    let n = refresh.len();
    refresh[n - 1] ^= 0xFF; // corrupt the HMAC
    assert_eq!(h.request(Transport::Udp, from, &refresh).code, Some(code::UNAUTHENTICATED));
    // Unknown method → 400; success responses from clients are ignored.
    let tid = h.tid();
    let req = MessageBuilder::new(0x0FF, Class::Request, tid).build();
    assert_eq!(h.request(Transport::Udp, from, &req).code, Some(code::BAD_REQUEST));
    let resp = MessageBuilder::new(method::ALLOCATE, Class::Success, tid).build();
    assert!(h.udp(from, &resp).is_empty());
    assert!(h.metrics.malformed.load(Relaxed) > 0);
}

/// A deterministic xorshift generator for the no-panic test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_and_mutated_input_never_panics() {
    let mut cfg = config();
    cfg.allow_loopback_peers = true;
    let mut h = Harness::new(cfg);
    let mut c = Client::new("127.0.0.1:5000", "alice", "wonderland");
    success(&c.allocate(&mut h), method::ALLOCATE);
    let seeds: Vec<Vec<u8>> = {
        let tid = h.tid();
        vec![
            c.build(method::CREATE_PERMISSION, tid, &[Client::peer_attr("127.0.0.1:9")]),
            c.build(
                method::CHANNEL_BIND,
                tid,
                &[(at::CHANNEL_NUMBER, vec![0x40, 1, 0, 0]), Client::peer_attr("127.0.0.1:9")],
            ),
            c.build(method::REFRESH, tid, &[(at::LIFETIME, vec![0, 0, 2, 0])]),
            c.build(
                method::ALLOCATE,
                tid,
                &[(at::REQUESTED_TRANSPORT, vec![17, 0, 0, 0]), (at::EVEN_PORT, vec![0x80])],
            ),
            MessageBuilder::new(method::SEND, Class::Indication, tid)
                .xor_addr(at::XOR_PEER_ADDRESS, addr("127.0.0.1:9"))
                .attr(at::DATA, b"data")
                .build(),
            MessageBuilder::new(method::BINDING, Class::Request, tid).fingerprint().build(),
            vec![0x40, 0x01, 0x00, 0x04, 1, 2, 3, 4],
        ]
    };
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for i in 0..5000 {
        let data: Vec<u8> = if i % 3 == 0 {
            let len = rng.below(120);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut d = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                match rng.below(4) {
                    0 if !d.is_empty() => {
                        let p = rng.below(d.len());
                        d[p] = rng.next() as u8;
                    }
                    1 if !d.is_empty() => {
                        let n = rng.below(d.len());
                        d.truncate(n);
                    }
                    2 => d.extend((0..rng.below(12)).map(|_| rng.next() as u8)),
                    _ if d.len() > 4 => {
                        // Keep the header length consistent so the body gets parsed.
                        let body = (d.len() - 20.min(d.len())) as u16;
                        if d.len() >= 20 {
                            d[2..4].copy_from_slice(&body.to_be_bytes());
                        }
                    }
                    _ => {}
                }
            }
            d
        };
        let from = if rng.below(2) == 0 { c.addr } else { addr("127.0.0.1:6000") };
        let transport = if rng.below(4) == 0 { Transport::Tcp } else { Transport::Udp };
        let _ = h.input(Input::FromClient { transport, from, data: &data });
        let _ = h.input(Input::FromPeer {
            relay: RelayId(rng.below(3) as u64),
            from: addr("127.0.0.1:9"),
            data: &data,
        });
        if i % 500 == 0 {
            h.advance(Duration::from_secs(rng.below(400) as u64));
        }
    }
}
