//! The WebSocket JSON protocol: what a client sends ([`ClientFrame`]) and what the server answers
//! ([`Reply`]) and pushes. Check-then-parse: [`parse_client_frame`] first reads the frame's
//! envelope (id and which command), then the command's own body, so an error can always be
//! answered with the id it belongs to.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::codes::ErrorCode;
use crate::position::Position;

/// A frame from a client.
#[derive(Debug)]
pub enum ClientFrame {
    /// A command that expects a reply with the same id.
    Command {
        /// The client's id for the command; the reply carries it back.
        id: u64,
        /// What the client asks.
        command: Command,
    },
    /// The answer to a server ping.
    Pong,
}

/// A client command.
#[derive(Debug)]
pub enum Command {
    /// Authenticate and name the connection.
    Connect(ConnectRequest),
    /// Subscribe to a channel, optionally resuming from a position.
    Subscribe(SubscribeRequest),
    /// End a subscription.
    Unsubscribe(ChannelRequest),
    /// Publish a JSON (or, from a binary frame, a binary) payload.
    Publish(PublishRequest),
    /// Who is subscribed to a channel.
    Presence(ChannelRequest),
    /// Read a channel's history.
    History(HistoryRequest),
    /// Call the application's backend (`app_proxy_url`) and return its answer.
    Rpc(RpcRequest),
    /// A new token for the connection (same user), before the current one expires.
    Refresh(RefreshRequest),
    /// An application-level ping.
    Ping,
}

/// `connect` body.
#[derive(Debug, Default, Deserialize)]
pub struct ConnectRequest {
    /// A JWT, when the server requires one.
    #[serde(default)]
    pub token: Option<String>,
    /// A display name shown in presence.
    #[serde(default)]
    pub name: Option<String>,
    /// The `session` of an earlier `connect` reply: reclaims that connection's client id.
    #[serde(default)]
    pub session: Option<String>,
}

/// `subscribe` body.
#[derive(Debug, Deserialize)]
pub struct SubscribeRequest {
    /// The channel.
    pub channel: String,
    /// Resume after this position.
    #[serde(default)]
    pub since: Option<Position>,
    /// Deliver this channel's publications as WebTransport datagrams: unreliable, latest-wins.
    /// Only on WebTransport, and only where the namespace enables `datagrams`.
    #[serde(default)]
    pub datagram: bool,
    /// A subscription token: a JWT whose `channel` claim names this channel and whose `sub` is
    /// the connection's user. It grants this one channel beyond the connection token's `subs`,
    /// and is required in a `private` namespace.
    #[serde(default)]
    pub token: Option<String>,
}

/// A body with only a channel (`unsubscribe`, `presence`).
#[derive(Debug, Deserialize)]
pub struct ChannelRequest {
    /// The channel.
    pub channel: String,
}

/// `publish` body.
#[derive(Debug, Deserialize)]
pub struct PublishRequest {
    /// The channel.
    pub channel: String,
    /// The JSON payload, kept as the client's text. Absent in a binary frame's header.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    /// A key that makes a retried publish store nothing twice.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The binary payload, when the command came in a binary frame.
    #[serde(skip)]
    pub binary: Option<bytes::Bytes>,
}

/// `history` body.
#[derive(Debug, Deserialize)]
pub struct HistoryRequest {
    /// The channel.
    pub channel: String,
    /// Only publications after this position.
    #[serde(default)]
    pub since: Option<Position>,
    /// At most this many.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Newest first.
    #[serde(default)]
    pub reverse: bool,
}

/// `refresh` body.
#[derive(Debug, Deserialize)]
pub struct RefreshRequest {
    /// The new token.
    pub token: String,
    /// With a channel, `token` is a new subscription token for that subscription.
    #[serde(default)]
    pub channel: Option<String>,
}

/// The body of a `refresh` reply (and the `expires` of a `connect` reply).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshReply {
    /// Unix seconds at which the new token expires; absent when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

