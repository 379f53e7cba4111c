//! One recording: its own thread (files are blocking IO, libwebm's muxer is not `Send`) with a
//! small runtime, reading the room's media tap and writing one file per track. Video starts at
//! a keyframe (asked for at once) and after any gap; timestamps are the RTP clock of each track
//! (extended: no wrap) placed on the recording's own clock by when its first frame arrived, so
//! the files of one participant play in sync. Simulcast: the highest layer only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::file::{TrackFile, vp8_keyframe_size};
use super::manifest::{FileInfo, RecordingInfo, State, now_ms};
use super::{Recorder, Update};
use crate::media::tap::{Codec, MediaKind, MediaTap, TapEvent, TapFrame, TapTrack};
use crate::rtc::RtcService;

struct Track {
    info: Arc<TapTrack>,
    file: Option<TrackFile>,
    /// The manifest's entry of its file.
    index: Option<usize>,
    /// Video after a gap: frames wait for a keyframe.
    need_key: bool,
    /// `(RTP time, ns on the recording's clock)` of its first written frame.
    base: Option<(u64, u64)>,
    /// Set when the track cannot be recorded (codec); told once.
    skipped: bool,
}

/// What [`Session::open`] made of a track's first usable frame.
enum Opened {
    File(TrackFile),
    /// A track this recording does not take (codec, or video in an audio-only recording).
    Skip,
    /// Wait for a better frame (a VP8 keyframe whose header says its size).
    NotYet,
}

/// What ended a recording.
pub(super) enum End {
    Stopped(String),
    Failed(String),
}

pub(super) struct Session {
    pub(super) info: RecordingInfo,
    pub(super) dir: PathBuf,
    pub(super) tap: MediaTap,
    pub(super) rtc: RtcService,
    pub(super) stop: watch::Receiver<Option<String>>,
    pub(super) recorder: Arc<Recorder>,
    /// The recording's clock: file timestamps count from here.
    pub(super) started: Instant,
    /// Set once the files are closed and the manifest says how it ended.
    pub(super) ended: watch::Sender<bool>,
}

impl Session {
    /// Runs the recording on a thread of its own.
    pub(super) fn spawn(self) -> std::io::Result<()> {
        on_own_thread(format!("rec-{}", &self.info.id[..8]), move || self.run())
    }

    async fn run(mut self) {
        let started = self.started;
        let mut tracks: HashMap<String, Track> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut checks = Checks::default();
        let end = loop {
            tokio::select! {
                event = self.tap.recv() => match event {
                    Some(TapEvent::TrackAdded(info)) => {
                        let t = Track { info: info.clone(), file: None, index: None, need_key: true, base: None, skipped: false };
                        tracks.insert(info.id.clone(), t);
                        if info.kind == MediaKind::Video {
                            self.tap.request_keyframe(&info.id, info.rids.last().copied());
                        }
                    }
                    Some(TapEvent::TrackRemoved { track }) => {
                        if let Some(t) = tracks.remove(&track)
                            && let Err(e) = self.close(t)
                        {
                            break End::Failed(e);
                        }
                    }
                    Some(TapEvent::Frame(f)) => {
                        if let Some(t) = tracks.get_mut(&*f.track)
                            && let Err(e) = self.frame(t, f, started)
                        {
                            break End::Failed(e);
                        }
                    }
                    None => break End::Failed("the WebRTC engine stopped".into()),
                },
                _ = self.stop.changed() => {
                    let reason = self.stop.borrow().clone().unwrap_or_else(|| "stopped".into());
                    break End::Stopped(reason);
                }
                _ = tick.tick() => {
                    let files = tracks.values().filter_map(|t| t.file.as_ref());
                    if let Some(end) = checks.tick(&self.recorder, &self.rtc, &self.info, started, files).await {
                        break end;
                    }
                }
            }
        };
        self.finish(tracks, end).await;
    }

