//! Reading what a subscription or a WebSocket connection receives, with a deadline.

use std::future::Future;
use std::time::Duration;

use switchboard_client::{
    Client, Cursor, Error, Event, Position, Publication, SubscribeReply, Subscription, Transport,
    WsConnection,
};

/// How long a test waits for the next event before it fails.
const EVENT_WAIT: Duration = Duration::from_secs(5);

/// A cursor at the current end of `channel`, from the server API: polling clients start from it
/// so that their first request already knows its position.
pub async fn cursor_at_end(client: &Client, channel: &str) -> Cursor {
    let h = client.history(channel, Some(0)).await.expect("history");
    let mut cursor = Cursor::new();
    cursor.set(channel, Position { epoch: h.epoch, offset: h.offset });
    cursor
}

/// Waits for the subscription to stand: the `Subscribed` event on the streaming transports; the
/// polling transports report nothing until there is something, so they start from a cursor.
pub async fn ready(sub: &mut Subscription, transport: Transport) {
    if !matches!(transport, Transport::Poll | Transport::LongPoll) {
        subscribed(sub).await;
    }
}

/// The next event, or a panic after five seconds.
pub async fn next(sub: &mut Subscription) -> Event {
    within_deadline(sub.next()).await
}

/// The next event on a WebSocket connection, or a panic after five seconds.
pub async fn next_ws_event(ws: &mut WsConnection) -> Event {
    within_deadline(ws.next_event()).await
}

/// The event `next` yields; a panic after five seconds, at the end of the stream or on an error.
async fn within_deadline(next: impl Future<Output = Option<Result<Event, Error>>>) -> Event {
    tokio::time::timeout(EVENT_WAIT, next)
        .await
        .expect("an event within 5 s")
        .expect("the stream goes on")
        .expect("no error")
}

/// Skips to the next `Subscribed` event for any channel.
pub async fn subscribed(sub: &mut Subscription) -> SubscribeReply {
    loop {
        if let Event::Subscribed(s) = next(sub).await {
            return s;
        }
    }
}

/// The next `n` publications, skipping other events.
pub async fn publications(sub: &mut Subscription, n: usize) -> Vec<Publication> {
    let mut out = Vec::new();
    while out.len() < n {
        if let Event::Publication(p) = next(sub).await {
            out.push(p);
        }
    }
    out
}

/// The publication's `data.n`.
pub fn n_of(p: &Publication) -> u64 {
    p.data.as_ref().and_then(|d| d["n"].as_u64()).expect("data.n")
}