/// `rpc` body: a call to the application's backend.
#[derive(Debug, Deserialize)]
pub struct RpcRequest {
    /// What to call: the backend's own name for it (`"chat.send"`, `"orders/create"`).
    pub method: String,
    /// The JSON argument, kept as the client's text; absent is `null`.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    /// A payload that is not JSON (a STOMP SEND's body). Not on the JSON protocol's wire.
    #[serde(skip)]
    pub binary: Option<bytes::Bytes>,
    /// What kind of call it is. Not on the wire: the JSON protocol's `rpc` is always
    /// [`RpcKind::Rpc`]; a transport that translates its own frames sets it.
    #[serde(skip)]
    pub kind: RpcKind,
}

/// What a call to the application's backend stands for; the backend sees it as `kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcKind {
    /// The JSON protocol's `rpc`: `method` is the method.
    #[default]
    Rpc,
    /// A STOMP SEND to an application destination (`/app/...`): `method` is the destination
    /// without its prefix.
    Send,
}

/// Why a client frame could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrameError {
    /// The command's id when the envelope was readable: then the error is a reply and the
    /// connection stays; without one the frame is a protocol violation.
    pub id: Option<u64>,
    /// The error code for the reply.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    connect: Option<&'a RawValue>,
    #[serde(borrow, default)]
    subscribe: Option<&'a RawValue>,
    #[serde(borrow, default)]
    unsubscribe: Option<&'a RawValue>,
    #[serde(borrow, default)]
    publish: Option<&'a RawValue>,
    #[serde(borrow, default)]
    presence: Option<&'a RawValue>,
    #[serde(borrow, default)]
    history: Option<&'a RawValue>,
    #[serde(borrow, default)]
    rpc: Option<&'a RawValue>,
    #[serde(borrow, default)]
    refresh: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ping: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pong: Option<&'a RawValue>,
}

/// Parses one text frame.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    // serde would also read a JSON array positionally into the envelope; a frame is an object.
    if !text.trim_start().starts_with('{') {
        return Err(FrameError {
            id: None,
            code: ErrorCode::BadRequest,
            message: "a frame is one JSON object".into(),
        });
    }
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| FrameError {
        id: None,
        code: ErrorCode::BadRequest,
        message: format!("frame is not a JSON command object: {e}"),
    })?;
    let present = [
        env.connect,
        env.subscribe,
        env.unsubscribe,
        env.publish,
        env.presence,
        env.history,
        env.rpc,
        env.refresh,
        env.ping,
        env.pong,
    ]
    .iter()
    .filter(|v| v.is_some())
    .count();
    if present == 1 && env.pong.is_some() {
        return Ok(ClientFrame::Pong);
    }
    let id = match env.id {
        Some(id) if id > 0 => id,
        _ => {
            return Err(FrameError {
                id: None,
                code: ErrorCode::BadRequest,
                message: "a command needs a non-zero numeric id".into(),
            });
        }
    };
    let err = |code, message: String| FrameError { id: Some(id), code, message };
    if present == 0 {
        return Err(err(ErrorCode::MethodNotFound, "unknown command".into()));
    }
    if present > 1 {
        return Err(err(ErrorCode::BadRequest, "a frame holds exactly one command".into()));
    }
    fn body<'a, T: Deserialize<'a>>(raw: &'a RawValue, name: &str) -> Result<T, String> {
        serde_json::from_str(raw.get()).map_err(|e| format!("bad {name} body: {e}"))
    }
    let command = if let Some(raw) = env.connect {
        body(raw, "connect").map(Command::Connect)
    } else if let Some(raw) = env.subscribe {
        body(raw, "subscribe").map(Command::Subscribe)
    } else if let Some(raw) = env.unsubscribe {
        body(raw, "unsubscribe").map(Command::Unsubscribe)
    } else if let Some(raw) = env.publish {
        body(raw, "publish").map(Command::Publish)
    } else if let Some(raw) = env.presence {
        body(raw, "presence").map(Command::Presence)
    } else if let Some(raw) = env.history {
        body(raw, "history").map(Command::History)
    } else if let Some(raw) = env.rpc {
        body(raw, "rpc").map(Command::Rpc)
    } else if let Some(raw) = env.refresh {
        body(raw, "refresh").map(Command::Refresh)
    } else {
        Ok(Command::Ping)
    }
    .map_err(|m| err(ErrorCode::BadRequest, m))?;
    Ok(ClientFrame::Command { id, command })
}

