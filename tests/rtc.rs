//! WebRTC signaling rules and the SFU endpoints' answers to bad input. Media itself is tested
//! with real peers in `e2e/` (Chromium) and `e2e/python` (aiortc).

mod common;

use common::backend::{Backend, Kind, free_port};
use common::{TestServer, http_json, http_request, next_ws_event};
use switchboard::config::{ChannelOptions, Config};
use switchboard_client::{Error, Event};

fn rooms_config() -> Config {
    let mut config = Config::default();
    let room = ChannelOptions { join_leave: true, rooms: true, ..ChannelOptions::default() };
    config.namespaces.insert("room".into(), room);
    config
}

fn command_code<T: std::fmt::Debug>(r: Result<T, Error>) -> u32 {
    match r {
        Err(Error::Command { code, .. }) => code,
        other => panic!("expected a command error, got {other:?}"),
    }
}

/// The next publication pushed to `ws` on a signaling inbox (room channels also carry the SFU's
/// track lists).
async fn next_publication(ws: &mut switchboard_client::WsConnection) -> switchboard_client::Publication {
    loop {
        if let Event::Publication(p) = next_ws_event(ws).await
            && p.channel.contains('@')
        {
            return p;
        }
    }
}

#[tokio::test]
async fn signaling_inboxes_are_private_and_only_for_participants() {
    let server = TestServer::start(rooms_config()).await;
    let client = server.client();
    let (mut ann, mut bob, mut eve) = (
        client.websocket().await.unwrap(),
        client.websocket().await.unwrap(),
        client.websocket().await.unwrap(),
    );
    let a = ann.connect(None, Some("ann")).await.unwrap().client;
    let b = bob.connect(None, Some("bob")).await.unwrap().client;
    eve.connect(None, Some("eve")).await.unwrap();
    for ws in [&mut ann, &mut bob] {
        ws.subscribe("room:r", None).await.unwrap();
    }
    let (inbox_a, inbox_b) = (format!("room:r@{a}"), format!("room:r@{b}"));
    ann.subscribe(&inbox_a, None).await.unwrap();
    bob.subscribe(&inbox_b, None).await.unwrap();

    // Someone else's inbox cannot be read, by a participant or anyone.
    assert_eq!(command_code(ann.subscribe(&inbox_b, None).await), 103);
    assert_eq!(command_code(eve.subscribe(&inbox_b, None).await), 103);
    // Only participants may signal, and only to participants.
    assert_eq!(command_code(eve.publish(&inbox_b, &serde_json::json!({"type": "offer"})).await), 103);
    assert_eq!(command_code(ann.publish("room:r@nobody", &serde_json::json!({"type": "offer"})).await), 102);

    // A signal reaches its addressee with the sender stamped by the server.
    ann.publish(&inbox_b, &serde_json::json!({"type": "offer", "sdp": "v=0"})).await.unwrap();
    let p = next_publication(&mut bob).await;
    assert_eq!(p.channel, inbox_b);
    assert_eq!(p.data.unwrap()["type"], "offer");
    assert_eq!(p.info.expect("sender info").client, a);

    // Inboxes are not in presence: the room lists its participants only.
    let present = ann.presence("room:r").await.unwrap();
    assert_eq!(present.clients.len(), 2);
    // Leaving the room ends the right to signal into it.
    bob.publish(&inbox_a, &serde_json::json!({"type": "answer"})).await.unwrap();
    assert_eq!(next_publication(&mut ann).await.info.unwrap().client, b);
    bob.unsubscribe("room:r").await.unwrap();
    assert_eq!(command_code(bob.publish(&inbox_a, &serde_json::json!({"type": "bye"})).await), 103);
    server.stop().await;
}

/// An SDP offer with `n` audio m-lines (Opus).
fn audio_offer(n: usize) -> String {
    let mut sdp = String::from(
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 \
         AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA:AA\r\n",
    );
    let mids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    sdp.push_str(&format!("a=group:BUNDLE {}\r\n", mids.join(" ")));
    for i in 0..n {
        sdp.push_str(&format!(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\na=sendonly\r\na=ice-ufrag:abcd\r\n\
             a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
        ));
    }
    sdp
}

