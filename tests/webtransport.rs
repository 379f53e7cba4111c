//! WebTransport with a non-browser peer: wtransport's own client (a QUIC/HTTP/3 stack this
//! project did not write) against the server in-process on port 0, pinning the development
//! certificate by its hash, as a browser does.

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::{Value, json};
use switchboard::config::ChannelOptions;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, Endpoint, RecvStream, SendStream};

/// The server, and the hash of its development certificate that a client pins.
struct Running {
    server: TestServer,
    hash: [u8; 32],
}

async fn start() -> Running {
    start_with(|_| {}).await
}

async fn start_with(tweak: impl FnOnce(&mut switchboard::config::Config)) -> Running {
    let server = TestServer::with(|config| {
        let game = ChannelOptions { datagrams: true, ..ChannelOptions::default() };
        config.namespaces.insert("game".into(), game);
        tweak(config);
    })
    .await;
    let advert = server.services.webtransport.clone().expect("webtransport is on by default");
    assert_eq!(advert.port, server.addr.port(), "UDP on the TCP port number");
    let (hex, _) = advert.dev_cert().expect("a self-signed certificate");
    let mut hash = [0u8; 32];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    Running { server, hash }
}

async fn connect(r: &Running, path: &str) -> Result<Connection, wtransport::error::ConnectingError> {
    let config = ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([Sha256Digest::new(r.hash)])
        .build();
    let endpoint = Endpoint::client(config).unwrap();
    endpoint.connect(format!("https://127.0.0.1:{}{path}", r.server.addr.port())).await
}

struct Peer {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
    buf: Vec<u8>,
}

impl Peer {
    async fn open(r: &Running) -> Self {
        let conn = connect(r, "/wt").await.expect("session");
        let (send, recv) = conn.open_bi().await.unwrap().await.unwrap();
        Self { conn, send, recv, buf: Vec::new() }
    }

    async fn send(&mut self, v: Value) {
        let p = v.to_string().into_bytes();
        let mut f = vec![0u8];
        f.extend_from_slice(&(p.len() as u32).to_be_bytes());
        f.extend_from_slice(&p);
        self.send.write_all(&f).await.unwrap();
    }

    async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if self.buf.len() >= 5 {
                    let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                    if self.buf.len() >= 5 + len {
                        let v = serde_json::from_slice(&self.buf[5..5 + len]).unwrap();
                        self.buf.drain(..5 + len);
                        return v;
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = self.recv.read(&mut chunk).await.unwrap().expect("stream open");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("a frame within 5 s")
    }

    async fn reply(&mut self, id: u64) -> Value {
        loop {
            let v = self.next().await;
            if v["id"] == id {
                return v;
            }
        }
    }
}

#[tokio::test]
async fn subscribe_and_publish_with_the_wtransport_client() {
    let r = start().await;
    let mut sub = Peer::open(&r).await;
    let mut publisher = Peer::open(&r).await;
    sub.send(json!({"id": 1, "subscribe": {"channel": "news"}})).await;
    assert_eq!(sub.reply(1).await["subscribe"]["channel"], "news");
    for n in 1..=3 {
        publisher.send(json!({"id": n, "publish": {"channel": "news", "data": {"n": n}}})).await;
        assert_eq!(publisher.reply(n).await["publish"]["offset"], n);
    }
    for n in 1..=3 {
        let v = sub.next().await;
        assert_eq!(v["pub"]["data"]["n"], n, "{v}");
    }

    // Resume on a new session from the last position: nothing lost, nothing twice.
    sub.conn.close(0u32.into(), b"");
    for n in 4..=5 {
        publisher.send(json!({"id": 10 + n, "publish": {"channel": "news", "data": {"n": n}}})).await;
        publisher.reply(10 + n).await;
    }
    let mut again = Peer::open(&r).await;
    again.send(json!({"id": 1, "history": {"channel": "news", "limit": 1, "reverse": true}})).await;
    let top = again.reply(1).await;
    let ep = top["history"]["epoch"].clone();
    again.send(json!({"id": 2, "subscribe": {"channel": "news", "since": {"epoch": ep, "offset": 3}}})).await;
    let reply = again.reply(2).await;
    assert_eq!(reply["subscribe"]["recovered"], true, "{reply}");
    assert_eq!(reply["subscribe"]["replayed"], 2);
    assert_eq!(again.next().await["pub"]["data"]["n"], 4);
    assert_eq!(again.next().await["pub"]["data"]["n"], 5);
}

#[tokio::test]
async fn datagram_subscriptions_arrive_as_datagrams() {
    let r = start().await;
    let mut sub = Peer::open(&r).await;
    sub.send(json!({"id": 1, "subscribe": {"channel": "game:1", "datagram": true}})).await;
    assert!(sub.reply(1).await.get("subscribe").is_some());
    let mut publisher = Peer::open(&r).await;
    publisher.send(json!({"id": 1, "publish": {"channel": "game:1", "data": {"x": 1}}})).await;
    publisher.reply(1).await;
    let dg =
        tokio::time::timeout(Duration::from_secs(5), sub.conn.receive_datagram()).await.unwrap().unwrap();
    assert_eq!(dg.payload()[0], 0, "a text datagram");
    let v: Value = serde_json::from_slice(&dg.payload()[1..]).unwrap();
    assert_eq!(v["pub"]["data"]["x"], 1);
}

#[tokio::test]
async fn other_paths_are_refused_and_garbage_closes_with_3500() {
    let r = start().await;
    assert!(connect(&r, "/nope").await.is_err(), "only /wt takes sessions");
    let mut p = Peer::open(&r).await;
    p.send.write_all(b"\x09garbage").await.unwrap();
    let v = p.next().await;
    assert_eq!(v["disconnect"]["code"], 3500, "{v}");
    let closed = tokio::time::timeout(Duration::from_secs(5), p.conn.closed()).await.unwrap();
    assert!(closed.to_string().contains("3500") || closed.to_string().contains("bad request"), "{closed}");
}

#[tokio::test]
async fn sessions_count_in_the_connections_per_ip_with_every_other_transport() {
    let r = start_with(|c| c.max_connections_per_ip = 2).await;
    let mut ws = r.server.client().websocket().await.unwrap();
    ws.subscribe("a", None).await.unwrap();
    let mut first = Peer::open(&r).await;
    first.send(json!({"id": 1, "subscribe": {"channel": "a"}})).await;
    first.reply(1).await;
    // The address holds two connections: a WebSocket and a session. A third session is refused
    // before it is established (429).
    let refused = connect(&r, "/wt").await;
    assert!(refused.is_err(), "a third connection from the address is refused");
    assert_eq!(r.server.state.metrics.refused_per_ip.get(), 1);
    // The WebSocket's place comes back when it closes; a session takes it.
    drop(ws);
    common::eventually("the WebSocket's place is free", Duration::from_secs(10), || {
        r.server.state.admission.from_ip("127.0.0.1".parse().unwrap()) == 1
    })
    .await;
    let mut second = Peer::open(&r).await;
    second.send(json!({"id": 1, "subscribe": {"channel": "a"}})).await;
    second.reply(1).await;
    r.server.stop().await;
}
