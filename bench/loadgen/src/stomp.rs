//! STOMP 1.2 over a WebSocket.

use super::*;

// ---------------------------------------------------------------------------------------------
// STOMP over a WebSocket.

/// What a STOMP frame from the server means to a subscriber.
pub(crate) enum StompEvent {
    Connected,
    /// The RECEIPT of our SUBSCRIBE (the only frame we ask a receipt for).
    Receipt,
    /// A MESSAGE, with the `"t":` timestamp of its JSON body.
    Message(Option<u64>),
    /// An ERROR, with its `message` header.
    Error(String),
    Other,
}

/// The STOMP frames of one WebSocket message. The server sends each frame as its own message,
/// and a heart-beat as an EOL alone (none here: we ask for `heart-beat:0,0`), but nothing in
/// STOMP forbids several frames in one message, so it is split on the frames' NUL.
pub(crate) struct StompFrames<'a> {
    pub(crate) rest: &'a [u8],
}

impl<'a> Iterator for StompFrames<'a> {
    type Item = StompEvent;

    fn next(&mut self) -> Option<StompEvent> {
        // EOLs between frames are heart-beats.
        let skip = self.rest.iter().position(|&b| b != b'\n' && b != b'\r')?;
        let rest = &self.rest[skip..];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let frame = &rest[..end];
        self.rest = &rest[(end + 1).min(rest.len())..];
        let line_end = frame.iter().position(|&b| b == b'\n').unwrap_or(frame.len());
        let command = frame[..line_end].strip_suffix(b"\r").unwrap_or(&frame[..line_end]);
        let (headers, body) = match find(frame, b"\n\n") {
            Some(i) => (&frame[..i], &frame[i + 2..]),
            None => match find(frame, b"\r\n\r\n") {
                Some(i) => (&frame[..i], &frame[i + 4..]),
                None => (frame, &[][..]),
            },
        };
        Some(match command {
            b"MESSAGE" => StompEvent::Message(number_after(body, b"\"t\":")),
            b"RECEIPT" => StompEvent::Receipt,
            b"CONNECTED" => StompEvent::Connected,
            b"ERROR" => {
                let headers = String::from_utf8_lossy(headers);
                let message = headers.lines().find_map(|l| l.strip_prefix("message:")).unwrap_or("");
                StompEvent::Error(format!("STOMP ERROR: {message}"))
            }
            _ => StompEvent::Other,
        })
    }
}

/// CONNECT, and on CONNECTED a SUBSCRIBE with a receipt: its RECEIPT is the subscription's answer,
/// as the JSON protocol's reply is. Each MESSAGE is one delivery.
pub(crate) async fn stomp_subscriber(i: usize, o: &Opts, rec: &mut Recorder<'_>) -> io::Result<()> {
    let mut c = ws_connect(i, o, STOMP_SUBPROTOCOL, rec).await?;
    c.send(0x1, b"CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0").await?;
    let subscribe = format!("SUBSCRIBE\nid:0\ndestination:/topic/{}\nreceipt:sub\n\n\0", o.channel);
    loop {
        if !ws_fill(&mut c, rec.stats).await? {
            return Ok(());
        }
        let now = unix_micros();
        let mut read = WsRead::default();
        let mut connected = false;
        while let Some(frame) = c.next_frame() {
            match frame {
                Frame::Text(t) => {
                    for event in (StompFrames { rest: t }) {
                        match event {
                            StompEvent::Message(ts) => rec.delivery(now, ts),
                            StompEvent::Connected => connected = true,
                            StompEvent::Receipt => rec.subscribed(),
                            StompEvent::Error(e) => rec.error(e),
                            StompEvent::Other => {}
                        }
                    }
                }
                other => {
                    if read.control(other) {
                        break;
                    }
                }
            }
        }
        if read.ended(rec, now) {
            return Ok(());
        }
        // Subscribe once connected, as STOMP clients do (CONNECTED may still carry an error).
        if connected {
            c.send(0x1, subscribe.as_bytes()).await?;
        }
        read.answer(&mut c, rec.stats).await?;
    }
}
