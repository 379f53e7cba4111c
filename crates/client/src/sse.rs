//! Server-Sent Events: a sans-IO `text/event-stream` parser ([`SseParser`]) and the mapping of
//! Switchboard's SSE events to [`Event`]s.
//!
//! The parser follows the HTML living standard's "event stream interpretation": lines end with
//! CRLF, LF or CR (also when a chunk ends between CR and LF), a leading BOM is dropped, `:` starts
//! a comment, one space after the field's colon is dropped, `data` lines join with `\n`, and an
//! event is dispatched at a blank line only when it has data.

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};
use switchboard_protocol::Cursor;
use switchboard_protocol::frame::{
    ConnectedBody, DisconnectBody, PresenceEventObject, PublicationObject, SubscribeReply,
};

use crate::event::{Publication, UnsubscribedBody};
use crate::{Error, Event};

/// Longest line, or event, the parser holds before giving up on the stream.
pub(crate) const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event` field; `"message"` when the block had none.
    pub(crate) event: String,
    /// The `data` lines joined with `\n`.
    pub(crate) data: String,
    /// The `id` field, when this block had one.
    pub(crate) id: Option<String>,
}

/// Turns bytes, cut anywhere, into [`SseEvent`]s.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buf: BytesMut,
    /// Bytes of `buf` already searched for a line end.
    scanned: usize,
    /// The last chunk ended with CR: a LF starting the next one belongs to it.
    skip_lf: bool,
    bom_checked: bool,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    ready: VecDeque<SseEvent>,
}

impl SseParser {
    /// Takes the next chunk of the stream.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.buf.extend_from_slice(chunk);
        if !self.bom_checked {
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) {
                return Ok(());
            }
            if self.buf.starts_with(BOM) {
                self.buf.advance(BOM.len());
            }
            self.bom_checked = true;
        }
        if self.skip_lf && !self.buf.is_empty() {
            if self.buf[0] == b'\n' {
                self.buf.advance(1);
            }
            self.skip_lf = false;
        }
        while let Some(i) = self.buf[self.scanned..].iter().position(|b| *b == b'\n' || *b == b'\r') {
            let line = self.buf.split_to(self.scanned + i);
            let cr = self.buf[0] == b'\r';
            self.buf.advance(1);
            if cr {
                match self.buf.first() {
                    Some(b'\n') => self.buf.advance(1),
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            self.scanned = 0;
            self.line(&line)?;
        }
        self.scanned = self.buf.len();
        if self.buf.len() + self.data.len() > MAX_EVENT_BYTES {
            return Err(Error::Protocol("SSE event too long".into()));
        }
        Ok(())
    }

    /// The next complete event, if one is ready.
    pub(crate) fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    fn line(&mut self, line: &[u8]) -> Result<(), Error> {
        if line.is_empty() {
            self.dispatch();
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"event" => self.event = value.into_owned(),
            b"data" => {
                if self.data.len() + value.len() > MAX_EVENT_BYTES {
                    return Err(Error::Protocol("SSE event too long".into()));
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"id" if !value.contains('\0') => self.id = Some(value.into_owned()),
            // `retry` only tunes a reconnecting browser; unknown fields are ignored.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        let id = self.id.take();
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        self.ready.push_back(SseEvent {
            event: if event.is_empty() { "message".to_owned() } else { event },
            data: std::mem::take(&mut self.data),
            id,
        });
    }
}

/// Maps one Switchboard SSE event: the [`Event`] it carries (none for kinds this client does not
/// know) and the cursor in its `id`.
pub(crate) fn to_event(ev: &SseEvent) -> Result<(Option<Event>, Option<Cursor>), Error> {
    fn json<'a, T: serde::Deserialize<'a>>(ev: &'a SseEvent) -> Result<T, Error> {
        serde_json::from_str(&ev.data)
            .map_err(|e| Error::Protocol(format!("bad SSE {} event: {e}", ev.event)))
    }
    let cursor = match ev.id.as_deref() {
        Some(id) if !id.is_empty() => {
            Some(Cursor::decode(id).map_err(|e| Error::Protocol(format!("bad SSE id: {e}")))?)
        }
        _ => None,
    };
    let event = match ev.event.as_str() {
        "message" => {
            Some(Event::Publication(Publication::from_object(json::<PublicationObject>(ev)?, None)?))
        }
        "connected" => Some(Event::Connected { client: json::<ConnectedBody>(ev)?.client }),
        "subscribed" => Some(Event::Subscribed(json::<SubscribeReply>(ev)?)),
        "join" => Some(Event::Join(json::<PresenceEventObject>(ev)?)),
        "leave" => Some(Event::Leave(json::<PresenceEventObject>(ev)?)),
        "unsubscribed" => Some(json::<UnsubscribedBody>(ev)?.into()),
        "disconnect" => Some(json::<DisconnectBody>(ev)?.into()),
        _ => None,
    };
    Ok((event, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c).unwrap();
            out.extend(std::iter::from_fn(|| p.next_event()));
        }
        out
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent { event: event.into(), data: data.into(), id: id.map(Into::into) }
    }

    const STREAM: &[u8] = b"\xEF\xBB\xBFretry: 2000\r\n\r\nevent: connected\r\ndata: {\"client\":\"x\"}\r\n\r\n: ping\n\nid: abc\ndata:line1\ndata: line2\ndata\n\nevent:join\rdata: j\r\r";

    fn expected() -> Vec<SseEvent> {
        vec![
            ev("connected", "{\"client\":\"x\"}", None),
            ev("message", "line1\nline2\n", Some("abc")),
            ev("join", "j", None),
        ]
    }

    #[test]
    fn parses_fields_comments_and_line_ends() {
        assert_eq!(parse_chunks(&[STREAM]), expected());
    }

    #[test]
    fn chunks_may_be_split_anywhere() {
        for cut in 0..=STREAM.len() {
            assert_eq!(parse_chunks(&[&STREAM[..cut], &STREAM[cut..]]), expected(), "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(parse_chunks(&bytes), expected());
    }

    #[test]
    fn skips_events_without_data_and_keeps_unfinished_ones() {
        let evs = parse_chunks(&[b"event: x\nid: 1\n\ndata:  two spaces\nunknown: f\n\ndata: tail"]);
        assert_eq!(evs, vec![ev("message", " two spaces", None)]);
        assert_eq!(parse_chunks(&[b"data\n\n"]), vec![ev("message", "", None)]);
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        assert_eq!(
            parse_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]),
            vec![ev("message", "a\nb", None)]
        );
    }

    #[test]
    fn refuses_endless_lines() {
        let mut p = SseParser::default();
        let big = vec![b'a'; MAX_EVENT_BYTES + 1];
        assert!(matches!(p.feed(&big), Err(Error::Protocol(_))));
    }

    #[test]
    fn maps_switchboard_events() {
        let mut c = Cursor::new();
        c.set("news", switchboard_protocol::Position { epoch: "E".into(), offset: 121 });
        let id = c.encode();
        let pubev = ev("message", r#"{"channel":"news","offset":121,"epoch":"E","data":{"t":1}}"#, Some(&id));
        let (event, cursor) = to_event(&pubev).unwrap();
        assert!(matches!(event, Some(Event::Publication(p)) if p.offset == 121));
        assert_eq!(cursor, Some(c));
        let sub = ev(
            "subscribed",
            r#"{"channel":"news","epoch":"E","offset":120,"recovered":true,"replayed":0}"#,
            None,
        );
        assert!(matches!(to_event(&sub).unwrap(), (Some(Event::Subscribed(s)), None) if s.offset == 120));
        let disc = ev("disconnect", r#"{"code":3002,"reason":"slow consumer"}"#, None);
        assert!(matches!(to_event(&disc).unwrap().0, Some(Event::Disconnected { code: 3002, .. })));
        assert!(to_event(&ev("future", "{}", None)).unwrap().0.is_none());
        assert!(matches!(to_event(&ev("message", "{", None)), Err(Error::Protocol(_))));
        assert!(matches!(to_event(&ev("join", "{}", Some("!"))), Err(Error::Protocol(_))));
    }
}
