//! Idle WebTransport sessions for `bench/memory.py`: opens subscribed sessions to a running
//! server and holds them, so that the server's RSS slope per session can be read.
//!
//! `cargo run --release --example wt_idle -- http://127.0.0.1:PORT`, then on stdin:
//! `open N` opens N more sessions (one QUIC connection each, through one client endpoint), each
//! subscribing to `idle` on its protocol stream, and answers `ok TOTAL` once every one of them
//! has its subscribe reply; anything else (or the end of stdin) closes them all. Sessions answer the
//! server's pings. The certificate is pinned by the hash the server serves at `/wt/cert-hash`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Endpoint, RecvStream, SendStream};

/// One frame of the JSON protocol over a WebTransport stream: a type byte (0: JSON text), the
/// length, the bytes.
fn frame(json: &str) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(json.as_bytes());
    frame
}

async fn read_frame(recv: &mut RecvStream) -> Option<Vec<u8>> {
    let mut head = [0u8; 5];
    recv.read_exact(&mut head).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize];
    recv.read_exact(&mut body).await.ok()?;
    Some(body)
}

/// Holds one subscribed session until it ends, answering pings; counts it in `ready` once its
/// subscribe reply came.
async fn hold(
    mut send: SendStream,
    mut recv: RecvStream,
    ready: Arc<AtomicUsize>,
    ready_tx: tokio::sync::mpsc::Sender<()>,
) {
    let subscribe = frame(r#"{"id":1,"subscribe":{"channel":"idle"}}"#);
    if send.write_all(&subscribe).await.is_err() {
        return;
    }
    let mut counted = false;
    while let Some(body) = read_frame(&mut recv).await {
        if body.starts_with(b"{\"ping\"") {
            if send.write_all(&frame(r#"{"pong":{}}"#)).await.is_err() {
                return;
            }
        } else if !counted && body.starts_with(b"{\"id\":1") {
            counted = true;
            ready.fetch_add(1, Ordering::Relaxed);
            let _ = ready_tx.send(()).await;
        }
    }
    eprintln!("wt_idle: a session ended");
}

/// The body of `GET path` (HTTP/1.0: the server closes when done).
async fn get(addr: &str, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("the server");
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.expect("a response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"), "{head}");
    body.to_owned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = wtransport::tls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let base = std::env::args().nth(1).expect("usage: wt_idle http://127.0.0.1:PORT");
    let addr = base.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let advert = get(&addr, "/wt/cert-hash").await;
    let advert: serde_json::Value = serde_json::from_str(&advert).expect("the certificate's hash");
    let hex = advert["hash"].as_str().expect("a hash").replace(':', "");
    let mut hash = [0u8; 32];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("a hex hash");
    }
    let host = addr.split(':').next().unwrap_or("127.0.0.1").to_owned();
    let url = format!("https://{host}:{}{}", advert["port"], advert["path"].as_str().unwrap_or("/wt"));
    let config = ClientConfig::builder()
        .with_bind_default()
        .with_server_certificate_hashes([Sha256Digest::new(hash)])
        .build();
    let endpoint = Endpoint::client(config).expect("a client endpoint");

    let ready = Arc::new(AtomicUsize::new(0));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(1024);
    let mut sessions = Vec::new();
    // Stdin read on a thread of its own (the crate's tokio has no `io-std`).
    let (line_tx, mut lines) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if line_tx.blocking_send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let Some(n) = line.strip_prefix("open ").and_then(|n| n.trim().parse::<usize>().ok()) else { break };
        let target = sessions.len() + n;
        while sessions.len() < target {
            let conn = endpoint.connect(&url).await.expect("a session");
            let (send, recv) = conn.open_bi().await.expect("a stream").await.expect("a stream");
            tokio::spawn(hold(send, recv, ready.clone(), ready_tx.clone()));
            sessions.push(conn);
        }
        while ready.load(Ordering::Relaxed) < target {
            if ready_rx.recv().await.is_none() {
                break;
            }
        }
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "ok {}", ready.load(Ordering::Relaxed));
        let _ = out.flush();
    }
    drop(sessions);
}
