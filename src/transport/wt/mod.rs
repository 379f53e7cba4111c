//! `/wt`: the JSON protocol over WebTransport (HTTP/3, QUIC), on UDP at the TCP listener's port.
//!
//! The client opens one bidirectional stream and speaks the WebSocket protocol on it, in
//! length-prefixed frames ([`codec`]). Channels whose namespace enables `datagrams` can be
//! subscribed with `"datagram": true`: their publications then go out as QUIC datagrams,
//! unreliable and latest-wins; one that does not fit the connection's datagram size goes on the
//! stream instead. Like `/ws`, this adapter only frames: the [`pump`] runs the session, and each
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
use switchboard_protocol::encode;
use wtransport::{Connection, RecvStream, SendStream, VarInt};

use crate::connection::Driver;
use crate::connection::pump::{self, Inbound, Outgoing, Transport};
use crate::http::HttpError;
use crate::state::AppState;

pub use endpoint::{Advert, WtEndpoint, WtError};

/// Most bytes taken from the protocol stream per read. Read as QUIC's own chunks (no copy
/// buffer of ours), into `inbound`, which grows only when a frame arrives: an idle session
/// holds neither (they were 4 KiB each).
const READ_CHUNK: usize = 4 * 1024;
/// How long a new session may take to open its protocol stream.
const STREAM_WAIT: Duration = Duration::from_secs(10);
/// How long a closing session waits for its last frame to be acknowledged.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// A session that opens more streams than its limit.
pub const TOO_MANY_STREAMS: Disconnect = Disconnect { code: 3500, reason: "too many streams" };
/// A session that never opened its protocol stream.
pub const NO_STREAM: Disconnect = Disconnect { code: 3500, reason: "no protocol stream" };

/// `/wt/cert-hash`, answered from the endpoint's advert (`None`: WebTransport is off).
pub fn routes(advert: Option<Arc<Advert>>) -> axum::Router<Arc<AppState>> {
    axum::Router::new().route("/wt/cert-hash", axum::routing::get(move || cert_hash(advert.clone())))
}

/// `GET /wt/cert-hash`: the SHA-256 of the self-signed HTTP/3 certificate, for a browser's
/// `serverCertificateHashes`; `404` (code 108) when WebTransport is off or uses a configured
/// certificate.
async fn cert_hash(advert: Option<Arc<Advert>>) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let Some((advert, (hash, not_after))) = advert.and_then(|a| a.dev_cert().map(|c| (a.clone(), c))) else {
        let e = HttpError {
            status: Some(StatusCode::NOT_FOUND),
            ..HttpError::new(
                switchboard_protocol::ErrorCode::NotAvailable,
                "no self-signed WebTransport certificate",
            )
        };
        return e.into_response();
    };
    let body = serde_json::json!({
        "algorithm": "sha-256",
        "hash": hash,
        "not_after": not_after,
        "port": advert.port,
        "path": endpoint::PATH,
    });
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body.to_string())
        .into_response()
}

/// Runs one accepted session until it ends.
/// `lab`: the transport lab session it is in, whose impairment its datagrams get.
pub async fn run(conn: Connection, driver: Driver, max_streams: u32, lab: Option<Arc<crate::lab::Meter>>) {
    let (send, recv) = match tokio::time::timeout(STREAM_WAIT, conn.accept_bi()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(_)) => return driver.finish(),
        Err(_) => {
            driver.finish();
            return close(&conn, None, BytesMut::new(), NO_STREAM).await;
        }
    };
    let max_frame = driver.state().config.max_frame_bytes;
    let transport = WtTransport {
        conn,
        send,
        recv,
        max_streams,
        refused: 0,
        max_frame,
        inbound: BytesMut::new(),
        out: BytesMut::new(),
        datagram: BytesMut::new(),
        lab,
    };
    pump::run(transport, driver).await;
}

/// The WebTransport framing of a session: length-prefixed frames on its one bidirectional
/// stream, datagrams for datagram subscriptions.
struct WtTransport {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    max_streams: u32,
    refused: u32,
    max_frame: usize,
    inbound: BytesMut,
    out: BytesMut,
    datagram: BytesMut,
    lab: Option<Arc<crate::lab::Meter>>,
}

impl Transport for WtTransport {
    fn kind(&self) -> crate::metrics::TransportKind {
        crate::metrics::TransportKind::WebTransport
    }

    fn frame(&mut self, out: Outgoing, datagram: bool) -> Result<(), Disconnect> {
        let message = out.message();
        let kind = if message.binary { codec::BINARY } else { codec::TEXT };
        if !(datagram && self.send_datagram(kind, &message.bytes)) {
            codec::put_frame(&mut self.out, kind, &message.bytes);
        }
        Ok(())
    }

