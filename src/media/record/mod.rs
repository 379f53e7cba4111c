//! Room recording without transcoding (`docs/recording.md`): every track of a room, as it
//! arrives, into its own file (VP8 and Opus in WebM, H.264 in Matroska, or audio only in
//! Ogg/Opus) under `recordings_dir/{id}/`, beside a manifest that survives a crash.
//!
//! - [`Recorder`]: starts, stops, lists and deletes recordings; publishes their events.
//! - [`session`]: one recording's thread, reading the room's media tap.
//! - [`mix`]: a room-mix recording's thread, writing the room's audio mix to one file.
//! - [`composed`]: a composed recording's thread, a composition's video and the room's mix in
//!   one WebM file.
//! - [`file`]: one track's file (libwebm, `ogg`, [`mkv`]).
//! - [`mkv`]: a small Matroska writer for H.264; [`avc`]: Annex B to AVCC.
//! - [`manifest`]: the manifest, file names.
//! - [`http`]: the API.

mod avc;
mod composed;
mod file;
pub mod http;
pub mod manifest;
mod mix;
mod mkv;
mod session;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_protocol::ChannelName;
use tokio::sync::{mpsc, watch};

use self::manifest::{RecordingInfo, State, now_ms};
use crate::broker::{Broker, NewPublication};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::model::Payload;
use crate::rtc::RtcService;

/// Why a recording could not be started, found or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// No such recording.
    #[error("unknown recording")]
    Unknown,
    /// The room has no participants on this node.
    #[error("the room has no participants")]
    EmptyRoom,
    /// `recordings_max` recordings run already.
    #[error("at most {0} recordings at once (recordings_max)")]
    TooMany(usize),
    /// The file system refused.
    #[error("recordings_dir: {0}")]
    Io(#[from] std::io::Error),
    /// The WebRTC engine is gone.
    #[error("the WebRTC engine stopped")]
    Engine,
    /// A room-mix recording could not hold the room's mixer (`max_mixed_rooms`).
    #[error(transparent)]
    Mixer(crate::rtc::EngineError),
}

pub use composed::OnEnd;

/// What a recording records.
pub enum Mode {
    /// A file per track; `audio_only`: the Opus tracks only, each in Ogg.
    Tracks { audio_only: bool },
    /// The room's audio mix in one Ogg/Opus file.
    Mix,
    /// A composition's video (its `track`) and the room's audio mix in one WebM file;
    /// `on_end` runs when the recording ends (it stops a composition started for it).
    Composed { composition: String, track: String, on_end: Option<OnEnd> },
}

/// A running recording's handles.
struct Active {
    stop: watch::Sender<Option<String>>,
    ended: watch::Receiver<bool>,
}

/// What a recording's thread tells the recorder.
pub(crate) enum Update {
    Ended(RecordingInfo),
}

/// See the module docs.
pub struct Recorder {
    pub(crate) config: Arc<Config>,
    pub(crate) metrics: Arc<Metrics>,
    rtc: RtcService,
    dir: PathBuf,
    active: parking_lot::Mutex<HashMap<String, Active>>,
    /// How recordings that ended here ended: the manifest may not say so (a full disk).
    ended: parking_lot::Mutex<HashMap<String, RecordingInfo>>,
    updates: mpsc::UnboundedSender<Update>,
    events: mpsc::UnboundedSender<(String, serde_json::Value)>,
}

