//! Our JSON protocol (over a WebSocket, and inside SockJS).

use super::*;

// ---------------------------------------------------------------------------------------------
// The JSON protocol (over a WebSocket, and inside SockJS).

/// What a message of our JSON protocol means to a subscriber.
pub(crate) enum JsonEvent {
    /// A publication, with its `"t":` timestamp.
    Pub(Option<u64>),
    /// A server ping: over a WebSocket it wants `{"pong":{}}`.
    Ping,
    /// The reply to our `subscribe` (id 1).
    Subscribed,
    /// An error reply to our `subscribe`.
    Refused,
    Other,
}

/// The byte patterns that tell our JSON protocol's messages apart. SockJS carries each message
/// as a JSON string, where every `"` is `\"`: matching the escaped text as it is saves
/// unescaping every delivery.
pub(crate) struct JsonShape {
    pub(crate) publication: &'static [u8],
    pub(crate) ping: &'static [u8],
    pub(crate) reply: &'static [u8],
    pub(crate) error: &'static [u8],
    pub(crate) timestamp: &'static [u8],
}

pub(crate) const JSON: JsonShape = JsonShape {
    publication: br#"{"pub""#,
    ping: br#"{"ping""#,
    reply: br#"{"id":1,"#,
    error: br#""error""#,
    timestamp: br#""t":"#,
};

pub(crate) const JSON_IN_SOCKJS: JsonShape = JsonShape {
    publication: br#"{\"pub\""#,
    ping: br#"{\"ping\""#,
    reply: br#"{\"id\":1,"#,
    error: br#"\"error\""#,
    timestamp: br#"\"t\":"#,
};

impl JsonShape {
    pub(crate) fn event(&self, m: &[u8]) -> JsonEvent {
        if m.starts_with(self.publication) {
            JsonEvent::Pub(number_after(m, self.timestamp))
        } else if m.starts_with(self.ping) {
            JsonEvent::Ping
        } else if m.starts_with(self.reply) {
            if find(m, self.error).is_some() { JsonEvent::Refused } else { JsonEvent::Subscribed }
        } else {
            JsonEvent::Other
        }
    }
}

pub(crate) fn subscribe_command(o: &Opts) -> String {
    format!("{{\"id\":1,\"subscribe\":{{\"channel\":\"{}\"}}}}", o.channel)
}

pub(crate) async fn json_subscriber(i: usize, o: &Opts, rec: &mut Recorder<'_>) -> io::Result<()> {
    let mut c = ws_connect(i, o, SUBPROTOCOL, rec).await?;
    c.send(0x1, subscribe_command(o).as_bytes()).await?;
    loop {
        if !ws_fill(&mut c, rec.stats).await? {
            return Ok(());
        }
        let now = unix_micros();
        let mut read = WsRead::default();
        while let Some(frame) = c.next_frame() {
            match frame {
                Frame::Text(t) => match JSON.event(t) {
                    JsonEvent::Pub(ts) => rec.delivery(now, ts),
                    JsonEvent::Ping => read.pongs += 1,
                    JsonEvent::Subscribed => rec.subscribed(),
                    JsonEvent::Refused => rec.error(String::from_utf8_lossy(t).into_owned()),
                    JsonEvent::Other => {}
                },
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
        read.answer(&mut c, rec.stats).await?;
    }
}
