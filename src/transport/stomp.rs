//! STOMP 1.0, 1.1 and 1.2 over WebSocket: `/stomp`, and `/ws` when the client offers a
//! `v12.stomp`, `v11.stomp` or `v10.stomp` subprotocol. See `docs/stomp.md`.
//!
//! This adapter translates, nothing more: STOMP frames (decoded by `switchboard-stomp`) become
//! the JSON protocol's commands for the same [`Session`](crate::session::Session), which applies
//! the channel rules, and the session's outputs become CONNECTED, MESSAGE, RECEIPT and ERROR
//! frames. `/topic/NAME` and `/queue/NAME` are channel `NAME`, so a STOMP subscriber and a JSON
//! one see the same publications at the same offsets; every MESSAGE carries its `position`, and a
//! SUBSCRIBE with `position` resumes after it. Heart-beats are agreed as the spec says; a client
//! silent for twice its interval is dropped (3003).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt};
use serde_json::value::RawValue;
use switchboard_protocol::frame::{
    ChannelRequest, ClientFrame, Command as Cmd, ConnectRequest, Notice, PublishRequest, Reply, ReplyBody,
    RpcKind, RpcRequest, SubscribeRequest,
};
use switchboard_protocol::{Disconnect, ErrorCode, Position, encode};
use switchboard_stomp::negotiate::{HeartBeat, negotiate_heartbeat, negotiate_version};
use switchboard_stomp::{
    Command, Decoded, Decoder, Frame, Limits, MessageTemplate, Version, encode_to_bytes,
};
use tokio::time::Instant;

use crate::connection::Driver;
use crate::connection::pump::{self, Inbound, Outgoing, Transport};
use crate::http::bearer;
use crate::metrics::TransportKind;
use crate::model::{self, Payload, PresenceEvent, Publication};
use crate::session::SessionConfig;
use crate::state::AppState;

/// The subprotocols a STOMP client may offer on `/ws` and `/stomp`, best first.
pub const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];
/// A client's DISCONNECT: a normal close.
const BYE: Disconnect = Disconnect { code: 1000, reason: "disconnect" };