    fn frame(&mut self, t: &mut Track, f: TapFrame, started: Instant) -> Result<(), String> {
        let video = t.info.kind == MediaKind::Video;
        if f.payload.is_empty() {
            return Ok(()); // nothing to store (a padding-only packet); libwebm refuses empty frames
        }
        if video && !t.info.rids.is_empty() && f.rid != t.info.rids.last().copied() {
            return Ok(()); // the highest layer only
        }
        if video && !f.contiguous {
            t.need_key = true;
        }
        if video && t.need_key {
            if !f.keyframe {
                self.tap.request_keyframe(&t.info.id, f.rid);
                return Ok(());
            }
            t.need_key = false;
        }
        if t.file.is_none() {
            if t.skipped {
                return Ok(());
            }
            match self.open(t, &f)? {
                Opened::File(file) => t.file = Some(file),
                Opened::Skip => {
                    t.skipped = true;
                    return Ok(());
                }
                Opened::NotYet => {
                    t.need_key = true;
                    return Ok(());
                }
            }
        }
        let (time0, ns0) = *t.base.get_or_insert_with(|| {
            let offset = f.at.saturating_duration_since(started).as_nanos() as u64;
            (f.time, offset)
        });
        let ns = ns0 + f.time.saturating_sub(time0) * 1_000_000_000 / f.clock_rate.max(1) as u64;
        let file = t.file.as_mut().expect("opened above");
        file.write(&f.payload, ns, f.keyframe || !video)
    }

    /// Opens the file of a track at its first usable frame; `None`: a codec it cannot record.
    fn open(&mut self, t: &mut Track, f: &TapFrame) -> Result<Opened, String> {
        let info = &t.info;
        let audio_only = self.info.audio_only;
        let (ext, codec) = match (info.kind, info.codec) {
            (MediaKind::Audio, Codec::Opus) if audio_only => ("ogg", "opus"),
            (MediaKind::Audio, Codec::Opus) => ("webm", "opus"),
            (MediaKind::Video, Codec::Vp8) if !audio_only => ("webm", "vp8"),
            (MediaKind::Video, Codec::H264) if !audio_only => ("mkv", "h264"),
            (MediaKind::Video, _) if audio_only => return Ok(Opened::Skip),
            (_, c) => {
                tracing::info!(track = %info.id, codec = ?c, "a track's codec cannot be recorded without transcoding");
                self.info.skipped.push(format!("{} ({:?})", info.id, c));
                self.save();
                return Ok(Opened::Skip);
            }
        };
        let name = super::manifest::file_name(&self.info, info, ext);
        let path = self.dir.join(&name);
        let file = match codec {
            "vp8" => {
                let Some((w, h)) = vp8_keyframe_size(&f.payload) else {
                    return Ok(Opened::NotYet); // not a VP8 keyframe after all: wait for one
                };
                TrackFile::vp8(&path, w, h)?
            }
            "h264" => match TrackFile::h264(&path, &f.payload)? {
                Some(file) => file,
                None => return Ok(Opened::NotYet), // a keyframe without SPS/PPS: wait for one
            },
            _ if ext == "ogg" => TrackFile::opus_ogg(&path)?,
            _ => TrackFile::opus_webm(&path)?,
        };
        t.index = Some(self.info.files.len());
        self.info.files.push(FileInfo {
            name,
            track: info.id.clone(),
            participant: info.participant.clone(),
            participant_name: info.name.clone(),
            label: info.label.clone(),
            kind: if info.kind == MediaKind::Video { "video" } else { "audio" }.into(),
            codec: codec.into(),
            offset_ms: f.at.saturating_duration_since(self.started).as_millis() as u64,
            bytes: 0,
        });
        self.save();
        Ok(Opened::File(file))
    }

    fn close(&mut self, t: Track) -> Result<(), String> {
        if let (Some(file), Some(i)) = (t.file, t.index) {
            let bytes = file.shared.written();
            file.finish()?;
            self.info.closed_bytes += bytes;
            self.info.files[i].bytes = bytes;
            self.save();
        }
        Ok(())
    }

