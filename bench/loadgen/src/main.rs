//! Fan-out load generator for `bench/fanout.py`.
//!
//! `loadgen sub`: opens N WebSocket subscribers to one channel, answers the server's pings, and
//! records, for every publication received, the latency from the publish timestamp carried in its
//! payload (`{"t": <unix micros>, ...}`) in an HDR histogram. It is driven over stdin/stdout, one
//! command a line (see [`control`]), so a driver can read the server's memory while every
//! connection is idle, then reset the counters around a publishing window.
//!
//! `loadgen pub`: one WebSocket publisher at a fixed rate for a fixed time.
//!
//! The WebSocket client is a minimal one written for this tool (RFC 6455 framing of text, ping,
//! pong and close frames; fragmented messages are reassembled): one task and one small read
//! buffer per connection, every read parses all the frames it brought, so the generator can keep
//! up with the server on the same machine. Both servers under test (ours and `bench/peers`) speak
//! the same JSON shapes, so the generator drives them identically.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

const SUBPROTOCOL: &str = "switchboard.v1.json";
/// Initial read buffer per connection; it grows only for a frame larger than it.
const READ_BUF: usize = 8 * 1024;

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
        "usage:\n  loadgen sub --url ws://HOST:PORT/PATH --conns N [--source 127.0.0.X] [--channel C] [--inflight K]\n  \
         loadgen pub --url ws://HOST:PORT/PATH --rate MSGS_PER_S --duration SECS [--channel C] [--size BYTES] [--source 127.0.0.X]\n\n\
         sub reads commands on stdin: stats | reset | hist | quit"
    );
    std::process::exit(2)
}

