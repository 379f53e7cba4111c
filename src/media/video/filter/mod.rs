//! Filters on decoded frames, chained: what `POST /api/rooms/{room}/pipelines` applies to a
//! track (and a composition to its output). Each filter is a spec (JSON, `"type"` names it) and
//! a sans-IO stage built from it; [`Chain::apply`] runs the stages in order on one frame.
//!
//! - [`overlay`]: text (with `{time}` for a clock) and/or a PNG image at a position.
//! - [`pixelate`]: a region, or the whole frame, in blocks.
//! - [`faces`]: face detection (`rustface`, model embedded), boxes drawn and reported.
//!
//! Bad specs are refused when the chain is built, with a [`FilterError`] whose
//! [`FilterError::code`] is stable; applying never fails.

pub mod faces;
pub mod overlay;
pub mod pixelate;

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::I420;
use super::text::Font;
pub use faces::{FaceBox, FacesSpec};
pub use overlay::OverlaySpec;
pub use pixelate::PixelateSpec;

/// Filters in one chain, at most.
pub const MAX_FILTERS: usize = 8;

/// One filter's spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FilterSpec {
    /// Text and/or an image over the frame.
    Overlay(OverlaySpec),
    /// Blocks instead of detail.
    Pixelate(PixelateSpec),
    /// Face detection.
    Faces(FacesSpec),
}

/// The filter types, as `"type"` names them.
pub const FILTER_TYPES: [&str; 3] = ["overlay", "pixelate", "faces"];

/// A chain could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// `"type"` names no filter.
    #[error("unknown filter type {0:?} (known: overlay, pixelate, faces)")]
    UnknownFilter(String),
    /// A spec's fields are wrong (missing, of the wrong type, out of range).
    #[error("bad filter spec: {0}")]
    BadSpec(String),
    /// An overlay image is not a usable PNG.
    #[error("bad overlay image: {0}")]
    BadImage(String),
    /// Text needs a font, and none could be loaded.
    #[error("no font for overlay text")]
    NoFont,
    /// More than [`MAX_FILTERS`] filters, or none.
    #[error("a chain holds 1 to {MAX_FILTERS} filters, not {0}")]
    ChainLength(usize),
}

impl FilterError {
    /// The stable code of the error, for the API's JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            FilterError::UnknownFilter(_) => "unknown_filter",
            FilterError::BadSpec(_) => "bad_filter",
            FilterError::BadImage(_) => "bad_overlay_image",
            FilterError::NoFont => "no_font",
            FilterError::ChainLength(_) => "bad_filter_chain",
        }
    }
}

/// Parses a JSON array of filter specs, telling an unknown `"type"` apart from bad fields.
pub fn parse(value: &serde_json::Value) -> Result<Vec<FilterSpec>, FilterError> {
    let Some(items) = value.as_array() else {
        return Err(FilterError::BadSpec("filters must be an array".into()));
    };
    if items.is_empty() || items.len() > MAX_FILTERS {
        return Err(FilterError::ChainLength(items.len()));
    }
    items
        .iter()
        .map(|item| {
            let kind = item.get("type").and_then(|t| t.as_str()).unwrap_or_default();
            if !FILTER_TYPES.contains(&kind) {
                return Err(FilterError::UnknownFilter(kind.to_owned()));
            }
            serde_json::from_value(item.clone()).map_err(|e| FilterError::BadSpec(format!("{kind}: {e}")))
        })
        .collect()
}

/// What a chain reports besides the frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum FilterEvent {
    /// A detection ran: the faces found (possibly none), in the frame's pixels.
    Faces {
        /// The frame's width.
        width: u32,
        /// The frame's height.
        height: u32,
        /// The faces.
        faces: Vec<FaceBox>,
    },
}

/// What a stage needs besides the frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameContext {
    /// Now (detection rates).
    pub now: Instant,
    /// Seconds since the Unix epoch (overlay clocks).
    pub wall_secs: u64,
}

enum Stage {
    Overlay(overlay::Overlay),
    Pixelate(PixelateSpec),
    Faces(faces::Faces),
}

/// Filters built from their specs. Not `Send` (the face detector is not): build it on the
/// thread that runs it.
pub struct Chain {
    stages: Vec<Stage>,
}

impl Chain {
    /// Builds the stages; `font` is needed for overlay text.
    pub fn build(specs: &[FilterSpec], font: Option<Arc<Font>>) -> Result<Self, FilterError> {
        if specs.is_empty() || specs.len() > MAX_FILTERS {
            return Err(FilterError::ChainLength(specs.len()));
        }
        let stages = specs
            .iter()
            .map(|spec| {
                Ok(match spec {
                    FilterSpec::Overlay(s) => Stage::Overlay(overlay::Overlay::new(s, font.clone())?),
                    FilterSpec::Pixelate(s) => Stage::Pixelate(s.validated()?),
                    FilterSpec::Faces(s) => Stage::Faces(faces::Faces::new(s)?),
                })
            })
            .collect::<Result<_, FilterError>>()?;
        Ok(Self { stages })
    }

    /// Runs every stage on `frame`, in order; returns their events.
    pub fn apply(&mut self, frame: &mut I420, ctx: FrameContext) -> Vec<FilterEvent> {
        let mut events = Vec::new();
        for stage in &mut self.stages {
            match stage {
                Stage::Overlay(o) => o.apply(frame, ctx.wall_secs),
                Stage::Pixelate(p) => pixelate::apply(p, frame),
                Stage::Faces(f) => events.extend(f.apply(frame, ctx.now)),
            }
        }
        events
    }
}

#[cfg(test)]
mod tests;
