//! Transport adapters: each turns its wire format into session input and session output into its
//! framing, and nothing else. Channel rules live in [`crate::rules`]; the write loop and the
//! session's driver in [`crate::connection`].
//!
//! - [`ws`]: `/ws`, the JSON protocol over WebSocket (and the Autobahn echo endpoint).
//! - [`oneway`]: `/sse` (Server-Sent Events) and `/stream` (NDJSON HTTP streaming).
//! - [`poll`]: `/poll`, short and long polling, with no server-side session at all.
//! - [`stomp`]: STOMP 1.0–1.2 over WebSocket (`/stomp`, or `/ws` with a `vNN.stomp` subprotocol).
//! - [`sockjs`]: `/sockjs`, the SockJS protocol's transports, carrying STOMP or the JSON protocol.
//! - [`wt`]: `/wt`, the JSON protocol over WebTransport (HTTP/3 streams and datagrams).

pub mod oneway;
mod pipe;
pub mod poll;
pub mod sockjs;
pub mod stomp;
pub mod ws;
pub mod wt;

use std::io::IoSlice;

use axum::http::HeaderMap;
use bytes::{Buf, Bytes};
use switchboard_protocol::{ChannelName, Cursor, ErrorCode};
use tokio::io::AsyncWrite;

use crate::http::{HttpError, bearer};

/// The query of `/sse`, `/stream` and `/poll`.
#[derive(Debug, Default)]
pub struct OneWayParams {
    /// The channels, validated, without repeats.
    pub channels: Vec<ChannelName>,
    /// Where to resume.
    pub cursor: Cursor,
    /// The token, from `token=` or `Authorization: Bearer`.
    pub token: Option<String>,
    /// The display name.
    pub name: Option<String>,
    /// A session token reclaiming an earlier connection's client id (`connect.session`).
    pub session: Option<String>,
    /// Long-poll wait in seconds.
    pub wait: Option<u64>,
    /// Most publications per poll.
    pub limit: Option<usize>,
    /// Subscription tokens (`sub_token=`, one per private channel; each names its channel).
    pub subscription_tokens: Vec<String>,
}

impl OneWayParams {
    /// Parses the query string and headers; the `Last-Event-ID` header wins over `since`.
    pub fn parse(query: Option<&str>, headers: &HeaderMap, max_channels: usize) -> Result<Self, HttpError> {
        let bad = |m: String| HttpError::new(ErrorCode::BadRequest, m);
        let mut p = OneWayParams::default();
        let mut since = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "channel" => {
                    let c = ChannelName::new(&value).map_err(|e| bad(format!("channel {value:?}: {e}")))?;
                    if !p.channels.contains(&c) {
                        p.channels.push(c);
                    }
                }
                "since" => since = Some(value.into_owned()),
                "token" => p.token = Some(value.into_owned()),
                "name" => p.name = Some(value.into_owned()),
                "session" => p.session = Some(value.into_owned()),
                "sub_token" if p.subscription_tokens.len() < max_channels => {
                    p.subscription_tokens.push(value.into_owned())
                }
                "wait" => p.wait = Some(value.parse().map_err(|_| bad("wait must be whole seconds".into()))?),
                "limit" => p.limit = Some(value.parse().map_err(|_| bad("limit must be a number".into()))?),
                _ => {}
            }
        }
        if p.channels.is_empty() {
            return Err(bad("name at least one channel=".into()));
        }
        if p.channels.len() > max_channels {
            return Err(HttpError::new(ErrorCode::LimitExceeded, format!("at most {max_channels} channels")));
        }
        if let Some(id) = headers.get("last-event-id").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
        {
            since = Some(id.to_owned());
        }
        if let Some(text) = since.filter(|s| !s.is_empty()) {
            p.cursor = Cursor::decode(&text).map_err(|e| bad(format!("bad cursor: {e}")))?;
        }
        if p.token.is_none() {
            p.token = bearer(headers).map(str::to_owned);
        }
        Ok(p)
    }

    /// The subscription token given for `channel`, if any: the one whose (not yet verified)
    /// `channel` claim names it. The session verifies it.
    pub fn subscription_token(&self, channel: &ChannelName) -> Option<String> {
        let names = |t: &&String| crate::policy::claimed_channel(t).as_deref() == Some(channel.as_str());
        self.subscription_tokens.iter().find(names).cloned()
    }
}

/// Writes `frames` to `io`, as many per call as it takes; cancel-safe: what was written leaves
/// `frames` (the front one possibly in part).
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    io: &mut W,
    frames: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    while !frames.is_empty() {
        let written = std::future::poll_fn(|cx| {
            if let [frame] = &frames[..] {
                // One frame (a quiet channel's usual batch): a plain write, cheaper in the
                // kernel than a vectored one.
                return std::pin::Pin::new(&mut *io).poll_write(cx, frame);
            }
            let mut slices = [IoSlice::new(&[]); 64];
            let n = frames.len().min(slices.len());
            for (slice, frame) in slices.iter_mut().zip(frames.iter()) {
                *slice = IoSlice::new(frame);
            }
            std::pin::Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n])
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let (done, left) = crate::direct::whole_buffers(frames.iter().map(Bytes::len), written);
        frames.drain(..done);
        if left > 0 {
            frames[0].advance(left);
        }
    }
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *io).poll_flush(cx)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repeated_channels_and_prefers_last_event_id() {
        let mut c = Cursor::new();
        c.set("a", switchboard_protocol::Position { epoch: "e".into(), offset: 4 });
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", c.encode().parse().unwrap());
        let p = OneWayParams::parse(Some("channel=a&channel=b&channel=a&since=garbage&wait=5"), &headers, 8)
            .unwrap();
        assert_eq!(p.channels.len(), 2);
        assert_eq!(p.cursor.get("a").unwrap().offset, 4, "the header wins over since");
        assert_eq!(p.wait, Some(5));
    }

    #[test]
    fn refuses_bad_queries_with_codes() {
        let h = HeaderMap::new();
        let code = |q: &str| OneWayParams::parse(Some(q), &h, 2).unwrap_err().code;
        assert_eq!(code(""), ErrorCode::BadRequest);
        assert_eq!(code("channel=a%20b"), ErrorCode::BadRequest);
        assert_eq!(code("channel=a&since=%%%"), ErrorCode::BadRequest);
        assert_eq!(code("channel=a&channel=b&channel=c"), ErrorCode::LimitExceeded);
        assert_eq!(code("channel=a&wait=soon"), ErrorCode::BadRequest);
    }
}
