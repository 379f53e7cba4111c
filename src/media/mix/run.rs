//! The mixer's driver: one tokio task per mixed room, off the engine's task. Packets come in
//! through the room's media tap ([`crate::media::tap`]: bounded, a full one drops frames, which
//! the jitter buffer then conceals as network loss); every 20 ms the core mixes, and the encoded
//! packets go out through `out`. The shared mix is also offered on a broadcast channel (for a
//! room-mix recording).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use super::{MixConfig, Mixer, TICK};
use crate::media::tap::{Codec, MediaKind, TapEvent};
use crate::metrics::{Counter, Gauge, Histogram};

/// Tap events queued towards one mixer before frames are dropped.
pub const INPUT_QUEUE: usize = 512;

/// What a mixer is told besides its room's media.
#[derive(Debug)]
pub enum MixIn {
    /// Whether `input`'s owner listens to the mix (it then gets a mix-minus while speaking).
    Listen { input: String, listens: bool },
}

/// One tick's packets, all with RTP time `ts` (48 kHz).
#[derive(Debug, Clone)]
pub struct MixOut {
    /// The RTP time.
    pub ts: u32,
    /// The shared mix.
    pub shared: Option<Bytes>,
    /// Mix-minus per speaking listener's input.
    pub minus: Arc<Vec<(String, Bytes)>>,
}

/// The mixer's metrics.
#[derive(Default)]
pub struct MixMetrics {
    /// Mixers running.
    pub mixers: Gauge,
    /// Receivers fed by a mixer.
    pub participants: Gauge,
    /// Packet arrival to mixed packet out: the jitter buffer's wait plus the mixing.
    pub added_latency: Histogram,
    /// Mix receivers refused by `max_mixed_rooms` / `max_mixed_participants`.
    pub refused: Counter,
    /// Packets dropped because a mixer's input queue was full.
    pub dropped: Counter,
}

impl MixMetrics {
    /// Appends the metrics as Prometheus text.
    pub fn render(&self, s: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            s,
            "# HELP switchboard_mixers Audio mixers running (one per mixed room).\n# TYPE switchboard_mixers gauge\nswitchboard_mixers {}\n\
             # HELP switchboard_mixed_participants Receivers fed by an audio mixer.\n# TYPE switchboard_mixed_participants gauge\nswitchboard_mixed_participants {}\n\
             # HELP switchboard_mix_refused_total Mix receivers refused by max_mixed_rooms or max_mixed_participants.\n# TYPE switchboard_mix_refused_total counter\nswitchboard_mix_refused_total {}\n\
             # HELP switchboard_mix_dropped_total Audio packets dropped because a mixer's input queue was full.\n# TYPE switchboard_mix_dropped_total counter\nswitchboard_mix_dropped_total {}\n",
            self.mixers.get(),
            self.participants.get(),
            self.refused.get(),
            self.dropped.get()
        );
        self.added_latency.render(
            s,
            "mix_added_latency_seconds",
            "From an audio packet's arrival to the mixed packet it is in (jitter buffer wait plus mixing).",
        );
    }
}

/// A running mixer: drop it (or every sender) and the task ends.
pub struct MixHandle {
    /// Changes in.
    pub tx: mpsc::Sender<MixIn>,
    /// The shared mix's packets, `(RTP time, Opus packet)`, for whoever wants them (recording).
    pub shared: broadcast::Sender<(u32, Bytes)>,
}

/// Starts a mixer of the room `media` taps; each tick's packets go to `out` (which returns
/// `false` once nobody wants them).
pub fn spawn(
    config: MixConfig,
    metrics: Arc<MixMetrics>,
    mut media: mpsc::Receiver<TapEvent>,
    out: impl Fn(MixOut) -> bool + Send + 'static,
) -> MixHandle {
    let (tx, mut rx) = mpsc::channel(64);
    let (shared, _) = broadcast::channel(64);
    let shared_tx = shared.clone();
    tokio::spawn(async move {
        metrics.mixers.add(1);
        let mut mixer = Mixer::new(config);
        let mut opus = HashSet::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let start = Instant::now();
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(MixIn::Listen { input, listens }) => mixer.set_listening(&input, listens),
                    None => break,
                },
                e = media.recv() => match e {
                    Some(e) => take(&mut mixer, &mut opus, e),
                    None => break,
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    // Skipped ticks (a busy machine) still pass in RTP time: a recording of the
                    // mix keeps its length, and players conceal the gap as a loss.
                    let due = (now.duration_since(start).as_millis() / TICK.as_millis()) as u32;
                    let behind = due.wrapping_sub(mixer.frames());
                    if behind > 1 && behind < u32::MAX / 2 {
                        mixer.skip(behind - 1);
                    }
                    let t = mixer.tick(now);
                    if let Some(waited) = t.waited {
                        metrics.added_latency.observe(waited + now.elapsed());
                    }
                    if let Some(p) = &t.shared {
                        let _ = shared_tx.send((t.ts, p.clone()));
                    }
                    if !out(MixOut { ts: t.ts, shared: t.shared, minus: Arc::new(t.minus) }) {
                        break;
                    }
                }
            }
        }
        metrics.mixers.add(-1);
    });
    MixHandle { tx, shared }
}

/// Feeds the room's Opus tracks to the mixer; other tracks are not its business.
fn take(mixer: &mut Mixer, opus: &mut HashSet<String>, e: TapEvent) {
    match e {
        TapEvent::TrackAdded(t) if t.kind == MediaKind::Audio && t.codec == Codec::Opus => {
            opus.insert(t.id.clone());
        }
        TapEvent::TrackAdded(_) => {}
        TapEvent::TrackRemoved { track } => {
            opus.remove(&track);
            mixer.remove(&track);
        }
        TapEvent::Frame(f) if opus.contains(&*f.track) => {
            // RFC 6464 on the wire is -dBov (0 loudest); str0m gives it negated.
            let level = f.audio_level.map(|l| (-i16::from(l)).clamp(0, 127) as u8);
            mixer.push(&f.track, f.time as u32, f.payload, level, f.at);
        }
        TapEvent::Frame(_) => {}
    }
}

/// The latency a frame adds at most by design: the jitter target plus one tick.
pub fn designed_latency(config: &MixConfig) -> Duration {
    TICK * (config.jitter_frames as u32 + 1)
}
