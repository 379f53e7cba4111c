use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::media::video::geom::Rect;
use crate::media::video::text::{DEFAULT_FONT, Font};

/// The faces test image: rustface's own test picture, cropped (vendor/rustface/README).
const FACES_PNG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/vendor/rustface/faces.png");

/// Decodes a PNG (RGB or RGBA) into an I420 frame.
pub(crate) fn png_to_i420(bytes: &[u8]) -> I420 {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let mut frame = I420::filled(info.width & !1, info.height & !1, [0, 0, 0]).unwrap();
    for y in 0..frame.height {
        for x in 0..frame.width {
            let i = ((y * info.width + x) as usize) * channels;
            let p = &buf[i..i + channels];
            let rgb = if channels >= 3 { [p[0], p[1], p[2]] } else { [p[0]; 3] };
            frame.set_rgb(x, y, rgb);
        }
    }
    // set_rgb writes chroma from the last pixel of each 2×2 block; fine for tests.
    frame
}

/// Encodes RGBA pixels as PNG bytes.
fn rgba_png(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header().unwrap().write_image_data(pixels).unwrap();
    out
}

fn font() -> Option<Arc<Font>> {
    Some(Arc::new(Font::load(Path::new(DEFAULT_FONT)).unwrap()))
}

fn ctx() -> FrameContext {
    FrameContext { now: Instant::now(), wall_secs: 0 }
}

fn luma_variance(f: &I420, r: Rect) -> f64 {
    let values: Vec<f64> = (r.y..r.y + r.h)
        .flat_map(|y| (r.x..r.x + r.w).map(move |x| (y, x)))
        .map(|(y, x)| f64::from(f.y[(y * f.width + x) as usize]))
        .collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64
}

/// Pixels (luma) that differ between `a` and `b`, outside `keep`.
fn changed_outside(a: &I420, b: &I420, keep: Rect) -> usize {
    (0..a.height)
        .flat_map(|y| (0..a.width).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            !keep.contains(x, y) && a.y[(y * a.width + x) as usize] != b.y[(y * a.width + x) as usize]
        })
        .count()
}

#[test]
fn pixelate_lowers_the_region_s_variance_and_leaves_the_rest() {
    let src = png_to_i420(&std::fs::read(FACES_PNG).unwrap());
    let specs = parse(
        &json!([{"type": "pixelate", "region": {"x": 0.25, "y": 0.0, "w": 0.5, "h": 0.5}, "block": 16}]),
    )
    .unwrap();
    let mut chain = Chain::build(&specs, None).unwrap();
    let mut out = src.clone();
    assert!(chain.apply(&mut out, ctx()).is_empty());
    let region = Rect::new(120, 0, 240, 134);
    let (before, after) = (luma_variance(&src, region), luma_variance(&out, region));
    assert!(after < before * 0.8, "variance {before} -> {after}");
    assert_eq!(changed_outside(&src, &out, Rect::new(120, 0, 240, 136)), 0);
    // Inside, one block (they start at the region's edge, x = 120) is flat.
    let block = Rect::new(136, 16, 16, 16);
    assert_eq!(luma_variance(&out, block), 0.0);

    // The whole frame by default.
    let mut chain = Chain::build(&parse(&json!([{"type": "pixelate"}])).unwrap(), None).unwrap();
    let mut out = src.clone();
    chain.apply(&mut out, ctx());
    let all = Rect::new(0, 0, 480, 270);
    assert!(luma_variance(&out, all) < luma_variance(&src, all));
}

#[test]
fn text_overlay_changes_only_its_region() {
    let src = I420::filled(640, 360, [90, 120, 150]).unwrap();
    let specs =
        parse(&json!([{"type": "overlay", "text": "Live {time}", "x": 0.5, "y": 0.5, "size": 20}])).unwrap();
    let mut chain = Chain::build(&specs, font()).unwrap();
    let mut out = src.clone();
    chain.apply(&mut out, FrameContext { now: Instant::now(), wall_secs: 3600 * 9 });
    let (w, h) = font().unwrap().measure(20.0, "Live 09:00:00");
    let region = Rect::new(320, 180, w + 12, h + 12);
    assert_eq!(changed_outside(&src, &out, region), 0);
    assert!(changed_outside(&src, &out, Rect::default()) > 200, "the text and its box were drawn");
}

