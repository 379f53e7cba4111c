//! The WebRTC engine: one task owns every peer connection ([`str0m::Rtc`], sans-IO) and the one
//! UDP socket they share. Each turn of its loop reads a batch of datagrams (handed to the peer
//! whose ICE credentials accept them), a command, or a timer; then polls the peers that changed
//! until they are idle, forwarding media between them. Peers are few compared to packets, so
//! lookups are linear scans; a source-address map finds the peer of a packet at once.
//!
//! This file holds the engine's state, its commands, the dispatch of str0m's events and the
//! peers' lifecycle (panics, reaping). The rest, by job:
//!
//! - [`socket`]: the loop over the socket, commands and timers; demultiplexing datagrams to
//!   peers (ICE credentials, then the source address); polling peers until idle.
//! - [`negotiate`]: offers and answers, the checks on an offer's m-lines, and which track and
//!   layer each receiving m-line carries.
//! - [`tracks`]: the track registry (tracks appear and go with publishers' m-lines), the rooms'
//!   track lists on their channels, and WHEP players following the newest tracks.
//! - [`forward`]: forwarding a publisher's frames to receivers (simulcast layers, header
//!   extensions) and keyframe requests back to publishers.
//! - [`served`]: tracks whose frames come from inside the node (compositions, pipelines).
//! - [`channels`]: the data channel transport's two channels.
//! - [`snapshot`]: rooms, peers, tracks and receivers as they are now, measured as frames pass
//!   (bitrate, codec, picture size from keyframes: [`frame_size`]), for the admin API.
//! - [`mixing`]: receivers fed by the room's audio mixer instead of one track each.
//! - [`taps`]: media taps ([`crate::media::tap`]): frames offered to subscribers off the task.

mod channels;
mod forward;
pub(crate) mod frame_size;
mod mixing;
mod negotiate;
mod served;
pub use served::SERVER;
pub mod snapshot;
mod socket;
mod taps;
mod tracks;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::channel::ChannelId;
use str0m::media::{MediaKind, Mid, Rid};
use str0m::{Event, IceConnectionState, Rtc};
use switchboard_protocol::ChannelName;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::sfu::{Forward, Layers};
use super::{Command, DcEvent, Role, TrackInfo};
use crate::broker::{Broker, NewPublication};
use crate::config::Config;
use crate::model::Payload;

/// A peer that has not connected by then is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A peer whose ICE stays disconnected this long is dropped.
const DISCONNECTED_GRACE: Duration = Duration::from_secs(8);
/// How long the ids of closed peers are remembered, so that closing one that already hung up
/// by itself still succeeds once: a browser's `pc.close()` tells the server over DTLS before the
/// page's `DELETE` arrives over HTTP.
const CLOSED_MEMORY: Duration = Duration::from_secs(600);
/// At most this many closed peers are remembered (the oldest are forgotten first).
const CLOSED_MAX: usize = 4096;

struct Peer {
    id: String,
    rtc: Rtc,
    role: Role,
    deadline: Instant,
    /// Has input or queued media since it was last polled.
    dirty: bool,
    created: Instant,
    connected: bool,
    disconnected_at: Option<Instant>,
    /// Publisher labels by mid, applied when the m-line's track appears.
    labels: HashMap<Mid, String>,
    /// WHEP `?track=`: its video receivers carry this track instead of the newest.
    pin: Option<String>,
    /// Tracks this peer publishes, by its mid.
    published: HashMap<Mid, String>,
    /// What each sending m-line (from the server's side) carries.
    receivers: HashMap<Mid, Receiver>,
    reliable: Option<ChannelId>,
    unreliable: Option<ChannelId>,
    /// Its receiving audio m-lines carry the room's mix (WHEP `audio=mix`, `audio_mix` rooms).
    mix_audio: bool,
}

#[derive(Debug)]
struct Receiver {
    kind: MediaKind,
    /// The track, or `None` when idle.
    track: Option<String>,
    /// WHEP: follow the room's newest track of this kind.
    auto: bool,
    /// Fed by the room's audio mixer instead of a track.
    mix: bool,
    forward: Forward,
}

struct Track {
    info: TrackInfo,
    room: ChannelName,
    owner: String,
    mid: Mid,
    kind: MediaKind,
    layers: Layers,
    created: u64,
    /// When a keyframe was last asked for, per layer (layers recover independently).
    keyframe_requests: Vec<(Option<Rid>, Instant)>,
    /// Codec, bitrate and picture size, for the admin API.
    stats: snapshot::TrackStats,
    /// What taps are told of it, from its first frame on (when its codec is known).
    tap: Option<Arc<crate::media::tap::TapTrack>>,
}