#[tokio::test]
async fn sfu_endpoints_answer_bad_input_with_codes_and_others_carry_on() {
    let server = TestServer::start(rooms_config()).await;
    let client = server.client();
    let (mut ann, mut bob) = (client.websocket().await.unwrap(), client.websocket().await.unwrap());
    let a = ann.connect(None, Some("ann")).await.unwrap().client;
    let b = bob.connect(None, Some("bob")).await.unwrap().client;
    ann.subscribe("room:r", None).await.unwrap();
    bob.subscribe("room:r", None).await.unwrap();
    bob.subscribe(&format!("room:r@{b}"), None).await.unwrap();

    let json = [("Content-Type", "application/json")];
    let post = |path: &'static str, body: String| {
        let addr = server.addr;
        async move { http_json(addr, "POST", path, &json, &body).await }
    };
    let code =
        |(status, body): (u16, serde_json::Value)| (status, body["error"]["code"].as_u64().unwrap_or(0));
    let join = |client: &str, sdp: &str| serde_json::json!({"client": client, "sdp": sdp}).to_string();

    assert_eq!(code(post("/rtc/sfu/room:r", "{not json".into()).await), (400, 107));
    assert_eq!(
        code(post("/rtc/sfu/room:r", join("stranger", &audio_offer(1))).await),
        (404, 102),
        "not in the room"
    );
    assert_eq!(
        code(post("/rtc/sfu/chat:r", join(&a, &audio_offer(1))).await),
        (404, 102),
        "not a rooms namespace"
    );
    assert_eq!(code(post("/rtc/sfu/room:r@x", join(&a, &audio_offer(1))).await), (404, 102), "an inbox");
    assert_eq!(
        code(post("/rtc/sfu/room:r", join(&a, "v=0\r\nm=nonsense")).await),
        (400, 107),
        "malformed SDP"
    );
    let max = Config::default().rtc_max_tracks;
    assert_eq!(
        code(post("/rtc/sfu/room:r", join(&a, &audio_offer(max + 1))).await),
        (413, 106),
        "too many tracks"
    );
    let patch = http_json(server.addr, "PATCH", "/rtc/peers/0123", &json, "{}").await;
    assert_eq!(code(patch), (404, 102), "unknown peer");
    let (status, body) = post("/rtc/sfu/room:r", join(&a, &audio_offer(1))).await;
    assert_eq!(status, 201, "a well-formed offer is answered: {body}");
    assert!(body["sdp"].as_str().unwrap().contains("a=recvonly"), "{body}");
    let peer = body["peer"].as_str().unwrap().to_owned();
    let subscribe_own = serde_json::json!({"subscribe": {"0": "no-such-track"}}).to_string();
    let path = format!("/rtc/peers/{peer}");
    let (status, body) = http_json(server.addr, "PATCH", &path, &json, &subscribe_own).await;
    assert_eq!(
        (status, body["error"]["code"].as_u64()),
        (409, Some(107)),
        "m-line 0 sends, it cannot receive"
    );
    assert_eq!(http_json(server.addr, "DELETE", &path, &[], "").await.0, 200);

    // None of it disturbed the room's signaling.
    ann.publish(&format!("room:r@{b}"), &serde_json::json!({"type": "offer"})).await.unwrap();
    assert_eq!(next_publication(&mut bob).await.info.unwrap().client, a);
    server.stop().await;
}

#[tokio::test]
async fn webrtc_off_answers_503() {
    let server = TestServer::start(Config { rtc: false, ..rooms_config() }).await;
    let body = serde_json::json!({"client": "x", "sdp": "v=0"}).to_string();
    let (status, v) =
        http_json(server.addr, "POST", "/rtc/sfu/room:r", &[("Content-Type", "application/json")], &body)
            .await;
    assert_eq!((status, v["error"]["code"].as_u64()), (503, Some(108)));
    let (status, _) =
        http_json(server.addr, "POST", "/whip/room:r", &[("Content-Type", "application/sdp")], "v=0").await;
    assert_eq!(status, 503);
    server.stop().await;
}