/// Splits a binary frame into its JSON header and its payload (`HEADER "\n" PAYLOAD`).
pub fn split_binary_frame(frame: &[u8]) -> Option<(&str, &[u8])> {
    let nl = frame.iter().position(|b| *b == b'\n')?;
    let header = std::str::from_utf8(&frame[..nl]).ok()?;
    Some((header, &frame[nl + 1..]))
}

/// Parses a binary frame: only `publish` may travel in one; its payload becomes the binary data.
pub fn parse_binary_frame(frame: &bytes::Bytes) -> Result<ClientFrame, FrameError> {
    let bad = |id, message: &str| FrameError { id, code: ErrorCode::BadRequest, message: message.into() };
    let (header, payload) =
        split_binary_frame(frame).ok_or_else(|| bad(None, "binary frame has no JSON header line"))?;
    let payload_start = header.len() + 1;
    match parse_client_frame(header)? {
        ClientFrame::Command { id, command: Command::Publish(mut req) } => {
            if req.data.is_some() {
                return Err(bad(Some(id), "binary publish carries no data field"));
            }
            req.binary = Some(frame.slice(payload_start..));
            let _ = payload;
            Ok(ClientFrame::Command { id, command: Command::Publish(req) })
        }
        ClientFrame::Command { id, .. } => Err(bad(Some(id), "only publish may travel in a binary frame")),
        ClientFrame::Pong => Err(bad(None, "only publish may travel in a binary frame")),
    }
}

/// Who a client is, as presence and publication `info` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The connection's id, unique per connection.
    pub client: String,
    /// The user id from the token; empty for anonymous clients.
    #[serde(default)]
    pub user: String,
    /// The display name given at connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The body of a `connect` reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectReply {
    /// The connection's id.
    pub client: String,
    /// The server version.
    pub version: String,
    /// Seconds between server pings.
    pub ping: u64,
    /// A secret that lets a later connection of this client keep `client` (`connect.session`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session: String,
    /// The token's user (`sub`), when there is one: its personal channels are `NAME#USER`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// One-way transports (SSE, streaming): seconds between heartbeats; a client that hears
    /// nothing for twice that may reconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<u64>,
    /// Unix seconds at which the token expires, when it does: `refresh` before, or be closed
    /// with 3005.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

/// The body of a `subscribe` reply, and of the one-way transports' `subscribed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeReply {
    /// The channel.
    pub channel: String,
    /// The stream's epoch.
    pub epoch: String,
    /// Where the client stands once this arrives.
    pub offset: u64,
    /// Whether the requested position was honoured.
    pub recovered: bool,
    /// How many replayed publications follow.
    pub replayed: u64,
}

/// The body of a `publish` reply, and of `POST /api/publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReply {
    /// The stream's epoch.
    pub epoch: String,
    /// The publication's offset.
    pub offset: u64,
}

/// The body of an `rpc` reply: the application backend's `result`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RpcReply {
    /// The backend's `result`, as it sent it (`null` when it sent none).
    pub data: Box<RawValue>,
}

/// The body of an `error` reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error code.
    pub code: u32,
    /// What went wrong.
    pub message: String,
}

/// `{"code", "reason"}`: a disconnect as the one-way transports send it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DisconnectBody {
    /// The close code.
    pub code: u16,
    /// The reason.
    pub reason: String,
}

