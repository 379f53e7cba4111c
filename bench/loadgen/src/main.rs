//! Fan-out load generator for `bench/fanout.py`.
//!
//! `loadgen sub`: opens N subscribers to one channel, answers the server's pings, and records, for
//! every publication received, the latency from the publish timestamp carried in its payload
//! (`{"t": <unix micros>, ...}`) in an HDR histogram. It is driven over stdin/stdout, one command a
//! line (see [`control`]), so a driver can read the server's memory while every connection is
//! idle, then reset the counters around a publishing window. `--proto` says how they subscribe:
//!
//! - `json` (default): our JSON protocol over a WebSocket (`/ws`; the Node peer speaks it too).
//! - `stomp`: STOMP 1.2 over a WebSocket (`/stomp`), see [`stomp_subscriber`].
//! - `sockjs`: our JSON protocol inside a SockJS session over `xhr_streaming` (`/sockjs`), see
//!   [`sockjs_subscriber`].
//!
//! `loadgen pub`: one WebSocket publisher (JSON protocol) at a fixed rate for a fixed time.
//!
//! The WebSocket client is a minimal one written for this tool (RFC 6455 framing of text, ping,
//! pong and close frames; fragmented messages are reassembled): one task and one small read
//! buffer per connection, every read parses all the frames it brought, so the generator can keep
//! up with the server on the same machine. Both servers under test (ours and `bench/peers`) speak
//! the same JSON shapes, so the generator drives them identically. SockJS's HTTP/1.1 requests are
//! written by hand too, and its chunked responses decoded as they come ([`Chunked`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, SemaphorePermit};

const SUBPROTOCOL: &str = "switchboard.v1.json";
/// What @stomp/stompjs offers first; `/stomp` speaks STOMP whatever is offered.
const STOMP_SUBPROTOCOL: &str = "v12.stomp";
/// Initial read buffer per connection; it grows only for a frame larger than it.
const READ_BUF: usize = 8 * 1024;
/// Most bytes of an HTTP response head we accept.
const MAX_HEAD: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { usage() };
    let opts = Opts::parse(&args[1..]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match cmd.as_str() {
        "sub" => rt.block_on(sub_main(opts)),
        "pub" => rt.block_on(pub_main(opts)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage:\n  loadgen sub --url ws://HOST:PORT/PATH --conns N [--proto json|stomp|sockjs|sse|stream|nats|poll] [--source 127.0.0.X] [--channel C] [--inflight K]\n  \
         loadgen pub --url ws://HOST:PORT/PATH --rate MSGS_PER_S --duration SECS [--channel C] [--size BYTES] [--source 127.0.0.X]\n\n\
         --proto json: our JSON protocol, URL ws://HOST:PORT/ws; stomp: STOMP 1.2, ws://HOST:PORT/stomp;\n\
         sockjs: the JSON protocol over SockJS xhr_streaming, http://HOST:PORT/sockjs (the service's prefix);\n\
         sse: Server-Sent Events, http://HOST:PORT/sse (`?channel=C` is added);\n\
         stream: NDJSON streaming, http://HOST:PORT/stream (`?channel=C` is added);\n\
         nats: the NATS protocol over a WebSocket, ws://HOST:PORT/ (nats-server's websocket listener; `pub` too);\n\
         poll: long polling, http://HOST:PORT/poll (`?channel=C&since=&wait=25` is added)\n\n\
         sub reads commands on stdin: stats | reset | hist | quit"
    );
    std::process::exit(2)
}

/// How `sub` subscribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Json,
    Stomp,
    Sockjs,
    Sse,
    /// NDJSON streaming: `GET /stream?channel=C`, one JSON object a line.
    Stream,
    /// The NATS client protocol over a WebSocket (nats-server's `websocket` listener).
    Nats,
    /// Long polling: `GET /poll?channel=C&since=CURSOR&wait=25`, again at once after each answer.
    Poll,
}

