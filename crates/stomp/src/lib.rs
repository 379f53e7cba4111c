//! A sans-IO STOMP 1.0, 1.1 and 1.2 codec for the server's STOMP endpoints: bytes in, frames
//! out, and back. No sockets, no clocks.
//!
//! # Layout
//!
//! - [`frame`]: [`Version`], [`Command`] (every client and server command of STOMP 1.2) and
//!   [`Frame`] (ordered, repeatable headers; the first of a name wins).
//! - [`decode`](mod@decode): check, then parse. [`decode()`] returns a heart-beat, a frame, "need more
//!   bytes" or a [`DecodeError`]; [`Limits`] bound frame, header and body sizes before
//!   anything unbounded is buffered; a [`Decoder`] does the same for one connection and
//!   resumes an incomplete frame's check where it stopped.
//! - [`encode`](mod@encode): [`encode()`] writes any frame; [`MessageTemplate`] encodes a publication's
//!   MESSAGE once and writes it per subscriber, changing only `subscription`, `message-id`
//!   and `ack`.
//! - `escape`: header escaping per version (none for 1.0 and for CONNECT/CONNECTED).
//! - [`negotiate`]: `accept-version` and `heart-beat` agreement, as pure functions.
//! - `error`: [`DecodeError`], [`EncodeError`], [`NegotiateError`], each with a `message()`
//!   for an ERROR frame.
//!
//! # Out of scope
//!
//! Everything with state lives in the server's STOMP session, not here: CONNECT handling and
//! authentication, subscriptions and destinations, receipts, transactions
//! (BEGIN/COMMIT/ABORT), acknowledgements (ACK/NACK and ack modes), heart-beat timers, and
//! which commands a client may send. Transport framing (WebSocket messages, SockJS) is the
//! transport's.
//!
//! ```
//! use bytes::BytesMut;
//! use switchboard_stomp::{Decoded, Limits, Version, decode};
//!
//! let mut buf = BytesMut::from(&b"CONNECT\naccept-version:1.2,1.1,1.0\nheart-beat:10000,10000\n\n\0"[..]);
//! let Some(Decoded::Frame(frame)) = decode(&mut buf, Version::V1_2, &Limits::default())? else {
//!     panic!("a complete frame")
//! };
//! assert_eq!(frame.get("heart-beat"), Some("10000,10000"));
//! # Ok::<(), switchboard_stomp::DecodeError>(())
//! ```

#![warn(missing_docs)]

pub mod decode;
pub mod encode;
mod error;
mod escape;
pub mod frame;
pub mod negotiate;

#[cfg(test)]
mod tests;

pub use decode::{Decoded, Decoder, Limits, decode};
pub use encode::{HEARTBEAT, MessageTemplate, encode, encode_to_bytes};
pub use error::{DecodeError, EncodeError, NegotiateError};
pub use frame::{Command, Frame, Version};
pub use negotiate::{HeartBeat, HeartBeatTiming, negotiate_heartbeat, negotiate_version};
