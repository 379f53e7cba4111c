//! Subscribers: their counters and latency histogram, the connections they open, and the control loop on stdin.

use super::*;

// ---------------------------------------------------------------------------------------------
// Subscribers.

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) connected: AtomicU64,
    pub(crate) subscribed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) deliveries: AtomicU64,
    pub(crate) pings: AtomicU64,
    pub(crate) bad: AtomicU64,
    /// SockJS: `xhr_streaming` responses that reached their end (the server's
    /// `sockjs_response_limit`) and were followed by the next request.
    pub(crate) reopened: AtomicU64,
    /// Unix micros of the last delivery.
    pub(crate) last_delivery: AtomicU64,
    pub(crate) first_error: Mutex<Option<String>>,
    pub(crate) close_codes: Mutex<Vec<(u16, u64)>>,
}

impl Stats {
    pub(crate) fn error(&self, e: String) {
        let mut f = self.first_error.lock().unwrap();
        if f.is_none() {
            *f = Some(e);
        }
    }
    pub(crate) fn closed(&self, code: u16) {
        self.closed.fetch_add(1, Relaxed);
        let mut c = self.close_codes.lock().unwrap();
        match c.iter_mut().find(|(k, _)| *k == code) {
            Some((_, n)) => *n += 1,
            None => c.push((code, 1)),
        }
    }
}

pub(crate) fn new_hist() -> Histogram<u64> {
    // 1 µs .. 100 s, 3 significant figures.
    Histogram::new_with_bounds(1, 100_000_000, 3).unwrap()
}

/// One subscriber's bookkeeping, whatever its protocol: whether its subscription was answered
/// (for `ready`), and the latencies of one read, recorded together (one lock of the shared
/// histogram per read, not per delivery).
pub(crate) struct Recorder<'a> {
    pub(crate) stats: &'a Stats,
    pub(crate) hist: &'a Mutex<Histogram<u64>>,
    /// A slot of `--inflight`, held until the subscription is answered.
    pub(crate) permit: Option<SemaphorePermit<'a>>,
    pub(crate) answered: bool,
    pub(crate) lat: Vec<u64>,
}

impl Recorder<'_> {
    pub(crate) fn subscribed(&mut self) {
        self.stats.subscribed.fetch_add(1, Relaxed);
        self.answered();
    }

    /// The server refused something: a failed subscription if it was not answered yet.
    pub(crate) fn error(&mut self, why: String) {
        if !self.answered {
            self.stats.failed.fetch_add(1, Relaxed);
            self.answered();
        }
        self.stats.error(why);
    }

    pub(crate) fn answered(&mut self) {
        self.answered = true;
        drop(self.permit.take()); // this connection's handshake slot is free
    }

    /// A publication whose timestamp was `ts`, read at `now`.
    pub(crate) fn delivery(&mut self, now: u64, ts: Option<u64>) {
        match ts {
            Some(ts) => self.lat.push(now.saturating_sub(ts).max(1)),
            None => {
                self.stats.bad.fetch_add(1, Relaxed);
            }
        }
    }

    /// Records the deliveries of one read.
    pub(crate) fn flush(&mut self, now: u64) {
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

pub(crate) async fn sub_main(o: Opts) {
    let o = Arc::new(o);
    let stats = Arc::new(Stats::default());
    let hist = Arc::new(Mutex::new(new_hist()));
    let gate = Arc::new(Semaphore::new(o.inflight));
    for i in 0..o.conns {
        let (o, stats, hist, gate) = (o.clone(), stats.clone(), hist.clone(), gate.clone());
        tokio::spawn(async move {
            let permit = gate.acquire().await.unwrap();
            let mut rec = Recorder {
                stats: &stats,
                hist: &hist,
                permit: Some(permit),
                answered: false,
                lat: Vec::new(),
            };
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
pub(crate) async fn ws_connect(
    i: usize,
    o: &Opts,
    subprotocol: &str,
    rec: &mut Recorder<'_>,
) -> io::Result<Conn> {
    let mut c = Conn::connect(o, subprotocol).await?;
    rec.stats.connected.fetch_add(1, Relaxed);
    c.enc.mask_seed ^= i as u32;
    Ok(c)
}

/// What a WebSocket read brought besides deliveries: pings to answer, a close.
#[derive(Default)]
pub(crate) struct WsRead {
    pub(crate) pongs: usize,
    pub(crate) pings: Vec<Vec<u8>>,
    pub(crate) closed: Option<u16>,
}

impl WsRead {
    /// Notes a frame that is not text: a ping to answer, or the close (`true`: stop reading).
    pub(crate) fn control(&mut self, frame: Frame<'_>) -> bool {
        match frame {
            Frame::Ping(p) => self.pings.push(p),
            Frame::Close(code) => {
                self.closed = Some(code);
                return true;
            }
            Frame::Text(_) | Frame::Other => {}
        }
        false
    }

    /// Flushes what `rec` gathered from this read; `true` when the server closed (counted).
    pub(crate) fn ended(&self, rec: &mut Recorder<'_>, now: u64) -> bool {
        rec.flush(now);
        if let Some(code) = self.closed {
            rec.stats.closed(code);
        }
        self.closed.is_some()
    }

    /// Sends the pongs due (WebSocket pongs, and `{"pong":{}}` for JSON-protocol pings).
    pub(crate) async fn answer(&self, c: &mut Conn, stats: &Stats) -> io::Result<()> {
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
pub(crate) async fn ws_fill(c: &mut Conn, stats: &Stats) -> io::Result<bool> {
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
pub(crate) async fn control(o: Arc<Opts>, stats: Arc<Stats>, hist: Arc<Mutex<Histogram<u64>>>) {
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
                    s.push_str(&format!(
                        " {}:{}",
                        h.highest_equivalent(v.value_iterated_to()),
                        v.count_at_value()
                    ));
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
