//! The message decoder and TCP framing must never panic, and what they accept must be
//! self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_turn::codec::{self, Frame, attr::atype};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(n)) = codec::frame_len(data) {
        assert!(n <= data.len());
        let _ = codec::decode(&data[..n]);
    }
    if let Ok(Frame::Stun(msg)) = codec::decode(data) {
        assert_eq!(msg.raw().len(), data.len());
        let _ = msg.unknown_required(atype::KNOWN_REQUIRED);
        let _ = msg.verify_integrity(b"key");
        for typ in [atype::XOR_PEER_ADDRESS, atype::XOR_MAPPED_ADDRESS] {
            if let Some(v) = msg.get(typ) {
                let _ = codec::attr::decode_address(v, Some(&msg.transaction_id));
            }
        }
    }
});
