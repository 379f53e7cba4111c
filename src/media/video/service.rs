//! Compositions and pipelines on this node: admission (count and size caps), starting each on a
//! thread of its own fed by a tap of its room, publishing its output as a served track, faces
//! events on the room channel, stopping. The HTTP API ([`super::http`]) is a thin layer on it.
//!
//! Per running unit, a tokio task moves events: tap → [`Feed`] → the worker's bounded queue
//! ([`run`]); the worker's outputs → the served track (frames), the tap (keyframe requests to
//! publishers), the room channel (faces). Its CPU work never runs on tokio or the engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use switchboard_protocol::ChannelName;
use tokio::sync::mpsc;

use super::composition::{Composition, CompositionConfig, Input, Output};
use super::driver::{Driver, End as Ended};
use super::feed::Feed;
use super::filter::{self, Chain, FilterError, FilterSpec};
use super::layout::Layout;
use super::pipeline::{Pipeline, PipelineConfig};
use super::run::{self, Worker};
use super::text::Font;
use crate::broker::{Broker, NewPublication};
use crate::config::Config;
use crate::metrics::{Counter, Gauge, Metrics};
use crate::model::Payload;
use crate::rtc::RtcService;

/// Why a composition or pipeline was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VideoError {
    /// A bad request: size, rate, layout, filters (with the filter's own code).
    #[error("{0}")]
    Bad(String),
    /// A bad filter chain.
    #[error("{code}: {error}", code = .0.code(), error = .0)]
    Filter(#[from] FilterError),
    /// The cap of this kind is reached.
    #[error("{what} running on this node: at most {max} (video_max_{what})")]
    TooMany {
        /// `compositions` or `pipelines`.
        what: &'static str,
        /// The cap.
        max: usize,
    },
    /// No such track in the room (a pipeline's source), or no such composition/pipeline.
    #[error("{0}")]
    NotFound(String),
    /// The WebRTC engine is gone, or a worker could not start.
    #[error("{0}")]
    Unavailable(String),
}

/// `POST /api/rooms/{room}/compositions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositionRequest {
    /// `grid` or `speaker`.
    #[serde(default)]
    pub layout: Layout,
    /// Output width (even).
    #[serde(default = "default_width")]
    pub width: u32,
    /// Output height (even).
    #[serde(default = "default_height")]
    pub height: u32,
    /// Frames per second.
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// kbit/s.
    #[serde(default = "default_bitrate")]
    pub bitrate: u32,
    /// Filters on the composed output.
    #[serde(default)]
    pub filters: Option<serde_json::Value>,
}

fn default_width() -> u32 {
    640
}
fn default_height() -> u32 {
    360
}
fn default_fps() -> u32 {
    15
}
fn default_bitrate() -> u32 {
    800
}

/// `POST /api/rooms/{room}/pipelines`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineRequest {
    /// The source track (video, VP8).
    pub track: String,
    /// The filter chain.
    pub filters: serde_json::Value,
    /// kbit/s.
    #[serde(default = "default_bitrate")]
    pub bitrate: u32,
}

/// `PATCH /api/rooms/{room}/compositions/{id}`: what to change, live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositionUpdate {
    /// `grid` or `speaker`.
    #[serde(default)]
    pub layout: Option<Layout>,
}

/// A running composition or pipeline, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Running {
    /// Its id.
    pub id: String,
    /// `composition` or `pipeline`.
    pub kind: &'static str,
    /// The room.
    pub room: String,
    /// The output track (subscribe to it, WHEP `?track=` it, record it).
    pub track: String,
    /// A pipeline's source track.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A composition's size, rate and layout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// See `width`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// See `width`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
    /// See `width`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
}

/// The metrics of compositions and pipelines.
#[derive(Default)]
pub struct VideoMetrics {
    /// Compositions running.
    pub compositions: Gauge,
    /// Pipelines running.
    pub pipelines: Gauge,
    /// Requests refused by the caps.
    pub refused: Counter,
    /// Frames encoded and sent to the served tracks.
    pub frames: Counter,
    /// Input frames dropped because a worker was behind.
    pub dropped: Counter,
}

