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

/// Our server in-process; [`Running::stop`] shuts it down and waits for it to drain.
struct Running {
    handle: ServerHandle,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    async fn start(config: TurnConfig) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = switchboard_turn::serve(config, async move {
            let _ = stopped.await;
        })
        .await
        .expect("server starts");
        Self { handle, stop }
    }

    /// [`Running::start`], when the coturn tools are there to test it with.
    async fn start_if_tools(config: TurnConfig) -> Option<Self> {
        if !tools_available() {
            return None;
        }
        Some(Self::start(config).await)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.handle.wait().await;
    }
}

impl std::ops::Deref for Running {
    type Target = ServerHandle;

    fn deref(&self) -> &ServerHandle {
        &self.handle
    }
}

/// 127.0.0.1:0 with the static user; `open`: loopback peers allowed and the REST secret set, as
/// the tests that relay need.
fn config(open: bool) -> TurnConfig {
    let mut config = TurnConfig { listen: "127.0.0.1:0".parse().unwrap(), ..TurnConfig::default() };
    if open {
        config.allow_loopback_peers = true;
        config.auth_secret = Some(SECRET.into());
    }
    config.static_users.insert(USER.into(), PASS.into());
    config
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

/// Runs `turnutils_uclient` (5 messages) against our server and checks that none came back; its
/// output.
async fn assert_relays_nothing(label: &str, server: SocketAddr, peer_port: u16, extra: &[&str]) -> String {
    let (_, out, t) = uclient(server, peer_port, extra, 5).await;
    assert!(t.is_none_or(|t| t.received == 0), "{label}: relayed:\n{out}");
    out
}

/// Runs `turnutils_uclient` against our server and checks that every message came back.
async fn assert_relays(label: &str, server: SocketAddr, peer_port: u16, extra: &[&str], messages: u32) {
    let (ok, out, totals) = uclient(server, peer_port, extra, messages).await;
    let t = totals.unwrap_or_else(|| panic!("{label}: no totals in uclient output:\n{out}"));
    eprintln!("{label}: sent {} received {} lost {}", t.sent, t.received, t.lost);
    assert!(ok, "{label}: uclient failed:\n{out}");
    // Two clients (-m 2), each sending `messages`.
    assert_eq!(t.sent, 2 * u64::from(messages), "{label}: {t:?}");
    assert_eq!(t.received, t.sent, "{label}: {t:?}\n{out}");
    assert_eq!(t.lost, 0, "{label}: {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stunclient_gets_mapped_address() {
    let Some(server) = Running::start_if_tools(config(true)).await else { return };
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
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_udp_static_user_and_send_indications() {
    let Some(server) = Running::start_if_tools(config(true)).await else { return };
    let (_peer, peer_port) = start_peer();
    assert_relays("udp/channels", server.udp_addr(), peer_port, &["-u", USER, "-w", PASS], 50).await;
    assert_relays("udp/send-indications", server.udp_addr(), peer_port, &["-s", "-u", USER, "-w", PASS], 50)
        .await;
    let m = server.metrics();
    assert!(m.packets_to_peer.load(Relaxed) >= 200);
    assert!(m.bytes_to_client.load(Relaxed) >= 200 * 120);
    assert!(m.render_prometheus().contains("switchboard_turn_allocations_total"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_udp_time_limited_credentials() {
    let Some(server) = Running::start_if_tools(config(true)).await else { return };
    let (_peer, peer_port) = start_peer();
    // uclient computes the username and password from the secret itself.
    assert_relays("udp/-W secret", server.udp_addr(), peer_port, &["-W", SECRET, "-u", "bob"], 30).await;
    // And a credential made by our make_credential.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (user, pass) = switchboard_turn::make_credential(SECRET, "carol", Duration::from_secs(600), now);
    assert_relays("udp/make_credential", server.udp_addr(), peer_port, &["-u", &user, "-w", &pass], 30).await;
    // An expired one is refused.
    let (user, pass) = switchboard_turn::make_credential(SECRET, "carol", Duration::ZERO, now - 10);
    assert_relays_nothing("an expired credential", server.udp_addr(), peer_port, &["-u", &user, "-w", &pass])
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_tcp_static_and_time_limited() {
    let Some(server) = Running::start_if_tools(config(true)).await else { return };
    assert_eq!(server.tcp_addr().map(|a| a.port()), Some(server.udp_addr().port()));
    let (_peer, peer_port) = start_peer();
    assert_relays("tcp/static", server.udp_addr(), peer_port, &["-t", "-u", USER, "-w", PASS], 50).await;
    assert_relays("tcp/-W secret", server.udp_addr(), peer_port, &["-t", "-W", SECRET, "-u", "bob"], 30)
        .await;
    assert_relays(
        "tcp/send-indications",
        server.udp_addr(),
        peer_port,
        &["-t", "-s", "-u", USER, "-w", PASS],
        30,
    )
    .await;
    // TCP allocations end with their connections.
    let m = server.metrics();
    let deadline = Instant::now() + Duration::from_secs(5);
    while m.allocations_active.load(Relaxed) != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(m.allocations_active.load(Relaxed), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused() {
    let Some(server) = Running::start_if_tools(config(true)).await else { return };
    let (_peer, peer_port) = start_peer();
    for transport in [&[][..], &["-t"][..]] {
        let mut args = transport.to_vec();
        args.extend(["-u", USER, "-w", "not-the-password"]);
        let out = assert_relays_nothing("a wrong password", server.udp_addr(), peer_port, &args).await;
        assert!(out.contains("Cannot complete Allocation") || out.contains("error 401"), "{out}");
    }
    let m = server.metrics();
    assert!(m.auth_failures.load(Relaxed) >= 2);
    assert_eq!(m.allocations_total.load(Relaxed), 0);
    assert_eq!(m.packets_to_peer.load(Relaxed), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_peer_is_denied_by_default() {
    let Some(server) = Running::start_if_tools(config(false)).await else { return };
    let (_peer, peer_port) = start_peer();
    assert_relays_nothing("a loopback peer", server.udp_addr(), peer_port, &["-u", USER, "-w", PASS]).await;
    let m = server.metrics();
    assert!(m.peers_denied.load(Relaxed) >= 1);
    assert_eq!(m.packets_to_peer.load(Relaxed), 0);
    server.stop().await;
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
    let server = Running::start(TurnConfig { tls: Some(tls), ..config(true) }).await;
    let tls_addr = server.tls_addr().expect("a TLS listener");
    let (_peer, peer_port) = start_peer();
    // -S: TLS over TCP (-t).
    assert_relays("tls/static", tls_addr, peer_port, &["-t", "-S", "-u", USER, "-w", PASS], 40).await;
    assert_relays("tls/-W secret", tls_addr, peer_port, &["-t", "-S", "-W", SECRET, "-u", "carol"], 20).await;
    assert_relays_nothing(
        "a wrong password over TLS",
        tls_addr,
        peer_port,
        &["-t", "-S", "-u", USER, "-w", "wrong"],
    )
    .await;
    assert!(server.metrics().render_prometheus().contains("switchboard_turn_"), "metrics render");
    server.stop().await;
}

#[test]
fn tls_listener_refuses_bad_pem() {
    let addr = "127.0.0.1:0".parse().unwrap();
    assert!(switchboard_turn::TlsListener::from_pem(addr, b"not pem", b"not pem").is_err());
}
