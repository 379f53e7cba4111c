//! `fleet`: the client side of the soak and chaos runs (bench/soak/run.sh, bench/chaos/chaos.py).
//!
//! N subscribers spread over the transports the Rust client speaks (WebSocket JSON, SSE, HTTP
//! streaming, long polling), each on one channel, each force-dropped (the connection simply
//! dropped, no close) at a random moment every few seconds and resubscribed from its cursor,
//! possibly on another of the `--url`s. Publishers post through the server API at a fixed rate
//! and keep the offsets the server acknowledged. Every subscriber checks its channel's offsets:
//! a repeat is a duplicate, a jump is a loss unless the server reported the gap
//! (`recovered: false` on resume). After `--duration` the publishers stop, the drops stop, and
//! every subscriber must reach its channel's last acknowledged offset; then `/api/channels` of
//! every `--api` node must count exactly the subscribers still connected, and zero once they have
//! gone. With `--pid`, the server's RSS is sampled from /proc and its slope after warm-up
//! reported. Prints a summary and one `RESULT {json}` line; exits 1 if anything was lost,
//! duplicated or leaked.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard_client::{Client, Cursor, Event, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const USAGE: &str = "usage: fleet --url http://127.0.0.1:PORT [--url ...] [--api http://...]... [--conns 5000] \
    [--channels 100] [--transports ws,sse,stream,long-poll] [--duration 600] [--rate 200] [--publishers 4] \
    [--drop-min 2] [--drop-max 6] [--settle 60] [--pid PID] [--warmup 60] [--namespace soak] [--seed 1]";

#[derive(Debug, Clone)]
struct Opts {
    urls: Vec<String>,
    apis: Vec<String>,
    conns: usize,
    channels: usize,
    transports: Vec<Transport>,
    duration: Duration,
    rate: f64,
    publishers: usize,
    drop_min: f64,
    drop_max: f64,
    settle: Duration,
    pid: Option<u32>,
    warmup: Duration,
    namespace: String,
    seed: u64,
}

impl Opts {
    fn parse() -> Opts {
        let mut o = Opts {
            urls: Vec::new(),
            apis: Vec::new(),
            conns: 5000,
            channels: 100,
            transports: vec![Transport::WebSocket, Transport::Sse, Transport::Stream, Transport::LongPoll],
            duration: Duration::from_secs(600),
            rate: 200.0,
            publishers: 4,
            drop_min: 2.0,
            drop_max: 6.0,
            settle: Duration::from_secs(60),
            pid: None,
            warmup: Duration::from_secs(60),
            namespace: "soak".into(),
            seed: 1,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let v = args.next().unwrap_or_else(|| usage());
            let num = |v: &str| v.parse::<f64>().unwrap_or_else(|_| usage());
            match flag.as_str() {
                "--url" => o.urls.push(v),
                "--api" => o.apis.push(v),
                "--conns" => o.conns = num(&v) as usize,
                "--channels" => o.channels = (num(&v) as usize).max(1),
                "--transports" => {
                    o.transports = v.split(',').map(|t| t.parse().unwrap_or_else(|_| usage())).collect();
                }
                "--duration" => o.duration = Duration::from_secs_f64(num(&v)),
                "--rate" => o.rate = num(&v),
                "--publishers" => o.publishers = (num(&v) as usize).max(1),
                "--drop-min" => o.drop_min = num(&v),
                "--drop-max" => o.drop_max = num(&v),
                "--settle" => o.settle = Duration::from_secs_f64(num(&v)),
                "--pid" => o.pid = Some(num(&v) as u32),
                "--warmup" => o.warmup = Duration::from_secs_f64(num(&v)),
                "--namespace" => o.namespace = v,
                "--seed" => o.seed = num(&v) as u64,
                _ => usage(),
            }
        }
        if o.urls.is_empty() || o.transports.is_empty() {
            usage();
        }
        if o.apis.is_empty() {
            o.apis = o.urls.clone();
        }
        o
    }
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2)
}

/// SplitMix64, one per task.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What the run is doing; subscribers watch it.
#[derive(Debug, Clone)]
enum Phase {
    /// Publishing, dropping connections.
    Run,
    /// Publishing has stopped at these (epoch, offset) per channel; no more drops.
    Settle(Arc<HashMap<String, (String, u64)>>),
    /// Disconnect and report.
    Leave,
}

