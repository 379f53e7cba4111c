//! One participant: a str0m peer on its own UDP socket with one Opus m-line both ways. It sends
//! 20 ms packets (a speaker: a tone for the first half of every second, silence for the other;
//! everyone else: silence), with the RFC 6464 level both servers read, and decodes what it
//! receives to time the onsets of the tone: latency = the decoded onset's arrival − the second's
//! start (when the speakers' tone began).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use audiopus::coder::Decoder;
use audiopus::packet::Packet;
use audiopus::{Channels, MutSignals, SampleRate};
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::time::MissedTickBehavior;

/// Frames per second of tone cycle (the tone plays for the first half).
pub const CYCLE: u64 = 50;

/// What the participants of one run share.
pub struct Shared {
    /// Frame `f` is sent at `epoch + 20 ms × f`; the tone starts at frames that are multiples of [`CYCLE`].
    pub epoch: Instant,
    /// Pre-encoded packets: one cycle of the speakers' tone (tone then silence), and silence.
    pub tone: Vec<Vec<u8>>,
    pub silence: Vec<u8>,
    /// Participants that decoded audio at least once.
    pub receiving: AtomicUsize,
    /// Onsets are recorded only while set (the measured window).
    pub measuring: AtomicBool,
}

/// A str0m peer with a host candidate on a socket bound to `ip`.
pub async fn new_peer(ip: IpAddr) -> io::Result<(Rtc, UdpSocket, SocketAddr)> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    let local = socket.local_addr()?;
    let mut rtc = Rtc::builder().clear_codecs().enable_opus(true, false).build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(io::Error::other)?);
    Ok((rtc, socket, local))
}

/// Drives the participant until `stop`; returns the onset latencies it measured.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    mid: Mid,
    speaker: bool,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    connected: oneshot::Sender<()>,
) -> Vec<Duration> {
    let mut connected = Some(connected);
    let mut onsets = Vec::new();
    let mut decoder = Decoder::new(SampleRate::Hz48000, Channels::Mono).expect("opus decoder");
    let mut pcm = vec![0i16; 5760];
    let mut quiet = 0u32; // frames in a row below the threshold
    let mut received = false;
    let mut buf = vec![0u8; 2048];
    let mut ticker = tokio::time::interval_at(shared.epoch.into(), Duration::from_millis(20));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sending = None;
    loop {
        let deadline = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Transmit(t)) => drop(socket.try_send_to(&t.contents, t.destination)),
                Ok(Output::Event(Event::Connected)) => {
                    if let Some(c) = connected.take() {
                        let _ = c.send(());
                    }
                    sending = rtc.writer(mid).and_then(|w| {
                        w.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt())
                    });
                }
                Ok(Output::Event(Event::MediaData(d))) => {
                    let now = Instant::now();
                    let Ok(packet) = Packet::try_from(&d.data[..]) else { continue };
                    let Ok(signals) = MutSignals::try_from(&mut pcm[..]) else { continue };
                    let Ok(n) = decoder.decode(Some(packet), signals, false) else { continue };
                    if !received {
                        received = true;
                        shared.receiving.fetch_add(1, Relaxed);
                    }
                    let rms =
                        (pcm[..n].iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / n.max(1) as f64).sqrt();
                    if rms > 1000.0 {
                        if quiet >= 10 && shared.measuring.load(Relaxed) {
                            // The tone began at the start of the second this arrival falls in.
                            let since = now.duration_since(shared.epoch);
                            let cycle = Duration::from_millis(20 * CYCLE);
                            let start = cycle * (since.as_nanos() / cycle.as_nanos()) as u32;
                            onsets.push(since - start);
                        }
                        quiet = 0;
                    } else {
                        quiet += 1;
                    }
                }
                Ok(Output::Event(_)) => {}
                Err(e) => {
                    eprintln!("peer {local}: {e}");
                    return onsets;
                }
            }
        };
        tokio::select! {
            biased;
            _ = stop.changed() => return onsets,
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { continue };
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
                let now = Instant::now();
                let f = (now.duration_since(shared.epoch).as_millis() / 20) as u64;
                let phase = (f % CYCLE) as usize;
                let tone = speaker && phase < CYCLE as usize / 2;
                let (data, level) = if tone { (&shared.tone[phase], 20) } else { (&shared.silence, 127) };
                let time = MediaTime::new(f * 960, Frequency::FORTY_EIGHT_KHZ);
                if let Some(w) = rtc.writer(mid) {
                    let w = w.audio_level(-level, tone);
                    if let Err(e) = w.write(sending.unwrap(), now, time, data.as_slice()) {
                        eprintln!("participant: {e}");
                    }
                }
            }
        }
    }
}
