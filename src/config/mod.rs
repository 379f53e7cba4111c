//! Configuration: defaults, then a TOML file, then `SWITCHBOARD_*` environment variables, then
//! command-line flags, each overriding the one before. Every option has a documented default
//! (`docs/configuration.md`); unknown keys are errors, so a typo never passes silently.
//!
//! Here the options and their defaults, loading and the small accessors; by job beside it:
//! `validate.rs` (checks the schema cannot express), `demo.rs` (the demo pages' namespaces) and
//! `turn.rs` (the TURN server's configuration from ours).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use switchboard_protocol::ChannelName;

mod demo;
mod turn;
mod validate;

/// Options of the channels of one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelOptions {
    /// Publications kept per channel for resume and history; 0 keeps none.
    pub history_size: usize,
    /// Seconds a publication stays in history.
    pub history_ttl: u64,
    /// Track who is subscribed.
    pub presence: bool,
    /// Push join and leave events to subscribers (needs `presence`).
    pub join_leave: bool,
    /// Let connected clients publish (the server API always may).
    pub client_publish: bool,
    /// Let WebTransport subscribers ask for datagram delivery: unreliable, unordered,
    /// latest-wins (game state, cursors). See `docs/webtransport.md`.
    pub datagrams: bool,
    /// Channels are WebRTC rooms: `ns:NAME` is the room (presence = participants) and
    /// `ns:NAME@CLIENT` a participant's signaling inbox. See `docs/webrtc.md`.
    pub rooms: bool,
    /// Clients subscribe only with a subscription token naming the channel (a JWT with a
    /// `channel` claim, see `docs/protocol.md`), whatever their connection token allows.
    pub private: bool,
    /// Rooms of this namespace mix audio: every participant receives one Opus track mixing
    /// everyone else (`docs/webrtc.md`, "Mixed audio").
    pub audio_mix: bool,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            history_size: 1000,
            history_ttl: 600,
            presence: true,
            join_leave: false,
            client_publish: true,
            datagrams: false,
            rooms: false,
            private: false,
            audio_mix: false,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// TCP address of the one HTTP listener (WebSocket, SSE, streaming, polling, API).
    pub listen: SocketAddr,
    /// Where channels live: `memory` (one node), `redis://HOST:PORT` or `nats://HOST:PORT`.
    pub broker: String,
    /// Seconds a presence entry lives in a shared broker unless its connection refreshes it
    /// (every third of this), so a dead node's clients disappear.
    pub presence_ttl: u64,
    /// HMAC secret for client JWTs (HS256, HS384, HS512). Empty, with `token_public_key` empty
    /// too: clients need no token (allowed on loopback only).
    pub token_secret: String,
    /// Public key for client JWTs signed with RS*, PS*, ES256/ES384 or EdDSA: PEM text, or the
    /// path of a PEM file.
    pub token_public_key: String,
    /// An identity provider's JWKS (http or https): keys for client JWTs by their `kid`, fetched
    /// at start, every `token_jwks_refresh` seconds, and when a token names an unknown `kid`.
    pub token_jwks_url: String,
    /// Seconds between fetches of `token_jwks_url`.
    pub token_jwks_refresh: u64,
    /// The `aud` a client JWT must name (empty: not checked).
    pub token_audience: String,
    /// The `iss` a client JWT must carry (empty: not checked).
    pub token_issuer: String,
    /// Key for the server API. Empty: the API is open when `token_secret` is empty too.
    pub api_key: String,
    /// A second secret with the API key's rights, for the people at the dashboard (`/admin`):
    /// typed into its login form, sent as `X-API-Key`. Empty: the dashboard takes the API key
    /// (and is open only on an open loopback server).
    pub admin_password: String,
    /// Serve the dashboard page at `/admin` and publish this node's stats on `__admin:stats`.
    pub admin: bool,
    /// Milliseconds between two publications of this node's stats (at least 100).
    pub admin_stats_interval_ms: u64,
    /// Most channels whose publication rate is tracked (the dashboard's busiest first).
    pub admin_rate_channels: usize,
    /// Allow a non-loopback listener without authentication. Never do this in production.
    pub insecure_allow_open: bool,
    /// Serve the demo app at `/` and run its ticker publisher.
    pub demo: bool,
    /// Transport lab sessions (`/lab`, served with the demo) open at once; a page beyond it is
    /// refused. 0: the lab is off.
    pub lab_max_sessions: usize,
    /// The most delay, and the most jitter, a lab page may apply to its own connections (ms).
    pub lab_max_delay_ms: u64,
    /// Seconds one drawing round of the `/game` demo lasts.
    pub game_round_secs: u64,
    /// Seconds a `/game` player who left keeps their place and score.
    pub game_grace_secs: u64,
    /// Most `/game` games (referees) running on this node at once.
    pub game_max_games: usize,
    /// Most real-time connections held at once, of every transport (WebSocket, SSE, streaming,
    /// held long polls, SockJS and WebTransport sessions, WebRTC data channels).
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (and finish a TLS handshake) once it
    /// has started, nginx's `client_header_timeout`. 0: no limit.
    pub http_header_timeout: u64,
    /// Seconds a keep-alive connection may wait for its next request with none in flight,
    /// nginx's `keepalive_timeout`; long responses (SSE, streaming, long polls) and WebSockets
    /// are not cut by it. 0: no limit.
    pub http_idle_timeout: u64,
    /// Seconds a request body may stall between two reads before the request gets 408,
    /// nginx's `client_body_timeout`. 0: no limit.
    pub http_body_timeout: u64,
    /// Most TCP (or TLS) connections open at once from one IP address; more are closed at
    /// accept. 0: no limit.
    pub http_max_sockets_per_ip: usize,
    /// New TCP connections per second one IP address may open (a token bucket holding one
    /// second's worth); more are closed at accept. 0: no limit.
    pub http_accept_rate_per_ip: u32,
    /// With TLS on: a plain-HTTP listener (e.g. `0.0.0.0:80`) that answers every request with a
    /// 301 to the same path over https. Empty: none.
    pub http_redirect_listen: String,
    /// Seconds data sent on an HTTP connection may stay unacknowledged before the kernel drops
    /// the connection (TCP_USER_TIMEOUT, Linux), with TCP keepalive probes after as long idle:
    /// a client that vanished without a FIN (a laptop closed, a phone off the network) is found
    /// by the next heartbeat instead of the kernel's default of about 15 minutes. 0: the kernel's.
    pub tcp_user_timeout: u64,
    /// Seconds a shutdown waits for requests in flight before the process exits anyway.
    pub shutdown_timeout: u64,
    /// Most real-time connections from one client IP address (0: no limit). Counted per request,
    /// not per socket: HTTP/2 carries many on one.
    pub max_connections_per_ip: usize,
    /// Most real-time connections of one user (a token's `sub`), counted once the user is known
    /// (0: no limit; anonymous clients are not counted).
    pub max_connections_per_user: usize,
    /// Publishes one connection may make per second, on average (0: no limit); over it a
    /// publish gets error 106 and the connection stays.
    pub max_publish_rate: u32,
    /// Publishes one connection may make in a burst above `max_publish_rate`.
    pub max_publish_burst: u32,
    /// Most channels whose state (history, epoch, idempotency keys) the node holds; a
    /// subscription or publication that would create one more gets error 106 (0: no limit).
    pub max_channels: usize,
    /// Seconds a channel's state is kept once it has no subscribers, no history left and no
    /// publications; then it is swept, and its next publication starts a new epoch.
    pub channel_idle_ttl: u64,
    /// Largest WebSocket message or HTTP request body accepted, in bytes.
    pub max_frame_bytes: usize,
    /// A WebSocket's read buffer, in bytes: what each connection holds while idle, and the most
    /// read per call (a larger message grows the buffer and takes one read per this many bytes).
    pub ws_read_buffer_bytes: usize,
    /// Largest publication payload, in bytes.
    pub max_publication_bytes: usize,
    /// Deepest nesting of arrays and objects in a publication's JSON data.
    pub max_json_depth: usize,
    /// Most bytes of publications in one `history` reply; the client pages on with `since`.
    pub max_history_reply_bytes: usize,
    /// Most subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Deliveries queued for one connection before it is dropped as a slow consumer.
    pub outbound_queue: usize,
    /// Bytes queued for one connection (deliveries, and the replies being written, history
    /// included) before it is dropped as a slow consumer (close 3002).
    pub outbound_queue_bytes: usize,
    /// Most deliveries of one publication that the fan-out writes itself into waiting
    /// subscribers' sockets when the node runs more than one worker thread (with one, it
    /// writes all it can); 0 turns direct writes off ([`crate::direct`]).
    pub direct_writes_per_publication: usize,
    /// Seconds between WebSocket pings.
    pub ping_interval: u64,
    /// Seconds a WebSocket client has to answer a ping.
    pub pong_timeout: u64,
    /// Seconds a connection may stay without `connect` when a token is required.
    pub connect_timeout: u64,
    /// Seconds before a connection's token expires that it is told so (an `expiring` notice),
    /// so a one-way client can reconnect with a new token before the 3005 close.
    pub token_expiry_warning: u64,
    /// Seconds between SSE and streaming heartbeats.
    pub heartbeat_interval: u64,
    /// The longest `wait` a long poll may ask for, in seconds.
    pub poll_max_wait: u64,
    /// Most publications one poll answers.
    pub poll_max_publications: usize,
    /// Most publications replayed on resume; a client further behind gets `recovered: false`.
    pub max_recovery: usize,
    /// SSE `retry:` in milliseconds.
    pub sse_retry_ms: u64,
    /// Log filter (`info`, `debug`, `switchboard=trace`...).
    pub log: String,
    /// Log lines as `text` (for people) or `json` (one object a line, for log collectors).
    pub log_format: String,
    /// Origins allowed to call the HTTP endpoints from a browser page on another origin
    /// (CORS), e.g. `["https://app.example.com"]`; `["*"]` allows any. Empty: same origin only.
    pub allowed_origins: Vec<String>,
    /// More names this server may be reached by while it runs open (no `token_secret`, on
    /// loopback), e.g. `["dev.test"]`: such a server answers only requests whose `Host` is a
    /// loopback name or address (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`) or one of
    /// these, so a page on a name rebound to 127.0.0.1 (DNS rebinding) cannot use it.
    pub allowed_hosts: Vec<String>,
    /// Run the built-in STUN/TURN server.
    pub turn: bool,
    /// Its UDP and TCP address. Empty: the HTTP listener's IP, port 3478 (port 0 when the HTTP
    /// listener's port is 0, so test servers never collide).
    pub turn_listen: String,
    /// The address advertised in relayed candidates and `/api/ice-servers` (servers behind NAT).
    pub turn_external_ip: String,
    /// TURN over TLS, served when `tls_cert`/`tls_key` are set. Empty: the TURN listener's IP,
    /// port 5349 (port 0 when the HTTP listener's port is 0).
    pub turn_tls_listen: String,
    /// Shared secret for time-limited TURN credentials (coturn's `use-auth-secret`). Empty: a
    /// random one is made at start-up, which `/api/ice-servers` hands out credentials for.
    pub turn_secret: String,
    /// Static TURN users: name → password.
    pub turn_users: BTreeMap<String, String>,
    /// Relay port range, `LOW-HIGH`.
    pub turn_relay_ports: String,
    /// Let relays reach loopback peers (local testing only).
    pub turn_allow_loopback_peers: bool,
    /// CIDR rules of peers always allowed (checked before the deny list).
    pub turn_allowed_peers: Vec<String>,
    /// CIDR rules of peers denied on top of the default deny list.
    pub turn_denied_peers: Vec<String>,
    /// Allocations one user may hold.
    pub turn_max_allocations_per_user: usize,
    /// Allocations one client IP address may hold, whatever its users (0: no limit).
    pub turn_max_allocations_per_ip: usize,
    /// Relayed bytes per second per allocation (0: unlimited).
    pub turn_bandwidth_bytes_per_sec: u64,
    /// Seconds the credentials from `/api/ice-servers` stay valid.
    pub turn_credential_ttl: u64,
    /// Serve `/ws-echo`, a plain WebSocket echo on the same stack as `/ws`, for the Autobahn suite.
    pub ws_echo_endpoint: bool,
    /// Serve the SockJS endpoint at `/sockjs` (STOMP or the JSON protocol inside; `docs/stomp.md`).
    pub sockjs: bool,
    /// Milliseconds between SockJS heartbeat frames (`h`) on an idle receiving request.
    pub sockjs_heartbeat_ms: u64,
    /// Milliseconds a SockJS session lives without a receiving request, and a closed one keeps
    /// answering its close frame.
    pub sockjs_disconnect_delay_ms: u64,
    /// Bytes after which a SockJS streaming response (xhr_streaming, eventsource, htmlfile) ends
    /// and the client opens the next, so the browser can free what it buffered.
    pub sockjs_response_limit: usize,
    /// Mount the sockjs-protocol suite's services (`echo`, `close`, ...) at `/sockjs-test/`.
    /// Test use only.
    pub sockjs_test_services: bool,
    /// Serve WebTransport over HTTP/3 at `/wt`, on UDP at the port number of `listen`.
    pub webtransport: bool,
    /// PEM certificate chain for HTTPS/WSS on `listen`, HTTP/3 and TURN over TLS, reloaded
    /// when the file changes. Empty (with `tls_key` empty): a self-signed development
    /// certificate, renewed before it expires, whose hash `GET /wt/cert-hash` serves.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// Most streams a WebTransport client may hold open at once; the protocol needs one.
    pub webtransport_max_streams: u32,
    /// Serve WebRTC: the SFU, the data channel transport, WHIP and WHEP (`docs/webrtc.md`).
    pub rtc: bool,
    /// UDP address for all WebRTC media. Empty: the HTTP listener's IP, any free port.
    pub rtc_listen: String,
    /// The IP put in the server's ICE candidate (servers behind NAT). Empty: `rtc_listen`'s.
    pub rtc_external_ip: String,
    /// Most WebRTC peer connections the server holds at once.
    pub rtc_max_peers: usize,
    /// WebRTC offers (`/rtc/dc`, WHIP, WHEP, rooms) one client IP address may make per minute
    /// without a token (0: no limit); over it, `429` with code 106.
    pub rtc_offers_per_ip_per_minute: u32,
    /// Most tracks one peer connection may publish, and most it may receive.
    pub rtc_max_tracks: usize,
    /// Compositions (video MCU) running on this node at once; one more is refused (`429`, code
    /// 106). 0: compositions are off.
    pub video_max_compositions: usize,
    /// Filter pipelines running on this node at once; one more is refused (`429`, code 106).
    /// 0: pipelines are off.
    pub video_max_pipelines: usize,
    /// The largest composition size, and the size a pipeline scales larger sources down to.
    pub video_max_width: u32,
    /// See `video_max_width`.
    pub video_max_height: u32,
    /// The highest composition frame rate.
    pub video_max_fps: u32,
    /// Frames queued towards one composition or pipeline thread; beyond it, new frames are
    /// dropped (and the track's decoder waits for a keyframe) rather than queued.
    pub video_queue_frames: usize,
    /// The TrueType font for labels and overlay text.
    pub video_font: String,
    /// Seconds a composition or pipeline goes on in a room with no peer on this node before it
    /// stops by itself (reason `room_empty`). 0: never.
    pub video_room_empty_seconds: u64,
    /// This node's base URL as clients reach it (`https://n1.example.com`). Set on every node of
    /// a cluster: each room's WebRTC media then lives on one node, and the others send its
    /// clients there. Empty: every node serves the rooms it is asked for.
    pub node_url: String,
    /// Video packets kept per sent stream for retransmissions (NACK), at most 3 s' worth: the
    /// bulk of the SFU's memory per subscriber.
    pub rtc_video_send_buffer: usize,
    /// Where recordings are written (`docs/recording.md`), one directory per recording.
    pub recordings_dir: String,
    /// Most recordings running at once on this node; over it, `429` with code 106.
    pub recordings_max: usize,
    /// A recording stops by itself after this many seconds (reason `max_duration`).
    pub recording_max_seconds: u64,
    /// A recording stops by itself once its files hold this many bytes (reason `max_size`).
    pub recording_max_bytes: u64,
    /// Frames a recording's media tap holds while its writer is busy; beyond, frames are
    /// dropped (`switchboard_media_tap_dropped_total`) and video restarts at a keyframe.
    pub recording_buffer_frames: usize,
    /// Most rooms this node mixes audio for at once (then `503`, code 114).
    pub max_mixed_rooms: usize,
    /// Most receivers of mixed audio on this node at once (then `503`, code 114).
    pub max_mixed_participants: usize,
    /// Speakers mixed at once in a room (the loudest).
    pub mix_speakers: usize,
    /// The mixer's jitter buffer target, in milliseconds (20 to 80, a multiple of 20).
    pub mix_jitter_ms: u64,
    /// The application's backend, `http://HOST[:PORT]/PATH`: the JSON protocol's `rpc` and
    /// STOMP SENDs to `app_destination_prefix` are POSTed here (`docs/protocol.md`, "The
    /// application's backend"). Empty: there is none, and those calls get error 108.
    pub app_proxy_url: String,
    /// How long one call to the backend may take, in milliseconds (then error 113).
    pub app_proxy_timeout_ms: u64,
    /// STOMP destinations under this prefix go to the backend (Spring's application
    /// destination prefix), e.g. `/app/chat.send`.
    pub app_destination_prefix: String,
    /// Options of channels whose namespace has no entry in `namespaces`.
    pub defaults: ChannelOptions,
    /// Options per namespace (the part of a channel name before `:`).
    pub namespaces: BTreeMap<String, ChannelOptions>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            broker: "memory".into(),
            presence_ttl: 60,
            token_secret: String::new(),
            token_public_key: String::new(),
            token_jwks_url: String::new(),
            token_jwks_refresh: 300,
            token_audience: String::new(),
            token_issuer: String::new(),
            api_key: String::new(),
            admin_password: String::new(),
            admin: true,
            admin_stats_interval_ms: 1000,
            admin_rate_channels: 10_000,
            insecure_allow_open: false,
            demo: true,
            lab_max_sessions: 32,
            lab_max_delay_ms: 2000,
            game_round_secs: 80,
            game_grace_secs: 30,
            game_max_games: 32,
            max_connections: 100_000,
            http_header_timeout: 10,
            http_idle_timeout: 75,
            http_body_timeout: 30,
            http_max_sockets_per_ip: 1000,
            http_accept_rate_per_ip: 100,
            http_redirect_listen: String::new(),
            shutdown_timeout: 10,
            tcp_user_timeout: 60,
            max_connections_per_ip: 256,
            max_connections_per_user: 64,
            max_publish_rate: 200,
            max_publish_burst: 400,
            max_channels: 1_000_000,
            channel_idle_ttl: 300,
            max_frame_bytes: 128 * 1024,
            ws_read_buffer_bytes: 256,
            max_publication_bytes: 64 * 1024,
            max_json_depth: 64,
            max_history_reply_bytes: 1024 * 1024,
            max_subscriptions: 128,
            outbound_queue: 1024,
            outbound_queue_bytes: 4 * 1024 * 1024,
            direct_writes_per_publication: 1024,
            ping_interval: 25,
            connect_timeout: 10,
            token_expiry_warning: 30,
            pong_timeout: 10,
            heartbeat_interval: 15,
            poll_max_wait: 60,
            poll_max_publications: 1000,
            max_recovery: 10_000,
            sse_retry_ms: 2000,
            log: "info".into(),
            log_format: "text".into(),
            ws_echo_endpoint: false,
            sockjs: true,
            sockjs_heartbeat_ms: 25_000,
            sockjs_disconnect_delay_ms: 5_000,
            sockjs_response_limit: 128 * 1024,
            sockjs_test_services: false,
            turn: true,
            turn_listen: String::new(),
            turn_external_ip: String::new(),
            turn_tls_listen: String::new(),
            turn_secret: String::new(),
            turn_users: BTreeMap::new(),
            turn_relay_ports: "49152-65535".into(),
            turn_allow_loopback_peers: false,
            turn_allowed_peers: Vec::new(),
            turn_denied_peers: Vec::new(),
            turn_max_allocations_per_user: 16,
            turn_max_allocations_per_ip: 64,
            turn_bandwidth_bytes_per_sec: 5_000_000,
            turn_credential_ttl: 86_400,
            webtransport: true,
            tls_cert: String::new(),
            tls_key: String::new(),
            webtransport_max_streams: 4,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            rtc: true,
            rtc_listen: String::new(),
            rtc_external_ip: String::new(),
            rtc_max_peers: 1000,
            rtc_offers_per_ip_per_minute: 30,
            rtc_max_tracks: 64,
            video_max_compositions: 2,
            video_max_pipelines: 4,
            video_max_width: 1280,
            video_max_height: 720,
            video_max_fps: 30,
            video_queue_frames: 16,
            video_font: crate::media::video::text::DEFAULT_FONT.to_owned(),
            video_room_empty_seconds: 10,
            rtc_video_send_buffer: 500,
            recordings_dir: "recordings".into(),
            recordings_max: 16,
            recording_max_seconds: 4 * 3600,
            recording_max_bytes: 4 << 30,
            recording_buffer_frames: 2048,
            max_mixed_rooms: 16,
            max_mixed_participants: 256,
            mix_speakers: 3,
            mix_jitter_ms: 40,
            node_url: String::new(),
            app_proxy_url: String::new(),
            app_proxy_timeout_ms: 5000,
            app_destination_prefix: "/app/".into(),
            defaults: ChannelOptions::default(),
            namespaces: BTreeMap::new(),
        }
    }
}