/// A reply to a command, as the session produces it; the transport encodes it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyBody {
    /// To `connect`.
    Connect(ConnectReply),
    /// To `subscribe`.
    Subscribe(SubscribeReply),
    /// To `unsubscribe`.
    Unsubscribe(Empty),
    /// To `publish`.
    Publish(PublishReply),
    /// To `presence`.
    Presence(PresenceReply),
    /// To `rpc`.
    Rpc(RpcReply),
    /// To `refresh`.
    Refresh(RefreshReply),
    /// To `ping`.
    Ping(Empty),
    /// Any command that failed.
    Error(ErrorBody),
}

/// `{}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Empty {}

/// The body of a `presence` reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PresenceReply {
    /// Client id → who it is.
    pub clients: std::collections::BTreeMap<String, ClientInfo>,
}

/// A reply with its command's id.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    /// The command's id.
    pub id: u64,
    /// The answer.
    #[serde(flatten)]
    pub body: ReplyBody,
}

impl Reply {
    /// An error reply.
    pub fn error(id: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { id, body: ReplyBody::Error(ErrorBody { code: code.code(), message: message.into() }) }
    }

    /// The reply as one JSON text.
    pub fn to_json(&self) -> String {
        // Our reply types always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A publication object as the server shows it, for clients to decode.
#[derive(Debug, Clone, Deserialize)]
pub struct PublicationObject {
    /// The channel.
    pub channel: String,
    /// The offset.
    pub offset: u64,
    /// The epoch.
    pub epoch: String,
    /// The JSON payload.
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    /// The binary payload, base64 (JSON transports).
    #[serde(default)]
    pub b64: Option<String>,
    /// Who published it, when a client did.
    #[serde(default)]
    pub info: Option<ClientInfo>,
}

/// A join or leave event as the server shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PresenceEventObject {
    /// The channel.
    pub channel: String,
    /// Who joined or left.
    #[serde(flatten)]
    pub info: ClientInfo,
}

/// Any frame or line the server sends, for clients to decode (WebSocket text frames, NDJSON
/// lines; SSE `data` uses the inner objects).
#[derive(Debug, Default, Deserialize)]
pub struct ServerFrame {
    /// Present on replies.
    #[serde(default)]
    pub id: Option<u64>,
    /// `error` reply.
    #[serde(default)]
    pub error: Option<ErrorBody>,
    /// `connect` reply.
    #[serde(default)]
    pub connect: Option<ConnectReply>,
    /// `subscribe` reply.
    #[serde(default)]
    pub subscribe: Option<SubscribeReply>,
    /// `publish` reply.
    #[serde(default)]
    pub publish: Option<PublishReply>,
    /// `presence` reply.
    #[serde(default)]
    pub presence: Option<PresenceReply>,
    /// `history` reply.
    #[serde(default)]
    pub history: Option<HistoryReply>,
    /// `rpc` reply.
    #[serde(default)]
    pub rpc: Option<RpcReply>,
    /// `refresh` reply.
    #[serde(default)]
    pub refresh: Option<RefreshReply>,
    /// A publication push.
    #[serde(default, rename = "pub")]
    pub publication: Option<PublicationObject>,
    /// A join push.
    #[serde(default)]
    pub join: Option<PresenceEventObject>,
    /// A leave push.
    #[serde(default)]
    pub leave: Option<PresenceEventObject>,
    /// A server ping (push) or ping reply.
    #[serde(default)]
    pub ping: Option<Empty>,
    /// `subscribed` line (HTTP streaming).
    #[serde(default)]
    pub subscribed: Option<SubscribeReply>,
    /// `connected` line (HTTP streaming).
    #[serde(default)]
    pub connected: Option<ConnectedBody>,
    /// `disconnect` line (HTTP streaming).
    #[serde(default)]
    pub disconnect: Option<DisconnectBody>,
    /// `unsubscribed` notice.
    #[serde(default)]
    pub unsubscribed: Option<UnsubscribedBody>,
    /// `expiring` notice.
    #[serde(default)]
    pub expiring: Option<ExpiringBody>,
}

/// What the server tells a connection outside any reply: `{"unsubscribed": {...}}` or
/// `{"expiring": {...}}` on the message and NDJSON transports, an SSE event of that name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Notice {
    /// The server ended a subscription (its subscription token expired unrefreshed).
    Unsubscribed(UnsubscribedBody),
    /// The connection's token expires soon: refresh it, or reconnect with a new one.
    Expiring(ExpiringBody),
}

