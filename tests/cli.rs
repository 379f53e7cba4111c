//! The `switchboard` binary's terminal clients, run as a person runs them: output for pipes
//! (`| head`), and lines that carry only what the server said.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use switchboard::config::Config;

/// `switchboard subscribe ARGS...` against `server`, stdout and stderr piped.
fn subscribe(server: &TestServer, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("subscribe")
        .args(args)
        .args(["--url", &server.url()])
        .env_remove("SWITCHBOARD_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs")
}

/// Publishes `{"n": i}` on `channel` every 100 ms until `child` exits (at most 10 s), and returns
/// its exit status and stderr.
async fn publish_until_exit(server: &TestServer, channel: &str, mut child: Child) -> (ExitStatus, String) {
    let client = server.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0u64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the subscriber did not exit within 10 s");
        }
        n += 1;
        client.publish(channel, &serde_json::json!({ "n": n })).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status, stderr)
}

/// Exited quietly: status 0, or killed by SIGPIPE as `cat` or `grep` would be.
fn quiet(status: ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(13) {
            return true;
        }
    }
    status.success()
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribe_into_a_pipe_that_closes_exits_quietly() {
    let server = TestServer::start(Config::default()).await;
    let mut child = subscribe(&server, &["pipe:closed"]);
    // `| head -2`: read two lines (connected, subscribed), then close the pipe.
    let stdout = child.stdout.take().unwrap();
    let head = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok);
        let second = lines.next().and_then(Result::ok);
        (first, second)
    })
    .await
    .unwrap();
    assert!(head.0.is_some() && head.1.is_some(), "two lines before the pipe closes: {head:?}");
    let (status, stderr) = publish_until_exit(&server, "pipe:closed", child).await;
    assert!(!stderr.contains("panicked"), "no panic on a closed pipe: {stderr}");
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
    assert!(quiet(status), "a quiet exit on a closed pipe, got {status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribe_lines_carry_no_internal_or_empty_fields() {
    let server = TestServer::start(Config::default()).await;
    let mut child = subscribe(&server, &["lines:json", "--count", "2"]);
    let stdout = child.stdout.take().unwrap();
    let reader = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        BufReader::new(stdout).read_to_string(&mut out).map(|_| out)
    });
    let (status, stderr) = publish_until_exit(&server, "lines:json", child).await;
    let out = reader.await.unwrap().unwrap();
    assert!(status.success(), "{status}: {stderr}");
    let lines: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    let pubs: Vec<&serde_json::Value> = lines.iter().filter_map(|l| l.get("pub")).collect();
    assert_eq!(pubs.len(), 2, "--count 2 prints two publications: {out}");
    for p in pubs {
        assert_eq!(p["channel"], "lines:json");
        assert!(p["data"]["n"].is_u64(), "{p}");
        assert!(p["offset"].is_u64() && p["epoch"].is_string(), "{p}");
    }
    assert!(!out.contains("binary_len"), "no internal fields: {out}");
    assert!(!out.contains("null"), "no empty fields: {out}");
    assert!(lines.iter().all(|l| l["cursor"].is_string()), "every line has its cursor: {out}");
}