struct Opts {
    addr: SocketAddr,
    host: String,
    path: String,
    proto: Proto,
    conns: usize,
    source: Option<IpAddr>,
    channel: String,
    inflight: usize,
    rate: f64,
    duration: f64,
    size: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Self {
        let mut url = None;
        let mut o = Opts {
            addr: "127.0.0.1:0".parse().unwrap(),
            host: String::new(),
            path: "/ws".into(),
            proto: Proto::Json,
            conns: 1,
            source: None,
            channel: "bench".into(),
            inflight: 256,
            rate: 100.0,
            duration: 10.0,
            size: 64,
        };
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let v = it.next().unwrap_or_else(|| usage());
            match k.as_str() {
                "--url" => url = Some(v.clone()),
                "--proto" => {
                    o.proto = match v.as_str() {
                        "json" => Proto::Json,
                        "stomp" => Proto::Stomp,
                        "sockjs" => Proto::Sockjs,
                        "sse" => Proto::Sse,
                        "stream" => Proto::Stream,
                        "nats" => Proto::Nats,
                        "poll" => Proto::Poll,
                        _ => usage(),
                    }
                }
                "--conns" => o.conns = v.parse().unwrap_or_else(|_| usage()),
                "--source" => o.source = Some(v.parse().unwrap_or_else(|_| usage())),
                "--channel" => o.channel = v.clone(),
                "--inflight" => o.inflight = v.parse().unwrap_or_else(|_| usage()),
                "--rate" => o.rate = v.parse().unwrap_or_else(|_| usage()),
                "--duration" => o.duration = v.parse().unwrap_or_else(|_| usage()),
                "--size" => o.size = v.parse().unwrap_or_else(|_| usage()),
                _ => usage(),
            }
        }
        let url = url.unwrap_or_else(|| usage());
        // ws:// for the WebSocket protocols, http:// for SockJS (only the host and path are used).
        let rest = url.strip_prefix("ws://").or_else(|| url.strip_prefix("http://")).unwrap_or_else(|| usage());
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        o.host = hostport.to_string();
        o.path = path.to_string();
        o.addr = hostport.parse().unwrap_or_else(|_| {
            eprintln!("--url must name an IP address and port");
            std::process::exit(2)
        });
        o
    }
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn other(e: impl Into<String>) -> io::Error {
    io::Error::other(e.into())
}

// ---------------------------------------------------------------------------------------------
// TCP with a read buffer, and HTTP/1.1 response heads.