impl Recorder {
    /// The recorder of this node: creates `recordings_dir`, marks the recordings a crash cut
    /// `interrupted`, and starts the task that publishes recording events through `broker`.
    pub fn start(
        config: Arc<Config>,
        rtc: RtcService,
        broker: Arc<dyn Broker>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Arc<Self>> {
        let dir = PathBuf::from(&config.recordings_dir);
        std::fs::create_dir_all(&dir)?;
        mark_interrupted(&dir);
        let (updates, mut rx) = mpsc::unbounded_channel::<Update>();
        let (events, mut events_rx) = mpsc::unbounded_channel::<(String, serde_json::Value)>();
        let recorder = Arc::new(Self {
            config: config.clone(),
            metrics: metrics.clone(),
            rtc,
            dir,
            active: parking_lot::Mutex::new(HashMap::new()),
            ended: parking_lot::Mutex::new(HashMap::new()),
            updates,
            events: events.clone(),
        });
        let weak = Arc::downgrade(&recorder);
        tokio::spawn(async move {
            while let Some(Update::Ended(info)) = rx.recv().await {
                let Some(recorder) = weak.upgrade() else { return };
                recorder.active.lock().remove(&info.id);
                recorder.ended.lock().insert(info.id.clone(), info.clone());
                recorder.metrics.recordings_active.add(-1);
                if info.state == State::Failed {
                    recorder.metrics.recordings_failed.add(1);
                }
                let event = if info.state == State::Failed { "failed" } else { "stopped" };
                recorder.event(event, &info);
            }
        });
        // One task publishes in order: `started` never lands after `stopped`.
        tokio::spawn(async move {
            while let Some((room, body)) = events_rx.recv().await {
                let Ok(channel) = ChannelName::new(&room) else { continue };
                let options = config.channel_options(&channel).clone();
                let body = Bytes::from(serde_json::json!({ "recording": body }).to_string());
                let request = NewPublication {
                    channel,
                    payload: Payload::Json(body),
                    info: None,
                    idempotency_key: None,
                    options,
                };
                if let Err(e) = crate::broker::publish(broker.as_ref(), &metrics, request).await {
                    tracing::warn!(error = %e, "publishing a recording event failed");
                }
            }
        });
        Ok(recorder)
    }

    fn event(&self, event: &str, info: &RecordingInfo) {
        let mut body = serde_json::json!({"event": event, "id": info.id, "room": info.room});
        if let Some(reason) = &info.reason {
            body["reason"] = reason.clone().into();
        }
        let files: Vec<&str> = info.files.iter().map(|f| f.name.as_str()).collect();
        body["files"] = files.into();
        let _ = self.events.send((info.room.clone(), body));
    }

    pub(crate) fn update(&self, update: Update) {
        let _ = self.updates.send(update);
    }

    /// Starts recording `room` (it must have participants on this node), as `mode` says.
    pub async fn record(
        self: &Arc<Self>,
        room: &ChannelName,
        mode: Mode,
    ) -> Result<RecordingInfo, RecordError> {
        if !self.rtc.rooms().await.contains(room) {
            return Err(RecordError::EmptyRoom);
        }
        let max = self.config.recordings_max;
        if self.active.lock().len() >= max {
            return Err(RecordError::TooMany(max));
        }
        let id = format!("{:016x}", rand::random::<u64>());
        let dir = self.dir.join(&id);
        std::fs::create_dir_all(&dir)?;
        let info = RecordingInfo {
            id: id.clone(),
            room: room.to_string(),
            state: State::Recording,
            reason: None,
            started: now_ms(),
            stopped: None,
            audio_only: matches!(mode, Mode::Mix | Mode::Tracks { audio_only: true }),
            mix: matches!(mode, Mode::Mix),
            composition: match &mode {
                Mode::Composed { composition, .. } => Some(composition.clone()),
                _ => None,
            },
            files: Vec::new(),
            skipped: Vec::new(),
            closed_bytes: 0,
        };
        let started = Instant::now();
        let lease = match &mode {
            Mode::Tracks { .. } => None,
            Mode::Mix | Mode::Composed { .. } => match self.rtc.mix_record(room.clone()).await {
                Ok(lease) => Some(lease),
                Err(e @ crate::rtc::EngineError::MixerFull { .. }) => {
                    let _ = std::fs::remove_dir(&dir);
                    return Err(RecordError::Mixer(e));
                }
                Err(_) => return Err(RecordError::Engine),
            },
        };
        let tap = match &mode {
            Mode::Mix => None,
            _ => Some(
                self.rtc
                    .tap(room.clone(), self.config.recording_buffer_frames)
                    .await
                    .map_err(|_| RecordError::Engine)?,
            ),
        };
        let source = match (mode, tap, lease) {
            (Mode::Composed { track, on_end, .. }, Some(tap), Some(lease)) => {
                Source::Composed { tap, lease, track, on_end }
            }
            (_, Some(tap), _) => Source::Tap(tap),
            (_, None, Some(lease)) => Source::Mix(lease),
            (_, None, None) => return Err(RecordError::Engine),
        };
        info.save(&dir)?;
        let (stop, stop_rx) = watch::channel(None);
        let (ended_tx, ended) = watch::channel(false);
        self.active.lock().insert(id.clone(), Active { stop, ended });
        self.metrics.recordings_active.add(1);
        let (rtc, recorder, info2) = (self.rtc.clone(), self.clone(), info.clone());
        let spawned = match source {
            Source::Tap(tap) => session::Session {
                info: info2,
                dir,
                tap,
                rtc,
                stop: stop_rx,
                recorder,
                started,
                ended: ended_tx,
            }
            .spawn(),
            Source::Mix(lease) => mix::MixSession {
                info: info2,
                dir,
                lease,
                rtc,
                stop: stop_rx,
                recorder,
                started,
                ended: ended_tx,
            }
            .spawn(),
            Source::Composed { tap, lease, track, on_end } => composed::ComposedSession {
                info: info2,
                dir,
                tap,
                lease,
                track,
                rtc,
                stop: stop_rx,
                recorder,
                started,
                ended: ended_tx,
                on_end,
            }
            .spawn(),
        };
        if let Err(e) = spawned {
            self.active.lock().remove(&id);
            self.metrics.recordings_active.add(-1);
            return Err(e.into());
        }
        self.event("started", &info);
        Ok(info)
    }

    /// Stops a running recording and waits (a few seconds at most) until its files are closed;
    /// `false` when it is not running here.
    pub async fn stop(&self, id: &str, reason: &str) -> bool {
        let ended = {
            let active = self.active.lock();
            let Some(a) = active.get(id) else { return false };
            let _ = a.stop.send(Some(reason.to_owned()));
            a.ended.clone()
        };
        let mut ended = ended;
        let _ = tokio::time::timeout(Duration::from_secs(10), ended.wait_for(|e| *e)).await;
        true
    }

    /// Stops every running recording (graceful shutdown: their manifests say `stopped`).
    pub async fn stop_all(&self) {
        let ids: Vec<String> = self.active.lock().keys().cloned().collect();
        for id in ids {
            self.stop(&id, "shutdown").await;
        }
    }

    /// A recording with its size on disk and duration; `None` for ids that are not ours.
    pub fn get(&self, id: &str) -> Option<serde_json::Value> {
        let dir = self.recording_dir(id)?;
        let info = self.load(&dir)?;
        Some(self.describe(&dir, info))
    }

    fn describe(&self, dir: &std::path::Path, info: RecordingInfo) -> serde_json::Value {
        let mut v = serde_json::to_value(&info).unwrap_or_default();
        let mut total = 0;
        if let Some(files) = v["files"].as_array_mut() {
            for f in files {
                let name = f["name"].as_str().unwrap_or_default().to_owned();
                let size = std::fs::metadata(dir.join(&name)).map_or(0, |m| m.len());
                total += size;
                f["bytes"] = size.into();
                f["url"] = format!("/api/recordings/{}/files/{name}", info.id).into();
            }
        }
        let end = info.stopped.unwrap_or_else(now_ms);
        v["duration_ms"] = end.saturating_sub(info.started).into();
        v["bytes"] = total.into();
        v
    }

    /// Every recording in `recordings_dir`, newest first; only `room`'s when given.
    pub fn list(&self, room: Option<&str>) -> Vec<serde_json::Value> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut all: Vec<(RecordingInfo, PathBuf)> = entries
            .flatten()
            .filter_map(|e| self.load(&e.path()).map(|i| (i, e.path())))
            .filter(|(i, _)| room.is_none_or(|r| i.room == r))
            .collect();
        all.sort_by_key(|(i, _)| std::cmp::Reverse(i.started));
        all.into_iter().map(|(i, dir)| self.describe(&dir, i)).collect()
    }

