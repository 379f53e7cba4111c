//! WebRTC on [str0m](https://docs.rs/str0m): the SFU, the data channel transport, WHIP and WHEP.
//! See `docs/webrtc.md` for the contract; mesh calls need none of this (they signal through room
//! channels, [`crate::rooms`]).
//!
//! - [`engine`]: one task owning every peer connection and the one UDP socket they share; it
//!   demultiplexes packets by ICE, drives str0m and forwards media between peers.
//! - [`sfu`]: which track each receiving m-line carries and which simulcast layer, pure logic.
//! - [`EngineError`]: what the engine refuses; [`http`] maps it to statuses and error codes.
//! - [`http`]: `/rtc/sfu/{room}`, `/rtc/peers/{peer}`, `/rtc/dc`, `/whip/{room}`, `/whep/{room}`.
//! - [`datachannel`]: the channel protocol over a data channel, driven like `/ws`.
//!
//! The browser always offers and the server answers, so renegotiation is one HTTP exchange.

pub mod datachannel;
pub mod engine;
mod error;
pub mod http;
pub mod sfu;

pub use error::EngineError;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use switchboard_protocol::ChannelName;
use tokio::sync::{mpsc, oneshot};

use crate::media::tap::MediaTap;

/// What a peer connection is for.
#[derive(Debug)]
pub enum Role {
    /// A room participant (SDK, SFU mode): publishes and receives tracks.
    Participant {
        /// The room channel.
        room: ChannelName,
        /// The participant's client id (its connection's, in the room's presence).
        client: String,
        /// Its display name.
        name: Option<String>,
    },
    /// A WHIP ingest: publishes into the room.
    Whip {
        /// The room channel.
        room: ChannelName,
    },
    /// A WHEP player: receives the room's newest tracks.
    Whep {
        /// The room channel.
        room: ChannelName,
    },
    /// The data channel transport; events go to its session task.
    Data {
        /// Where the engine sends the data channel's events.
        events: mpsc::Sender<DcEvent>,
    },
}

impl Role {
    /// The room, for media roles.
    pub fn room(&self) -> Option<&ChannelName> {
        match self {
            Role::Participant { room, .. } | Role::Whip { room } | Role::Whep { room } => Some(room),
            Role::Data { .. } => None,
        }
    }
}

/// What an offer asks besides the SDP: labels of sent m-lines, tracks for received ones, layers.
#[derive(Debug, Default)]
pub struct Negotiation {
    /// The offer SDP, when there is one.
    pub offer: Option<String>,
    /// `mid` → label of a send m-line (`camera`, `screen`, `mic`).
    pub publish: HashMap<String, String>,
    /// `mid` → the track a receive m-line carries (`None` stops it).
    pub subscribe: HashMap<String, Option<String>>,
    /// `mid` → the simulcast layer wanted.
    pub layers: HashMap<String, String>,
    /// WHEP: receive the room's audio mix instead of its newest audio track (`?audio=mix`).
    pub mix: bool,
    /// WHEP `?track=ID`: the video receivers carry this track (a composition's, say) instead of
    /// following the room's newest.
    pub pin: Option<String>,
}

/// A new peer connection.
#[derive(Debug, Serialize)]
pub struct Opened {
    /// Its id: the `/rtc/peers/{peer}` resource.
    pub peer: String,
    /// The SDP answer.
    pub sdp: String,
    /// The room's tracks.
    pub tracks: Vec<TrackInfo>,
    /// The peer's resource, absolute when `node_url` is set (PATCH and DELETE go there).
    pub url: String,
    /// The room's namespace mixes audio (`audio_mix`): receive the mix, not the audio tracks.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub audio_mix: bool,
}

/// A track of a room, as published on the room channel.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TrackInfo {
    /// Stable while the track lives.
    pub id: String,
    /// The publishing participant's client id (`whip` for a WHIP ingest).
    pub participant: String,
    /// The participant's display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `audio` or `video`.
    pub kind: &'static str,
    /// The publisher's label.
    pub label: String,
    /// Simulcast layers (rids), low to high as offered; empty without simulcast.
    pub layers: Vec<String>,
}

