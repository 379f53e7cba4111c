//! TCP with a read buffer, HTTP/1.1 response heads, and a minimal WebSocket client connection.

use super::*;

// ---------------------------------------------------------------------------------------------
// TCP with a read buffer, and HTTP/1.1 response heads.

/// A TCP connection and its read buffer: `buf[start..end]` was read and not yet consumed.
pub(crate) struct Tcp {
    pub(crate) stream: TcpStream,
    pub(crate) buf: Vec<u8>,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Tcp {
    /// Connects from `source`: every load generator process has its own 127.0.0.X, because
    /// ephemeral ports are per source address.
    pub(crate) async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Tcp> {
        let sock = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = sock.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Tcp { stream, buf: vec![0; READ_BUF], start: 0, end: 0 })
    }

    pub(crate) fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more bytes; `false` at end of stream.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }

    /// Reads and consumes an HTTP response head: its status code and its text. What follows it
    /// stays in the buffer (frames or body already read with it).
    pub(crate) async fn read_head(&mut self) -> io::Result<(u16, String)> {
        loop {
            if let Some(i) = find(self.unread(), b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[self.start..self.start + i]).into_owned();
                self.start += i + 4;
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                return Ok((status, head));
            }
            if self.end - self.start > MAX_HEAD {
                return Err(other("response head too large"));
            }
            if !self.fill().await? {
                return Err(other("closed before a response head"));
            }
        }
    }
}

/// The value of header `name` in a response head.
pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub(crate) fn status_line(head: &str) -> &str {
    head.lines().next().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// A minimal WebSocket client connection.

pub(crate) struct Conn {
    pub(crate) tcp: Tcp,
    /// A fragmented message being reassembled (rare: neither server fragments).
    pub(crate) partial: Option<(u8, Vec<u8>)>,
    pub(crate) enc: Encoder,
}

pub(crate) enum Frame<'a> {
    Text(&'a [u8]),
    Ping(Vec<u8>),
    Close(u16),
    Other,
}

impl Conn {
    pub(crate) async fn connect(o: &Opts, subprotocol: &str) -> io::Result<Conn> {
        let mut tcp = Tcp::connect(o.addr, o.source).await?;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: c3dpdGNoYm9hcmRiZW5jaA==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {subprotocol}\r\n\r\n",
            o.path, o.host
        );
        tcp.stream.write_all(req.as_bytes()).await?;
        // Anything after the response head is already frame data.
        let (status, head) = tcp.read_head().await?;
        if status != 101 {
            return Err(other(format!("upgrade refused: {}", status_line(&head))));
        }
        let enc = Encoder { mask_seed: 0x9e37_79b9 ^ (o.addr.port() as u32) };
        Ok(Conn { tcp, partial: None, enc })
    }

    /// Reads more bytes; `false` at end of stream.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        self.tcp.fill().await
    }

    /// The next complete frame in the buffer, if any.
    pub(crate) fn next_frame(&mut self) -> Option<Frame<'_>> {
        let t = &mut self.tcp;
        loop {
            let b = &t.buf[t.start..t.end];
            if b.len() < 2 {
                return None;
            }
            let (fin, opcode, masked) = (b[0] & 0x80 != 0, b[0] & 0x0f, b[1] & 0x80 != 0);
            let (len, mut head) = match b[1] & 0x7f {
                126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
                126 | 127 => return None,
                n => (n as usize, 2),
            };
            if masked {
                head += 4; // servers do not mask; tolerate it anyway (payload left masked)
            }
            if b.len() < head + len {
                if head + len > t.buf.len() {
                    // Make room for a large frame on the next fill.
                    t.buf.copy_within(t.start..t.end, 0);
                    t.end -= t.start;
                    t.start = 0;
                    t.buf.resize((head + len).next_power_of_two(), 0);
                }
                return None;
            }
            let (p0, p1) = (t.start + head, t.start + head + len);
            t.start = p1;
            match opcode {
                0x1 | 0x2 if fin => {
                    // A binary message is data as well (nats-server sends nothing else).
                    return Some(Frame::Text(&t.buf[p0..p1]));
                }
                0x1 | 0x2 => self.partial = Some((opcode, t.buf[p0..p1].to_vec())),
                0x0 => {
                    if let Some((_, acc)) = &mut self.partial {
                        acc.extend_from_slice(&t.buf[p0..p1]);
                    }
                    if fin && let Some((op, acc)) = self.partial.take() {
                        // Put the whole message back in front of the buffer's unread part.
                        let rest = t.buf[t.start..t.end].to_vec();
                        t.buf.clear();
                        t.buf.extend_from_slice(&acc);
                        t.buf.extend_from_slice(&rest);
                        let total = t.buf.len().max(READ_BUF);
                        t.buf.resize(total, 0);
                        t.start = acc.len();
                        t.end = acc.len() + rest.len();
                        let _ = op;
                        return Some(Frame::Text(&t.buf[..acc.len()]));
                    }
                }
                0x8 => {
                    let code = if len >= 2 { u16::from_be_bytes([t.buf[p0], t.buf[p0 + 1]]) } else { 1005 };
                    return Some(Frame::Close(code));
                }
                0x9 => return Some(Frame::Ping(t.buf[p0..p1].to_vec())),
                _ => return Some(Frame::Other),
            }
        }
    }

    /// Appends a masked client frame to `out`.
    pub(crate) fn encode(&mut self, out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
        self.enc.encode(out, opcode, payload);
    }

    pub(crate) async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        self.encode(&mut out, opcode, payload);
        self.tcp.stream.write_all(&out).await
    }
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned number after the first `key` in `text` (the publisher's `"t":` timestamp).
pub(crate) fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let i = find(text, key)? + key.len();
    let mut v = 0u64;
    let mut any = false;
    for &b in &text[i..] {
        if b.is_ascii_digit() {
            v = v * 10 + (b - b'0') as u64;
            any = true;
        } else if b != b' ' || any {
            break;
        }
    }
    any.then_some(v)
}

/// Client-side framing (masked frames), shared by [`Conn`] and the publisher's split writer.
pub(crate) struct Encoder {
    pub(crate) mask_seed: u32,
}

impl Encoder {
    pub(crate) fn encode(&mut self, out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
        out.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len < 65536 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mut x = self.mask_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        let key = x.to_be_bytes();
        out.extend_from_slice(&key);
        // xorshift: masking keys need not be strong for a benchmark, only present.
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    }
}
