//! [`Subscription`]: one stream of [`Event`]s over any transport, and the [`Cursor`] of
//! everything it has yielded.

use std::collections::VecDeque;

use futures_util::StreamExt;
use switchboard_protocol::Cursor;

use crate::event::{Push, decode_push};
use crate::http::ByteStream;
use crate::ndjson::LineSplitter;
use crate::poll::Poller;
use crate::sse::{self, SseParser};
use crate::ws::WsConnection;
use crate::{Error, Event};

/// A subscription to one or more channels, from [`Client::subscribe`](crate::Client::subscribe).
///
/// Events come in the order the server sent them. [`Subscription::cursor`] is every channel's
/// position as of the last event yielded, so a new subscription on any transport resumes from it
/// without loss or duplicate. Dropping the subscription (or [`Subscription::close`]) ends the
/// connection.
///
/// Errors: one malformed event ([`Error::Protocol`]) is reported and skipped; a lost connection
/// is reported once and then `next` gives `None`. The polling transports never end by themselves:
/// a failed poll is reported and retried after the poll interval.
#[derive(Debug)]
pub struct Subscription {
    cursor: Cursor,
    /// Events ready to yield, each with a cursor to merge once it has been yielded.
    queue: VecDeque<(Event, Option<Cursor>)>,
    source: Source,
    ended: bool,
}

#[derive(Debug)]
enum Source {
    Ws(Box<WsConnection>),
    Sse(BodyDebug, SseParser),
    Stream(BodyDebug, LineSplitter),
    Poll(Box<Poller>),
}

/// A body stream with a `Debug` impl.
struct BodyDebug(ByteStream);

impl std::fmt::Debug for BodyDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ByteStream")
    }
}

impl Subscription {
    fn new(source: Source, cursor: Cursor) -> Self {
        Self { cursor, queue: VecDeque::new(), source, ended: false }
    }

    /// Connects and subscribes each channel over an open WebSocket. The first events are
    /// `Connected`, then each channel's `Subscribed` with its replayed publications, in wire order.
    pub(crate) async fn over_ws(
        mut conn: WsConnection,
        token: Option<&str>,
        name: Option<&str>,
        channels: &[&str],
        cursor: Cursor,
    ) -> Result<Self, Error> {
        let reply = conn.connect(token, name).await?;
        let mut queue = VecDeque::with_capacity(channels.len() + 1);
        queue.push_back((Event::Connected { client: reply.client }, None));
        for channel in channels {
            let reply = conn.subscribe(channel, cursor.get(channel)).await?;
            queue.extend(conn.take_pushes().map(|e| (e, None)));
            queue.push_back((Event::Subscribed(reply), None));
        }
        let mut sub = Self::new(Source::Ws(Box::new(conn)), cursor);
        sub.queue = queue;
        Ok(sub)
    }

    /// Reads an SSE response body.
    pub(crate) fn over_sse(body: ByteStream, cursor: Cursor) -> Self {
        Self::new(Source::Sse(BodyDebug(body), SseParser::default()), cursor)
    }

    /// Reads an NDJSON response body.
    pub(crate) fn over_stream(body: ByteStream, cursor: Cursor) -> Self {
        Self::new(Source::Stream(BodyDebug(body), LineSplitter::default()), cursor)
    }

    /// Polls.
    pub(crate) fn over_poll(poller: Poller, cursor: Cursor) -> Self {
        Self::new(Source::Poll(Box::new(poller)), cursor)
    }

    /// The next event; `None` once the server has ended the stream (after
    /// [`Event::Disconnected`], or when the connection ended). Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            if let Some((event, cursor)) = self.queue.pop_front() {
                self.seen(&event, cursor);
                return Some(Ok(event));
            }
            if self.ended {
                return None;
            }
            if let Err(e) = self.fill().await {
                return Some(Err(e));
            }
        }
    }

    /// Every channel's position as of the last event yielded (from `since`, `Subscribed` events,
    /// publications and the server's cursors), for resuming on any transport.
    pub fn cursor(&self) -> Cursor {
        self.cursor.clone()
    }

    /// Ends the subscription: a WebSocket sends a close frame; an HTTP response is dropped.
    pub async fn close(self) {
        if let Source::Ws(conn) = self.source {
            let _ = conn.close().await;
        }
    }

    fn seen(&mut self, event: &Event, cursor: Option<Cursor>) {
        if let Some((channel, position)) = event.position() {
            self.cursor.set(channel, position);
        }
        if let Some(cursor) = cursor {
            self.merge(&cursor);
        }
        if matches!(event, Event::Disconnected { .. }) {
            self.ended = true;
        }
    }

    fn merge(&mut self, cursor: &Cursor) {
        for (channel, position) in cursor.iter() {
            self.cursor.set(channel, position.clone());
        }
    }

    /// Reads from the transport until at least one event is queued, the stream ends, or an error.
    /// Called only with an empty queue, so a cursor without an event applies at once.
    async fn fill(&mut self) -> Result<(), Error> {
        match &mut self.source {
            Source::Ws(conn) => match conn.next_event().await {
                Some(Ok(event)) => self.queue.push_back((event, None)),
                Some(Err(e)) => return Err(e),
                None => self.ended = true,
            },
            Source::Sse(body, parser) => match parser.next_event() {
                Some(ev) => match sse::to_event(&ev)? {
                    (Some(event), cursor) => self.queue.push_back((event, cursor)),
                    (None, Some(cursor)) => self.merge(&cursor),
                    (None, None) => {}
                },
                None => match read_chunk(&mut body.0).await {
                    Ok(Some(chunk)) => parser.feed(&chunk).inspect_err(|_| self.ended = true)?,
                    Ok(None) => self.ended = true,
                    Err(e) => {
                        self.ended = true;
                        return Err(e);
                    }
                },
            },
            Source::Stream(body, lines) => match lines.next_line() {
                Some(line) => match decode_push(&line)? {
                    Push::Event(event) => self.queue.push_back((event, None)),
                    Push::Ping | Push::Unknown => {}
                },
                None => match read_chunk(&mut body.0).await {
                    Ok(Some(chunk)) => lines.feed(&chunk).inspect_err(|_| self.ended = true)?,
                    Ok(None) => self.ended = true,
                    Err(e) => {
                        self.ended = true;
                        return Err(e);
                    }
                },
            },
            Source::Poll(poller) => {
                let batch = poller.fetch(&self.cursor).await?;
                let mut events = batch.events.into_iter().peekable();
                match batch.cursor {
                    None => self.queue.extend(events.map(|e| (e, None))),
                    Some(cursor) if events.peek().is_none() => self.merge(&cursor),
                    Some(cursor) => {
                        self.queue.extend(events.map(|e| (e, None)));
                        if let Some(last) = self.queue.back_mut() {
                            last.1 = Some(cursor);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

async fn read_chunk(body: &mut ByteStream) -> Result<Option<bytes::Bytes>, Error> {
    body.next().await.transpose()
}

#[cfg(test)]
#[path = "subscription_tests.rs"]
mod tests;
