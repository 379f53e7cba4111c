//! The WebRTC engine: one task owns every peer connection ([`str0m::Rtc`], sans-IO) and the one
//! UDP socket they share. Each turn of its loop reads a batch of datagrams (handed to the peer
//! whose ICE credentials accept them), a command, or a timer; then polls the peers that changed
//! until they are idle, forwarding media between them. Peers are few compared to packets, so
//! lookups are linear scans; a source-address map finds the peer of a packet at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use bytes::Bytes;
use str0m::change::SdpOffer;
use str0m::channel::ChannelId;
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, Mid, Rid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use switchboard_protocol::{ChannelName, ErrorCode};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::sfu::{Forward, Layers};
use super::{Command, DcEvent, Negotiation, Opened, Role, TrackInfo, rtc_error, unknown_peer};
use crate::broker::{Broker, PublishRequest};
use crate::config::Config;
use crate::http::HttpError;
use crate::model::Payload;

/// A peer that has not connected by then is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A peer whose ICE stays disconnected this long is dropped.
const DISCONNECTED_GRACE: Duration = Duration::from_secs(8);
/// At most one keyframe request per track this often.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(300);
/// Datagrams read per wake-up before the peers are polled.
const READ_BATCH: usize = 64;
/// The data channel labels of the transport.
pub const DC_RELIABLE: &str = "switchboard";
/// The unreliable, unordered channel (datagram subscriptions).
pub const DC_UNRELIABLE: &str = "switchboard-unreliable";

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
    /// Tracks this peer publishes, by its mid.
    published: HashMap<Mid, String>,
    /// What each sending m-line (from the server's side) carries.
    receivers: HashMap<Mid, Receiver>,
    reliable: Option<ChannelId>,
    unreliable: Option<ChannelId>,
}

#[derive(Debug)]
struct Receiver {
    kind: MediaKind,
    /// The track, or `None` when idle.
    track: Option<String>,
    /// WHEP: follow the room's newest track of this kind.
    auto: bool,
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
}

/// See the module docs.
pub struct Engine {
    socket: UdpSocket,
    /// Our candidate address: the destination of what peers send.
    candidate: SocketAddr,
    config: Arc<Config>,
    metrics: Arc<crate::metrics::Metrics>,
    peers: Vec<Peer>,
    by_addr: HashMap<SocketAddr, String>,
    tracks: HashMap<String, Track>,
    track_seq: u64,
    dirty_rooms: HashSet<ChannelName>,
    events: VecDeque<(usize, Event)>,
    announcements: mpsc::UnboundedSender<(ChannelName, Bytes, crate::config::ChannelOptions)>,
    /// The peer being handled, to blame should the WebRTC stack panic ([`Engine::guarded`]).
    current: Option<usize>,
}

impl Engine {
    /// An engine on `socket`, advertising `candidate`; track lists are published through `broker`.
    pub fn new(
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
                let request = PublishRequest {
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
        Self {
            socket,
            candidate,
            config,
            metrics,
            peers: Vec::new(),
            by_addr: HashMap::new(),
            tracks: HashMap::new(),
            track_seq: 0,
            dirty_rooms: HashSet::new(),
            events: VecDeque::new(),
            announcements,
            current: None,
        }
    }

    /// Runs until every [`super::RtcService`] handle is gone.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2048];
        loop {
            self.guarded(|e| {
                e.drive();
                e.reap(Instant::now());
                e.announce();
            });
            let next = self.peers.iter().map(|p| p.deadline).min();
            let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = r {
                        self.guarded(|e| e.receive_batch(&mut buf, n, source));
                    }
                }
                c = commands.recv() => match c {
                    Some(c) => self.guarded(|e| e.command(c)),
                    None => return,
                },
                _ = tokio::time::sleep_until(sleep_until.into()) => {}
            }
            self.guarded(|e| e.timeouts(Instant::now()));
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

    /// The first datagram of a wake-up (`n` bytes in `buf`) and whatever else is waiting.
    fn receive_batch(&mut self, buf: &mut [u8], n: usize, source: SocketAddr) {
        self.receive(&buf[..n], source);
        for _ in 1..READ_BATCH {
            match self.socket.try_recv_from(buf) {
                Ok((n, source)) => self.receive(&buf[..n], source),
                Err(_) => break,
            }
        }
    }