/// See the module docs.
pub(crate) struct Engine {
    socket: UdpSocket,
    /// Our candidate address: the destination of what peers send.
    candidate: SocketAddr,
    config: Arc<Config>,
    metrics: Arc<crate::metrics::Metrics>,
    peers: Vec<Peer>,
    by_addr: HashMap<SocketAddr, String>,
    tracks: HashMap<String, Track>,
    /// Sources of the served tracks (compositions, pipelines), by track id.
    served: HashMap<String, served::Source>,
    track_seq: u64,
    dirty_rooms: HashSet<ChannelName>,
    events: VecDeque<(usize, Event)>,
    announcements: mpsc::UnboundedSender<(ChannelName, Bytes, crate::config::ChannelOptions)>,
    /// The peer being handled, to blame should the WebRTC stack panic ([`Engine::guarded`]).
    current: Option<usize>,
    /// Peers that closed lately, oldest first, with when ([`CLOSED_MEMORY`]).
    closed: VecDeque<(String, Instant)>,
    /// The rooms' audio mixers ([`mixing`]).
    mixes: HashMap<ChannelName, mixing::Mix>,
    /// Mix receivers or audio tracks changed: [`Engine::sync_mixes`] has work.
    mix_dirty: bool,
    /// Room-mix recordings per room: each keeps the room's mixer running.
    mix_recordings: HashMap<ChannelName, usize>,
    mix_tx: mpsc::Sender<(ChannelName, crate::media::mix::run::MixOut)>,
    mix_rx: Option<mpsc::Receiver<(ChannelName, crate::media::mix::run::MixOut)>>,
    mix_metrics: Arc<crate::media::mix::run::MixMetrics>,
    /// Media taps ([`crate::media::tap`]); empty unless something records or mixes.
    taps: Vec<crate::media::tap::TapSender>,
}

impl Engine {
    /// An engine on `socket`, advertising `candidate`; track lists are published through `broker`.
    pub(crate) fn new(
        socket: UdpSocket,
        candidate: SocketAddr,
        config: Arc<Config>,
        broker: Arc<dyn Broker>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        str0m::crypto::from_feature_flags().install_process_default();
        let sock = socket2::SockRef::from(&socket);
        let _ = sock.set_recv_buffer_size(4 << 20);
        let _ = sock.set_send_buffer_size(4 << 20);
        let (announcements, mut rx) = mpsc::unbounded_channel::<(ChannelName, Bytes, _)>();
        let counted = metrics.clone();
        // One task publishes track lists in order, so a newer list never lands before an older one.
        tokio::spawn(async move {
            while let Some((channel, body, options)) = rx.recv().await {
                let request = NewPublication {
                    channel,
                    payload: Payload::Json(body),
                    info: None,
                    idempotency_key: None,
                    options,
                };
                if let Err(e) = crate::broker::publish(broker.as_ref(), &counted, request).await {
                    tracing::warn!(error = %e, "publishing a room's tracks failed");
                }
            }
        });
        let (mix_tx, mix_rx) = mpsc::channel(256);
        let mix_metrics = Arc::new(crate::media::mix::run::MixMetrics::default());
        let rendered = mix_metrics.clone();
        metrics.add_source(move |s| rendered.render(s));
        Self {
            socket,
            candidate,
            config,
            metrics,
            peers: Vec::new(),
            by_addr: HashMap::new(),
            tracks: HashMap::new(),
            served: HashMap::new(),
            track_seq: 0,
            dirty_rooms: HashSet::new(),
            events: VecDeque::new(),
            announcements,
            current: None,
            closed: VecDeque::new(),
            mixes: HashMap::new(),
            mix_dirty: false,
            mix_recordings: HashMap::new(),
            mix_tx,
            mix_rx: Some(mix_rx),
            mix_metrics,
            taps: Vec::new(),
        }
    }

