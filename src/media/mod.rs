//! Everything that looks inside media, off the SFU's forwarding path (see `DESIGN.md`, "Media").
//!
//! - [`mix`]: the audio MCU: decodes a room's Opus tracks, mixes the loudest few speakers with a
//!   limiter, and encodes one shared mix plus one mix-minus per current speaker.

pub mod mix;
