//! `/wt`: the JSON protocol over WebTransport (HTTP/3, QUIC), on UDP at the TCP listener's port.
//!
//! The client opens one bidirectional stream and speaks the WebSocket protocol on it, in
//! length-prefixed frames ([`codec`]). Channels whose namespace enables `datagrams` can be
//! subscribed with `"datagram": true`: their publications then go out as QUIC datagrams,
//! unreliable and latest-wins; one that does not fit the connection's datagram size goes on the
//! stream instead. Like `/ws`, this adapter only frames: a [`Driver`] runs the session, and each
//! wake-up's output is written in one stream write.
//!
//! - [`codec`]: the framing, sans-IO.
//! - [`cert`]: configured or self-signed (browser-pinnable) certificates.
//! - [`endpoint`]: the QUIC endpoint, its accept loop and certificate renewal.

pub mod cert;
pub mod codec;
pub mod endpoint;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_protocol::Disconnect;
use wtransport::{Connection, RecvStream, SendStream, VarInt};

use super::driver::Driver;
use crate::broker::StreamTop;
use crate::model::{Delivery, Publication};
use crate::session::Output;

pub use endpoint::{Advert, WtEndpoint, WtError};

/// Read chunk per session: small, because most sessions are idle subscribers.
const READ_BUFFER: usize = 4 * 1024;
/// How long a new session may take to open its protocol stream.
const STREAM_WAIT: Duration = Duration::from_secs(10);
/// How long a closing session waits for its last frame to be acknowledged.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// A session that opens more streams than its limit.
pub const TOO_MANY_STREAMS: Disconnect = Disconnect { code: 3500, reason: "too many streams" };
/// A session that never opened its protocol stream.
pub const NO_STREAM: Disconnect = Disconnect { code: 3500, reason: "no protocol stream" };

/// Runs one accepted session until it ends.
pub async fn run(conn: Connection, driver: Driver, max_streams: u32) {
    let (send, recv) = match tokio::time::timeout(STREAM_WAIT, conn.accept_bi()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(_)) => return driver.finish(),
        Err(_) => {
            close(&conn, None, BytesMut::new(), NO_STREAM).await;
            return driver.finish();
        }
    };
    Session { conn, send, recv, max_streams, refused: 0 }.run(driver).await;
}

struct Session {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    max_streams: u32,
    refused: u32,
}

