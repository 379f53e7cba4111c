//! Relaying with simulated time: permissions and channels, their expiry, Data indications vs
//! ChannelData, TCP padding, bandwidth quota, reservations and TCP close.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::tests::{Client, Harness, Resp, addr, config};
use super::*;
use crate::codec::MessageBuilder;
use crate::codec::attr::{atype as at, code, method};

const PEER: &str = "203.0.113.5:7000";

fn setup(cfg: TurnConfig, transport: Transport) -> (Harness, Client, RelayId) {
    let mut h = Harness::new(cfg);
    let mut c = Client::new("198.51.100.7:5000", "alice", "wonderland");
    c.transport = transport;
    let r = c.allocate(&mut h);
    assert_eq!(r.code, None, "{r:?}");
    let id = *h.s.by_client.values().next().unwrap();
    (h, c, id)
}

fn send_indication(h: &mut Harness, c: &Client, peer: &str, data: &[u8]) -> Vec<Output> {
    let tid = h.tid();
    let msg = MessageBuilder::new(method::SEND, Class::Indication, tid)
        .xor_addr(at::XOR_PEER_ADDRESS, addr(peer))
        .attr(at::DATA, data)
        .build();
    h.input(Input::FromClient { transport: c.transport, from: c.addr, data: &msg })
}

fn to_peer(outs: &[Output]) -> Vec<(SocketAddr, Vec<u8>)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::SendToPeer { to, data, .. } => Some((*to, data.clone())),
            _ => None,
        })
        .collect()
}

