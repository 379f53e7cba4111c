//! The sans-IO server fed arbitrary datagrams from a client and a peer must never panic.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchboard_turn::{Input, Metrics, Output, RelayId, Transport, TurnConfig, TurnServer};

fuzz_target!(|data: &[u8]| {
    let mut config = TurnConfig { allow_loopback_peers: true, ..TurnConfig::default() };
    config.static_users.insert("alice".into(), "pw".into());
    config.auth_secret = Some("secret".into());
    let now = Instant::now();
    let mut server = TurnServer::new(&config, Arc::new(Metrics::default()), now, 1_700_000_000).unwrap();
    let client = "127.0.0.1:5000".parse().unwrap();
    let peer = "127.0.0.1:9".parse().unwrap();
    // Split the input into datagrams at 0xFF 0xFF markers.
    for (i, chunk) in data.split(|&b| b == 0xFF).enumerate() {
        let t = now + Duration::from_secs(i as u64);
        let transport = if i % 2 == 0 { Transport::Udp } else { Transport::Tcp };
        server.handle_input(t, Input::FromClient { transport, from: client, data: chunk });
        server.handle_input(t, Input::FromPeer { relay: RelayId(1), from: peer, data: chunk });
        loop {
            match server.poll_output() {
                Output::Timeout(_) => break,
                Output::BindRelay { relay, .. } => {
                    let local = Some("127.0.0.1:50000".parse().unwrap());
                    server.handle_input(t, Input::RelayBound { relay, local });
                }
                _ => {}
            }
        }
    }
});