impl VideoMetrics {
    /// Appends the metrics as Prometheus text.
    pub fn render(&self, s: &mut String) {
        use std::fmt::Write;
        let rows: [(&str, &str, &str, i64); 5] = [
            ("video_compositions", "gauge", "Compositions (video MCU) running.", self.compositions.get()),
            ("video_pipelines", "gauge", "Filter pipelines running.", self.pipelines.get()),
            (
                "video_refused_total",
                "counter",
                "Compositions and pipelines refused by their caps.",
                self.refused.get() as i64,
            ),
            (
                "video_frames_total",
                "counter",
                "Frames composed or filtered, encoded and sent.",
                self.frames.get() as i64,
            ),
            (
                "video_dropped_total",
                "counter",
                "Input frames dropped because a composition or pipeline was behind.",
                self.dropped.get() as i64,
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = write!(
                s,
                "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} {kind}\nswitchboard_{name} {value}\n"
            );
        }
    }
}

struct Entry {
    info: Running,
    task: tokio::task::JoinHandle<()>,
    /// Inputs for the worker from the API (a layout change).
    control: mpsc::UnboundedSender<Input>,
}

/// Compositions and pipelines of this node.
pub struct VideoService {
    config: Arc<Config>,
    rtc: RtcService,
    broker: Arc<dyn Broker>,
    node_metrics: Arc<Metrics>,
    font: Option<Arc<Font>>,
    metrics: Arc<VideoMetrics>,
    running: Mutex<HashMap<String, Entry>>,
    /// Units admitted and still starting (compositions, pipelines); changed under `running`'s
    /// lock.
    starting: [AtomicUsize; 2],
}

/// A place under a cap, from admission until the unit is in `running` (or failed to start).
struct Place<'a> {
    service: &'a VideoService,
    kind: &'static str,
    held: bool,
}

