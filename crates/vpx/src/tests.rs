use super::*;

fn config(width: u32, height: u32) -> EncoderConfig {
    EncoderConfig { width, height, fps: 15, bitrate_kbps: 800, keyframe_interval: 300 }
}

/// Left half red, right half blue.
fn halves(width: u32, height: u32) -> I420 {
    let mut f = I420::filled(width, height, [220, 20, 20]).unwrap();
    for y in 0..height {
        for x in width / 2..width {
            f.set_rgb(x, y, [20, 20, 220]);
        }
    }
    f
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 24)
}

#[test]
fn yuv_conversion_round_trips_within_rounding() {
    for rgb in [[255, 0, 0], [0, 0, 255], [0, 255, 0], [128, 128, 128], [16, 200, 90]] {
        assert!(close(frame::yuv_to_rgb(frame::rgb_to_yuv(rgb)), rgb), "{rgb:?}");
    }
}

#[test]
fn encode_then_decode_keeps_size_and_colours() {
    let mut enc = Encoder::new(config(320, 180)).unwrap();
    let mut dec = Decoder::new().unwrap();
    let src = halves(320, 180);
    let mut decoded = None;
    for i in 0..10 {
        let packets = enc.encode(&src, false).unwrap();
        assert_eq!(packets.len(), 1, "one packet per frame (no lag)");
        assert_eq!(packets[0].keyframe, i == 0, "only the first frame is a keyframe");
        decoded = dec.decode(&packets[0].data).unwrap();
    }
    let out = decoded.expect("a frame");
    assert_eq!((out.width, out.height), (320, 180));
    assert!(close(out.rgb_at(40, 90).unwrap(), [220, 20, 20]), "left red: {:?}", out.rgb_at(40, 90));
    assert!(close(out.rgb_at(280, 90).unwrap(), [20, 20, 220]), "right blue: {:?}", out.rgb_at(280, 90));
}

#[test]
fn a_keyframe_comes_on_request() {
    let mut enc = Encoder::new(config(160, 96)).unwrap();
    let src = I420::filled(160, 96, [0, 200, 0]).unwrap();
    assert!(enc.encode(&src, false).unwrap()[0].keyframe);
    assert!(!enc.encode(&src, false).unwrap()[0].keyframe);
    assert!(enc.encode(&src, true).unwrap()[0].keyframe, "requested");
    assert!(!enc.encode(&src, false).unwrap()[0].keyframe);
}

#[test]
fn a_size_change_mid_stream_re_initializes_the_encoder_and_the_decoder_follows() {
    let mut enc = Encoder::new(config(320, 180)).unwrap();
    let mut dec = Decoder::new().unwrap();
    let a = enc.encode(&halves(320, 180), false).unwrap();
    assert_eq!(dec.decode(&a[0].data).unwrap().unwrap().width, 320);
    let b = enc.encode(&halves(640, 360), false).unwrap();
    assert!(b[0].keyframe, "a new size starts with a keyframe");
    assert_eq!(enc.config().width, 640);
    let out = dec.decode(&b[0].data).unwrap().unwrap();
    assert_eq!((out.width, out.height), (640, 360));
    assert!(close(out.rgb_at(600, 10).unwrap(), [20, 20, 220]));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert_eq!(Encoder::new(config(0, 180)).err(), Some(VpxError::BadSize { width: 0, height: 180 }));
    assert!(Encoder::new(config(321, 180)).is_err(), "odd width");
    let mut enc = Encoder::new(config(64, 64)).unwrap();
    let mut short = I420::filled(64, 64, [1, 2, 3]).unwrap();
    short.y.truncate(10);
    assert!(matches!(enc.encode(&short, false), Err(VpxError::BadSize { .. })));
    let mut dec = Decoder::new().unwrap();
    assert!(dec.decode(&[]).is_err());
    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
    assert!(dec.decode(&garbage).is_err(), "garbage does not decode");
    // The decoder still works after garbage.
    let good = enc.encode(&I420::filled(64, 64, [9, 9, 9]).unwrap(), true).unwrap();
    assert!(dec.decode(&good[0].data).unwrap().is_some());
    assert!(I420::filled(0, 4, [0; 3]).is_err());
}
