//! Switchboard's wire formats, shared by the server and the Rust client. Sans-IO: no sockets, no
//! clocks, only types and codecs.
//!
//! Layout:
//! - [`channel`]: channel names and namespaces.
//! - [`position`]: stream positions `(epoch, offset)` and the cursor that carries many of them.
//! - [`codes`]: command error codes and disconnect codes, the numbers clients act on.
//! - [`frame`]: the WebSocket JSON protocol: client commands, replies and server pushes.
//! - [`encode`]: what the server sends, encoded once for every transport.
//! - [`ws_frame`]: WebSocket frames as the server sends them, framed once per publication.
//!
//! The contract these types implement is written down in `docs/protocol.md`.

pub mod channel;
pub mod codes;
pub mod encode;
pub mod frame;
pub mod position;
pub mod sockjs;
pub mod ws_frame;

pub use channel::{ChannelName, InvalidChannel};
pub use codes::{Disconnect, ErrorCode};
pub use position::{Cursor, CursorError, Position};

/// The WebSocket subprotocol name of the JSON protocol.
pub const WS_SUBPROTOCOL: &str = "switchboard.v1.json";