    /// Runs `f`. Should the WebRTC stack panic on some peer's input, only that peer is lost
    /// (dropped without touching its state again); the engine and every other call go on.
    fn guarded(&mut self, f: impl FnOnce(&mut Self)) {
        self.current = None;
        let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) else {
            return;
        };
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        self.events.clear();
        match self.current.take().filter(|&i| i < self.peers.len()) {
            Some(i) => {
                let peer = self.peers.remove(i);
                tracing::error!(peer = %peer.id, panic = %what, "the WebRTC stack failed on a peer: dropped");
                self.forget(peer);
                self.by_addr.retain(|_, id| self.peers.iter().any(|p| p.id == *id));
            }
            None => tracing::error!(panic = %what, "the WebRTC engine failed outside any peer"),
        }
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.peers.iter().position(|p| p.id == id)
    }

    /// Handles one event of peer `i`.
    fn on_event(&mut self, i: usize, event: Event) {
        self.current = Some(i);
        let now = Instant::now();
        match event {
            Event::Connected => {
                tracing::debug!(peer = %self.peers[i].id, "connected");
                self.peers[i].connected = true;
            }
            Event::IceConnectionStateChange(state) => {
                let peer = &mut self.peers[i];
                match state {
                    IceConnectionState::Disconnected => {
                        peer.disconnected_at.get_or_insert(now);
                    }
                    IceConnectionState::Connected | IceConnectionState::Completed => {
                        peer.disconnected_at = None
                    }
                    _ => {}
                }
            }
            Event::MediaAdded(m) => self.media_added(i, m.mid, m.kind, m.direction, m.simulcast),
            Event::MediaChanged(m) => self.media_changed(i, m.mid, m.direction),
            Event::MediaData(data) => self.forward(i, data, now),
            Event::KeyframeRequest(req) => self.keyframe_requested(i, req.mid, now),
            Event::ChannelOpen(id, label) => self.channel_open(i, id, &label),
            Event::ChannelData(d) => self.channel_data(i, d.binary, d.data),
            Event::ChannelClose(id) => self.channel_close(i, id),
            _ => {}
        }
    }

    /// Drops peers that closed, failed, never connected or stayed disconnected, and their tracks.
    fn reap(&mut self, now: Instant) {
        let dead = |p: &Peer| {
            !p.rtc.is_alive()
                || (!p.connected && now.saturating_duration_since(p.created) > CONNECT_TIMEOUT)
                || p.disconnected_at.is_some_and(|at| now.saturating_duration_since(at) > DISCONNECTED_GRACE)
        };
        if !self.peers.iter().any(dead) {
            return;
        }
        let (gone, kept): (Vec<Peer>, Vec<Peer>) =
            std::mem::take(&mut self.peers).into_iter().partition(dead);
        self.peers = kept;
        for peer in gone {
            self.remove(peer);
        }
        self.by_addr.retain(|_, id| self.peers.iter().any(|p| p.id == *id));
    }

    fn remove(&mut self, mut peer: Peer) {
        tracing::debug!(peer = %peer.id, "peer closed");
        peer.rtc.disconnect();
        self.forget(peer);
    }

    /// Releases what `peer` held in the engine (its tracks, its room's list, its data session).
    fn forget(&mut self, peer: Peer) {
        self.metrics.rtc_peers.add(-1);
        let now = Instant::now();
        self.forget_closed(now);
        if self.closed.len() >= CLOSED_MAX {
            self.closed.pop_front();
        }
        self.closed.push_back((peer.id.clone(), now));
        if let Role::Data { events } = &peer.role {
            let _ = events.try_send(DcEvent::Closed);
        }
        if let Some(room) = peer.role.room() {
            self.dirty_rooms.insert(room.clone());
        }
        self.mix_dirty = true;
        for id in peer.published.values() {
            self.tracks.remove(id);
            self.release(id);
        }
    }

    /// Forgets the peers that closed longer than [`CLOSED_MEMORY`] ago.
    fn forget_closed(&mut self, now: Instant) {
        while self.closed.front().is_some_and(|(_, at)| now.saturating_duration_since(*at) > CLOSED_MEMORY) {
            self.closed.pop_front();
        }
    }

    /// Whether peer `id` was here and closed within [`CLOSED_MEMORY`]; forgets it.
    fn take_closed(&mut self, id: &str) -> bool {
        self.forget_closed(Instant::now());
        let at = self.closed.iter().position(|(closed, _)| closed == id);
        at.and_then(|at| self.closed.remove(at)).is_some()
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Open { role, nego, reply } => {
                let _ = reply.send(self.open(role, nego));
            }
            Command::Update { peer, nego, reply } => {
                let _ = reply.send(self.update(&peer, nego));
            }
            Command::Close { peer, reply } => {
                if let Some(i) = self.index(&peer) {
                    self.current = Some(i);
                    self.peers[i].rtc.disconnect();
                }
                self.reap(Instant::now());
                // A peer's resource outlives its connection a while: the first close of a peer
                // that hung up by itself succeeds too. Either way it is gone after this one.
                let _ = reply.send(self.take_closed(&peer));
            }
            Command::Send { peer, reliable, binary, data } => self.send(&peer, reliable, binary, &data),
            Command::ServeOpen { room, label, name, keyframes, reply } => {
                let _ = reply.send(self.serve_open(room, label, name, keyframes));
            }
            Command::ServeFrame { track, data, keyframe, time } => {
                self.serve_frame(&track, data, keyframe, time);
            }
            Command::ServeClose { track } => self.serve_close(&track),
            Command::Rooms { reply } => {
                let mut rooms: Vec<ChannelName> =
                    self.peers.iter().filter_map(|p| p.role.room().cloned()).collect();
                rooms.sort();
                rooms.dedup();
                let _ = reply.send(rooms);
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.snapshot(Instant::now()));
            }
            Command::TapOpen { room, tx } => self.tap_open(room, tx),
            Command::Tap(request) => self.tap_request(request),
            Command::MixRecord { room, reply } => {
                let _ = reply.send(self.mix_record(&room));
            }
            Command::MixRelease { room } => self.mix_release(&room),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::channels::DC_RELIABLE;
    use super::*;
    use crate::rtc::Negotiation;

    async fn engine() -> Engine {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let candidate = socket.local_addr().unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let hub = Arc::new(crate::hub::Hub::new(metrics.clone()));
        let broker = Arc::new(crate::broker::memory::MemoryBroker::new(hub));
        Engine::new(socket, candidate, Arc::new(Config::default()), broker, metrics)
    }

    /// A data channel session opened from a str0m client's offer; its events.
    fn open_data(engine: &mut Engine) -> (String, mpsc::Receiver<DcEvent>) {
        let mut client = Rtc::builder().build(Instant::now());
        let mut change = client.sdp_api();
        change.add_channel(DC_RELIABLE.into());
        let (offer, _pending) = change.apply().unwrap();
        let (events, rx) = mpsc::channel(8);
        let nego = Negotiation { offer: Some(offer.to_sdp_string()), ..Negotiation::default() };
        (engine.open(Role::Data { events }, nego).unwrap().peer, rx)
    }

    #[tokio::test]
    async fn a_peer_that_hung_up_by_itself_closes_once_within_the_memory() {
        let mut engine = engine().await;
        let (a, _) = open_data(&mut engine);
        let (b, _) = open_data(&mut engine);
        for id in [&a, &b] {
            let i = engine.index(id).unwrap();
            engine.peers[i].rtc.disconnect();
        }
        engine.reap(Instant::now());
        assert!(engine.peers.is_empty());
        assert!(engine.take_closed(&a), "the first close of a peer that hung up succeeds");
        assert!(!engine.take_closed(&a), "then it is gone");
        engine.forget_closed(Instant::now() + CLOSED_MEMORY + Duration::from_secs(1));
        assert!(!engine.take_closed(&b), "forgotten after CLOSED_MEMORY");
    }

    #[tokio::test]
    async fn a_panic_in_the_webrtc_stack_costs_only_the_peer_it_happened_on() {
        let mut engine = engine().await;
        let (first, mut first_events) = open_data(&mut engine);
        let (second, _) = open_data(&mut engine);
        engine.guarded(|e| {
            e.current = e.index(&first);
            panic!("a bug in the stack, triggered by this peer's input");
        });
        assert!(engine.index(&first).is_none(), "the peer it happened on is gone");
        assert!(engine.index(&second).is_some(), "the other peer is untouched");
        assert!(matches!(first_events.try_recv(), Ok(DcEvent::Closed)), "its session hears so");
        // The engine goes on: it polls, answers and opens peers as before.
        engine.guarded(|e| e.drive());
        let (third, _) = open_data(&mut engine);
        assert_eq!(engine.peers.len(), 2, "{third}");
        // A panic outside any peer drops nothing.
        engine.guarded(|_| panic!("elsewhere"));
        assert_eq!(engine.peers.len(), 2);
        assert_eq!(engine.metrics.rtc_peers.get(), 2, "the gauge counts the dropped peer out");
    }
}
