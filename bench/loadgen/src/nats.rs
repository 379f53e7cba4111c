//! NATS over a WebSocket (the nats-server peer).

use super::*;

// ---------------------------------------------------------------------------------------------
// NATS over a WebSocket: CONNECT, SUB and PING in one message; the PONG answers (the SUB is in
// place by then); each MSG is a delivery, its latency from the `"t":` of its payload. The
// server's messages are a byte stream cut into WebSocket messages anywhere.

/// The NATS protocol's messages in `buf` (what the WebSocket messages carried, in order).
#[derive(Default)]
pub(crate) struct NatsStream {
    pub(crate) buf: Vec<u8>,
}

pub(crate) enum NatsEvent<'a> {
    Msg(&'a [u8]),
    Ping,
    Pong,
    Err(String),
    Other,
}

impl NatsStream {
    /// The next whole protocol message, if any; `consumed` is how much of `buf` it took.
    pub(crate) fn next(&self, at: usize) -> Option<(NatsEvent<'_>, usize)> {
        let b = &self.buf[at..];
        let eol = find(b, b"\r\n")?;
        let line = &b[..eol];
        if line.starts_with(b"MSG ") {
            let len: usize = std::str::from_utf8(line.rsplit(|&c| c == b' ').next()?).ok()?.parse().ok()?;
            let end = eol + 2 + len + 2;
            if b.len() < end {
                return None;
            }
            return Some((NatsEvent::Msg(&b[eol + 2..eol + 2 + len]), end));
        }
        let event = match line {
            b"PING" => NatsEvent::Ping,
            b"PONG" => NatsEvent::Pong,
            _ if line.starts_with(b"-ERR") => NatsEvent::Err(String::from_utf8_lossy(line).into_owned()),
            _ => NatsEvent::Other,
        };
        Some((event, eol + 2))
    }
}

/// No `+OK` per command (`verbose` off), no echo of a connection's own publications.
pub(crate) const NATS_CONNECT: &str =
    "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"echo\":false}\r\n";

pub(crate) fn nats_connect_and_sub(channel: &str) -> String {
    format!("{NATS_CONNECT}SUB {channel} 1\r\nPING\r\n")
}

pub(crate) async fn nats_subscriber(i: usize, o: &Opts, rec: &mut Recorder<'_>) -> io::Result<()> {
    let mut c = ws_connect(i, o, "nats", rec).await?;
    c.send(0x2, nats_connect_and_sub(&o.channel).as_bytes()).await?;
    let mut stream = NatsStream::default();
    let mut subscribed = false;
    loop {
        if !ws_fill(&mut c, rec.stats).await? {
            return Ok(());
        }
        let now = unix_micros();
        let mut read = WsRead::default();
        let mut pongs = 0;
        while let Some(frame) = c.next_frame() {
            match frame {
                Frame::Text(t) => stream.buf.extend_from_slice(t),
                other => {
                    if read.control(other) {
                        break;
                    }
                }
            }
        }
        let mut at = 0;
        while let Some((event, used)) = stream.next(at) {
            match event {
                NatsEvent::Msg(payload) => rec.delivery(now, number_after(payload, JSON.timestamp)),
                NatsEvent::Ping => pongs += 1,
                NatsEvent::Pong if !subscribed => {
                    subscribed = true;
                    rec.subscribed();
                }
                NatsEvent::Err(e) => rec.error(e),
                NatsEvent::Pong | NatsEvent::Other => {}
            }
            at += used;
        }
        stream.buf.drain(..at);
        if read.ended(rec, now) {
            return Ok(());
        }
        read.answer(&mut c, rec.stats).await?;
        for _ in 0..pongs {
            c.send(0x2, b"PONG\r\n").await?;
        }
    }
}
