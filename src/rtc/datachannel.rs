//! The channel protocol over a WebRTC data channel: the transport adapter between a
//! [`Driver`] and the engine. Messages on `switchboard` are the WebSocket protocol's frames (text
//! JSON, or binary); datagram subscriptions go out on `switchboard-unreliable`. Like `/ws`, this
//! only frames: the session does the rest.

use std::time::Duration;

use bytes::Bytes;
use switchboard_protocol::frame::{parse_binary_frame, parse_client_frame};
use switchboard_protocol::{Disconnect, encode};
use tokio::sync::mpsc;

use super::{DcEvent, RtcService};
use crate::connection::Driver;
use crate::connection::pump::{self, Inbound, Outgoing, Transport};
use crate::model::Message;

/// How long the client has to open the `switchboard` channel after the answer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing session lets its last message reach the client before the peer goes.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Runs the session of peer `peer` until either side ends it, then closes the peer.
pub async fn run(rtc: RtcService, peer: String, mut events: mpsc::Receiver<DcEvent>, driver: Driver) {
    let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
        loop {
            match events.recv().await {
                Some(DcEvent::Open) => return true,
                Some(DcEvent::Closed) | None => return false,
                Some(_) => {}
            }
        }
    })
    .await;
    if opened != Ok(true) {
        rtc.close(peer).await;
        return driver.finish();
    }
    let max_frame = driver.state().config.max_frame_bytes;
    let transport = DcTransport { rtc, peer, events, max_frame, pending: Vec::new() };
    pump::run(transport, driver).await;
}

/// The data channel framing: one message per frame, datagram subscriptions on the unreliable
/// channel.
struct DcTransport {
    rtc: RtcService,
    peer: String,
    events: mpsc::Receiver<DcEvent>,
    max_frame: usize,
    /// (reliable, message) in order.
    pending: Vec<(bool, Message)>,
}

impl Transport for DcTransport {
    fn kind(&self) -> crate::metrics::TransportKind {
        crate::metrics::TransportKind::WebRtc
    }

    fn frame(&mut self, out: Outgoing, datagram: bool) -> Result<(), Disconnect> {
        self.pending.push((!datagram, out.message()));
        Ok(())
    }

    fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    async fn flush(&mut self) -> Result<u64, ()> {
        let mut bytes = 0;
        for (reliable, message) in self.pending.drain(..) {
            bytes += message.bytes.len() as u64;
            if !self.rtc.send(&self.peer, reliable, message.binary, message.bytes).await {
                return Err(());
            }
        }
        Ok(bytes)
    }

    async fn recv(&mut self) -> Inbound {
        match self.events.recv().await {
            Some(DcEvent::Message { binary, data }) => {
                let n = data.len();
                if n > self.max_frame {
                    return Inbound::End(Disconnect { code: 1009, reason: "message too big" });
                }
                let frame = if binary {
                    parse_binary_frame(&Bytes::from(data))
                } else {
                    match std::str::from_utf8(&data) {
                        Ok(text) => parse_client_frame(text),
                        Err(_) => return Inbound::End(Disconnect::BAD_REQUEST),
                    }
                };
                Inbound::Frame(frame, n)
            }
            // The engine's send buffer for this peer is full: it stopped reading.
            Some(DcEvent::Blocked) => Inbound::End(Disconnect::SLOW_CONSUMER),
            Some(DcEvent::Open) => Inbound::Nothing,
            Some(DcEvent::Closed) | None => Inbound::Gone,
        }
    }

    /// Says why (`{"disconnect": {"code", "reason"}}`, as on WebTransport), then closes the peer.
    async fn close(self, d: Disconnect) {
        self.rtc.send(&self.peer, true, false, Bytes::from(encode::disconnect(d))).await;
        tokio::time::sleep(CLOSE_GRACE).await;
        self.rtc.close(self.peer).await;
    }
}