/// A str0m peer on its own loopback socket: the browser's side of a peer connection.
struct TestPeer {
    rtc: str0m::Rtc,
    socket: tokio::net::UdpSocket,
    local: std::net::SocketAddr,
}

impl TestPeer {
    async fn new() -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let mut rtc = str0m::Rtc::builder().build(std::time::Instant::now());
        rtc.add_local_candidate(str0m::Candidate::host(local, "udp").unwrap());
        Self { rtc, socket, local }
    }

    /// Sends what the peer has queued; the time of its next timer.
    fn flush(&mut self) -> Option<std::time::Instant> {
        while self.rtc.is_alive() {
            match self.rtc.poll_output().unwrap() {
                str0m::Output::Timeout(t) => return Some(t),
                str0m::Output::Transmit(t) => drop(self.socket.try_send_to(&t.contents, t.destination)),
                str0m::Output::Event(str0m::Event::Connected) => return None,
                str0m::Output::Event(_) => {}
            }
        }
        None
    }

    /// Drives the peer until it connects.
    async fn connect(&mut self) {
        let mut buf = vec![0u8; 2048];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let Some(next) = self.flush() else { return };
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    let (n, source) = r.unwrap();
                    let receive = str0m::net::Receive {
                        proto: str0m::net::Protocol::Udp,
                        source,
                        destination: self.local,
                        contents: buf[..n].try_into().unwrap(),
                    };
                    self.rtc.handle_input(str0m::Input::Receive(std::time::Instant::now(), receive)).unwrap();
                }
                _ = tokio::time::sleep_until(next.into()) => {
                    self.rtc.handle_input(str0m::Input::Timeout(std::time::Instant::now())).unwrap();
                }
                _ = tokio::time::sleep_until(deadline) => panic!("the peer did not connect in time"),
            }
        }
    }
}

/// A browser leaving closes its peer connection (DTLS `close_notify`: the server drops the peer
/// at once), then sends the SDK's `DELETE`, which must not be told the peer is unknown.
#[tokio::test]
async fn deleting_a_peer_that_already_hung_up_answers_200() {
    let server = TestServer::start(rooms_config()).await;
    let mut ws = server.client().websocket().await.unwrap();
    let me = ws.connect(None, Some("ann")).await.unwrap().client;
    ws.subscribe("room:r", None).await.unwrap();

    let mut peer = TestPeer::new().await;
    let mut change = peer.rtc.sdp_api();
    change.add_media(str0m::media::MediaKind::Audio, str0m::media::Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let json = [("Content-Type", "application/json")];
    let body = serde_json::json!({"client": me, "sdp": offer.to_sdp_string()}).to_string();
    let (status, v) = http_json(server.addr, "POST", "/rtc/sfu/room:r", &json, &body).await;
    assert_eq!(status, 201, "{v}");
    let answer = str0m::change::SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap()).unwrap();
    peer.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    peer.connect().await;

    peer.rtc.close().unwrap();
    peer.flush();
    let path = format!("/rtc/peers/{}", v["peer"].as_str().unwrap());
    // The server drops the peer on its close_notify: a PATCH no longer finds it.
    let dropped = async {
        while http_json(server.addr, "PATCH", &path, &json, "{}").await.0 != 404 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), dropped)
        .await
        .expect("the server drops the peer");
    assert_eq!(http_json(server.addr, "DELETE", &path, &[], "").await.0, 200, "the peer is gone, as asked");
    let (status, v) = http_json(server.addr, "DELETE", &path, &[], "").await;
    assert_eq!((status, v["error"]["code"].as_u64()), (404, Some(102)), "the DELETE removed the resource");
    let (status, _) = http_json(server.addr, "DELETE", "/rtc/peers/0123", &[], "").await;
    assert_eq!(status, 404, "a peer this node never had");
    server.stop().await;
}

