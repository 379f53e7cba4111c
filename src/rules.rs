//! Channel rules, in one place: who may read a channel (subscribe, history, polling, presence),
//! who may publish on it, and whether a publication is valid (size, idempotency key, signaling
//! inbox sender and target). Every path that reads or writes a channel asks here: the session
//! (WebSocket, SSE, streaming, WebTransport, data channels), polling, the server API and WebRTC.
//! Pure functions of the configuration and the caller, so they are unit-tested directly.

use std::borrow::Cow;
use std::sync::Arc;

use switchboard_protocol::frame::ClientInfo;
use switchboard_protocol::{ChannelName, ErrorCode};

use crate::config::{ChannelOptions, Config};
use crate::model::Payload;
use crate::policy::{Identity, Policy};
use crate::rooms::Inbox;

/// Longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// The application's server, by its API key: may read and write any channel, and write
    /// (not read) any signaling inbox.
    Server,
    /// The server API of a server with no secrets at all (loopback only): acts as the server on
    /// ordinary channels, but cannot prove it owns an inbox, so inboxes are closed to it.
    Open,
    /// A client: who its token says it is, and its connection's client id when it has one.
    Client {
        /// From the token (anonymous on an open server).
        identity: &'a Identity,
        /// The client id of its connection (or of the session it presented), if any.
        client: Option<&'a str>,
    },
}

/// A refusal: the error code and message every transport sends for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The error code.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: Cow<'static, str>,
}

impl Denied {
    fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { code, message: message.into() }
    }

    fn forbidden(message: &'static str) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }
}

/// Where a valid publication goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An ordinary channel.
    Channel,
    /// A participant's signaling inbox: the target must be in the room when it is delivered
    /// ([`Rules::signal_target`]), and a client sender must be in it too.
    Inbox(Inbox),
}

/// See the module docs.
#[derive(Debug)]
pub struct Rules {
    config: Arc<Config>,
    auth: Policy,
}

impl Rules {
    /// The rules of `config`.
    pub fn new(config: Arc<Config>) -> Self {
        Self { auth: Policy::new(config.clone()), config }
    }