struct Opts {
    addr: SocketAddr,
    host: String,
    path: String,
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
        let rest = url.strip_prefix("ws://").unwrap_or_else(|| usage());
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

// ---------------------------------------------------------------------------------------------
// A minimal WebSocket client connection.

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
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
    async fn connect(o: &Opts, source: Option<IpAddr>) -> std::io::Result<Conn> {
        let sock = TcpSocket::new_v4()?;
        if let Some(ip) = source {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = sock.connect(o.addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            buf: vec![0; READ_BUF],
            start: 0,
            end: 0,
            partial: None,
            enc: Encoder { mask_seed: 0x9e37_79b9 ^ (o.addr.port() as u32) },
        };
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: c3dpdGNoYm9hcmRiZW5jaA==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n",
            o.path, o.host
        );
        c.stream.write_all(req.as_bytes()).await?;
        // Read the response head; anything after it is already frame data.
        loop {
            if let Some(i) = find(&c.buf[..c.end], b"\r\n\r\n") {
                let head = &c.buf[..i];
                if !head.starts_with(b"HTTP/1.1 101") {
                    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                    return Err(std::io::Error::other(format!(
                        "upgrade refused: {}",
                        String::from_utf8_lossy(line)
                    )));
                }
                c.start = i + 4;
                return Ok(c);
            }
            if c.end == c.buf.len() {
                return Err(std::io::Error::other("response head too large"));
            }
            let n = c.stream.read(&mut c.buf[c.end..]).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed during upgrade"));
            }
            c.end += n;
        }
    }

    /// Reads more bytes; `false` at end of stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
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

    /// The next complete frame in the buffer, if any.
    fn next_frame(&mut self) -> Option<Frame<'_>> {
        loop {
            let b = &self.buf[self.start..self.end];
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
                if head + len > self.buf.len() {
                    // Make room for a large frame on the next fill.
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                    self.buf.resize((head + len).next_power_of_two(), 0);
                }
                return None;
            }
            let (p0, p1) = (self.start + head, self.start + head + len);
            self.start = p1;
            match opcode {
                0x1 | 0x2 if fin => {
                    return Some(if opcode == 1 { Frame::Text(&self.buf[p0..p1]) } else { Frame::Other });
                }
                0x1 | 0x2 => self.partial = Some((opcode, self.buf[p0..p1].to_vec())),
                0x0 => {
                    if let Some((_, acc)) = &mut self.partial {
                        acc.extend_from_slice(&self.buf[p0..p1]);
                    }
                    if fin && let Some((op, acc)) = self.partial.take() {
                        // Put the whole message back in front of the buffer's unread part.
                        let rest = self.buf[self.start..self.end].to_vec();
                        self.buf.clear();
                        self.buf.extend_from_slice(&acc);
                        self.buf.extend_from_slice(&rest);
                        let total = self.buf.len().max(READ_BUF);
                        self.buf.resize(total, 0);
                        self.start = acc.len();
                        self.end = acc.len() + rest.len();
                        return Some(if op == 1 { Frame::Text(&self.buf[..acc.len()]) } else { Frame::Other });
                    }
                }
                0x8 => {
                    let code = if len >= 2 { u16::from_be_bytes([self.buf[p0], self.buf[p0 + 1]]) } else { 1005 };
                    return Some(Frame::Close(code));
                }
                0x9 => return Some(Frame::Ping(self.buf[p0..p1].to_vec())),
                _ => return Some(Frame::Other),
            }
        }
    }

    /// Appends a masked client frame to `out`.
    fn encode(&mut self, out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
        self.enc.encode(out, opcode, payload);
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 14);
        self.encode(&mut out, opcode, payload);
        self.stream.write_all(&out).await
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `"t":` timestamp of a `{"pub":...}` frame's data.
fn timestamp(text: &[u8]) -> Option<u64> {
    let i = find(text, b"\"t\":")? + 4;
    let mut v = 0u64;
    let mut any = false;
    for &b in &text[i..] {
        if b.is_ascii_digit() {
            v = v * 10 + (b - b'0') as u64;
            any = true;
        } else if !(b == b' ' && !any) {
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

async fn sub_main(o: Opts) {
    let o = Arc::new(o);
    let stats = Arc::new(Stats::default());
    let hist = Arc::new(Mutex::new(new_hist()));
    let gate = Arc::new(Semaphore::new(o.inflight));
    for i in 0..o.conns {
        let (o, stats, hist, gate) = (o.clone(), stats.clone(), hist.clone(), gate.clone());
        tokio::spawn(async move {
            if let Err(e) = subscriber(i, &o, &stats, &hist, &gate).await {
                stats.error(e.to_string());
            }
        });
    }
    control(o, stats, hist).await;
}

async fn subscriber(
    i: usize,
    o: &Opts,
    stats: &Stats,
    hist: &Mutex<Histogram<u64>>,
    gate: &Semaphore,
) -> std::io::Result<()> {
    let permit = gate.acquire().await.unwrap();
    let mut c = match Conn::connect(o, o.source).await {
        Ok(c) => c,
        Err(e) => {
            stats.failed.fetch_add(1, Relaxed);
            return Err(e);
        }
    };
    stats.connected.fetch_add(1, Relaxed);
    let cmd = format!("{{\"id\":1,\"subscribe\":{{\"channel\":\"{}\"}}}}", o.channel);
    c.enc.mask_seed ^= i as u32;
    c.send(0x1, cmd.as_bytes()).await?;
    let mut permit = Some(permit);
    let mut out = Vec::new();
    let mut lat = Vec::with_capacity(64);
    loop {
        match c.fill().await {
            Ok(true) => {}
            Ok(false) => {
                stats.closed(1006);
                return Ok(());
            }
            Err(e) => {
                stats.closed(1006);
                return Err(e);
            }
        }
        let now = unix_micros();
        let mut closed = None;
        let mut pongs = 0;
        let mut pings = Vec::new();
        while let Some(frame) = c.next_frame() {
            match frame {
                Frame::Text(t) if t.starts_with(b"{\"pub\"") => match timestamp(t) {
                    Some(ts) => lat.push(now.saturating_sub(ts).max(1)),
                    None => {
                        stats.bad.fetch_add(1, Relaxed);
                    }
                },
                Frame::Text(t) if t.starts_with(b"{\"ping\"") => pongs += 1,
                Frame::Text(t) if t.starts_with(b"{\"id\":1,") => {
                    if find(t, b"\"error\"").is_some() {
                        stats.failed.fetch_add(1, Relaxed);
                        let e = String::from_utf8_lossy(t).into_owned();
                        stats.error(e);
                    } else {
                        stats.subscribed.fetch_add(1, Relaxed);
                    }
                    drop(permit.take()); // this connection's handshake slot is free
                }
                Frame::Text(_) | Frame::Other => {}
                Frame::Ping(p) => pings.push(p),
                Frame::Close(code) => {
                    closed = Some(code);
                    break;
                }
            }
        }
        if !lat.is_empty() {
            stats.deliveries.fetch_add(lat.len() as u64, Relaxed);
            stats.last_delivery.fetch_max(now, Relaxed);
            let mut h = hist.lock().unwrap();
            for v in lat.drain(..) {
                h.saturating_record(v);
            }
        }
        if let Some(code) = closed {
            stats.closed(code);
            return Ok(());
        }
        if pongs > 0 || !pings.is_empty() {
            out.clear();
            for _ in 0..pongs {
                c.encode(&mut out, 0x1, b"{\"pong\":{}}");
            }
            for p in &pings {
                c.encode(&mut out, 0xA, p);
            }
            stats.pings.fetch_add(pongs as u64 + pings.len() as u64, Relaxed);
            c.stream.write_all(&out).await?;
        }
    }
}

/// Commands on stdin, one a line; each answer is one line on stdout.
///
/// - `stats`: `stats conns=N connected= subscribed= failed= closed= deliveries= pings= bad=
///   last_delivery_us=` (and `error=` with the first error, `codes=` with close codes)
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
                    "stats conns={} connected={} subscribed={} failed={} closed={} deliveries={} pings={} bad={} last_delivery_us={}",
                    o.conns,
                    stats.connected.load(Relaxed),
                    stats.subscribed.load(Relaxed),
                    stats.failed.load(Relaxed),
                    stats.closed.load(Relaxed),
                    stats.deliveries.load(Relaxed),
                    stats.pings.load(Relaxed),
                    stats.bad.load(Relaxed),
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
    let c = match Conn::connect(&o, o.source).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("publisher: {e}");
            std::process::exit(1)
        }
    };
    // Split: the reader counts replies (and answers pings) while the writer keeps the pace.
    let Conn { stream, buf, start, end, mut enc, .. } = c;
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
        for _ in sent..due {
            sent += 1;
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