impl Notice {
    /// The event's name: `unsubscribed` or `expiring`.
    pub fn name(&self) -> &'static str {
        match self {
            Notice::Unsubscribed(_) => "unsubscribed",
            Notice::Expiring(_) => "expiring",
        }
    }

    /// The event's object, without its name.
    pub fn object_json(&self) -> String {
        // Our notice types always serialize.
        match self {
            Notice::Unsubscribed(b) => serde_json::to_string(b),
            Notice::Expiring(b) => serde_json::to_string(b),
        }
        .unwrap_or_default()
    }

    /// `{"NAME": OBJECT}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The body of an `unsubscribed` notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsubscribedBody {
    /// The channel.
    pub channel: String,
    /// Why, as a close code would say it (3005: the subscription token expired).
    pub code: u16,
    /// The reason.
    pub reason: String,
}

/// The body of an `expiring` notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringBody {
    /// Unix seconds at which the connection's token expires.
    pub expires: u64,
}

/// The body of the one-way transports' `connected` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectedBody {
    /// The connection's id.
    pub client: String,
}

/// The body of a `history` reply (and of `GET /api/history`).
#[derive(Debug, Clone, Deserialize)]
pub struct HistoryReply {
    /// The stream's epoch.
    pub epoch: String,
    /// The stream's last offset.
    pub offset: u64,
    /// The publications, in the order asked for.
    pub publications: Vec<PublicationObject>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(text: &str) -> (u64, Command) {
        match parse_client_frame(text).unwrap() {
            ClientFrame::Command { id, command } => (id, command),
            ClientFrame::Pong => panic!("pong"),
        }
    }

