//! The HTTP listener: header, idle and body timeouts, per-IP socket caps at accept, readiness
//! while draining, SIGTERM on the real binary, and HTTPS (HTTP/2 and 1.1, certificate reload).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestServer, eventually_async, http_request};
use futures_util::SinkExt;
use switchboard::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound on "the server closes it": far above every timeout the tests configure, so
/// hitting it means the timeout never fired.
const LIMIT: Duration = Duration::from_secs(20);

/// Reads until the server closes the socket; everything read.
async fn read_until_closed(tcp: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let read = tokio::time::timeout(LIMIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close the socket within {LIMIT:?}");
    String::from_utf8_lossy(&all).into_owned()
}

/// Reads one response head (through the blank line).
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 1];
    tokio::time::timeout(LIMIT, async {
        while !all.ends_with(b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.expect("a response");
            assert!(n > 0, "closed before a response head: {}", String::from_utf8_lossy(&all));
            all.push(buf[0]);
        }
    })
    .await
    .expect("a response head");
    String::from_utf8_lossy(&all).into_owned()
}

fn get(path: &str, port: u16) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
}

/// A keep-alive request on a fresh socket, its response head read; the socket stays open.
async fn served(addr: SocketAddr) -> Option<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    tcp.write_all(get("/healthz", addr.port()).as_bytes()).await.ok()?;
    let mut buf = [0u8; 12];
    match tokio::time::timeout(LIMIT, tcp.read_exact(&mut buf)).await {
        Ok(Ok(_)) if buf.starts_with(b"HTTP/1.1 200") => Some(tcp),
        _ => None,
    }
}

