//! SockJS xhr_streaming, carrying our JSON protocol; chunked HTTP/1.1 bodies.

use super::*;

// ---------------------------------------------------------------------------------------------
// SockJS xhr_streaming, carrying our JSON protocol.

/// An incremental decoder of a chunked HTTP/1.1 body (RFC 9112 §7.1): the bytes of chunks that
/// may end anywhere in a read. Trailers are skipped.
#[derive(Default)]
pub(crate) struct Chunked {
    pub(crate) state: ChunkState,
    /// Bytes left in the current chunk.
    pub(crate) left: usize,
}

#[derive(Default, PartialEq, Eq)]
pub(crate) enum ChunkState {
    #[default]
    Size,
    Data,
    DataEnd,
    Trailer,
    Done,
}

impl Chunked {
    /// Appends the body bytes of `input` to `out`; how many bytes of `input` it used (the rest is
    /// an incomplete size line or chunk end, for the next call).
    pub(crate) fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                ChunkState::Size => {
                    let Some(i) = find(rest, b"\r\n") else { return Ok(pos) };
                    let hex = rest[..i].split(|&b| b == b';').next().unwrap_or_default();
                    let size =
                        std::str::from_utf8(hex).ok().and_then(|h| usize::from_str_radix(h.trim(), 16).ok());
                    let Some(size) = size else { return Err(other("bad chunk size")) };
                    pos += i + 2;
                    self.left = size;
                    self.state = if size == 0 { ChunkState::Trailer } else { ChunkState::Data };
                }
                ChunkState::Data => {
                    let n = self.left.min(rest.len());
                    if n == 0 {
                        return Ok(pos);
                    }
                    out.extend_from_slice(&rest[..n]);
                    pos += n;
                    self.left -= n;
                    if self.left == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(pos);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(other("bad chunk end"));
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(i) = find(rest, b"\r\n") else { return Ok(pos) };
                    pos += i + 2;
                    if i == 0 {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(pos),
            }
        }
    }

    pub(crate) fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// A SockJS frame of an `xhr_streaming` body (one a line).
pub(crate) enum SockjsFrame<'a> {
    /// `o`: the session is open.
    Open,
    /// `a[...]`: the array's inside, each message still a JSON string (see [`SockjsMessages`]).
    Messages(&'a [u8]),
    /// `c[code,"reason"]`: the session is closed.
    Close(u16, String),
    /// `h`, and the prelude of 2048 `h` that opens every response.
    Heartbeat,
}

/// An `xhr_streaming` response body: decoded chunks, split into lines.
pub(crate) struct SockjsBody {
    pub(crate) chunked: Option<Chunked>,
    pub(crate) body: Vec<u8>,
    /// Where the next line starts in `body`.
    pub(crate) pos: usize,
}

impl SockjsBody {
    /// A body in chunks, or one that ends when the connection does.
    pub(crate) fn new(chunked: bool) -> Self {
        SockjsBody { chunked: chunked.then(Chunked::default), body: Vec::with_capacity(READ_BUF), pos: 0 }
    }

    /// Takes what `tcp` has read into the body.
    pub(crate) fn take(&mut self, tcp: &mut Tcp) -> io::Result<()> {
        // Drop the lines already handled first.
        self.body.drain(..self.pos);
        self.pos = 0;
        let used = match &mut self.chunked {
            Some(c) => c.decode(tcp.unread(), &mut self.body)?,
            None => {
                self.body.extend_from_slice(tcp.unread());
                tcp.end - tcp.start
            }
        };
        tcp.start += used;
        Ok(())
    }

    /// The response's end was read (the server ends it after `sockjs_response_limit` bytes).
    pub(crate) fn done(&self) -> bool {
        self.chunked.as_ref().is_some_and(Chunked::done)
    }

    /// The next complete line.
    pub(crate) fn next_line(&mut self) -> Option<&[u8]> {
        let rest = &self.body[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n')?;
        self.pos += end + 1;
        Some(&rest[..end])
    }

    /// The next complete line's frame.
    pub(crate) fn next_frame(&mut self) -> Option<SockjsFrame<'_>> {
        let rest = &self.body[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n')?;
        self.pos += end + 1;
        let line = &rest[..end];
        Some(match line.first() {
            Some(b'o') => SockjsFrame::Open,
            Some(b'a') => SockjsFrame::Messages(&line[1..]),
            Some(b'c') => {
                let code = number_after(line, b"c[").unwrap_or(0) as u16;
                SockjsFrame::Close(code, String::from_utf8_lossy(line).into_owned())
            }
            _ => SockjsFrame::Heartbeat,
        })
    }
}

/// The messages of an `a[...]` frame: each JSON string's content, still escaped.
pub(crate) struct SockjsMessages<'a> {
    pub(crate) rest: &'a [u8],
}

