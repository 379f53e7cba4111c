//! A composed recording (`{"composed": true}`, OpenVidu's "COMPOSED" mode without a headless
//! browser): a composition's video, the room's grid as the server encodes it, and the room's
//! audio mix in ONE WebM file. Nothing is decoded here: the composition's VP8 frames come from
//! the room's media tap, the mixer's Opus packets from a [`MixLease`], both placed on the
//! recording's clock and handed to libwebm in time order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::Recorder;
use super::file::{TrackFile, vp8_keyframe_size};
use super::manifest::{FileInfo, RecordingInfo};
use super::mix::{MixTimeline, SILENCE};
use super::session::{Checks, End, close_single, conclude, on_own_thread};
use crate::media::tap::{MediaTap, TapEvent, TapFrame};
use crate::rtc::{MixLease, RtcService};

/// How long a frame waits for the other source's frames of the same moment: the two arrive
/// apart (the mixer's 20 ms ticks, the composition's frame ticks, two threads' queues), and
/// libwebm refuses a frame older than the cluster it has begun.
const REORDER: Duration = Duration::from_millis(300);

/// The file's tracks, in the order [`TrackFile::vp8_opus`] makes them.
const VIDEO: usize = 0;
const AUDIO: usize = 1;

/// Runs when the recording ends: stops the composition it started for itself.
pub type OnEnd = Box<dyn FnOnce() + Send>;

pub(super) struct ComposedSession {
    pub(super) info: RecordingInfo,
    pub(super) dir: PathBuf,
    pub(super) tap: MediaTap,
    pub(super) lease: MixLease,
    /// The composition's track.
    pub(super) track: String,
    pub(super) rtc: RtcService,
    pub(super) stop: watch::Receiver<Option<String>>,
    pub(super) recorder: Arc<Recorder>,
    pub(super) started: Instant,
    pub(super) ended: watch::Sender<bool>,
    pub(super) on_end: Option<OnEnd>,
}

/// A frame waiting its turn in [`Interleave`].
struct Pending {
    ns: u64,
    /// Arrival order: equal times keep it.
    seq: u64,
    track: usize,
    data: Bytes,
    keyframe: bool,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.ns, self.seq) == (other.ns, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ns, self.seq).cmp(&(other.ns, other.seq))
    }
}

/// Both tracks' frames in time order: each waits until a frame [`REORDER`] newer has come.
#[derive(Default)]
struct Interleave {
    queue: BinaryHeap<Reverse<Pending>>,
    newest: u64,
    seq: u64,
    /// The last time handed out: a frame later than its turn goes out at this time instead.
    last: u64,
}

impl Interleave {
    fn push(&mut self, track: usize, data: Bytes, ns: u64, keyframe: bool) {
        self.seq += 1;
        self.newest = self.newest.max(ns);
        self.queue.push(Reverse(Pending { ns, seq: self.seq, track, data, keyframe }));
    }

    /// The next frame whose turn has come (every one with `all`, at the end).
    fn pop(&mut self, all: bool) -> Option<Pending> {
        let Reverse(next) = self.queue.peek()?;
        if !all && next.ns + REORDER.as_nanos() as u64 > self.newest {
            return None;
        }
        let Reverse(mut next) = self.queue.pop()?;
        next.ns = next.ns.max(self.last);
        self.last = next.ns;
        Some(next)
    }
}

/// The composition's video as the file takes it: from a keyframe, and again after any gap.
#[derive(Default)]
struct Video {
    need_key: bool,
    /// `(RTP time, ns on the recording's clock)` of its first frame.
    base: Option<(u64, u64)>,
}