    /// Who callers are: tokens, session tokens, the API key.
    pub fn auth(&self) -> &Policy {
        &self.auth
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The options of `channel`'s namespace.
    pub fn options(&self, channel: &ChannelName) -> &ChannelOptions {
        self.config.channel_options(channel)
    }

    /// `channel` as a signaling inbox (`ns:ROOM@CLIENT`), when its namespace holds rooms.
    pub fn inbox(&self, channel: &ChannelName) -> Option<Inbox> {
        self.options(channel).rooms.then(|| crate::rooms::inbox(channel)).flatten()
    }

    /// Whether `channel` is a room (a channel of a `rooms` namespace that is not an inbox).
    pub fn is_room(&self, channel: &ChannelName) -> bool {
        self.options(channel).rooms && crate::rooms::inbox(channel).is_none()
    }

    /// May `who` read `channel`: subscribe to it, read its history or poll it? A signaling inbox
    /// is readable by its participant alone, who needs the right to read its room.
    ///
    /// A verified subscription token (`Identity::granted`) opens its one channel beyond the
    /// connection token's `subs`, and is what a `private` namespace requires; it opens no inbox
    /// and no other user's personal channel.
    pub fn may_read(&self, who: &Actor<'_>, channel: &ChannelName) -> Result<(), Denied> {
        // The node's stats: the server's and a dashboard's (admin ticket) alone.
        if channel.as_str() == crate::admin::STATS_CHANNEL {
            return match who {
                Actor::Server | Actor::Client { identity: Identity { admin: true, .. }, .. } => Ok(()),
                _ => {
                    Err(Denied::forbidden("the stats channel takes an admin ticket (POST /api/admin/ticket)"))
                }
            };
        }
        refuse_internal(channel)?;
        let (channel, inbox) = match self.inbox(channel) {
            Some(inbox) => {
                let owner = match who {
                    Actor::Client { client: Some(client), .. } => *client == inbox.client,
                    _ => false,
                };
                if !owner {
                    return Err(Denied::forbidden("a signaling inbox is its participant's alone"));
                }
                (inbox.room.clone(), true)
            }
            None => (channel.clone(), false),
        };
        // A personal channel (`NAME#USER`) is its user's alone, on every connection of theirs.
        if let Some(owner) = channel.owner() {
            return match who {
                Actor::Server => Ok(()),
                Actor::Client { identity, .. } if !identity.user.is_empty() && identity.user == owner => {
                    Ok(())
                }
                _ => Err(Denied::forbidden("a personal channel is its user's alone")),
            };
        }
        let allowed = match who {
            Actor::Server | Actor::Open => !inbox,
            Actor::Client { identity, .. } if identity.granted.contains(&channel) => true,
            Actor::Client { .. } if self.options(&channel).private => {
                return Err(Denied::forbidden("this channel needs a subscription token"));
            }
            Actor::Client { identity, .. } => {
                identity.subs.as_deref().is_none_or(|p| matches_any(p, channel.as_str()))
            }
        };
        if allowed { Ok(()) } else { Err(Denied::forbidden("permission denied")) }
    }

    /// May `who` read `channel`'s history, and how much of it is kept.
    pub fn may_read_history(&self, who: &Actor<'_>, channel: &ChannelName) -> Result<usize, Denied> {
        self.may_read(who, channel)?;
        match self.options(channel).history_size {
            0 => Err(Denied::new(ErrorCode::NotAvailable, "history is off for this namespace")),
            size => Ok(size),
        }
    }

    /// May `who` poll `channel`? Polling answers from history, so a namespace that keeps none
    /// cannot be polled: refused with a clear code rather than answered with silence.
    pub fn may_poll(&self, who: &Actor<'_>, channel: &ChannelName) -> Result<(), Denied> {
        self.may_read(who, channel)?;
        if self.options(channel).history_size == 0 {
            return Err(Denied::new(
                ErrorCode::NotAvailable,
                "polling reads history and this namespace keeps none: use SSE, streaming or WebSocket",
            ));
        }
        Ok(())
    }

    /// May `who` see who is subscribed to `channel`?
    pub fn may_see_presence(&self, who: &Actor<'_>, channel: &ChannelName) -> Result<(), Denied> {
        self.may_read(who, channel)?;
        if !self.options(channel).presence {
            return Err(Denied::new(ErrorCode::NotAvailable, "presence is off for this namespace"));
        }
        Ok(())
    }

    /// May `who` publish on `channel`? Signaling into an inbox is allowed by being in its room
    /// (checked against presence by the caller, [`Rules::signal_sender`]), whatever the token's
    /// `pubs`; the server may write any inbox.
    pub fn may_publish(&self, who: &Actor<'_>, channel: &ChannelName) -> Result<Destination, Denied> {
        refuse_internal(channel)?;
        if let Some(inbox) = self.inbox(channel) {
            return match who {
                Actor::Server | Actor::Client { client: Some(_), .. } => Ok(Destination::Inbox(inbox)),
                Actor::Open | Actor::Client { client: None, .. } => {
                    Err(Denied::forbidden("signaling needs the session of a connection in the room"))
                }
            };
        }
        let allowed = match who {
            Actor::Server | Actor::Open => true,
            // Into a user's personal channel only a token naming it in `pubs` may publish.
            Actor::Client { identity, .. } if channel.owner().is_some() => {
                identity.pubs.as_deref().is_some_and(|p| matches_any(p, channel.as_str()))
            }
            Actor::Client { identity, .. } => match identity.pubs.as_deref() {
                Some(patterns) => matches_any(patterns, channel.as_str()),
                None => self.options(channel).client_publish,
            },
        };
        if allowed { Ok(Destination::Channel) } else { Err(Denied::forbidden("permission denied")) }
    }

    /// Validates a publication's payload size and idempotency key.
    pub fn check_publication(&self, payload: &Payload, idempotency_key: Option<&str>) -> Result<(), Denied> {
        let max = self.config.max_publication_bytes;
        if payload.len() > max {
            return Err(Denied::new(ErrorCode::LimitExceeded, format!("payload is larger than {max} bytes")));
        }
        // Deep nesting costs every subscriber's JSON parser (browsers' included) its stack.
        let depth = self.config.max_json_depth;
        if let Payload::Json(json) = payload
            && nesting_exceeds(json, depth)
        {
            return Err(Denied::new(
                ErrorCode::LimitExceeded,
                format!("data is nested deeper than {depth} levels"),
            ));
        }
        if idempotency_key.is_some_and(|k| k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY) {
            return Err(Denied::new(
                ErrorCode::BadRequest,
                format!("idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} bytes"),
            ));
        }
        Ok(())
    }

    /// The sender of a signal into `inbox`: client `client`, who must be in the room's
    /// `present` participants.
    pub fn signal_sender(
        &self,
        present: &[Arc<ClientInfo>],
        client: &str,
    ) -> Result<Arc<ClientInfo>, Denied> {
        present
            .iter()
            .find(|c| c.client == client)
            .cloned()
            .ok_or_else(|| Denied::forbidden("join the room first"))
    }

    /// A signal reaches only a participant: `inbox`'s owner must be in the room's `present`.
    pub fn signal_target(&self, present: &[Arc<ClientInfo>], inbox: &Inbox) -> Result<(), Denied> {
        if present.iter().any(|c| c.client == inbox.client) {
            return Ok(());
        }
        Err(Denied::new(ErrorCode::UnknownChannel, "that participant is not in the room"))
    }
}

/// Channels whose names start with this are the node's own (a SockJS session's inbox for sends
/// that land on another node): no client, and not the server API either, may read or write them.
pub const INTERNAL_PREFIX: &str = "__";

fn refuse_internal(channel: &ChannelName) -> Result<(), Denied> {
    if channel.as_str().starts_with(INTERNAL_PREFIX) {
        return Err(Denied::forbidden("channels starting with __ are the server's own"));
    }
    Ok(())
}

/// Whether valid JSON `json` nests arrays and objects more than `max` deep: one pass, strings
/// (and the brackets in them) skipped.
fn nesting_exceeds(json: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether a client's token lets it record `room` (its `rec` claim, patterns as `subs`).
pub fn may_record(identity: &Identity, room: &ChannelName) -> bool {
    identity.rec.as_deref().is_some_and(|p| matches_any(p, room.as_str()))
}

fn matches_any(patterns: &[String], channel: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => p == channel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(config: Config) -> Rules {
        Rules::new(Arc::new(config))
    }

    fn rooms_config() -> Config {
        let mut config = Config::default();
        let room = ChannelOptions { rooms: true, ..ChannelOptions::default() };
        config.namespaces.insert("room".into(), room);
        config
            .namespaces
            .insert("quiet".into(), ChannelOptions { history_size: 0, ..ChannelOptions::default() });
        config
    }

    fn ch(name: &str) -> ChannelName {
        ChannelName::new(name).unwrap()
    }

    #[test]
    fn an_inbox_is_read_by_its_owner_alone_whoever_asks() {
        let r = rules(rooms_config());
        let anyone = Identity::default();
        let inbox = ch("room:r1@alice");
        let alice = Actor::Client { identity: &anyone, client: Some("alice") };
        let bob = Actor::Client { identity: &anyone, client: Some("bob") };
        let nobody = Actor::Client { identity: &anyone, client: None };
        assert_eq!(r.may_read(&alice, &inbox), Ok(()));
        for who in [bob, nobody, Actor::Open, Actor::Server] {
            let e = r.may_read(&who, &inbox).unwrap_err();
            assert_eq!(e.code, ErrorCode::PermissionDenied, "{who:?}");
            assert_eq!(r.may_read_history(&who, &inbox).unwrap_err().code, ErrorCode::PermissionDenied);
            assert_eq!(r.may_poll(&who, &inbox).unwrap_err().code, ErrorCode::PermissionDenied);
            assert_eq!(r.may_see_presence(&who, &inbox).unwrap_err().code, ErrorCode::PermissionDenied);
        }
        // The owner still needs the right to read the room.
        let limited = Identity { subs: Some(vec!["chat:*".into()]), ..Identity::default() };
        let alice = Actor::Client { identity: &limited, client: Some("alice") };
        assert!(r.may_read(&alice, &inbox).is_err());
        assert!(r.may_read(&Actor::Server, &ch("room:r1")).is_ok(), "rooms themselves are channels");
    }

    #[test]
    fn tokens_limit_reads_and_publishes_by_pattern() {
        let r = rules(rooms_config());
        let who = Identity {
            subs: Some(vec!["chat:*".into()]),
            pubs: Some(vec!["chat:lobby".into()]),
            ..Identity::default()
        };
        let client = Actor::Client { identity: &who, client: Some("c") };
        assert!(r.may_read(&client, &ch("chat:x")).is_ok());
        assert!(r.may_read(&client, &ch("news")).is_err());
        assert_eq!(r.may_publish(&client, &ch("chat:lobby")), Ok(Destination::Channel));
        assert!(r.may_publish(&client, &ch("chat:other")).is_err());
        assert!(r.may_publish(&Actor::Server, &ch("chat:other")).is_ok());
    }

    #[test]
    fn signals_need_a_connection_and_both_ends_in_the_room() {
        let r = rules(rooms_config());
        let anyone = Identity::default();
        let inbox = ch("room:r1@alice");
        let expected = Destination::Inbox(crate::rooms::inbox(&inbox).unwrap());
        let bob = Actor::Client { identity: &anyone, client: Some("bob") };
        assert_eq!(r.may_publish(&bob, &inbox), Ok(expected.clone()));
        assert_eq!(r.may_publish(&Actor::Server, &inbox), Ok(expected));
        assert!(r.may_publish(&Actor::Open, &inbox).is_err());
        assert!(r.may_publish(&Actor::Client { identity: &anyone, client: None }, &inbox).is_err());
        let info = |c: &str| Arc::new(ClientInfo { client: c.into(), user: String::new(), name: None });
        let present = vec![info("alice"), info("bob")];
        assert_eq!(r.signal_sender(&present, "bob").unwrap().client, "bob");
        assert_eq!(r.signal_sender(&present, "eve").unwrap_err().code, ErrorCode::PermissionDenied);
        let Destination::Inbox(i) = r.may_publish(&bob, &inbox).unwrap() else { panic!() };
        assert!(r.signal_target(&present, &i).is_ok());
        assert_eq!(r.signal_target(&present[1..], &i).unwrap_err().code, ErrorCode::UnknownChannel);
    }

    #[test]
    fn a_personal_channel_is_read_by_its_user_and_written_by_the_server_or_a_named_publisher() {
        let r = rules(Config::default());
        let alice = Identity { user: "alice".into(), ..Identity::default() };
        let bob = Identity { user: "bob".into(), pubs: Some(vec!["notes#*".into()]), ..Identity::default() };
        let anonymous = Identity::default();
        let mine = ch("notes#alice");
        let as_client = |identity| Actor::Client { identity, client: Some("c") };
        assert!(r.may_read(&as_client(&alice), &mine).is_ok());
        assert!(r.may_read(&Actor::Server, &mine).is_ok());
        for who in [as_client(&bob), as_client(&anonymous), Actor::Open] {
            assert_eq!(r.may_read(&who, &mine).unwrap_err().code, ErrorCode::PermissionDenied, "{who:?}");
        }
        assert!(r.may_publish(&Actor::Server, &mine).is_ok());
        assert!(r.may_publish(&as_client(&bob), &mine).is_ok(), "named in pubs");
        assert!(r.may_publish(&as_client(&alice), &mine).is_err(), "not by the namespace's client_publish");
        assert_eq!(ch("a#").owner(), None);
    }

    #[test]
    fn the_servers_own_channels_are_nobodys_to_read_or_write() {
        let r = rules(Config::default());
        let anyone = Identity::default();
        let inbox = ch("__sockjs.6162");
        for who in [Actor::Server, Actor::Open, Actor::Client { identity: &anyone, client: Some("c") }] {
            assert_eq!(r.may_read(&who, &inbox).unwrap_err().code, ErrorCode::PermissionDenied, "{who:?}");
            assert_eq!(r.may_publish(&who, &inbox).unwrap_err().code, ErrorCode::PermissionDenied, "{who:?}");
            assert!(r.may_see_presence(&who, &inbox).is_err());
        }
        assert!(r.may_read(&Actor::Open, &ch("_one.underscore")).is_ok());
    }

    #[test]
    fn polling_a_namespace_without_history_is_refused_with_a_code() {
        let r = rules(rooms_config());
        let e = r.may_poll(&Actor::Server, &ch("quiet:x")).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotAvailable);
        assert!(e.message.contains("history"));
        assert!(r.may_poll(&Actor::Server, &ch("chat:x")).is_ok());
    }

    #[test]
    fn publications_are_checked_for_size_key_and_nesting() {
        let r = rules(Config { max_publication_bytes: 10, max_json_depth: 3, ..Config::default() });
        let bin = |n: usize| Payload::Binary(vec![0; n].into());
        let json = |s: &'static str| Payload::Json(bytes::Bytes::from_static(s.as_bytes()));
        assert!(r.check_publication(&bin(10), Some("k")).is_ok());
        assert_eq!(r.check_publication(&bin(11), None).unwrap_err().code, ErrorCode::LimitExceeded);
        assert_eq!(r.check_publication(&bin(1), Some("")).unwrap_err().code, ErrorCode::BadRequest);
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY + 1);
        assert_eq!(r.check_publication(&bin(1), Some(&long)).unwrap_err().code, ErrorCode::BadRequest);
        let r = rules(Config { max_json_depth: 3, ..Config::default() });
        assert!(r.check_publication(&json("[[{}]]"), None).is_ok(), "3 deep");
        assert_eq!(r.check_publication(&json("[[[[]]]]"), None).unwrap_err().code, ErrorCode::LimitExceeded);
        assert!(r.check_publication(&json(r#"["[[[[\"["]"#), None).is_ok(), "brackets in strings");
        assert!(!nesting_exceeds(&"[".repeat(64).into_bytes(), 64));
        assert!(nesting_exceeds(&"[".repeat(30_000).into_bytes(), 64));
    }

    #[test]
    fn the_stats_channel_is_read_by_the_server_and_admin_tickets_alone() {
        let r = rules(Config::default());
        let stats = ch(crate::admin::STATS_CHANNEL);
        let admin = Identity { admin: true, ..Identity::default() };
        let anyone = Identity::default();
        assert!(r.may_read(&Actor::Server, &stats).is_ok());
        assert!(r.may_read(&Actor::Client { identity: &admin, client: Some("a") }, &stats).is_ok());
        assert!(r.may_read(&Actor::Client { identity: &anyone, client: Some("b") }, &stats).is_err());
        assert!(r.may_read(&Actor::Open, &stats).is_err(), "an open API caller is not an administrator");
        assert!(
            r.may_read(&Actor::Client { identity: &admin, client: Some("a") }, &ch("__sockjs.x")).is_err()
        );
        assert!(r.may_publish(&Actor::Server, &stats).is_err(), "only the nodes publish stats");
    }
}