    fn has_pending(&self) -> bool {
        !self.out.is_empty()
    }

    async fn flush(&mut self) -> Result<u64, ()> {
        let bytes = self.out.len() as u64;
        self.send.write_all(&self.out).await.map_err(|_| ())?;
        self.out.clear();
        Ok(bytes)
    }

    async fn recv(&mut self) -> Inbound {
        match codec::decode(&mut self.inbound, self.max_frame) {
            Ok(Some(frame)) => return Inbound::Frame(frame, 0),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "webtransport stream error");
                self.inbound.clear();
                return Inbound::End(e.disconnect());
            }
        }
        tokio::select! {
            // Cancel-safe (quinn's documentation says so).
            read = self.recv.quic_stream_mut().read_chunk(READ_CHUNK, true) => match read {
                Ok(Some(chunk)) => {
                    let n = chunk.bytes.len();
                    self.inbound.extend_from_slice(&chunk.bytes);
                    // The frames in it are decoded on the next calls.
                    Inbound::Read(n)
                }
                // The client finished or reset its stream: the session is over.
                Ok(None) | Err(_) => {
                    self.conn.close(VarInt::from_u32(0), b"");
                    Inbound::Gone
                }
            },
            dg = self.conn.receive_datagram() => match dg {
                Ok(dg) => {
                    let payload: Bytes = dg.payload();
                    let n = payload.len();
                    Inbound::Frame(codec::decode_datagram(payload), n)
                }
                Err(_) => Inbound::Gone,
            },
            bi = self.conn.accept_bi() => match bi {
                Ok((mut send, recv)) => {
                    let _ = send.reset(VarInt::from_u32(TOO_MANY_STREAMS.code.into()));
                    recv.stop(VarInt::from_u32(TOO_MANY_STREAMS.code.into()));
                    self.refuse_stream()
                }
                Err(_) => Inbound::Gone,
            },
            uni = self.conn.accept_uni() => match uni {
                Ok(recv) => {
                    recv.stop(VarInt::from_u32(TOO_MANY_STREAMS.code.into()));
                    self.refuse_stream()
                }
                Err(_) => Inbound::Gone,
            },
        }
    }

    async fn close(mut self, d: Disconnect) {
        let out = std::mem::take(&mut self.out);
        close(&self.conn, Some(&mut self.send), out, d).await;
    }
}

impl WtTransport {
    /// The protocol needs one stream; others are refused, and a session that keeps opening them
    /// past `webtransport_max_streams` is closed.
    fn refuse_stream(&mut self) -> Inbound {
        self.refused += 1;
        if self.refused > self.max_streams { Inbound::End(TOO_MANY_STREAMS) } else { Inbound::Nothing }
    }

    /// Sends a publication as a datagram; `false` when it does not fit (the caller then writes it
    /// on the stream) or the peer takes none.
    fn send_datagram(&mut self, kind: u8, body: &[u8]) -> bool {
        match self.conn.max_datagram_size() {
            Some(max) if body.len() < max => {
                codec::put_datagram(&mut self.datagram, kind, body);
                if let Some(meter) = &self.lab {
                    // The lab's impairment: a lost datagram is gone (as sent, to the caller);
                    // a delayed one leaves later from a task of its own.
                    let Some(delay) = meter.datagram_delay() else { return true };
                    if !delay.is_zero() {
                        let (conn, bytes) = (self.conn.clone(), self.datagram.split().freeze());
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            let _ = conn.send_datagram(&bytes[..]);
                        });
                        return true;
                    }
                }
                self.conn.send_datagram(&self.datagram[..]).is_ok()
            }
            _ => false,
        }
    }
}

/// Says why on the stream (`{"disconnect": {"code", "reason"}}`, for browsers, which do not see
/// a QUIC close's code), then closes the session with the code. Closing at once would race the
/// page reading that frame (a browser drops unread stream data when the connection goes), so it
/// waits, up to `CLOSE_GRACE`, for the client to close first.
async fn close(conn: &Connection, send: Option<&mut SendStream>, mut out: BytesMut, d: Disconnect) {
    if let Some(send) = send {
        codec::put_frame(&mut out, codec::TEXT, &encode::disconnect(d));
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            if send.write_all(&out).await.is_ok() && send.finish().await.is_ok() {
                conn.closed().await;
            }
        })
        .await;
    }
    conn.close(VarInt::from_u32(d.code.into()), d.reason.as_bytes());
}
