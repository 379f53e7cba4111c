//! The STUN/TURN wire codec: check, then parse.
//!
//! [`frame_len`] says whether a buffer starts with a complete STUN message or ChannelData
//! frame (used by the TCP framing), [`decode`] parses one datagram/frame into a borrowed
//! [`Frame`], and [`MessageBuilder`] writes messages. Parsing never panics and never
//! allocates more than one small vector of attribute positions.
//!
//! Why not a crate: the STUN codec crates on crates.io (stun_codec, stun-rs, stun-types)
//! compute MESSAGE-INTEGRITY and FINGERPRINT with RustCrypto's `hmac`/`sha1`/`md-5` crates,
//! which would put a second crypto backend beside aws-lc-rs, and our server needs byte-level
//! control over integrity checking (length rewriting, SHA1 vs SHA256) anyway. The wire format
//! is small: a 20-byte header and type-length-value attributes.

pub mod attr;
mod builder;

pub use attr::{Class, MAGIC_COOKIE};
pub use builder::MessageBuilder;

use crate::crypto;

/// Largest frame accepted: a STUN message or ChannelData with a 16-bit length.
pub const MAX_FRAME: usize = 20 + 0xFFFF;
/// At most this many attributes are looked at in one message.
const MAX_ATTRIBUTES: usize = 64;
/// XOR constant of FINGERPRINT.
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Why a buffer is not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The first two bits are neither STUN (00) nor ChannelData (01).
    #[error("not a STUN message or ChannelData")]
    NotStun,
    /// The buffer is shorter than its header says.
    #[error("truncated")]
    Truncated,
    /// The STUN header is invalid (length not a multiple of 4, trailing bytes).
    #[error("bad header")]
    BadHeader,
    /// An attribute runs past the end or appears after FINGERPRINT.
    #[error("malformed attribute")]
    BadAttribute,
    /// FINGERPRINT is present but wrong.
    #[error("fingerprint mismatch")]
    BadFingerprint,
}

/// One frame received from a client.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A STUN message.
    Stun(Message<'a>),
    /// A ChannelData message.
    ChannelData {
        /// Channel number (0x4000..=0x7FFF).
        channel: u16,
        /// Application data.
        data: &'a [u8],
    },
}

/// Length of the first frame in `buf` (STUN: 20 + length; ChannelData: 4 + length rounded
/// up to 4, as TCP framing requires), `Ok(None)` if more bytes are needed to tell.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let total = match buf[0] >> 6 {
        0b00 => 20 + len,
        0b01 => 4 + len.div_ceil(4) * 4,
        _ => return Err(DecodeError::NotStun),
    };
    Ok((buf.len() >= total).then_some(total))
}

/// Position of one attribute in the message buffer.
#[derive(Debug, Clone, Copy)]
struct RawAttr {
    typ: u16,
    /// Offset of the attribute header.
    start: usize,
    /// Length of the value.
    len: usize,
}

/// Which integrity attribute a request carried (a response uses the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityKind {
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256.
    Sha256,
}

/// A parsed STUN message borrowing its buffer.
#[derive(Debug)]
pub struct Message<'a> {
    raw: &'a [u8],
    /// Method number (see [`attr::method`]).
    pub method: u16,
    /// Class.
    pub class: Class,
    /// Transaction ID (the 12 bytes after the magic cookie).
    pub transaction_id: [u8; 12],
    /// True for an RFC 3489 message (no magic cookie); only Binding is served for those.
    pub legacy: bool,
    attrs: Vec<RawAttr>,
    integrity: Option<RawAttr>,
    integrity_sha256: Option<RawAttr>,
    /// Whether the message carried a (valid) FINGERPRINT.
    pub has_fingerprint: bool,
}

/// Parses one datagram (UDP) or one frame cut by [`frame_len`] (TCP). ChannelData may carry
/// trailing padding.
pub fn decode(buf: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::Truncated);
    }
    match buf[0] >> 6 {
        0b00 => Message::parse(buf).map(Frame::Stun),
        0b01 => {
            // The leading bits 01 put the number in 0x4000..=0x7FFF (RFC 5766's range).
            let channel = u16::from_be_bytes([buf[0], buf[1]]);
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            let data = buf.get(4..4 + len).ok_or(DecodeError::Truncated)?;
            Ok(Frame::ChannelData { channel, data })
        }
        _ => Err(DecodeError::NotStun),
    }
}

