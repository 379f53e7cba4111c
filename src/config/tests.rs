//! Loading, environment overrides and validation of [`super::Config`].

use super::*;

fn write(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::with(text)
}

mod tempfile_path {
    pub struct TempPath(pub std::path::PathBuf);
    impl TempPath {
        pub fn with(text: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "switchboard-config-{}-{}.toml",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::write(&p, text).unwrap();
            Self(p)
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn defaults_listen_on_loopback_and_round_trip_through_toml() {
    let c = Config::load(None, [], toml::Table::new()).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    let again: Config = toml::from_str(&c.to_toml()).unwrap();
    assert_eq!(again, c);
}

#[test]
fn file_then_env_then_flags() {
    let f = write("ping_interval = 5\nmax_subscriptions = 7\n[namespaces.chat]\njoin_leave = true\n");
    let env = [
        ("SWITCHBOARD_MAX_SUBSCRIPTIONS".to_owned(), "9".to_owned()),
        ("SWITCHBOARD_DEMO".to_owned(), "false".to_owned()),
        ("OTHER".to_owned(), "x".to_owned()),
    ];
    let mut flags = toml::Table::new();
    flags.insert("ping_interval".into(), toml::Value::Integer(6));
    let c = Config::load(Some(&f.0), env, flags).unwrap();
    assert_eq!(c.ping_interval, 6);
    assert_eq!(c.max_subscriptions, 9);
    assert!(!c.demo);
    let chat = c.channel_options(&ChannelName::new("chat:x").unwrap());
    assert!(chat.join_leave);
    assert_eq!(chat.history_size, 1000, "unset namespace options take their defaults");
}

#[test]
fn refuses_typos_bad_values_and_open_public_listeners() {
    let f = write("pingg_interval = 5\n");
    assert!(Config::load(Some(&f.0), [], toml::Table::new()).is_err());
    let env = [("SWITCHBOARD_PING_INTERVAL".to_owned(), "soon".to_owned())];
    assert!(Config::load(None, env, toml::Table::new()).is_err());
    let env = [("SWITCHBOARD_NOPE".to_owned(), "1".to_owned())];
    assert!(Config::load(None, env, toml::Table::new()).is_err());
    let env = [
        ("SWITCHBOARD_URL".to_owned(), "http://x".to_owned()),
        ("SWITCHBOARD_BIN".to_owned(), "/x".to_owned()),
        ("SWITCHBOARD_CONFIG".to_owned(), "/x.toml".to_owned()),
    ];
    assert!(Config::load(None, env, toml::Table::new()).is_ok(), "the clients' variables are not options");
    let mut flags = toml::Table::new();
    flags.insert("listen".into(), "0.0.0.0:8080".into());
    let err = Config::load(None, [], flags.clone()).unwrap_err();
    assert!(matches!(err, ConfigError::OpenOnPublicAddress(_)), "{err}");
    flags.insert("token_secret".into(), "s3cret".into());
    let err = Config::load(None, [], flags.clone()).unwrap_err();
    assert!(err.to_string().contains("turn_external_ip"), "TURN needs an address to advertise: {err}");
    flags.insert("turn_external_ip".into(), "192.0.2.7".into());
    assert!(Config::load(None, [], flags).is_ok());
}

#[test]
fn limits_take_zero_for_none_and_refuse_what_cannot_work() {
    let load = |pairs: &[(&str, &str)]| {
        let env =
            pairs.iter().map(|(k, v)| (format!("SWITCHBOARD_{}", k.to_ascii_uppercase()), v.to_string()));
        Config::load(None, env, toml::Table::new())
    };
    let c =
        load(&[("max_connections_per_ip", "0"), ("max_publish_rate", "0"), ("max_channels", "0")]).unwrap();
    assert_eq!((c.max_connections_per_ip, c.max_publish_rate, c.max_channels), (0, 0, 0));
    let err = load(&[("outbound_queue_bytes", "1048576")]).unwrap_err().to_string();
    assert!(err.contains("outbound_queue_bytes"), "a history reply must fit: {err}");
    assert!(load(&[("channel_idle_ttl", "0")]).is_err());
    assert!(load(&[("max_publish_burst", "0")]).is_err());
    assert!(load(&[("max_publish_burst", "0"), ("max_publish_rate", "0")]).is_ok());
    let err = load(&[("ws_read_buffer_bytes", "16")]).unwrap_err().to_string();
    assert!(err.contains("ws_read_buffer_bytes"), "{err}");
    assert_eq!(load(&[("ws_read_buffer_bytes", "4096")]).unwrap().ws_read_buffer_bytes, 4096);
}

#[test]
fn secrets_are_redacted_and_unset_ones_stay_empty() {
    let mut config = Config { token_secret: "t0ken".into(), api_key: "k3y".into(), ..Config::default() };
    config.turn_users.insert("alice".into(), "pw".into());
    config.broker = "redis://default:hunter2@10.0.0.5:6379/0".into();
    config.app_proxy_url = "http://backend:3000/path".into();
    let shown = config.redacted();
    assert_eq!((shown.token_secret.as_str(), shown.api_key.as_str()), ("<redacted>", "<redacted>"));
    assert_eq!((shown.turn_secret.as_str(), shown.turn_users["alice"].as_str()), ("", "<redacted>"));
    assert_eq!(shown.broker, "redis://default:<redacted>@10.0.0.5:6379/0");
    assert_eq!(shown.app_proxy_url, "http://backend:3000/path");
    assert_eq!(redact_url_password("nats://s3cret@nats:4222", "<r>"), "nats://<r>@nats:4222");
    assert_eq!(redact_url_password("redis://:pw@h:1", "<r>"), "redis://:<r>@h:1");
}

#[test]
fn the_backend_url_and_prefix_are_checked_at_start_up() {
    let load = |key: &str, value: &str| {
        let env = [(format!("SWITCHBOARD_{}", key.to_ascii_uppercase()), value.to_owned())];
        Config::load(None, env, toml::Table::new())
    };
    let c = load("app_proxy_url", "http://127.0.0.1:3000/switchboard?x=1").unwrap();
    assert_eq!((c.app_proxy_timeout_ms, c.app_destination_prefix.as_str()), (5000, "/app/"));
    for (url, says) in [
        ("https://backend/rpc", "https is not supported"),
        ("backend:3000/rpc", "must start with http://"),
        ("ftp://backend/", "must start with http://"),
        ("http://", "not a URL"),
        ("http://user:pw@backend/", "no user info"),
        ("http://bad host/", "not a URL"),
    ] {
        let err = load("app_proxy_url", url).unwrap_err().to_string();
        assert!(err.contains("app_proxy_url") && err.contains(says), "{url}: {err}");
    }
    assert!(load("app_proxy_timeout_ms", "0").is_err());
    assert!(load("app_destination_prefix", "/rpc/").is_ok());
    for bad in ["app", "/app", "/", "//", "/topic/app/", "/user/"] {
        assert!(load("app_destination_prefix", bad).is_err(), "{bad}");
    }
}
