//! One str0m peer on its own loopback UDP socket, driven by a small task: the publisher writes
//! synthetic VP8 keyframes at a fixed rate, a subscriber records every frame it receives.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::time::MissedTickBehavior;

/// Where the sequence number (u32 LE) and the send time (u64 LE, ns since [`Shared::epoch`]) sit
/// in every frame: right after a 10-byte VP8 keyframe header.
const STAMP_AT: usize = 10;

/// What the peers of one run share.
pub struct Shared {
    /// Send times are nanoseconds since this instant (one process, so one clock).
    pub epoch: Instant,
    /// The sequence number of the publisher's next frame.
    pub next_seq: AtomicU32,
    /// Datagrams and bytes received by all subscribers (RTP and RTCP, as the server sent them).
    pub sub_datagrams: AtomicU64,
    pub sub_bytes: AtomicU64,
    /// Subscribers that received at least one frame.
    pub receiving: AtomicUsize,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            next_seq: AtomicU32::new(0),
            sub_datagrams: AtomicU64::new(0),
            sub_bytes: AtomicU64::new(0),
            receiving: AtomicUsize::new(0),
        }
    }
}

/// A frame a subscriber received.
pub struct Frame {
    pub seq: u32,
    pub latency_ns: u64,
    pub bytes: u32,
}

pub enum Role {
    Publisher { mid: Mid, fps: u32, frame_bytes: usize },
    Subscriber,
}

/// A socket on `ip` (any port) and a str0m peer with a host candidate on it.
pub async fn new_peer(ip: IpAddr) -> io::Result<(Rtc, UdpSocket, SocketAddr)> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    let local = socket.local_addr()?;
    // VP8 only: both servers forward it, and one codec keeps the SDP small.
    let mut rtc = Rtc::builder().clear_codecs().enable_vp8(true).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(io::Error::other)?);
    Ok((rtc, socket, local))
}

/// Drives the peer until `stop`; a subscriber returns the frames it received.
pub async fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    role: Role,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    connected: oneshot::Sender<()>,
) -> Vec<Frame> {
    let mut connected = Some(connected);
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 2048];
    let (fps, mut template) = match &role {
        Role::Publisher { fps, frame_bytes, .. } => (*fps, frame(*frame_bytes)),
        Role::Subscriber => (1, Vec::new()),
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / fps as f64));
    // A late tick is skipped, not caught up in a burst: sent frames are counted, so loss stays exact.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sending = None; // the publisher's VP8 payload type, once connected
    loop {
        // Flush what str0m wants to send and handle its events until it only waits for time.
        let deadline = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                // UDP: a full socket buffer drops the packet, as the network would.
                Ok(Output::Transmit(t)) => drop(socket.try_send_to(&t.contents, t.destination)),
                Ok(Output::Event(Event::Connected)) => {
                    if let Some(c) = connected.take() {
                        let _ = c.send(());
                    }
                    if let Role::Publisher { mid, .. } = &role {
                        sending = rtc.writer(*mid).and_then(|w| {
                            w.payload_params().find(|p| p.spec().codec == Codec::Vp8).map(|p| p.pt())
                        });
                    }
                }
                Ok(Output::Event(Event::MediaData(d))) => {
                    let Some(stamp) = d.data.get(STAMP_AT..STAMP_AT + 12) else { continue };
                    let seq = u32::from_le_bytes(stamp[..4].try_into().unwrap());
                    let sent = u64::from_le_bytes(stamp[4..].try_into().unwrap());
                    let now = shared.epoch.elapsed().as_nanos() as u64;
                    if frames.is_empty() {
                        shared.receiving.fetch_add(1, Relaxed);
                    }
                    frames.push(Frame {
                        seq,
                        latency_ns: now.saturating_sub(sent),
                        bytes: d.data.len() as u32,
                    });
                }
                Ok(Output::Event(_)) => {}
                Err(e) => {
                    eprintln!("peer {local}: {e}");
                    return frames;
                }
            }
        };
        tokio::select! {
            biased;
            _ = stop.changed() => return frames,
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
                if matches!(role, Role::Subscriber) {
                    shared.sub_datagrams.fetch_add(1, Relaxed);
                    shared.sub_bytes.fetch_add(n as u64, Relaxed);
                }
                if let Ok(contents) = buf[..n].try_into() {
                    let input = Input::Receive(
                        Instant::now(),
                        Receive { proto: Protocol::Udp, source, destination: local, contents },
                    );
                    if let Err(e) = rtc.handle_input(input) {
                        eprintln!("peer {local}: {e}");
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
            _ = ticker.tick(), if sending.is_some() => {
                let Role::Publisher { mid, .. } = &role else { unreachable!() };
                let seq = shared.next_seq.fetch_add(1, Relaxed);
                let now = Instant::now();
                let ns = now.duration_since(shared.epoch).as_nanos() as u64;
                template[STAMP_AT..STAMP_AT + 4].copy_from_slice(&seq.to_le_bytes());
                template[STAMP_AT + 4..STAMP_AT + 12].copy_from_slice(&ns.to_le_bytes());
                let rtp_time = MediaTime::new(seq as u64 * 90_000 / fps as u64, Frequency::NINETY_KHZ);
                if let Some(w) = rtc.writer(*mid)
                    && let Err(e) = w.write(sending.unwrap(), now, rtp_time, template.as_slice())
                {
                    eprintln!("publisher: {e}");
                }
            }
        }
    }
}

/// A frame that parses as a VP8 keyframe (P bit clear, start code, 640x480), so that both servers
/// forward every frame to a new subscriber at once, followed by filler.
fn frame(bytes: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..bytes.max(STAMP_AT + 12)).map(|i| (i * 7) as u8).collect();
    f[..10].copy_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
    f
}