/// One subscriber's offset check.
#[derive(Debug, Default, Clone)]
struct Check {
    epoch: Option<String>,
    last: Option<u64>,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    /// Gaps the server reported (`recovered: false` after a resume).
    gaps_reported: u64,
    /// Publications from another epoch without a `recovered: false` first.
    epoch_jumps: u64,
    subscribes: u64,
    connect_errors: u64,
    /// Connections the server or the network ended (not our drops).
    ended: u64,
    drops: u64,
    /// Why the server ended a subscription or connection: code -> times.
    end_codes: BTreeMap<u16, u64>,
}

impl Check {
    fn on_event(&mut self, event: Event, resumed: bool) -> bool {
        match event {
            Event::Subscribed(s) => {
                if !s.recovered && resumed {
                    self.gaps_reported += 1;
                    self.epoch = Some(s.epoch);
                    self.last = Some(s.offset);
                } else if self.last.is_none() {
                    self.epoch = Some(s.epoch);
                    self.last = Some(s.offset);
                }
            }
            Event::Publication(p) => {
                if self.epoch.as_deref() != Some(p.epoch.as_str()) {
                    if self.epoch.is_some() {
                        self.epoch_jumps += 1;
                    }
                    self.epoch = Some(p.epoch);
                    self.last = Some(p.offset);
                    self.delivered += 1;
                    return true;
                }
                let last = self.last.unwrap_or(p.offset.saturating_sub(1));
                if p.offset <= last {
                    self.duplicated += 1;
                } else {
                    self.lost += p.offset - last - 1;
                    self.delivered += 1;
                    self.last = Some(p.offset);
                }
            }
            Event::Disconnected { code, .. } | Event::Unsubscribed { code, .. } => {
                *self.end_codes.entry(code).or_default() += 1;
                return false;
            }
            _ => {}
        }
        true
    }

    fn caught_up(&self, target: Option<&(String, u64)>) -> bool {
        match target {
            None => true,
            Some((epoch, offset)) => {
                self.epoch.as_deref() == Some(epoch) && self.last.unwrap_or(0) >= *offset
            }
        }
    }
}

struct Shared {
    opts: Opts,
    caught_up: AtomicUsize,
    connected: AtomicUsize,
}

