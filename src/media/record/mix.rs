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
use super::session::{End, conclude};
use crate::media::mix::FRAME;
use crate::rtc::{MixLease, RtcService};

/// An Opus packet of 20 ms of silence (CELT, fullband, mono: TOC 0xf8, then a silent frame).
const SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];

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
        std::thread::Builder::new().name(format!("recmix-{}", &self.info.id[..8])).spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build();
            match rt {
                Ok(rt) => rt.block_on(self.run()),
                Err(e) => tracing::error!(error = %e, "a recording's runtime did not start"),
            }
        })?;
        Ok(())
    }

    async fn run(mut self) {
        let config = self.recorder.config.clone();
        let max = Duration::from_secs(config.recording_max_seconds);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut file: Option<TrackFile> = None;
        let mut clock = Clock::default();
        let mut base_ns = 0u64;
        // The RTP time (from the first packet) the next packet should have.
        let mut next = 0u64;
        let mut written_before = 0u64;
        let end = loop {
            tokio::select! {
                packet = self.lease.packets.recv() => match packet {
                    Ok((ts, packet)) => {
                        let at = clock.extend(ts);
                        if file.is_none() {
                            match self.open() {
                                Ok(f) => file = Some(f),
                                Err(e) => break End::Failed(e),
                            }
                            base_ns = self.started.elapsed().as_nanos() as u64;
                        }
                        let Some(f) = file.as_mut() else { continue };
                        // Ticks the mixer skipped or this thread lost: silence, so the file keeps
                        // its length and its place beside the room's other files.
                        // (A jump past a minute is no gap but a new clock: the file skips it.)
                        if at.saturating_sub(next) > 60 * 48_000 {
                            next = at;
                        }
                        let mut failed = None;
                        while next < at && failed.is_none() {
                            failed = f.write(&SILENCE, base_ns + next * 1_000_000_000 / 48_000, true).err();
                            next += u64::from(FRAME);
                        }
                        if let Some(e) = failed {
                            break End::Failed(e);
                        }
                        if let Err(e) = f.write(&packet, base_ns + at * 1_000_000_000 / 48_000, true) {
                            break End::Failed(e);
                        }
                        next = at + u64::from(FRAME);
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
                    let written = file.as_ref().map_or(0, |f| f.shared.written());
                    if let Some(f) = &file && f.shared.flush().is_err() {
                        break End::Failed(f.shared.error().unwrap_or_else(|| "flush failed".into()));
                    }
                    self.recorder.metrics.recording_bytes_written.add(written.saturating_sub(written_before));
                    written_before = written;
                    if written >= config.recording_max_bytes {
                        break End::Stopped("max_size".into());
                    }
                    if self.started.elapsed() >= max {
                        break End::Stopped("max_duration".into());
                    }
                    if self.started.elapsed() > Duration::from_secs(2) && !self.rtc.rooms().await.iter().any(|r| r.as_str() == self.info.room) {
                        break End::Stopped("room_empty".into());
                    }
                }
            }
        };
        let mut end = end;
        if let Some(f) = file {
            let bytes = f.shared.written();
            if let Err(e) = f.finish()
                && matches!(end, End::Stopped(_))
            {
                end = End::Failed(e);
            }
            if let Some(entry) = self.info.files.first_mut() {
                entry.bytes = bytes;
            }
        }
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
    use super::Clock;

    #[test]
    fn the_mix_clock_runs_on_past_the_wrap() {
        let mut c = Clock::default();
        let start = u32::MAX - 1919;
        assert_eq!(c.extend(start), 0);
        assert_eq!(c.extend(start + 960), 960);
        assert_eq!(c.extend(start.wrapping_add(1920)), 1920, "across the wrap");
        assert_eq!(c.extend(960), 2880);
    }
}
