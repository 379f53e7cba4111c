use super::*;
use crate::media::video::{Decoder, I420};

const RED: [u8; 3] = [230, 20, 20];
const BLUE: [u8; 3] = [20, 20, 230];

fn config() -> CompositionConfig {
    CompositionConfig {
        width: 320,
        height: 180,
        fps: 10,
        bitrate_kbps: 600,
        layout: Layout::Grid,
        stall: Duration::from_secs(2),
    }
}

fn publisher(rgb: [u8; 3]) -> impl FnMut(bool) -> (Bytes, bool) {
    let mut enc = Encoder::new(EncoderConfig {
        width: 160,
        height: 120,
        fps: 10,
        bitrate_kbps: 300,
        keyframe_interval: 1000,
    })
    .unwrap();
    let frame = I420::filled(160, 120, rgb).unwrap();
    move |key| {
        let p = enc.encode(&frame, key).unwrap().remove(0);
        (Bytes::from(p.data), p.keyframe)
    }
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 30)
}

fn frames(c: &mut Composition) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

#[test]
fn two_publishers_compose_into_one_vp8_track_with_red_and_blue_tiles() {
    let t0 = Instant::now();
    let mut c = Composition::new(config(), None, None, t0).unwrap();
    let (mut red, mut blue) = (publisher(RED), publisher(BLUE));
    for (track, who) in [("r", "rose"), ("b", "bill")] {
        c.handle(
            Input::Track { track: track.into(), participant: who.into(), name: who.into(), order: 0 },
            t0,
        );
    }
    // Blue's first frame is a delta frame (joined late): a keyframe request goes out.
    let _ = blue(false);
    let (delta, _) = blue(false);
    c.handle(
        Input::Frame { track: "b".into(), payload: delta, keyframe: false, contiguous: true, time: 0 },
        t0,
    );
    assert_eq!(c.poll_output(), Some(Output::RequestKeyframe { track: "b".into() }));

    let mut dec = Decoder::new().unwrap();
    let mut last = None;
    let mut outputs = 0;
    for i in 0..20u32 {
        let now = t0 + Duration::from_millis(100 * u64::from(i));
        let (p, k) = red(i == 0);
        c.handle(Input::Frame { track: "r".into(), payload: p, keyframe: k, contiguous: true, time: 0 }, now);
        let (p, k) = blue(i == 0);
        c.handle(Input::Frame { track: "b".into(), payload: p, keyframe: k, contiguous: true, time: 0 }, now);
        c.tick(now, 0);
        for o in frames(&mut c) {
            if let Output::Frame { data, keyframe, time } = o {
                assert_eq!(keyframe, outputs == 0, "the first output frame is a keyframe, then deltas");
                assert_eq!(time, outputs * 9000, "10 fps on a 90 kHz clock");
                outputs += 1;
                last = dec.decode(&data).unwrap();
            }
        }
    }
    assert_eq!(outputs, 20, "one frame per tick");
    let out = last.unwrap();
    assert_eq!((out.width, out.height), (320, 180));
    assert!(close(out.rgb_at(80, 90).unwrap(), RED), "{:?}", out.rgb_at(80, 90));
    assert!(close(out.rgb_at(240, 90).unwrap(), BLUE), "{:?}", out.rgb_at(240, 90));
    assert_eq!(c.stats().composed, 20);
}

#[test]
fn late_ticks_are_skipped_a_keyframe_comes_on_request_and_a_leaver_frees_its_tile() {
    let t0 = Instant::now();
    let mut c = Composition::new(config(), None, None, t0).unwrap();
    c.handle(
        Input::Track { track: "r".into(), participant: "rose".into(), name: "Rose".into(), order: 0 },
        t0,
    );
    let mut red = publisher(RED);
    let (p, k) = red(true);
    c.handle(Input::Frame { track: "r".into(), payload: p, keyframe: k, contiguous: true, time: 0 }, t0);
    c.tick(t0, 0);
    assert_eq!(frames(&mut c).len(), 1);
    c.tick(t0 + Duration::from_millis(50), 0);
    assert!(frames(&mut c).is_empty(), "not due yet");
    // Half a second late: one frame, four ticks skipped.
    c.tick(t0 + Duration::from_millis(500), 0);
    let out = frames(&mut c);
    assert!(matches!(&out[..], [Output::Frame { keyframe: false, time: 45_000, .. }]), "{out:?}");
    assert_eq!(c.stats().skipped, 4);
    c.handle(Input::Keyframe, t0);
    c.tick(t0 + Duration::from_millis(600), 0);
    assert!(matches!(&frames(&mut c)[..], [Output::Frame { keyframe: true, .. }]));
    c.handle(Input::Gone { track: "r".into() }, t0);
    assert_eq!(c.compositor().tracks().count(), 0);
    // Frames of an unknown track are ignored.
    let (p, k) = red(false);
    c.handle(Input::Frame { track: "r".into(), payload: p, keyframe: k, contiguous: true, time: 0 }, t0);
    assert!(frames(&mut c).is_empty());
}

#[test]
fn garbage_frames_count_as_decode_errors_and_ask_for_a_keyframe() {
    let t0 = Instant::now();
    let mut c = Composition::new(config(), None, None, t0).unwrap();
    c.handle(Input::Track { track: "x".into(), participant: "x".into(), name: "X".into(), order: 0 }, t0);
    c.handle(
        Input::Frame {
            track: "x".into(),
            payload: Bytes::from_static(&[0x10, 0, 0, 0x9d, 0x01, 0x2a, 0xff, 0xff, 0xff, 0xff]),
            keyframe: true,
            contiguous: true,
            time: 0,
        },
        t0,
    );
    assert_eq!(c.stats().decode_errors, 1);
    assert_eq!(c.poll_output(), Some(Output::RequestKeyframe { track: "x".into() }));
    c.tick(t0, 0);
    assert!(matches!(c.poll_output(), Some(Output::Frame { .. })), "the composition goes on (placeholder)");
}

#[test]
fn a_bad_size_is_an_error() {
    let bad = CompositionConfig { width: 321, ..config() };
    assert!(Composition::new(bad, None, None, Instant::now()).is_err());
}
