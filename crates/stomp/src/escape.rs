//! Header escaping per version (STOMP 1.2 "Value Encoding", 1.1 "Value Encoding").
//!
//! 1.2 escapes `\r`, `\n`, `:` and `\` as `\r`, `\n`, `\c`, `\\`; 1.1 the same without `\r`;
//! 1.0 and the CONNECT/CONNECTED frames of every version escape nothing. Names and values are
//! escaped alike.

use bytes::{BufMut, BytesMut};

use crate::frame::{Command, Version};

/// The escaping that applies to a frame: `None` when its headers are written raw.
pub(crate) fn escaping(command: Command, version: Version) -> Option<Version> {
    (command.escapes_headers() && version != Version::V1_0).then_some(version)
}

/// Decodes one escaped name or value (already known to be UTF-8). `None` on an undefined
/// escape or a trailing backslash. `\r` is taken in 1.1 too: @stomp/stompjs escapes it for
/// every version after 1.0, and reading it as CR is the only thing it can mean.
pub(crate) fn unescape(raw: &str, escaping: Option<Version>) -> Option<String> {
    if escaping.is_none() {
        return Some(raw.to_owned());
    }
    if !raw.contains('\\') {
        return Some(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'c' => out.push(':'),
            '\\' => out.push('\\'),
            'r' => out.push('\r'),
            _ => return None,
        }
    }
    Some(out)
}

/// Appends `text` escaped for a header name (`is_name`) or value. `false` if it holds an
/// octet that cannot be carried: NUL always; LF, and CR before 1.2, when escaping does not
/// cover them; `:` in a raw name.
pub(crate) fn escape_into(text: &str, is_name: bool, escaping: Option<Version>, out: &mut BytesMut) -> bool {
    let needs_work = text.bytes().any(|b| matches!(b, b'\0' | b'\r' | b'\n' | b':' | b'\\'));
    if !needs_work {
        out.extend_from_slice(text.as_bytes());
        return true;
    }
    for b in text.bytes() {
        match (b, escaping) {
            (b'\0', _) => return false,
            (b'\r' | b'\n', None) => return false,
            (b':', None) if is_name => return false,
            (b'\r', Some(Version::V1_2)) => out.extend_from_slice(b"\\r"),
            (b'\r', Some(_)) => return false,
            (b'\n', Some(_)) => out.extend_from_slice(b"\\n"),
            (b':', Some(_)) => out.extend_from_slice(b"\\c"),
            (b'\\', Some(_)) => out.extend_from_slice(b"\\\\"),
            _ => out.put_u8(b),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_per_version() {
        assert_eq!(unescape("a\\cb\\nc\\\\d", Some(Version::V1_2)).as_deref(), Some("a:b\nc\\d"));
        assert_eq!(unescape("a\\rb", Some(Version::V1_1)).as_deref(), Some("a\rb"), "as stompjs sends it");
        assert_eq!(unescape("a\\tb", Some(Version::V1_2)), None, "undefined escape");
        assert_eq!(unescape("a\\", Some(Version::V1_2)), None, "trailing backslash");
        assert_eq!(unescape("a\\cb", None).as_deref(), Some("a\\cb"), "1.0 escapes nothing");
    }
}