fn to_client(outs: &[Output]) -> Vec<Vec<u8>> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Transmit { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn send_and_data_indications_need_a_permission_that_expires() {
    let (mut h, mut c, id) = setup(config(), Transport::Udp);
    assert!(to_peer(&send_indication(&mut h, &c, PEER, b"early")).is_empty(), "no permission yet");
    let r = c.call(&mut h, method::CREATE_PERMISSION, &[Client::peer_attr(PEER)]);
    assert_eq!(r.code, None);
    assert_eq!(to_peer(&send_indication(&mut h, &c, PEER, b"hello")), vec![(addr(PEER), b"hello".to_vec())]);
    // Ports are not part of a permission.
    assert_eq!(to_peer(&send_indication(&mut h, &c, "203.0.113.5:1", b"x")).len(), 1);

    let outs = h.input(Input::FromPeer { relay: id, from: addr(PEER), data: b"reply" });
    let [data] = &to_client(&outs)[..] else { panic!("{outs:?}") };
    let resp = Resp::parse(data);
    assert_eq!((resp.method, resp.class), (method::DATA, Class::Indication));
    assert_eq!(resp.xor_addr(at::XOR_PEER_ADDRESS), Some(addr(PEER)));
    assert_eq!(resp.attrs[&at::DATA], b"reply");
    // Another IP without permission cannot reach the client.
    assert!(h.input(Input::FromPeer { relay: id, from: addr("203.0.113.6:7000"), data: b"x" }).is_empty());

    // 300 s later the permission is gone both ways.
    h.advance(Duration::from_secs(301));
    assert!(to_peer(&send_indication(&mut h, &c, PEER, b"late")).is_empty());
    assert!(h.input(Input::FromPeer { relay: id, from: addr(PEER), data: b"late" }).is_empty());
    assert_eq!(h.metrics.packets_to_peer.load(Relaxed), 2);
    assert_eq!(h.metrics.packets_to_client.load(Relaxed), 1);
}

#[test]
fn channels_carry_channel_data_and_expire() {
    let (mut h, mut c, id) = setup(config(), Transport::Udp);
    let bind = |c: &mut Client, h: &mut Harness, n: u16, peer: &str| {
        c.call(
            h,
            method::CHANNEL_BIND,
            &[(at::CHANNEL_NUMBER, vec![(n >> 8) as u8, n as u8, 0, 0]), Client::peer_attr(peer)],
        )
    };
    assert_eq!(bind(&mut c, &mut h, 0x3FFF, PEER).code, Some(code::BAD_REQUEST));
    assert_eq!(bind(&mut c, &mut h, 0x4001, PEER).code, None);
    // Rebinding the same pair refreshes; a different channel for the peer, or another peer
    // on the channel, is refused.
    assert_eq!(bind(&mut c, &mut h, 0x4001, PEER).code, None);
    assert_eq!(bind(&mut c, &mut h, 0x4002, PEER).code, Some(code::BAD_REQUEST));
    assert_eq!(bind(&mut c, &mut h, 0x4001, "203.0.113.9:1").code, Some(code::BAD_REQUEST));

    let frame = [0x40, 0x01, 0x00, 0x03, b'a', b'b', b'c', 0];
    let outs = h.udp(c.addr, &frame);
    assert_eq!(to_peer(&outs), vec![(addr(PEER), b"abc".to_vec())]);
    // Unbound channel: dropped.
    assert!(h.udp(c.addr, &[0x40, 0x02, 0x00, 0x01, b'z']).is_empty());
    // From the peer: ChannelData, unpadded over UDP.
    let outs = h.input(Input::FromPeer { relay: id, from: addr(PEER), data: b"hello" });
    assert_eq!(to_client(&outs), vec![vec![0x40, 0x01, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o']]);
    // Same IP, other port: not the channel's peer, so a Data indication.
    let outs = h.input(Input::FromPeer { relay: id, from: addr("203.0.113.5:7001"), data: b"x" });
    assert_eq!(Resp::parse(&to_client(&outs)[0]).method, method::DATA);

    // The binding refreshed the permission; after 300 s the permission lapses (channel still
    // bound, but no traffic), refreshing the channel brings both back; after 600 s more the
    // channel is gone.
    h.advance(Duration::from_secs(301));
    assert!(to_peer(&h.udp(c.addr, &frame)).is_empty());
    assert_eq!(c.call(&mut h, method::REFRESH, &[]).code, None);
    assert_eq!(bind(&mut c, &mut h, 0x4001, PEER).code, None);
    assert_eq!(to_peer(&h.udp(c.addr, &frame)).len(), 1);
    assert_eq!(c.call(&mut h, method::CREATE_PERMISSION, &[Client::peer_attr(PEER)]).code, None);
    h.advance(Duration::from_secs(299));
    assert_eq!(c.call(&mut h, method::CREATE_PERMISSION, &[Client::peer_attr(PEER)]).code, None);
    assert_eq!(c.call(&mut h, method::REFRESH, &[]).code, None);
    h.advance(Duration::from_secs(302));
    assert!(to_peer(&h.udp(c.addr, &frame)).is_empty(), "channel expired after 600 s");
    // With a fresh permission the peer is now answered with Data indications.
    assert_eq!(c.call(&mut h, method::CREATE_PERMISSION, &[Client::peer_attr(PEER)]).code, None);
    let outs = h.input(Input::FromPeer { relay: id, from: addr(PEER), data: b"x" });
    assert_eq!(Resp::parse(&to_client(&outs)[0]).method, method::DATA);
}

#[test]
fn tcp_channel_data_is_padded_and_close_ends_allocation() {
    let (mut h, mut c, id) = setup(config(), Transport::Tcp);
    let r = c.call(
        &mut h,
        method::CHANNEL_BIND,
        &[(at::CHANNEL_NUMBER, vec![0x40, 0x07, 0, 0]), Client::peer_attr(PEER)],
    );
    assert_eq!(r.code, None);
    let outs = h.input(Input::FromPeer { relay: id, from: addr(PEER), data: b"hello" });
    let [Output::Transmit { transport: Transport::Tcp, data, .. }] = &outs[..] else { panic!("{outs:?}") };
    assert_eq!(data, &[0x40, 0x07, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0, 0, 0]);
    // A UDP client at the same address has no allocation.
    assert!(h.udp(c.addr, &[0x40, 0x07, 0x00, 0x01, b'z']).is_empty());
    let outs = h.input(Input::ClientClosed { from: c.addr });
    assert_eq!(outs, vec![Output::CloseRelay { relay: id }]);
    assert_eq!(h.s.allocation_count(), 0);
}

#[test]
fn bandwidth_quota_drops_excess() {
    let mut cfg = config();
    cfg.quotas.bandwidth_bytes_per_sec = 1000;
    let (mut h, mut c, id) = setup(cfg, Transport::Udp);
    assert_eq!(c.call(&mut h, method::CREATE_PERMISSION, &[Client::peer_attr(PEER)]).code, None);
    let big = vec![7u8; 600];
    assert_eq!(to_peer(&send_indication(&mut h, &c, PEER, &big)).len(), 1);
    assert!(to_peer(&send_indication(&mut h, &c, PEER, &big)).is_empty());
    // The other direction has its own bucket.
    assert_eq!(to_client(&h.input(Input::FromPeer { relay: id, from: addr(PEER), data: &big })).len(), 1);
    h.now += Duration::from_secs(1);
    assert_eq!(to_peer(&send_indication(&mut h, &c, PEER, &big)).len(), 1);
    assert_eq!(h.metrics.packets_dropped_bandwidth.load(Relaxed), 1);
}

#[test]
fn permission_and_channel_quotas() {
    let mut cfg = config();
    cfg.quotas.max_permissions_per_allocation = 2;
    cfg.quotas.max_channels_per_allocation = 1;
    let (mut h, mut c, _) = setup(cfg, Transport::Udp);
    let p = |s: &str| Client::peer_attr(s);
    assert_eq!(
        c.call(&mut h, method::CREATE_PERMISSION, &[p("203.0.113.1:1"), p("203.0.113.2:1")]).code,
        None
    );
    assert_eq!(
        c.call(&mut h, method::CREATE_PERMISSION, &[p("203.0.113.1:9")]).code,
        None,
        "refresh is fine"
    );
    assert_eq!(
        c.call(&mut h, method::CREATE_PERMISSION, &[p("203.0.113.3:1")]).code,
        Some(code::INSUFFICIENT_CAPACITY)
    );
    let cb = |n: u8, peer| vec![(at::CHANNEL_NUMBER, vec![0x40, n, 0, 0]), p(peer)];
    assert_eq!(c.call(&mut h, method::CHANNEL_BIND, &cb(1, "203.0.113.1:1")).code, None);
    assert_eq!(
        c.call(&mut h, method::CHANNEL_BIND, &cb(2, "203.0.113.2:1")).code,
        Some(code::INSUFFICIENT_CAPACITY)
    );
}

#[test]
fn even_port_reservation_token() {
    let mut h = Harness::new(config());
    let mut rtp = Client::new("198.51.100.7:5000", "alice", "wonderland");
    let r = rtp.call(
        &mut h,
        method::ALLOCATE,
        &[(at::REQUESTED_TRANSPORT, vec![17, 0, 0, 0]), (at::EVEN_PORT, vec![0x80])],
    );
    assert_eq!(r.code, None);
    let relayed = r.xor_addr(at::XOR_RELAYED_ADDRESS).unwrap();
    let Ok(crate::codec::Frame::Stun(m)) = crate::codec::decode(&r.raw) else { panic!() };
    let token = m.get(at::RESERVATION_TOKEN).expect("token").to_vec();
    let mut rtcp = Client::new("198.51.100.7:5001", "alice", "wonderland");
    let r = rtcp.call(
        &mut h,
        method::ALLOCATE,
        &[(at::REQUESTED_TRANSPORT, vec![17, 0, 0, 0]), (at::RESERVATION_TOKEN, token.clone())],
    );
    assert_eq!(r.code, None, "{r:?}");
    assert_eq!(r.xor_addr(at::XOR_RELAYED_ADDRESS).unwrap().port(), relayed.port() + 1);
    // A token works once; unknown tokens get 508.
    let mut again = Client::new("198.51.100.7:5002", "alice", "wonderland");
    let r = again.call(
        &mut h,
        method::ALLOCATE,
        &[(at::REQUESTED_TRANSPORT, vec![17, 0, 0, 0]), (at::RESERVATION_TOKEN, token)],
    );
    assert_eq!(r.code, Some(code::INSUFFICIENT_CAPACITY));

    // An unused reservation is released after 30 s.
    let mut other = Client::new("198.51.100.7:5003", "bob", "builder");
    let r = other.call(
        &mut h,
        method::ALLOCATE,
        &[(at::REQUESTED_TRANSPORT, vec![17, 0, 0, 0]), (at::EVEN_PORT, vec![0x80])],
    );
    assert_eq!(r.code, None);
    let outs = h.advance(Duration::from_secs(31));
    assert!(matches!(outs[..], [Output::CloseRelay { .. }]), "{outs:?}");
}