#[tokio::test]
async fn a_half_sent_header_is_closed_after_the_header_timeout() {
    let server = TestServer::with(|c| c.http_header_timeout = 1).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
    let got = read_until_closed(&mut tcp).await;
    assert!(!got.contains("200 OK"), "no response to half a request: {got}");
    let metrics = metrics_text(server.addr).await;
    assert!(!metrics.contains("switchboard_http_timeouts_total{timeout=\"header\"} 0"), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn a_socket_that_never_sends_is_closed_after_the_header_timeout() {
    let server = TestServer::with(|c| c.http_header_timeout = 1).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(read_until_closed(&mut tcp).await, "");
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_while_sse_and_a_websocket_live_on() {
    let server = TestServer::with(|c| {
        c.http_idle_timeout = 1;
        c.heartbeat_interval = 60;
    })
    .await;
    let port = server.addr.port();
    let mut sse = TcpStream::connect(server.addr).await.unwrap();
    sse.write_all(get("/sse?channel=news", port).as_bytes()).await.unwrap();
    let head = read_head(&mut sse).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // A WebSocket: upgraded, it leaves the idle clock behind too.
    let ws_url = format!("ws://{}/ws", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let subscribe = r#"{"id":1,"subscribe":{"channel":"news"}}"#;
    ws.send(tokio_tungstenite::tungstenite::Message::text(subscribe)).await.unwrap();
    ws_until(&mut ws, r#""id":1"#).await;

    let mut idle = served(server.addr).await.expect("a first response");
    // The rest of the /healthz response, then nothing until the idle timeout closes it.
    let _ = read_until_closed(&mut idle).await;

    // The SSE response has now lived past the idle timeout: a publication still arrives.
    let publish = r#"{"channel":"news","data":"after-idle"}"#;
    let ct = [("Content-Type", "application/json")];
    assert_eq!(http_request(server.addr, "POST", "/api/publish", &ct, publish).await.0, 200);
    let mut seen = String::new();
    tokio::time::timeout(LIMIT, async {
        let mut buf = [0u8; 4096];
        while !seen.contains("after-idle") {
            let n = sse.read(&mut buf).await.unwrap();
            assert!(n > 0, "the SSE response was closed: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("the publication on the SSE response");
    ws_until(&mut ws, "after-idle").await;
    server.stop().await;
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Reads WebSocket messages until one contains `needle`; panics if the socket ends first.
async fn ws_until(ws: &mut Ws, needle: &str) {
    use futures_util::StreamExt;
    tokio::time::timeout(LIMIT, async {
        loop {
            let msg = ws.next().await.expect("the WebSocket is open").expect("a message");
            if msg.to_text().is_ok_and(|t| t.contains(needle)) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no WebSocket message with {needle}"));
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_by_the_idle_clock_not_the_header_one() {
    let server = TestServer::with(|c| {
        c.http_header_timeout = 1;
        c.http_idle_timeout = 2;
    })
    .await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
    let conn = tokio::spawn(conn);
    let uri = format!("http://localhost:{}/healthz", server.addr.port());
    let request = axum::http::Request::get(uri).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), axum::http::Version::HTTP_2);
    drop(response);
    let ended = tokio::time::timeout(LIMIT, conn).await;
    assert!(ended.is_ok(), "the server closed the idle HTTP/2 connection");
    let metrics = metrics_text(server.addr).await;
    assert!(metrics.contains("switchboard_http_timeouts_total{timeout=\"idle\"} 1"), "{metrics}");
    assert!(metrics.contains("switchboard_http_timeouts_total{timeout=\"header\"} 0"), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_body_gets_408() {
    let server = TestServer::with(|c| c.http_body_timeout = 1).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"channel\":",
        server.addr.port()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut tcp).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    let metrics = metrics_text(server.addr).await;
    assert!(metrics.contains("switchboard_http_timeouts_total{timeout=\"body\"} 1"), "{metrics}");
    server.stop().await;
}

async fn metrics_text(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET /metrics HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n", addr.port());
    tcp.write_all(req.as_bytes()).await.unwrap();
    read_until_closed(&mut tcp).await
}

#[tokio::test]
async fn the_socket_cap_refuses_one_more_and_frees_a_slot_on_close() {
    let server = TestServer::with(|c| {
        c.http_max_sockets_per_ip = 2;
        c.http_accept_rate_per_ip = 0;
    })
    .await;
    let first = served(server.addr).await.expect("the first socket is served");
    let _second = served(server.addr).await.expect("the second socket is served");
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let _ = third.write_all(get("/healthz", server.addr.port()).as_bytes()).await;
    assert_eq!(read_until_closed(&mut third).await, "", "the third socket is closed unanswered");
    drop(first);
    eventually_async("a freed slot serves a new socket", LIMIT, || async {
        served(server.addr).await.is_some()
    })
    .await;
    let metrics = metrics_text(server.addr).await;
    assert!(
        metrics.contains("switchboard_http_sockets_refused_total{reason=\"sockets_per_ip\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("switchboard_http_sockets_refused_total{reason=\"sockets_per_ip\"} 0"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_accept_rate_refuses_a_burst_and_refills() {
    let server = TestServer::with(|c| {
        c.http_max_sockets_per_ip = 0;
        c.http_accept_rate_per_ip = 1;
    })
    .await;
    let _first = served(server.addr).await.expect("the first socket is served");
    let mut burst = TcpStream::connect(server.addr).await.unwrap();
    let _ = burst.write_all(get("/healthz", server.addr.port()).as_bytes()).await;
    assert_eq!(read_until_closed(&mut burst).await, "", "a second socket in the same second is closed");
    eventually_async("the bucket refills", LIMIT, || async { served(server.addr).await.is_some() }).await;
    server.stop().await;
}

#[tokio::test]
async fn readyz_turns_503_when_shutdown_starts_while_healthz_stays_200() {
    // The node's listener stops accepting as the drain starts; this one (serving the same
    // router and state) keeps going, so the probes can be read during the drain.
    let server = switchboard::Server::bind(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        demo: false,
        webtransport: false,
        turn: false,
        rtc: false,
        ..Config::default()
    })
    .await
    .unwrap();
    let state = server.state().clone();
    let router = switchboard::app(state.clone(), &switchboard::Services::default());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let options = switchboard::listener::Options::new(&state.config);
    let listener = switchboard::listener::Listener::new(tcp, None, options, Default::default());
    let (stop, draining) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(listener.serve(router, draining));
    assert_eq!(http_request(addr, "GET", "/readyz", &[], "").await.0, 200);
    state.shutdown.send_replace(true);
    let (status, head, body) = http_request(addr, "GET", "/readyz", &[], "").await;
    assert_eq!(status, 503, "{head}");
    assert_eq!(body["reason"], "shutting down");
    assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
    assert_eq!(http_request(addr, "GET", "/healthz", &[], "").await.0, 200, "still alive");
    let _ = stop.send(true);
    task.await.unwrap();
}

#[tokio::test]
async fn every_request_carries_the_peer_address() {
    use axum::extract::ConnectInfo;
    // The listener serves any router: one that echoes ConnectInfo shows what handlers get.
    let router = axum::Router::new().route(
        "/peer",
        axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let options = switchboard::listener::Options::new(&Config::default());
    let listener = switchboard::listener::Listener::new(tcp, None, options, Default::default());
    let (stop, draining) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(listener.serve(router, draining));
    let mut client = TcpStream::connect(addr).await.unwrap();
    let local = client.local_addr().unwrap();
    let req = "GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    client.write_all(req.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut client).await;
    assert!(got.ends_with(&local.to_string()), "{got}");
    let _ = stop.send(true);
    task.await.unwrap();
}

// ---- the real binary and signals ----

/// `switchboard serve` with `env`; its stderr lines go to a channel.
fn spawn_node(env: &[(&str, &str)]) -> (Child, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SWITCHBOARD_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--no-demo", "--no-turn", "--no-rtc", "--log", "info"])
        .env("SWITCHBOARD_WEBTRANSPORT", "false")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("switchboard starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("an address");
    let addr = url.trim_start_matches("http://").parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, addr, rx)
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -TERM");
}

/// Waits for the process to exit, up to `limit`; its status, or None if still running.
fn exited_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The first log line containing `needle`.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = lines.recv_timeout(LIMIT).unwrap_or_else(|_| panic!("no log line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// A request whose body never finishes, held on an open socket, and in flight: the server's
/// `100 Continue` says its handler is reading the body (a request read only after a drain
/// began would get a 503 instead).
async fn half_sent_request(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nHost: localhost:{}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n{{",
        addr.port()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        let n = tokio::time::timeout(LIMIT, tcp.read(&mut byte)).await.expect("an answer in time").unwrap();
        assert_eq!(n, 1, "the server closed the socket after {:?}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    assert!(got.starts_with(b"HTTP/1.1 100 Continue"), "{:?}", String::from_utf8_lossy(&got));
    tcp
}

#[tokio::test]
async fn sigterm_exits_within_the_shutdown_timeout_despite_a_half_sent_request() {
    let env = [("SWITCHBOARD_SHUTDOWN_TIMEOUT", "2"), ("SWITCHBOARD_HTTP_BODY_TIMEOUT", "0")];
    let (mut child, addr, lines) = spawn_node(&env);
    let _held = half_sent_request(addr).await;
    let _slow = {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        tcp
    };
    let opened = wait_for_line(&lines, "connection opened");
    assert!(opened.contains("remote=127.0.0.1:"), "the peer in the line: {opened}");
    sigterm(&child);
    let status = exited_within(&mut child, LIMIT);
    if status.is_none() {
        let _ = child.kill();
    }
    assert!(status.expect("exited before the limit").success(), "a drain ends in a clean exit");
}

#[tokio::test]
async fn a_second_sigterm_exits_at_once() {
    let env = [("SWITCHBOARD_SHUTDOWN_TIMEOUT", "600"), ("SWITCHBOARD_HTTP_BODY_TIMEOUT", "0")];
    let (mut child, addr, lines) = spawn_node(&env);
    let _held = half_sent_request(addr).await;
    wait_for_line(&lines, "connection opened");
    sigterm(&child);
    wait_for_line(&lines, "shutting down");
    sigterm(&child);
    let status = exited_within(&mut child, LIMIT);
    if status.is_none() {
        let _ = child.kill();
    }
    assert!(!status.expect("exited long before the 600 s drain").success());
}

// ---- HTTPS ----

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA named `name` and a `localhost` certificate it signed: `name-ca.pem`, `name.pem`,
/// `name.key` in `dir`.
fn make_cert(dir: &Path, name: &str) {
    let ca = format!("{name}-ca");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// `curl` over https trusting `ca`: the HTTP version and status (`"2 200"`), or its error.
async fn curl(addr: SocketAddr, ca: &Path, version: &str) -> Result<String, String> {
    let url = format!("https://localhost:{}/healthz", addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", addr.port());
    let mut args =
        vec!["-sS".to_owned(), version.to_owned(), "--cacert".to_owned(), ca.display().to_string()];
    args.extend(
        ["--resolve", &resolve, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", &url]
            .map(String::from),
    );
    let out = run_curl(args).await;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// `curl ARGS` off the runtime's threads (a blocking child process).
async fn run_curl(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || Command::new("curl").args(args).output().expect("curl runs"))
        .await
        .unwrap()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn https_serves_h2_and_http11_and_reloads_its_certificate() {
    let dir = temp_dir("tls");
    make_cert(&dir, "one");
    make_cert(&dir, "two");
    let (cert, key) = (dir.join("served.pem"), dir.join("served.key"));
    std::fs::copy(dir.join("one.pem"), &cert).unwrap();
    std::fs::copy(dir.join("one.key"), &key).unwrap();
    let server = TestServer::with(|c| {
        c.tls_cert = cert.display().to_string();
        c.tls_key = key.display().to_string();
        c.webtransport = false;
        c.turn = false;
    })
    .await;
    assert_eq!(curl(server.addr, &dir.join("one-ca.pem"), "--http2").await.unwrap(), "2 200");
    assert_eq!(curl(server.addr, &dir.join("one-ca.pem"), "--http1.1").await.unwrap(), "1.1 200");
    assert!(curl(server.addr, &dir.join("two-ca.pem"), "--http2").await.is_err(), "not yet the second");

    // Renewal: the files are replaced (new names renamed over the old, as certbot does).
    std::fs::copy(dir.join("two.key"), dir.join("new.key")).unwrap();
    std::fs::copy(dir.join("two.pem"), dir.join("new.pem")).unwrap();
    std::fs::rename(dir.join("new.key"), &key).unwrap();
    std::fs::rename(dir.join("new.pem"), &cert).unwrap();
    let two = dir.join("two-ca.pem");
    eventually_async("a new handshake sees the new certificate", LIMIT, || async {
        curl(server.addr, &two, "--http2").await.as_deref() == Ok("2 200")
    })
    .await;
    assert!(curl(server.addr, &dir.join("one-ca.pem"), "--http2").await.is_err(), "the old one is gone");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_after_the_header_timeout() {
    let dir = temp_dir("tls-stall");
    make_cert(&dir, "one");
    let server = TestServer::with(|c| {
        c.tls_cert = dir.join("one.pem").display().to_string();
        c.tls_key = dir.join("one.key").display().to_string();
        c.webtransport = false;
        c.turn = false;
        c.http_header_timeout = 1;
    })
    .await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // The first bytes of a TLS record header (a handshake), then nothing.
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    assert_eq!(read_until_closed(&mut tcp).await, "");
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn plain_tcp_serves_h2c_with_prior_knowledge() {
    let server = TestServer::start(Config::default()).await;
    let url = format!("http://127.0.0.1:{}/healthz", server.addr.port());
    let args =
        ["-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", &url];
    let out = run_curl(args.map(String::from).to_vec()).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200", "{}", String::from_utf8_lossy(&out.stderr));
    server.stop().await;
}

#[tokio::test]
async fn the_redirect_listener_sends_plain_http_to_https() {
    let dir = temp_dir("redirect");
    make_cert(&dir, "one");
    let server = switchboard::Server::bind(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        demo: false,
        webtransport: false,
        turn: false,
        rtc: false,
        tls_cert: dir.join("one.pem").display().to_string(),
        tls_key: dir.join("one.key").display().to_string(),
        http_redirect_listen: "127.0.0.1:0".into(),
        ..Config::default()
    })
    .await
    .unwrap();
    let (https, redirect) = (server.local_addr().unwrap(), server.redirect_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let headers = [("Host", "example.test:80")];
    let (status, head, _) = http_request(redirect, "GET", "/sse?channel=a", &headers, "").await;
    assert_eq!(status, 301, "{head}");
    let location = format!("location: https://example.test:{}/sse?channel=a", https.port());
    assert!(head.to_ascii_lowercase().contains(&location), "{head}");
    let _ = stop.send(());
    let _ = task.await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// What `ss` shows of the server's side of the connection from local port `client` (queues
/// and timers), once the server has read what the client sent (so it has set the socket up).
async fn server_side(server: SocketAddr, client: u16) -> String {
    let filter = format!("( sport = :{} and dport = :{client} )", server.port());
    let mut line = String::new();
    eventually_async("the server reads from the socket", LIMIT, || {
        let out = Command::new("ss").args(["-tnoH", "state", "established", &filter]).output();
        line = String::from_utf8_lossy(&out.expect("ss (iproute2) runs").stdout).into_owned();
        let read = line.split_whitespace().next() == Some("0");
        async move { read }
    })
    .await;
    line
}

#[tokio::test]
async fn accepted_sockets_probe_a_peer_that_vanished_without_a_fin() {
    for (setting, expect_probes) in [(37, true), (0, false)] {
        let server = TestServer::with(|c| c.tcp_user_timeout = setting).await;
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        // A request in progress holds the connection open.
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
        let line = server_side(server.addr, port).await;
        match expect_probes {
            // `timer:(keepalive,36sec,0)`: probed after 37 s idle, not the kernel's two hours.
            true => {
                let secs: u64 = line
                    .split("timer:(keepalive,")
                    .nth(1)
                    .and_then(|t| t.split("sec").next())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or_else(|| panic!("a keepalive timer on the server's socket: {line:?}"));
                assert!(secs <= 37, "{line}");
            }
            false => assert!(!line.contains("keepalive"), "0 leaves the kernel's defaults: {line}"),
        }
        drop(tcp);
        server.stop().await;
    }
}