/// An event of a data channel transport peer.
#[derive(Debug)]
pub enum DcEvent {
    /// The `switchboard` channel opened.
    Open,
    /// A message on either channel.
    Message {
        /// Binary (or text).
        binary: bool,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A write did not fit in the send buffer: the client does not keep up.
    Blocked,
    /// The peer connection is gone.
    Closed,
}

/// A request to the engine.
#[derive(Debug)]
pub(crate) enum Command {
    Open {
        role: Role,
        nego: Negotiation,
        reply: oneshot::Sender<Result<Opened, EngineError>>,
    },
    Update {
        peer: String,
        nego: Negotiation,
        reply: oneshot::Sender<Result<Option<String>, EngineError>>,
    },
    Close {
        peer: String,
        reply: oneshot::Sender<bool>,
    },
    Rooms {
        reply: oneshot::Sender<Vec<ChannelName>>,
    },
    Snapshot {
        reply: oneshot::Sender<Vec<engine::snapshot::RoomSnapshot>>,
    },
    Send {
        peer: String,
        reliable: bool,
        binary: bool,
        data: Bytes,
    },
    TapOpen {
        room: ChannelName,
        tx: mpsc::Sender<crate::media::tap::TapEvent>,
    },
    Tap(crate::media::tap::TapRequest),
    MixRecord {
        room: ChannelName,
        reply: oneshot::Sender<Result<tokio::sync::broadcast::Receiver<(u32, Bytes)>, EngineError>>,
    },
    MixRelease {
        room: ChannelName,
    },
    ServeOpen {
        room: ChannelName,
        label: String,
        name: String,
        keyframes: mpsc::Sender<()>,
        reply: oneshot::Sender<String>,
    },
    ServeFrame {
        track: String,
        data: Bytes,
        keyframe: bool,
        time: u64,
    },
    ServeClose {
        track: String,
    },
}

/// A room-mix recording's hold on its room's mixer ([`RtcService::mix_record`]): the packets of
/// the shared mix, and the demand that keeps the mixer running, released when dropped.
#[derive(Debug)]
pub struct MixLease {
    /// `(RTP time at 48 kHz, Opus packet)` every 20 ms; a slow reader lags.
    pub packets: tokio::sync::broadcast::Receiver<(u32, Bytes)>,
    room: ChannelName,
    tx: mpsc::Sender<Command>,
}

impl Drop for MixLease {
    fn drop(&mut self) {
        let release = Command::MixRelease { room: self.room.clone() };
        if let Err(mpsc::error::TrySendError::Full(release)) = self.tx.try_send(release) {
            // A busy engine: wait for room on a thread (a drop cannot await).
            let tx = self.tx.clone();
            std::thread::spawn(move || {
                let _ = tx.blocking_send(release);
            });
        }
    }
}

/// A served track's source end (see [`RtcService::serve`]).
#[derive(Debug)]
pub struct ServedTrack {
    /// The track id.
    pub id: String,
    tx: mpsc::Sender<Command>,
    /// Receivers want a keyframe.
    pub keyframes: mpsc::Receiver<()>,
}

impl ServedTrack {
    /// Sends one VP8 frame (`time`: RTP time at 90 kHz, extended) to the track's receivers;
    /// never waits: a frame that does not fit the engine's queue is dropped (`false`; the
    /// receivers' decoders ask for a keyframe if they need one).
    pub fn frame(&self, data: Bytes, keyframe: bool, time: u64) -> bool {
        self.sender().frame(data, keyframe, time)
    }

    /// A sender of frames usable from a thread (`ServedTrack` itself stays with its owner).
    pub fn sender(&self) -> ServedSender {
        ServedSender { id: self.id.clone(), tx: self.tx.clone() }
    }
}

impl Drop for ServedTrack {
    fn drop(&mut self) {
        let close = Command::ServeClose { track: self.id.clone() };
        if let Err(mpsc::error::TrySendError::Full(close)) = self.tx.try_send(close) {
            // A busy engine: wait for room on a thread (a drop cannot await); the track must not
            // outlive its source.
            let tx = self.tx.clone();
            std::thread::spawn(move || {
                let _ = tx.blocking_send(close);
            });
        }
    }
}

/// Sends frames of a served track, from any thread.
#[derive(Debug, Clone)]
pub struct ServedSender {
    id: String,
    tx: mpsc::Sender<Command>,
}

impl ServedSender {
    /// As [`ServedTrack::frame`].
    pub fn frame(&self, data: Bytes, keyframe: bool, time: u64) -> bool {
        self.tx.try_send(Command::ServeFrame { track: self.id.clone(), data, keyframe, time }).is_ok()
    }
}

/// The handle the rest of the node uses; cheap to clone.
#[derive(Debug, Clone)]
pub struct RtcService {
    tx: mpsc::Sender<Command>,
    addr: SocketAddr,
}

impl RtcService {
    /// The UDP address media flows on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens a peer connection from an offer.
    pub async fn open(&self, role: Role, nego: Negotiation) -> Result<Opened, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.call(Command::Open { role, nego, reply }, rx).await?
    }