fn token(claims: serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(b"room-secret");
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

#[tokio::test]
async fn tokens_grant_rooms_and_with_them_the_inbox_and_the_sfu() {
    let server = TestServer::start(Config { token_secret: "room-secret".into(), ..rooms_config() }).await;
    let client = server.client();
    let (mut ann, mut bob) = (client.websocket().await.unwrap(), client.websocket().await.unwrap());
    let grant = token(serde_json::json!({"sub": "ann", "subs": ["room:granted"], "pubs": []}));
    let a = ann.connect(Some(&grant), None).await.unwrap().client;
    let b = bob.connect(Some(&token(serde_json::json!({"sub": "bob"}))), None).await.unwrap().client;
    // The room grants its inbox: no pattern for `room:granted@...` is needed, and `pubs: []`
    // does not stop signaling to a participant.
    ann.subscribe("room:granted", None).await.unwrap();
    ann.subscribe(&format!("room:granted@{a}"), None).await.unwrap();
    assert_eq!(command_code(ann.subscribe("room:other", None).await), 103);
    assert_eq!(command_code(ann.subscribe(&format!("room:other@{a}"), None).await), 103);
    bob.subscribe("room:granted", None).await.unwrap();
    ann.publish(&format!("room:granted@{b}"), &serde_json::json!({"type": "offer"})).await.unwrap();

    // The SFU takes the participant's own token, not someone else's.
    let body = serde_json::json!({"client": a, "sdp": audio_offer(1)}).to_string();
    let json = ("Content-Type", "application/json");
    let as_bob = format!("Bearer {}", token(serde_json::json!({"sub": "bob"})));
    let (status, _) =
        http_json(server.addr, "POST", "/rtc/sfu/room:granted", &[json, ("Authorization", &as_bob)], &body)
            .await;
    assert_eq!(status, 403, "bob cannot join the SFU as ann");
    let (status, _) = http_json(server.addr, "POST", "/rtc/sfu/room:granted", &[json], &body).await;
    assert_eq!(status, 401, "a token is needed");
    let as_ann = format!("Bearer {grant}");
    let (status, v) =
        http_json(server.addr, "POST", "/rtc/sfu/room:granted", &[json, ("Authorization", &as_ann)], &body)
            .await;
    assert_eq!(status, 201, "{v}");
    server.stop().await;
}

/// Reads `ws` until it ends; the close code, if it sent one.
async fn close_code(ws: &mut switchboard_client::WsConnection) -> Option<u16> {
    loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next_event()).await;
        match next.expect("the connection ends in time") {
            Some(Ok(Event::Disconnected { code, .. })) => return Some(code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// A WebSocket client in `room:r` that watches its joins and leaves.
async fn watcher(server: &TestServer) -> switchboard_client::WsConnection {
    let mut watcher = server.client().websocket().await.unwrap();
    watcher.connect(None, Some("watcher")).await.unwrap();
    watcher.subscribe("room:r", None).await.unwrap();
    watcher
}

#[tokio::test]
async fn a_session_token_moves_the_client_id_and_its_presence_to_a_new_connection() {
    let server = TestServer::start(rooms_config()).await;
    let client = server.client();
    let mut watcher = watcher(&server).await;

    let mut old = client.websocket().await.unwrap();
    let first = old.connect(None, Some("ann")).await.unwrap();
    assert!(!first.session.is_empty());
    old.subscribe("room:r", None).await.unwrap();

    // The old connection is still open (half-open, as after a network change) when the client
    // comes back with its session: the new connection gets the id, the old one is ended.
    let mut new = client.websocket().await.unwrap();
    let again = new.resume(None, Some("ann"), Some(&first.session)).await.unwrap();
    assert_eq!(again.client, first.client);
    assert_eq!(close_code(&mut old).await, Some(3504), "the displaced connection hears why");
    new.subscribe("room:r", None).await.unwrap();
    let present = watcher.presence("room:r").await.unwrap();
    assert!(present.clients.contains_key(&first.client), "the old connection's leave did not undo the join");
    assert_eq!(present.clients.len(), 2);
    // Its inbox is its own again.
    new.subscribe(&format!("room:r@{}", first.client), None).await.unwrap();

    // A forged or foreign session gets a fresh id.
    let mut other = client.websocket().await.unwrap();
    let forged = format!("{}0", first.session);
    assert_ne!(other.resume(None, None, Some(&forged)).await.unwrap().client, first.client);
    server.stop().await;
}

#[tokio::test]
async fn signaling_over_http_needs_the_session_of_a_participant() {
    let server = TestServer::start(rooms_config()).await;
    let client = server.client();
    let addr = server.addr;
    let (mut ann, mut bob, mut eve) = (
        client.websocket().await.unwrap(),
        client.websocket().await.unwrap(),
        client.websocket().await.unwrap(),
    );
    let a = ann.connect(None, Some("ann")).await.unwrap();
    let b = bob.connect(None, Some("bob")).await.unwrap().client;
    let e = eve.connect(None, Some("eve")).await.unwrap();
    for ws in [&mut ann, &mut bob] {
        ws.subscribe("room:r", None).await.unwrap();
    }
    bob.subscribe(&format!("room:r@{b}"), None).await.unwrap();
    let publish = |session: &str, to: &str| {
        let body = serde_json::json!({"channel": format!("room:r@{to}"), "data": {"type": "offer"}, "session": session});
        async move {
            let headers = [("Content-Type", "application/json")];
            http_json(addr, "POST", "/api/publish", &headers, &body.to_string()).await
        }
    };
    let code = |r: (u16, serde_json::Value)| (r.0, r.1["error"]["code"].as_u64().unwrap_or(0));
    assert_eq!(code(publish(&e.session, &b).await), (403, 103), "eve is not in the room");
    assert_eq!(code(publish(&a.session, "nobody").await), (404, 102));
    assert_eq!(code(publish(&format!("{}0", a.session), &b).await), (401, 101));
    // Elsewhere a session the server cannot verify only fails to name the sender.
    let news = serde_json::json!({"channel": "news", "data": 1, "session": format!("{}0", a.session)});
    let headers = [("Content-Type", "application/json")];
    let (status, _) = http_json(addr, "POST", "/api/publish", &headers, &news.to_string()).await;
    assert_eq!(status, 200);
    let (status, _) = publish(&a.session, &b).await;
    assert_eq!(status, 200);
    let p = next_publication(&mut bob).await;
    let info = p.info.expect("sender info");
    assert_eq!((info.client.as_str(), info.name.as_deref()), (a.client.as_str(), Some("ann")));
    server.stop().await;
}

/// `GET /stream?QUERY` on a raw connection: the connection and its `connected` object.
async fn open_stream(
    addr: std::net::SocketAddr,
    query: &str,
) -> (tokio::io::BufReader<tokio::net::TcpStream>, serde_json::Value) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET /stream?{query} HTTP/1.1\r\nHost: localhost\r\nAccept: application/x-ndjson\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut reader = tokio::io::BufReader::new(tcp);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).await.unwrap() > 0, "the stream ended before `connected`");
        if let Some(start) = line.find("{\"connected\"") {
            let v: serde_json::Value = serde_json::from_str(line[start..].trim()).unwrap();
            return (reader, v["connected"].clone());
        }
    }
}

