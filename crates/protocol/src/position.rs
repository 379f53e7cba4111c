//! Stream positions and the cursor that carries one per channel.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Largest cursor accepted, in bytes of its text form.
pub const MAX_CURSOR_LEN: usize = 8 * 1024;

/// "I have seen everything of stream `epoch` up to and including `offset`."
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The stream's epoch: it changes whenever the stream's history is lost.
    pub epoch: String,
    /// The offset of the last publication seen; 0 before the first one.
    pub offset: u64,
}

impl Position {
    /// Parses the `EPOCH:OFFSET` form used in query strings.
    pub fn parse_compact(s: &str) -> Option<Self> {
        let (epoch, offset) = s.rsplit_once(':')?;
        Some(Self { epoch: epoch.to_owned(), offset: offset.parse().ok()? })
    }
}

/// Every channel's position for a one-way transport, carried by the client between requests.
///
/// Its text form is the URL-safe base64 (no padding) of a JSON object mapping each channel to
/// `[epoch, offset]`, so clients may build one themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Sorted by channel, without repeats. A vector rather than a `BTreeMap`, whose first node
    /// holds room for 11 entries (626 bytes): every SSE connection keeps one.
    positions: Vec<(String, Position)>,
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CursorError {
    /// Longer than [`MAX_CURSOR_LEN`].
    #[error("cursor is longer than {MAX_CURSOR_LEN} bytes")]
    TooLong,
    /// Not URL-safe base64.
    #[error("cursor is not URL-safe base64")]
    NotBase64,
    /// Not the JSON object of `[epoch, offset]` pairs.
    #[error("cursor does not hold {{channel: [epoch, offset]}}")]
    BadShape,
}

impl Cursor {
    /// An empty cursor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes the text form.
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        if text.len() > MAX_CURSOR_LEN {
            return Err(CursorError::TooLong);
        }
        let json = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|_| CursorError::NotBase64)?;
        let raw: BTreeMap<String, (String, u64)> =
            serde_json::from_slice(&json).map_err(|_| CursorError::BadShape)?;
        Ok(Self {
            positions: raw
                .into_iter()
                .map(|(channel, (epoch, offset))| (channel, Position { epoch, offset }))
                .collect(),
        })
    }

    /// Encodes the text form. Written straight from the sorted positions: an SSE stream encodes
    /// its cursor into every event's `id:`.
    pub fn encode(&self) -> String {
        let mut json = Vec::with_capacity(2 + 40 * self.positions.len());
        json.push(b'{');
        for (i, (channel, p)) in self.positions.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            write_entry(&mut json, channel, &p.epoch, p.offset);
        }
        json.push(b'}');
        URL_SAFE_NO_PAD.encode(json)
    }

    /// The text form of a cursor holding only `channel` at `(epoch, offset)`, without building
    /// one: what a one-channel SSE stream sends after a publication, the same for every
    /// subscriber.
    pub fn encode_one(channel: &str, epoch: &str, offset: u64) -> String {
        let mut json = Vec::with_capacity(40);
        json.push(b'{');
        write_entry(&mut json, channel, epoch, offset);
        json.push(b'}');
        URL_SAFE_NO_PAD.encode(json)
    }

    /// How many channels it holds.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    fn find(&self, channel: &str) -> Result<usize, usize> {
        self.positions.binary_search_by(|(c, _)| c.as_str().cmp(channel))
    }

    /// The position of `channel`, if the cursor holds one.
    pub fn get(&self, channel: &str) -> Option<&Position> {
        self.find(channel).ok().map(|i| &self.positions[i].1)
    }

    /// Sets the position of `channel`.
    pub fn set(&mut self, channel: &str, position: Position) {
        match self.find(channel) {
            Ok(i) => self.positions[i].1 = position,
            Err(i) => self.positions.insert(i, (channel.to_owned(), position)),
        }
    }

    /// Moves `channel` to `(epoch, offset)`, updating in place when it is already held.
    pub fn advance(&mut self, channel: &str, epoch: &str, offset: u64) {
        match self.find(channel).ok().map(|i| &mut self.positions[i].1) {
            Some(p) => {
                if p.epoch != epoch {
                    epoch.clone_into(&mut p.epoch);
                }
                p.offset = offset;
            }
            None => self.set(channel, Position { epoch: epoch.to_owned(), offset }),
        }
    }

    /// Removes `channel`.
    pub fn remove(&mut self, channel: &str) {
        if let Ok(i) = self.find(channel) {
            self.positions.remove(i);
        }
    }

    /// Every `(channel, position)`, ordered by channel.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Position)> {
        self.positions.iter().map(|(c, p)| (c.as_str(), p))
    }

    /// Whether the cursor holds no channel.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

