//! The audio MCU. [`Mixer`] is the sans-IO core (packets and time in, Opus packets out); the
//! parts it is made of, each unit-tested:
//!
//! - [`jitter`]: per input, reorder into 20 ms slots with a bounded target delay.
//! - [`codec`]: Opus decode (with PLC and FEC) and encode, over the system's libopus.
//! - [`select`]: the loudest few speakers, by RFC 6464 level or decoded energy.
//! - [`limiter`]: no clipping, per output stream.
//! - [`mixer`]: one shared mix and one mix-minus per speaking listener, each encoded once a tick.

pub mod codec;
pub mod jitter;
pub mod limiter;
pub mod mixer;
pub mod run;
pub mod select;
#[cfg(test)]
mod tests;

pub use mixer::{MixConfig, Mixer, Tick};

/// Samples per 20 ms frame at 48 kHz: the mixer's tick and the RTP time step of its output.
pub const FRAME: u32 = 960;
/// The mixer's tick.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(20);
