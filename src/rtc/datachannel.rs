//! The channel protocol over a WebRTC data channel: the transport adapter between a
//! [`Driver`] and the engine. Messages on `switchboard` are the WebSocket protocol's frames (text
//! JSON, or binary); datagram subscriptions go out on `switchboard-unreliable`. Like `/ws`, this
//! only frames: the session does the rest.

use std::time::Duration;

use axum::extract::ws::Message;
use bytes::Bytes;
use switchboard_protocol::Disconnect;
use switchboard_protocol::frame::{parse_binary_frame, parse_client_frame};
use tokio::sync::mpsc;

use super::{DcEvent, RtcService};
use crate::model::Delivery;
use crate::session::Output;
use crate::transport::driver::Driver;

/// How long the client has to open the `switchboard` channel after the answer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing session lets its last message reach the client before the peer goes.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Runs the session of peer `peer` until either side ends it, then closes the peer.
pub async fn run(rtc: RtcService, peer: String, mut events: mpsc::Receiver<DcEvent>, mut driver: Driver) {
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
    let metrics = driver.state().metrics.clone();
    loop {
        let mut disconnect = None;
        let mut sent = 0u64;
        while let Some(output) = driver.next_output() {
            let (reliable, message) = match output {
                Output::Reply(reply) => (true, Message::Text(reply.to_json().into())),
                Output::History { id, top, publications } => {
                    (true, Message::Text(crate::transport::ws::history_reply(id, &top, &publications)))
                }
                Output::Deliver(Delivery::Publication(p)) => {
                    (!driver.datagram(&p.channel), p.ws_message().clone())
                }
                Output::Deliver(Delivery::Presence(e)) => (true, e.ws_message()),
                Output::Ping => (true, Message::Text("{\"ping\":{}}".into())),
                Output::Disconnect(d) => {
                    disconnect = Some(d);
                    break;
                }
                Output::Op(..) => continue,
            };
            let (binary, data) = match message {
                Message::Binary(b) => (true, b),
                Message::Text(t) => (false, Bytes::from(t)),
                _ => continue,
            };
            metrics.bytes_out.add(data.len() as u64);
            sent += 1;
            if !rtc.send(&peer, reliable, binary, data).await {
                return driver.finish();
            }
        }
        metrics.messages_out.add(sent);
        if let Some(d) = disconnect {
            return close(rtc, peer, driver, d).await;
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(DcEvent::Message { binary, data }) => {
                    metrics.bytes_in.add(data.len() as u64);
                    if data.len() > driver.state().config.max_frame_bytes {
                        driver.end(Disconnect { code: 1009, reason: "message too big" });
                        continue;
                    }
                    let frame = if binary {
                        parse_binary_frame(&Bytes::from(data))
                    } else {
                        match std::str::from_utf8(&data) {
                            Ok(text) => parse_client_frame(text),
                            Err(_) => { driver.end(Disconnect::BAD_REQUEST); continue; }
                        }
                    };
                    driver.on_frame(frame);
                }
                Some(DcEvent::Blocked) => {
                    metrics.slow_consumers.add(1);
                    driver.end(Disconnect::SLOW_CONSUMER);
                }
                Some(DcEvent::Open) => {}
                Some(DcEvent::Closed) | None => return driver.finish(),
            },
            wake = driver.wait() => driver.on_wake(wake),
        }
    }
}

/// Says why (`{"disconnect": {"code", "reason"}}`, as on WebTransport), then closes the peer.
async fn close(rtc: RtcService, peer: String, driver: Driver, d: Disconnect) {
    driver.finish();
    let body = serde_json::json!({"disconnect": {"code": d.code, "reason": d.reason}}).to_string();
    rtc.send(&peer, true, false, Bytes::from(body)).await;
    tokio::time::sleep(CLOSE_GRACE).await;
    rtc.close(peer).await;
}
