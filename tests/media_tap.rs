//! The media tap (`switchboard::media::tap`) with a real publisher: a str0m peer sending Opus
//! over WHIP. Its RTP clock starts just below 2^32, so the stream wraps while it is tapped.

mod common;

use std::time::Duration;

use common::TestServer;
use common::media::{OPUS_SILENCE, whip_audio};
use switchboard::config::{ChannelOptions, Config};
use switchboard::media::tap::{Codec, MediaKind, TapEvent};
use switchboard_protocol::ChannelName;

fn rooms_config() -> Config {
    let mut config = Config::default();
    let room = ChannelOptions { join_leave: true, rooms: true, ..ChannelOptions::default() };
    config.namespaces.insert("room".into(), room);
    config
}

async fn next(tap: &mut switchboard::media::tap::MediaTap) -> TapEvent {
    tokio::time::timeout(Duration::from_secs(10), tap.recv()).await.expect("a tap event in time").unwrap()
}

#[tokio::test]
async fn a_tap_sees_tracks_and_frames_with_unwrapped_time_and_goes_on_drop() {
    let server = TestServer::start(rooms_config()).await;
    let rtc = server.services.rtc.clone().unwrap();
    let room = ChannelName::new("room:tap").unwrap();
    let mut tap = rtc.tap(room.clone(), 256).await.unwrap();
    let (publisher, resource) = whip_audio(server.addr, "room:tap").await;

    let TapEvent::TrackAdded(track) = next(&mut tap).await else { panic!("a track first") };
    assert_eq!((track.kind, track.codec, track.clock_rate), (MediaKind::Audio, Codec::Opus, 48_000));
    assert_eq!((track.participant.as_str(), track.room.clone()), ("whip", room.clone()));
    let mut last = None;
    let mut wrapped = false;
    // 150 frames of 20 ms: 3 s, past the publisher's 32-bit wrap at 2 s.
    for _ in 0..150 {
        let TapEvent::Frame(f) = next(&mut tap).await else { panic!("frames only") };
        assert_eq!(&*f.track, track.id.as_str());
        assert_eq!(&f.payload[..], &OPUS_SILENCE[..]);
        assert_eq!(f.clock_rate, 48_000);
        if let Some(prev) = last {
            assert_eq!(f.time, prev + 960, "20 ms apart, across the wrap too");
        }
        wrapped |= f.time > u32::MAX as u64;
        last = Some(f.time);
    }
    assert!(wrapped, "the extended time went past 2^32");

    // A second tap of the same room hears of the flowing track at once.
    let mut late = rtc.tap(room.clone(), 4).await.unwrap();
    assert!(matches!(next(&mut late).await, TapEvent::TrackAdded(t) if t.id == track.id));
    // It never reads: the engine drops its frames and counts them, without waiting.
    let metrics = server.state.metrics.clone();
    common::eventually("dropped frames counted", Duration::from_secs(5), || {
        metrics.media_tap_dropped.get() > 0
    })
    .await;
    // Once it reads again, the next frame says how many it lost and is not contiguous.
    let mut lost = None;
    while lost.is_none() {
        if let TapEvent::Frame(f) = next(&mut late).await
            && f.lost > 0
        {
            assert!(!f.contiguous);
            lost = Some(f.lost);
        }
    }
    // Keyframe requests of audio are harmless no-ops; a request never blocks.
    tap.request_keyframe(&track.id, None);

    drop(late);
    // The WHIP resource is deleted: the first tap hears the track is removed.
    let (status, _) = common::http_json(server.addr, "DELETE", &resource, &[], "").await;
    assert_eq!(status, 200);
    publisher.abort();
    let removed = async {
        loop {
            if let TapEvent::TrackRemoved { track: t } = next(&mut tap).await {
                return t;
            }
        }
    };
    let t = tokio::time::timeout(Duration::from_secs(30), removed).await.expect("track removed");
    assert_eq!(t, track.id);
    server.stop().await;
}
