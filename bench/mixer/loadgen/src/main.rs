//! Audio mixer load generator (see bench/mixer/README.md): N participants, the first few of them
//! speaking, str0m peers in this process, each sending Opus and receiving its mix, against our
//! server (mixed-mode room participants) or Janus (AudioBridge). After a warm-up it measures a
//! window and prints one JSON object: the server's CPU per participant, the tone onsets' latency
//! and the server's RSS.

mod join;
mod peer;
#[allow(dead_code)] // WHIP/WHEP are the SFU benchmark's
#[path = "../../../sfu/loadgen/src/signal.rs"]
mod signal;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use audiopus::coder::Encoder;
use audiopus::{Application, Bitrate, Channels, SampleRate};
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use tokio::sync::{oneshot, watch};

use peer::{CYCLE, Shared};
use signal::Janus;

const USAGE: &str = "usage: mixer-loadgen --target ours|janus --url URL [--n 10] [--speakers 3] \
[--warmup 5] [--duration 20] [--server-pid PID] [--hz 100] [--bind 127.0.0.1] [--threads 2]
  ours:  URL is the server's base, http://127.0.0.1:PORT (room room:mix, participants in mixed mode)
  janus: URL is the Janus API, http://127.0.0.1:PORT/janus (AudioBridge room 1234)";

const JANUS_ROOM: u64 = 1234;

struct Args {
    janus: bool,
    url: String,
    n: usize,
    speakers: usize,
    warmup: f64,
    duration: f64,
    server_pid: Option<u32>,
    hz: f64,
    bind: IpAddr,
    threads: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        janus: false,
        url: String::new(),
        n: 10,
        speakers: 3,
        warmup: 5.0,
        duration: 20.0,
        server_pid: None,
        hz: 100.0,
        bind: [127, 0, 0, 1].into(),
        threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |_| format!("bad value for {flag}: {v}");
        match flag.as_str() {
            "--target" => a.janus = v == "janus",
            "--url" => a.url = v.trim_end_matches('/').to_owned(),
            "--n" => a.n = v.parse().map_err(|_| bad(()))?,
            "--speakers" => a.speakers = v.parse().map_err(|_| bad(()))?,
            "--warmup" => a.warmup = v.parse().map_err(|_| bad(()))?,
            "--duration" => a.duration = v.parse().map_err(|_| bad(()))?,
            "--server-pid" => a.server_pid = Some(v.parse().map_err(|_| bad(()))?),
            "--hz" => a.hz = v.parse().map_err(|_| bad(()))?,
            "--bind" => a.bind = v.parse().map_err(|_| bad(()))?,
            "--threads" => a.threads = v.parse().map_err(|_| bad(()))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.url.is_empty() {
        return Err("--url is required".into());
    }
    Ok(a)
}

fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    str0m::crypto::from_feature_flags().install_process_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(bench(args)) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("mixer-loadgen: {e}");
            std::process::exit(1);
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One cycle of the speakers' packets (a 440 Hz tone, then silence) and a silent packet, encoded
/// once here so that the load generator's CPU does not grow with the participants.
fn packets() -> Res<(Vec<Vec<u8>>, Vec<u8>)> {
    let mut enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
    enc.set_bitrate(Bitrate::BitsPerSecond(32_000))?;
    let mut out = vec![0u8; 1500];
    let mut cycle = Vec::new();
    for f in 0..CYCLE as usize {
        let on = f < CYCLE as usize / 2;
        let pcm: Vec<i16> = (0..960)
            .map(|k| {
                let t = (f * 960 + k) as f64 / 48_000.0;
                if on { (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16 } else { 0 }
            })
            .collect();
        let n = enc.encode(&pcm, &mut out)?;
        cycle.push(out[..n].to_vec());
    }
    let n = enc.encode(&[0i16; 960], &mut out)?;
    Ok((cycle, out[..n].to_vec()))
}

async fn bench(a: Args) -> Res<serde_json::Value> {
    let (tone, silence) = packets()?;
    let shared = Arc::new(Shared {
        epoch: Instant::now() + Duration::from_millis(100),
        tone,
        silence,
        receiving: AtomicUsize::new(0),
        measuring: AtomicBool::new(false),
    });
    let (stop_tx, stop) = watch::channel(false);
    let mut janus_creator = None;
    if a.janus {
        let mut j = Janus::attach(&a.url, "audiobridge").await?;
        let room =
            json!({"request": "create", "room": JANUS_ROOM, "sampling_rate": 48000, "audiolevel_ext": true});
        if let Err(e) = j.message(room, None).await
            && !e.to_string().contains("already exists")
        {
            return Err(e.into());
        }
        janus_creator = Some(j);
    }
    let mut parts = Vec::new();
    let mut sockets = Vec::new(); // our participants' WebSockets (presence) stay open
    for i in 0..a.n {
        let (mut rtc, socket, local) = peer::new_peer(a.bind).await?;
        let mut api = rtc.sdp_api();
        let mid = api.add_media(
            MediaKind::Audio,
            Direction::SendRecv,
            Some(format!("p{i}")),
            Some("mic".into()),
            None,
        );
        let (offer, pending) = api.apply().ok_or("no offer")?;
        let answer = if a.janus {
            let mut j = Janus::attach(&a.url, "audiobridge").await?;
            let jsep = json!({"type": "offer", "sdp": offer.to_sdp_string(), "trickle": false});
            let join =
                json!({"request": "join", "room": JANUS_ROOM, "display": format!("p{i}"), "muted": false});
            let r = j.message(join, Some(jsep)).await?;
            r["jsep"]["sdp"].as_str().ok_or("janus: no answer")?.to_owned()
        } else {
            let (ws, sdp) = join::join_ours(
                &a.url,
                "room:mix",
                &format!("p{i}"),
                &offer.to_sdp_string(),
                &mid.to_string(),
            )
            .await?;
            sockets.push(ws);
            sdp
        };
        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer)?)?;
        let (tx, connected) = oneshot::channel();
        let speaker = i < a.speakers;
        parts.push(tokio::spawn(peer::run(
            rtc,
            socket,
            local,
            mid,
            speaker,
            shared.clone(),
            stop.clone(),
            tx,
        )));
        tokio::time::timeout(Duration::from_secs(10), connected)
            .await
            .map_err(|_| "a participant did not connect")??;
    }
    let ready = Instant::now();
    while shared.receiving.load(Relaxed) < a.n && ready.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;

