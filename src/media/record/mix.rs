//! A room-mix recording (`{"mix": true}`): the room's shared audio mix, every speaker and no
//! mix-minus, as the mixer encodes it, into one Ogg/Opus file: no decoding here, and one file
//! however many speak. Its [`MixLease`] keeps the room's mixer running while it records.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::Recorder;
use super::file::TrackFile;
use super::manifest::{FileInfo, RecordingInfo};
use super::session::{Checks, End, close_single, conclude, on_own_thread};
use crate::media::mix::FRAME;
use crate::rtc::{MixLease, RtcService};

/// An Opus packet of 20 ms of silence (CELT, fullband, mono: TOC 0xf8, then a silent frame).
pub(super) const SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];

pub(super) struct MixSession {
    pub(super) info: RecordingInfo,
    pub(super) dir: PathBuf,
    pub(super) lease: MixLease,
    pub(super) rtc: RtcService,
    pub(super) stop: watch::Receiver<Option<String>>,
    pub(super) recorder: Arc<Recorder>,
    pub(super) started: Instant,
    pub(super) ended: watch::Sender<bool>,
}

/// Places the mix's packets on a recording's clock: from the first packet's arrival on, by the
/// mixer's RTP time, with the ticks the mixer skipped or this reader lost filled with silence, so
/// the audio keeps its length and its place beside the recording's other files or track.
#[derive(Default)]
pub(super) struct MixTimeline {
    clock: Clock,
    /// The first packet's time on the recording's clock.
    base_ns: Option<u64>,
    /// The RTP time (from the first packet) the next packet should have.
    next: u64,
}

impl MixTimeline {
    /// For a packet of RTP time `ts` that arrived `now_ns` into the recording: the times of the
    /// silent packets ([`SILENCE`]) to write before it, and its own time.
    pub(super) fn place(&mut self, ts: u32, now_ns: u64) -> (Vec<u64>, u64) {
        let at = self.clock.extend(ts);
        let base = *self.base_ns.get_or_insert(now_ns);
        // A jump past a minute is no gap but a new clock: skip it.
        if at.saturating_sub(self.next) > 60 * 48_000 {
            self.next = at;
        }
        let mut silence = Vec::new();
        while self.next < at {
            silence.push(base + self.next * 1_000_000_000 / 48_000);
            self.next += u64::from(FRAME);
        }
        self.next = at + u64::from(FRAME);
        (silence, base + at * 1_000_000_000 / 48_000)
    }
}

/// The mix's RTP clock (48 kHz), extended past its 32-bit wrap.
#[derive(Default)]
struct Clock {
    last: Option<u32>,
    ext: u64,
}

impl Clock {
    fn extend(&mut self, ts: u32) -> u64 {
        if let Some(last) = self.last {
            // Forward steps only: the mixer's clock never goes back.
            self.ext += u64::from(ts.wrapping_sub(last));
        }
        self.last = Some(ts);
        self.ext
    }
}

impl MixSession {
    /// Runs the recording on a thread of its own (file writes block).
    pub(super) fn spawn(self) -> std::io::Result<()> {
        on_own_thread(format!("recmix-{}", &self.info.id[..8]), move || self.run())
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut file: Option<TrackFile> = None;
        let mut timeline = MixTimeline::default();
        let mut checks = Checks::default();
        let end = loop {
            tokio::select! {
                packet = self.lease.packets.recv() => match packet {
                    Ok((ts, packet)) => {
                        if file.is_none() {
                            match self.open() {
                                Ok(f) => file = Some(f),
                                Err(e) => break End::Failed(e),
                            }
                        }
                        let Some(f) = file.as_mut() else { continue };
                        let (silence, at) = timeline.place(ts, self.started.elapsed().as_nanos() as u64);
                        let written = silence
                            .into_iter()
                            .try_for_each(|ns| f.write(&SILENCE, ns, true))
                            .and_then(|()| f.write(&packet, at, true));
                        if let Err(e) = written {
                            break End::Failed(e);
                        }
                    }
                    // A slow disk: those packets are gone (the file has a gap, as a tap drop).
                    Err(RecvError::Lagged(n)) => self.recorder.metrics.media_tap_dropped.add(n),
                    Err(RecvError::Closed) => break End::Failed("the room's mixer stopped".into()),
                },
                _ = self.stop.changed() => {
                    let reason = self.stop.borrow().clone().unwrap_or_else(|| "stopped".into());
                    break End::Stopped(reason);
                }
                _ = tick.tick() => {
                    if let Some(end) = checks.tick(&self.recorder, &self.rtc, &self.info, self.started, file.iter()).await {
                        break end;
                    }
                }
            }
        };
        let end = match file {
            Some(f) => close_single(f, Ok(()), &mut self.info, end),
            None => end,
        };
        // The mixer may stop (if no one else is mixed) before the API answers the stop.
        drop(self.lease);
        conclude(&mut self.info, &self.dir, &self.recorder, &self.ended, end);
    }

    /// Opens the file at the first packet, and lists it in the manifest.
    fn open(&mut self) -> Result<TrackFile, String> {
        let name = super::manifest::mix_file_name(&self.info);
        let file = TrackFile::opus_ogg(&self.dir.join(&name))?;
        self.info.files.push(FileInfo {
            name,
            track: "mix".into(),
            participant: "room".into(),
            participant_name: None,
            label: "room mix".into(),
            kind: "audio".into(),
            codec: "opus".into(),
            offset_ms: self.started.elapsed().as_millis() as u64,
            bytes: 0,
        });
        if let Err(e) = self.info.save(&self.dir) {
            tracing::warn!(recording = %self.info.id, error = %e, "writing a recording's manifest failed");
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::{Clock, MixTimeline};

    #[test]
    fn the_mix_clock_runs_on_past_the_wrap() {
        let mut c = Clock::default();
        let start = u32::MAX - 1919;
        assert_eq!(c.extend(start), 0);
        assert_eq!(c.extend(start + 960), 960);
        assert_eq!(c.extend(start.wrapping_add(1920)), 1920, "across the wrap");
        assert_eq!(c.extend(960), 2880);
    }

    #[test]
    fn the_timeline_fills_skipped_ticks_with_silence_from_the_first_arrival() {
        let mut t = MixTimeline::default();
        assert_eq!(t.place(1000, 5_000_000), (vec![], 5_000_000), "the first packet sets the base");
        assert_eq!(t.place(1960, 99_000_000), (vec![], 25_000_000), "RTP time, not arrival, places it");
        // Two ticks lost: silence at 45 and 65 ms, the packet at 85 ms.
        assert_eq!(t.place(1000 + 4 * 960, 0), (vec![45_000_000, 65_000_000], 85_000_000));
        // A jump past a minute is a new clock: no minute of silence.
        let (silence, _) = t.place(1000 + 4 * 960 + 61 * 48_000, 0);
        assert!(silence.is_empty());
    }
}
