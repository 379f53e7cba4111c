//! STUN/TURN numbers: methods, classes, attribute types, error codes, and the (XOR-)address
//! attribute format (RFC 8489 §14.1–14.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The magic cookie of RFC 5389 and later.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;

/// Message class (the two C bits of the message type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A request, answered by a success or error response.
    Request,
    /// An indication; never answered.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

impl Class {
    pub(crate) fn bits(self) -> u16 {
        match self {
            Self::Request => 0x0000,
            Self::Indication => 0x0010,
            Self::Success => 0x0100,
            Self::Error => 0x0110,
        }
    }
}

/// Methods (RFC 8489 Binding, RFC 8656 TURN).
pub mod method {
    /// Binding.
    pub const BINDING: u16 = 0x001;
    /// Allocate.
    pub const ALLOCATE: u16 = 0x003;
    /// Refresh.
    pub const REFRESH: u16 = 0x004;
    /// Send (indication).
    pub const SEND: u16 = 0x006;
    /// Data (indication).
    pub const DATA: u16 = 0x007;
    /// CreatePermission.
    pub const CREATE_PERMISSION: u16 = 0x008;
    /// ChannelBind.
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// Splits a message type into (method, class).
pub fn split_type(typ: u16) -> (u16, Class) {
    let method = (typ & 0x000F) | ((typ & 0x00E0) >> 1) | ((typ & 0x3E00) >> 2);
    let class = match typ & 0x0110 {
        0x0000 => Class::Request,
        0x0010 => Class::Indication,
        0x0100 => Class::Success,
        _ => Class::Error,
    };
    (method, class)
}

/// Joins a method and class into a message type.
pub fn join_type(method: u16, class: Class) -> u16 {
    (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | class.bits()
}

/// Attribute types.
pub mod atype {
    /// MAPPED-ADDRESS (RFC 3489 clients).
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// CHANNEL-NUMBER.
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME.
    pub const LIFETIME: u16 = 0x000D;
    /// BANDWIDTH (draft TURN, sent by some clients; ignored).
    pub const BANDWIDTH: u16 = 0x0010;
    /// XOR-PEER-ADDRESS.
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA.
    pub const DATA: u16 = 0x0013;
    /// REALM.
    pub const REALM: u16 = 0x0014;
    /// NONCE.
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS.
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-ADDRESS-FAMILY.
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    /// EVEN-PORT.
    pub const EVEN_PORT: u16 = 0x0018;
    /// REQUESTED-TRANSPORT.
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// DONT-FRAGMENT.
    pub const DONT_FRAGMENT: u16 = 0x001A;
    /// MESSAGE-INTEGRITY-SHA256.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// PASSWORD-ALGORITHM.
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    /// USERHASH (not supported: answered with 420).
    pub const USERHASH: u16 = 0x001E;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RESERVATION-TOKEN.
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    /// PRIORITY (ICE).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (ICE).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// ALTERNATE-SERVER.
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED.
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING.
    pub const ICE_CONTROLLING: u16 = 0x802A;
    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656; accepted, only one family is allocated).
    pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
    /// PASSWORD-ALGORITHMS.
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    /// ALTERNATE-DOMAIN.
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;

    /// Whether an agent that does not know `typ` must reject the message (RFC 8489 §14).
    pub fn comprehension_required(typ: u16) -> bool {
        typ < 0x8000
    }

    /// Comprehension-required attributes this server understands (or deliberately accepts
    /// and ignores). Anything else below 0x8000 in a request is answered with 420.
    pub const KNOWN_REQUIRED: &[u16] = &[
        MAPPED_ADDRESS,
        USERNAME,
        MESSAGE_INTEGRITY,
        ERROR_CODE,
        UNKNOWN_ATTRIBUTES,
        CHANNEL_NUMBER,
        LIFETIME,
        BANDWIDTH,
        XOR_PEER_ADDRESS,
        DATA,
        REALM,
        NONCE,
        XOR_RELAYED_ADDRESS,
        REQUESTED_ADDRESS_FAMILY,
        EVEN_PORT,
        REQUESTED_TRANSPORT,
        DONT_FRAGMENT,
        MESSAGE_INTEGRITY_SHA256,
        PASSWORD_ALGORITHM,
        XOR_MAPPED_ADDRESS,
        RESERVATION_TOKEN,
        PRIORITY,
        USE_CANDIDATE,
    ];
}

/// Error codes this server sends.
pub mod code {
    /// 400 Bad Request.
    pub const BAD_REQUEST: u16 = 400;
    /// 401 Unauthenticated.
    pub const UNAUTHENTICATED: u16 = 401;
    /// 403 Forbidden.
    pub const FORBIDDEN: u16 = 403;
    /// 420 Unknown Attribute.
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    /// 437 Allocation Mismatch.
    pub const ALLOCATION_MISMATCH: u16 = 437;
    /// 438 Stale Nonce.
    pub const STALE_NONCE: u16 = 438;
    /// 440 Address Family not Supported.
    pub const ADDRESS_FAMILY_NOT_SUPPORTED: u16 = 440;
    /// 441 Wrong Credentials.
    pub const WRONG_CREDENTIALS: u16 = 441;
    /// 442 Unsupported Transport Protocol.
    pub const UNSUPPORTED_TRANSPORT: u16 = 442;
    /// 443 Peer Address Family Mismatch.
    pub const PEER_ADDRESS_FAMILY_MISMATCH: u16 = 443;
    /// 486 Allocation Quota Reached.
    pub const ALLOCATION_QUOTA_REACHED: u16 = 486;
    /// 500 Server Error.
    pub const SERVER_ERROR: u16 = 500;
    /// 508 Insufficient Capacity.
    pub const INSUFFICIENT_CAPACITY: u16 = 508;

