//! Session unit tests: driven by hand, with simulated time.

use super::*;
use crate::broker::StreamTop;
use crate::broker::{BrokerError, HistoryQuery, HistoryResult};
use crate::config::{ChannelOptions, Config};
use crate::model::Payload;
use switchboard_protocol::frame::parse_client_frame;
use switchboard_protocol::frame::{ConnectReply, ExpiringBody, SubscribeReply, UnsubscribedBody};

fn rules(config: Config) -> Arc<Rules> {
    Arc::new(Rules::new(Arc::new(config)))
}

fn config() -> Config {
    let mut c = Config { max_subscriptions: 2, max_publication_bytes: 16, ..Config::default() };
    c.namespaces.insert("chat".into(), ChannelOptions { join_leave: true, ..ChannelOptions::default() });
    c.namespaces.insert(
        "feed".into(),
        ChannelOptions {
            client_publish: false,
            history_size: 0,
            presence: false,
            ..ChannelOptions::default()
        },
    );
    c
}

struct Harness {
    s: Session,
    now: Now,
}

impl Harness {
    fn new(config: Config) -> Self {
        let now = Now { instant: Instant::now(), unix: 1_000 };
        let sc = SessionConfig::from_config(&config, true);
        Self { s: Session::new(rules(config), sc, "c1".into(), now), now }
    }

    fn send(&mut self, text: &str) -> Vec<Output> {
        match parse_client_frame(text) {
            Ok(f) => self.s.handle_frame(self.now, f),
            Err(e) => self.s.handle_frame_error(e),
        }
        self.drain()
    }

    /// Sends a `connect` frame and completes the client id claim it asks for.
    fn connect(&mut self, text: &str) -> Vec<Output> {
        let mut out = self.send(text);
        let Some(i) =
            out.iter().position(|o| matches!(o, Output::Op(_, op) if matches!(**op, Op::Claim { .. })))
        else {
            return out;
        };
        let Output::Op(op, _) = out.remove(i) else { unreachable!() };
        self.s.handle_result(op, OpResult::Claimed);
        out.extend(self.drain());
        out
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.s.poll_output()).collect()
    }

    fn advance(&mut self, secs: u64) -> Vec<Output> {
        self.now.instant += Duration::from_secs(secs);
        self.now.unix += secs;
        self.s.handle_timeout(self.now);
        self.drain()
    }
}

fn publication(channel: &str, epoch: &str, offset: u64) -> Arc<Publication> {
    Arc::new(Publication::new(
        ChannelName::new(channel).unwrap(),
        offset,
        epoch.into(),
        Payload::Json(format!("{offset}").into()),
        None,
    ))
}

fn history(channel: &str, epoch: &str, top: u64, offsets: impl IntoIterator<Item = u64>) -> OpResult {
    OpResult::History(Ok(HistoryResult {
        top: StreamTop { epoch: epoch.into(), offset: top },
        publications: offsets.into_iter().map(|o| publication(channel, epoch, o)).collect(),
    }))
}

fn delivered(outputs: &[Output]) -> Vec<u64> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Deliver(Delivery::Publication(p)) => Some(p.offset),
            _ => None,
        })
        .collect()
}

fn subscribe_op(outputs: &[Output]) -> (OpId, HistoryQuery) {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Op(id, op) => match &**op {
                Op::Subscribe { query, .. } => Some((*id, query.clone())),
                _ => None,
            },
            _ => None,
        })
        .expect("a subscribe op")
}

fn error_code(outputs: &[Output]) -> Option<u32> {
    outputs.iter().find_map(|o| match o {
        Output::Reply(r) => match &r.body {
            ReplyBody::Error(e) => Some(e.code),
            _ => None,
        },
        _ => None,
    })
}

fn subscribe_reply(outputs: &[Output]) -> SubscribeReply {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Reply(r) => match &r.body {
                ReplyBody::Subscribe(r) => Some(r.clone()),
                _ => None,
            },
            _ => None,
        })
        .expect("a subscribe reply")
}

fn disconnect(outputs: &[Output]) -> Option<Disconnect> {
    outputs.iter().find_map(|o| match o {
        Output::Disconnect(d) => Some(*d),
        _ => None,
    })
}

