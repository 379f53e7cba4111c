//! The tokio task of one running composition or pipeline: it moves events between the room's tap,
//! the worker thread and the served track, and decides when the unit ends by itself. It does no
//! CPU work (that is the worker's, [`super::run`]).
//!
//! A unit ends by itself when
//! - its room has had no peer on this node for `video_room_empty_seconds` (`room_empty`), as a
//!   recording does: nobody is left to compose, and the cap slot is freed;
//! - a pipeline's source track leaves the room (`source_gone`): a publisher that comes back
//!   publishes a new track, so the pipeline would never get a frame again;
//! - the WebRTC engine stops (`failed`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_protocol::ChannelName;
use tokio::sync::mpsc;

use super::composition::{Input, Output};
use super::feed::Feed;
use super::run::WorkerHandle;
use super::service::VideoService;
use crate::media::tap::MediaTap;
use crate::rtc::ServedTrack;

/// Why a unit ended by itself (the `reason` of its `stopped` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// No peer in the room for the configured time.
    RoomEmpty,
    /// A pipeline's source track left.
    SourceGone,
    /// The WebRTC engine stopped.
    Failed,
}

impl End {
    /// The reason as the event says it.
    pub fn reason(self) -> &'static str {
        match self {
            End::RoomEmpty => "room_empty",
            End::SourceGone => "source_gone",
            End::Failed => "failed",
        }
    }
}

/// What one unit's task moves between.
pub struct Driver {
    /// The unit's id.
    pub id: String,
    /// Its room.
    pub room: ChannelName,
    /// A pipeline (ends when its source goes) rather than a composition.
    pub pipeline: bool,
    /// The room's media.
    pub tap: MediaTap,
    /// Tap events to inputs.
    pub feed: Feed,
    /// The worker thread's queue.
    pub worker: WorkerHandle,
    /// The output track (dropping it removes it from the room).
    pub served: ServedTrack,
    /// The worker's outputs other than frames (keyframe requests, filter events).
    pub asks: mpsc::UnboundedReceiver<Output>,
    /// Inputs from the API (a layout change).
    pub control: mpsc::UnboundedReceiver<Input>,
    /// How long the room may stay without peers; `None`: forever.
    pub empty_after: Option<Duration>,
}

impl Driver {
    /// Runs until the unit ends by itself (it may also be aborted: `DELETE`, shutdown).
    pub async fn run(mut self, service: Arc<VideoService>) -> End {
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut empty_since: Option<Instant> = None;
        let track = self.served.id.clone();
        loop {
            tokio::select! {
                event = self.tap.recv() => {
                    let Some(event) = event else { return End::Failed };
                    let Some(input) = self.feed.event(event) else { continue };
                    let gone = matches!(input, Input::Gone { .. });
                    let frame = matches!(input, Input::Frame { .. });
                    if !self.worker.send(input) && frame {
                        service.metrics().dropped.add(1);
                    }
                    if gone && self.pipeline {
                        return End::SourceGone;
                    }
                }
                Some(()) = self.served.keyframes.recv() => {
                    self.worker.send(Input::Keyframe);
                }
                Some(input) = self.control.recv() => {
                    self.worker.send(input);
                }
                Some(ask) = self.asks.recv() => match ask {
                    Output::RequestKeyframe { track } => {
                        self.tap.request_keyframe(&track, self.feed.layer(&track));
                    }
                    Output::Events(events) => {
                        for event in events {
                            service.publish(&self.room, &self.id, &track, serde_json::json!(event)).await;
                        }
                    }
                    Output::Frame { .. } => {}
                },
                _ = check.tick(), if self.empty_after.is_some() => {
                    let occupied = service.room_has_peers(&self.room).await;
                    let now = Instant::now();
                    empty_since = if occupied { None } else { Some(empty_since.unwrap_or(now)) };
                    let limit = self.empty_after.unwrap_or(Duration::MAX);
                    if empty_since.is_some_and(|at| now.duration_since(at) >= limit) {
                        return End::RoomEmpty;
                    }
                }
            }
        }
    }
}
