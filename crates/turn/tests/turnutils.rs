//! Integration tests against coturn's real client tools (`turnutils_stunclient`,
//! `turnutils_uclient`, `turnutils_peer`): our server runs in-process on free loopback ports.
//!
//! The tools come from Debian's `coturn` package. Without them the tests fail when `CI` is
//! set and are skipped (with a message) otherwise.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchboard_turn::{ServerHandle, TurnConfig};

const USER: &str = "alice";
const PASS: &str = "wonderland";
const SECRET: &str = "rest-api-secret";

/// Whether the coturn tools are installed; panics under CI when they are not.
fn tools_available() -> bool {
    let found = ["turnutils_uclient", "turnutils_stunclient", "turnutils_peer"].iter().all(|t| {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()))
    });
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "coturn tools (turnutils_*) missing: apt-get install coturn"
        );
        eprintln!("SKIPPED: coturn's turnutils_* tools are not installed (apt-get install coturn)");
    }
    found
}

/// Our server on 127.0.0.1:0 with loopback peers allowed, a static user and a secret.
async fn start_server() -> (ServerHandle, tokio::sync::oneshot::Sender<()>) {
    let mut config = TurnConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_loopback_peers: true,
        auth_secret: Some(SECRET.into()),
        ..TurnConfig::default()
    };
    config.static_users.insert(USER.into(), PASS.into());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = switchboard_turn::serve(config, async move {
        let _ = rx.await;
    })
    .await
    .expect("server starts");
    (server, tx)
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `turnutils_peer` (a UDP echo server) on a free port.
fn start_peer() -> (Proc, u16) {
    let port = free_udp_port();
    let child = Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnutils_peer starts");
    std::thread::sleep(Duration::from_millis(300));
    (Proc(child), port)
}

/// Runs a tool with a deadline; returns (exit success, stdout + stderr).
async fn run_tool(program: &'static str, args: Vec<String>, limit: Duration) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let dir = std::env::temp_dir().join(format!("sb-turn-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let out_path = dir.join("out.txt");
        let out = std::fs::File::create(&out_path).unwrap();
        let err = out.try_clone().unwrap();
        let mut child =
            Command::new(program).args(&args).stdout(out).stderr(err).spawn().expect("tool starts");
        let deadline = Instant::now() + limit;
        let ok = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        (ok, text)
    })
    .await
    .unwrap()
}

fn rand_suffix() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// The totals `turnutils_uclient` prints at the end.
#[derive(Debug, PartialEq, Eq)]
struct Totals {
    sent: u64,
    received: u64,
    lost: u64,
}

fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.rfind(key)? + key.len()..];
    let digits: String = rest.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn totals(output: &str) -> Option<Totals> {
    // "start_mclient: tot_send_msgs=200, tot_recv_msgs=200" and "Total lost packets 0 (...)".
    let line = output.lines().rev().find(|l| l.contains("tot_send_msgs=") && !l.contains("msz="))?;
    Some(Totals {
        sent: number_after(line, "tot_send_msgs=")?,
        received: number_after(line, "tot_recv_msgs=")?,
        lost: number_after(output, "Total lost packets")?,
    })
}

/// Runs `turnutils_uclient` against our server and returns its totals.
async fn uclient(
    server: SocketAddr,
    peer_port: u16,
    extra: &[&str],
    messages: u32,
) -> (bool, String, Option<Totals>) {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend(
        [
            "-p",
            &server.port().to_string(),
            "-e",
            "127.0.0.1",
            "-r",
            &peer_port.to_string(),
            "-n",
            &messages.to_string(),
            "-m",
            "2",
            "-l",
            "120",
            "127.0.0.1",
        ]
        .map(String::from),
    );
    let (ok, out) = run_tool("turnutils_uclient", args, Duration::from_secs(60)).await;
    let t = totals(&out);
    (ok, out, t)
}

