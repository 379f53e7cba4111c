use std::time::Duration;

use crate::{HeartBeat, HeartBeatTiming, NegotiateError, Version, negotiate_heartbeat, negotiate_version};

#[test]
fn picks_the_highest_supported_version() {
    assert_eq!(negotiate_version(Some("1.2,1.1,1.0")), Ok(Version::V1_2));
    assert_eq!(negotiate_version(Some("1.0,1.1")), Ok(Version::V1_1));
    assert_eq!(negotiate_version(Some(" 1.1 , 2.0")), Ok(Version::V1_1));
    assert_eq!(negotiate_version(Some("1.0")), Ok(Version::V1_0));
    assert_eq!(negotiate_version(None), Ok(Version::V1_0), "no accept-version is a 1.0 client");
    assert_eq!(negotiate_version(Some("2.0,3.0")), Err(NegotiateError::UnsupportedVersion));
    assert_eq!(negotiate_version(Some("")), Err(NegotiateError::UnsupportedVersion));
}

#[test]
fn versions_map_to_subprotocols() {
    for version in Version::ALL {
        assert_eq!(Version::from_subprotocol(version.subprotocol()), Some(version));
        assert_eq!(Version::from_name(version.as_str()), Some(version));
    }
    assert_eq!(Version::from_subprotocol("v12.stomp"), Some(Version::V1_2));
    assert_eq!(Version::from_subprotocol("stomp"), None);
}

#[test]
fn parses_heart_beat_headers() {
    assert_eq!(HeartBeat::parse(Some("10000,10000")), Ok(HeartBeat { send_ms: 10_000, receive_ms: 10_000 }));
    assert_eq!(HeartBeat::parse(Some("0, 5")), Ok(HeartBeat { send_ms: 0, receive_ms: 5 }));
    assert_eq!(HeartBeat::parse(None), Ok(HeartBeat::default()));
    for bad in ["", "1", "1,2,3", "-1,0", "a,b", ",1", "99999999999,0"] {
        assert_eq!(HeartBeat::parse(Some(bad)), Err(NegotiateError::InvalidHeartBeat), "{bad:?}");
    }
    assert_eq!(HeartBeat { send_ms: 25_000, receive_ms: 0 }.to_header(), "25000,0");
}

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

#[test]
fn heart_beats_run_at_the_max_of_both_sides() {
    // stompjs offers 10000,10000; the server can send every 25 s and wants 15 s.
    let client = HeartBeat { send_ms: 10_000, receive_ms: 10_000 };
    let server = HeartBeat { send_ms: 25_000, receive_ms: 15_000 };
    let timing = negotiate_heartbeat(client, server);
    assert_eq!(
        timing,
        HeartBeatTiming {
            send_interval: ms(25_000),
            receive_interval: ms(15_000),
            receive_timeout: ms(30_000)
        }
    );
    let client = HeartBeat { send_ms: 20_000, receive_ms: 30_000 };
    let timing = negotiate_heartbeat(client, server);
    assert_eq!((timing.send_interval, timing.receive_interval), (ms(30_000), ms(20_000)));
}

#[test]
fn zero_on_either_side_means_none() {
    let none = HeartBeatTiming { send_interval: None, receive_interval: None, receive_timeout: None };
    let server = HeartBeat { send_ms: 25_000, receive_ms: 15_000 };
    assert_eq!(negotiate_heartbeat(HeartBeat::default(), server), none);
    assert_eq!(negotiate_heartbeat(HeartBeat { send_ms: 1, receive_ms: 1 }, HeartBeat::default()), none);
    let only_send = negotiate_heartbeat(HeartBeat { send_ms: 0, receive_ms: 5_000 }, server);
    assert_eq!(only_send, HeartBeatTiming { send_interval: ms(25_000), ..none });
}
