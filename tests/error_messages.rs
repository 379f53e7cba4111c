//! Start-up errors say what is wrong, where (the address, the option and where it was set), and
//! how to fix it (the flag, the option and the variable that change it).

mod common;

use std::path::PathBuf;

use common::TestServer;
use switchboard::Server;
use switchboard::config::{Config, ConfigError};

/// A configuration that starts only the HTTP listener.
fn http_only(listen: std::net::SocketAddr) -> Config {
    Config { listen, demo: false, turn: false, rtc: false, webtransport: false, ..Config::default() }
}

async fn start_error(config: Config) -> String {
    match Server::bind(config).await {
        Ok(_) => panic!("the server started"),
        Err(e) => e.to_string(),
    }
}

fn assert_names(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

#[tokio::test]
async fn a_taken_http_port_names_the_address_and_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let message = start_error(http_only(addr)).await;
    assert_names(&message, &[&addr.to_string(), "in use", "--listen", "SWITCHBOARD_LISTEN"]);
}

#[tokio::test]
async fn a_second_node_on_the_same_turn_port_is_told_how_to_move_it() {
    // Two nodes with one configuration on one machine: their TURN ports collide (3478 by default).
    let turn = Config { turn_listen: "127.0.0.1:0".into(), rtc: false, ..Config::default() };
    let first = TestServer::start(turn.clone()).await;
    let taken = first.services.ice.as_ref().expect("the first node runs TURN").addr;
    let second = Config { turn_listen: taken.to_string(), ..http_only("127.0.0.1:0".parse().unwrap()) };
    let message = start_error(Config { turn: true, ..second }).await;
    assert_names(
        &message,
        &[&taken.to_string(), "in use", "--turn-listen", "turn_listen", "--no-turn", "turn = false"],
    );
    first.stop().await;
}

/// A configuration file that removes itself.
struct TempToml(PathBuf);

impl TempToml {
    fn new(text: &str) -> Self {
        let name = format!("switchboard-errors-{}-{}.toml", std::process::id(), rand_suffix());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

fn load_error(file: Option<&TempToml>, env: &[(&str, &str)], flags: &[(&str, &str)]) -> ConfigError {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let flags = flags.iter().map(|(k, v)| (k.to_string(), toml::Value::from(*v))).collect();
    match Config::load(file.map(|f| f.0.as_path()), env, flags) {
        Ok(_) => panic!("the configuration loaded"),
        Err(e) => e,
    }
}

#[test]
fn a_bad_value_in_the_file_names_the_key_and_the_file() {
    let file = TempToml::new("max_connections = \"x\"\n");
    let message = load_error(Some(&file), &[], &[]).to_string();
    assert_names(&message, &["max_connections", &file.0.display().to_string(), "expected usize"]);

    let file = TempToml::new("[namespaces.chat]\nhistory_size = \"x\"\n");
    let message = load_error(Some(&file), &[], &[]).to_string();
    assert_names(&message, &["namespaces.chat.history_size", &file.0.display().to_string()]);

    let file = TempToml::new("pingg_interval = 5\n");
    let message = load_error(Some(&file), &[], &[]).to_string();
    assert_names(&message, &["pingg_interval", &file.0.display().to_string(), "no such option"]);
}

#[test]
fn a_bad_environment_variable_names_the_key_and_the_variable() {
    let message = load_error(None, &[("SWITCHBOARD_MAX_CONNECTIONS", "-1")], &[]).to_string();
    assert_names(&message, &["max_connections", "SWITCHBOARD_MAX_CONNECTIONS", "expected usize"]);

    let message = load_error(None, &[("SWITCHBOARD_LISTEN", "nowhere")], &[]).to_string();
    assert_names(&message, &["listen", "SWITCHBOARD_LISTEN"]);

    let message = load_error(None, &[("SWITCHBOARD_PING_INTERVAL", "soon")], &[]).to_string();
    assert_names(&message, &["ping_interval", "SWITCHBOARD_PING_INTERVAL", "soon"]);
}

#[test]
fn a_bad_flag_names_the_flag_and_a_later_layer_wins_the_blame() {
    let message = load_error(None, &[], &[("listen", "nowhere")]).to_string();
    assert_names(&message, &["listen", "--listen"]);

    // The file's value is overridden by the variable's: the variable is what to fix.
    let file = TempToml::new("max_connections = 5\n");
    let message = load_error(Some(&file), &[("SWITCHBOARD_MAX_CONNECTIONS", "-5")], &[]).to_string();
    assert_names(&message, &["SWITCHBOARD_MAX_CONNECTIONS"]);
    assert!(!message.contains(&file.0.display().to_string()), "{message}");
}