    let pid = a.server_pid.map(|p| p.to_string());
    let server_cpu = || pid.as_deref().and_then(cpu_ticks);
    let (c0, l0, t0) = (server_cpu(), cpu_ticks("self"), Instant::now());
    shared.measuring.store(true, Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    shared.measuring.store(false, Relaxed);
    let (c1, l1, window) = (server_cpu(), cpu_ticks("self"), t0.elapsed().as_secs_f64());
    let rss_kib = pid.as_deref().and_then(rss_kib);
    let _ = stop_tx.send(true);
    let mut lat = Vec::new();
    for p in parts {
        lat.extend(p.await?);
    }
    drop((sockets, janus_creator));
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e3)
    };
    let cpu_s = c0.zip(c1).map(|(a0, a1)| (a1 - a0) as f64 / a.hz);
    Ok(json!({
        "target": if a.janus { "janus" } else { "ours" },
        "n": a.n,
        "speakers": a.speakers,
        "receiving": shared.receiving.load(Relaxed),
        "window_s": window,
        "onsets": lat.len(),
        "onsets_expected": (window * a.n as f64).floor(),
        "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "max": lat.last().map(|d| d.as_secs_f64() * 1e3)},
        "server_cpu_s": cpu_s,
        "server_cpu_ms_per_participant_s": cpu_s.map(|c| c * 1e3 / window / a.n as f64),
        "server_rss_kib": rss_kib,
        "loadgen_cpu_s": l0.zip(l1).map(|(a0, a1)| (a1 - a0) as f64 / a.hz),
    }))
}

/// utime + stime of a process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
