//! `switchboard bench`: the transport lab's measurements from the terminal, with the Rust
//! client over every transport it speaks (WebSocket, SSE, HTTP streaming, long and short
//! polling), against `--url` or a server it starts in-process; and a fan-out mode (N
//! subscribers, R publications a second) to size a deployment. Latency is publish call to
//! receipt, both ends in this process (one clock). Progress on stderr, the table on stdout.

mod report;

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use switchboard_client::{Client, Event, Transport};
use tokio::sync::mpsc;

use report::{Progress, Row};

/// `switchboard bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// A running server; without it, one is started in-process on a free loopback port.
    #[arg(long, env = "SWITCHBOARD_URL")]
    url: Option<String>,
    /// The API key of `--url`'s server, when it has one (publications go through its API).
    #[arg(long, env = "SWITCHBOARD_API_KEY")]
    api_key: Option<String>,
    /// The transports, comma-separated.
    #[arg(long, default_value = "ws,sse,stream,long-poll,poll", value_delimiter = ',')]
    transports: Vec<String>,
    /// Messages measured per transport.
    #[arg(long, default_value_t = 200)]
    messages: u64,
    /// Publications per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Bytes of padding in each message.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The short-polling interval (ms).
    #[arg(long, default_value_t = 500)]
    poll_interval_ms: u64,
    /// Fan-out mode: this many subscribers on one channel (over the first of --transports),
    /// publications at --rate for --duration seconds.
    #[arg(long)]
    fanout: Option<usize>,
    /// Seconds of publishing in fan-out mode.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark and prints its table (or JSON).
pub async fn bench(args: BenchArgs) -> Result<(), String> {
    if args.rate == 0 || args.messages == 0 {
        return Err("--rate and --messages must be at least 1".into());
    }
    let transports: Vec<(String, Transport)> = args
        .transports
        .iter()
        .map(|t| t.parse().map(|p| (t.clone(), p)).map_err(|e: switchboard_client::Error| e.to_string()))
        .collect::<Result<_, _>>()?;
    let (url, server) = match &args.url {
        Some(url) => (url.clone(), None),
        None => {
            let (url, stop) = in_process().await?;
            (url, Some(stop))
        }
    };
    let mut client = Client::new(&url)
        .map_err(|e| e.to_string())?
        .with_poll_interval(Duration::from_millis(args.poll_interval_ms));
    if let Some(key) = &args.api_key {
        client = client.with_api_key(key.clone());
    }
    let where_ = if server.is_some() { format!("in-process server {url}") } else { url.clone() };
    let result = match args.fanout {
        Some(n) => fanout(&client, &transports[0], n, &args).await.map(|r| (vec![r], true)),
        None => {
            let mut rows = Vec::new();
            let mut progress = Progress::new(transports.len() as u64 * args.messages);
            for (name, transport) in &transports {
                rows.push(one(&client, name, *transport, &args, &mut progress).await?);
            }
            progress.finish();
            Ok((rows, false))
        }
    };
    if let Some(stop) = server {
        let _ = stop.send(());
    }
    let (rows, fan) = result?;
    if args.json {
        let rows: Vec<Value> = rows.iter().map(Row::json).collect();
        let out = json!({"server": where_, "rate": args.rate, "size": args.size, "fanout": args.fanout, "results": rows});
        crate::cli::print_line(out)?;
    } else {
        let title = match args.fanout {
            Some(n) => {
                format!("fan-out: {n} subscribers, {} msg/s for {} s, {where_}", args.rate, args.duration)
            }
            None => format!(
                "{} messages at {} msg/s, {} B padding, {where_}",
                args.messages, args.rate, args.size
            ),
        };
        crate::cli::print_line(report::table(&title, &rows, fan))?;
    }
    Ok(())
}

/// A server on a free loopback port, without the demo, limits lifted for one machine's load.
async fn in_process() -> Result<(String, tokio::sync::oneshot::Sender<()>), String> {
    let mut flags = toml::Table::new();
    for (k, v) in [("listen", "127.0.0.1:0"), ("log", "warn")] {
        flags.insert(k.into(), v.into());
    }
    for k in ["demo", "turn", "rtc", "webtransport"] {
        flags.insert(k.into(), false.into());
    }
    for k in [
        "max_connections_per_ip",
        "max_connections_per_user",
        "max_publish_rate",
        "http_max_sockets_per_ip",
        "http_accept_rate_per_ip",
    ] {
        flags.insert(k.into(), 0.into());
    }
    let config =
        switchboard::config::Config::load(None, std::iter::empty(), flags).map_err(|e| e.to_string())?;
    let server = switchboard::Server::bind(config).await.map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok((format!("http://{addr}"), stop))
}

fn payload(n: u64, start: Instant, size: usize) -> Value {
    json!({"n": n, "t": start.elapsed().as_micros() as u64, "pad": "x".repeat(size)})
}