/// `SWITCHBOARD_*` variables that are not server options: the config file's path, the terminal
/// clients' settings and the test harness's binary path.
const NOT_OPTIONS: [&str; 4] = ["CONFIG", "URL", "TOKEN", "BIN"];

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file, a variable or a flag does not fit the schema.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// One option's value does not fit its type, or the option does not exist.
    #[error("invalid configuration: {key} ({origin}): {message}")]
    Value {
        /// The option, dotted for nested ones (`namespaces.chat.history_size`).
        key: String,
        /// Where its value came from: `in FILE`, `from SWITCHBOARD_X` or `from --flag`.
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// A non-loopback listener without authentication.
    #[error(
        "refusing to listen on {0} without authentication: set token_secret (SWITCHBOARD_TOKEN_SECRET) \
         so clients must present a JWT, or listen on 127.0.0.1 (or set insecure_allow_open = true \
         if you really want an open server)"
    )]
    OpenOnPublicAddress(SocketAddr),
}

impl Config {
    /// Loads the configuration: defaults < `file` < `SWITCHBOARD_*` variables in `env` < `flags`
    /// (flags as `key = value` TOML pairs).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: toml::Table,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        let defaults =
            toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        // Where each option was set last, so that an error can say where to fix it.
        let mut origins: BTreeMap<String, String> = BTreeMap::new();
        if let Some(path) = file {
            for key in table.keys() {
                let origin = format!("in {}", path.display());
                if !defaults.contains_key(key) {
                    let message = "no such option (docs/configuration.md lists them)".to_owned();
                    return Err(ConfigError::Value { key: key.clone(), origin, message });
                }
                origins.insert(key.clone(), origin);
            }
        }
        for (name, value) in env {
            let Some(key) = name.strip_prefix("SWITCHBOARD_") else {
                continue;
            };
            if NOT_OPTIONS.contains(&key) {
                continue;
            }
            let key = key.to_ascii_lowercase();
            let Some(default) = defaults.get(&key) else {
                return Err(ConfigError::Invalid(format!("unknown environment variable {name}")));
            };
            table.insert(key.clone(), env_value(&name, &key, &value, default)?);
            origins.insert(key, format!("from {name}"));
        }
        for key in flags.keys() {
            origins.insert(key.clone(), format!("from --{}", key.replace('_', "-")));
        }
        table.extend(flags);
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            let top = key.split('.').next().unwrap_or_default();
            let origin = origins.get(top).cloned().unwrap_or_else(|| "default".to_owned());
            ConfigError::Value { key, origin, message: e.into_inner().message().to_owned() }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The options of `channel`'s namespace.
    pub fn channel_options(&self, channel: &ChannelName) -> &ChannelOptions {
        self.namespaces.get(channel.namespace()).unwrap_or(&self.defaults)
    }