    fn timeouts(&mut self, now: Instant) {
        for i in 0..self.peers.len() {
            let p = &mut self.peers[i];
            if p.deadline <= now && p.rtc.is_alive() {
                self.current = Some(i);
                if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                    p.rtc.disconnect();
                }
                p.dirty = true;
            }
        }
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr) {
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive { proto: Protocol::Udp, source, destination: self.candidate, contents },
        );
        let known = self
            .by_addr
            .get(&source)
            .and_then(|id| self.index(id))
            .filter(|&i| self.peers[i].rtc.accepts(&input));
        let Some(i) = known.or_else(|| self.peers.iter().position(|p| p.rtc.accepts(&input))) else {
            return;
        };
        self.current = Some(i);
        let peer = &mut self.peers[i];
        if known.is_none() {
            self.by_addr.insert(source, peer.id.clone());
        }
        if peer.rtc.handle_input(input).is_err() {
            peer.rtc.disconnect();
        }
        peer.dirty = true;
    }

    fn index(&self, id: &str) -> Option<usize> {
        self.peers.iter().position(|p| p.id == id)
    }

    /// Polls changed peers until all are idle, handling their events (which may queue media on
    /// other peers, making them changed in turn).
    fn drive(&mut self) {
        loop {
            let mut polled = false;
            for i in 0..self.peers.len() {
                if std::mem::take(&mut self.peers[i].dirty) {
                    polled = true;
                    self.poll(i);
                }
            }
            while let Some((i, event)) = self.events.pop_front() {
                self.on_event(i, event);
            }
            if !polled {
                return;
            }
        }
    }

    fn poll(&mut self, i: usize) {
        self.current = Some(i);
        let peer = &mut self.peers[i];
        while peer.rtc.is_alive() {
            match peer.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    // UDP: a full socket buffer drops the packet, as the network would.
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Timeout(t)) => {
                    peer.deadline = t;
                    return;
                }
                Ok(Output::Event(e)) => self.events.push_back((i, e)),
                Err(e) => {
                    tracing::debug!(peer = %peer.id, error = %e, "peer failed");
                    peer.rtc.disconnect();
                }
            }
        }
        peer.deadline = Instant::now();
    }

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
            Event::KeyframeRequest(req) => {
                let Some(r) = self.peers[i].receivers.get(&req.mid) else {
                    return;
                };
                if let Some(t) = r.track.clone() {
                    let want = r.forward.want;
                    let target = self.tracks.get(&t).and_then(|t| t.layers.target(want, now));
                    self.request_keyframe(&t, target, now);
                }
            }
            Event::ChannelOpen(id, label) => {
                let peer = &mut self.peers[i];
                let Role::Data { events } = &peer.role else {
                    return;
                };
                match label.as_str() {
                    DC_RELIABLE => {
                        peer.reliable = Some(id);
                        let _ = events.try_send(DcEvent::Open);
                    }
                    DC_UNRELIABLE => peer.unreliable = Some(id),
                    _ => {}
                }
            }
            Event::ChannelData(d) => {
                let peer = &mut self.peers[i];
                if let Role::Data { events } = &peer.role
                    && events.try_send(DcEvent::Message { binary: d.binary, data: d.data }).is_err()
                {
                    // The session cannot keep up with what its client sends.
                    tracing::debug!(peer = %peer.id, "data channel input overflow");
                    peer.rtc.disconnect();
                }
            }
            Event::ChannelClose(id) => {
                let peer = &mut self.peers[i];
                if peer.reliable == Some(id) {
                    peer.rtc.disconnect();
                }
            }
            _ => {}
        }
    }

    fn media_added(
        &mut self,
        i: usize,
        mid: Mid,
        kind: MediaKind,
        direction: Direction,
        simulcast: Option<str0m::media::Simulcast>,
    ) {
        let max_tracks = self.config.rtc_max_tracks;
        let receives = matches!(direction, Direction::RecvOnly | Direction::SendRecv);
        let sends = matches!(direction, Direction::SendOnly | Direction::SendRecv);
        if sends {
            self.ensure_receiver(i, mid);
        }
        let peer = &mut self.peers[i];
        let Some(room) = peer.role.room().cloned() else {
            return;
        };
        let (participant, name) = match &peer.role {
            Role::Participant { client, name, .. } => (client.clone(), name.clone()),
            Role::Whip { .. } => ("whip".to_owned(), Some("WHIP".to_owned())),
            _ => (String::new(), None),
        };
        if !receives || participant.is_empty() || peer.published.len() >= max_tracks {
            if sends {
                // A new receiver: WHEP players follow the room's newest tracks.
                self.dirty_rooms.insert(room);
            }
            return;
        }
        let rids: Vec<Rid> = simulcast
            .map(|s| if s.recv.is_empty() { s.send } else { s.recv })
            .unwrap_or_default()
            .into_iter()
            .map(|l| l.rid)
            .collect();
        self.track_seq += 1;
        let id = format!("{}-{}", &peer.id[..12], &*mid);
        let label = peer.labels.get(&mid).cloned().unwrap_or_else(|| kind_name(kind).to_owned());
        let info = TrackInfo {
            id: id.clone(),
            participant,
            name,
            kind: kind_name(kind),
            label,
            layers: rids.iter().map(|r| r.to_string()).collect(),
        };
        tracing::debug!(peer = %peer.id, track = %id, "track published");
        peer.published.insert(mid, id.clone());
        let track = Track {
            info,
            room: room.clone(),
            owner: peer.id.clone(),
            mid,
            kind,
            layers: Layers::new(rids),
            created: self.track_seq,
            keyframe_requests: Vec::new(),
        };
        self.tracks.insert(id, track);
        self.dirty_rooms.insert(room);
    }

    /// A renegotiation changed an m-line's direction: a publisher that stopped sending loses
    /// the track; a line the server now sends on becomes a receiver.
    fn media_changed(&mut self, i: usize, mid: Mid, direction: Direction) {
        if matches!(direction, Direction::SendOnly | Direction::SendRecv) {
            self.ensure_receiver(i, mid);
        } else {
            self.peers[i].receivers.remove(&mid);
        }
        if matches!(direction, Direction::RecvOnly | Direction::SendRecv) {
            return;
        }
        if let Some(id) = self.peers[i].published.remove(&mid)
            && let Some(t) = self.tracks.remove(&id)
        {
            self.dirty_rooms.insert(t.room);
            self.release(&id);
        }
    }

    /// Receivers of a track that is gone go idle.
    fn release(&mut self, track: &str) {
        for p in &mut self.peers {
            for r in p.receivers.values_mut() {
                if r.track.as_deref() == Some(track) {
                    r.track = None;
                }
            }
        }
    }

    /// Sends a publisher's frame to every receiver of its track.
    fn forward(&mut self, i: usize, data: MediaData, now: Instant) {
        let Some(id) = self.peers[i].published.get(&data.mid).cloned() else {
            return;
        };
        let Some(track) = self.tracks.get_mut(&id) else {
            return;
        };
        track.layers.saw(data.rid, now);
        let video = track.kind == MediaKind::Video;
        if video && !data.contiguous {
            // Lost packets the NACKs did not recover: the decoder needs a fresh start.
            self.request_keyframe(&id, data.rid, now);
        }
        let Some(track) = self.tracks.get(&id) else {
            return;
        };
        let keyframe = video && data.is_keyframe();
        let mut wanted = Vec::new();
        let mut sent = 0u64;
        for (j, peer) in self.peers.iter_mut().enumerate() {
            if j == i || !peer.connected {
                continue;
            }
            for (mid, r) in peer.receivers.iter_mut() {
                if r.track.as_deref() != Some(id.as_str()) {
                    continue;
                }
                if video {
                    let target = track.layers.target(r.forward.want, now);
                    let verdict = r.forward.video(data.rid, keyframe, target);
                    if verdict.keyframe {
                        wanted.push(target);
                    }
                    if !verdict.send {
                        continue;
                    }
                }
                let Some(mut writer) = peer.rtc.writer(*mid) else {
                    continue;
                };
                let Some(pt) = writer.match_params(data.params) else {
                    tracing::debug!(peer = %peer.id, %mid, "no matching payload type");
                    continue;
                };
                // Header extensions the players use: speaker levels, and the camera's rotation.
                let ext = &data.ext_vals;
                if let Some(level) = ext.audio_level {
                    writer = writer.audio_level(level, ext.voice_activity.unwrap_or(false));
                }
                if let Some(o) = ext.video_orientation {
                    writer = writer.video_orientation(o);
                }
                match writer.write(pt, data.network_time, data.time, data.data.clone()) {
                    Ok(()) => sent += 1,
                    Err(_) => peer.rtc.disconnect(),
                }
                peer.dirty = true;
            }
        }
        self.metrics.rtc_frames_forwarded.add(sent);
        self.metrics.rtc_bytes_forwarded.add(sent * data.data.len() as u64);
        wanted.dedup();
        for rid in wanted {
            self.request_keyframe(&id, rid, now);
        }
    }

    fn request_keyframe(&mut self, track: &str, rid: Option<Rid>, now: Instant) {
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        if t.kind != MediaKind::Video {
            return;
        }
        match t.keyframe_requests.iter_mut().find(|(r, _)| *r == rid) {
            Some((_, at)) if now.saturating_duration_since(*at) < KEYFRAME_INTERVAL => return,
            Some((_, at)) => *at = now,
            None => t.keyframe_requests.push((rid, now)),
        }
        let (owner, mid) = (t.owner.clone(), t.mid);
        let Some(o) = self.index(&owner) else {
            return;
        };
        let peer = &mut self.peers[o];
        if let Some(mut writer) = peer.rtc.writer(mid) {
            let _ = writer.request_keyframe(rid, KeyframeRequestKind::Pli);
            peer.dirty = true;
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
        if let Role::Data { events } = &peer.role {
            let _ = events.try_send(DcEvent::Closed);
        }
        if let Some(room) = peer.role.room() {
            self.dirty_rooms.insert(room.clone());
        }
        for id in peer.published.values() {
            self.tracks.remove(id);
            self.release(id);
        }
    }

    /// Publishes the track list of every room whose tracks changed, and points WHEP players at
    /// their room's newest tracks.
    fn announce(&mut self) {
        for room in std::mem::take(&mut self.dirty_rooms) {
            self.follow_newest(&room);
            let tracks = self.room_tracks(&room);
            let body = serde_json::json!({"sfu": {"tracks": tracks}}).to_string();
            let options = self.config.channel_options(&room).clone();
            let _ = self.announcements.send((room, Bytes::from(body), options));
        }
    }

    fn follow_newest(&mut self, room: &ChannelName) {
        for peer in &mut self.peers {
            if peer.role.room() != Some(room) {
                continue;
            }
            for r in peer.receivers.values_mut().filter(|r| r.auto) {
                let newest = self
                    .tracks
                    .values()
                    .filter(|t| &t.room == room && t.kind == r.kind && t.owner != peer.id)
                    .max_by_key(|t| t.created)
                    .map(|t| t.info.id.clone());
                if newest != r.track {
                    tracing::debug!(peer = %peer.id, track = ?newest, "following the newest track");
                    r.track = newest;
                    r.forward.restart();
                }
            }
        }
    }

    fn room_tracks(&self, room: &ChannelName) -> Vec<TrackInfo> {
        let mut tracks: Vec<&Track> = self.tracks.values().filter(|t| &t.room == room).collect();
        tracks.sort_by_key(|t| t.created);
        tracks.into_iter().map(|t| t.info.clone()).collect()
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
                let found = self.index(&peer).inspect(|&i| self.current = Some(i));
                let found = found.map(|i| self.peers[i].rtc.disconnect()).is_some();
                self.reap(Instant::now());
                let _ = reply.send(found);
            }
            Command::Send { peer, reliable, binary, data } => self.send(&peer, reliable, binary, &data),
            Command::Rooms { reply } => {
                let mut rooms: Vec<ChannelName> =
                    self.peers.iter().filter_map(|p| p.role.room().cloned()).collect();
                rooms.sort();
                rooms.dedup();
                let _ = reply.send(rooms);
            }
        }
    }

    fn open(&mut self, role: Role, nego: Negotiation) -> Result<Opened, HttpError> {
        if self.peers.len() >= self.config.rtc_max_peers {
            let m = format!("at most {} WebRTC peers", self.config.rtc_max_peers);
            return Err(rtc_error(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::LimitExceeded, m));
        }
        let text = nego.offer.as_deref().ok_or_else(|| bad("an SDP offer is needed"))?;
        let (offer, media) = self.parse_offer(text)?;
        let data_only = matches!(role, Role::Data { .. });
        if data_only && media > 0 {
            return Err(bad("the data channel transport takes no audio or video"));
        }
        if matches!(role, Role::Whip { .. } | Role::Whep { .. }) && media == 0 {
            return Err(bad("the offer has no audio or video"));
        }
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .set_send_buffer_video(self.config.rtc_video_send_buffer)
            .build(now);
        rtc.add_local_candidate(Candidate::host(self.candidate, "udp").map_err(|e| bad(e.to_string()))?);
        let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| bad(format!("offer refused: {e}")))?;
        let answer = answer.to_sdp_string();
        let id = format!("{:032x}", rand::random::<u128>());
        let room = role.room().cloned();
        self.metrics.rtc_peers.add(1);
        self.peers.push(Peer {
            id: id.clone(),
            rtc,
            role,
            deadline: now,
            dirty: true,
            created: now,
            connected: false,
            disconnected_at: None,
            labels: labels(&nego.publish),
            published: HashMap::new(),
            receivers: HashMap::new(),
            reliable: None,
            unreliable: None,
        });
        self.drive();
        let i = self.peers.len() - 1;
        if let Err(e) = self.point(i, &nego) {
            let peer = self.peers.remove(i);
            self.remove(peer);
            return Err(e);
        }
        let tracks = room.map(|r| self.room_tracks(&r)).unwrap_or_default();
        Ok(Opened { peer: id, sdp: answer, tracks, url: String::new() })
    }

    fn update(&mut self, peer: &str, nego: Negotiation) -> Result<Option<String>, HttpError> {
        let i = self.index(peer).ok_or_else(unknown_peer)?;
        self.current = Some(i);
        let mut answer = None;
        if let Some(text) = nego.offer.as_deref() {
            let (offer, _) = self.parse_offer(text)?;
            let p = &mut self.peers[i];
            p.labels.extend(labels(&nego.publish));
            let a = p.rtc.sdp_api().accept_offer(offer).map_err(|e| bad(format!("offer refused: {e}")))?;
            p.dirty = true;
            answer = Some(a.to_sdp_string());
            self.drive();
        }
        self.point(i, &nego)?;
        Ok(answer)
    }

    /// The offer, and how many audio and video m-lines it has.
    fn parse_offer(&self, text: &str) -> Result<(SdpOffer, usize), HttpError> {
        let media = count_media(text);
        if media > self.config.rtc_max_tracks {
            let m = format!("at most {} audio and video m-lines per peer", self.config.rtc_max_tracks);
            return Err(rtc_error(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::LimitExceeded, m));
        }
        if let Some(m) = unusable_media(text) {
            return Err(bad(format!("no usable codec in m-line {m} (audio: opus; video: VP8, H.264)")));
        }
        let offer = SdpOffer::from_sdp_string(text).map_err(|e| bad(format!("malformed SDP: {e}")))?;
        Ok((offer, media))
    }

    /// Applies `subscribe` and `layers`: which track and layer each receive m-line carries.
    fn point(&mut self, i: usize, nego: &Negotiation) -> Result<(), HttpError> {
        let now = Instant::now();
        for (mid, track) in &nego.subscribe {
            let mid = to_mid(mid)?;
            self.ensure_receiver(i, mid);
            let peer = &self.peers[i];
            let Some(r) = peer.receivers.get(&mid) else {
                let m = format!("m-line {mid} does not receive media from the server");
                return Err(rtc_error(StatusCode::CONFLICT, ErrorCode::BadRequest, m));
            };
            let Some(id) = track else {
                self.peers[i].receivers.get_mut(&mid).expect("checked").track = None;
                continue;
            };
            let t = self.tracks.get(id).filter(|t| Some(&t.room) == peer.role.room()).ok_or_else(|| {
                rtc_error(StatusCode::NOT_FOUND, ErrorCode::UnknownChannel, "no such track in this room")
            })?;
            if t.kind != r.kind {
                return Err(bad(format!(
                    "m-line {mid} is {} but the track is {}",
                    kind_name(r.kind),
                    t.info.kind
                )));
            }
            let r = self.peers[i].receivers.get_mut(&mid).expect("checked");
            r.track = Some(id.clone());
            r.auto = false;
            r.forward.restart();
            let target = t.layers.target(r.forward.want, now);
            self.request_keyframe(id, target, now);
        }
        for (mid, rid) in &nego.layers {
            let mid = to_mid(mid)?;
            let r = self.peers[i]
                .receivers
                .get_mut(&mid)
                .ok_or_else(|| bad(format!("no receive m-line {mid}")))?;
            let layers =
                r.track.as_ref().and_then(|t| self.tracks.get(t)).map(|t| t.layers.rids()).unwrap_or(&[]);
            let rid = layers
                .iter()
                .find(|l| ***l == *rid.as_str())
                .ok_or_else(|| bad(format!("the track on m-line {mid} has no layer {rid:?}")))?;
            r.forward.want = Some(*rid);
        }
        Ok(())
    }

    /// Makes sure a sending m-line has its receiver entry, even before its `MediaAdded` event.
    fn ensure_receiver(&mut self, i: usize, mid: Mid) {
        let peer = &mut self.peers[i];
        if peer.receivers.contains_key(&mid) || peer.receivers.len() >= self.config.rtc_max_tracks {
            return;
        }
        if let Some(m) = peer.rtc.media(mid)
            && matches!(m.direction(), Direction::SendOnly | Direction::SendRecv)
        {
            let auto = matches!(peer.role, Role::Whep { .. });
            peer.receivers
                .insert(mid, Receiver { kind: m.kind(), track: None, auto, forward: Forward::default() });
        }
    }

    fn send(&mut self, peer: &str, reliable: bool, binary: bool, data: &[u8]) {
        let Some(i) = self.index(peer) else {
            return;
        };
        self.current = Some(i);
        let p = &mut self.peers[i];
        let id = if reliable { p.reliable } else { p.unreliable.or(p.reliable) };
        let Some(mut channel) = id.and_then(|id| p.rtc.channel(id)) else {
            return;
        };
        let accepted = channel.write(binary, data).unwrap_or(false);
        p.dirty = true;
        if !accepted
            && (reliable || p.unreliable.is_none())
            && let Role::Data { events } = &p.role
        {
            let _ = events.try_send(DcEvent::Blocked);
        }
    }
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

