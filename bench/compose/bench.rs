//! The composition's CPU cost, in process: N VP8 inputs (IVF files, the same ones ffmpeg's
//! `xstack` gets in `run.sh`) decoded, composed on a grid and encoded to one VP8 track, on one
//! thread, as a composition's worker does; and each filter alone on a 640×360 frame.
//!
//! `cargo run --release --example compose_bench -- compose OUT_W OUT_H FPS in0.ivf in1.ivf ...`
//! `cargo run --release --example compose_bench -- filters in.ivf`
//! Prints one JSON line of figures (CPU ms per composed frame, from the thread's CPU clock).

use std::time::{Duration, Instant};

use switchboard::media::video::composition::{Composition, CompositionConfig, Input, Output};
use switchboard::media::video::filter::{Chain, FrameContext, parse};
use switchboard::media::video::layout::Layout;
use switchboard::media::video::{Decoder, I420};

/// The frames of an IVF file (32-byte header, then 12-byte frame headers).
fn ivf(path: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).expect("read ivf");
    assert_eq!(&data[..4], b"DKIF", "{path} is not IVF");
    let mut at = usize::from(u16::from_le_bytes([data[6], data[7]]));
    let mut frames = Vec::new();
    while at + 12 <= data.len() {
        let size = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        at += 12;
        if at + size > data.len() {
            break;
        }
        frames.push(data[at..at + size].to_vec());
        at += size;
    }
    frames
}

/// This thread's CPU time.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the comm's ')'.
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn compose(args: &[String]) {
    let (w, h, fps): (u32, u32, u32) =
        (args[0].parse().unwrap(), args[1].parse().unwrap(), args[2].parse().unwrap());
    let inputs: Vec<Vec<Vec<u8>>> = args[3..].iter().map(|p| ivf(p)).collect();
    let frames = inputs.iter().map(Vec::len).min().unwrap_or(0);
    let config = CompositionConfig {
        width: w,
        height: h,
        fps,
        bitrate_kbps: 1200,
        layout: Layout::Grid,
        stall: Duration::from_secs(2),
    };
    let t0 = Instant::now();
    let mut c = Composition::new(config, None, None, t0).unwrap();
    for i in 0..inputs.len() {
        c.handle(
            Input::Track {
                track: format!("t{i}"),
                participant: format!("p{i}"),
                name: format!("P{i}"),
                order: i as u64,
            },
            t0,
        );
    }
    let period = Duration::from_secs(1) / fps;
    let (cpu0, wall0) = (cpu(), Instant::now());
    let mut bytes = 0usize;
    let mut out = 0u64;
    for f in 0..frames {
        // Virtual time: one input frame per track and one output frame per tick.
        let now = t0 + period * f as u32;
        for (i, frames) in inputs.iter().enumerate() {
            let keyframe = frames[f].first().is_some_and(|b| b & 1 == 0);
            let input = Input::Frame {
                track: format!("t{i}"),
                payload: frames[f].clone().into(),
                keyframe,
                contiguous: true,
                time: 0,
            };
            c.handle(input, now);
        }
        c.tick(now, 0);
        while let Some(o) = c.poll_output() {
            if let Output::Frame { data, .. } = o {
                bytes += data.len();
                out += 1;
            }
        }
    }
    let (cpu_ms, wall_ms) = ((cpu() - cpu0).as_secs_f64() * 1e3, wall0.elapsed().as_secs_f64() * 1e3);
    println!(
        "{{\"what\":\"compose\",\"inputs\":{},\"size\":\"{w}x{h}\",\"fps\":{fps},\"frames\":{out},\"cpu_ms_per_frame\":{:.3},\"wall_ms_per_frame\":{:.3},\"kbit_per_s\":{:.0}}}",
        inputs.len(),
        cpu_ms / out as f64,
        wall_ms / out as f64,
        bytes as f64 * 8.0 / 1000.0 / (out as f64 / f64::from(fps))
    );
}

fn filters(args: &[String]) {
    let frames = ivf(&args[0]);
    let mut dec = Decoder::new().unwrap();
    let decoded: Vec<I420> = frames.iter().filter_map(|f| dec.decode(f).ok().flatten()).collect();
    let font = switchboard::media::video::text::Font::load(std::path::Path::new(
        switchboard::media::video::text::DEFAULT_FONT,
    ))
    .ok()
    .map(std::sync::Arc::new);
    let specs = [
        ("overlay_text", serde_json::json!([{"type": "overlay", "text": "Live {time}"}])),
        ("pixelate_full", serde_json::json!([{"type": "pixelate"}])),
        (
            "pixelate_quarter",
            serde_json::json!([{"type": "pixelate", "region": {"x": 0.25, "y": 0.25, "w": 0.5, "h": 0.5}}]),
        ),
        // Detection on every frame (rate 30 at 15 fps input): the cost of one detection.
        ("faces_detect_320", serde_json::json!([{"type": "faces", "rate": 30, "width": 320}])),
    ];
    for (name, spec) in specs {
        let mut chain = Chain::build(&parse(&spec).unwrap(), font.clone()).unwrap();
        let t0 = Instant::now();
        let cpu0 = cpu();
        for (i, f) in decoded.iter().enumerate() {
            let mut f = f.clone();
            chain
                .apply(&mut f, FrameContext { now: t0 + Duration::from_millis(67 * i as u64), wall_secs: 0 });
        }
        let cpu_ms = (cpu() - cpu0).as_secs_f64() * 1e3;
        println!(
            "{{\"what\":\"filter\",\"filter\":\"{name}\",\"size\":\"{}x{}\",\"frames\":{},\"cpu_ms_per_frame\":{:.3}}}",
            decoded[0].width,
            decoded[0].height,
            decoded.len(),
            cpu_ms / decoded.len() as f64
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("compose") => compose(&args[1..]),
        Some("filters") => filters(&args[1..]),
        _ => eprintln!("usage: compose_bench compose W H FPS in.ivf...  |  compose_bench filters in.ivf"),
    }
}
