//! `/poll`: short polling, and long polling with `wait`. No session and no state on the server:
//! the cursor in the request is the whole state. A long poll registers in the hub only as a
//! wake-up; what it answers is always read from the history, so it cannot race the live stream.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use switchboard_protocol::{ChannelName, Cursor, ErrorCode};
use tokio::time::Instant;

use super::OneWayParams;
use crate::admission::Ticket;
use crate::broker::HistoryQuery;
use crate::http::{ClientIp, HttpError};
use crate::hub::{ConnId, Outbox, next_conn_id};
use crate::metrics::{ConnectionGuard, TransportKind};
use crate::model::Publication;
use crate::rules::Actor;
use crate::session::Now;
use crate::session::recovery::recover;
use crate::state::AppState;

/// The header that carries the cursor on every poll response.
pub const CURSOR_HEADER: &str = "switchboard-cursor";

/// `GET /poll`.
pub async fn handler(
    State(state): State<Arc<AppState>>,
    ip: ClientIp,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match poll(state, ip, query, headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

struct Found {
    publications: Vec<Arc<Publication>>,
    unrecovered: Vec<ChannelName>,
    more: bool,
}

async fn poll(
    state: Arc<AppState>,
    ip: ClientIp,
    query: Option<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let config = &state.config;
    let mut p = OneWayParams::parse(query.as_deref(), &headers, config.max_subscriptions)?;
    let auth = state.rules.auth();
    let now = Now::current().unix;
    let mut identity = auth
        .authenticate(p.token.as_deref(), now)
        .map_err(|d| HttpError::new(ErrorCode::Unauthorized, d.reason))?;
    // Subscription tokens (`sub_token=`) open their channels for this request.
    for c in &p.channels {
        if let Some(token) = p.subscription_token(c) {
            match auth.subscription(&token, &identity.user, c.as_str(), now) {
                Ok(_) => identity.granted.push(c.clone()),
                Err(_) => {
                    let m = format!("channel {c}: invalid subscription token");
                    return Err(HttpError::new(ErrorCode::Unauthorized, m));
                }
            }
        }
    }
    // A session names the connection a poller speaks for (its own signaling inbox).
    let client = p.session.as_deref().and_then(|s| auth.resume(s, &identity.user));
    let who = Actor::Client { identity: &identity, client: client.as_deref() };
    for c in &p.channels {
        if let Err(d) = state.rules.may_poll(&who, c) {
            return Err(HttpError::new(d.code, format!("channel {c}: {}", d.message)));
        }
    }
    let wait = Duration::from_secs(p.wait.unwrap_or(0).min(config.poll_max_wait));
    let limit = p.limit.unwrap_or(config.poll_max_publications).clamp(1, config.poll_max_publications);
    state.metrics.request(if wait.is_zero() { TransportKind::Poll } else { TransportKind::LongPoll });
    let deadline = Instant::now() + wait;
    // Held while the poll waits, released when dropped: on every way the request ends,
    // including a client that goes away mid-wait (the server then drops this future).
    let mut waiter: Option<Waiter> = None;
    let found = loop {
        let found = read(&state, &p.channels, &mut p.cursor, limit).await?;
        let nothing = found.publications.is_empty() && found.unrecovered.is_empty();
        if !nothing || Instant::now() >= deadline {
            break found;
        }
        match &waiter {
            // Register first, then read again: a publication between the two reads is seen.
            // A held poll is a connection: it takes a place in the limits (total, IP, user).
            None => {
                let mut ticket = state.admission.admit(ip.0).map_err(HttpError::connection_limit)?;
                ticket.set_user(&identity.user).map_err(HttpError::connection_limit)?;
                waiter = Some(Waiter::register(&state, &p.channels, ticket).await?);
            }
            Some(w) => {
                let mut shutdown = state.shutdown.subscribe();
                tokio::select! {
                    _ = w.outbox.ready() => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = shutdown.changed() => {}
                }
                if *shutdown.borrow() {
                    return Ok(no_content(&p.cursor));
                }
                // Drain the wake-up queue so the next wait blocks again.
                let _ = w.outbox.take(&mut Vec::new());
            }
        }
    };
    drop(waiter);
    if found.publications.is_empty() && found.unrecovered.is_empty() {
        return Ok(no_content(&p.cursor));
    }
    // Publish to answer, as every transport measures it (for a short poll that includes the wait
    // for the next poll: the technique's own latency).
    if let Some(oldest) = found.publications.iter().map(|p| p.published_at).min() {
        state.metrics.fanout_latency.observe(oldest.elapsed());
    }
    state.metrics.messages_out.add(found.publications.len() as u64);
    Ok(answer(&p.cursor, &found))
}

/// Reads every channel's publications after its cursor position, advancing the cursor.
async fn read(
    state: &AppState,
    channels: &[ChannelName],
    cursor: &mut Cursor,
    limit: usize,
) -> Result<Found, HttpError> {
    let mut found = Found { publications: Vec::new(), unrecovered: Vec::new(), more: false };
    for channel in channels {
        let remaining = limit.saturating_sub(found.publications.len());
        let since = cursor.get(channel.as_str()).cloned();
        let query = HistoryQuery {
            since: since.clone(),
            limit: if since.is_some() { remaining + 1 } else { 0 },
            reverse: false,
        };
        let history = state.broker.history(channel, query).await?;
        let rec = recover(since.as_ref(), history, remaining);
        // A channel the cursor did not hold simply starts here; only a lost position is reported.
        if !rec.recovered && since.is_some() {
            found.unrecovered.push(channel.clone());
        }
        let last = rec.publications.last().map_or(rec.offset, |p| p.offset);
        cursor.advance(channel.as_str(), &rec.epoch, last);
        found.more |= rec.truncated;
        found.publications.extend(rec.publications);
    }
    Ok(found)
}

/// A held long poll's place in the hub: only a wake-up (its outbox is drained, never read).
/// Dropping it unsubscribes, so no way out of a request can leak a subscriber.
struct Waiter {
    state: Arc<AppState>,
    conn: ConnId,
    outbox: Arc<Outbox>,
    channels: Vec<ChannelName>,
    _ticket: Ticket,
    _gauge: ConnectionGuard,
}

impl Waiter {
    async fn register(
        state: &Arc<AppState>,
        channels: &[ChannelName],
        ticket: Ticket,
    ) -> Result<Self, HttpError> {
        let config = &state.config;
        let outbox = Arc::new(Outbox::new(config.outbound_queue, config.outbound_queue_bytes));
        let mut waiter = Waiter {
            state: state.clone(),
            conn: next_conn_id(),
            outbox,
            channels: Vec::new(),
            _ticket: ticket,
            _gauge: state.metrics.held(TransportKind::LongPoll),
        };
        for c in channels {
            // Pushed before the await: a failure or a dropped request still releases it.
            waiter.channels.push(c.clone());
            state.subscribe_local(c, waiter.conn, waiter.outbox.clone()).await?;
        }
        Ok(waiter)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        for c in &self.channels {
            self.state.unsubscribe_local(c, self.conn);
        }
    }
}

fn cursor_header(cursor: &Cursor) -> (header::HeaderName, HeaderValue) {
    let value = HeaderValue::from_str(&cursor.encode()).unwrap_or(HeaderValue::from_static(""));
    (header::HeaderName::from_static(CURSOR_HEADER), value)
}

fn no_content(cursor: &Cursor) -> Response {
    (StatusCode::NO_CONTENT, [cursor_header(cursor)]).into_response()
}

fn answer(cursor: &Cursor, found: &Found) -> Response {
    let size: usize = found.publications.iter().map(|p| p.object().len() + 1).sum();
    let mut buf = BytesMut::with_capacity(size + 256);
    buf.put_slice(b"{\"publications\":[");
    for (i, p) in found.publications.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(p.object());
    }
    let encoded = cursor.encode();
    buf.put_slice(format!("],\"cursor\":\"{encoded}\"").as_bytes());
    if found.more {
        buf.put_slice(b",\"more\":true");
    }
    if !found.unrecovered.is_empty() {
        let names = serde_json::to_string(&found.unrecovered).unwrap_or_default();
        buf.put_slice(format!(",\"recovered\":false,\"unrecovered\":{names}").as_bytes());
    }
    buf.put_u8(b'}');
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json")), cursor_header(cursor)],
        buf.freeze(),
    )
        .into_response()
}