/// Reads `sub` until it ends, sending `(n, latency)` for each publication.
fn reader(
    mut sub: switchboard_client::Subscription,
    start: Instant,
    out: mpsc::UnboundedSender<(u64, Duration)>,
) -> tokio::task::JoinHandle<Option<String>> {
    tokio::spawn(async move {
        while let Some(event) = sub.next().await {
            match event {
                Ok(Event::Publication(p)) => {
                    let data = p.data.unwrap_or_default();
                    let (Some(n), Some(t)) = (data["n"].as_u64(), data["t"].as_u64()) else { continue };
                    let latency = start.elapsed().saturating_sub(Duration::from_micros(t));
                    if out.send((n, latency)).is_err() {
                        return None;
                    }
                }
                Ok(Event::Disconnected { code, reason }) => {
                    return Some(format!("disconnected: {code} {reason}"));
                }
                Ok(_) => {}
                Err(e) => return Some(e.to_string()),
            }
        }
        None
    })
}

fn channel(tag: &str) -> String {
    format!("bench-{tag}-{:08x}", rand::random::<u32>())
}

/// One transport: subscribe, warm up until a message arrives, then `messages` at `rate`.
async fn one(
    client: &Client,
    name: &str,
    transport: Transport,
    args: &BenchArgs,
    progress: &mut Progress,
) -> Result<Row, String> {
    progress.label(name);
    let channel = channel(name);
    let start = Instant::now();
    let sub = client.subscribe(transport, &[&channel], None).await.map_err(|e| format!("{name}: {e}"))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = reader(sub, start, tx);
    // Warm-up: a subscription that starts at "now" (polling) sees nothing published before it.
    let deadline = Instant::now() + Duration::from_secs(10);
    'warm: loop {
        client.publish(&channel, &payload(0, start, 0)).await.map_err(|e| e.to_string())?;
        let wait = tokio::time::sleep(Duration::from_millis(200 + args.poll_interval_ms));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                got = rx.recv() => match got {
                    Some((0, _)) => break 'warm,
                    Some(_) => {}
                    None => return Err(format!("{name}: the subscription ended during warm-up")),
                },
                () = &mut wait => break,
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{name}: nothing arrived within 10 s"));
        }
    }
    let mut row = Row::new(name, args.messages);
    let began = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.rate as f64);
    let mut tick = tokio::time::interval(gap);
    let grace = Duration::from_millis(2 * args.poll_interval_ms + 5000);
    let mut next = 1u64;
    let mut done_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick(), if next <= args.messages => {
                client.publish(&channel, &payload(next, start, args.size)).await.map_err(|e| format!("{name}: {e}"))?;
                next += 1;
                if next > args.messages { done_at = Some(Instant::now()); }
            }
            got = rx.recv() => match got {
                Some((0, _)) => {}
                Some((n, latency)) => {
                    if row.record(n, latency) { progress.step(); }
                    if row.received == args.messages { break; }
                }
                None => break,
            },
            () = tokio::time::sleep(Duration::from_millis(100)), if done_at.is_some_and(|t| t.elapsed() > grace) => break,
        }
    }
    row.finish(began.elapsed());
    task.abort();
    Ok(row)
}

/// Fan-out: `n` subscribers on one channel, publications at `rate` for `duration`.
async fn fanout(
    client: &Client,
    (name, transport): &(String, Transport),
    n: usize,
    args: &BenchArgs,
) -> Result<Row, String> {
    let channel = channel("fanout");
    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(n);
    let mut progress = Progress::new(n as u64);
    progress.label("subscribing");
    for _ in 0..n {
        let sub =
            client.subscribe(*transport, &[&channel], None).await.map_err(|e| format!("{name}: {e}"))?;
        tasks.push(reader(sub, start, tx.clone()));
        progress.step();
    }
    drop(tx);
    progress.finish();
    // Every subscriber must see the warm-up before the clock starts.
    let mut warm = 0usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    client.publish(&channel, &payload(0, start, 0)).await.map_err(|e| e.to_string())?;
    while warm < n {
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some((0, _))) => warm += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err(format!("fan-out: {warm} of {n} subscribers got the warm-up")),
        }
    }
    let total = args.rate * args.duration;
    let mut row = Row::new(&format!("{name} ×{n}"), total * n as u64);
    let mut progress = Progress::new(total * n as u64);
    progress.label(&format!("{name} ×{n}"));
    let publisher = {
        let (client, channel, size, rate) = (client.clone(), channel.clone(), args.size, args.rate);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            for i in 1..=total {
                tick.tick().await;
                if let Err(e) = client.publish(&channel, &payload(i, start, size)).await {
                    return Err(e.to_string());
                }
            }
            Ok(())
        })
    };
    let began = Instant::now();
    let grace = Duration::from_secs(args.duration + 10);
    while row.received < total * n as u64 {
        match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            Ok(Some((0, _))) => {}
            Ok(Some((_, latency))) => {
                row.record_fanout(latency);
                progress.step();
            }
            Ok(None) => break,
            Err(_) if began.elapsed() > grace => break,
            Err(_) => {}
        }
    }
    progress.finish();
    row.finish(began.elapsed());
    publisher.await.map_err(|e| e.to_string())??;
    for t in tasks {
        t.abort();
    }
    Ok(row)
}