/// `switchboard config ARGS...` with `env` (and no other `SWITCHBOARD_*` variable): its stdout.
fn show_config(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SWITCHBOARD_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.arg("config").args(args).envs(env.iter().copied()).output().expect("the binary runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn config_redacts_secrets_unless_asked() {
    let file = std::env::temp_dir().join(format!("switchboard-cli-{}.toml", std::process::id()));
    std::fs::write(&file, "[turn_users]\nalice = \"turn-user-password\"\n").unwrap();
    let env = [
        ("SWITCHBOARD_CONFIG", file.to_str().unwrap()),
        ("SWITCHBOARD_TOKEN_SECRET", "cli-token-secret"),
        ("SWITCHBOARD_API_KEY", "cli-api-key"),
        ("SWITCHBOARD_TURN_SECRET", "cli-turn-secret"),
        ("SWITCHBOARD_BROKER", "redis://default:cli-redis-password@127.0.0.1:6379"),
    ];
    let secrets =
        ["cli-token-secret", "cli-api-key", "cli-turn-secret", "turn-user-password", "cli-redis-password"];
    let redacted = show_config(&[], &env);
    let shown = show_config(&["--show-secrets"], &env);
    let _ = std::fs::remove_file(&file);
    for secret in secrets {
        assert!(!redacted.contains(secret), "{secret} printed: {redacted}");
        assert!(shown.contains(secret), "--show-secrets prints {secret}: {shown}");
    }
    for line in ["token_secret = \"<redacted>\"", "api_key = \"<redacted>\"", "alice = \"<redacted>\""] {
        assert!(redacted.contains(line), "{line} missing: {redacted}");
    }
    assert!(redacted.contains("redis://default:<redacted>@127.0.0.1:6379"), "{redacted}");
    let parsed: toml::Table = redacted.parse().expect("still TOML");
    assert_eq!(parsed["tls_key"].as_str(), Some(""), "unset stays empty");
}

/// `switchboard serve` with `env`, logging JSON at `info` into a pipe: its URL and its stderr as
/// read so far.
fn serve_logging(env: &[(&str, &str)]) -> (Child, String, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SWITCHBOARD_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--no-demo", "--no-turn", "--no-rtc"])
        .args(["--log", "info", "--log-format", "json"])
        .env("SWITCHBOARD_WEBTRANSPORT", "false")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("an address").to_owned();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let sink = logs.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        while err.read_line(&mut line).is_ok_and(|n| n > 0) {
            sink.lock().unwrap().push_str(&std::mem::take(&mut line));
        }
    });
    (child, url, logs)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_connection_logs_one_line_without_secrets_or_tokens() {
    const SECRET: &str = "log-test-token-secret";
    const API_KEY: &str = "log-test-api-key";
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let claims = serde_json::json!({ "sub": "log-user" });
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let env = [("SWITCHBOARD_TOKEN_SECRET", SECRET), ("SWITCHBOARD_API_KEY", API_KEY)];
    let (mut child, url, logs) = serve_logging(&env);
    let client = switchboard_client::Client::new(&url).unwrap();
    let mut ws = client.websocket().await.unwrap();
    ws.connect(Some(&token), None).await.unwrap();
    ws.close().await.unwrap();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let sse = format!("/sse?channel=news&token={token}");
    let _ =
        tokio::time::timeout(Duration::from_millis(300), common::http_json(addr, "GET", &sse, &[], "")).await;
    let publish = r#"{"channel":"news","data":1}"#;
    assert_eq!(
        common::http_json(addr, "POST", "/api/publish", &[("X-API-Key", API_KEY)], publish).await.0,
        200
    );
    let closed = |logs: &str| logs.lines().filter(|l| l.contains("connection closed")).count();
    common::eventually("two connection lines", Duration::from_secs(10), || {
        closed(&logs.lock().unwrap()) >= 2
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let logs = logs.lock().unwrap().clone();
    for secret in [SECRET, API_KEY, token.as_str()] {
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
    }
    assert!(!logs.contains('\x1b'), "no colour into a pipe: {logs}");
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("a JSON line: {l}")))
        .collect();
    let ws_line = lines
        .iter()
        .find(|l| l["fields"]["message"] == "connection closed" && l["fields"]["transport"] == "websocket")
        .unwrap_or_else(|| panic!("the WebSocket's line: {logs}"));
    assert_eq!(ws_line["level"], "INFO");
    assert_eq!(ws_line["fields"]["user"], "log-user", "{ws_line}");
    assert!(ws_line["fields"]["duration_ms"].is_u64(), "{ws_line}");
    let remote = ws_line["span"]["remote"].as_str().unwrap_or_default();
    assert!(remote.starts_with("127.0.0.1:"), "the peer address: {ws_line}");
    let sse_line = lines.iter().find(|l| l["fields"]["transport"] == "sse").expect("the SSE line");
    assert_eq!(sse_line["fields"]["user"], "log-user", "{sse_line}");
    // The connection holds no span; its line makes one that names the peer all the same.
    let remote = sse_line["span"]["remote"].as_str().unwrap_or_default();
    assert!(remote.starts_with("127.0.0.1:"), "the peer address: {sse_line}");
}
