//! Faces: detection with `rustface` (SeetaFace's frontal model, embedded in the binary from
//! `vendor/rustface`: nothing is read or downloaded at run time), on a box-downscaled grey copy
//! of the frame, at most `rate` times a second. Boxes of the last detection are drawn on every
//! frame (when `draw`), and each detection is reported as a [`super::FilterEvent::Faces`].

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{FilterError, FilterEvent};
use crate::media::video::geom::Rect;
use crate::media::video::{I420, draw, scale};

/// SeetaFace frontal detector v1.0 (BSD-2-Clause, shipped in the `rustface` crate).
static MODEL: &[u8] = include_bytes!("../../../../vendor/rustface/seeta_fd_frontal_v1.0.bin");

/// The box colour.
const BOX: [u8; 3] = [40, 230, 90];

/// `{"type": "faces", "rate": 2, "draw": true, "width": 320, "min_size": 20}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacesSpec {
    /// Detections per second, 0.1 to 30.
    #[serde(default = "default_rate")]
    pub rate: f32,
    /// Draw boxes on the video.
    #[serde(default = "yes")]
    pub draw: bool,
    /// Width of the grey copy detection runs on (64 to 1280): smaller is faster, finds fewer.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Smallest face, in pixels of the grey copy (20 or more).
    #[serde(default = "default_min")]
    pub min_size: u32,
}

fn default_rate() -> f32 {
    2.0
}
fn yes() -> bool {
    true
}
fn default_width() -> u32 {
    320
}
fn default_min() -> u32 {
    20
}

/// One detected face, in the frame's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceBox {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// The detector's score (higher is surer).
    pub score: f64,
}

impl FaceBox {
    /// As a rectangle.
    pub fn rect(&self) -> Rect {
        Rect::new(self.x, self.y, self.w, self.h)
    }
}

/// A built faces filter.
pub struct Faces {
    spec: FacesSpec,
    detector: Box<dyn rustface::Detector>,
    next: Option<Instant>,
    last: Vec<FaceBox>,
}

impl Faces {
    /// Checks the spec and loads the embedded model.
    pub fn new(spec: &FacesSpec) -> Result<Self, FilterError> {
        let bad = |m: &str| Err(FilterError::BadSpec(format!("faces: {m}")));
        if !(spec.rate.is_finite() && (0.1..=30.0).contains(&spec.rate)) {
            return bad("rate must be 0.1..=30 per second");
        }
        if !(64..=1280).contains(&spec.width) {
            return bad("width must be 64..=1280");
        }
        if !(20..=1000).contains(&spec.min_size) {
            return bad("min_size must be 20..=1000");
        }
        let model =
            rustface::read_model(MODEL).map_err(|e| FilterError::BadSpec(format!("faces: model: {e}")))?;
        let mut detector = rustface::create_detector_with_model(model);
        detector.set_min_face_size(spec.min_size);
        detector.set_score_thresh(2.0);
        detector.set_pyramid_scale_factor(0.8);
        detector.set_slide_window_step(4, 4);
        Ok(Self { spec: *spec, detector, next: None, last: Vec::new() })
    }

    /// Detects when due (reporting the result), then draws the last boxes.
    pub fn apply(&mut self, frame: &mut I420, now: Instant) -> Option<FilterEvent> {
        let due = self.next.is_none_or(|next| now >= next);
        let event = due.then(|| {
            self.next = Some(now + Duration::from_secs_f32(1.0 / self.spec.rate));
            self.last = self.detect(frame);
            FilterEvent::Faces { width: frame.width, height: frame.height, faces: self.last.clone() }
        });
        if self.spec.draw {
            let t = (frame.height / 180).max(2);
            for face in &self.last {
                draw::outline(frame, face.rect(), t, BOX);
            }
        }
        event
    }

    fn detect(&mut self, frame: &I420) -> Vec<FaceBox> {
        let (grey, w, h, factor) = scale::grey(frame, self.spec.width);
        // rustface panics on images smaller than its window; skip those.
        if w < self.spec.min_size.max(24) || h < self.spec.min_size.max(24) {
            return Vec::new();
        }
        let image = rustface::ImageData::new(&grey, w, h);
        let found = self.detector.detect(&image);
        found
            .iter()
            .map(|f| {
                let b = f.bbox();
                let (x, y) = (b.x().max(0) as u32 * factor, b.y().max(0) as u32 * factor);
                let r =
                    Rect::new(x, y, b.width() * factor, b.height() * factor).clip(frame.width, frame.height);
                FaceBox { x: r.x, y: r.y, w: r.w, h: r.h, score: f.score() }
            })
            .collect()
    }
}