/// `GET /stomp`: a WebSocket that speaks STOMP only (for clients that offer no subprotocol,
/// such as stomp.py).
pub async fn handler(
    State(state): State<Arc<AppState>>,
    ip: crate::http::ClientIp,
    peer: crate::http::Peer,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match super::ws::admit(&state, ip, &headers, ws) {
        Ok((ws, ticket)) => {
            let token = bearer(&headers).map(str::to_owned);
            super::ws::configure(ws, &state).protocols(SUBPROTOCOLS).on_upgrade(super::ws::spawn_connection(
                move |socket| run(socket, state, token, ticket, peer),
            ))
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// Runs a STOMP connection on an upgraded WebSocket; `token` is the upgrade's Bearer token, used
/// when CONNECT carries no `passcode`; `ticket` is its admission.
pub fn run(
    socket: WebSocket,
    state: Arc<AppState>,
    token: Option<String>,
    ticket: crate::admission::Ticket,
    peer: crate::http::Peer,
) -> impl std::future::Future<Output = ()> + Send {
    // Built before it is awaited, so the future holds only the write loop (see `ws::handler`).
    let guard = state.metrics.connection(TransportKind::Stomp);
    let (codec, config) = StompCodec::new(&state, token, false);
    let transport = WsStomp { socket, codec, batch: Vec::new(), pending_bytes: 0 };
    let run = pump::run(
        transport,
        Driver::with_config(state, config).admitted(ticket).from(peer).on(TransportKind::Stomp),
    );
    run.map(move |()| drop(guard))
}

/// STOMP over a WebSocket: the codec's messages as WebSocket messages.
struct WsStomp {
    socket: WebSocket,
    codec: StompCodec,
    batch: Vec<Message>,
    pending_bytes: u64,
}

impl Transport for WsStomp {
    fn kind(&self) -> crate::metrics::TransportKind {
        crate::metrics::TransportKind::Stomp
    }

    fn frame(&mut self, out: Outgoing, _datagram: bool) -> Result<(), Disconnect> {
        self.codec.frame(out)
    }

    fn has_pending(&self) -> bool {
        self.codec.has_pending()
    }

    async fn flush(&mut self) -> Result<u64, ()> {
        self.take();
        super::ws::write_batch(&mut self.socket, &mut self.batch).await?;
        Ok(std::mem::take(&mut self.pending_bytes))
    }

    async fn recv(&mut self) -> Inbound {
        loop {
            if let Some(inbound) = self.codec.next_inbound() {
                return inbound;
            }
            let deadline = self.codec.receive_deadline();
            let message = tokio::select! {
                message = self.socket.recv() => message,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    return Inbound::End(Disconnect::NO_PONG);
                }
            };
            self.codec.seen();
            match message {
                Some(Ok(Message::Text(text))) => {
                    self.codec.feed(text.as_bytes());
                    return Inbound::Read(text.len());
                }
                Some(Ok(Message::Binary(data))) => {
                    self.codec.feed(&data);
                    return Inbound::Read(data.len());
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    let _ = self.socket.flush().await;
                    return Inbound::Gone;
                }
                Some(Err(_)) | None => return Inbound::Gone,
            }
        }
    }

    async fn close(mut self, d: Disconnect) {
        if self.codec.closing(d) {
            let _ = self.flush().await;
        }
        super::ws::close_socket(&mut self.socket, d).await;
    }
}

impl WsStomp {
    /// Moves the codec's frames into the WebSocket batch.
    fn take(&mut self) {
        for m in self.codec.take() {
            self.pending_bytes += m.bytes.len() as u64;
            match (!m.binary).then(|| Utf8Bytes::try_from(m.bytes.clone())) {
                Some(Ok(text)) => self.batch.push(Message::Text(text)),
                _ => self.batch.push(Message::Binary(m.bytes)),
            }
        }
    }
}

/// What a command sent to the session is waiting for, to answer in STOMP.
#[derive(Debug)]
enum Awaiting {
    Connect,
    Subscribe { receipt: Option<String> },
    Unsubscribe { receipt: Option<String> },
    Send { receipt: Option<String> },
}

/// One STOMP subscription: its id and the destination it named.
#[derive(Debug, Clone)]
struct Sub {
    id: String,
    destination: String,
    /// `ack:client` or `client-individual`: MESSAGEs carry an `ack` header to acknowledge.
    acks: bool,
    /// `join-leave: true`: joins and leaves come as MESSAGEs with an `event` header.
    join_leave: bool,
}

/// The STOMP side of a connection, without its socket: frames in become session commands, the
/// session's outputs become frames out ([`model::Message`]s, text unless a body is not UTF-8).
/// The WebSocket adapter and SockJS sessions both carry it.
pub struct StompCodec {
    decoder: Decoder,
    inbound: BytesMut,
    version: Version,
    server_heartbeat_ms: u32,
    out: Vec<model::Message>,
    /// Only text can be carried (SockJS): a body that is not UTF-8 goes as base64.
    text_only: bool,
    /// Commands for the session (a COMMIT releases several at once).
    queue: VecDeque<ClientFrame>,
    next_id: u64,
    awaiting: HashMap<u64, Awaiting>,
    by_channel: HashMap<String, Sub>,
    by_id: HashMap<String, String>,
    transactions: HashMap<String, Vec<Frame>>,
    message_seq: u64,
    token: Option<String>,
    /// The token's user, from CONNECTED: `/user/` destinations are theirs.
    user: String,
    /// SENDs to destinations under this prefix (`/app/`) go to the application's backend.
    app_prefix: String,
    /// An ERROR frame was sent: the connection is ending.
    errored: bool,
    connected: bool,
    receive_timeout: Option<Duration>,
    last_seen: Instant,
}

/// What a client frame comes to.
enum Step {
    /// A command for the session.
    Command(ClientFrame),
    /// Handled here (answered or ignored).
    Done,
    /// The connection ends (after an ERROR, or a DISCONNECT).
    End(Disconnect),
}

impl StompCodec {
    /// A codec for a new connection, and the session configuration it needs: heart-beats replace
    /// pongs (the session sends one every `heartbeat_interval` and expects no answer; the codec
    /// watches the client's own). `token` is used when CONNECT carries no `passcode`.
    pub fn new(state: &AppState, token: Option<String>, text_only: bool) -> (Self, SessionConfig) {
        let config = SessionConfig::from_config(&state.config, false);
        let limits = Limits {
            max_frame_size: state.config.max_frame_bytes,
            max_body: state.config.max_publication_bytes,
            ..Limits::default()
        };
        let codec = StompCodec {
            decoder: Decoder::new(Version::V1_2, limits),
            inbound: BytesMut::new(),
            version: Version::V1_2,
            server_heartbeat_ms: u32::try_from(config.ping_interval.as_millis()).unwrap_or(u32::MAX),
            out: Vec::new(),
            text_only,
            queue: VecDeque::new(),
            next_id: 1,
            awaiting: HashMap::new(),
            by_channel: HashMap::new(),
            by_id: HashMap::new(),
            transactions: HashMap::new(),
            message_seq: 0,
            token,
            user: String::new(),
            app_prefix: state.config.app_destination_prefix.clone(),
            errored: false,
            connected: false,
            receive_timeout: None,
            last_seen: Instant::now(),
        };
        (codec, config)
    }

    /// Frames one session output.
    pub fn frame(&mut self, out: Outgoing) -> Result<(), Disconnect> {
        match out {
            Outgoing::Reply(reply) => {
                let Reply { id, body } = *reply;
                self.reply(id, body)
            }
            Outgoing::Publication(p) => {
                self.message(&p);
                Ok(())
            }
            Outgoing::Ping => {
                self.push_bytes(Bytes::from_static(b"\n"), true);
                Ok(())
            }
            Outgoing::Presence(e) => {
                self.presence(&e);
                Ok(())
            }
            // STOMP has no history frame: history comes as MESSAGEs on resume.
            Outgoing::History { .. } => Ok(()),
            // STOMP cannot end one subscription from the server side: an expired subscription
            // token ends the connection (an ERROR saying so), as an expired connection token does.
            Outgoing::Notice(Notice::Unsubscribed(_)) => Err(Disconnect::TOKEN_EXPIRED),
            // Nor can a STOMP client refresh a token: it reconnects (and resumes) instead.
            Outgoing::Notice(Notice::Expiring(_)) => Ok(()),
        }
    }

    /// Whether frames wait for [`take`](Self::take).
    pub fn has_pending(&self) -> bool {
        !self.out.is_empty()
    }

    /// The frames to send, in order.
    pub fn take(&mut self) -> std::vec::Drain<'_, model::Message> {
        self.out.drain(..)
    }

    /// Bytes from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.inbound.extend_from_slice(bytes);
    }

    /// The client was heard from (any bytes count as a heart-beat).
    pub fn seen(&mut self) {
        self.last_seen = Instant::now();
    }

    /// When a client silent since [`seen`](Self::seen) is to be dropped (3003), if heart-beats
    /// were agreed.
    pub fn receive_deadline(&self) -> Option<Instant> {
        self.receive_timeout.map(|t| self.last_seen + t)
    }

    /// The next input for the session from what was fed, or `None` when more bytes are needed.
    pub fn next_inbound(&mut self) -> Option<Inbound> {
        loop {
            if let Some(frame) = self.queue.pop_front() {
                return Some(Inbound::Frame(Ok(frame), 0));
            }
            match self.decoder.decode(&mut self.inbound) {
                Ok(Some(Decoded::Heartbeat)) => continue,
                Ok(Some(Decoded::Frame(frame))) => match self.client_frame(frame) {
                    Step::Command(command) => return Some(Inbound::Frame(Ok(command), 0)),
                    Step::Done if self.has_pending() => return Some(Inbound::Nothing),
                    Step::Done => continue,
                    Step::End(d) => return Some(Inbound::End(d)),
                },
                Ok(None) => return None,
                Err(e) => return Some(self.error(&e.message(), None, Disconnect::BAD_REQUEST)),
            }
        }
    }

    /// The connection ends with `d`: whatever ends it is said in an ERROR frame first (a refused
    /// token, a silent client, the server stopping), unless one was sent already or the client
    /// left. `true` when there is a frame to send.
    pub fn closing(&mut self, d: Disconnect) -> bool {
        if !self.errored && d != BYE {
            let code = match d {
                Disconnect::UNAUTHORIZED | Disconnect::TOKEN_EXPIRED => Some(ErrorCode::Unauthorized),
                Disconnect::FORBIDDEN => Some(ErrorCode::PermissionDenied),
                _ => None,
            };
            self.error_frame(d.reason, code, None);
        }
        self.has_pending()
    }

    fn send_frame(&mut self, frame: &Frame) {
        // Our frames are built from validated values; one that cannot be encoded is dropped.
        if let Ok(bytes) = encode_to_bytes(frame, self.version) {
            self.push_bytes(bytes, frame.body.is_empty() || std::str::from_utf8(&frame.body).is_ok());
        }
    }

    fn push_bytes(&mut self, bytes: Bytes, text: bool) {
        self.out.push(model::Message { binary: !text, bytes });
    }

    fn receipt(&mut self, receipt: Option<String>, extra: &[(&str, String)]) {
        if let Some(id) = receipt {
            let mut frame = Frame::new(Command::Receipt).header("receipt-id", id);
            for (name, value) in extra {
                frame = frame.header(*name, value.clone());
            }
            self.send_frame(&frame);
        }
    }

    /// An ERROR frame (`message`, and our error `code`), after which the connection ends.
    fn error(&mut self, message: &str, code: Option<ErrorCode>, d: Disconnect) -> Inbound {
        self.error_frame(message, code, None);
        Inbound::End(d)
    }

    fn error_frame(&mut self, message: &str, code: Option<ErrorCode>, receipt: Option<String>) {
        self.error_frame_code(message, code.map(ErrorCode::code), receipt);
    }

    fn error_frame_code(&mut self, message: &str, code: Option<u32>, receipt: Option<String>) {
        self.errored = true;
        let mut frame = Frame::new(Command::Error).header("message", one_line(message));
        if let Some(code) = code {
            frame = frame.header("code", code.to_string());
        }
        if let Some(receipt) = receipt {
            frame = frame.header("receipt-id", receipt);
        }
        self.send_frame(&frame);
    }

    fn command(&mut self, command: Cmd, awaiting: Awaiting) -> ClientFrame {
        let id = self.next_id;
        self.next_id += 1;
        self.awaiting.insert(id, awaiting);
        ClientFrame::Command { id, command }
    }

    fn client_frame(&mut self, frame: Frame) -> Step {
        let receipt = frame.get("receipt").map(str::to_owned);
        if !self.connected && !matches!(frame.command, Command::Connect | Command::Stomp) {
            self.error_frame("send CONNECT first", Some(ErrorCode::BadRequest), receipt);
            return Step::End(Disconnect::BAD_REQUEST);
        }
        match frame.command {
            Command::Connect | Command::Stomp => self.connect(&frame),
            Command::Subscribe => self.subscribe(&frame, receipt),
            Command::Unsubscribe => {
                let id = frame.get("id").or(frame.get("destination")).unwrap_or("").to_owned();
                let Some(channel) = self.by_id.remove(&id) else {
                    self.error_frame("no such subscription", Some(ErrorCode::NotSubscribed), receipt);
                    return Step::End(Disconnect::BAD_REQUEST);
                };
                self.by_channel.remove(&channel);
                let request = ChannelRequest { channel };
                Step::Command(self.command(Cmd::Unsubscribe(request), Awaiting::Unsubscribe { receipt }))
            }
            Command::Send => match frame.get("transaction").map(str::to_owned) {
                Some(tx) => match self.transactions.get_mut(&tx) {
                    Some(frames) => {
                        frames.push(frame);
                        self.receipt(receipt, &[]);
                        Step::Done
                    }
                    None => {
                        self.error_frame("no such transaction", Some(ErrorCode::BadRequest), receipt);
                        Step::End(Disconnect::BAD_REQUEST)
                    }
                },
                None => self.send(&frame, receipt),
            },
            Command::Begin => {
                let tx = frame.get("transaction").unwrap_or("").to_owned();
                self.transactions.insert(tx, Vec::new());
                self.receipt(receipt, &[]);
                Step::Done
            }
            Command::Commit | Command::Abort => {
                let tx = frame.get("transaction").unwrap_or("");
                let Some(frames) = self.transactions.remove(tx) else {
                    self.error_frame("no such transaction", Some(ErrorCode::BadRequest), receipt);
                    return Step::End(Disconnect::BAD_REQUEST);
                };
                if frame.command == Command::Commit {
                    for send in frames {
                        let inner = send.get("receipt").map(str::to_owned);
                        match self.send(&send, inner) {
                            Step::Command(c) => self.queue.push_back(c),
                            Step::Done => {}
                            end @ Step::End(_) => return end,
                        }
                    }
                }
                self.receipt(receipt, &[]);
                Step::Done
            }
            // Deliveries are acknowledged as they are written (every ack mode acts as `auto`);
            // a client that reconnects resumes from its last position instead of a redelivery.
            Command::Ack | Command::Nack => {
                self.receipt(receipt, &[]);
                Step::Done
            }
            Command::Disconnect => {
                self.receipt(receipt, &[]);
                Step::End(BYE)
            }
            _ => {
                self.error_frame("a server command from a client", Some(ErrorCode::MethodNotFound), receipt);
                Step::End(Disconnect::BAD_REQUEST)
            }
        }
    }

    fn connect(&mut self, frame: &Frame) -> Step {
        if self.connected {
            self.error_frame("already connected", Some(ErrorCode::BadRequest), None);
            return Step::End(Disconnect::BAD_REQUEST);
        }
        let version = match negotiate_version(frame.get("accept-version")) {
            Ok(v) => v,
            Err(e) => {
                let m = format!("{}; supported versions: 1.2, 1.1, 1.0", e.message());
                self.error_frame(&m, Some(ErrorCode::BadRequest), None);
                return Step::End(Disconnect::BAD_REQUEST);
            }
        };
        let client = match HeartBeat::parse(frame.get("heart-beat")) {
            Ok(hb) => hb,
            Err(e) => {
                self.error_frame(&e.message(), Some(ErrorCode::BadRequest), None);
                return Step::End(Disconnect::BAD_REQUEST);
            }
        };
        let ms = self.server_heartbeat_ms;
        let timing = negotiate_heartbeat(client, HeartBeat { send_ms: ms, receive_ms: ms });
        self.receive_timeout = timing.receive_timeout;
        self.version = version;
        self.decoder.set_version(version);
        self.connected = true;
        let token = frame.get("passcode").filter(|p| !p.is_empty()).map(str::to_owned).or(self.token.take());
        let request = ConnectRequest {
            token,
            name: frame.get("login").map(str::to_owned),
            session: frame.get("session").map(str::to_owned),
        };
        Step::Command(self.command(Cmd::Connect(request), Awaiting::Connect))
    }

    fn subscribe(&mut self, frame: &Frame, receipt: Option<String>) -> Step {
        let Some(destination) = frame.get("destination").map(str::to_owned) else {
            self.error_frame("SUBSCRIBE needs a destination", Some(ErrorCode::BadRequest), receipt);
            return Step::End(Disconnect::BAD_REQUEST);
        };
        let channel = match channel_of(&destination, &self.user) {
            Ok(c) => c,
            Err(m) => {
                self.error_frame(m, Some(ErrorCode::NotAvailable), receipt);
                return Step::End(Disconnect::BAD_REQUEST);
            }
        };
        // STOMP 1.0 makes `id` optional: the destination then names the subscription.
        let id = frame.get("id").unwrap_or(&destination).to_owned();
        let since = match frame.get("position").map(Position::parse_compact) {
            Some(None) => {
                self.error_frame("position is EPOCH:OFFSET", Some(ErrorCode::BadRequest), receipt);
                return Step::End(Disconnect::BAD_REQUEST);
            }
            Some(Some(p)) => Some(p),
            None => None,
        };
        self.by_id.insert(id.clone(), channel.clone());
        let acks = matches!(frame.get("ack"), Some("client" | "client-individual"));
        let join_leave = frame.get("join-leave") == Some("true");
        self.by_channel.insert(channel.clone(), Sub { id, destination, acks, join_leave });
        // A subscription token rides in a `token` header (a private namespace requires one).
        let token = frame.get("token").map(str::to_owned);
        let request = SubscribeRequest { channel, since, datagram: false, token };
        Step::Command(self.command(Cmd::Subscribe(request), Awaiting::Subscribe { receipt }))
    }

    fn send(&mut self, frame: &Frame, receipt: Option<String>) -> Step {
        let destination = frame.get("destination").unwrap_or("");
        // A JSON body is published as JSON (what the other transports' clients read as `data`);
        // anything else as binary.
        let (data, binary) = match serde_json::from_slice::<Box<RawValue>>(&frame.body) {
            Ok(json) => (Some(json), None),
            Err(_) => (None, Some(frame.body.clone())),
        };
        // `/app/...`: the application's backend, the same call as the JSON protocol's `rpc`.
        if let Some(method) = destination.strip_prefix(self.app_prefix.as_str()) {
            let request = RpcRequest { method: method.to_owned(), data, binary, kind: RpcKind::Send };
            return Step::Command(self.command(Cmd::Rpc(request), Awaiting::Send { receipt }));
        }
        let channel = match channel_of(destination, &self.user) {
            Ok(c) => c,
            Err(m) => {
                self.error_frame(m, Some(ErrorCode::NotAvailable), receipt);
                return Step::End(Disconnect::BAD_REQUEST);
            }
        };
        let idempotency_key = frame.get("idempotency-key").map(str::to_owned);
        let request = PublishRequest { channel, data, idempotency_key, binary };
        Step::Command(self.command(Cmd::Publish(request), Awaiting::Send { receipt }))
    }

    /// A session reply, as STOMP says it.
    fn reply(&mut self, id: u64, body: ReplyBody) -> Result<(), Disconnect> {
        let Some(awaiting) = self.awaiting.remove(&id) else { return Ok(()) };
        match (awaiting, body) {
            (Awaiting::Connect, ReplyBody::Connect(c)) => {
                self.user = c.user.clone();
                let heartbeat =
                    HeartBeat { send_ms: self.server_heartbeat_ms, receive_ms: self.server_heartbeat_ms };
                let frame = Frame::new(Command::Connected)
                    .header("version", self.version.as_str())
                    .header("heart-beat", heartbeat.to_header())
                    .header("server", format!("switchboard/{}", c.version))
                    .header("session", c.session)
                    .header("user-name", c.client);
                self.send_frame(&frame);
            }
            (Awaiting::Subscribe { receipt }, ReplyBody::Subscribe(s)) => {
                let position = format!("{}:{}", s.epoch, s.offset);
                self.receipt(receipt, &[("recovered", s.recovered.to_string()), ("position", position)]);
            }
            (Awaiting::Unsubscribe { receipt }, ReplyBody::Unsubscribe(_)) => self.receipt(receipt, &[]),
            (Awaiting::Send { receipt }, ReplyBody::Publish(p)) => {
                self.receipt(receipt, &[("position", format!("{}:{}", p.epoch, p.offset))]);
            }
            // The backend answered: its publications are out (its result has no STOMP frame).
            (Awaiting::Send { receipt }, ReplyBody::Rpc(_)) => self.receipt(receipt, &[]),
            (awaiting, ReplyBody::Error(e)) => {
                let receipt = match awaiting {
                    Awaiting::Connect => None,
                    Awaiting::Subscribe { receipt }
                    | Awaiting::Unsubscribe { receipt }
                    | Awaiting::Send { receipt } => receipt,
                };
                // The code may be the application backend's own: it is passed on as it came.
                self.error_frame_code(&e.message, Some(e.code), receipt);
                return Err(match ErrorCode::from_code(e.code) {
                    Some(ErrorCode::Unauthorized) => Disconnect::UNAUTHORIZED,
                    Some(ErrorCode::PermissionDenied) => Disconnect::FORBIDDEN,
                    // The backend did not answer: reconnecting may work.
                    Some(ErrorCode::BackendUnavailable | ErrorCode::BackendTimeout) => Disconnect::INTERNAL,
                    _ => Disconnect::BAD_REQUEST,
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// A publication as a MESSAGE to the subscription of its channel: the publication's shared
    /// template (encoded once for all subscribers of this version) after this subscriber's
    /// `subscription`, `message-id` and `destination`.
    fn message(&mut self, p: &Publication) {
        let Some(sub) = self.by_channel.get(p.channel.as_str()) else { return };
        self.message_seq += 1;
        let binary = matches!(&p.payload, Payload::Binary(b) if std::str::from_utf8(b).is_err());
        let message_id = self.message_seq.to_string();
        let ack = sub.acks.then_some(message_id.as_str());
        let extra = [("destination", sub.destination.as_str())];
        let mut out = BytesMut::new();
        let written = if binary && self.text_only {
            // Text-only transports carry a binary body as base64, and say so.
            let Payload::Binary(body) = &p.payload else { return };
            let position = format!("{}:{}", p.epoch, p.offset);
            let headers = [
                ("content-type", "application/octet-stream"),
                ("content-transfer-encoding", "base64"),
                ("position", &position),
            ];
            let body = base64::engine::general_purpose::STANDARD.encode(body);
            MessageTemplate::new(self.version, &headers, body.into())
                .and_then(|t| t.write_with(&sub.id, &message_id, ack, &extra, &mut out))
                .is_ok()
        } else {
            p.stomp_template(self.version)
                .is_some_and(|t| t.write_with(&sub.id, &message_id, ack, &extra, &mut out).is_ok())
        };
        if written {
            self.push_bytes(out.freeze(), !binary || self.text_only);
        }
    }
}

impl StompCodec {
    /// A join or leave as a MESSAGE (`event: join|leave`, the presence object as its JSON body),
    /// to a subscription that asked for them with `join-leave: true`.
    fn presence(&mut self, e: &PresenceEvent) {
        let Some(sub) = self.by_channel.get(e.channel.as_str()).filter(|s| s.join_leave) else { return };
        self.message_seq += 1;
        let body = encode::presence_object(e.channel.as_str(), &e.info);
        let frame = Frame::new(Command::Message)
            .header("subscription", sub.id.clone())
            .header("message-id", self.message_seq.to_string())
            .header("destination", sub.destination.clone())
            .header("event", e.name())
            .header("content-type", "application/json")
            .body(body);
        self.send_frame(&frame);
    }
}

/// The channel a destination names: `/topic/NAME` and `/queue/NAME` are channel `NAME`;
/// `/user/queue/NAME` and `/user/topic/NAME` are `user`'s personal channel `NAME#USER`.
fn channel_of(destination: &str, user: &str) -> Result<String, &'static str> {
    if let Some(name) =
        destination.strip_prefix("/user/queue/").or_else(|| destination.strip_prefix("/user/topic/"))
    {
        if user.is_empty() {
            return Err("/user/ destinations need a token naming the user");
        }
        return if name.is_empty() { Err(BAD_DESTINATION) } else { Ok(format!("{name}#{user}")) };
    }
    let name = destination.strip_prefix("/topic/").or_else(|| destination.strip_prefix("/queue/"));
    match name {
        Some(name) if !name.is_empty() => Ok(name.to_owned()),
        _ => Err(BAD_DESTINATION),
    }
}

const BAD_DESTINATION: &str = "destinations are /topic/NAME, /queue/NAME or /user/queue/NAME; SEND may also \
     go to the application's backend under app_destination_prefix (/app/ by default), which cannot be \
     subscribed to";

/// A header value on one line.
fn one_line(message: &str) -> String {
    message.replace(['\r', '\n'], " ")
}
