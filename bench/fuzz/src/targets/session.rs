//! The session state machine: sequences of client frames (text and binary) fed to a `Session`,
//! its operations answered as a driver would (successes, broker failures, refusals), live
//! publications delivered in and out of order, and time moved on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard::Config;
use switchboard::app_proxy::AppError;
use switchboard::broker::{BrokerError, HistoryResult, PublishResult};
use switchboard::config::ChannelOptions;
use switchboard::model::{Delivery, Payload, Publication, StreamTop};
use switchboard::rules::{Denied, Rules};
use switchboard::session::{Now, Op, OpResult, Output, Session, SessionConfig};
use switchboard_protocol::frame::{parse_binary_frame, parse_client_frame};
use switchboard_protocol::{ChannelName, ErrorCode};
use tokio::time::Instant;

use crate::Target;
use crate::rng::{Rng, hash};

/// Frames in one input are separated by this byte.
const SEP: u8 = 0x1e;
/// Most frames read from one input.
const MAX_FRAMES: usize = 64;
/// Rounds of answering operations after each frame.
const MAX_ROUNDS: usize = 8;

/// Sessions.
pub struct Sessions {
    rules: Arc<Rules>,
    config: SessionConfig,
}

impl Sessions {
    /// Small limits, so inputs reach them; a namespace with presence events and one without
    /// client publishing.
    pub fn new() -> Self {
        let mut c = Config { max_subscriptions: 4, max_publication_bytes: 256, ..Config::default() };
        c.namespaces.insert("chat".into(), ChannelOptions { join_leave: true, ..ChannelOptions::default() });
        c.namespaces.insert(
            "feed".into(),
            ChannelOptions { client_publish: false, history_size: 0, ..ChannelOptions::default() },
        );
        let config = SessionConfig::from_config(&c, true);
        Self { rules: Arc::new(Rules::new(Arc::new(c))), config }
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

fn publication(channel: &ChannelName, epoch: &str, offset: u64) -> Arc<Publication> {
    Arc::new(Publication::new(
        channel.clone(),
        offset,
        epoch.into(),
        Payload::Json(Bytes::from(offset.to_string())),
        None,
    ))
}

/// Answers the operations a session asked for; the input's own bytes pick which answers fail.
fn answer(s: &mut Session, rng: &mut Rng, subscribed: &mut Vec<ChannelName>) {
    for _ in 0..MAX_ROUNDS {
        let mut ops = Vec::new();
        while let Some(out) = s.poll_output() {
            if let Output::Op(id, op) = out {
                ops.push((id, op));
            }
        }
        if ops.is_empty() {
            return;
        }
        for (id, op) in ops {
            let epoch = if rng.chance(1, 8) { "e2" } else { "e1" };
            let fail = rng.chance(1, 6);
            let result = match *op {
                Op::Claim { .. } => Some(OpResult::Claimed),
                Op::Subscribe { channel, .. } | Op::History { channel, .. } => {
                    subscribed.push(channel.clone());
                    Some(OpResult::History(if fail {
                        Err(BrokerError::Unavailable("down".into()))
                    } else {
                        let top = 1 + rng.below(5) as u64;
                        let from = rng.below(top as usize + 1) as u64;
                        Ok(HistoryResult {
                            top: StreamTop { epoch: epoch.into(), offset: top },
                            publications: (from..=top)
                                .filter(|o| *o > 0)
                                .map(|o| publication(&channel, epoch, o))
                                .collect(),
                        })
                    }))
                }
                Op::Publish(_) => Some(OpResult::Published(if fail {
                    Err(BrokerError::Backend("no".into()))
                } else {
                    Ok(PublishResult {
                        epoch: epoch.into(),
                        offset: rng.below(10) as u64,
                        duplicate: rng.chance(1, 4),
                    })
                })),
                Op::Signal { .. } => Some(OpResult::Refused(Denied {
                    code: ErrorCode::PermissionDenied,
                    message: "not in the room".into(),
                })),
                Op::Presence { .. } => Some(OpResult::Presence(if fail {
                    Err(BrokerError::Unavailable("down".into()))
                } else {
                    Ok(Vec::new())
                })),
                Op::Rpc(_) => Some(OpResult::Rpc(Err(AppError::NotConfigured))),
                Op::Unsubscribe { .. } | Op::PresenceAdd { .. } | Op::PresenceRemove { .. } => None,
            };
            if let Some(result) = result {
                s.handle_result(id, result);
            }
        }
    }
}

impl Target for Sessions {
    fn name(&self) -> &'static str {
        "session"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        let frames = [
            r#"{"id":1,"connect":{"name":"ann"}}"#,
            r#"{"id":2,"subscribe":{"channel":"chat:lobby"}}"#,
            r#"{"id":3,"subscribe":{"channel":"news","since":{"epoch":"e1","offset":2},"recover":true}}"#,
            r#"{"id":4,"publish":{"channel":"chat:lobby","data":{"t":"hi"},"idempotency_key":"k"}}"#,
            r#"{"id":5,"history":{"channel":"news","limit":3,"since":{"epoch":"e1","offset":1}}}"#,
            r#"{"id":6,"presence":{"channel":"chat:lobby"}}"#,
            r#"{"id":7,"rpc":{"method":"m","data":{}}}"#,
            r#"{"id":8,"publish":{"channel":"feed:x","data":1}}"#,
            r#"{"id":9,"refresh":{"token":"t"}}"#,
            r#"{"id":10,"unsubscribe":{"channel":"chat:lobby"}}"#,
            r#"{"id":11,"ping":{}}"#,
            r#"{"pong":{}}"#,
        ];
        let mut corpus = vec![frames.join("\x1e").into_bytes()];
        // Connect, then one command: short inputs that reach each command quickly.
        corpus.extend(frames[1..].iter().map(|f| format!("{}\x1e{f}", frames[0]).into_bytes()));
        corpus.push(
            b"{\"id\":1,\"connect\":{}}\x1e{\"id\":2,\"publish\":{\"channel\":\"b\"}}\n\x00\x01".to_vec(),
        );
        corpus
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"\x1e",
            b"{\"id\":1,\"connect\":{}}",
            b"{\"id\":2,\"subscribe\":{\"channel\":\"chat:a\"}}",
            b"{\"pong\":{}}",
            b"\"channel\":\"$user:x\"",
            b"\"channel\":\"chat:b\"",
            b"\"session\":\"c1.x\"",
            b"\"since\":{\"epoch\":\"e2\",\"offset\":9}",
            b"\"limit\":",
            b"\"recover\":true",
        ]
    }

