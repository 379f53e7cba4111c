//! `GET /api/ice-servers` and the built-in TURN server as `switchboard serve` runs it.

mod common;

use std::net::SocketAddr;

use common::TestServer;
use switchboard::config::Config;

/// A plain HTTP/1.1 GET; answers the status and the body.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    common::http_json(addr, "GET", path, headers, "").await
}

fn urls(answer: &serde_json::Value) -> Vec<String> {
    answer["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["urls"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn hands_out_fresh_time_limited_credentials_for_the_running_turn_server() {
    let server = TestServer::start(Config { turn_secret: "s3cret".into(), ..Config::default() }).await;
    let turn = server.services.ice.as_ref().expect("TURN runs by default").addr;
    assert_ne!(turn.port(), 3478, "a test server on port 0 gets a free TURN port too");
    let (status, answer) = get(server.addr, "/api/ice-servers", &[]).await;
    assert_eq!(status, 200, "{answer}");
    let port = turn.port();
    assert_eq!(
        urls(&answer),
        vec![
            format!("stun:127.0.0.1:{port}"),
            format!("turn:127.0.0.1:{port}?transport=udp"),
            format!("turn:127.0.0.1:{port}?transport=tcp"),
        ]
    );
    let turn_entry = &answer["iceServers"][1];
    let username = turn_entry["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "anonymous");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(expiry > now && expiry <= now + 86_400 + 5, "valid for turn_credential_ttl");
    // The credential is coturn's use-auth-secret scheme over the configured secret.
    let ttl = std::time::Duration::from_secs(expiry - now);
    let (name, password) = switchboard_turn::make_credential("s3cret", "anonymous", ttl, now);
    assert_eq!((name.as_str(), password.as_str()), (username, turn_entry["credential"].as_str().unwrap()));
    server.stop().await;
}

#[tokio::test]
async fn needs_a_token_when_the_server_does_and_names_its_user() {
    let server = TestServer::start(Config { token_secret: "k".into(), ..Config::default() }).await;
    let (status, _) = get(server.addr, "/api/ice-servers", &[]).await;
    assert_eq!(status, 401);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "alice"}),
        &jsonwebtoken::EncodingKey::from_secret(b"k"),
    )
    .unwrap();
    let (status, answer) =
        get(server.addr, "/api/ice-servers", &[("Authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(status, 200);
    assert!(answer["iceServers"][1]["username"].as_str().unwrap().ends_with(":alice"));
    server.stop().await;
}

#[tokio::test]
async fn no_turn_means_no_ice_servers() {
    let server = TestServer::start(Config { turn: false, ..Config::default() }).await;
    let (status, answer) = get(server.addr, "/api/ice-servers", &[]).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], 108);
    server.stop().await;
}

#[tokio::test]
async fn a_configured_certificate_adds_turn_over_tls() {
    let dir = std::env::temp_dir().join(format!("sb-ice-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-days",
            "1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !made {
        assert!(std::env::var_os("CI").is_none(), "the openssl command is needed to make a test certificate");
        return;
    }
    let server = TestServer::start(Config {
        tls_cert: cert.display().to_string(),
        tls_key: key.display().to_string(),
        ..Config::default()
    })
    .await;
    let tls = server.services.ice.as_ref().unwrap().tls_addr.expect("TURN over TLS runs with a certificate");
    // The certificate makes the HTTP listener HTTPS too (the self-signed one is its own CA).
    let port = server.addr.port();
    let args = [
        "-sS".to_owned(),
        "--cacert".to_owned(),
        cert.display().to_string(),
        "--resolve".to_owned(),
        format!("localhost:{port}:127.0.0.1"),
        format!("https://localhost:{port}/api/ice-servers"),
    ];
    let out = tokio::task::spawn_blocking(move || std::process::Command::new("curl").args(args).output())
        .await
        .unwrap()
        .expect("curl runs");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("JSON from curl: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(urls(&answer).contains(&format!("turns:localhost:{}?transport=tcp", tls.port())), "{answer}");
    assert!(tokio::net::TcpStream::connect(tls).await.is_ok());
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