fn assert_relayed(label: &str, ok: bool, out: &str, totals: Option<Totals>, messages: u64) {
    let t = totals.unwrap_or_else(|| panic!("{label}: no totals in uclient output:\n{out}"));
    eprintln!("{label}: sent {} received {} lost {}", t.sent, t.received, t.lost);
    assert!(ok, "{label}: uclient failed:\n{out}");
    // Two clients (-m 2), each sending `messages`.
    assert_eq!(t.sent, 2 * messages, "{label}: {t:?}");
    assert_eq!(t.received, t.sent, "{label}: {t:?}\n{out}");
    assert_eq!(t.lost, 0, "{label}: {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stunclient_gets_mapped_address() {
    if !tools_available() {
        return;
    }
    let (server, stop) = start_server().await;
    let port = server.udp_addr().port().to_string();
    let (ok, out) = run_tool(
        "turnutils_stunclient",
        vec!["-p".into(), port, "127.0.0.1".into()],
        Duration::from_secs(20),
    )
    .await;
    assert!(ok, "stunclient failed:\n{out}");
    assert!(out.contains("UDP reflexive addr: 127.0.0.1:"), "{out}");
    assert!(server.metrics().requests(0x001).0 >= 1);
    let _ = stop.send(());
    server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_udp_static_user_and_send_indications() {
    if !tools_available() {
        return;
    }
    let (server, stop) = start_server().await;
    let (_peer, peer_port) = start_peer();
    let (ok, out, t) = uclient(server.udp_addr(), peer_port, &["-u", USER, "-w", PASS], 50).await;
    assert_relayed("udp/channels", ok, &out, t, 50);
    let (ok, out, t) = uclient(server.udp_addr(), peer_port, &["-s", "-u", USER, "-w", PASS], 50).await;
    assert_relayed("udp/send-indications", ok, &out, t, 50);
    let m = server.metrics();
    assert!(m.packets_to_peer.load(Relaxed) >= 200);
    assert!(m.bytes_to_client.load(Relaxed) >= 200 * 120);
    assert!(m.render_prometheus().contains("switchboard_turn_allocations_total"));
    let _ = stop.send(());
    server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_udp_time_limited_credentials() {
    if !tools_available() {
        return;
    }
    let (server, stop) = start_server().await;
    let (_peer, peer_port) = start_peer();
    // uclient computes the username and password from the secret itself.
    let (ok, out, t) = uclient(server.udp_addr(), peer_port, &["-W", SECRET, "-u", "bob"], 30).await;
    assert_relayed("udp/-W secret", ok, &out, t, 30);
    // And a credential made by our make_credential.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (user, pass) = switchboard_turn::make_credential(SECRET, "carol", Duration::from_secs(600), now);
    let (ok, out, t) = uclient(server.udp_addr(), peer_port, &["-u", &user, "-w", &pass], 30).await;
    assert_relayed("udp/make_credential", ok, &out, t, 30);
    // An expired one is refused.
    let (user, pass) = switchboard_turn::make_credential(SECRET, "carol", Duration::ZERO, now - 10);
    let (_, out, t) = uclient(server.udp_addr(), peer_port, &["-u", &user, "-w", &pass], 5).await;
    assert!(t.is_none_or(|t| t.received == 0), "expired credential relayed:\n{out}");
    let _ = stop.send(());
    server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_tcp_static_and_time_limited() {
    if !tools_available() {
        return;
    }
    let (server, stop) = start_server().await;
    assert_eq!(server.tcp_addr().map(|a| a.port()), Some(server.udp_addr().port()));
    let (_peer, peer_port) = start_peer();
    let (ok, out, t) = uclient(server.udp_addr(), peer_port, &["-t", "-u", USER, "-w", PASS], 50).await;
    assert_relayed("tcp/static", ok, &out, t, 50);
    let (ok, out, t) = uclient(server.udp_addr(), peer_port, &["-t", "-W", SECRET, "-u", "bob"], 30).await;
    assert_relayed("tcp/-W secret", ok, &out, t, 30);
    let (ok, out, t) = uclient(server.udp_addr(), peer_port, &["-t", "-s", "-u", USER, "-w", PASS], 30).await;
    assert_relayed("tcp/send-indications", ok, &out, t, 30);
    // TCP allocations end with their connections.
    let m = server.metrics();
    let deadline = Instant::now() + Duration::from_secs(5);
    while m.allocations_active.load(Relaxed) != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m.allocations_active.load(Relaxed), 0);
    let _ = stop.send(());
    server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused() {
    if !tools_available() {
        return;
    }
    let (server, stop) = start_server().await;
    let (_peer, peer_port) = start_peer();
    for transport in [&[][..], &["-t"][..]] {
        let mut args = transport.to_vec();
        args.extend(["-u", USER, "-w", "not-the-password"]);
        let (_, out, t) = uclient(server.udp_addr(), peer_port, &args, 5).await;
        assert!(out.contains("Cannot complete Allocation") || out.contains("error 401"), "{out}");
        assert!(t.is_none_or(|t| t.received == 0), "relayed with a wrong password:\n{out}");
    }
    let m = server.metrics();
    assert!(m.auth_failures.load(Relaxed) >= 2);
    assert_eq!(m.allocations_total.load(Relaxed), 0);
    assert_eq!(m.packets_to_peer.load(Relaxed), 0);
    let _ = stop.send(());
    server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_peer_is_denied_by_default() {
    if !tools_available() {
        return;
    }
    let mut config = TurnConfig { listen: "127.0.0.1:0".parse().unwrap(), ..TurnConfig::default() };
    config.static_users.insert(USER.into(), PASS.into());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = switchboard_turn::serve(config, async move {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let (_peer, peer_port) = start_peer();
    let (_, out, t) = uclient(server.udp_addr(), peer_port, &["-u", USER, "-w", PASS], 5).await;
    assert!(t.is_none_or(|t| t.received == 0), "relayed to loopback:\n{out}");
    let m = server.metrics();
    assert!(m.peers_denied.load(Relaxed) >= 1);
    assert_eq!(m.packets_to_peer.load(Relaxed), 0);
    let _ = tx.send(());
    server.wait().await;
}

/// A self-signed certificate made by the `openssl` command, in a temporary directory.
fn self_signed_pem() -> Option<(Vec<u8>, Vec<u8>)> {
    let dir = std::env::temp_dir().join(format!("sb-turn-tls-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).ok()?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-subj", "/CN=localhost", "-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    let pems = status.success().then(|| (std::fs::read(&cert).ok(), std::fs::read(&key).ok()));
    let _ = std::fs::remove_dir_all(&dir);
    match pems {
        Some((Some(c), Some(k))) => Some((c, k)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_tls_relays_and_refuses_a_wrong_password() {
    if !tools_available() {
        return;
    }
    let Some((cert, key)) = self_signed_pem() else {
        assert!(std::env::var_os("CI").is_none(), "the openssl command is needed to make a test certificate");
        eprintln!("SKIPPED: no openssl command to make a test certificate");
        return;
    };
    let tls = switchboard_turn::TlsListener::from_pem("127.0.0.1:0".parse().unwrap(), &cert, &key).unwrap();
    let mut config = TurnConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allow_loopback_peers: true,
        auth_secret: Some(SECRET.into()),
        tls: Some(tls),
        ..TurnConfig::default()
    };
    config.static_users.insert(USER.into(), PASS.into());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = switchboard_turn::serve(config, async move {
        let _ = rx.await;
    })
    .await
    .expect("server starts");
    let tls_addr = server.tls_addr().expect("a TLS listener");
    let (_peer, peer_port) = start_peer();
    // -S: TLS over TCP (-t).
    let (ok, out, t) = uclient(tls_addr, peer_port, &["-t", "-S", "-u", USER, "-w", PASS], 40).await;
    assert_relayed("tls/static", ok, &out, t, 40);
    let (ok, out, t) = uclient(tls_addr, peer_port, &["-t", "-S", "-W", SECRET, "-u", "carol"], 20).await;
    assert_relayed("tls/-W secret", ok, &out, t, 20);
    let (_, out, t) = uclient(tls_addr, peer_port, &["-t", "-S", "-u", USER, "-w", "wrong"], 5).await;
    assert!(t.is_none_or(|t| t.received == 0), "a wrong password relays nothing over TLS:\n{out}");
    assert!(server.metrics().render_prometheus().contains("switchboard_turn_"), "metrics render");
    let _ = tx.send(());
    server.wait().await;
}

#[test]
fn tls_listener_refuses_bad_pem() {
    let addr = "127.0.0.1:0".parse().unwrap();
    assert!(switchboard_turn::TlsListener::from_pem(addr, b"not pem", b"not pem").is_err());
}
