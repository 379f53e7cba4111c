//! A standalone TURN server for tests and benchmarks.
//!
//! ```text
//! cargo run -p switchboard-turn --example turn_server -- \
//!     [--listen 127.0.0.1:0] [--user NAME:PASSWORD]... [--secret SECRET] [--realm REALM]
//!     [--allow-loopback-peers] [--bandwidth BYTES_PER_SEC] [--relay-ports LO-HI] [--no-tcp]
//! ```
//!
//! Prints `TURN_LISTEN=IP:PORT` on stdout once listening, then serves until Ctrl-C (SIGINT),
//! and then prints its metrics on stderr.

use std::io::Write as _;
use std::process::ExitCode;

use switchboard_turn::TurnConfig;

fn parse_args() -> Result<TurnConfig, String> {
    let mut config = TurnConfig { listen: "127.0.0.1:0".parse().expect("valid"), ..TurnConfig::default() };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => config.listen = value("--listen")?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--user" => {
                let v = value("--user")?;
                let (u, p) = v.split_once(':').ok_or("--user takes NAME:PASSWORD")?;
                config.static_users.insert(u.to_owned(), p.to_owned());
            }
            "--secret" => config.auth_secret = Some(value("--secret")?),
            "--realm" => config.realm = value("--realm")?,
            "--allow-loopback-peers" => config.allow_loopback_peers = true,
            "--bandwidth" => {
                config.quotas.bandwidth_bytes_per_sec =
                    value("--bandwidth")?.parse().map_err(|e| format!("--bandwidth: {e}"))?;
            }
            "--relay-ports" => {
                let v = value("--relay-ports")?;
                let (lo, hi) = v.split_once('-').ok_or("--relay-ports takes LO-HI")?;
                let lo: u16 = lo.parse().map_err(|e| format!("--relay-ports: {e}"))?;
                let hi: u16 = hi.parse().map_err(|e| format!("--relay-ports: {e}"))?;
                config.relay_port_range = lo..=hi;
            }
            "--max-allocations-per-user" => {
                config.quotas.max_allocations_per_user =
                    value("--max-allocations-per-user")?.parse().map_err(|e| format!("{e}"))?;
            }
            "--max-allocations-per-ip" => {
                config.quotas.max_allocations_per_ip =
                    value("--max-allocations-per-ip")?.parse().map_err(|e| format!("{e}"))?;
            }
            "--no-tcp" => config.tcp = false,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("turn_server: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let server = match switchboard_turn::serve(config, shutdown).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("turn_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("TURN_LISTEN={}", server.udp_addr());
    let _ = std::io::stdout().flush();
    let metrics = server.metrics();
    server.wait().await;
    eprint!("{}", metrics.render_prometheus());
    ExitCode::SUCCESS
}