    /// The configuration as TOML, defaults included (`switchboard config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The configuration with its secrets replaced by `"<redacted>"` (`switchboard config`
    /// without `--show-secrets`): `token_secret`, `api_key`, `turn_secret`, `admin_password`, the passwords of
    /// `turn_users`, and a password in the `broker` or `app_proxy_url` URL. Empty ones stay
    /// empty, so the output still tells set from unset.
    pub fn redacted(mut self) -> Self {
        const REDACTED: &str = "<redacted>";
        for secret in
            [&mut self.token_secret, &mut self.api_key, &mut self.turn_secret, &mut self.admin_password]
        {
            if !secret.is_empty() {
                REDACTED.clone_into(secret);
            }
        }
        for password in self.turn_users.values_mut() {
            REDACTED.clone_into(password);
        }
        for url in [&mut self.broker, &mut self.app_proxy_url] {
            *url = redact_url_password(url, REDACTED);
        }
        self
    }

    /// `node_url` without a trailing `/`, to put paths after; empty outside a cluster.
    pub fn node_base(&self) -> &str {
        self.node_url.trim_end_matches('/')
    }

    /// Whether clients must present a token.
    pub fn requires_token(&self) -> bool {
        !self.token_secret.is_empty() || !self.token_public_key.is_empty() || !self.token_jwks_url.is_empty()
    }

