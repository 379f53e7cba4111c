use super::attr::{atype as at, method};
use super::*;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// RFC 5769 §2.1 sample request (short-term credential, key = password).
const RFC5769_REQUEST: &str = "
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf";

#[test]
fn rfc5769_sample_request() {
    let buf = unhex(RFC5769_REQUEST);
    let Frame::Stun(msg) = decode(&buf).unwrap() else { panic!("not stun") };
    assert_eq!(msg.method, method::BINDING);
    assert_eq!(msg.class, Class::Request);
    assert!(!msg.legacy);
    assert!(msg.has_fingerprint);
    assert_eq!(msg.get(at::USERNAME), Some(&b"evtj:h6vY"[..]));
    assert_eq!(msg.integrity_kind(), Some(IntegrityKind::Sha1));
    assert!(msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
    assert!(!msg.verify_integrity(b"wrong"));
    // PRIORITY is known; ICE-CONTROLLED is comprehension-optional.
    assert!(msg.unknown_required(at::KNOWN_REQUIRED).is_empty());

    let mut bad = buf.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(decode(&bad).unwrap_err(), DecodeError::BadFingerprint);
}

/// RFC 5769 §2.2 sample IPv4 response.
const RFC5769_RESPONSE_V4: &str = "
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96";

#[test]
fn rfc5769_sample_ipv4_response() {
    let buf = unhex(RFC5769_RESPONSE_V4);
    let Frame::Stun(msg) = decode(&buf).unwrap() else { panic!("not stun") };
    assert_eq!((msg.method, msg.class), (method::BINDING, Class::Success));
    assert!(msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt"));
    let mapped = attr::decode_address(msg.get(at::XOR_MAPPED_ADDRESS).unwrap(), Some(&msg.transaction_id));
    assert_eq!(mapped, Some("192.0.2.1:32853".parse().unwrap()));
}

#[test]
fn build_then_parse_with_both_integrities() {
    let tid = [9u8; 12];
    let peer: std::net::SocketAddr = "203.0.113.5:4000".parse().unwrap();
    for kind in [IntegrityKind::Sha1, IntegrityKind::Sha256] {
        let bytes = MessageBuilder::new(method::CREATE_PERMISSION, Class::Request, tid)
            .attr(at::USERNAME, b"alice")
            .xor_addr(at::XOR_PEER_ADDRESS, peer)
            .integrity(kind, b"key")
            .fingerprint()
            .build();
        assert_eq!(frame_len(&bytes).unwrap(), Some(bytes.len()));
        let Frame::Stun(msg) = decode(&bytes).unwrap() else { panic!() };
        assert_eq!(msg.integrity_kind(), Some(kind));
        assert!(msg.verify_integrity(b"key"));
        assert!(!msg.verify_integrity(b"other"));
        let addr = attr::decode_address(msg.get(at::XOR_PEER_ADDRESS).unwrap(), Some(&tid));
        assert_eq!(addr, Some(peer));
    }
}

#[test]
fn attributes_after_integrity_are_ignored() {
    let bytes = MessageBuilder::new(method::BINDING, Class::Request, [1; 12])
        .integrity(IntegrityKind::Sha1, b"k")
        .attr(at::USERNAME, b"late")
        .build();
    let Frame::Stun(msg) = decode(&bytes).unwrap() else { panic!() };
    assert!(msg.get(at::USERNAME).is_none());
    assert!(msg.verify_integrity(b"k"));
}

#[test]
fn unknown_comprehension_required_listed() {
    let bytes = MessageBuilder::new(method::ALLOCATE, Class::Request, [1; 12])
        .attr(0x7777, b"x")
        .attr(0x7777, b"y")
        .attr(0x9999, b"optional")
        .attr(at::LIFETIME, &[0, 0, 0, 1])
        .build();
    let Frame::Stun(msg) = decode(&bytes).unwrap() else { panic!() };
    assert_eq!(msg.unknown_required(at::KNOWN_REQUIRED), vec![0x7777]);
}

#[test]
fn bad_input_is_rejected() {
    let good = MessageBuilder::new(method::BINDING, Class::Request, [1; 12])
        .attr(at::SOFTWARE, b"abc")
        .fingerprint()
        .build();
    for n in 0..good.len() {
        assert!(decode(&good[..n]).is_err(), "prefix {n} accepted");
    }
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(decode(&trailing).unwrap_err(), DecodeError::BadHeader);
    // Attribute length running past the end.
    let mut overrun =
        MessageBuilder::new(method::BINDING, Class::Request, [1; 12]).attr(at::SOFTWARE, b"abcd").build();
    overrun[22..24].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(decode(&overrun).unwrap_err(), DecodeError::BadAttribute);
    // Length not a multiple of four.
    let mut odd = good.clone();
    odd[3] = 3;
    assert!(decode(&odd).is_err());
    // Attribute after FINGERPRINT.
    let after_fp = MessageBuilder::new(method::BINDING, Class::Request, [1; 12])
        .fingerprint()
        .attr(at::SOFTWARE, b"x")
        .build();
    assert!(decode(&after_fp).is_err());
    // Wrong-size integrity.
    let short_mi = MessageBuilder::new(method::BINDING, Class::Request, [1; 12])
        .attr(at::MESSAGE_INTEGRITY, &[0; 8])
        .build();
    assert_eq!(decode(&short_mi).unwrap_err(), DecodeError::BadAttribute);
    assert_eq!(decode(&[0xC0, 0, 0, 0]).unwrap_err(), DecodeError::NotStun);
    assert!(matches!(decode(&[0x7F, 0xFF, 0, 0]), Ok(Frame::ChannelData { channel: 0x7FFF, .. })));
}

#[test]
fn channel_data_framing() {
    let frame = [0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
    assert_eq!(frame_len(&frame).unwrap(), Some(12));
    assert_eq!(frame_len(&frame[..11]).unwrap(), None);
    assert_eq!(frame_len(&frame[..3]).unwrap(), None);
    let Frame::ChannelData { channel, data } = decode(&frame).unwrap() else { panic!() };
    assert_eq!(channel, 0x4001);
    assert_eq!(data, &[1, 2, 3, 4, 5]);
    // UDP ChannelData without padding.
    assert!(decode(&frame[..9]).is_ok());
    assert_eq!(decode(&frame[..8]).unwrap_err(), DecodeError::Truncated);
    assert_eq!(frame_len(&[0x80, 0, 0, 0]).unwrap_err(), DecodeError::NotStun);
}

#[test]
fn long_term_key_matches_rfc() {
    // MD5("user:realm:pass")
    let key = long_term_key("user", "realm", "pass");
    assert_eq!(key, crate::crypto::md5(b"user:realm:pass"));
}
