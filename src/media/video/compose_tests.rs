use super::*;
use crate::media::video::text::{DEFAULT_FONT, Font};

const RED: [u8; 3] = [230, 20, 20];
const BLUE: [u8; 3] = [20, 20, 230];
const GREEN: [u8; 3] = [20, 200, 20];

fn config(layout: Layout) -> CompositorConfig {
    CompositorConfig { width: 640, height: 360, layout, fit: Fit::Cover, stall: Duration::from_secs(2) }
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 12)
}

/// The colour at the centre of `track`'s tile.
fn at_centre(c: &mut Compositor, track: &str, now: Instant) -> [u8; 3] {
    let (x, y) = c.tile_of(track).unwrap().centre();
    c.render(now).rgb_at(x, y).unwrap()
}

#[test]
fn the_grid_puts_red_and_blue_tiles_where_expected_and_adapts_to_a_third() {
    let now = Instant::now();
    let mut c = Compositor::new(config(Layout::Grid), None).unwrap();
    c.join("a", "alice", "Alice");
    c.join("b", "bob", "Bob");
    c.frame("a", I420::filled(320, 240, RED).unwrap(), now);
    c.frame("b", I420::filled(1280, 720, BLUE).unwrap(), now);
    let canvas = c.render(now).clone();
    assert!(close(canvas.rgb_at(160, 180).unwrap(), RED), "left half red: {:?}", canvas.rgb_at(160, 180));
    assert!(close(canvas.rgb_at(480, 180).unwrap(), BLUE), "right half blue");
    assert_eq!(c.tile_of("a").unwrap().y, 0);

    c.join("g", "gina", "Gina");
    c.frame("g", I420::filled(640, 360, GREEN).unwrap(), now);
    let canvas = c.render(now).clone();
    // 2×2 with the third centred below.
    assert!(close(canvas.rgb_at(160, 90).unwrap(), RED));
    assert!(close(canvas.rgb_at(480, 90).unwrap(), BLUE));
    assert!(close(canvas.rgb_at(320, 270).unwrap(), GREEN), "{:?}", canvas.rgb_at(320, 270));
    assert!(close(canvas.rgb_at(20, 270).unwrap(), BACKGROUND), "beside the lone last tile: background");

    c.leave("a");
    assert!(close(at_centre(&mut c, "b", now), BLUE));
    assert_eq!(c.tile_of("b").unwrap().x, 0, "bob moved to the first tile");
    assert_eq!(c.tracks().collect::<Vec<_>>(), ["b", "g"]);
}

#[test]
fn a_stalled_track_keeps_its_last_frame_then_shows_a_placeholder() {
    let t0 = Instant::now();
    let mut c = Compositor::new(config(Layout::Grid), None).unwrap();
    c.join("a", "alice", "Alice");
    c.join("b", "bob", "Bob");
    assert!(close(at_centre(&mut c, "a", t0), PLACEHOLDER), "no frame yet: placeholder");
    c.frame("a", I420::filled(320, 240, RED).unwrap(), t0);
    c.frame("b", I420::filled(320, 240, BLUE).unwrap(), t0);
    let t1 = t0 + Duration::from_millis(1500);
    c.frame("b", I420::filled(320, 240, BLUE).unwrap(), t1);
    assert!(close(at_centre(&mut c, "a", t1), RED), "within the stall time: the last frame");
    let t2 = t0 + Duration::from_millis(2500);
    assert!(close(at_centre(&mut c, "a", t2), PLACEHOLDER), "stalled: placeholder");
    assert!(close(at_centre(&mut c, "b", t2), BLUE), "the other tile goes on");
    c.frame("a", I420::filled(320, 240, RED).unwrap(), t2);
    assert!(close(at_centre(&mut c, "a", t2), RED), "back");
}

