//! SockJS framing, sans-IO: the frames a SockJS server sends (`o`, `h`, `a[...]`, `c[...]`) and
//! the messages it receives (a JSON array of strings, or one string).
//!
//! Messages travel as JSON strings with more escaped than a JSON encoder escapes by default:
//! the characters some browsers mangle on XHR and EventSource (control characters, the
//! zero-width and bidirectional marks, the line and paragraph separators, the specials block)
//! go as `\uXXXX`, as the SockJS protocol asks.

use std::fmt::Write as _;

/// The open frame.
pub const OPEN: &[u8] = b"o";
/// The heartbeat frame.
pub const HEARTBEAT: &[u8] = b"h";

/// Whether SockJS asks for `c` to be sent as `\uXXXX`.
fn escaped(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{200c}'..='\u{200f}' | '\u{2028}'..='\u{202f}'
        | '\u{2060}'..='\u{206f}' | '\u{fff0}'..='\u{ffff}')
}

/// Appends `text` as a JSON string (quotes included) with SockJS's escaping.
pub fn push_json_string(out: &mut Vec<u8>, text: &str) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, c) in text.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if escaped(c) => None,
            _ => continue,
        };
        out.extend_from_slice(&text.as_bytes()[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e.as_bytes()),
            None => {
                let mut s = String::with_capacity(6);
                let _ = write!(s, "\\u{:04x}", c as u32);
                out.extend_from_slice(s.as_bytes());
            }
        }
        start = i + c.len_utf8();
    }
    out.extend_from_slice(&text.as_bytes()[start..]);
    out.push(b'"');
}

/// `text` as a JSON string with SockJS's escaping.
pub fn json_string(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    push_json_string(&mut out, text);
    out
}

/// An `a[...]` frame of messages already encoded by [`json_string`].
pub fn array<'a>(messages: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = b"a[".to_vec();
    for (i, m) in messages.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(m);
    }
    out.push(b']');
    out
}

/// A `c[code,"reason"]` frame.
pub fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut out = format!("c[{code},").into_bytes();
    push_json_string(&mut out, reason);
    out.push(b']');
    out
}

/// Why a client's payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    /// The body was empty.
    Empty,
    /// The body was not a JSON string or array of strings.
    BrokenJson,
}

impl PayloadError {
    /// The text the SockJS protocol gives for it.
    pub fn message(self) -> &'static str {
        match self {
            PayloadError::Empty => "Payload expected.",
            PayloadError::BrokenJson => "Broken JSON encoding.",
        }
    }
}

/// The messages of a client's payload: a JSON array of strings (`xhr_send`, `jsonp_send`,
/// WebSocket frames), or one JSON string (WebSocket frames).
pub fn parse_messages(body: &[u8]) -> Result<Vec<String>, PayloadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::String(s)) => Ok(vec![s]),
        Ok(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(PayloadError::BrokenJson),
            })
            .collect(),
        _ => Err(PayloadError::BrokenJson),
    }
}

/// Whether `callback` is a name a JSONP or htmlfile response may call: `[a-zA-Z0-9-_.]+`.
pub fn valid_callback(callback: &str) -> bool {
    !callback.is_empty() && callback.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_browsers_mangle() {
        let s =
            String::from_utf8(json_string("a\"\\\n\u{0}\u{200c}\u{2028}\u{2060}\u{fff0}\u{ffff}é✓")).unwrap();
        assert_eq!(s, r#""a\"\\\n\u0000\u200c\u2028\u2060\ufff0\uffffé✓""#);
        // What serde_json would print differs: it leaves U+2028 and U+FFFF as they are.
        let back: String = serde_json::from_str(&s).unwrap();
        assert_eq!(back, "a\"\\\n\u{0}\u{200c}\u{2028}\u{2060}\u{fff0}\u{ffff}é✓");
    }

    #[test]
    fn frames() {
        let a = json_string("x");
        let b = json_string("y\"");
        assert_eq!(array([a.as_slice(), b.as_slice()]), br#"a["x","y\""]"#);
        assert_eq!(array([]), b"a[]");
        assert_eq!(close(3000, "Go away!"), br#"c[3000,"Go away!"]"#);
    }

    #[test]
    fn parses_payloads() {
        assert_eq!(parse_messages(br#"["a","b"]"#), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(parse_messages(br#""a""#), Ok(vec!["a".into()]));
        assert_eq!(parse_messages(b"[]"), Ok(vec![]));
        assert_eq!(parse_messages(b""), Err(PayloadError::Empty));
        assert_eq!(parse_messages(b"[\"x"), Err(PayloadError::BrokenJson));
        assert_eq!(parse_messages(b"[1]"), Err(PayloadError::BrokenJson));
        assert_eq!(parse_messages(b"{}"), Err(PayloadError::BrokenJson));
    }

    #[test]
    fn checks_callbacks() {
        assert!(valid_callback("callback"));
        assert!(valid_callback("a.b_c-1"));
        for bad in ["", " ", "*", "abc(", "a;b"] {
            assert!(!valid_callback(bad), "{bad:?}");
        }
    }
}
