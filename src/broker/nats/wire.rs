//! How the NATS broker names and stores things: subjects per channel (hex-encoded names), the
//! headers of a stored publication, and their decoding. Sans-IO.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use bytes::Bytes;
use switchboard_protocol::ChannelName;

use super::{H_EPOCH, H_EXPIRES, H_KEEP, H_OFFSET};
use crate::broker::{BrokerError, envelope};
use crate::model::{Epoch, Publication};

pub(super) fn subject(channel: &ChannelName) -> String {
    format!("sb.p.{}", hex(channel.as_str()))
}

pub(super) fn event_subject(channel: &ChannelName) -> String {
    format!("sb.e.{}", hex(channel.as_str()))
}

pub(super) fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

pub(super) fn channel_of(subject: &str, prefix: &str) -> Option<ChannelName> {
    ChannelName::new(&unhex(subject.strip_prefix(prefix)?)?).ok()
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn header<T: std::str::FromStr>(headers: Option<&HeaderMap>, name: &str) -> Option<T> {
    headers?.get(name)?.as_str().parse().ok()
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("nats: {e}"))
}

/// A stored message of a channel's subject, decoded.
pub(super) struct Stored {
    pub(super) offset: u64,
    pub(super) epoch: Epoch,
    pub(super) expires: u64,
    pub(super) keep: u64,
    pub(super) body: Bytes,
}

impl Stored {
    pub(super) fn decode(headers: Option<&HeaderMap>, payload: Bytes) -> Result<Self, BrokerError> {
        let bad = || BrokerError::Backend("nats: a stream message without switchboard headers".into());
        Ok(Self {
            offset: header(headers, H_OFFSET).ok_or_else(bad)?,
            epoch: Arc::from(header::<String>(headers, H_EPOCH).ok_or_else(bad)?),
            expires: header(headers, H_EXPIRES).unwrap_or(0),
            keep: header(headers, H_KEEP).unwrap_or(0),
            body: payload,
        })
    }

    pub(super) fn publication(&self, channel: &ChannelName) -> Result<Arc<Publication>, BrokerError> {
        let (payload, info) =
            envelope::decode_body(self.body.clone()).map_err(|e| BrokerError::Backend(e.to_string()))?;
        Ok(Arc::new(Publication::new(channel.clone(), self.offset, self.epoch.clone(), payload, info)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip_through_hex_subjects() {
        let ch = ChannelName::new("chat:a.b/c=d@e").unwrap();
        let s = subject(&ch);
        assert!(s.starts_with("sb.p.") && !s[5..].contains('.'));
        assert_eq!(channel_of(&s, "sb.p."), Some(ch.clone()));
        assert_eq!(channel_of(&event_subject(&ch), "sb.e."), Some(ch));
        assert_eq!(channel_of("sb.p.zz", "sb.p."), None);
        assert_eq!(channel_of("sb.p.abc", "sb.p."), None);
    }
}