impl<'a> Message<'a> {
    /// Parses a STUN message that must fill `buf` exactly.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        if buf.len() < 20 {
            return Err(DecodeError::Truncated);
        }
        if buf[0] >> 6 != 0 {
            return Err(DecodeError::NotStun);
        }
        let typ = u16::from_be_bytes([buf[0], buf[1]]);
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if len % 4 != 0 {
            return Err(DecodeError::BadHeader);
        }
        if buf.len() < 20 + len {
            return Err(DecodeError::Truncated);
        }
        if buf.len() > 20 + len {
            return Err(DecodeError::BadHeader);
        }
        let legacy = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE;
        let (method, class) = attr::split_type(typ);
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&buf[8..20]);
        let mut msg = Message {
            raw: buf,
            method,
            class,
            transaction_id,
            legacy,
            attrs: Vec::new(),
            integrity: None,
            integrity_sha256: None,
            has_fingerprint: false,
        };
        let mut pos = 20;
        while pos < buf.len() {
            if msg.has_fingerprint {
                // Nothing may follow FINGERPRINT.
                return Err(DecodeError::BadAttribute);
            }
            let header = buf.get(pos..pos + 4).ok_or(DecodeError::BadAttribute)?;
            let atyp = u16::from_be_bytes([header[0], header[1]]);
            let alen = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let padded = alen.div_ceil(4) * 4;
            if pos + 4 + padded > buf.len() {
                return Err(DecodeError::BadAttribute);
            }
            let raw = RawAttr { typ: atyp, start: pos, len: alen };
            match atyp {
                attr::atype::FINGERPRINT => {
                    if alen != 4 {
                        return Err(DecodeError::BadAttribute);
                    }
                    let v = &buf[pos + 4..pos + 8];
                    let got = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                    let want = fingerprint(&buf[..pos], (pos + 8 - 20) as u16);
                    if got != want {
                        return Err(DecodeError::BadFingerprint);
                    }
                    msg.has_fingerprint = true;
                }
                attr::atype::MESSAGE_INTEGRITY
                    if msg.integrity.is_none() && msg.integrity_sha256.is_none() =>
                {
                    if alen != crypto::SHA1_LEN {
                        return Err(DecodeError::BadAttribute);
                    }
                    msg.integrity = Some(raw);
                }
                attr::atype::MESSAGE_INTEGRITY_SHA256 if msg.integrity_sha256.is_none() => {
                    // RFC 8489 §14.6: truncation to 16..=32 bytes in multiples of 4 is allowed.
                    if !(16..=crypto::SHA256_LEN).contains(&alen) || alen % 4 != 0 {
                        return Err(DecodeError::BadAttribute);
                    }
                    msg.integrity_sha256 = Some(raw);
                }
                _ => {
                    // Attributes after an integrity attribute are ignored (RFC 8489 §14.5).
                    let after_integrity = msg.integrity.is_some() || msg.integrity_sha256.is_some();
                    if !after_integrity && msg.attrs.len() < MAX_ATTRIBUTES {
                        msg.attrs.push(raw);
                    }
                }
            }
            pos += 4 + padded;
        }
        Ok(msg)
    }

    /// The whole message as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Value of the first attribute of type `typ`.
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        self.attrs.iter().find(|a| a.typ == typ).map(|a| &self.raw[a.start + 4..a.start + 4 + a.len])
    }

    /// Values of every attribute of type `typ`, in order.
    pub fn get_all(&self, typ: u16) -> impl Iterator<Item = &'a [u8]> + '_ {
        let raw = self.raw;
        self.attrs.iter().filter(move |a| a.typ == typ).map(move |a| &raw[a.start + 4..a.start + 4 + a.len])
    }

    /// Comprehension-required attribute types that are not in `known` (for 420).
    pub fn unknown_required(&self, known: &[u16]) -> Vec<u16> {
        let mut out: Vec<u16> = Vec::new();
        for a in &self.attrs {
            if attr::atype::comprehension_required(a.typ) && !known.contains(&a.typ) && !out.contains(&a.typ)
            {
                out.push(a.typ);
            }
        }
        out
    }

    /// Which integrity attribute the message carries; SHA256 wins when both are present.
    pub fn integrity_kind(&self) -> Option<IntegrityKind> {
        if self.integrity_sha256.is_some() {
            Some(IntegrityKind::Sha256)
        } else if self.integrity.is_some() {
            Some(IntegrityKind::Sha1)
        } else {
            None
        }
    }

    /// Verifies the message's integrity attribute (SHA256 if present, else SHA1) with `key`,
    /// in constant time. False when the message has none.
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let (attr, sha256) = match (self.integrity_sha256, self.integrity) {
            (Some(a), _) => (a, true),
            (None, Some(a)) => (a, false),
            (None, None) => return false,
        };
        // The HMAC covers the message up to the attribute, with the header length field set
        // as if the attribute were the last one.
        let covered_len = (attr.start + 4 + attr.len.div_ceil(4) * 4 - 20) as u16;
        let mut header = [0u8; 20];
        header.copy_from_slice(&self.raw[..20]);
        header[2..4].copy_from_slice(&covered_len.to_be_bytes());
        let body = &self.raw[20..attr.start];
        let got = &self.raw[attr.start + 4..attr.start + 4 + attr.len];
        if sha256 {
            let mac = crypto::hmac_sha256(key, &[&header, body]);
            crypto::ct_eq(&mac[..attr.len], got)
        } else {
            let mac = crypto::hmac_sha1(key, &[&header, body]);
            crypto::ct_eq(&mac, got)
        }
    }
}

/// FINGERPRINT value over `before` (the message up to the attribute), with the header length
/// field replaced by `len`.
pub(crate) fn fingerprint(before: &[u8], len: u16) -> u32 {
    let len = len.to_be_bytes();
    crypto::crc32(&[&before[..2], &len, &before[4..]]) ^ FINGERPRINT_XOR
}

/// The long-term credential key of RFC 8489 §9.2.2 (MD5 password algorithm).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    crypto::md5(format!("{username}:{realm}:{password}").as_bytes())
}

#[cfg(test)]
mod tests;