    /// The reason phrase sent with `code`.
    pub fn reason(code: u16) -> &'static str {
        match code {
            BAD_REQUEST => "Bad Request",
            UNAUTHENTICATED => "Unauthenticated",
            FORBIDDEN => "Forbidden",
            UNKNOWN_ATTRIBUTE => "Unknown Attribute",
            ALLOCATION_MISMATCH => "Allocation Mismatch",
            STALE_NONCE => "Stale Nonce",
            ADDRESS_FAMILY_NOT_SUPPORTED => "Address Family not Supported",
            WRONG_CREDENTIALS => "Wrong Credentials",
            UNSUPPORTED_TRANSPORT => "Unsupported Transport Protocol",
            PEER_ADDRESS_FAMILY_MISMATCH => "Peer Address Family Mismatch",
            ALLOCATION_QUOTA_REACHED => "Allocation Quota Reached",
            INSUFFICIENT_CAPACITY => "Insufficient Capacity",
            _ => "Server Error",
        }
    }
}

/// Encodes an address attribute value; with `xor = Some(transaction_id)` as an XOR address.
pub fn encode_address(addr: SocketAddr, xor: Option<&[u8; 12]>) -> Vec<u8> {
    let addr = crate::peer_filter::canonical(addr);
    let mut out = Vec::with_capacity(20);
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port_mask = if xor.is_some() { (MAGIC_COOKIE >> 16) as u16 } else { 0 };
    out.push(0);
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(0x01);
            out.extend_from_slice(&(addr.port() ^ port_mask).to_be_bytes());
            let mut o = ip.octets();
            if xor.is_some() {
                for (b, k) in o.iter_mut().zip(cookie) {
                    *b ^= k;
                }
            }
            out.extend_from_slice(&o);
        }
        IpAddr::V6(ip) => {
            out.push(0x02);
            out.extend_from_slice(&(addr.port() ^ port_mask).to_be_bytes());
            let mut o = ip.octets();
            if let Some(tid) = xor {
                let key = cookie.iter().chain(tid.iter());
                for (b, k) in o.iter_mut().zip(key) {
                    *b ^= k;
                }
            }
            out.extend_from_slice(&o);
        }
    }
    out
}

/// Decodes an address attribute value; `None` when malformed.
pub fn decode_address(value: &[u8], xor: Option<&[u8; 12]>) -> Option<SocketAddr> {
    if value.len() < 4 {
        return None;
    }
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port_mask = if xor.is_some() { (MAGIC_COOKIE >> 16) as u16 } else { 0 };
    let port = u16::from_be_bytes([value[2], value[3]]) ^ port_mask;
    match (value[1], value.len()) {
        (0x01, 8) => {
            let mut o = [value[4], value[5], value[6], value[7]];
            if xor.is_some() {
                for (b, k) in o.iter_mut().zip(cookie) {
                    *b ^= k;
                }
            }
            Some(SocketAddr::new(Ipv4Addr::from(o).into(), port))
        }
        (0x02, 20) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&value[4..20]);
            if let Some(tid) = xor {
                let key = cookie.iter().chain(tid.iter());
                for (b, k) in o.iter_mut().zip(key) {
                    *b ^= k;
                }
            }
            Some(SocketAddr::new(Ipv6Addr::from(o).into(), port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_roundtrip() {
        assert_eq!(join_type(method::BINDING, Class::Request), 0x0001);
        assert_eq!(join_type(method::BINDING, Class::Success), 0x0101);
        assert_eq!(join_type(method::ALLOCATE, Class::Error), 0x0113);
        assert_eq!(join_type(method::SEND, Class::Indication), 0x0016);
        assert_eq!(join_type(method::DATA, Class::Indication), 0x0017);
        for t in 0..0x3FFFu16 {
            let (m, c) = split_type(t);
            assert_eq!(join_type(m, c), t);
        }
    }

    #[test]
    fn xor_address_roundtrip() {
        let tid = [7u8; 12];
        for a in ["192.0.2.1:32853", "[2001:db8::1]:443"] {
            let a: SocketAddr = a.parse().unwrap();
            let enc = encode_address(a, Some(&tid));
            assert_eq!(decode_address(&enc, Some(&tid)), Some(a));
            let plain = encode_address(a, None);
            assert_eq!(decode_address(&plain, None), Some(a));
        }
        assert_eq!(decode_address(&[0, 1, 0], None), None);
        assert_eq!(decode_address(&[0, 3, 0, 0, 1, 2, 3, 4], None), None);
    }
}
