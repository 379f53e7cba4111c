//! Decoded video, sans-IO: what a composition (video MCU) and a filter pipeline are made of.
//!
//! - [`I420`], [`Encoder`], [`Decoder`]: frames and VP8, from the crate `switchboard-vpx` (the
//!   workspace's one crate with unsafe code, over the system libvpx).
//! - [`geom`]: rectangles on a frame, aligned to the chroma grid.
//! - [`draw`]: fills, outlines, shading and blending on I420 planes.
//! - [`scale`]: bilinear scaling of a frame into a tile (cover or contain), grey downscaling.
//! - [`layout`]: where each participant's tile goes: a grid that adapts to N, or the active
//!   speaker large with the others in a strip.
//! - [`text`]: labels, rasterized from a system font (DejaVu, from `fonts-dejavu-core`).
//! - [`compose`]: the compositor: tiles, labels, stalled participants, the active speaker.
//! - [`decode`]: one incoming track's decoder: waits for keyframes after gaps, asks for them.
//! - [`feed`]: a room's media tap to a composition's or pipeline's inputs.
//! - [`composition`]: decoders + compositor + output filters + encoder: the room's video in, one
//!   VP8 track out at a fixed size and rate.
//! - [`pipeline`]: one track through a filter chain, frame for frame, capped in size.
//! - [`driver`]: the task between a unit's tap, worker and served track; when a unit ends by
//!   itself (its room empty, its source gone).
//! - [`run`]: the thread a composition or pipeline runs on, behind a bounded queue.
//! - [`service`]: compositions and pipelines of this node (caps, taps, served tracks, events).
//! - [`http`]: their API under `/api/rooms/{room}/`.
//! - [`filter`]: chains of filters on one frame (overlay, pixelate, faces) with their specs.
//!
//! Nothing here touches a socket, a clock or a thread: time is passed in, and the drivers that
//! run them off the engine task live beside the engine.

pub mod compose;
pub mod composition;
pub mod decode;
pub mod draw;
pub mod driver;
pub mod feed;
pub mod filter;
pub mod geom;
pub mod http;
pub mod layout;
pub mod pipeline;
pub mod run;
pub mod scale;
pub mod service;
pub mod text;

pub use switchboard_vpx::frame::{rgb_to_yuv, yuv_to_rgb};
pub use switchboard_vpx::{Decoder, Encoded, Encoder, EncoderConfig, I420, VpxError};