#[test]
fn image_overlay_blends_with_alpha_at_its_position() {
    // 20×10: left half opaque red, right half fully transparent.
    let mut px = Vec::new();
    for _y in 0..10 {
        for x in 0..20 {
            px.extend_from_slice(if x < 10 { &[255, 0, 0, 255] } else { &[0, 255, 0, 0] });
        }
    }
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, rgba_png(20, 10, &px));
    let specs = parse(&json!([{"type": "overlay", "image": b64, "x": 0.0, "y": 0.0}])).unwrap();
    let mut chain = Chain::build(&specs, None).unwrap();
    let src = I420::filled(64, 64, [0, 0, 255]).unwrap();
    let mut out = src.clone();
    chain.apply(&mut out, ctx());
    let red = out.rgb_at(4, 4).unwrap();
    assert!(red[0] > 200 && red[2] < 60, "{red:?}");
    assert_eq!(out.rgb_at(14, 4), src.rgb_at(14, 4), "transparent");
    assert_eq!(changed_outside(&src, &out, Rect::new(0, 0, 10, 10)), 0);
}

#[test]
fn faces_are_found_where_the_test_image_has_them_and_boxes_are_drawn() {
    let src = png_to_i420(&std::fs::read(FACES_PNG).unwrap());
    let specs = parse(&json!([{"type": "faces", "rate": 1, "width": 480}])).unwrap();
    let mut chain = Chain::build(&specs, None).unwrap();
    let t0 = Instant::now();
    let mut out = src.clone();
    let events = chain.apply(&mut out, FrameContext { now: t0, wall_secs: 0 });
    let [FilterEvent::Faces { width, height, faces }] = &events[..] else { panic!("{events:?}") };
    assert_eq!((*width, *height), (480, 270));
    // The three faces fully in the picture (drawn in it by rustface's authors too).
    let known = [Rect::new(5, 50, 55, 55), Rect::new(207, 35, 61, 60), Rect::new(385, 33, 60, 62)];
    for k in known {
        assert!(
            faces.iter().any(|f| f.rect().overlap(&k) * 2 > k.w * k.h),
            "a face over {k:?}: found {faces:?}"
        );
    }
    assert!(faces.len() <= 6, "no flood of false positives: {faces:?}");
    // Boxes drawn: the frame changed along the first box's edge.
    let f = faces[0].rect();
    assert_ne!(out.rgb_at(f.x + 1, f.y + f.h / 2), src.rgb_at(f.x + 1, f.y + f.h / 2));
    // Rate: no new detection before a second has passed; the boxes stay drawn.
    let mut again = src.clone();
    assert!(
        chain
            .apply(&mut again, FrameContext { now: t0 + Duration::from_millis(500), wall_secs: 0 })
            .is_empty()
    );
    assert_eq!(again.y, out.y);
    assert_eq!(
        chain.apply(&mut src.clone(), FrameContext { now: t0 + Duration::from_secs(1), wall_secs: 0 }).len(),
        1
    );
    // A tiny frame: no panic, no faces.
    let mut tiny = I420::filled(16, 16, [0; 3]).unwrap();
    let ev = chain.apply(&mut tiny, FrameContext { now: t0 + Duration::from_secs(5), wall_secs: 0 });
    assert_eq!(ev, [FilterEvent::Faces { width: 16, height: 16, faces: vec![] }]);
}

#[test]
fn bad_specs_get_their_codes() {
    let code = |v: serde_json::Value| {
        parse(&v).and_then(|s| Chain::build(&s, font()).map(|_| ())).unwrap_err().code()
    };
    assert_eq!(code(json!([{"type": "sepia"}])), "unknown_filter");
    assert_eq!(code(json!([{"kind": "overlay"}])), "unknown_filter");
    assert_eq!(code(json!([{"type": "pixelate", "block": "big"}])), "bad_filter");
    assert_eq!(code(json!([{"type": "pixelate", "block": 1}])), "bad_filter");
    assert_eq!(code(json!([{"type": "pixelate", "blok": 8}])), "bad_filter", "unknown fields are refused");
    assert_eq!(
        code(json!([{"type": "pixelate", "region": {"x": 0.9, "y": 0, "w": 0.5, "h": 0.1}}])),
        "bad_filter"
    );
    assert_eq!(code(json!([{"type": "overlay"}])), "bad_filter");
    assert_eq!(code(json!([{"type": "overlay", "text": "x", "size": 1000}])), "bad_filter");
    assert_eq!(code(json!([{"type": "overlay", "image": "not base64!"}])), "bad_overlay_image");
    assert_eq!(code(json!([{"type": "overlay", "image": "aGVsbG8="}])), "bad_overlay_image");
    assert_eq!(code(json!([{"type": "faces", "rate": 0}])), "bad_filter");
    assert_eq!(code(json!([])), "bad_filter_chain");
    assert_eq!(code(serde_json::Value::Array(vec![json!({"type": "pixelate"}); 9])), "bad_filter_chain");
    assert_eq!(code(json!({"type": "pixelate"})), "bad_filter");
    let specs = parse(&json!([{"type": "overlay", "text": "x"}])).unwrap();
    assert_eq!(Chain::build(&specs, None).err().map(|e| e.code()), Some("no_font"));
}
