//! Writing STUN messages.

use std::net::SocketAddr;

use super::attr::{self, Class, MAGIC_COOKIE, atype as at, code};
use super::{IntegrityKind, fingerprint};
use crate::crypto;

/// Builds one STUN message; attributes are appended in call order.
#[derive(Debug)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    tid: [u8; 12],
}

impl MessageBuilder {
    /// Starts a message of `method`/`class` with transaction ID `tid`.
    pub fn new(method: u16, class: Class, tid: [u8; 12]) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&attr::join_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&tid);
        Self { buf, tid }
    }

    /// Starts an RFC 3489 message whose 16-byte transaction ID is `header[4..20]`.
    pub fn new_legacy(method: u16, class: Class, id16: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&attr::join_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(id16);
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&id16[4..16]);
        Self { buf, tid }
    }

    /// Appends an attribute with padding.
    pub fn attr(mut self, typ: u16, value: &[u8]) -> Self {
        self.push_attr(typ, value);
        self
    }

    fn push_attr(&mut self, typ: u16, value: &[u8]) {
        // Values longer than 64 KiB cannot be represented; callers never build them, and
        // truncating is better than a panic.
        let value = &value[..value.len().min(0xFFFF - 4)];
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf.extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = value.len().div_ceil(4) * 4 - value.len();
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.set_len();
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - 20) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Appends an XOR address attribute (XOR-MAPPED-, XOR-RELAYED-, XOR-PEER-ADDRESS).
    pub fn xor_addr(self, typ: u16, addr: SocketAddr) -> Self {
        let v = attr::encode_address(addr, Some(&self.tid));
        self.attr(typ, &v)
    }

    /// Appends a plain address attribute (MAPPED-ADDRESS).
    pub fn addr(self, typ: u16, addr: SocketAddr) -> Self {
        let v = attr::encode_address(addr, None);
        self.attr(typ, &v)
    }

    /// Appends a 32-bit attribute (LIFETIME).
    pub fn u32(self, typ: u16, v: u32) -> Self {
        self.attr(typ, &v.to_be_bytes())
    }

    /// Appends ERROR-CODE with the standard reason phrase.
    pub fn error(self, error_code: u16) -> Self {
        let mut v = vec![0, 0, (error_code / 100) as u8, (error_code % 100) as u8];
        v.extend_from_slice(code::reason(error_code).as_bytes());
        self.attr(at::ERROR_CODE, &v)
    }

    /// Appends MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 computed with `key`.
    pub fn integrity(mut self, kind: IntegrityKind, key: &[u8]) -> Self {
        let (typ, len) = match kind {
            IntegrityKind::Sha1 => (at::MESSAGE_INTEGRITY, crypto::SHA1_LEN),
            IntegrityKind::Sha256 => (at::MESSAGE_INTEGRITY_SHA256, crypto::SHA256_LEN),
        };
        let covered = (self.buf.len() - 20 + 4 + len) as u16;
        self.buf[2..4].copy_from_slice(&covered.to_be_bytes());
        let mac: Vec<u8> = match kind {
            IntegrityKind::Sha1 => crypto::hmac_sha1(key, &[&self.buf]).to_vec(),
            IntegrityKind::Sha256 => crypto::hmac_sha256(key, &[&self.buf]).to_vec(),
        };
        self.push_attr(typ, &mac);
        self
    }

    /// Appends FINGERPRINT; must be last.
    pub fn fingerprint(mut self) -> Self {
        let len = (self.buf.len() - 20 + 8) as u16;
        let fp = fingerprint(&self.buf, len);
        self.push_attr(at::FINGERPRINT, &fp.to_be_bytes());
        self
    }

    /// The encoded message.
    pub fn build(self) -> Vec<u8> {
        self.buf
    }
}