    fn run(&mut self, input: &[u8]) {
        let mut rng = Rng::new(hash(input));
        let mut now = Now { instant: Instant::now(), unix: 1_000 };
        let mut s = Session::new(self.rules.clone(), self.config.clone(), "c1".into(), now);
        let mut subscribed = Vec::new();
        for frame in input.split(|b| *b == SEP).take(MAX_FRAMES) {
            let parsed = match std::str::from_utf8(frame) {
                Ok(text) => parse_client_frame(text),
                Err(_) => parse_binary_frame(&Bytes::copy_from_slice(frame)),
            };
            match parsed {
                Ok(f) => s.handle_frame(now, f),
                Err(e) => s.handle_frame_error(e),
            }
            answer(&mut s, &mut rng, &mut subscribed);
            if !subscribed.is_empty() && rng.chance(1, 2) {
                // A live publication, sometimes out of order or from another epoch.
                let channel = subscribed[rng.below(subscribed.len())].clone();
                let epoch = if rng.chance(1, 10) { "e9" } else { "e1" };
                s.handle_delivery(Delivery::Publication(publication(&channel, epoch, rng.below(12) as u64)));
            }
            if rng.chance(1, 5) {
                let secs = rng.below(90) as u64;
                now.instant += Duration::from_secs(secs);
                now.unix += secs;
                s.handle_timeout(now);
            }
            if rng.chance(1, 50) {
                s.handle_overflow();
            }
            answer(&mut s, &mut rng, &mut subscribed);
            if s.is_closed() {
                break;
            }
        }
        let _ = s.close();
    }
}