#[test]
fn subscribes_from_the_top_and_delivers_live_publications_in_order_once() {
    let mut h = Harness::new(config());
    let out = h.send(r#"{"id":1,"subscribe":{"channel":"news"}}"#);
    let (op, query) = subscribe_op(&out);
    assert_eq!(query.limit, 0, "no position: only the top is needed");
    h.s.handle_result(op, history("news", "E", 7, []));
    let out = h.drain();
    let r = subscribe_reply(&out);
    assert_eq!((r.offset, r.recovered, r.replayed), (7, false, 0));
    for o in [8, 8, 9] {
        h.s.handle_delivery(Delivery::Publication(publication("news", "E", o)));
    }
    assert_eq!(delivered(&h.drain()), vec![8, 9], "the repeated 8 is dropped");
    h.s.handle_delivery(Delivery::Publication(publication("news", "E", 11)));
    assert_eq!(disconnect(&h.drain()), Some(Disconnect::INSUFFICIENT_STATE), "a gap is never silent");
}

#[test]
fn resume_holds_live_publications_until_the_replay_is_queued() {
    let mut h = Harness::new(config());
    let out = h.send(r#"{"id":1,"subscribe":{"channel":"news","since":{"epoch":"E","offset":2}}}"#);
    let (op, query) = subscribe_op(&out);
    assert_eq!(query.since.unwrap().offset, 2);
    // Live publications race the history read...
    h.s.handle_delivery(Delivery::Publication(publication("news", "E", 5)));
    h.s.handle_delivery(Delivery::Publication(publication("news", "E", 6)));
    assert!(delivered(&h.drain()).is_empty(), "held while recovering");
    // ...and the history read saw up to 5.
    h.s.handle_result(op, history("news", "E", 5, 3..=5));
    let out = h.drain();
    let r = subscribe_reply(&out);
    assert_eq!((r.offset, r.recovered, r.replayed), (2, true, 3));
    assert_eq!(delivered(&out), vec![3, 4, 5, 6]);
    assert!(matches!(out[0], Output::Reply(_)), "the reply comes before the replay");
}

#[test]
fn a_position_older_than_the_history_is_reported_not_recovered() {
    let mut h = Harness::new(config());
    let out = h.send(r#"{"id":1,"subscribe":{"channel":"news","since":{"epoch":"E","offset":2}}}"#);
    let (op, _) = subscribe_op(&out);
    h.s.handle_result(op, history("news", "E", 50, 40..=50));
    let out = h.drain();
    let r = subscribe_reply(&out);
    assert_eq!((r.recovered, r.offset, r.replayed), (false, 50, 0));
    assert!(delivered(&out).is_empty());
    h.s.handle_delivery(Delivery::Publication(publication("news", "E", 51)));
    assert_eq!(delivered(&h.drain()), vec![51]);
}

#[test]
fn joins_presence_and_leaves_it_on_close() {
    let mut h = Harness::new(config());
    let (op, _) = subscribe_op(&h.send(r#"{"id":1,"subscribe":{"channel":"chat:a"}}"#));
    h.s.handle_result(op, history("chat:a", "E", 0, []));
    let out = h.drain();
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Op(_, op) if matches!(**op, Op::PresenceAdd { announce: true, .. }))
        )
    );
    let refreshed = h.advance(20);
    assert!(
        refreshed.iter().any(
            |o| matches!(o, Output::Op(_, op) if matches!(**op, Op::PresenceAdd { announce: false, .. }))
        ),
        "presence is refreshed every presence_ttl / 3 without a new join"
    );
    let ops = h.s.close();
    assert!(matches!(ops[0], Op::PresenceRemove { announce: true, .. }));
    assert!(matches!(ops[1], Op::Unsubscribe { .. }));
}

#[test]
fn refuses_bad_subscriptions_with_stable_codes() {
    let mut h = Harness::new(config());
    assert_eq!(error_code(&h.send(r#"{"id":1,"subscribe":{"channel":"bad name"}}"#)), Some(107));
    let (op, _) = subscribe_op(&h.send(r#"{"id":2,"subscribe":{"channel":"a"}}"#));
    assert_eq!(error_code(&h.send(r#"{"id":3,"subscribe":{"channel":"a"}}"#)), Some(105));
    h.send(r#"{"id":4,"subscribe":{"channel":"b"}}"#);
    assert_eq!(error_code(&h.send(r#"{"id":5,"subscribe":{"channel":"c"}}"#)), Some(106));
    assert_eq!(error_code(&h.send(r#"{"id":6,"unsubscribe":{"channel":"zz"}}"#)), Some(110));
    assert_eq!(error_code(&h.send(r#"{"id":7,"what":{}}"#)), Some(104));
    // Unsubscribing while the replay is read: the late result is ignored.
    h.send(r#"{"id":8,"unsubscribe":{"channel":"a"}}"#);
    h.s.handle_result(op, history("a", "E", 3, []));
    assert!(h.drain().is_empty());
    assert!(!h.s.is_closed());
}

#[test]
fn refuses_bad_publishes_and_reads() {
    let mut h = Harness::new(config());
    assert_eq!(error_code(&h.send(r#"{"id":1,"publish":{"channel":"feed:x","data":1}}"#)), Some(103));
    assert_eq!(
        error_code(&h.send(r#"{"id":2,"publish":{"channel":"a","data":"01234567890123456789"}}"#)),
        Some(106)
    );
    assert_eq!(error_code(&h.send(r#"{"id":3,"publish":{"channel":"a"}}"#)), Some(107));
    assert_eq!(error_code(&h.send(r#"{"id":4,"history":{"channel":"feed:x"}}"#)), Some(108));
    assert_eq!(error_code(&h.send(r#"{"id":5,"presence":{"channel":"feed:x"}}"#)), Some(108));
    let out = h.send(r#"{"id":6,"publish":{"channel":"a","data":{"k":1},"idempotency_key":"x"}}"#);
    let Some(Output::Op(op, publish)) = out.into_iter().next() else { panic!() };
    let Op::Publish(req) = *publish else { panic!() };
    assert_eq!(req.payload, Payload::Json(r#"{"k":1}"#.into()));
    assert_eq!(req.info.as_ref().unwrap().client, "c1");
    h.s.handle_result(op, OpResult::Published(Err(BrokerError::Unavailable("down".into()))));
    assert_eq!(error_code(&h.drain()), Some(109), "a refused publish is an error, never a silent drop");
}

#[test]
fn malformed_frames_without_an_id_end_the_connection() {
    let mut h = Harness::new(config());
    assert_eq!(disconnect(&h.send("not json")), Some(Disconnect::BAD_REQUEST));
    assert!(h.send(r#"{"id":1,"ping":{}}"#).is_empty(), "closed sessions ignore input");
}

#[test]
fn pings_and_drops_a_client_that_does_not_answer() {
    let mut h = Harness::new(config());
    assert!(h.s.poll_timeout().unwrap() <= h.now.instant + Duration::from_secs(25));
    assert!(h.advance(24).is_empty());
    assert!(matches!(h.advance(1)[..], [Output::Ping]));
    h.send(r#"{"pong":{}}"#);
    assert!(matches!(h.advance(25)[..], [Output::Ping]));
    assert!(h.advance(9).is_empty());
    assert_eq!(disconnect(&h.advance(1)), Some(Disconnect::NO_PONG));
}

#[test]
fn tokens_are_required_when_configured_and_expire_on_time() {
    let secret = "s3";
    let mut h = Harness::new(Config { token_secret: secret.into(), ..config() });
    assert_eq!(
        disconnect(&h.send(r#"{"id":1,"subscribe":{"channel":"a"}}"#)),
        Some(Disconnect::UNAUTHORIZED)
    );

    let mut h = Harness::new(Config { token_secret: secret.into(), ..config() });
    let token =
        crate::policy::tests::token(secret, serde_json::json!({"sub": "al", "exp": 1_030, "subs": ["a"]}));
    let out = h.connect(&format!(r#"{{"id":1,"connect":{{"token":"{token}","name":"Al"}}}}"#));
    assert!(
        matches!(&out[0], Output::Reply(r) if matches!(&r.body, ReplyBody::Connect(c) if c.client == "c1"))
    );
    assert_eq!(h.s.client_info().unwrap().user, "al");
    assert_eq!(error_code(&h.send(r#"{"id":2,"subscribe":{"channel":"b"}}"#)), Some(103));
    assert!(h.advance(29).iter().all(|o| matches!(o, Output::Ping | Output::Notice(Notice::Expiring(_)))));
    assert_eq!(disconnect(&h.advance(1)), Some(Disconnect::TOKEN_EXPIRED));
}

#[test]
fn a_history_reply_is_bounded_in_bytes_and_keeps_at_least_one_publication() {
    // Each test publication is a 1-3 byte payload: 96 + 1..3 bytes in a reply.
    let mut h = Harness::new(Config { max_history_reply_bytes: 300, ..config() });
    let reply = |h: &mut Harness, id: u64, offsets: std::ops::RangeInclusive<u64>| {
        let out = h.send(&format!(r#"{{"id":{id},"history":{{"channel":"news","limit":100}}}}"#));
        let op = out
            .iter()
            .find_map(|o| match o {
                Output::Op(op, history) if matches!(**history, Op::History { .. }) => Some(*op),
                _ => None,
            })
            .expect("a history op");
        h.s.handle_result(op, history("news", "e", 100, offsets));
        match &h.drain()[..] {
            [Output::History { publications, top, .. }] => {
                (publications.iter().map(|p| p.offset).collect::<Vec<_>>(), top.offset)
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        reply(&mut h, 1, 1..=100),
        (vec![1, 2, 3], 100),
        "three fit in 300 bytes; the top says more exist"
    );
    let mut big = Harness::new(Config { max_history_reply_bytes: 10, ..config() });
    assert_eq!(reply(&mut big, 1, 1..=5).0, vec![1], "one always goes, or the client could never page on");
}

#[test]
fn a_connection_that_never_connects_is_closed_when_a_token_is_required() {
    let mut h = Harness::new(Config { token_secret: "s3".into(), connect_timeout: 10, ..config() });
    assert!(h.advance(9).iter().all(|o| !matches!(o, Output::Disconnect(_))));
    assert_eq!(disconnect(&h.advance(1)), Some(Disconnect::CONNECT_TIMEOUT));

    let mut h = Harness::new(Config { token_secret: "s3".into(), connect_timeout: 10, ..config() });
    let token = crate::policy::tests::token("s3", serde_json::json!({"sub": "al"}));
    h.connect(&format!(r#"{{"id":1,"connect":{{"token":"{token}"}}}}"#));
    h.send(r#"{"pong":{}}"#);
    assert_eq!(disconnect(&h.advance(20)), None, "connected in time");

    let mut open = Harness::new(config());
    assert_eq!(disconnect(&open.advance(20)), None, "an open server needs no connect");
}

#[test]
fn refresh_extends_the_connection_with_a_new_token_of_the_same_user() {
    let secret = "s3";
    let mut h = Harness::new(Config { token_secret: secret.into(), ..config() });
    let token = |claims| crate::policy::tests::token(secret, claims);
    let first = token(serde_json::json!({"sub": "al", "exp": 1_030, "subs": ["a"]}));
    let out = h.connect(&format!(r#"{{"id":1,"connect":{{"token":"{first}"}}}}"#));
    assert!(
        matches!(&out[0], Output::Reply(r) if matches!(&r.body, ReplyBody::Connect(c) if c.expires == Some(1_030))),
        "connect says when the token expires"
    );
    assert_eq!(error_code(&h.send(r#"{"id":2,"subscribe":{"channel":"b"}}"#)), Some(103));
    let warned = h.advance(20);
    assert!(
        warned.iter().all(|o| matches!(o, Output::Ping | Output::Notice(Notice::Expiring(_)))),
        "{warned:?}"
    );

    // Another user's token, or a bad one: refused, and the connection keeps its own.
    let mallory = token(serde_json::json!({"sub": "mallory", "exp": 1_100}));
    assert_eq!(error_code(&h.send(&format!(r#"{{"id":3,"refresh":{{"token":"{mallory}"}}}}"#))), Some(103));
    assert_eq!(error_code(&h.send(r#"{"id":4,"refresh":{"token":"garbage"}}"#)), Some(101));

    let second = token(serde_json::json!({"sub": "al", "exp": 1_100, "subs": ["a", "b"]}));
    let out = h.send(&format!(r#"{{"id":5,"refresh":{{"token":"{second}"}}}}"#));
    assert!(
        matches!(&out[..], [Output::Reply(r)] if r.id == 5 && matches!(&r.body, ReplyBody::Refresh(r) if r.expires == Some(1_100))),
        "{out:?}"
    );
    assert_eq!(error_code(&h.send(r#"{"id":6,"subscribe":{"channel":"b"}}"#)), None, "the new token's subs");
    // From 1_020 to 1_100 in steps of 10 s, answering pings: closed at the second token's expiry.
    let mut ended = None;
    for step in 1..=8 {
        h.send(r#"{"pong":{}}"#);
        if let Some(d) = disconnect(&h.advance(10)) {
            ended = Some((step, d));
            break;
        }
    }
    assert_eq!(ended, Some((8, Disconnect::TOKEN_EXPIRED)), "at 1_100, not at the first token's 1_030");
}

#[test]
fn a_token_expiring_beyond_representable_time_never_expires() {
    let secret = "s3";
    let mut h = Harness::new(Config { token_secret: secret.into(), ..config() });
    let token = crate::policy::tests::token(secret, serde_json::json!({"sub": "al", "exp": u64::MAX}));
    let out = h.connect(&format!(r#"{{"id":1,"connect":{{"token":"{token}"}}}}"#));
    assert!(matches!(&out[0], Output::Reply(r) if matches!(r.body, ReplyBody::Connect(_))));
    assert_eq!(disconnect(&h.advance(3600)), None);
}

#[test]
fn every_command_gets_one_reply_even_an_unsubscribe_racing_its_subscribe() {
    let mut h = Harness::new(config());
    let mut replies: std::collections::HashMap<u64, usize> = Default::default();
    let mut ops = Vec::new();
    for n in 0..50u64 {
        let out = h.send(&format!(r#"{{"id":{},"subscribe":{{"channel":"news"}}}}"#, 2 * n + 1));
        ops.push(subscribe_op(&out).0);
        let out = h.send(&format!(r#"{{"id":{},"unsubscribe":{{"channel":"news"}}}}"#, 2 * n + 2));
        for o in &out {
            if let Output::Reply(r) = o {
                *replies.entry(r.id).or_default() += 1;
            }
        }
    }
    // The history reads finish late: they must not answer a second time.
    for op in ops {
        h.s.handle_result(op, history("news", "E", 1, []));
        for o in h.drain() {
            if let Output::Reply(r) = o {
                *replies.entry(r.id).or_default() += 1;
            }
        }
    }
    assert_eq!(replies.len(), 100, "every command answered");
    assert!(replies.values().all(|n| *n == 1), "exactly once: {replies:?}");
}

#[test]
fn a_slow_consumer_is_disconnected_with_its_code() {
    let mut h = Harness::new(config());
    h.s.handle_overflow();
    assert_eq!(disconnect(&h.drain()), Some(Disconnect::SLOW_CONSUMER));
}

fn datagram_harness() -> Harness {
    let mut config = config();
    config.namespaces.insert("game".into(), ChannelOptions { datagrams: true, ..ChannelOptions::default() });
    let mut h = Harness::new(config);
    Arc::make_mut(&mut h.s.config).datagrams = true;
    h
}

#[test]
fn datagram_subscriptions_need_the_transport_and_the_namespace() {
    let mut h = Harness::new(config());
    let out = h.send(r#"{"id":1,"subscribe":{"channel":"chat:a","datagram":true}}"#);
    assert_eq!(error_code(&out), Some(ErrorCode::NotAvailable.code()), "not on this transport");
    let mut h = datagram_harness();
    let out = h.send(r#"{"id":1,"subscribe":{"channel":"chat:a","datagram":true}}"#);
    assert_eq!(error_code(&out), Some(ErrorCode::NotAvailable.code()), "not in this namespace");
    let out = h.send(r#"{"id":2,"subscribe":{"channel":"game:a","datagram":true}}"#);
    assert_eq!(error_code(&out), None);
    assert!(h.s.datagram(&ChannelName::new("game:a").unwrap()));
    assert!(!h.s.datagram(&ChannelName::new("chat:a").unwrap()));
}

#[test]
fn datagram_subscriptions_are_latest_wins_and_never_replay() {
    let mut h = datagram_harness();
    let out = h.send(
        r#"{"id":1,"subscribe":{"channel":"game:a","datagram":true,"since":{"epoch":"e","offset":2}}}"#,
    );
    let (op, query) = subscribe_op(&out);
    assert!(query.since.is_none() && query.limit == 0, "no replay is read");
    // Live publications that raced the subscribe: older ones are dropped, gaps are fine.
    h.s.handle_delivery(Delivery::Publication(publication("game:a", "e", 6)));
    h.s.handle_delivery(Delivery::Publication(publication("game:a", "e", 5)));
    let top = StreamTop { epoch: "e".into(), offset: 4 };
    h.s.handle_result(op, OpResult::History(Ok(HistoryResult { top, publications: Vec::new() })));
    let out = h.drain();
    let reply = subscribe_reply(&out);
    assert!(!reply.recovered, "a resume was asked for and not honoured: said so");
    assert_eq!(delivered(&out), vec![6]);
    for (epoch, offset) in [("e", 9), ("e", 7), ("e", 9), ("e", 12), ("f", 1)] {
        h.s.handle_delivery(Delivery::Publication(publication("game:a", epoch, offset)));
    }
    let out = h.drain();
    assert_eq!(delivered(&out), vec![9, 12, 1], "gaps and a new epoch pass, older offsets do not");
    assert_eq!(disconnect(&out), None, "no continuity disconnect for latest-wins");
}

fn connect_reply(outputs: &[Output]) -> Option<&ConnectReply> {
    outputs.iter().find_map(|o| match o {
        Output::Reply(r) => match &r.body {
            ReplyBody::Connect(c) => Some(c),
            _ => None,
        },
        _ => None,
    })
}

#[test]
fn a_session_token_reclaims_the_client_id_and_commands_wait_for_the_claim() {
    let secret = "s3";
    let token = crate::policy::tests::token(secret, serde_json::json!({"sub": "al"}));
    let mut first = Harness::new(Config { token_secret: secret.into(), ..config() });
    let out = first.connect(&format!(r#"{{"id":1,"connect":{{"token":"{token}"}}}}"#));
    let session = connect_reply(&out).unwrap().session.clone();
    assert!(session.starts_with("c1."), "{session}");

    // A later connection (fresh id c2) presents it: it becomes c1 once the claim is done.
    let mut h = Harness::new(Config { token_secret: secret.into(), ..config() });
    h.s.client_id = "c2".into();
    let connect = format!(r#"{{"id":1,"connect":{{"token":"{token}","session":"{session}"}}}}"#);
    let out = h.send(&connect);
    let claim = out.iter().find_map(|o| match o {
        Output::Op(op, claim) => match &**claim {
            Op::Claim { client } => Some((*op, client.clone())),
            _ => None,
        },
        _ => None,
    });
    let (op, client) = claim.expect("connect claims the id");
    assert_eq!(client, "c1");
    assert!(connect_reply(&out).is_none(), "no reply before the claim");
    assert!(h.s.connecting());
    // Commands sent meanwhile wait, then run in order.
    assert!(h.send(r#"{"id":2,"subscribe":{"channel":"chat:a"}}"#).is_empty());
    assert!(h.send(r#"{"id":3,"connect":{}}"#).is_empty());
    h.s.handle_result(op, OpResult::Claimed);
    let out = h.drain();
    assert_eq!(connect_reply(&out).unwrap().client, "c1");
    assert!(
        matches!(&out[1], Output::Op(_, op) if matches!(&**op, Op::Subscribe { channel, .. } if channel.as_str() == "chat:a"))
    );
    assert_eq!(error_code(&out), Some(107), "a second connect is refused");
    assert_eq!(h.s.client_info().unwrap().client, "c1");

    // Another user's connection, or a forged token, keeps its own id.
    for (sub, session) in [("bo", session.clone()), ("al", format!("{session}0"))] {
        let mut h = Harness::new(Config { token_secret: secret.into(), ..config() });
        h.s.client_id = "c3".into();
        let token = crate::policy::tests::token(secret, serde_json::json!({ "sub": sub }));
        let out = h.connect(&format!(r#"{{"id":1,"connect":{{"token":"{token}","session":"{session}"}}}}"#));
        assert_eq!(connect_reply(&out).unwrap().client, "c3", "{sub}");
    }
}

fn rpc_op(outputs: &[Output]) -> Option<(OpId, crate::app_proxy::AppCall)> {
    outputs.iter().find_map(|o| match o {
        Output::Op(id, op) => match &**op {
            Op::Rpc(call) => Some((*id, call.clone())),
            _ => None,
        },
        _ => None,
    })
}

fn rpc_reply(outputs: &[Output]) -> Option<(u64, String)> {
    outputs.iter().find_map(|o| match o {
        Output::Reply(reply) => match &reply.body {
            ReplyBody::Rpc(r) => Some((reply.id, r.data.get().to_owned())),
            _ => None,
        },
        _ => None,
    })
}

#[test]
fn rpc_without_a_backend_says_how_to_configure_one() {
    let mut h = Harness::new(config());
    let out = h.send(r#"{"id":1,"rpc":{"method":"m","data":1}}"#);
    assert_eq!(error_code(&out), Some(108));
    assert!(rpc_op(&out).is_none());
    let Output::Reply(r) = &out[0] else { panic!("{out:?}") };
    let ReplyBody::Error(e) = &r.body else { panic!("{out:?}") };
    assert!(e.message.contains("app_proxy_url"), "{}", e.message);
}

#[test]
fn rpc_calls_reach_the_backend_one_at_a_time_in_order_and_answer_their_caller() {
    use crate::app_proxy::AppError;
    use switchboard_protocol::frame::RpcKind;
    let secret = "s3";
    let backend =
        Config { app_proxy_url: "http://127.0.0.1:9/rpc".into(), token_secret: secret.into(), ..config() };
    let mut h = Harness::new(backend);
    let token = crate::policy::tests::token(secret, serde_json::json!({"sub": "al"}));
    h.connect(&format!(r#"{{"id":1,"connect":{{"token":"{token}"}}}}"#));

    let out = h.send(r#"{"id":2,"rpc":{"method":"chat.send","data":{"t":"hi"}}}"#);
    let (op2, call) = rpc_op(&out).expect("the call goes to the driver");
    assert_eq!((call.kind, call.user.as_str(), call.client.as_str()), (RpcKind::Rpc, "al", "c1"));
    assert_eq!((call.method.as_str(), call.data.unwrap().get()), ("chat.send", r#"{"t":"hi"}"#));
    // A second call waits for the first one's answer.
    assert!(h.send(r#"{"id":3,"rpc":{"method":"other"}}"#).is_empty());
    h.s.handle_result(
        op2,
        OpResult::Rpc(Ok(serde_json::value::RawValue::from_string("[1]".into()).unwrap())),
    );
    let out = h.drain();
    assert_eq!(rpc_reply(&out), Some((2, "[1]".to_owned())));
    let (op3, call) = rpc_op(&out).expect("then the next call starts");
    assert_eq!((call.method.as_str(), call.data.is_none()), ("other", true));
    h.s.handle_result(op3, OpResult::Rpc(Err(AppError::Timeout(5000))));
    assert_eq!(error_code(&h.drain()), Some(113));

    // Bad calls are refused before they reach the backend.
    let out = h.send(r#"{"id":4,"rpc":{"method":""}}"#);
    assert_eq!((error_code(&out), rpc_op(&out).is_none()), (Some(107), true));
    let out = h.send(&format!(r#"{{"id":5,"rpc":{{"method":"m","data":"{}"}}}}"#, "x".repeat(16)));
    assert_eq!(
        (error_code(&out), rpc_op(&out).is_none()),
        (Some(106), true),
        "data over max_publication_bytes"
    );

    // The queue behind a running call is bounded.
    let out = h.send(r#"{"id":6,"rpc":{"method":"slow"}}"#);
    assert!(rpc_op(&out).is_some());
    for id in 7..7 + super::MAX_RPC_QUEUED as u64 {
        assert!(h.send(&format!(r#"{{"id":{id},"rpc":{{"method":"m"}}}}"#)).is_empty());
    }
    assert_eq!(error_code(&h.send(r#"{"id":999,"rpc":{"method":"m"}}"#)), Some(106));
}

fn notices(outputs: &[Output]) -> Vec<Notice> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Notice(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_connection_is_told_its_token_expires_before_it_is_closed() {
    let secret = "s3";
    let mut h = Harness::new(Config { token_secret: secret.into(), token_expiry_warning: 30, ..config() });
    let token = crate::policy::tests::token(secret, serde_json::json!({"sub": "al", "exp": 1_100}));
    h.connect(&format!(r#"{{"id":1,"connect":{{"token":"{token}"}}}}"#));
    let mut seen = Vec::new();
    for _ in 0..7 {
        h.send(r#"{"pong":{}}"#);
        seen.push(notices(&h.advance(10)));
    }
    // At 1_070 (30 s before 1_100), once.
    let expiring = Notice::Expiring(ExpiringBody { expires: 1_100 });
    assert_eq!(seen.iter().position(|n| n.contains(&expiring)), Some(6), "{seen:?}");
    assert_eq!(seen.iter().flatten().count(), 1);
    h.send(r#"{"pong":{}}"#);
    assert_eq!(disconnect(&h.advance(30)), Some(Disconnect::TOKEN_EXPIRED));
}

fn private_config(secret: &str) -> Config {
    let mut c = Config { token_secret: secret.into(), ..config() };
    c.namespaces.insert("vip".into(), ChannelOptions { private: true, ..ChannelOptions::default() });
    c
}

#[test]
fn a_private_channel_takes_a_subscription_token_for_it_and_its_user() {
    let secret = "s3";
    let mut h = Harness::new(private_config(secret));
    let token = |claims| crate::policy::tests::token(secret, claims);
    let connection = token(serde_json::json!({"sub": "al"}));
    h.connect(&format!(r#"{{"id":1,"connect":{{"token":"{connection}"}}}}"#));
    assert_eq!(error_code(&h.send(r#"{"id":2,"subscribe":{"channel":"vip:a"}}"#)), Some(103), "no token");
    assert_eq!(error_code(&h.send(r#"{"id":3,"history":{"channel":"vip:a"}}"#)), Some(103));
    let others = token(serde_json::json!({"sub": "bob", "channel": "vip:a"}));
    let out = h.send(&format!(r#"{{"id":4,"subscribe":{{"channel":"vip:a","token":"{others}"}}}}"#));
    assert_eq!(error_code(&out), Some(103), "another user's token");
    let wrong = token(serde_json::json!({"sub": "al", "channel": "vip:b"}));
    let out = h.send(&format!(r#"{{"id":5,"subscribe":{{"channel":"vip:a","token":"{wrong}"}}}}"#));
    assert_eq!(error_code(&out), Some(103), "another channel's token");
    let forged =
        crate::policy::tests::token("not-the-secret", serde_json::json!({"sub": "al", "channel": "vip:a"}));
    let out = h.send(&format!(r#"{{"id":6,"subscribe":{{"channel":"vip:a","token":"{forged}"}}}}"#));
    assert_eq!(error_code(&out), Some(101), "a forged token");
    let good = token(serde_json::json!({"sub": "al", "channel": "vip:a"}));
    let out = h.send(&format!(r#"{{"id":7,"subscribe":{{"channel":"vip:a","token":"{good}"}}}}"#));
    let (op, _) = subscribe_op(&out);
    h.s.handle_result(op, history("vip:a", "e", 0, []));
    assert_eq!(subscribe_reply(&h.drain()).channel, "vip:a");
    assert_eq!(
        error_code(&h.send(r#"{"id":8,"history":{"channel":"vip:a"}}"#)),
        None,
        "history, once granted"
    );
    h.send(r#"{"id":9,"unsubscribe":{"channel":"vip:a"}}"#);
    assert_eq!(error_code(&h.send(r#"{"id":10,"history":{"channel":"vip:a"}}"#)), Some(103), "revoked");
}

#[test]
fn a_subscription_ends_when_its_token_expires_unless_refreshed() {
    let secret = "s3";
    let mut h = Harness::new(private_config(secret));
    let token = |claims| crate::policy::tests::token(secret, claims);
    let connection = token(serde_json::json!({"sub": "al"}));
    h.connect(&format!(r#"{{"id":1,"connect":{{"token":"{connection}"}}}}"#));
    let first = token(serde_json::json!({"sub": "al", "channel": "vip:a", "exp": 1_020}));
    let out = h.send(&format!(r#"{{"id":2,"subscribe":{{"channel":"vip:a","token":"{first}"}}}}"#));
    let (op, _) = subscribe_op(&out);
    h.s.handle_result(op, history("vip:a", "e", 0, []));
    h.drain();
    h.send(r#"{"pong":{}}"#);
    assert!(notices(&h.advance(10)).is_empty());
    // Refreshed at 1_010 until 1_040: nothing ends at 1_020.
    let second = token(serde_json::json!({"sub": "al", "channel": "vip:a", "exp": 1_040}));
    let out = h.send(&format!(r#"{{"id":3,"refresh":{{"channel":"vip:a","token":"{second}"}}}}"#));
    assert!(
        matches!(&out[..], [Output::Reply(r)] if r.id == 3 && matches!(&r.body, ReplyBody::Refresh(r) if r.expires == Some(1_040)))
    );
    h.send(r#"{"pong":{}}"#);
    assert!(notices(&h.advance(20)).is_empty(), "refreshed");
    h.send(r#"{"pong":{}}"#);
    let out = h.advance(20);
    let ended = Notice::Unsubscribed(UnsubscribedBody {
        channel: "vip:a".into(),
        code: 3005,
        reason: "subscription token expired".into(),
    });
    assert_eq!(notices(&out), vec![ended]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Op(_, op) if matches!(&**op, Op::Unsubscribe { channel } if channel.as_str() == "vip:a")))
    );
    assert_eq!(disconnect(&out), None, "the connection stays");
    h.s.handle_delivery(Delivery::Publication(publication("vip:a", "e", 1)));
    assert!(delivered(&h.drain()).is_empty(), "nothing after the end");
}