#[tokio::test]
async fn a_streaming_client_reopening_with_its_session_stays_present_without_a_leave() {
    let server = TestServer::start(rooms_config()).await;
    let mut watcher = watcher(&server).await;
    let own = watcher.presence("room:r").await.unwrap().clients.into_keys().next().unwrap();

    let (_first, connected) = open_stream(server.addr, "channel=room:r&name=ann").await;
    let (id, session) = (connected["client"].as_str().unwrap(), connected["session"].as_str().unwrap());
    // A reopen for one more channel (its inbox) while the first response is still open, as the
    // SDK does when a subscription is added.
    let query = format!("channel=room:r&channel=room:r@{id}&name=ann&session={session}");
    let (_second, again) = open_stream(server.addr, &query).await;
    assert_eq!(again["client"], connected["client"]);
    watcher.publish("room:r", &serde_json::json!({"mark": 1})).await.unwrap();
    let mut seen = Vec::new();
    loop {
        match next_ws_event(&mut watcher).await {
            Event::Join(p) if p.info.client != own => seen.push(format!("join {}", p.info.client)),
            Event::Leave(p) => seen.push(format!("leave {}", p.info.client)),
            Event::Publication(p) if p.data.as_ref().is_some_and(|d| d["mark"] == 1) => break,
            _ => {}
        }
    }
    assert_eq!(seen, vec![format!("join {id}")], "one join, and no leave/join for the reopen");
    let present = watcher.presence("room:r").await.unwrap();
    assert!(present.clients.contains_key(id));
    server.stop().await;
}