/// `"channel":["epoch",offset]`, as serde_json writes a map entry.
fn write_entry(json: &mut Vec<u8>, channel: &str, epoch: &str, offset: u64) {
    // Writing strings into a vector cannot fail.
    let _ = serde_json::to_writer(&mut *json, channel);
    json.extend_from_slice(b":[");
    let _ = serde_json::to_writer(&mut *json, epoch);
    json.push(b',');
    json.extend_from_slice(offset.to_string().as_bytes());
    json.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `encode` wrote before it wrote by hand: serde_json's map of the positions.
    fn encode_with_serde(c: &Cursor) -> String {
        let raw: BTreeMap<&str, (&str, u64)> =
            c.iter().map(|(ch, p)| (ch, (p.epoch.as_str(), p.offset))).collect();
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&raw).unwrap())
    }

    #[test]
    fn encodes_as_serde_json_would() {
        let mut c = Cursor::new();
        assert_eq!(c.encode(), encode_with_serde(&c));
        c.set("chat:lobby", Position { epoch: "k3Jd".into(), offset: 7 });
        assert_eq!(c.encode(), encode_with_serde(&c));
        assert_eq!(Cursor::encode_one("chat:lobby", "k3Jd", 7), c.encode());
        c.set("a\"quote\\", Position { epoch: "é\u{1}".into(), offset: 0 });
        c.set("news", Position { epoch: "Pq81".into(), offset: u64::MAX });
        assert_eq!(c.encode(), encode_with_serde(&c));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn round_trips_and_is_url_safe() {
        let mut c = Cursor::new();
        c.set("chat:lobby", Position { epoch: "k3Jd".into(), offset: 7 });
        c.set("news", Position { epoch: "Pq81".into(), offset: u64::MAX });
        let text = c.encode();
        assert!(text.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'));
        assert_eq!(Cursor::decode(&text).unwrap(), c);
        assert_eq!(Cursor::decode(&text).unwrap().get("news").unwrap().offset, u64::MAX);
    }

    #[test]
    fn accepts_a_cursor_built_by_hand_with_padding() {
        let text = base64::engine::general_purpose::URL_SAFE.encode(br#"{"a":["e",3]}"#);
        assert_eq!(Cursor::decode(&text).unwrap().get("a").unwrap().offset, 3);
    }

    #[test]
    fn refuses_bad_cursors() {
        assert_eq!(Cursor::decode("!!!"), Err(CursorError::NotBase64));
        let not_json = URL_SAFE_NO_PAD.encode(b"hello");
        assert_eq!(Cursor::decode(&not_json), Err(CursorError::BadShape));
        let wrong = URL_SAFE_NO_PAD.encode(br#"{"a":["e",-1]}"#);
        assert_eq!(Cursor::decode(&wrong), Err(CursorError::BadShape));
        assert_eq!(Cursor::decode(&"A".repeat(MAX_CURSOR_LEN + 1)), Err(CursorError::TooLong));
        assert!(Cursor::decode("").is_err());
    }

    #[test]
    fn parses_compact_positions() {
        assert_eq!(Position::parse_compact("ab:c:12"), Some(Position { epoch: "ab:c".into(), offset: 12 }));
        assert_eq!(Position::parse_compact("abc"), None);
        assert_eq!(Position::parse_compact("a:x"), None);
    }
}