impl Place<'_> {
    /// The unit is in `running` (whose lock the caller holds): it counts there from now on.
    fn settle(mut self, _running: &mut HashMap<String, Entry>) {
        self.service.starting(self.kind).fetch_sub(1, Ordering::Relaxed);
        self.held = false;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.held {
            let _running = self.service.running.lock();
            self.service.starting(self.kind).fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl VideoService {
    /// The service; loads `video_font` (without it: no labels, no overlay text).
    pub fn new(
        config: Arc<Config>,
        rtc: RtcService,
        broker: Arc<dyn Broker>,
        node_metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let font = match Font::load(std::path::Path::new(&config.video_font)) {
            Ok(f) => Some(Arc::new(f)),
            Err(e) => {
                tracing::warn!(error = %e, "video_font: compositions go without labels");
                None
            }
        };
        let metrics = Arc::new(VideoMetrics::default());
        let rendered = metrics.clone();
        node_metrics.add_source(move |out| rendered.render(out));
        Arc::new(Self {
            config,
            rtc,
            broker,
            node_metrics,
            font,
            metrics,
            running: Mutex::new(HashMap::new()),
            starting: Default::default(),
        })
    }

    /// The metrics.
    pub fn metrics(&self) -> &VideoMetrics {
        &self.metrics
    }

    /// The running compositions and pipelines of `room`.
    pub fn list(&self, room: &str) -> Vec<Running> {
        let mut all: Vec<Running> =
            self.running.lock().values().filter(|e| e.info.room == room).map(|e| e.info.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    fn starting(&self, kind: &str) -> &AtomicUsize {
        &self.starting[usize::from(kind != "composition")]
    }

    /// A place under the cap of `kind`, counted from now on: units still starting count too, so
    /// two requests at once never both pass the last place.
    fn admit(&self, kind: &'static str) -> Result<Place<'_>, VideoError> {
        let (what, max) = match kind {
            "composition" => ("compositions", self.config.video_max_compositions),
            _ => ("pipelines", self.config.video_max_pipelines),
        };
        let running = self.running.lock();
        let taken = running.values().filter(|e| e.info.kind == kind).count();
        if taken + self.starting(kind).load(Ordering::Relaxed) >= max {
            self.metrics.refused.add(1);
            return Err(VideoError::TooMany { what, max });
        }
        self.starting(kind).fetch_add(1, Ordering::Relaxed);
        Ok(Place { service: self, kind, held: true })
    }

    /// Checks filters now (a chain is built on its thread later; this one is thrown away).
    fn check_filters(&self, value: &serde_json::Value) -> Result<Vec<FilterSpec>, VideoError> {
        let specs = filter::parse(value)?;
        Chain::build(&specs, self.font.clone())?;
        Ok(specs)
    }

    /// Starts a composition of `room`.
    pub async fn compose(
        self: &Arc<Self>,
        room: ChannelName,
        req: CompositionRequest,
    ) -> Result<Running, VideoError> {
        let c = &self.config;
        let bad = |m: String| Err(VideoError::Bad(m));
        if req.width < 16 || req.height < 16 || !req.width.is_multiple_of(2) || !req.height.is_multiple_of(2)
        {
            return bad(format!(
                "width and height must be even and at least 16, not {}x{}",
                req.width, req.height
            ));
        }
        if req.width > c.video_max_width || req.height > c.video_max_height {
            return bad(format!(
                "{}x{} is over video_max_width x video_max_height ({}x{})",
                req.width, req.height, c.video_max_width, c.video_max_height
            ));
        }
        if req.fps == 0 || req.fps > c.video_max_fps {
            return bad(format!("fps must be 1..={}", c.video_max_fps));
        }
        if !(50..=20_000).contains(&req.bitrate) {
            return bad("bitrate must be 50..=20000 kbit/s".into());
        }
        let specs = req.filters.as_ref().map(|f| self.check_filters(f)).transpose()?;
        let place = self.admit("composition")?;
        let config = CompositionConfig {
            width: req.width,
            height: req.height,
            fps: req.fps,
            bitrate_kbps: req.bitrate,
            layout: req.layout,
            stall: Duration::from_secs(2),
        };
        let font = self.font.clone();
        let make = move || {
            let chain =
                specs.map(|s| Chain::build(&s, font.clone())).transpose().map_err(|e| e.to_string())?;
            Composition::new(config, font, chain, Instant::now()).map_err(|e| e.to_string())
        };
        let mut info = Running {
            id: new_id("cmp"),
            kind: "composition",
            room: room.as_str().to_owned(),
            track: String::new(),
            source: None,
            width: Some(req.width),
            height: Some(req.height),
            fps: Some(req.fps),
            layout: Some(req.layout),
        };
        self.start(&mut info, place, room, Feed::room(Vec::new()), make).await?;
        Ok(info)
    }

    /// Starts a pipeline on a track of `room`.
    pub async fn pipeline(
        self: &Arc<Self>,
        room: ChannelName,
        req: PipelineRequest,
    ) -> Result<Running, VideoError> {
        let specs = self.check_filters(&req.filters)?;
        if !(50..=20_000).contains(&req.bitrate) {
            return Err(VideoError::Bad("bitrate must be 50..=20000 kbit/s".into()));
        }
        let snapshot = self.rtc.snapshot().await;
        let found = snapshot
            .iter()
            .filter(|r| r.room == room.as_str())
            .flat_map(|r| r.peers.iter().flat_map(|p| p.published.iter()))
            .find(|t| t.id == req.track);
        match found {
            None => return Err(VideoError::NotFound(format!("no track {} in {}", req.track, room.as_str()))),
            Some(t) if t.kind != "video" => {
                return Err(VideoError::Bad(format!("track {} is not video", req.track)));
            }
            Some(_) => {}
        }
        let place = self.admit("pipeline")?;
        let config = PipelineConfig {
            bitrate_kbps: req.bitrate,
            max_width: self.config.video_max_width,
            max_height: self.config.video_max_height,
        };
        let (font, source) = (self.font.clone(), req.track.clone());
        let make = move || {
            let chain = Chain::build(&specs, font).map_err(|e| e.to_string())?;
            Ok::<_, String>(Pipeline::new(config, &source, chain))
        };
        let mut info = Running {
            id: new_id("pip"),
            kind: "pipeline",
            room: room.as_str().to_owned(),
            track: String::new(),
            source: Some(req.track.clone()),
            width: None,
            height: None,
            fps: None,
            layout: None,
        };
        self.start(&mut info, place, room, Feed::track(&req.track), make).await?;
        Ok(info)
    }

    async fn start<W, M>(
        self: &Arc<Self>,
        info: &mut Running,
        place: Place<'_>,
        room: ChannelName,
        mut feed: Feed,
        make: M,
    ) -> Result<(), VideoError>
    where
        W: Worker,
        M: FnOnce() -> Result<W, String> + Send + 'static,
    {
        let unavailable = |e: crate::rtc::EngineError| VideoError::Unavailable(e.to_string());
        // The output's label and name in the room's track list.
        let (label, name) = if info.kind == "composition" {
            ("composition", "Composition")
        } else {
            ("filtered", "Filtered")
        };
        let served = self.rtc.serve(room.clone(), label, name).await.map_err(unavailable)?;
        feed.skip(&served.id);
        let tap = self.rtc.tap(room.clone(), 256).await.map_err(unavailable)?;
        info.track = served.id.clone();
        let sender = served.sender();
        let (asks_tx, asks) = mpsc::unbounded_channel::<Output>();
        let metrics = self.metrics.clone();
        let out = move |o: Output| match o {
            Output::Frame { data, keyframe, time } => {
                if sender.frame(data, keyframe, time) {
                    metrics.frames.add(1);
                }
            }
            other => {
                let _ = asks_tx.send(other);
            }
        };
        let thread = format!("video-{}", info.id);
        let worker = run::spawn(&thread, self.config.video_queue_frames, make, out)
            .map_err(VideoError::Unavailable)?;
        self.gauge(info.kind).add(1);
        let (control_tx, control) = mpsc::unbounded_channel();
        let secs = self.config.video_room_empty_seconds;
        let driver = Driver {
            id: info.id.clone(),
            room,
            pipeline: info.kind == "pipeline",
            tap,
            feed,
            worker,
            served,
            asks,
            control,
            empty_after: (secs > 0).then(|| Duration::from_secs(secs)),
        };
        let this = self.clone();
        let task = tokio::spawn(async move {
            let id = driver.id.clone();
            let end = driver.run(this.clone()).await;
            this.ended(&id, end).await;
        });
        let entry = Entry { info: info.clone(), task, control: control_tx };
        let mut running = self.running.lock();
        running.insert(info.id.clone(), entry);
        place.settle(&mut running);
        drop(running);
        tracing::info!(id = %info.id, kind = info.kind, room = %info.room, track = %info.track, "video worker started");
        Ok(())
    }

    fn gauge(&self, kind: &str) -> &Gauge {
        if kind == "composition" { &self.metrics.compositions } else { &self.metrics.pipelines }
    }

    /// Whether `room` has a peer on this node (a unit of an empty room stops by itself).
    pub(super) async fn room_has_peers(&self, room: &ChannelName) -> bool {
        self.rtc.rooms().await.contains(room)
    }

    /// A unit's task ended by itself: forget it (its tap, worker and served track are dropped
    /// with the task) and say why on the room channel, unless it was stopped meanwhile.
    async fn ended(&self, id: &str, end: Ended) {
        let Some(entry) = self.running.lock().remove(id) else { return };
        self.gauge(entry.info.kind).add(-1);
        tracing::info!(id, reason = end.reason(), "video worker ended");
        self.publish_stopped(&entry.info, end.reason()).await;
    }

    async fn publish_stopped(&self, info: &Running, reason: &str) {
        let Ok(room) = ChannelName::new(&info.room) else { return };
        let event = serde_json::json!({ "event": "stopped", "kind": info.kind, "reason": reason });
        self.publish(&room, &info.id, &info.track, event).await;
    }

    /// Publishes one event of unit `id` on its room channel (`{"video": {id, track, event}}`).
    pub(super) async fn publish(&self, room: &ChannelName, id: &str, track: &str, event: serde_json::Value) {
        let body = serde_json::json!({ "video": { "id": id, "track": track, "event": event } });
        let request = NewPublication {
            channel: room.clone(),
            payload: Payload::Json(Bytes::from(body.to_string())),
            info: None,
            idempotency_key: None,
            options: self.config.channel_options(room).clone(),
        };
        if let Err(e) = crate::broker::publish(self.broker.as_ref(), &self.node_metrics, request).await {
            tracing::debug!(error = %e, "publishing a video event failed");
        }
    }

    /// Changes a running composition of `room` (its layout), live.
    pub fn update(&self, room: &str, id: &str, req: CompositionUpdate) -> Result<Running, VideoError> {
        let mut running = self.running.lock();
        let Some(entry) = running.get_mut(id).filter(|e| e.info.room == room && e.info.kind == "composition")
        else {
            return Err(VideoError::NotFound(format!("no composition {id} in {room}")));
        };
        if let Some(layout) = req.layout {
            // The task forwards it to the worker; a task that just ended drops it (the unit is
            // gone then, and its stopped event says so).
            let _ = entry.control.send(Input::Layout(layout));
            entry.info.layout = Some(layout);
        }
        Ok(entry.info.clone())
    }

    /// Stops a composition or pipeline of `room` (`DELETE`): a `stopped` event with reason
    /// `stopped` follows on the room channel.
    pub async fn stop(&self, room: &str, id: &str) -> Result<Running, VideoError> {
        let info = self.remove(room, id)?;
        self.publish_stopped(&info, "stopped").await;
        Ok(info)
    }

    /// Stops a composition or pipeline at once, from any thread (a recording's, whose own
    /// composition ends with it); its `stopped` event follows on `runtime`.
    pub fn stop_on(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        room: &str,
        id: &str,
    ) -> Result<Running, VideoError> {
        let info = self.remove(room, id)?;
        let (this, event) = (self.clone(), info.clone());
        runtime.spawn(async move { this.publish_stopped(&event, "stopped").await });
        Ok(info)
    }

    fn remove(&self, room: &str, id: &str) -> Result<Running, VideoError> {
        let mut running = self.running.lock();
        if running.get(id).is_none_or(|e| e.info.room != room) {
            return Err(VideoError::NotFound(format!("no composition or pipeline {id} in {room}")));
        }
        let entry = running.remove(id).expect("checked");
        drop(running);
        // Aborting drops the tap, the worker's queue (its thread ends) and the served track.
        entry.task.abort();
        self.gauge(entry.info.kind).add(-1);
        Ok(entry.info)
    }

    /// Stops everything (shutdown; no events).
    pub fn stop_all(&self) {
        let all: Vec<(String, String)> =
            self.running.lock().values().map(|e| (e.info.room.clone(), e.info.id.clone())).collect();
        for (room, id) in all {
            let _ = self.remove(&room, &id);
        }
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}
