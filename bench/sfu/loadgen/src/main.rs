//! SFU load generator (see bench/sfu/README.md): one publisher and N subscribers, str0m peers on
//! loopback UDP in this process, against our server (WHIP/WHEP) or Janus (VideoRoom). After a
//! warm-up it measures a window and prints one JSON object: frames, forwarded packets and
//! megabits per second, latency, loss, and the server's CPU time and RSS over the window.

mod peer;
mod signal;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use tokio::sync::{oneshot, watch};

use peer::{Frame, Role, Shared};
use signal::Janus;

const USAGE: &str = "usage: sfu-loadgen --target ours|janus --url URL [--subs 10] [--fps 30] \
[--frame-bytes 12000] [--warmup 5] [--duration 20] [--server-pid PID] [--hz 100] [--bind 127.0.0.1] \
[--threads 2]
  ours:  URL is the server's base, http://127.0.0.1:PORT (WHIP/WHEP on room:bench)
  janus: URL is the Janus API, http://127.0.0.1:PORT/janus (VideoRoom room 1234)";

/// The Janus VideoRoom room used.
const JANUS_ROOM: u64 = 1234;

struct Args {
    janus: bool,
    url: String,
    subs: usize,
    fps: u32,
    frame_bytes: usize,
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
        subs: 10,
        fps: 30,
        frame_bytes: 12_000,
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
            "--subs" => a.subs = v.parse().map_err(|_| bad(()))?,
            "--fps" => a.fps = v.parse().map_err(|_| bad(()))?,
            "--frame-bytes" => a.frame_bytes = v.parse().map_err(|_| bad(()))?,
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
            eprintln!("sfu-loadgen: {e}");
            std::process::exit(1);
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn bench(a: Args) -> Res<serde_json::Value> {
    let shared = Arc::new(Shared::new());
    let (stop_tx, stop) = watch::channel(false);

    // The publisher: our offer, one sendonly VP8 m-line.
    let (mut rtc, socket, local) = peer::new_peer(a.bind).await?;
    let mut api = rtc.sdp_api();
    let mid = api.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        Some("bench".into()),
        Some("video".into()),
        None,
    );
    let (offer, pending) = api.apply().ok_or("no offer")?;
    let mut feed = 0;
    let answer = if a.janus {
        let mut j = Janus::attach(&a.url, "videoroom").await?;
        let room = json!({"request": "create", "room": JANUS_ROOM, "publishers": 1, "videocodec": "vp8",
            "bitrate": 100_000_000, "fir_freq": 0});
        // A room left by an earlier run on the same Janus is fine.
        if let Err(e) = j.message(room, None).await
            && !e.to_string().contains("already exists")
        {
            return Err(e.into());
        }
        let joined =
            j.message(json!({"request": "join", "ptype": "publisher", "room": JANUS_ROOM}), None).await?;
        feed = joined["plugindata"]["data"]["id"].as_u64().ok_or("janus: no publisher id")?;
        let jsep = json!({"type": "offer", "sdp": offer.to_sdp_string(), "trickle": false});
        let r = j.message(json!({"request": "configure", "audio": false, "video": true}), Some(jsep)).await?;
        r["jsep"]["sdp"].as_str().ok_or("janus: no answer")?.to_owned()
    } else {
        signal::post_sdp(&format!("{}/whip/room:bench", a.url), &offer.to_sdp_string()).await?
    };
    debug_sdp("publisher offer", &offer.to_sdp_string());
    debug_sdp("publisher answer", &answer);
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer)?)?;
    let (tx, connected) = oneshot::channel();
    let role = Role::Publisher { mid, fps: a.fps, frame_bytes: a.frame_bytes };
    let publisher = tokio::spawn(peer::run(rtc, socket, local, role, shared.clone(), stop.clone(), tx));
    tokio::time::timeout(Duration::from_secs(10), connected)
        .await
        .map_err(|_| "the publisher did not connect")??;

    // The subscribers, one after the other.
    let mut subs = Vec::new();
    for _ in 0..a.subs {
        let (mut rtc, socket, local) = peer::new_peer(a.bind).await?;
        if a.janus {
            // Janus offers, we answer.
            let mut j = Janus::attach(&a.url, "videoroom").await?;
            let join = json!({"request": "join", "ptype": "subscriber", "room": JANUS_ROOM, "streams": [{"feed": feed}]});
            let r = j.message(join, None).await?;
            let offer = SdpOffer::from_sdp_string(r["jsep"]["sdp"].as_str().ok_or("janus: no offer")?)?;
            let answer = rtc.sdp_api().accept_offer(offer)?;
            let jsep = json!({"type": "answer", "sdp": answer.to_sdp_string(), "trickle": false});
            j.message(json!({"request": "start"}), Some(jsep)).await?;
        } else {
            let mut api = rtc.sdp_api();
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            let (offer, pending) = api.apply().ok_or("no offer")?;
            let answer =
                signal::post_sdp(&format!("{}/whep/room:bench", a.url), &offer.to_sdp_string()).await?;
            rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer)?)?;
        }
        let (tx, _connected) = oneshot::channel();
        subs.push(tokio::spawn(peer::run(
            rtc,
            socket,
            local,
            Role::Subscriber,
            shared.clone(),
            stop.clone(),
            tx,
        )));
    }
    let ready = Instant::now();
    while shared.receiving.load(Relaxed) < a.subs && ready.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;

    // The measured window.
    let pid = a.server_pid.map(|p| p.to_string());
    let server_cpu = || pid.as_deref().and_then(cpu_ticks);
    let (c0, l0) = (server_cpu(), cpu_ticks("self"));
    let (d0, b0) = (shared.sub_datagrams.load(Relaxed), shared.sub_bytes.load(Relaxed));
    let (s0, t0) = (shared.next_seq.load(Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    let (s1, window) = (shared.next_seq.load(Relaxed), t0.elapsed().as_secs_f64());
    let (d1, b1) = (shared.sub_datagrams.load(Relaxed), shared.sub_bytes.load(Relaxed));
    let (c1, l1) = (server_cpu(), cpu_ticks("self"));
    let rss_kib = pid.as_deref().and_then(rss_kib);
    // Frames sent in the window may still be on their way.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _ = stop_tx.send(true);
    let _ = publisher.await;
    let mut got: Vec<Frame> = Vec::new();
    for s in subs {
        got.extend(s.await?.into_iter().filter(|f| (s0..s1).contains(&f.seq)));
    }

    let sent = (s1 - s0) as u64;
    let expected = sent * a.subs as u64;
    let media_bytes: u64 = got.iter().map(|f| f.bytes as u64).sum();
    let mut lat: Vec<u64> = got.iter().map(|f| f.latency_ns).collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).map(|&n| n as f64 / 1e6)
    };
    let media_mbit = media_bytes as f64 * 8.0 / 1e6;
    let cpu_s = c0.zip(c1).map(|(a0, a1)| (a1 - a0) as f64 / a.hz);
    Ok(json!({
        "target": if a.janus { "janus" } else { "ours" },
        "subs": a.subs,
        "subs_receiving": shared.receiving.load(Relaxed),
        "fps": a.fps,
        "frame_bytes": a.frame_bytes,
        "window_s": window,
        "frames_sent": sent,
        "frames_received": got.len(),
        "loss": if expected > 0 { 1.0 - got.len() as f64 / expected as f64 } else { 1.0 },
        "media_mbit_per_s": media_mbit / window,
        "packets_per_s": (d1 - d0) as f64 / window,
        "wire_mbit_per_s": (b1 - b0) as f64 * 8.0 / 1e6 / window,
        "latency_ms": {"p50": pct(0.50), "p99": pct(0.99), "max": lat.last().map(|&n| n as f64 / 1e6)},
        "server_cpu_s": cpu_s,
        "server_cpu_s_per_mbit": cpu_s.map(|c| c / media_mbit),
        "server_rss_kib": rss_kib,
        "loadgen_cpu_s": l0.zip(l1).map(|(a0, a1)| (a1 - a0) as f64 / a.hz),
    }))
}

/// With SFU_LOADGEN_DEBUG set, SDPs go to stderr (for signaling trouble).
fn debug_sdp(what: &str, sdp: &str) {
    if std::env::var_os("SFU_LOADGEN_DEBUG").is_some() {
        eprintln!("--- {what}\n{sdp}");
    }
}

/// utime + stime of a process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is field 3.
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