    #[test]
    fn parses_every_command() {
        assert!(matches!(command(r#"{"id":1,"connect":{}}"#), (1, Command::Connect(_))));
        let (_, c) = command(r#"{"id":2,"subscribe":{"channel":"a","since":{"epoch":"e","offset":3}}}"#);
        let Command::Subscribe(s) = c else { panic!() };
        assert_eq!(s.since, Some(Position { epoch: "e".into(), offset: 3 }));
        let (_, c) = command(r#"{"id":3,"publish":{"channel":"a","data":{"x":[1, 2]}}}"#);
        let Command::Publish(p) = c else { panic!() };
        assert_eq!(p.data.unwrap().get(), r#"{"x":[1, 2]}"#, "data keeps the client's text");
        assert!(matches!(command(r#"{"id":4,"ping":{}}"#), (4, Command::Ping)));
        assert!(matches!(command(r#"{"id":5,"history":{"channel":"a"}}"#), (5, Command::History(_))));
        let (_, c) = command(r#"{"id":6,"rpc":{"method":"chat.send","data":{"t": 1}}}"#);
        let Command::Rpc(r) = c else { panic!() };
        assert_eq!(
            (r.method.as_str(), r.data.unwrap().get(), r.kind),
            ("chat.send", r#"{"t": 1}"#, RpcKind::Rpc)
        );
        let (_, c) = command(r#"{"id":9,"refresh":{"token":"t"}}"#);
        assert!(matches!(c, Command::Refresh(RefreshRequest { token, channel: None }) if token == "t"));
        let (_, c) = command(r#"{"id":10,"subscribe":{"channel":"a","token":"s"}}"#);
        assert!(matches!(c, Command::Subscribe(SubscribeRequest { token: Some(t), .. }) if t == "s"));
        let n =
            Notice::Unsubscribed(UnsubscribedBody { channel: "a".into(), code: 3005, reason: "r".into() });
        assert_eq!(n.to_json(), r#"{"unsubscribed":{"channel":"a","code":3005,"reason":"r"}}"#);
        assert_eq!(
            (n.name(), n.object_json().as_str()),
            ("unsubscribed", r#"{"channel":"a","code":3005,"reason":"r"}"#)
        );
        let r = Reply { id: 9, body: ReplyBody::Refresh(RefreshReply { expires: Some(5) }) };
        assert_eq!(r.to_json(), r#"{"id":9,"refresh":{"expires":5}}"#);
        let (_, c) = command(r#"{"id":7,"rpc":{"method":"m"}}"#);
        assert!(matches!(c, Command::Rpc(RpcRequest { data: None, .. })), "data is optional");
        let e = parse_client_frame(r#"{"id":8,"rpc":{"data":1}}"#).unwrap_err();
        assert_eq!((e.id, e.code), (Some(8), ErrorCode::BadRequest), "rpc needs a method");
        assert!(matches!(parse_client_frame(r#"{"pong":{}}"#), Ok(ClientFrame::Pong)));
    }

    #[test]
    fn errors_keep_the_id_when_the_envelope_is_readable() {
        let e = parse_client_frame(r#"{"id":7,"nope":{}}"#).unwrap_err();
        assert_eq!((e.id, e.code), (Some(7), ErrorCode::MethodNotFound));
        let e = parse_client_frame(r#"{"id":7,"subscribe":{"chan":"a"}}"#).unwrap_err();
        assert_eq!((e.id, e.code), (Some(7), ErrorCode::BadRequest));
        let e = parse_client_frame(r#"{"id":7,"ping":{},"connect":{}}"#).unwrap_err();
        assert_eq!(e.id, Some(7));
        for bad in [
            r#"[7,{"name":"positional"}]"#,
            "[1,2,3]",
            "",
            "nope",
            "[]",
            "{",
            r#"{"subscribe":{"channel":"a"}}"#,
            r#"{"id":0,"ping":{}}"#,
            r#"{"id":-1,"ping":{}}"#,
            r#"{"id":"1","ping":{}}"#,
        ] {
            assert_eq!(parse_client_frame(bad).unwrap_err().id, None, "{bad}");
        }
    }

    #[test]
    fn binary_frames_carry_a_publish_header_and_raw_payload() {
        let frame = bytes::Bytes::from_static(b"{\"id\":9,\"publish\":{\"channel\":\"c\"}}\n\x00\x01\n\xff");
        let ClientFrame::Command { id: 9, command: Command::Publish(p) } =
            parse_binary_frame(&frame).unwrap()
        else {
            panic!()
        };
        assert_eq!(&p.binary.unwrap()[..], b"\x00\x01\n\xff");
        assert!(parse_binary_frame(&bytes::Bytes::from_static(b"no header")).is_err());
        let e = parse_binary_frame(&bytes::Bytes::from_static(b"{\"id\":2,\"ping\":{}}\nxx")).unwrap_err();
        assert_eq!(e.id, Some(2));
    }

    #[test]
    fn replies_encode_with_their_id_and_key() {
        let r = Reply { id: 3, body: ReplyBody::Publish(PublishReply { epoch: "e".into(), offset: 9 }) };
        assert_eq!(r.to_json(), r#"{"id":3,"publish":{"epoch":"e","offset":9}}"#);
        let data = RawValue::from_string(r#"{"ok":true}"#.into()).unwrap();
        let r = Reply { id: 5, body: ReplyBody::Rpc(RpcReply { data }) };
        assert_eq!(r.to_json(), r#"{"id":5,"rpc":{"data":{"ok":true}}}"#);
        let e = Reply::error(4, ErrorCode::PermissionDenied, "no");
        assert_eq!(e.to_json(), r#"{"id":4,"error":{"code":103,"message":"no"}}"#);
    }
}