async fn subscriber(
    i: usize,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> (Transport, Check, Option<(String, u64)>) {
    let o = &shared.opts;
    let transport = o.transports[i % o.transports.len()];
    let channel = format!("{}:c{}", o.namespace, i % o.channels);
    let mut rng = Rng(o.seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
    let mut check = Check::default();
    let mut cursor: Option<Cursor> = None;
    let mut url_index = i % o.urls.len();
    let mut counted = false;
    let mut target = None;
    loop {
        if matches!(*phase.borrow(), Phase::Leave) {
            break;
        }
        let client = match Client::new(&o.urls[url_index]) {
            Ok(c) => {
                c.with_long_poll_wait(Duration::from_secs(5)).with_poll_interval(Duration::from_millis(200))
            }
            Err(_) => usage(),
        };
        let resumed = cursor.is_some();
        let sub = tokio::time::timeout(
            Duration::from_secs(10),
            client.subscribe(transport, &[channel.as_str()], cursor.clone()),
        )
        .await;
        let mut sub = match sub {
            Ok(Ok(sub)) => sub,
            _ => {
                check.connect_errors += 1;
                url_index = (url_index + 1) % o.urls.len();
                tokio::time::sleep(Duration::from_millis(200 + rng.next() % 300)).await;
                continue;
            }
        };
        check.subscribes += 1;
        shared.connected.fetch_add(1, Relaxed);
        let drop_at =
            tokio::time::Instant::now() + Duration::from_secs_f64(rng.between(o.drop_min, o.drop_max));
        let mut dropping = matches!(*phase.borrow(), Phase::Run);
        let mut leave = false;
        let mut ended = false;
        loop {
            let settling = if let Phase::Settle(finals) = &*phase.borrow() {
                target = finals.get(&channel).cloned();
                true
            } else {
                false
            };
            if settling {
                dropping = false;
                if !counted && check.caught_up(target.as_ref()) {
                    counted = true;
                    shared.caught_up.fetch_add(1, Relaxed);
                }
            }
            tokio::select! {
                ev = sub.next() => match ev {
                    Some(Ok(e)) => {
                        if !check.on_event(e, resumed) {
                            check.ended += 1;
                            ended = true;
                            break;
                        }
                    }
                    // The polling transports retry by themselves; a streaming one has ended.
                    Some(Err(_)) if transport == Transport::LongPoll => {}
                    Some(Err(_)) | None => {
                        check.ended += 1;
                        ended = true;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(drop_at), if dropping => {
                    check.drops += 1;
                    break;
                }
                changed = phase.changed() => {
                    if changed.is_err() || matches!(*phase.borrow(), Phase::Leave) {
                        leave = true;
                        break;
                    }
                }
            }
        }
        cursor = Some(sub.cursor());
        // Force-drop: no close frame, no unsubscribe; the server must notice by itself.
        drop(sub);
        shared.connected.fetch_sub(1, Relaxed);
        if leave {
            break;
        }
        if ended {
            // As a real client would: another node, after a short pause (the node may be
            // refusing everyone while its broker is down).
            url_index = (url_index + 1) % o.urls.len();
            tokio::time::sleep(Duration::from_millis(100 + rng.next() % 400)).await;
        }
    }
    (transport, check, target)
}

/// Acknowledged (epoch, max offset) per channel, and publish failures.
#[derive(Default)]
struct Acks {
    top: Mutex<HashMap<String, (String, u64)>>,
    acked: AtomicU64,
    failed: AtomicU64,
}

async fn publisher(k: usize, opts: Arc<Shared>, acks: Arc<Acks>, stop: Arc<tokio::sync::Notify>) {
    let o = &opts.opts;
    let period = Duration::from_secs_f64(o.publishers as f64 / o.rate.max(0.001));
    let mut rng = Rng(o.seed ^ (0xABCD + k as u64));
    let mut url_index = k % o.urls.len();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        let channel = format!("{}:c{}", o.namespace, rng.next() as usize % o.channels);
        let Ok(client) = Client::new(&o.urls[url_index]) else { usage() };
        let body = serde_json::json!({"p": k, "t": rng.next() % 1000});
        match tokio::time::timeout(Duration::from_secs(5), client.publish(&channel, &body)).await {
            Ok(Ok(reply)) => {
                acks.acked.fetch_add(1, Relaxed);
                let mut top = acks.top.lock().unwrap_or_else(|e| e.into_inner());
                let e = top.entry(channel).or_insert((reply.epoch.clone(), 0));
                if e.0 != reply.epoch {
                    *e = (reply.epoch, reply.offset);
                } else {
                    e.1 = e.1.max(reply.offset);
                }
            }
            _ => {
                acks.failed.fetch_add(1, Relaxed);
                url_index = (url_index + 1) % o.urls.len();
            }
        }
    }
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Least-squares slope of (seconds, KiB), in KiB per minute.
fn slope(samples: &[(f64, u64)]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let sxy: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 as f64 - my)).sum();
    let sxx: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    (sxx > 0.0).then(|| sxy / sxx * 60.0)
}

/// Subscribers per channel in `GET /api/channels` of the node at `base`.
async fn channel_counts(base: &str) -> Option<BTreeMap<String, u64>> {
    let hostport = base.strip_prefix("http://")?.trim_end_matches('/');
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(hostport))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET /api/channels HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.ok()?.ok()?;
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let v: serde_json::Value = serde_json::from_slice(&buf[at + 4..]).ok()?;
    Some(
        v["channels"]
            .as_array()?
            .iter()
            .filter_map(|c| Some((c["channel"].as_str()?.to_owned(), c["subscribers"].as_u64()?)))
            .collect(),
    )
}

/// Total subscribers of our namespace over every node; `None` if a node did not answer.
async fn total_subscribers(opts: &Opts) -> Option<u64> {
    let mut total = 0;
    for api in &opts.apis {
        let counts = channel_counts(api).await?;
        let prefix = format!("{}:", opts.namespace);
        total += counts.iter().filter(|(c, _)| c.starts_with(&prefix)).map(|(_, n)| n).sum::<u64>();
    }
    Some(total)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let opts = Opts::parse();
    let started = Instant::now();
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        caught_up: AtomicUsize::new(0),
        connected: AtomicUsize::new(0),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);

    let rss: Arc<Mutex<Vec<(f64, u64)>>> = Arc::default();
    if let Some(pid) = opts.pid {
        let rss = rss.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                let Some(kib) = rss_kib(pid) else { return };
                rss.lock().unwrap_or_else(|e| e.into_inner()).push((started.elapsed().as_secs_f64(), kib));
            }
        });
    }

    let mut subs = Vec::with_capacity(opts.conns);
    for i in 0..opts.conns {
        subs.push(tokio::spawn(subscriber(i, shared.clone(), phase_rx.clone())));
        // A ramp, not a SYN flood: all connections up in about five seconds.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis((250_000 / opts.conns.max(1)) as u64)).await;
        }
    }
    let acks = Arc::new(Acks::default());
    let stop = Arc::new(tokio::sync::Notify::new());
    let pubs: Vec<_> = (0..opts.publishers)
        .map(|k| tokio::spawn(publisher(k, shared.clone(), acks.clone(), stop.clone())))
        .collect();

    let run_until = started + opts.duration;
    while Instant::now() < run_until {
        tokio::time::sleep(Duration::from_secs(10).min(run_until.saturating_duration_since(Instant::now())))
            .await;
        eprintln!(
            "[{:>5.0}s] connected {} acked {} failed {}",
            started.elapsed().as_secs_f64(),
            shared.connected.load(Relaxed),
            acks.acked.load(Relaxed),
            acks.failed.load(Relaxed)
        );
    }
    stop.notify_waiters();
    for p in pubs {
        let _ = p.await;
    }
    let finals = Arc::new(acks.top.lock().unwrap_or_else(|e| e.into_inner()).clone());
    let _ = phase_tx.send(Phase::Settle(finals.clone()));
    let settle_until = Instant::now() + opts.settle;
    while shared.caught_up.load(Relaxed) < opts.conns && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up = shared.caught_up.load(Relaxed);
    // Every subscriber holds its connection now: the nodes must count exactly them (long polls
    // count only while a poll is held, so they give a range).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polling =
        (0..opts.conns).filter(|i| opts.transports[i % opts.transports.len()] == Transport::LongPoll).count();
    let connected = shared.connected.load(Relaxed);
    let counted_while_connected = total_subscribers(&opts).await;

    let _ = phase_tx.send(Phase::Leave);
    let mut by_transport: BTreeMap<String, (usize, Check)> = BTreeMap::new();
    let mut behind = 0u64;
    for s in subs {
        let Ok((t, c, target)) = s.await else { continue };
        if let Some((epoch, offset)) = &target
            && c.epoch.as_deref() == Some(epoch.as_str())
        {
            behind += offset.saturating_sub(c.last.unwrap_or(0));
        }
        let e = by_transport.entry(t.to_string()).or_default();
        e.0 += 1;
        let a = &mut e.1;
        a.delivered += c.delivered;
        a.lost += c.lost;
        a.duplicated += c.duplicated;
        a.gaps_reported += c.gaps_reported;
        a.epoch_jumps += c.epoch_jumps;
        a.subscribes += c.subscribes;
        a.connect_errors += c.connect_errors;
        a.ended += c.ended;
        a.drops += c.drops;
        for (code, n) in c.end_codes {
            *a.end_codes.entry(code).or_default() += n;
        }
    }
    // After everyone has gone, nothing may stay subscribed.
    let leave_deadline = Instant::now() + Duration::from_secs(20);
    let mut leaked = total_subscribers(&opts).await;
    while leaked != Some(0) && Instant::now() < leave_deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        leaked = total_subscribers(&opts).await;
    }

    let samples = rss.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let warm: Vec<(f64, u64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= opts.warmup.as_secs_f64() && *t <= opts.duration.as_secs_f64())
        .collect();
    let rss_slope = slope(&warm);
    let rss_first = warm.first().map(|s| s.1);
    let rss_last = warm.last().map(|s| s.1);
    let rss_max = samples.iter().map(|s| s.1).max();
    // After every client has gone: what the server gives back.
    let rss_end = opts.pid.and_then(rss_kib);

    println!(
        "transport   conns  subscribes  drops  ended  conn_err   delivered  lost  dup  gaps_reported  epoch_jumps"
    );
    let mut total = Check::default();
    for (t, (n, c)) in &by_transport {
        println!(
            "{t:<10} {n:>6} {:>11} {:>6} {:>6} {:>9} {:>11} {:>5} {:>4} {:>14} {:>12}",
            c.subscribes,
            c.drops,
            c.ended,
            c.connect_errors,
            c.delivered,
            c.lost,
            c.duplicated,
            c.gaps_reported,
            c.epoch_jumps
        );
        if !c.end_codes.is_empty() {
            println!("{:<10} ended by the server with codes {:?}", "", c.end_codes);
        }
        total.delivered += c.delivered;
        total.lost += c.lost;
        total.duplicated += c.duplicated;
        total.gaps_reported += c.gaps_reported;
        total.subscribes += c.subscribes;
    }
    println!(
        "publications acked {} failed {}; caught up {caught_up}/{}; behind at the end {behind}",
        acks.acked.load(Relaxed),
        acks.failed.load(Relaxed),
        opts.conns
    );
    println!(
        "subscribers counted by /api/channels with {connected} connected ({polling} of them long polls): {counted_while_connected:?}; after all left: {leaked:?}"
    );
    if let Some(s) = rss_slope {
        println!(
            "server RSS after {:.0}s warm-up: {} -> {} KiB, slope {s:+.0} KiB/min; max {} KiB; {} KiB once all left",
            opts.warmup.as_secs_f64(),
            rss_first.unwrap_or(0),
            rss_last.unwrap_or(0),
            rss_max.unwrap_or(0),
            rss_end.unwrap_or(0)
        );
    }
    let non_poll = (connected - polling.min(connected)) as u64;
    let count_ok = counted_while_connected.is_some_and(|c| c >= non_poll && c <= connected as u64);
    let ok = total.lost == 0 && total.duplicated == 0 && behind == 0 && leaked == Some(0) && count_ok;
    let per_transport: serde_json::Map<String, serde_json::Value> = by_transport
        .iter()
        .map(|(t, (n, c))| {
            (
                t.clone(),
                serde_json::json!({"conns": n, "subscribes": c.subscribes, "drops": c.drops, "ended": c.ended,
                    "connect_errors": c.connect_errors, "delivered": c.delivered, "lost": c.lost,
                    "duplicated": c.duplicated, "gaps_reported": c.gaps_reported, "epoch_jumps": c.epoch_jumps,
                    "end_codes": c.end_codes}),
            )
        })
        .collect();
    let result = serde_json::json!({
        "ok": ok, "conns": opts.conns, "seconds": opts.duration.as_secs_f64(),
        "acked": acks.acked.load(Relaxed), "publish_failed": acks.failed.load(Relaxed),
        "lost": total.lost, "duplicated": total.duplicated, "gaps_reported": total.gaps_reported,
        "behind": behind, "caught_up": caught_up, "connected_at_end": connected, "long_polls": polling,
        "counted_while_connected": counted_while_connected, "leaked_after_leave": leaked,
        "rss_slope_kib_per_min": rss_slope, "rss_first_kib": rss_first, "rss_last_kib": rss_last, "rss_max_kib": rss_max, "rss_end_kib": rss_end,
        "transports": per_transport,
    });
    println!("RESULT {result}");
    std::process::exit(if ok { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_client::{Publication, SubscribeReply};

    fn publication(epoch: &str, offset: u64) -> Event {
        Event::Publication(Publication {
            channel: "soak:c0".into(),
            offset,
            epoch: epoch.into(),
            data: None,
            binary: None,
            info: None,
        })
    }

    fn subscribed(epoch: &str, offset: u64, recovered: bool) -> Event {
        Event::Subscribed(SubscribeReply {
            channel: "soak:c0".into(),
            epoch: epoch.into(),
            offset,
            recovered,
            replayed: 0,
        })
    }

    #[test]
    fn counts_losses_duplicates_and_reported_gaps() {
        let mut c = Check::default();
        c.on_event(subscribed("e", 3, true), false);
        for offset in [4, 5, 5, 8] {
            c.on_event(publication("e", offset), false);
        }
        assert_eq!((c.delivered, c.duplicated, c.lost), (3, 1, 2));
        // A resume the server could not honour is a reported gap, not a loss.
        c.on_event(subscribed("e", 20, false), true);
        c.on_event(publication("e", 21), true);
        assert_eq!((c.lost, c.gaps_reported, c.last), (2, 1, Some(21)));
        // Another epoch without a report is counted as such.
        c.on_event(publication("f", 1), true);
        assert_eq!(c.epoch_jumps, 1);
        assert!(c.caught_up(Some(&("f".into(), 1))));
        assert!(!c.caught_up(Some(&("f".into(), 2))));
    }
}