impl Session {
    async fn run(mut self, mut driver: Driver) {
        let metrics = driver.state().metrics.clone();
        let max_frame = driver.state().config.max_frame_bytes;
        let mut inbound = BytesMut::with_capacity(READ_BUFFER);
        let mut chunk = vec![0u8; READ_BUFFER];
        let mut out = BytesMut::new();
        let mut datagram = BytesMut::new();
        loop {
            let mut written = 0u64;
            let mut oldest = None;
            while let Some(output) = driver.next_output() {
                match output {
                    Output::Reply(reply) => {
                        codec::put_frame(&mut out, codec::TEXT, reply.to_json().as_bytes())
                    }
                    Output::History { id, top, publications } => {
                        put_history(&mut out, id, &top, &publications);
                    }
                    Output::Deliver(Delivery::Publication(p)) => {
                        oldest.get_or_insert(p.published_at);
                        let (kind, body) = publication_frame(&p);
                        let sent =
                            driver.datagram(&p.channel) && self.send_datagram(&mut datagram, kind, body);
                        if !sent {
                            codec::put_frame(&mut out, kind, body);
                        }
                    }
                    Output::Deliver(Delivery::Presence(e)) => {
                        let line = e.ndjson_line();
                        codec::put_frame(&mut out, codec::TEXT, &line[..line.len() - 1]);
                    }
                    Output::Ping => codec::put_frame(&mut out, codec::TEXT, b"{\"ping\":{}}"),
                    Output::Disconnect(d) => {
                        close(&self.conn, Some(&mut self.send), out, d).await;
                        return driver.finish();
                    }
                    Output::Op(..) => continue,
                }
                written += 1;
            }
            if !out.is_empty() {
                metrics.bytes_out.add(out.len() as u64);
                // A client that stops reading while its outbox overflows is cut off, not waited on.
                let ok = tokio::select! {
                    r = self.send.write_all(&out) => r.is_ok(),
                    _ = driver.cut_off() => {
                        close(&self.conn, None, BytesMut::new(), Disconnect::SLOW_CONSUMER).await;
                        return driver.finish();
                    }
                };
                if !ok {
                    return driver.finish();
                }
                out.clear();
            }
            if written > 0 {
                metrics.messages_out.add(written);
                if let Some(at) = oldest {
                    metrics.fanout_latency.observe(at.elapsed());
                }
            }
            tokio::select! {
                read = self.recv.read(&mut chunk) => match read {
                    Ok(Some(n)) => {
                        metrics.bytes_in.add(n as u64);
                        inbound.extend_from_slice(&chunk[..n]);
                        loop {
                            match codec::decode(&mut inbound, max_frame) {
                                Ok(Some(frame)) => driver.on_frame(frame),
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::debug!(error = %e, "webtransport stream error");
                                    inbound.clear();
                                    driver.end(e.disconnect());
                                    break;
                                }
                            }
                        }
                    }
                    // The client finished or reset its stream: the session is over.
                    Ok(None) | Err(_) => {
                        self.conn.close(VarInt::from_u32(0), b"");
                        return driver.finish();
                    }
                },
                dg = self.conn.receive_datagram() => match dg {
                    Ok(dg) => {
                        let payload: Bytes = dg.payload();
                        metrics.bytes_in.add(payload.len() as u64);
                        driver.on_frame(codec::decode_datagram(payload));
                    }
                    Err(_) => return driver.finish(),
                },
                bi = self.conn.accept_bi() => match bi {
                    Ok((mut send, recv)) => {
                        let _ = send.reset(VarInt::from_u32(TOO_MANY_STREAMS.code.into()));
                        recv.stop(VarInt::from_u32(TOO_MANY_STREAMS.code.into()));
                        self.refuse_stream(&mut driver);
                    }
                    Err(_) => return driver.finish(),
                },
                uni = self.conn.accept_uni() => match uni {
                    Ok(recv) => {
                        recv.stop(VarInt::from_u32(TOO_MANY_STREAMS.code.into()));
                        self.refuse_stream(&mut driver);
                    }
                    Err(_) => return driver.finish(),
                },
                wake = driver.wait() => driver.on_wake(wake),
            }
        }
    }

    /// The protocol needs one stream; others are refused, and a session that keeps opening them
    /// past `webtransport_max_streams` is closed.
    fn refuse_stream(&mut self, driver: &mut Driver) {
        self.refused += 1;
        if self.refused > self.max_streams {
            driver.end(TOO_MANY_STREAMS);
        }
    }

    /// Sends a publication as a datagram; `false` when it does not fit (the caller then writes it
    /// on the stream) or the peer takes none.
    fn send_datagram(&self, buf: &mut BytesMut, kind: u8, body: &[u8]) -> bool {
        match self.conn.max_datagram_size() {
            Some(max) if body.len() < max => {
                codec::put_datagram(buf, kind, body);
                self.conn.send_datagram(&buf[..]).is_ok()
            }
            _ => false,
        }
    }
}

/// A publication's shared WebSocket encoding, as a frame kind and body.
fn publication_frame(p: &Publication) -> (u8, &[u8]) {
    match p.ws_message() {
        axum::extract::ws::Message::Binary(b) => (codec::BINARY, &b[..]),
        _ => {
            let line = p.ndjson_line();
            (codec::TEXT, &line[..line.len() - 1])
        }
    }
}

fn put_history(out: &mut BytesMut, id: u64, top: &StreamTop, publications: &[Arc<Publication>]) {
    let mut body = BytesMut::new();
    body.extend_from_slice(format!("{{\"id\":{id},\"history\":").as_bytes());
    super::ws::put_history_body(&mut body, top, publications);
    body.extend_from_slice(b"}");
    codec::put_frame(out, codec::TEXT, &body);
}

/// Says why on the stream (`{"disconnect": {"code", "reason"}}`, for browsers, which do not see
/// a QUIC close's code), then closes the session with the code. Closing at once would race the
/// page reading that frame (a browser drops unread stream data when the connection goes), so it
/// waits, up to `CLOSE_GRACE`, for the client to close first.
async fn close(conn: &Connection, send: Option<&mut SendStream>, mut out: BytesMut, d: Disconnect) {
    if let Some(send) = send {
        let body = serde_json::json!({"disconnect": {"code": d.code, "reason": d.reason}}).to_string();
        codec::put_frame(&mut out, codec::TEXT, body.as_bytes());
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            if send.write_all(&out).await.is_ok() && send.finish().await.is_ok() {
                conn.closed().await;
            }
        })
        .await;
    }
    conn.close(VarInt::from_u32(d.code.into()), d.reason.as_bytes());
}
