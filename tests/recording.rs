//! Recording with a str0m publisher over WHIP (the aiortc and ffmpeg tests are in
//! `e2e/python/test_recording.py`): garbage media costs nothing but that track, audio-only
//! recordings are Ogg/Opus, and a recording stops when its room empties.

mod common;

use std::time::Duration;

use common::media::{OPUS_SILENCE, whip};
use common::{TestServer, http_json};
use switchboard::config::{ChannelOptions, Config};

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    let room = ChannelOptions { join_leave: true, rooms: true, ..ChannelOptions::default() };
    config.namespaces.insert("room".into(), room);
    config.recordings_dir = dir.to_string_lossy().into_owned();
    config
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-rec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Waits until recording `id` satisfies `check`; its JSON.
async fn recording_until(
    server: &TestServer,
    id: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = http_json(server.addr, "GET", &format!("/api/recordings/{id}"), &[], "").await;
        assert_eq!(status, 200, "{v}");
        if check(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "recording never got there: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start(server: &TestServer, room: &str, body: &str) -> String {
    let path = format!("/api/rooms/{room}/recordings");
    let (status, v) =
        http_json(server.addr, "POST", &path, &[("Content-Type", "application/json")], body).await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// Waits until the engine has the WHIP peer's room (its connection is up).
async fn room_up(server: &TestServer, room: &str) {
    let rtc = server.services.rtc.clone().unwrap();
    common::eventually_async("the room has peers", Duration::from_secs(10), || {
        let rtc = rtc.clone();
        let room = room.to_owned();
        async move { rtc.rooms().await.iter().any(|r| r.as_str() == room) }
    })
    .await;
}

#[tokio::test]
async fn garbage_media_records_nothing_for_its_video_and_the_server_goes_on() {
    let dir = temp_dir("garbage");
    let server = TestServer::start(config(&dir)).await;
    // A publisher whose "VP8" and "Opus" frames are random bytes.
    let (junk, junk_peer) =
        whip(server.addr, "room:junk", true, |n| (0..(n % 200 + 1)).map(|_| rand::random::<u8>()).collect())
            .await;
    // And a well-behaved one in another room, recorded at the same time.
    let (good, _) = whip(server.addr, "room:good", false, |_| OPUS_SILENCE.to_vec()).await;
    room_up(&server, "room:junk").await;
    room_up(&server, "room:good").await;
    let bad = start(&server, "room:junk", "").await;
    let fine = start(&server, "room:good", r#"{"audio_only": true}"#).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = recording_until(&server, &bad, |v| v["files"].as_array().is_some_and(|f| !f.is_empty())).await;
    let kinds: Vec<&str> =
        v["files"].as_array().unwrap().iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["audio"], "no VP8 keyframe ever came: no video file; the audio is kept as sent");
    assert_eq!(v["state"], "recording");

    let (status, v) = http_json(server.addr, "DELETE", &format!("/api/recordings/{fine}"), &[], "").await;
    assert_eq!((status, v["state"].as_str()), (200, Some("stopped")), "{v}");
    let file = &v["files"][0];
    assert_eq!((file["kind"].as_str(), file["codec"].as_str()), (Some("audio"), Some("opus")));
    let name = file["name"].as_str().unwrap();
    assert!(name.starts_with("room-good_") && name.ends_with(".ogg"), "{name}");
    let bytes = std::fs::read(dir.join(&fine).join(name)).unwrap();
    assert!(bytes.starts_with(b"OggS") && bytes.windows(8).any(|w| w == b"OpusHead"));
    let mut ogg = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
    let mut packets = Vec::new();
    while let Some(p) = ogg.read_packet().unwrap() {
        packets.push(p);
    }
    assert!(packets[0].data.starts_with(b"OpusHead") && packets[1].data.starts_with(b"OpusTags"));
    let audio = packets[2..].iter().filter(|p| p.data == OPUS_SILENCE).count();
    assert!(audio >= 75, "about 2 s of 20 ms packets, across the RTP clock's wrap: {audio}");
    let granule = packets.last().unwrap().absgp_page();
    assert!(granule.abs_diff(audio as u64 * 960) <= 2 * 960, "granules count samples: {granule} for {audio}");

    // The junk room's recording stops when the room empties.
    let (status, _) = http_json(server.addr, "DELETE", &junk_peer, &[], "").await;
    assert_eq!(status, 200);
    junk.abort();
    let v = recording_until(&server, &bad, |v| v["state"] != "recording").await;
    assert_eq!((v["state"].as_str(), v["reason"].as_str()), (Some("stopped"), Some("room_empty")), "{v}");
    let (status, _) = http_json(server.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(status, 200);
    good.abort();
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