    /// The room of a recording.
    pub fn room_of(&self, id: &str) -> Option<String> {
        self.load(&self.recording_dir(id)?).map(|i| i.room)
    }

    /// Whether it is running.
    pub fn is_active(&self, id: &str) -> bool {
        self.active.lock().contains_key(id)
    }

    /// Removes a finished recording's files.
    pub fn remove(&self, id: &str) -> Result<(), RecordError> {
        let dir = self.recording_dir(id).ok_or(RecordError::Unknown)?;
        if !dir.join("manifest.json").exists() {
            return Err(RecordError::Unknown);
        }
        std::fs::remove_dir_all(dir)?;
        self.ended.lock().remove(id);
        Ok(())
    }

    /// The path of a recording's file, if it has one of that name.
    pub fn file(&self, id: &str, name: &str) -> Option<PathBuf> {
        let dir = self.recording_dir(id)?;
        let info = self.load(&dir)?;
        info.files.iter().any(|f| f.name == name).then(|| dir.join(name))
    }

    /// The manifest in `dir`, or what this node knows better (how the recording ended).
    fn load(&self, dir: &std::path::Path) -> Option<RecordingInfo> {
        let info = RecordingInfo::load(dir).ok()?;
        Some(self.ended.lock().get(&info.id).cloned().unwrap_or(info))
    }

    /// The directory of recording `id`; `None` for what is not an id (no path tricks).
    fn recording_dir(&self, id: &str) -> Option<PathBuf> {
        (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| self.dir.join(id))
    }
}

/// What a recording reads: the room's tracks, its mix, or a composition and the mix.
enum Source {
    Tap(crate::media::tap::MediaTap),
    Mix(crate::rtc::MixLease),
    Composed {
        tap: crate::media::tap::MediaTap,
        lease: crate::rtc::MixLease,
        track: String,
        on_end: Option<OnEnd>,
    },
}

/// Manifests still saying `recording` belong to a server that died: `interrupted`.
fn mark_interrupted(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let Ok(mut info) = RecordingInfo::load(&e.path()) else { continue };
        if info.state == State::Recording {
            tracing::warn!(recording = %info.id, "a recording was cut by the server stopping: interrupted");
            info.state = State::Interrupted;
            info.reason = Some("the server stopped while recording".into());
            if let Err(err) = info.save(&e.path()) {
                tracing::warn!(recording = %info.id, error = %err, "marking a recording interrupted failed");
            }
        }
    }
}