    /// Renegotiates or re-points a peer connection; the answer when there was an offer.
    pub async fn update(&self, peer: String, nego: Negotiation) -> Result<Option<String>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.call(Command::Update { peer, nego, reply }, rx).await?
    }

    /// Closes a peer connection and forgets it: `true` when it was open, or had closed by itself
    /// lately and was not closed through here yet (the engine remembers closed peers a while);
    /// `false` when this node has no such peer (any more).
    pub async fn close(&self, peer: String) -> bool {
        let (reply, rx) = oneshot::channel();
        self.call(Command::Close { peer, reply }, rx).await.unwrap_or(false)
    }

    /// The rooms that have peers here.
    pub async fn rooms(&self) -> Vec<ChannelName> {
        let (reply, rx) = oneshot::channel();
        self.call(Command::Rooms { reply }, rx).await.unwrap_or_default()
    }

    /// The rooms with peers here, their peers, tracks and receivers (for the admin API).
    pub async fn snapshot(&self) -> Vec<engine::snapshot::RoomSnapshot> {
        let (reply, rx) = oneshot::channel();
        self.call(Command::Snapshot { reply }, rx).await.unwrap_or_default()
    }

    /// Queues a data channel message; waits while the engine is busy (back-pressure).
    pub async fn send(&self, peer: &str, reliable: bool, binary: bool, data: Bytes) -> bool {
        self.tx.send(Command::Send { peer: peer.to_owned(), reliable, binary, data }).await.is_ok()
    }

    /// Taps `room`'s media ([`crate::media::tap`]): its tracks and frames, through a channel of
    /// `capacity` events (frames beyond it are dropped, never waited for).
    pub async fn tap(&self, room: ChannelName, capacity: usize) -> Result<MediaTap, EngineError> {
        let (tx, events) = mpsc::channel(capacity.max(1));
        let command = Command::TapOpen { room: room.clone(), tx };
        self.tx.send(command).await.map_err(|_| EngineError::Stopped)?;
        Ok(MediaTap { events, requests: self.tx.clone(), room })
    }

    /// Keeps `room`'s mixer running for a room-mix recording (starting it if no one is mixed yet;
    /// `MixerFull` over `max_mixed_rooms`) and gives its shared mix until the lease is dropped.
    pub async fn mix_record(&self, room: ChannelName) -> Result<MixLease, EngineError> {
        let (reply, rx) = oneshot::channel();
        let packets = self.call(Command::MixRecord { room: room.clone(), reply }, rx).await??;
        Ok(MixLease { packets, room, tx: self.tx.clone() })
    }

    /// Adds a served video track to `room` (a composition's or pipeline's output): in the room's
    /// track list like any other, fed with [`ServedTrack::frame`]; receivers' keyframe requests
    /// arrive on its [`ServedTrack::keyframes`]. Dropping it removes the track.
    pub async fn serve(
        &self,
        room: ChannelName,
        label: &str,
        name: &str,
    ) -> Result<ServedTrack, EngineError> {
        let (keyframes, rx) = mpsc::channel(4);
        let (reply, id) = oneshot::channel();
        let command =
            Command::ServeOpen { room, label: label.to_owned(), name: name.to_owned(), keyframes, reply };
        let id = self.call(command, id).await?;
        Ok(ServedTrack { id, tx: self.tx.clone(), keyframes: rx })
    }

    async fn call<T>(&self, command: Command, rx: oneshot::Receiver<T>) -> Result<T, EngineError> {
        self.tx.send(command).await.map_err(|_| EngineError::Stopped)?;
        // No answer: the engine failed on this request (and dropped what it concerned).
        rx.await.map_err(|_| EngineError::Failed)
    }
}

/// Starts the engine on `addr` (port 0: any free port); `advertise` is the IP put in candidates.
pub async fn start(
    addr: SocketAddr,
    advertise: std::net::IpAddr,
    config: Arc<crate::Config>,
    broker: Arc<dyn crate::broker::Broker>,
    metrics: Arc<crate::metrics::Metrics>,
) -> std::io::Result<RtcService> {
    let socket = tokio::net::UdpSocket::bind(addr).await?;
    let local = socket.local_addr()?;
    let (tx, rx) = mpsc::channel(1024);
    let candidate = SocketAddr::new(advertise, local.port());
    tokio::spawn(engine::Engine::new(socket, candidate, config, broker, metrics).run(rx));
    Ok(RtcService { tx, addr: local })
}
