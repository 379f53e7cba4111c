//! Media beyond forwarding: what looks inside a room's media off the engine task.
//!
//! - [`tap`]: the seam. A subscriber gets a room's tracks and depacketized frames through a
//!   bounded channel and may ask for keyframes; the engine never waits for it.
//! - [`record`]: room recording without transcoding, and its API.
//! - [`ogg`]: Ogg/Opus files (recordings, the room mix).
//! - [`mix`]: the audio MCU: decodes a room's Opus tracks, mixes the loudest few speakers with a
//!   limiter, and encodes one shared mix plus one mix-minus per current speaker.
//! - [`video`]: decoded video: VP8, the compositor (video MCU), filters (overlay, pixelate,
//!   faces), compositions and pipelines and their API.
//!
//! Consumers (recording, mixing, compositions) run on their own tasks and do their blocking
//! work (files, codecs) on `spawn_blocking` or threads of their own.

pub mod mix;
pub mod ogg;
pub mod record;
pub mod tap;
pub mod video;