    /// Whether the server runs open on loopback: no `token_secret`, so any page the user's
    /// browser shows could use it unless the `Host` and `Origin` checks of `crate::http` stop it.
    /// (Open on another address takes `insecure_allow_open`, and then no `Host` is checked.)
    pub fn open_on_loopback(&self) -> bool {
        !self.requires_token() && self.listen.ip().is_loopback()
    }
}

/// `url` (`SCHEME://USER:PASSWORD@HOST/...`) with its password, if any, replaced by `redacted`.
fn redact_url_password(url: &str, redacted: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_owned() };
    let shown = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:{redacted}"),
        // `nats://TOKEN@HOST`: a lone userinfo is a credential too.
        None => redacted.to_owned(),
    };
    format!("{scheme}://{shown}{}", &rest[at..])
}

/// Checks `app_proxy_url`: an `http://` URL with a host (the backend is reached over plain HTTP).
fn check_backend_url(url: &str) -> Result<(), String> {
    let example = "e.g. http://127.0.0.1:3000/switchboard";
    if !url.contains("://") {
        return Err(format!("app_proxy_url {url:?} must start with http://; {example}"));
    }
    let uri: hyper::Uri =
        url.parse().map_err(|e| format!("app_proxy_url {url:?} is not a URL ({e}); {example}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "app_proxy_url {url:?}: https is not supported; reach the backend over http:// \
                 (on loopback or a private network, or through a local TLS proxy)"
            ));
        }
        _ => return Err(format!("app_proxy_url {url:?} must start with http://; {example}")),
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() && !a.as_str().contains('@') => Ok(()),
        _ => Err(format!("app_proxy_url {url:?} needs a host (and no user info); {example}")),
    }
}

/// The value of variable `name` for option `key`, typed like its default.
fn env_value(name: &str, key: &str, value: &str, default: &toml::Value) -> Result<toml::Value, ConfigError> {
    let bad = |what: &str| ConfigError::Value {
        key: key.to_owned(),
        origin: format!("from {name}"),
        message: format!("{value:?} is not {what}"),
    };
    Ok(match default {
        toml::Value::Boolean(_) => match value {
            "1" | "true" | "yes" | "on" => toml::Value::Boolean(true),
            "0" | "false" | "no" | "off" => toml::Value::Boolean(false),
            _ => return Err(bad("a boolean")),
        },
        toml::Value::Integer(_) => toml::Value::Integer(value.parse().map_err(|_| bad("an integer"))?),
        toml::Value::String(_) => toml::Value::String(value.to_owned()),
        _ => {
            return Err(ConfigError::Invalid(format!("{name}: set this option in the file")));
        }
    })
}

#[cfg(test)]
mod tests;