fn bad(message: impl Into<String>) -> HttpError {
    rtc_error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
}

fn to_mid(s: &str) -> Result<Mid, HttpError> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad(format!("bad mid {s:?}")));
    }
    Ok(Mid::from(s))
}

fn labels(publish: &HashMap<String, String>) -> HashMap<Mid, String> {
    publish
        .iter()
        .filter_map(|(mid, label)| Some((to_mid(mid).ok()?, label.chars().take(32).collect())))
        .collect()
}

/// Audio and video m-lines in an SDP.
pub fn count_media(sdp: &str) -> usize {
    sdp.lines().filter(|l| l.starts_with("m=audio") || l.starts_with("m=video")).count()
}

/// Codecs the SFU forwards; every publisher and receiver must share one.
const CODECS: [&str; 3] = ["opus", "vp8", "h264"];

/// The index of the first enabled audio/video m-line whose payload types name none of [`CODECS`].
pub fn unusable_media(offer: &str) -> Option<usize> {
    let mut sections: Vec<(bool, Vec<&str>, bool)> = Vec::new();
    for line in offer.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let media = matches!(f.next(), Some("audio" | "video"));
            let enabled = f.next() != Some("0");
            sections.push((media && enabled, f.skip(1).collect(), false));
        } else if let (Some(map), Some((_, pts, usable))) =
            (line.strip_prefix("a=rtpmap:"), sections.last_mut())
        {
            let (pt, codec) = map.split_once(' ').unwrap_or((map, ""));
            let name = codec.split('/').next().unwrap_or("").to_ascii_lowercase();
            if pts.contains(&pt) && CODECS.contains(&name.as_str()) {
                *usable = true;
            }
        }
    }
    sections.iter().position(|(checked, _, usable)| *checked && !usable)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn finds_media_lines_without_a_usable_codec() {
        let ok = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                  m=video 9 UDP/TLS/RTP/SAVPF 96 45\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:45 AV1/90000\r\n";
        assert_eq!(unusable_media(ok), None);
        assert_eq!(count_media(ok), 2);
        let av1 = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 45\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:45 AV1/90000\r\n";
        assert_eq!(unusable_media(av1), Some(1), "VP8 is mapped but not offered on the m-line");
        let off = "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 45\r\na=rtpmap:45 AV1/90000\r\nm=application 9 x\r\n";
        assert_eq!(unusable_media(off), None, "a disabled m-line needs nothing");
    }
}
