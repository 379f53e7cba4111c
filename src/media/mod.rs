//! Media beyond forwarding: what looks inside a room's media off the engine task.
//!
//! - [`video`]: decoded video: VP8 codec, compositor (video MCU), filters (overlay, pixelate,
//!   faces), all sans-IO.

pub mod video;