impl<'a> Iterator for SockjsMessages<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b == b'"')? + 1;
        let mut i = start;
        while i < self.rest.len() {
            match self.rest[i] {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        let end = i.min(self.rest.len());
        let m = &self.rest[start..end];
        self.rest = &self.rest[(end + 1).min(self.rest.len())..];
        Some(m)
    }
}

/// A session id per subscriber: unique in this process by `i`, across processes and runs by a
/// hash of the pid and the clock (sockjs-client uses 8 random characters).
pub(crate) fn session_id(i: usize) -> String {
    let mut x = unix_micros() ^ ((std::process::id() as u64) << 40);
    // splitmix64
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    format!("{x:016x}{i:x}")
}

/// `xhr_send`: the client's messages (a JSON array of strings), on a short connection of its own
/// as a browser's XHR would use while the stream holds the other one.
pub(crate) async fn xhr_send(o: &Opts, session: &str, body: &str) -> io::Result<()> {
    let mut t = Tcp::connect(o.addr, o.source).await?;
    let req = format!(
        "POST {session}/xhr_send HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        o.host,
        body.len()
    );
    t.stream.write_all(req.as_bytes()).await?;
    let (status, head) = t.read_head().await?;
    if status != 204 {
        return Err(other(format!("xhr_send: {}", status_line(&head))));
    }
    Ok(())
}

/// One SockJS session over `xhr_streaming`: after `o`, subscribes through `xhr_send`; each
/// `{"pub"...}` inside an `a[...]` frame is one delivery. The server ends a response after
/// `sockjs_response_limit` bytes; the next request goes out at once, on the same connection when
/// it stays open (as a browser's would), and continues the session without a new `o`.
pub(crate) async fn sockjs_subscriber(i: usize, o: &Opts, rec: &mut Recorder<'_>) -> io::Result<()> {
    let session = format!("{}/000/{}", o.path.trim_end_matches('/'), session_id(i));
    let request =
        format!("POST {session}/xhr_streaming HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n", o.host);
    let mut kept = None;
    let mut responses = 0u64;
    loop {
        let mut t = match kept.take() {
            Some(t) => t,
            None => Tcp::connect(o.addr, o.source).await?,
        };
        t.stream.write_all(request.as_bytes()).await?;
        let (status, head) = t.read_head().await?;
        if status != 200 {
            return Err(other(format!("xhr_streaming: {}", status_line(&head))));
        }
        responses += 1;
        if responses == 1 {
            rec.stats.connected.fetch_add(1, Relaxed);
        } else {
            rec.stats.reopened.fetch_add(1, Relaxed);
        }
        let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let keep_alive =
            chunked && !header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut body = SockjsBody::new(chunked);
        loop {
            body.take(&mut t)?;
            let now = unix_micros();
            let mut opened = false;
            while let Some(frame) = body.next_frame() {
                match frame {
                    SockjsFrame::Open => opened = true,
                    SockjsFrame::Messages(array) => {
                        for m in (SockjsMessages { rest: array }) {
                            match JSON_IN_SOCKJS.event(m) {
                                JsonEvent::Pub(ts) => rec.delivery(now, ts),
                                JsonEvent::Subscribed => rec.subscribed(),
                                JsonEvent::Refused => rec.error(String::from_utf8_lossy(m).into_owned()),
                                // No pong: a SockJS session's pings are heartbeats that want no
                                // answer (the server sets no pong timeout for it).
                                JsonEvent::Ping => {
                                    rec.stats.pings.fetch_add(1, Relaxed);
                                }
                                JsonEvent::Other => {}
                            }
                        }
                    }
                    SockjsFrame::Close(code, frame) => {
                        rec.flush(now);
                        rec.stats.closed(code);
                        rec.error(format!("sockjs {frame}"));
                        return Ok(());
                    }
                    SockjsFrame::Heartbeat => {}
                }
            }
            rec.flush(now);
            if opened {
                let command = subscribe_command(o).replace('"', "\\\"");
                xhr_send(o, &session, &format!("[\"{command}\"]")).await?;
            }
            if body.done() {
                break;
            }
            if !t.fill().await? {
                if chunked {
                    rec.stats.closed(1006);
                    return Err(other("xhr_streaming: connection closed mid-response"));
                }
                break; // a response without chunks ends with its connection
            }
        }
        if keep_alive {
            kept = Some(t);
        }
    }
}