impl ComposedSession {
    /// Runs the recording on a thread of its own (file writes block, libwebm is not `Send`).
    pub(super) fn spawn(self) -> std::io::Result<()> {
        on_own_thread(format!("reccmp-{}", &self.info.id[..8]), move || self.run())
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut file: Option<TrackFile> = None;
        // The file's zero on the recording's clock: its first keyframe (audio before it waits
        // for no picture and is left out).
        let mut origin: Option<u64> = None;
        let mut video = Video { need_key: true, base: None };
        let mut audio = MixTimeline::default();
        let mut queue = Interleave::default();
        let mut checks = Checks::default();
        self.tap.request_keyframe(&self.track, None);
        let end = loop {
            tokio::select! {
                event = self.tap.recv() => match event {
                    Some(TapEvent::Frame(f)) if *f.track == *self.track => {
                        let Some((ns, keyframe)) = self.video_frame(&mut video, &f) else { continue };
                        if file.is_none() {
                            match self.open(&f) {
                                Ok(Some(opened)) => {
                                    file = Some(opened);
                                    origin = Some(ns);
                                }
                                Ok(None) => {
                                    video.need_key = true;
                                    continue;
                                }
                                Err(e) => break End::Failed(e),
                            }
                        }
                        queue.push(VIDEO, f.payload, ns, keyframe);
                    }
                    Some(TapEvent::TrackRemoved { track }) if track == self.track => {
                        break End::Stopped("composition_stopped".into());
                    }
                    Some(_) => {} // the room's other tracks: not this recording's
                    None => break End::Failed("the WebRTC engine stopped".into()),
                },
                packet = self.lease.packets.recv() => match packet {
                    Ok((ts, packet)) => {
                        let (silence, ns) = audio.place(ts, self.started.elapsed().as_nanos() as u64);
                        if origin.is_none_or(|o| ns < o) {
                            continue;
                        }
                        for ns in silence.into_iter().filter(|&s| origin.is_some_and(|o| s >= o)) {
                            queue.push(AUDIO, Bytes::from_static(&SILENCE), ns, true);
                        }
                        queue.push(AUDIO, packet, ns, true);
                    }
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
            if let (Some(f), Some(o)) = (file.as_mut(), origin)
                && let Err(e) = write_ready(f, &mut queue, o, false)
            {
                break End::Failed(e);
            }
        };
        let end = match (file, origin) {
            (Some(mut f), Some(o)) => {
                let drained = write_ready(&mut f, &mut queue, o, true);
                close_single(f, drained, &mut self.info, end)
            }
            _ => end,
        };
        drop(self.lease);
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
        conclude(&mut self.info, &self.dir, &self.recorder, &self.ended, end);
    }

    /// A composition frame's time on the recording's clock, and whether it is a keyframe;
    /// `None` while the file waits for a keyframe (asked for).
    fn video_frame(&self, video: &mut Video, f: &TapFrame) -> Option<(u64, bool)> {
        if f.payload.is_empty() {
            return None;
        }
        if !f.contiguous {
            video.need_key = true;
        }
        if video.need_key {
            if !f.keyframe {
                self.tap.request_keyframe(&self.track, None);
                return None;
            }
            video.need_key = false;
        }
        let (time0, ns0) = *video
            .base
            .get_or_insert_with(|| (f.time, f.at.saturating_duration_since(self.started).as_nanos() as u64));
        let ns = ns0 + f.time.saturating_sub(time0) * 1_000_000_000 / u64::from(f.clock_rate.max(1));
        Some((ns, f.keyframe))
    }

    /// Opens the file at the composition's first keyframe (its header says the size), and lists
    /// it in the manifest; `None` for a frame that is not a VP8 keyframe after all.
    fn open(&mut self, f: &TapFrame) -> Result<Option<TrackFile>, String> {
        let Some((w, h)) = vp8_keyframe_size(&f.payload) else { return Ok(None) };
        let name = super::manifest::composed_file_name(&self.info);
        let file = TrackFile::vp8_opus(&self.dir.join(&name), w, h)?;
        self.info.files.push(FileInfo {
            name,
            track: self.track.clone(),
            participant: "server".into(),
            participant_name: None,
            label: "composed".into(),
            kind: "video".into(),
            codec: "vp8+opus".into(),
            offset_ms: f.at.saturating_duration_since(self.started).as_millis() as u64,
            bytes: 0,
        });
        if let Err(e) = self.info.save(&self.dir) {
            tracing::warn!(recording = %self.info.id, error = %e, "writing a recording's manifest failed");
        }
        Ok(Some(file))
    }
}

/// Writes the frames whose turn has come (all of them with `all`), timed from `origin`.
fn write_ready(file: &mut TrackFile, queue: &mut Interleave, origin: u64, all: bool) -> Result<(), String> {
    while let Some(p) = queue.pop(all) {
        file.write_track(p.track, &p.data, p.ns.saturating_sub(origin), p.keyframe)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(q: &mut Interleave, all: bool) -> Vec<(usize, u64)> {
        std::iter::from_fn(|| q.pop(all)).map(|p| (p.track, p.ns / 1_000_000)).collect()
    }

    #[test]
    fn frames_of_both_tracks_leave_in_time_order_once_their_turn_has_come() {
        let mut q = Interleave::default();
        let ms = |m: u64| m * 1_000_000;
        q.push(VIDEO, Bytes::new(), ms(0), true);
        q.push(VIDEO, Bytes::new(), ms(66), false);
        // Audio of the same moments arrives later.
        q.push(AUDIO, Bytes::new(), ms(20), true);
        q.push(AUDIO, Bytes::new(), ms(0), true);
        assert!(order(&mut q, false).is_empty(), "nothing is 300 ms old yet");
        q.push(VIDEO, Bytes::new(), ms(340), false);
        assert_eq!(order(&mut q, false), vec![(VIDEO, 0), (AUDIO, 0), (AUDIO, 20)]);
        assert_eq!(order(&mut q, true), vec![(VIDEO, 66), (VIDEO, 340)]);
    }

    #[test]
    fn a_frame_later_than_its_turn_goes_out_at_the_last_time_not_before_it() {
        let mut q = Interleave::default();
        q.push(VIDEO, Bytes::new(), 500_000_000, true);
        assert_eq!(order(&mut q, true), vec![(VIDEO, 500)]);
        q.push(AUDIO, Bytes::new(), 100_000_000, true);
        assert_eq!(order(&mut q, true), vec![(AUDIO, 500)]);
    }
}