/// Two nodes on a real `kind` backend, each knowing its own URL (`node_url`).
async fn cluster(kind: Kind) -> Option<(Backend, TestServer, TestServer)> {
    let backend = Backend::start(kind)?;
    let node = |port: u16| Config {
        broker: backend.url(),
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        node_url: format!("http://127.0.0.1:{port}"),
        turn: false,
        ..rooms_config()
    };
    let a = TestServer::start_on(node(free_port())).await;
    let b = TestServer::start_on(node(free_port())).await;
    Some((backend, a, b))
}

async fn a_room_lives_on_the_node_that_claimed_it(kind: Kind) {
    let Some((_backend, a, b)) = cluster(kind).await else { return };
    // Ann is connected to B; the room's media starts on A, where she first posts.
    let mut ann = b.client().websocket().await.unwrap();
    let me = ann.connect(None, Some("ann")).await.unwrap().client;
    ann.subscribe("room:x", None).await.unwrap();
    // Her presence is added beside the subscribe reply: wait until A reads it from the broker.
    for _ in 0..100 {
        let (_, present) = http_json(a.addr, "GET", "/api/presence?channel=room%3Ax", &[], "").await;
        if present["clients"].get(&me).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let json = [("Content-Type", "application/json")];
    let body = serde_json::json!({"client": me, "sdp": audio_offer(1)}).to_string();
    let (status, head, opened) = http_request(a.addr, "POST", "/rtc/sfu/room%3Ax", &json, &body).await;
    assert_eq!(status, 201, "{opened}");
    let url = format!("{}/rtc/peers/{}", a.url(), opened["peer"].as_str().unwrap());
    assert_eq!(opened["url"], url.as_str(), "the resource names its node");
    assert!(head.to_ascii_lowercase().contains(&format!("location: {}", url.to_ascii_lowercase())), "{head}");

    // B sends SFU participants to A (JSON, for the SDK) and WHIP/WHEP clients (a redirect).
    let (status, refused) = http_json(b.addr, "POST", "/rtc/sfu/room%3Ax", &json, &body).await;
    assert_eq!((status, refused["error"]["code"].as_u64()), (421, Some(111)), "{refused}");
    assert_eq!(refused["node"], a.url().as_str());
    let sdp = [("Content-Type", "application/sdp")];
    let (status, head, _) = http_request(b.addr, "POST", "/whep/room%3Ax?x=1", &sdp, &audio_offer(1)).await;
    assert_eq!(status, 307);
    let to = format!("location: {}/whep/room%3Ax?x=1", a.url()).to_ascii_lowercase();
    assert!(head.to_ascii_lowercase().contains(&to), "{head}");
    let (status, _, _) = http_request(a.addr, "POST", "/whip/room%3Ax", &sdp, &audio_offer(1)).await;
    assert_eq!(status, 201, "A serves its room");
    // Rooms spread: the next one is B's, because it was asked first.
    let (status, _, _) = http_request(b.addr, "POST", "/whip/room%3Ay", &sdp, &audio_offer(1)).await;
    assert_eq!(status, 201);
    let (status, _, _) = http_request(a.addr, "POST", "/whip/room%3Ay", &sdp, &audio_offer(1)).await;
    assert_eq!(status, 307);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_lives_on_the_node_that_claimed_it_with_redis() {
    a_room_lives_on_the_node_that_claimed_it(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_lives_on_the_node_that_claimed_it_with_nats() {
    a_room_lives_on_the_node_that_claimed_it(Kind::Nats).await;
}