/// A TCP connection and its read buffer: `buf[start..end]` was read and not yet consumed.
struct Tcp {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Tcp {
    /// Connects from `source`: every load generator process has its own 127.0.0.X, because
    /// ephemeral ports are per source address.
    async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<Tcp> {
        let sock = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = sock.connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Tcp { stream, buf: vec![0; READ_BUF], start: 0, end: 0 })
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads more bytes; `false` at end of stream.
    async fn fill(&mut self) -> io::Result<bool> {
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
    async fn read_head(&mut self) -> io::Result<(u16, String)> {
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
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn status_line(head: &str) -> &str {
    head.lines().next().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// A minimal WebSocket client connection.

struct Conn {
    tcp: Tcp,
    /// A fragmented message being reassembled (rare: neither server fragments).
    partial: Option<(u8, Vec<u8>)>,
    enc: Encoder,
}

enum Frame<'a> {
    Text(&'a [u8]),
    Ping(Vec<u8>),
    Close(u16),
    Other,
}

impl Conn {
    async fn connect(o: &Opts, subprotocol: &str) -> io::Result<Conn> {
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
    async fn fill(&mut self) -> io::Result<bool> {
        self.tcp.fill().await
    }

    /// The next complete frame in the buffer, if any.
    fn next_frame(&mut self) -> Option<Frame<'_>> {
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
    fn encode(&mut self, out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
        self.enc.encode(out, opcode, payload);
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        self.encode(&mut out, opcode, payload);
        self.tcp.stream.write_all(&out).await
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned number after the first `key` in `text` (the publisher's `"t":` timestamp).
fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
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

// ---------------------------------------------------------------------------------------------
// Subscribers.

#[derive(Default)]
struct Stats {
    connected: AtomicU64,
    subscribed: AtomicU64,
    failed: AtomicU64,
    closed: AtomicU64,
    deliveries: AtomicU64,
    pings: AtomicU64,
    bad: AtomicU64,
    /// SockJS: `xhr_streaming` responses that reached their end (the server's
    /// `sockjs_response_limit`) and were followed by the next request.
    reopened: AtomicU64,
    /// Unix micros of the last delivery.
    last_delivery: AtomicU64,
    first_error: Mutex<Option<String>>,
    close_codes: Mutex<Vec<(u16, u64)>>,
}

impl Stats {
    fn error(&self, e: String) {
        let mut f = self.first_error.lock().unwrap();
        if f.is_none() {
            *f = Some(e);
        }
    }
    fn closed(&self, code: u16) {
        self.closed.fetch_add(1, Relaxed);
        let mut c = self.close_codes.lock().unwrap();
        match c.iter_mut().find(|(k, _)| *k == code) {
            Some((_, n)) => *n += 1,
            None => c.push((code, 1)),
        }
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 100 s, 3 significant figures.
    Histogram::new_with_bounds(1, 100_000_000, 3).unwrap()
}

/// One subscriber's bookkeeping, whatever its protocol: whether its subscription was answered
/// (for `ready`), and the latencies of one read, recorded together (one lock of the shared
/// histogram per read, not per delivery).
struct Recorder<'a> {
    stats: &'a Stats,
    hist: &'a Mutex<Histogram<u64>>,
    /// A slot of `--inflight`, held until the subscription is answered.
    permit: Option<SemaphorePermit<'a>>,
    answered: bool,
    lat: Vec<u64>,
}

impl Recorder<'_> {
    fn subscribed(&mut self) {
        self.stats.subscribed.fetch_add(1, Relaxed);
        self.answered();
    }

    /// The server refused something: a failed subscription if it was not answered yet.
    fn error(&mut self, why: String) {
        if !self.answered {
            self.stats.failed.fetch_add(1, Relaxed);
            self.answered();
        }
        self.stats.error(why);
    }

    fn answered(&mut self) {
        self.answered = true;
        drop(self.permit.take()); // this connection's handshake slot is free
    }

    /// A publication whose timestamp was `ts`, read at `now`.
    fn delivery(&mut self, now: u64, ts: Option<u64>) {
        match ts {
            Some(ts) => self.lat.push(now.saturating_sub(ts).max(1)),
            None => {
                self.stats.bad.fetch_add(1, Relaxed);
            }
        }
    }

    /// Records the deliveries of one read.
    fn flush(&mut self, now: u64) {
        if self.lat.is_empty() {
            return;
        }
        self.stats.deliveries.fetch_add(self.lat.len() as u64, Relaxed);
        self.stats.last_delivery.fetch_max(now, Relaxed);
        let mut h = self.hist.lock().unwrap();
        for v in self.lat.drain(..) {
            h.saturating_record(v);
        }
    }
}

async fn sub_main(o: Opts) {
    let o = Arc::new(o);
    let stats = Arc::new(Stats::default());
    let hist = Arc::new(Mutex::new(new_hist()));
    let gate = Arc::new(Semaphore::new(o.inflight));
    for i in 0..o.conns {
        let (o, stats, hist, gate) = (o.clone(), stats.clone(), hist.clone(), gate.clone());
        tokio::spawn(async move {
            let permit = gate.acquire().await.unwrap();
            let mut rec = Recorder { stats: &stats, hist: &hist, permit: Some(permit), answered: false, lat: Vec::new() };
            let result = match o.proto {
                Proto::Json => json_subscriber(i, &o, &mut rec).await,
                Proto::Stomp => stomp_subscriber(i, &o, &mut rec).await,
                Proto::Sockjs => sockjs_subscriber(i, &o, &mut rec).await,
                Proto::Sse => sse_subscriber(&o, &mut rec, false).await,
                Proto::Stream => sse_subscriber(&o, &mut rec, true).await,
                Proto::Nats => nats_subscriber(i, &o, &mut rec).await,
                Proto::Poll => poll_subscriber(&o, &mut rec).await,
            };
            // One that ends unanswered counts as failed, so that `ready` still comes.
            match result {
                Err(e) => rec.error(e.to_string()),
                Ok(()) if !rec.answered => rec.error("closed before the subscription was answered".into()),
                Ok(()) => {}
            }
        });
    }
    control(o, stats, hist).await;
}

/// Connects a WebSocket subscriber; a refusal counts as a failed subscription.
async fn ws_connect(i: usize, o: &Opts, subprotocol: &str, rec: &mut Recorder<'_>) -> io::Result<Conn> {
    let mut c = Conn::connect(o, subprotocol).await?;
    rec.stats.connected.fetch_add(1, Relaxed);
    c.enc.mask_seed ^= i as u32;
    Ok(c)
}

/// What a WebSocket read brought besides deliveries: pings to answer, a close.
#[derive(Default)]
struct WsRead {
    pongs: usize,
    pings: Vec<Vec<u8>>,
    closed: Option<u16>,
}

impl WsRead {
    /// Sends the pongs due (WebSocket pongs, and `{"pong":{}}` for JSON-protocol pings).
    async fn answer(&self, c: &mut Conn, stats: &Stats) -> io::Result<()> {
        if self.pongs == 0 && self.pings.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        for _ in 0..self.pongs {
            c.encode(&mut out, 0x1, b"{\"pong\":{}}");
        }
        for p in &self.pings {
            c.encode(&mut out, 0xA, p);
        }
        stats.pings.fetch_add((self.pongs + self.pings.len()) as u64, Relaxed);
        c.tcp.stream.write_all(&out).await
    }
}

/// Reads more from a WebSocket subscriber; `Ok(false)` when it ended (counted as closed).
async fn ws_fill(c: &mut Conn, stats: &Stats) -> io::Result<bool> {
    match c.fill().await {
        Ok(true) => Ok(true),
        Ok(false) => {
            stats.closed(1006);
            Ok(false)
        }
        Err(e) => {
            stats.closed(1006);
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The JSON protocol (over a WebSocket, and inside SockJS).

/// What a message of our JSON protocol means to a subscriber.
enum JsonEvent {
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
struct JsonShape {
    publication: &'static [u8],
    ping: &'static [u8],
    reply: &'static [u8],
    error: &'static [u8],
    timestamp: &'static [u8],
}

const JSON: JsonShape = JsonShape {
    publication: br#"{"pub""#,
    ping: br#"{"ping""#,
    reply: br#"{"id":1,"#,
    error: br#""error""#,
    timestamp: br#""t":"#,
};

const JSON_IN_SOCKJS: JsonShape = JsonShape {
    publication: br#"{\"pub\""#,
    ping: br#"{\"ping\""#,
    reply: br#"{\"id\":1,"#,
    error: br#"\"error\""#,
    timestamp: br#"\"t\":"#,
};

impl JsonShape {
    fn event(&self, m: &[u8]) -> JsonEvent {
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

fn subscribe_command(o: &Opts) -> String {
    format!("{{\"id\":1,\"subscribe\":{{\"channel\":\"{}\"}}}}", o.channel)
}

async fn json_subscriber(i: usize, o: &Opts, rec: &mut Recorder<'_>) -> io::Result<()> {
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
                Frame::Other => {}
                Frame::Ping(p) => read.pings.push(p),
                Frame::Close(code) => {
                    read.closed = Some(code);
                    break;
                }
            }
        }
        rec.flush(now);
        if let Some(code) = read.closed {
            rec.stats.closed(code);
            return Ok(());
        }
        read.answer(&mut c, rec.stats).await?;
    }
}

// ---------------------------------------------------------------------------------------------
// NATS over a WebSocket: CONNECT, SUB and PING in one message; the PONG answers (the SUB is in
// place by then); each MSG is a delivery, its latency from the `"t":` of its payload. The
// server's messages are a byte stream cut into WebSocket messages anywhere.

/// The NATS protocol's messages in `buf` (what the WebSocket messages carried, in order).
#[derive(Default)]
struct NatsStream {
    buf: Vec<u8>,
}

enum NatsEvent<'a> {
    Msg(&'a [u8]),
    Ping,
    Pong,
    Err(String),
    Other,
}

impl NatsStream {
    /// The next whole protocol message, if any; `consumed` is how much of `buf` it took.
    fn next(&self, at: usize) -> Option<(NatsEvent<'_>, usize)> {
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
const NATS_CONNECT: &str = "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"echo\":false}\r\n";

fn nats_connect_and_sub(channel: &str) -> String {
    format!("{NATS_CONNECT}SUB {channel} 1\r\nPING\r\n")
}

async fn nats_subscriber(i: usize, o: &Opts, rec: &mut Recorder<'_>) -> io::Result<()> {
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
                Frame::Other => {}
                Frame::Ping(p) => read.pings.push(p),
                Frame::Close(code) => {
                    read.closed = Some(code);
                    break;
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
        rec.flush(now);
        if let Some(code) = read.closed {
            rec.stats.closed(code);
            return Ok(());
        }
        read.answer(&mut c, rec.stats).await?;
        for _ in 0..pongs {
            c.send(0x2, b"PONG\r\n").await?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// STOMP over a WebSocket.

/// What a STOMP frame from the server means to a subscriber.
enum StompEvent {
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
struct StompFrames<'a> {
    rest: &'a [u8],
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
async fn stomp_subscriber(i: usize, o: &Opts, rec: &mut Recorder<'_>) -> io::Result<()> {
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
                Frame::Other => {}
                Frame::Ping(p) => read.pings.push(p),
                Frame::Close(code) => {
                    read.closed = Some(code);
                    break;
                }
            }
        }
        rec.flush(now);
        if let Some(code) = read.closed {
            rec.stats.closed(code);
            return Ok(());
        }
        // Subscribe once connected, as STOMP clients do (CONNECTED may still carry an error).
        if connected {
            c.send(0x1, subscribe.as_bytes()).await?;
        }
        read.answer(&mut c, rec.stats).await?;
    }
}

// ---------------------------------------------------------------------------------------------
// SockJS xhr_streaming, carrying our JSON protocol.

/// An incremental decoder of a chunked HTTP/1.1 body (RFC 9112 §7.1): the bytes of chunks that
/// may end anywhere in a read. Trailers are skipped.
#[derive(Default)]
struct Chunked {
    state: ChunkState,
    /// Bytes left in the current chunk.
    left: usize,
}

#[derive(Default, PartialEq, Eq)]
enum ChunkState {
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
    fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                ChunkState::Size => {
                    let Some(i) = find(rest, b"\r\n") else { return Ok(pos) };
                    let hex = rest[..i].split(|&b| b == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(hex).ok().and_then(|h| usize::from_str_radix(h.trim(), 16).ok());
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

    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// A SockJS frame of an `xhr_streaming` body (one a line).
enum SockjsFrame<'a> {
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
struct SockjsBody {
    chunked: Option<Chunked>,
    body: Vec<u8>,
    /// Where the next line starts in `body`.
    pos: usize,
}

impl SockjsBody {
    /// A body in chunks, or one that ends when the connection does.
    fn new(chunked: bool) -> Self {
        SockjsBody { chunked: chunked.then(Chunked::default), body: Vec::with_capacity(READ_BUF), pos: 0 }
    }

    /// Takes what `tcp` has read into the body.
    fn take(&mut self, tcp: &mut Tcp) -> io::Result<()> {
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
    fn done(&self) -> bool {
        self.chunked.as_ref().is_some_and(Chunked::done)
    }

    /// The next complete line.
    fn next_line(&mut self) -> Option<&[u8]> {
        let rest = &self.body[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n')?;
        self.pos += end + 1;
        Some(&rest[..end])
    }

    /// The next complete line's frame.
    fn next_frame(&mut self) -> Option<SockjsFrame<'_>> {
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
struct SockjsMessages<'a> {
    rest: &'a [u8],
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
fn session_id(i: usize) -> String {
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
async fn xhr_send(o: &Opts, session: &str, body: &str) -> io::Result<()> {
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
async fn sockjs_subscriber(i: usize, o: &Opts, rec: &mut Recorder<'_>) -> io::Result<()> {
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
        let keep_alive = chunked && !header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
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

// ---------------------------------------------------------------------------------------------
// Server-Sent Events: `GET /sse?channel=C`; `event: subscribed` answers, each `data:` line with
// a `"t":` timestamp is a delivery. The body is chunked (ours, Node) or ends with the connection (the floor).

/// With `ndjson`, HTTP streaming (`GET /stream`): a line with `"subscribed"` answers, each line
/// with a `"t":` timestamp is a delivery.
async fn sse_subscriber(o: &Opts, rec: &mut Recorder<'_>, ndjson: bool) -> io::Result<()> {
    let mut t = Tcp::connect(o.addr, o.source).await?;
    let accept = if ndjson { "application/x-ndjson" } else { "text/event-stream" };
    let request = format!("GET {}?channel={} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n\r\n", o.path, o.channel, o.host);
    t.stream.write_all(request.as_bytes()).await?;
    let (status, head) = t.read_head().await?;
    if status != 200 {
        return Err(other(format!("sse: {}", status_line(&head))));
    }
    rec.stats.connected.fetch_add(1, Relaxed);
    let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut body = SockjsBody::new(chunked);
    loop {
        body.take(&mut t)?;
        let now = unix_micros();
        while let Some(line) = body.next_line() {
            if ndjson {
                if let Some(ts) = number_after(line, JSON.timestamp) {
                    rec.delivery(now, Some(ts));
                } else if line.windows(12).any(|w| w == b"\"subscribed\"") {
                    rec.subscribed();
                }
            } else if line.starts_with(b"event: subscribed") {
                rec.subscribed();
            } else if let Some(data) = line.strip_prefix(b"data: ")
                && let Some(ts) = number_after(data, JSON.timestamp)
            {
                // Ours sends the publication itself, the peers `{"pub":...}`: both carry `"t":`.
                rec.delivery(now, Some(ts));
            }
        }
        rec.flush(now);
        if body.done() || !t.fill().await? {
            rec.stats.closed(1006);
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Long polling: `GET /poll?channel=C` first (a 204 with the cursor: subscribed), then
// `&since=CURSOR&wait=25` again and again on the same kept-alive connection; each `"t":` in a
// 200's publications is a delivery; the next request carries the answer's cursor.

async fn poll_subscriber(o: &Opts, rec: &mut Recorder<'_>) -> io::Result<()> {
    let mut t = Tcp::connect(o.addr, o.source).await?;
    rec.stats.connected.fetch_add(1, Relaxed);
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("channel={}&since={c}&wait=25", o.channel),
            None => format!("channel={}", o.channel),
        };
        let request = format!("GET {}?{query} HTTP/1.1\r\nHost: {}\r\n\r\n", o.path, o.host);
        t.stream.write_all(request.as_bytes()).await?;
        let (status, head) = match t.read_head().await {
            Ok(r) => r,
            Err(_) => {
                rec.stats.closed(1006);
                return Ok(());
            }
        };
        if status != 200 && status != 204 {
            return Err(other(format!("poll: {}", status_line(&head))));
        }
        let len: usize = header(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while t.end - t.start < len {
            if !t.fill().await? {
                rec.stats.closed(1006);
                return Ok(());
            }
        }
        let now = unix_micros();
        let body = &t.buf[t.start..t.start + len];
        let mut at = 0;
        while let Some(i) = find(&body[at..], JSON.timestamp) {
            rec.delivery(now, number_after(&body[at + i..], JSON.timestamp));
            at += i + JSON.timestamp.len();
        }
        t.start += len;
        rec.flush(now);
        cursor = header(&head, "switchboard-cursor").map(str::to_owned);
        if cursor.is_none() {
            return Err(other("poll: no Switchboard-Cursor header"));
        }
        if !rec.answered {
            rec.subscribed();
        }
    }
}

/// Commands on stdin, one a line; each answer is one line on stdout.
///
/// - `stats`: `stats conns=N connected= subscribed= failed= closed= deliveries= pings= bad=
///   reopened= last_delivery_us=` (and `error=` with the first error, `codes=` with close codes;
///   `reopened`: SockJS streaming responses that ended and were followed by the next)
/// - `reset`: zero the delivery count and the histogram; answers `reset`
/// - `hist`: `hist VALUE:COUNT ...` (microseconds; the histogram's recorded buckets)
/// - `quit`: exit
///
/// Unprompted, `ready subscribed=N failed=M` once every connection was answered.
async fn control(o: Arc<Opts>, stats: Arc<Stats>, hist: Arc<Mutex<Histogram<u64>>>) {
    let mut stdout = tokio::io::stdout();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut ready_sent = false;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let line = tokio::select! {
            l = lines.next_line() => match l {
                Ok(Some(l)) => l,
                _ => std::process::exit(0),
            },
            _ = tick.tick() => {
                let (s, f) = (stats.subscribed.load(Relaxed), stats.failed.load(Relaxed));
                if !ready_sent && s + f >= o.conns as u64 {
                    ready_sent = true;
                    let msg = format!("ready subscribed={s} failed={f} secs={:.2}\n", started.elapsed().as_secs_f64());
                    let _ = stdout.write_all(msg.as_bytes()).await;
                    let _ = stdout.flush().await;
                }
                continue;
            }
        };
        let answer = match line.trim() {
            "stats" => {
                let mut s = format!(
                    "stats conns={} connected={} subscribed={} failed={} closed={} deliveries={} pings={} bad={} reopened={} last_delivery_us={}",
                    o.conns,
                    stats.connected.load(Relaxed),
                    stats.subscribed.load(Relaxed),
                    stats.failed.load(Relaxed),
                    stats.closed.load(Relaxed),
                    stats.deliveries.load(Relaxed),
                    stats.pings.load(Relaxed),
                    stats.bad.load(Relaxed),
                    stats.reopened.load(Relaxed),
                    stats.last_delivery.load(Relaxed),
                );
                let codes = stats.close_codes.lock().unwrap();
                if !codes.is_empty() {
                    s.push_str(" codes=");
                    let c: Vec<String> = codes.iter().map(|(k, n)| format!("{k}x{n}")).collect();
                    s.push_str(&c.join(","));
                }
                if let Some(e) = &*stats.first_error.lock().unwrap() {
                    s.push_str(" error=");
                    s.push_str(&e.replace(['\n', '\r'], " "));
                }
                s
            }
            "reset" => {
                stats.deliveries.store(0, Relaxed);
                stats.last_delivery.store(0, Relaxed);
                hist.lock().unwrap().reset();
                "reset".into()
            }
            "hist" => {
                let h = hist.lock().unwrap();
                let mut s = String::from("hist");
                for v in h.iter_recorded() {
                    s.push_str(&format!(" {}:{}", h.highest_equivalent(v.value_iterated_to()), v.count_at_value()));
                }
                s
            }
            "quit" => std::process::exit(0),
            other => format!("error unknown command {other:?}"),
        };
        let _ = stdout.write_all(answer.as_bytes()).await;
        let _ = stdout.write_all(b"\n").await;
        let _ = stdout.flush().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Publisher.

async fn pub_main(o: Opts) {
    let nats = o.proto == Proto::Nats;
    let c = match Conn::connect(&o, if nats { "nats" } else { SUBPROTOCOL }).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("publisher: {e}");
            std::process::exit(1)
        }
    };
    // Split: the reader counts replies (and answers pings) while the writer keeps the pace.
    let Conn { tcp: Tcp { stream, buf, start, end }, mut enc, .. } = c;
    let (mut rd, mut wr) = stream.into_split();
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let pongs_due = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    {
        let (acked, errors, pongs_due, first_error) =
            (acked.clone(), errors.clone(), pongs_due.clone(), first_error.clone());
        // Reuse Conn's frame parser on a reader-only copy of the state.
        let leftover = buf[start..end].to_vec();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut len = leftover.len();
            buf[..len].copy_from_slice(&leftover);
            loop {
                // Parse whole frames from buf[..len].
                let mut pos = 0;
                loop {
                    let b = &buf[pos..len];
                    if b.len() < 2 {
                        break;
                    }
                    let (l, head) = match b[1] & 0x7f {
                        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10),
                        126 | 127 => break,
                        n => (n as usize, 2),
                    };
                    if b.len() < head + l {
                        if head + l > buf.len() {
                            buf.resize(head + l, 0);
                        }
                        break;
                    }
                    let payload = &b[head..head + l];
                    match b[0] & 0x0f {
                        0x1 if payload.starts_with(b"{\"ping\"") => {
                            pongs_due.fetch_add(1, Relaxed);
                        }
                        0x1 if find(payload, b"\"error\"").is_some() => {
                            errors.fetch_add(1, Relaxed);
                            let mut f = first_error.lock().unwrap();
                            if f.is_none() {
                                *f = Some(String::from_utf8_lossy(payload).into_owned());
                            }
                        }
                        0x1 if payload.starts_with(b"{\"id\"") => {
                            acked.fetch_add(1, Relaxed);
                        }
                        0x8 => return,
                        _ => {}
                    }
                    pos += head + l;
                }
                buf.copy_within(pos..len, 0);
                len -= pos;
                match rd.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
            }
        });
    }
    let pad = "x".repeat(o.size.saturating_sub(30));
    if nats {
        // No acknowledgements (`verbose` off): NATS publishes are fire-and-forget.
        let mut out = Vec::new();
        enc.encode(&mut out, 0x2, NATS_CONNECT.as_bytes());
        if let Err(e) = wr.write_all(&out).await {
            eprintln!("publisher: {e}");
            std::process::exit(1)
        }
    }
    let total = (o.rate * o.duration).round() as u64;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    let mut out = Vec::new();
    let mut max_batch = 0;
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * o.rate) as u64 + 1).min(total);
        if due <= sent {
            continue;
        }
        out.clear();
        let t = unix_micros();
        max_batch = max_batch.max(due - sent);
        while sent < due {
            sent += 1;
            if nats {
                let data = format!("{{\"t\":{t},\"p\":\"{pad}\"}}");
                let cmd = format!("PUB {} {}\r\n{data}\r\n", o.channel, data.len());
                enc.encode(&mut out, 0x2, cmd.as_bytes());
                acked.fetch_add(1, Relaxed);
                continue;
            }
            let cmd = format!(
                "{{\"id\":{sent},\"publish\":{{\"channel\":\"{}\",\"data\":{{\"t\":{t},\"p\":\"{pad}\"}}}}}}",
                o.channel
            );
            enc.encode(&mut out, 0x1, cmd.as_bytes());
        }
        for _ in 0..pongs_due.swap(0, Relaxed) {
            enc.encode(&mut out, 0x1, b"{\"pong\":{}}");
        }
        if let Err(e) = wr.write_all(&out).await {
            eprintln!("publisher: {e}");
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Give the last replies a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while acked.load(Relaxed) + errors.load(Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut line = format!(
        "published sent={sent} acked={} errors={} secs={elapsed:.3} rate={:.1} max_batch={max_batch}",
        acked.load(Relaxed),
        errors.load(Relaxed),
        sent as f64 / elapsed
    );
    if let Some(e) = &*first_error.lock().unwrap() {
        line.push_str(" error=");
        line.push_str(&e.replace(['\n', '\r'], " "));
    }
    println!("{line}");
    let _ = wr.shutdown().await;
}

/// Client-side framing (masked frames), shared by [`Conn`] and the publisher's split writer.
struct Encoder {
    mask_seed: u32,
}

impl Encoder {
    fn encode(&mut self, out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_across_reads() {
        let wire = b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n";
        // Every split point: what a read left incomplete is decoded with the next one.
        for split in 0..wire.len() {
            let (mut c, mut out) = (Chunked::default(), Vec::new());
            let used = c.decode(&wire[..split], &mut out).unwrap();
            let mut rest = wire[used..split].to_vec();
            rest.extend_from_slice(&wire[split..]);
            c.decode(&rest, &mut out).unwrap();
            assert_eq!(out, b"hello!", "split at {split}");
            assert!(c.done());
        }
    }

    #[test]
    fn sockjs_frames_and_messages() {
        let mut b = SockjsBody::new(false);
        b.body.extend_from_slice(b"hhh\no\na[\"{\\\"pub\\\":{\\\"data\\\":{\\\"t\\\":42}}}\",\"x\\\\\\\"y\"]\nc[3000,\"Go");
        assert!(matches!(b.next_frame(), Some(SockjsFrame::Heartbeat)));
        assert!(matches!(b.next_frame(), Some(SockjsFrame::Open)));
        let Some(SockjsFrame::Messages(array)) = b.next_frame() else { panic!() };
        let m: Vec<&[u8]> = SockjsMessages { rest: array }.collect();
        assert_eq!(m, vec![&br#"{\"pub\":{\"data\":{\"t\":42}}}"#[..], &br#"x\\\"y"#[..]]);
        assert!(matches!(JSON_IN_SOCKJS.event(m[0]), JsonEvent::Pub(Some(42))));
        assert!(b.next_frame().is_none(), "an incomplete line waits");
        assert!(matches!(JSON_IN_SOCKJS.event(br#"{\"id\":1,\"error\":{}}"#), JsonEvent::Refused));
        assert!(matches!(JSON_IN_SOCKJS.event(br#"{\"id\":1,\"subscribe\":{}}"#), JsonEvent::Subscribed));
    }

    #[test]
    fn stomp_frames() {
        let events: Vec<StompEvent> =
            StompFrames { rest: b"MESSAGE\nsubscription:0\n\n{\"t\":7,\"p\":\"x\"}\0\nRECEIPT\nreceipt-id:sub\n\n\0" }
                .collect();
        assert!(matches!(events[..], [StompEvent::Message(Some(7)), StompEvent::Receipt]));
        assert_eq!(StompFrames { rest: b"\n" }.count(), 0, "a heart-beat");
        let Some(StompEvent::Error(e)) = (StompFrames { rest: b"ERROR\ncode:105\nmessage:no\n\n\0" }).next() else {
            panic!()
        };
        assert_eq!(e, "STOMP ERROR: no");
    }
}
