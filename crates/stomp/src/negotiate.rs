//! CONNECT negotiation: the protocol version and the heart-beat intervals. Pure functions; the
//! session applies the result.

use std::time::Duration;

use crate::error::NegotiateError;
use crate::frame::Version;

/// The version to speak, from CONNECT's `accept-version` header: the highest listed one we
/// support. A CONNECT without the header is a STOMP 1.0 client.
pub fn negotiate_version(accept_version: Option<&str>) -> Result<Version, NegotiateError> {
    let Some(list) = accept_version else { return Ok(Version::V1_0) };
    list.split(',')
        .filter_map(|v| Version::from_name(v.trim()))
        .max()
        .ok_or(NegotiateError::UnsupportedVersion)
}

/// One side's `heart-beat` header: `send,receive` in milliseconds, 0 meaning "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartBeat {
    /// The smallest interval at which this side can send heart-beats (`cx` / `sx`).
    pub send_ms: u32,
    /// The interval at which this side wants to receive them (`cy` / `sy`).
    pub receive_ms: u32,
}

impl HeartBeat {
    /// Parses a `heart-beat` header; absent means `0,0`.
    pub fn parse(header: Option<&str>) -> Result<HeartBeat, NegotiateError> {
        let Some(header) = header else { return Ok(HeartBeat::default()) };
        let (send, receive) = header.split_once(',').ok_or(NegotiateError::InvalidHeartBeat)?;
        let number = |s: &str| {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(NegotiateError::InvalidHeartBeat);
            }
            s.parse::<u32>().map_err(|_| NegotiateError::InvalidHeartBeat)
        };
        Ok(HeartBeat { send_ms: number(send)?, receive_ms: number(receive)? })
    }

    /// The header value, `send,receive`.
    pub fn to_header(self) -> String {
        format!("{},{}", self.send_ms, self.receive_ms)
    }
}

/// The server's side of an agreed heart-beat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartBeatTiming {
    /// How often the server sends a heart-beat (an EOL) when it has sent nothing else.
    pub send_interval: Option<Duration>,
    /// How often the client promised to send something.
    pub receive_interval: Option<Duration>,
    /// Silence from the client after which it is considered gone: twice
    /// [`receive_interval`](Self::receive_interval), the slack @stomp/stompjs gives servers.
    pub receive_timeout: Option<Duration>,
}

/// Agrees heart-beats as STOMP 1.1+ says: each direction runs at `MAX` of what the sender can
/// do and the receiver wants, and not at all if either says 0. `client` is CONNECT's header,
/// `server` the one the server sends in CONNECTED.
pub fn negotiate_heartbeat(client: HeartBeat, server: HeartBeat) -> HeartBeatTiming {
    let agree = |can_send: u32, wants: u32| {
        (can_send != 0 && wants != 0).then(|| Duration::from_millis(u64::from(can_send.max(wants))))
    };
    let receive_interval = agree(client.send_ms, server.receive_ms);
    HeartBeatTiming {
        send_interval: agree(server.send_ms, client.receive_ms),
        receive_interval,
        receive_timeout: receive_interval.map(|interval| interval * 2),
    }
}
