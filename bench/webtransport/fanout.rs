//! Fan-out benchmark: WebTransport streams and datagrams against WebSocket, in the same run.
//!
//! One in-process server; `N` subscribers per transport on their own channel (`bench:ws`,
//! `bench:wt-stream`, `bench:wt-datagram`); one publisher publishes the same timestamped message on
//! all three channels at `RATE` per second for `SECS` seconds. Prints deliveries per second,
//! latency p50/p99 (publish to client receive) and, for datagrams, the share delivered.
//! Not a test: numbers vary run to run; compare the rows of one run. See README.md.
//!
//! `cargo run --release --example wt_fanout -- [N] [RATE] [SECS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use switchboard::broker::NewPublication;
use switchboard::config::{ChannelOptions, Config};
use switchboard::model::Payload;
use switchboard::{AppState, Server};
use switchboard_protocol::ChannelName;
use tokio_tungstenite::tungstenite::Message;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Endpoint};

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
}

type Shared = Arc<Mutex<Stats>>;

fn record(stats: &Shared, origin: Instant, text: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(text) else { return };
    if let Some(t) = v["pub"]["data"]["t"].as_u64() {
        let now = origin.elapsed().as_micros() as u64;
        stats.lock().latencies_us.push(now.saturating_sub(t));
    }
}

async fn ws_subscriber(port: u16, channel: String, stats: Shared, origin: Instant) {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws")).await.expect("ws");
    let sub = serde_json::json!({"id": 1, "subscribe": {"channel": channel}}).to_string();
    ws.send(Message::Text(sub.into())).await.unwrap();
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Text(t) = m {
            if t.as_str().starts_with("{\"ping\"") {
                let _ = ws.send(Message::Text("{\"pong\":{}}".into())).await;
            }
            record(&stats, origin, t.as_bytes());
        }
    }
}

async fn wt_subscriber(
    port: u16,
    hash: [u8; 32],
    channel: String,
    datagram: bool,
    stats: Shared,
    origin: Instant,
) {
    let config = ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([Sha256Digest::new(hash)])
        .build();
    let endpoint = Endpoint::client(config).unwrap();
    let conn = endpoint.connect(format!("https://127.0.0.1:{port}/wt")).await.expect("wt");
    let (mut send, mut recv) = conn.open_bi().await.unwrap().await.unwrap();
    let body =
        serde_json::json!({"id": 1, "subscribe": {"channel": channel, "datagram": datagram}}).to_string();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body.as_bytes());
    send.write_all(&frame).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            r = recv.read(&mut chunk) => {
                let Ok(Some(n)) = r else { return };
                buf.extend_from_slice(&chunk[..n]);
                while buf.len() >= 5 {
                    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                    if buf.len() < 5 + len { break; }
                    record(&stats, origin, &buf[5..5 + len]);
                    buf.drain(..5 + len);
                }
            }
            d = conn.receive_datagram() => {
                let Ok(d) = d else { return };
                record(&stats, origin, &d.payload()[1..]);
            }
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let _ = wtransport::tls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (n, rate, secs) = (
        args.first().copied().unwrap_or(100),
        args.get(1).copied().unwrap_or(200),
        args.get(2).copied().unwrap_or(5),
    );

    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        demo: false,
        outbound_queue: 65_536,
        // Every subscriber connects from loopback: lift the per-IP socket caps.
        http_max_sockets_per_ip: 0,
        http_accept_rate_per_ip: 0,
        ..Config::default()
    };
    config.max_connections = 100_000;
    // Every subscriber comes from loopback: lift the per-address and per-connection limits.
    config.max_connections_per_ip = 0;
    config.max_connections_per_user = 0;
    config.max_publish_rate = 0;
    let opts =
        ChannelOptions { datagrams: true, history_size: 0, presence: false, ..ChannelOptions::default() };
    config.namespaces.insert("bench".into(), opts.clone());
    let server = Server::bind(config).await.expect("server");
    let port = server.local_addr().unwrap().port();
    let state: Arc<AppState> = server.state().clone();
    let (hex, _) = server.services().webtransport.as_ref().and_then(|a| a.dev_cert()).expect("dev cert");
    let mut hash = [0u8; 32];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    tokio::spawn(server.run(std::future::pending()));

    let origin = Instant::now();
    let kinds = ["ws", "wt-stream", "wt-datagram"];
    let stats: Vec<Shared> = kinds.iter().map(|_| Shared::default()).collect();
    for (k, kind) in kinds.iter().enumerate() {
        for _ in 0..n {
            let (channel, s) = (format!("bench:{kind}"), stats[k].clone());
            match *kind {
                "ws" => tokio::spawn(ws_subscriber(port, channel, s, origin)),
                "wt-stream" => tokio::spawn(wt_subscriber(port, hash, channel, false, s, origin)),
                _ => tokio::spawn(wt_subscriber(port, hash, channel, true, s, origin)),
            };
        }
    }
    // Wait until every subscriber is registered in the hub.
    let channels: Vec<ChannelName> =
        kinds.iter().map(|k| ChannelName::new(&format!("bench:{k}")).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while channels.iter().any(|c| state.hub.subscriber_count(c) < n as usize) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let total = rate * secs;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    let started = Instant::now();
    for i in 0..total {
        tick.tick().await;
        let t = origin.elapsed().as_micros() as u64;
        // Channels in a rotating order so no transport always goes first.
        for j in 0..channels.len() {
            let c = &channels[(i as usize + j) % channels.len()];
            let data = format!("{{\"t\":{t},\"seq\":{i},\"pad\":\"{}\"}}", "x".repeat(64));
            let req = NewPublication {
                channel: c.clone(),
                payload: Payload::Json(data.into()),
                info: None,
                idempotency_key: None,
                options: opts.clone(),
            };
            let _ = state.broker.publish(req).await;
        }
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;

    println!(
        "fan-out: {n} subscribers per transport, {rate} publications/s for {secs} s ({total} each), {} ms of publishing",
        elapsed.as_millis()
    );
    println!(
        "{:<12} {:>12} {:>14} {:>10} {:>10} {:>10}",
        "transport", "deliveries", "deliveries/s", "delivered", "p50 ms", "p99 ms"
    );
    let mut ws_p50 = 0.0;
    for (k, kind) in kinds.iter().enumerate() {
        let mut lat = std::mem::take(&mut stats[k].lock().latencies_us);
        lat.sort_unstable();
        let expected = (total * n) as f64;
        let (p50, p99) = (percentile(&lat, 0.5) as f64 / 1000.0, percentile(&lat, 0.99) as f64 / 1000.0);
        if k == 0 {
            ws_p50 = p50;
        }
        println!(
            "{:<12} {:>12} {:>14.0} {:>9.1}% {:>10.2} {:>10.2}   p50 vs ws: {:.2}x",
            kind,
            lat.len(),
            lat.len() as f64 / elapsed.as_secs_f64(),
            100.0 * lat.len() as f64 / expected,
            p50,
            p99,
            if ws_p50 > 0.0 { p50 / ws_p50 } else { 0.0 }
        );
    }
    let _ = state.shutdown.send(true);
    std::process::exit(0);
}