#[test]
fn the_loudest_speaker_gets_the_large_tile_and_keeps_it_through_silence() {
    let t0 = Instant::now();
    let mut c = Compositor::new(config(Layout::Speaker), None).unwrap();
    for (t, p) in [("a", "alice"), ("b", "bob"), ("c", "carol")] {
        c.join(t, p, p);
        c.frame(t, I420::filled(320, 180, RED).unwrap(), t0);
    }
    c.audio_level("bob", -20, t0);
    c.audio_level("carol", -40, t0);
    c.audio_level("alice", -90, t0);
    c.render(t0);
    assert_eq!(c.speaker(), Some("bob"));
    assert_eq!(c.tile_of("b").unwrap(), Rect::new(0, 0, 640, 270));
    // Silence: bob stays.
    c.render(t0 + Duration::from_secs(5));
    assert_eq!(c.speaker(), Some("bob"));
    c.audio_level("carol", -30, t0 + Duration::from_secs(6));
    c.render(t0 + Duration::from_secs(6));
    assert_eq!(c.speaker(), Some("carol"));
    assert_eq!(c.tile_of("c").unwrap().w, 640);
    c.leave("c");
    assert_eq!(c.speaker(), None, "the speaker left");
}

#[test]
fn labels_are_drawn_inside_their_tiles() {
    let now = Instant::now();
    let font = Arc::new(Font::load(std::path::Path::new(DEFAULT_FONT)).unwrap());
    let mut plain = Compositor::new(config(Layout::Grid), None).unwrap();
    let mut labelled = Compositor::new(config(Layout::Grid), Some(font)).unwrap();
    for c in [&mut plain, &mut labelled] {
        c.join("a", "alice", "Alice");
        c.join("b", "bob", "Bob");
        c.frame("a", I420::filled(320, 240, RED).unwrap(), now);
    }
    let a = plain.render(now).clone();
    let b = labelled.render(now).clone();
    let tile = labelled.tile_of("a").unwrap();
    let mut in_label = 0;
    for y in 0..360 {
        for x in 0..320 {
            if a.y[y * 640 + x] != b.y[y * 640 + x] {
                assert!(tile.contains(x as u32, y as u32));
                assert!(y as u32 > tile.y + tile.h / 2, "the label sits in the lower part: ({x},{y})");
                in_label += 1;
            }
        }
    }
    assert!(in_label > 100);
    // Bob has no frame: his placeholder carries his name in the middle.
    let (cx, cy) = labelled.tile_of("b").unwrap().centre();
    let differs = (cy - 10..cy + 10).any(|y| a.y[(y * 640 + cx) as usize] != b.y[(y * 640 + cx) as usize]);
    assert!(differs, "the placeholder shows the name");
}

#[test]
fn a_bad_canvas_size_is_an_error() {
    let bad = CompositorConfig { width: 641, ..config(Layout::Grid) };
    assert!(Compositor::new(bad, None).is_err());
    let bad = CompositorConfig { width: 0, ..config(Layout::Grid) };
    assert!(Compositor::new(bad, None).is_err());
}

#[test]
fn tiles_follow_the_tracks_publish_order_not_the_order_their_first_frames_came_in() {
    let now = Instant::now();
    let mut c = Compositor::new(config(Layout::Grid), None).unwrap();
    // Blue was published second but its first frame came first.
    c.join_in_order("b", "bob", "Bob", 2);
    c.join_in_order("a", "alice", "Alice", 1);
    c.frame("a", I420::filled(320, 240, RED).unwrap(), now);
    c.frame("b", I420::filled(320, 240, BLUE).unwrap(), now);
    let canvas = c.render(now).clone();
    assert!(close(canvas.rgb_at(160, 180).unwrap(), RED), "the first published on the left");
    assert!(close(canvas.rgb_at(480, 180).unwrap(), BLUE));
    // A later one goes last; a rejoin of a known track keeps its place.
    c.join_in_order("g", "gina", "Gina", 3);
    c.join_in_order("a", "alice", "Alice (renamed)", 1);
    assert_eq!(c.tile_of("a").unwrap().y, 0);
    assert!(c.tile_of("g").unwrap().y > 0, "the third is below");
}
