//! HTTP streaming (`application/x-ndjson`): a sans-IO splitter of lines cut anywhere across
//! chunks. Each line is one push object, decoded by [`crate::event::decode_push`].

use bytes::{Buf, Bytes, BytesMut};

use crate::Error;

/// Longest line the splitter holds before giving up on the stream.
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Turns chunks into complete, non-empty lines (without `\n` or a trailing `\r`).
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    buf: BytesMut,
    /// Bytes of `buf` already searched for `\n`.
    scanned: usize,
}

impl LineSplitter {
    /// Takes the next chunk.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > MAX_LINE_BYTES && !self.buf[self.scanned..].contains(&b'\n') {
            return Err(Error::Protocol("NDJSON line too long".into()));
        }
        Ok(())
    }

    /// The next complete line, if there is one.
    pub(crate) fn next_line(&mut self) -> Option<Bytes> {
        loop {
            let Some(i) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') else {
                self.scanned = self.buf.len();
                return None;
            };
            let mut line = self.buf.split_to(self.scanned + i);
            self.buf.advance(1);
            self.scanned = 0;
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(line.freeze());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<Bytes> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c).unwrap();
            out.extend(std::iter::from_fn(|| s.next_line()));
        }
        out
    }

    #[test]
    fn splits_lines_cut_anywhere() {
        let text: &[u8] = b"{\"a\":1}\n\n{\"b\":\"x\\ny\"}\r\n  \n{\"c\":3}\n{\"unfinished\"";
        let want = vec![
            Bytes::from_static(b"{\"a\":1}"),
            Bytes::from_static(b"{\"b\":\"x\\ny\"}"),
            Bytes::from_static(b"{\"c\":3}"),
        ];
        for cut in 0..=text.len() {
            assert_eq!(lines(&[&text[..cut], &text[cut..]]), want, "cut at {cut}");
        }
        assert_eq!(lines(&text.chunks(1).collect::<Vec<_>>()), want);
    }

    #[test]
    fn refuses_endless_lines() {
        let mut s = LineSplitter::default();
        assert!(s.feed(&vec![b'x'; MAX_LINE_BYTES + 1]).is_err());
    }
}
