//! The frame model: [`Version`], [`Command`] and [`Frame`].

use bytes::Bytes;

/// A STOMP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// STOMP 1.0: no header escaping.
    V1_0,
    /// STOMP 1.1: escapes `\n`, `\c`, `\\`.
    V1_1,
    /// STOMP 1.2: escapes `\r`, `\n`, `\c`, `\\`.
    V1_2,
}

impl Version {
    /// Every version we speak, highest first.
    pub const ALL: [Version; 3] = [Version::V1_2, Version::V1_1, Version::V1_0];

    /// The value used in `accept-version` and `version` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// The version named in an `accept-version` list entry.
    pub fn from_name(name: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == name)
    }

    /// The WebSocket subprotocol that selects this version (`v12.stomp`, ...).
    pub fn subprotocol(self) -> &'static str {
        match self {
            Version::V1_0 => "v10.stomp",
            Version::V1_1 => "v11.stomp",
            Version::V1_2 => "v12.stomp",
        }
    }

    /// The version a WebSocket subprotocol selects.
    pub fn from_subprotocol(name: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.subprotocol() == name)
    }
}

/// Every command of STOMP 1.2, client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Client: open a session.
    Connect,
    /// Client: open a session (the 1.1+ synonym of CONNECT).
    Stomp,
    /// Client: publish to a destination.
    Send,
    /// Client: subscribe to a destination.
    Subscribe,
    /// Client: end a subscription.
    Unsubscribe,
    /// Client: acknowledge a message.
    Ack,
    /// Client: refuse a message.
    Nack,
    /// Client: start a transaction.
    Begin,
    /// Client: commit a transaction.
    Commit,
    /// Client: roll back a transaction.
    Abort,
    /// Client: close the session.
    Disconnect,
    /// Server: the session is open.
    Connected,
    /// Server: a message for a subscription.
    Message,
    /// Server: a frame carrying `receipt` was processed.
    Receipt,
    /// Server: something went wrong; the connection closes after it.
    Error,
}

impl Command {
    /// Every command, for tests and tables.
    pub const ALL: [Command; 15] = [
        Command::Connect,
        Command::Stomp,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];

    /// The longest command name (`UNSUBSCRIBE`), in bytes.
    pub(crate) const MAX_LEN: usize = 11;

    /// The command's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// The command with this exact (case-sensitive) name.
    pub fn from_bytes(name: &[u8]) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.as_str().as_bytes() == name)
    }

    /// Whether a client sends this command (the others are the server's).
    pub fn is_client(self) -> bool {
        !matches!(self, Command::Connected | Command::Message | Command::Receipt | Command::Error)
    }

    /// Whether frames of this command may carry a body: only SEND, MESSAGE and ERROR may.
    pub fn allows_body(self) -> bool {
        matches!(self, Command::Send | Command::Message | Command::Error)
    }

    /// Whether header escaping applies. CONNECT and CONNECTED are never escaped, so that 1.0
    /// peers can read them before a version is agreed (STOMP 1.2, "Value Encoding").
    pub fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Connected)
    }
}

/// One STOMP frame.
///
/// Headers keep their order and repeats; [`Frame::get`] returns the first, which is the one
/// that counts (STOMP 1.2, "Repeated Header Entries"). `content-length` is framing, not data:
/// the decoder uses and removes it, the encoder writes it from `body.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command.
    pub command: Command,
    /// Decoded (unescaped) headers, in wire order.
    pub headers: Vec<(String, String)>,
    /// The body; may contain NUL octets.
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: Command) -> Frame {
        Frame { command, headers: Vec::new(), body: Bytes::new() }
    }

    /// Appends a header (builder style).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Frame {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body (builder style).
    pub fn body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// The value of the first header with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}
