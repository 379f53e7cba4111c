//! Long polling and polling (`GET /poll`): one request per batch, the cursor carried between
//! requests. [`batch`] reads an answer (pure); [`Poller`] paces the requests.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use switchboard_protocol::frame::{PublicationObject, SubscribeReply};
use switchboard_protocol::{Cursor, Position};
use tokio::time::Instant;

use crate::event::Publication;
use crate::{Client, Error, Event, channel_query, http};

/// Extra time allowed beyond `wait` before a long poll counts as dead.
const LONG_POLL_GRACE: Duration = Duration::from_secs(10);

/// The name of the header that carries the cursor on every answer.
pub(crate) const CURSOR_HEADER: &str = "Switchboard-Cursor";

/// What one poll brought.
#[derive(Debug, Default)]
pub(crate) struct PollBatch {
    /// `Subscribed { recovered: false }` for each channel that could not resume, then the
    /// publications, oldest first.
    pub(crate) events: Vec<Event>,
    /// Where the reader stands once it has seen every event.
    pub(crate) cursor: Option<Cursor>,
    /// The server cut the list: ask again at once.
    pub(crate) more: bool,
}

#[derive(Deserialize)]
struct PollReply {
    #[serde(default)]
    publications: Vec<PublicationObject>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    more: bool,
    #[serde(default)]
    unrecovered: Vec<String>,
}

fn decode_cursor(text: &str) -> Result<Cursor, Error> {
    Cursor::decode(text).map_err(|e| Error::Protocol(format!("bad cursor from the server: {e}")))
}

/// Reads a successful answer: `status` 200 with a JSON `body`, or 204; `header` is the
/// `Switchboard-Cursor` header. The body's cursor wins over the header's.
pub(crate) fn batch(status: u16, header: Option<&str>, body: &[u8]) -> Result<PollBatch, Error> {
    let header = || header.filter(|h| !h.is_empty()).map(decode_cursor).transpose();
    if status == 204 || body.is_empty() {
        return Ok(PollBatch { events: Vec::new(), cursor: header()?, more: false });
    }
    let reply: PollReply =
        serde_json::from_slice(body).map_err(|e| Error::Protocol(format!("bad poll answer: {e}")))?;
    let cursor = match reply.cursor.as_deref() {
        Some(text) if !text.is_empty() => Some(decode_cursor(text)?),
        _ => header()?,
    };
    let mut events = Vec::with_capacity(reply.unrecovered.len() + reply.publications.len());
    for channel in reply.unrecovered {
        // Where the channel restarted: before its first publication here, else the cursor.
        let first = reply.publications.iter().find(|p| p.channel == channel);
        let position = match (first, cursor.as_ref().and_then(|c| c.get(&channel))) {
            (Some(p), _) => Position { epoch: p.epoch.clone(), offset: p.offset.saturating_sub(1) },
            (None, Some(position)) => position.clone(),
            (None, None) => Position { epoch: String::new(), offset: 0 },
        };
        events.push(Event::Subscribed(SubscribeReply {
            channel,
            epoch: position.epoch,
            offset: position.offset,
            recovered: false,
            replayed: 0,
        }));
    }
    for p in reply.publications {
        events.push(Event::Publication(Publication::from_object(p, None)?));
    }
    Ok(PollBatch { events, cursor, more: reply.more })
}

/// Paces `GET /poll` requests for one subscription.
#[derive(Debug)]
pub(crate) struct Poller {
    client: Client,
    channels: Vec<String>,
    /// `Some` for long polling.
    wait: Option<Duration>,
    interval: Duration,
    /// No request before this.
    not_before: Option<Instant>,
}

impl Poller {
    /// A poller for `channels`; long polling when `wait` is given.
    pub(crate) fn new(client: Client, channels: &[&str], wait: Option<Duration>, interval: Duration) -> Self {
        let channels = channels.iter().map(|c| (*c).to_owned()).collect();
        Self { client, channels, wait, interval, not_before: None }
    }

    /// Waits until the next request is due, sends it from `cursor`, and reads the answer.
    /// Cancel-safe: nothing changes until the answer is read.
    pub(crate) async fn fetch(&mut self, cursor: &Cursor) -> Result<PollBatch, Error> {
        if let Some(at) = self.not_before {
            tokio::time::sleep_until(at).await;
            self.not_before = None;
        }
        let result = self.request(cursor).await;
        let again_at_once = match &result {
            Ok(b) => b.more || self.wait.is_some(),
            Err(_) => false,
        };
        if !again_at_once {
            self.not_before = Some(Instant::now() + self.interval);
        }
        result
    }

    async fn request(&self, cursor: &Cursor) -> Result<PollBatch, Error> {
        let mut q = channel_query(&self.channels, cursor);
        if let Some(wait) = self.wait {
            q.push("wait", &wait.as_secs().to_string());
        }
        let req = self
            .client
            .subscriber_request("/poll", &q)
            .body(Full::default())
            .map_err(|e| Error::Request(Box::new(e)))?;
        let exchange = async {
            let resp = http::check(http::send(self.client.http(), req).await?).await?;
            let status = resp.status().as_u16();
            let header = resp.headers().get(CURSOR_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = resp.into_body().collect().await?.to_bytes();
            batch(status, header.as_deref(), &body)
        };
        match self.wait {
            Some(wait) => tokio::time::timeout(wait + LONG_POLL_GRACE, exchange)
                .await
                .map_err(|_| Error::Timeout("long poll got no answer"))?,
            None => exchange.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(pairs: &[(&str, &str, u64)]) -> Cursor {
        let mut c = Cursor::new();
        for (ch, e, o) in pairs {
            c.set(ch, Position { epoch: (*e).into(), offset: *o });
        }
        c
    }

    #[test]
    fn no_content_carries_the_header_cursor() {
        let c = cursor(&[("a", "E", 4)]);
        let b = batch(204, Some(&c.encode()), b"").unwrap();
        assert!(b.events.is_empty() && !b.more);
        assert_eq!(b.cursor, Some(c));
        assert!(batch(204, None, b"").unwrap().cursor.is_none());
        assert!(matches!(batch(204, Some("!"), b""), Err(Error::Protocol(_))));
    }

    #[test]
    fn reads_publications_more_and_unrecovered_channels() {
        let c = cursor(&[("a", "E", 6), ("b", "F", 9)]);
        let body = format!(
            r#"{{"publications":[{{"channel":"a","offset":5,"epoch":"E","data":1}},{{"channel":"a","offset":6,"epoch":"E","data":2}}],
                "cursor":"{}","more":true,"recovered":false,"unrecovered":["a","b"]}}"#,
            c.encode()
        );
        let b = batch(200, Some("ignored-when-the-body-has-one"), body.as_bytes()).unwrap();
        assert!(b.more);
        assert_eq!(b.cursor, Some(c));
        let subscribed: Vec<_> = b.events[..2]
            .iter()
            .map(|e| match e {
                Event::Subscribed(s) => (s.channel.as_str(), s.epoch.as_str(), s.offset, s.recovered),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(subscribed, [("a", "E", 4, false), ("b", "F", 9, false)]);
        assert!(matches!(&b.events[3], Event::Publication(p) if p.offset == 6));
        assert_eq!(b.events.len(), 4);
    }

    #[test]
    fn refuses_bad_answers() {
        assert!(matches!(batch(200, None, b"{"), Err(Error::Protocol(_))));
        assert!(matches!(batch(200, None, br#"{"publications":[],"cursor":"%"}"#), Err(Error::Protocol(_))));
    }
}
