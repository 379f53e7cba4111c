//! Recording load for `bench/record/run.sh`: N publishers over WHIP into one room (the SFU
//! benchmark's str0m peers: one VP8 track each, every frame a parsable keyframe with filler),
//! optionally recorded through the API, with the server's CPU and the recording metrics measured
//! over a window. Prints one JSON line.

#[allow(dead_code)]
#[path = "../../../sfu/loadgen/src/peer.rs"]
mod peer;
#[allow(dead_code)]
#[path = "../../../sfu/loadgen/src/signal.rs"]
mod signal;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use peer::{Role, Shared};
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use tokio::sync::{oneshot, watch};

const USAGE: &str = "usage: record-loadgen --url URL [--tracks 10] [--record] [--fps 30] [--frame-bytes 4000] \
[--warmup 3] [--duration 15] [--server-pid PID] [--hz 100]";

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args {
    url: String,
    tracks: usize,
    record: bool,
    fps: u32,
    frame_bytes: usize,
    warmup: f64,
    duration: f64,
    server_pid: Option<u32>,
    hz: f64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        tracks: 10,
        record: false,
        fps: 30,
        frame_bytes: 4000,
        warmup: 3.0,
        duration: 15.0,
        server_pid: None,
        hz: 100.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--record" {
            a.record = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
        let bad = |_: Box<dyn std::error::Error>| format!("bad value for {k}: {v}");
        match k.as_str() {
            "--url" => a.url = v.trim_end_matches('/').to_owned(),
            "--tracks" => a.tracks = v.parse().map_err(|e| bad(Box::new(e)))?,
            "--fps" => a.fps = v.parse().map_err(|e| bad(Box::new(e)))?,
            "--frame-bytes" => a.frame_bytes = v.parse().map_err(|e| bad(Box::new(e)))?,
            "--warmup" => a.warmup = v.parse().map_err(|e| bad(Box::new(e)))?,
            "--duration" => a.duration = v.parse().map_err(|e| bad(Box::new(e)))?,
            "--server-pid" => a.server_pid = Some(v.parse().map_err(|e| bad(Box::new(e)))?),
            "--hz" => a.hz = v.parse().map_err(|e| bad(Box::new(e)))?,
            _ => return Err(format!("unknown option {k}")),
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
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    match rt.block_on(bench(args)) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("record-loadgen: {e}");
            std::process::exit(1);
        }
    }
}

/// A counter of the server's `/metrics`.
async fn metric(url: &str, name: &str) -> Res<f64> {
    let (_, body) = signal::http("GET", &format!("{url}/metrics"), "text/plain", "").await?;
    let line = body.lines().find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '));
    Ok(line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0.0))
}

async fn bench(a: Args) -> Res<serde_json::Value> {
    let shared = Arc::new(Shared::new());
    let (stop_tx, stop) = watch::channel(false);
    let mut publishers = Vec::new();
    for _ in 0..a.tracks {
        let (mut rtc, socket, local) = peer::new_peer("127.0.0.1".parse()?).await?;
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().ok_or("no offer")?;
        let answer =
            signal::post_sdp(&format!("{}/whip/room:bench-rec", a.url), &offer.to_sdp_string()).await?;
        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer)?)?;
        let (tx, connected) = oneshot::channel();
        let role = Role::Publisher { mid, fps: a.fps, frame_bytes: a.frame_bytes };
        publishers.push(tokio::spawn(peer::run(rtc, socket, local, role, shared.clone(), stop.clone(), tx)));
        tokio::time::timeout(Duration::from_secs(10), connected)
            .await
            .map_err(|_| "a publisher did not connect")??;
    }
    let mut recording = None;
    let seq_at_start = shared.next_seq.load(Relaxed);
    if a.record {
        let (status, body) = signal::http(
            "POST",
            &format!("{}/api/rooms/room:bench-rec/recordings", a.url),
            "application/json",
            "",
        )
        .await?;
        if status != 201 {
            return Err(format!("starting the recording: {status} {body}").into());
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        recording = v["id"].as_str().map(str::to_owned);
    }
    tokio::time::sleep(Duration::from_secs_f64(a.warmup)).await;

    let pid = a.server_pid.map(|p| p.to_string());
    let server_cpu = || pid.as_deref().and_then(cpu_ticks);
    let written = "switchboard_recording_bytes_written_total";
    let dropped = "switchboard_media_tap_dropped_total";
    let (c0, w0, d0) = (server_cpu(), metric(&a.url, written).await?, metric(&a.url, dropped).await?);
    let (s0, t0) = (shared.next_seq.load(Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
    let (s1, window) = (shared.next_seq.load(Relaxed), t0.elapsed().as_secs_f64());
    let c1 = server_cpu();
    // The bytes counter moves once a second: read it a tick later, over a window one tick longer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (w1, d1) = (metric(&a.url, written).await?, metric(&a.url, dropped).await?);
    let mut stopped = serde_json::Value::Null;
    let mut seq_at_stop = 0;
    if let Some(id) = &recording {
        // Stop the publishers first: every frame they sent is then in the files.
        let _ = stop_tx.send(true);
        for p in publishers.drain(..) {
            let _ = p.await;
        }
        seq_at_stop = shared.next_seq.load(Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, body) = signal::http("DELETE", &format!("{}/api/recordings/{id}", a.url), "", "").await?;
        stopped = serde_json::from_str(&body).unwrap_or_default();
    }
    let _ = stop_tx.send(true);
    for p in publishers {
        let _ = p.await;
    }
    let frames = (s1 - s0) as f64;
    let mbit = frames * a.frame_bytes as f64 * 8.0 / 1e6;
    let cpu_s = c0.zip(c1).map(|(x, y)| (y - x) as f64 / a.hz);
    Ok(json!({
        "tracks": a.tracks,
        "record": a.record,
        "fps": a.fps,
        "frame_bytes": a.frame_bytes,
        "window_s": window,
        "media_mbit_per_s": mbit / window,
        "server_cpu_s": cpu_s,
        "server_cpu_ms_per_mbit": cpu_s.map(|c| c * 1000.0 / mbit),
        "disk_mbyte_per_s": (w1 - w0) / 1e6 / (window + 1.1),
        "tap_dropped": d1 - d0,
        "recording": recording,
        "frames_sent_while_recording": seq_at_stop.saturating_sub(seq_at_start),
        "recording_state": stopped["state"],
        "files": stopped["files"],
    }))
}

/// utime + stime of a process, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}