    /// Writes the manifest beside the files (atomically: a crash leaves the old or the new one).
    fn save(&self) {
        if let Err(e) = self.info.save(&self.dir) {
            tracing::warn!(recording = %self.info.id, error = %e, "writing a recording's manifest failed");
        }
    }

    async fn finish(mut self, tracks: HashMap<String, Track>, end: End) {
        let mut end = end;
        for (_, t) in tracks {
            if let Err(e) = self.close(t)
                && matches!(end, End::Stopped(_))
            {
                end = End::Failed(e);
            }
        }
        conclude(&mut self.info, &self.dir, &self.recorder, &self.ended, end);
    }
}

/// Runs a recording on a thread of its own, `name`d, with a small runtime: its files are
/// blocking IO and libwebm's muxer is not `Send`.
pub(super) fn on_own_thread<F, Fut>(name: String, run: F) -> std::io::Result<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::Builder::new().name(name).spawn(
        move || match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt.block_on(run()),
            Err(e) => tracing::error!(error = %e, "a recording's runtime did not start"),
        },
    )?;
    Ok(())
}

/// A recording's once-a-second bookkeeping: its files flushed (the crash-safety point), bytes
/// counted in the metrics, and the reasons to end: a write error, `recording_max_bytes`,
/// `recording_max_seconds`, or its room left with no one on this node.
#[derive(Default)]
pub(super) struct Checks {
    written_before: u64,
}

impl Checks {
    /// `files`: the open files; `closed`: bytes of the files closed before. `Some`: why it ends.
    pub(super) async fn tick<'a>(
        &mut self,
        recorder: &Recorder,
        rtc: &RtcService,
        info: &RecordingInfo,
        started: Instant,
        files: impl Iterator<Item = &'a TrackFile>,
    ) -> Option<End> {
        let mut written = 0;
        for f in files {
            if f.shared.flush().is_err() {
                return Some(End::Failed(f.shared.error().unwrap_or_else(|| "flush failed".into())));
            }
            written += f.shared.written();
        }
        let total = info.closed_bytes + written;
        recorder.metrics.recording_bytes_written.add(total.saturating_sub(self.written_before));
        self.written_before = total;
        let config = &recorder.config;
        if total >= config.recording_max_bytes {
            return Some(End::Stopped("max_size".into()));
        }
        if started.elapsed() >= Duration::from_secs(config.recording_max_seconds) {
            return Some(End::Stopped("max_duration".into()));
        }
        if started.elapsed() > Duration::from_secs(2)
            && !rtc.rooms().await.iter().any(|r| r.as_str() == info.room)
        {
            return Some(End::Stopped("room_empty".into()));
        }
        None
    }
}

/// Closes the one file of a mix or composed recording after `drained` (what was still queued
/// for it): its size goes to the manifest, and an error fails a recording that was only
/// stopped.
pub(super) fn close_single(
    file: TrackFile,
    drained: Result<(), String>,
    info: &mut RecordingInfo,
    end: End,
) -> End {
    let bytes = file.shared.written();
    let closed = drained.and_then(|()| file.finish());
    if let Some(entry) = info.files.first_mut() {
        entry.bytes = bytes;
    }
    match closed {
        Err(e) if matches!(end, End::Stopped(_)) => End::Failed(e),
        _ => end,
    }
}

/// Says in the manifest how a recording ended and tells the recorder (files closed already).
pub(super) fn conclude(
    info: &mut RecordingInfo,
    dir: &std::path::Path,
    recorder: &Recorder,
    ended: &watch::Sender<bool>,
    end: End,
) {
    let (state, reason) = match end {
        End::Stopped(r) => (State::Stopped, r),
        End::Failed(r) => (State::Failed, r),
    };
    tracing::info!(recording = %info.id, ?state, %reason, "recording ended");
    info.state = state;
    info.reason = Some(reason);
    info.stopped = Some(now_ms());
    if let Err(e) = info.save(dir) {
        tracing::warn!(recording = %info.id, error = %e, "writing a recording's manifest failed");
    }
    recorder.update(Update::Ended(info.clone()));
    let _ = ended.send(true);
}
