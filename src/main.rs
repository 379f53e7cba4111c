//! The `switchboard` command: `serve`, `config`, and the terminal clients `publish` and `subscribe`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use switchboard::config::Config;

mod bench;
mod cli;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "One self-hosted server for every real-time technique the web has."
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the server (defaults: 127.0.0.1:8080, in-memory broker, demo app at /).
    Serve(ConfigArgs),
    /// Print the effective configuration, defaults included, as TOML (secrets redacted).
    Config(ShowConfigArgs),
    /// Publish JSON on a channel through the server API.
    Publish(cli::PublishArgs),
    /// Subscribe to channels and print each event as a JSON line.
    Subscribe(cli::SubscribeArgs),
    /// Measure latency and throughput over every transport (against --url or an in-process server).
    Bench(bench::BenchArgs),
}

#[derive(Args)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// Where channels live: memory, redis://HOST:PORT or nats://HOST:PORT.
    #[arg(long)]
    broker: Option<String>,
    /// Do not serve the demo app or run its ticker.
    #[arg(long)]
    no_demo: bool,
    /// STUN/TURN address (UDP and TCP).
    #[arg(long)]
    turn_listen: Option<String>,
    /// The address advertised in relayed candidates (behind NAT).
    #[arg(long)]
    turn_external_ip: Option<String>,
    /// Let TURN relay to loopback peers (local testing only).
    #[arg(long)]
    turn_allow_loopback_peers: bool,
    /// Do not run the STUN/TURN server.
    #[arg(long)]
    no_turn: bool,
    /// UDP address for WebRTC media (SFU, data channels, WHIP/WHEP).
    #[arg(long)]
    rtc_listen: Option<String>,
    /// The address put in the server's WebRTC candidate (behind NAT).
    #[arg(long)]
    rtc_external_ip: Option<String>,
    /// Do not serve WebRTC (SFU, data channels, WHIP/WHEP).
    #[arg(long)]
    no_rtc: bool,
    /// Where room recordings are written (docs/recording.md).
    #[arg(long)]
    recordings_dir: Option<String>,
    /// This node's base URL as clients reach it, in a cluster (each room's media on one node).
    #[arg(long)]
    node_url: Option<String>,
    /// The application's backend: `rpc` calls and STOMP SENDs to /app/ are POSTed here (http://).
    #[arg(long)]
    app_proxy_url: Option<String>,
    /// Serve /ws-echo for the Autobahn WebSocket test suite.
    #[arg(long, hide = true)]
    ws_echo_endpoint: bool,
    /// Most real-time connections from one client IP address (0: no limit).
    #[arg(long)]
    max_connections_per_ip: Option<u64>,
    /// Most real-time connections of one user (0: no limit).
    #[arg(long)]
    max_connections_per_user: Option<u64>,
    /// Transport lab sessions open at once (0: the lab is off).
    #[arg(long)]
    lab_max_sessions: Option<u64>,
    /// The most delay or jitter a lab page may apply to its own connections (ms).
    #[arg(long)]
    lab_max_delay_ms: Option<u64>,
    /// Compositions (video MCU) running at once (0: off).
    #[arg(long)]
    video_max_compositions: Option<u64>,
    /// Filter pipelines running at once (0: off).
    #[arg(long)]
    video_max_pipelines: Option<u64>,
    /// Log filter, e.g. `debug`.
    #[arg(long)]
    log: Option<String>,
    /// Log lines as `text` or `json`.
    #[arg(long)]
    log_format: Option<String>,
}

#[derive(Args)]
struct ShowConfigArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print token_secret, api_key, turn_secret, TURN passwords and URL passwords as they are.
    #[arg(long)]
    show_secrets: bool,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, String> {
        let mut flags = toml::Table::new();
        let strings = [
            ("listen", &self.listen),
            ("broker", &self.broker),
            ("turn_listen", &self.turn_listen),
            ("turn_external_ip", &self.turn_external_ip),
            ("rtc_listen", &self.rtc_listen),
            ("rtc_external_ip", &self.rtc_external_ip),
            ("recordings_dir", &self.recordings_dir),
            ("node_url", &self.node_url),
            ("app_proxy_url", &self.app_proxy_url),
            ("log", &self.log),
            ("log_format", &self.log_format),
        ];
        for (key, value) in strings {
            if let Some(v) = value {
                flags.insert(key.into(), v.clone().into());
            }
        }
        let numbers = [
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("max_connections_per_user", self.max_connections_per_user),
            ("lab_max_sessions", self.lab_max_sessions),
            ("lab_max_delay_ms", self.lab_max_delay_ms),
            ("video_max_compositions", self.video_max_compositions),
            ("video_max_pipelines", self.video_max_pipelines),
        ];
        for (key, value) in numbers {
            if let Some(v) = value.and_then(|v| i64::try_from(v).ok()) {
                flags.insert(key.into(), v.into());
            }
        }
        // Switches set an option only when given: `--no-demo` is `demo = false`, and so on.
        let switches = [
            ("demo", self.no_demo, false),
            ("turn", self.no_turn, false),
            ("rtc", self.no_rtc, false),
            ("turn_allow_loopback_peers", self.turn_allow_loopback_peers, true),
            ("ws_echo_endpoint", self.ws_echo_endpoint, true),
        ];
        for (key, given, value) in switches {
            if given {
                flags.insert(key.into(), value.into());
            }
        }
        let env = std::env::vars();
        Config::load(self.config.as_deref(), env, flags).map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    // One crypto backend (aws-lc-rs) for every TLS user: HTTP/3, and any client the CLI opens.
    let _ = wtransport::tls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // A publication to N subscribers wakes N connection tasks at once; past a worker's local
    // queue (256) they wait in the shared one, which a worker looks at only every
    // `global_queue_interval` polls (tuned to about every 200 µs by default), while the tasks it
    // served go back into its local queue first: some subscribers wait several rounds. Every
    // other poll keeps the rounds close to first-come first-served. Measured at 1,000
    // subscribers × 1,200 msg/s on one core: p99 60–63 ms instead of 135–336 ms.
    builder.enable_all().global_queue_interval(2);
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Commands::Serve(args) => serve(args.load()?).await,
            Commands::Config(args) => {
                let config = args.config.load()?.with_demo_namespaces();
                let toml = if args.show_secrets { config } else { config.redacted() }.to_toml();
                cli::print_line(toml.trim_end()).map(|_| ())
            }
            Commands::Publish(args) => cli::publish(args).await,
            Commands::Subscribe(args) => cli::subscribe(args).await,
            Commands::Bench(args) => bench::bench(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log).map_err(|e| format!("log filter: {e}"))?;
    // Colours only for a person at a terminal: a file or a log collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match config.log_format.as_str() {
        "json" => logs.json().init(),
        _ => logs.init(),
    }
    let config = config.with_demo_namespaces();
    let demo = config.demo;
    let server = switchboard::Server::bind(config).await.map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    // A reader that has gone (`serve | head -1`) does not stop the server.
    let scheme = if server.is_tls() { "https" } else { "http" };
    let mut lines = vec![format!(
        "switchboard listening on {scheme}://{addr}{}",
        if demo { " (demo app at /)" } else { "" }
    )];
    if let Some(redirect) = server.redirect_addr() {
        lines.push(format!("redirecting http://{redirect} to https"));
    }
    if let Some(wt) = server.services().webtransport.as_ref() {
        lines.push(format!("WebTransport (HTTP/3) on udp {}:{}/wt", addr.ip(), wt.port));
    }
    if let Some(turn) = server.turn_addr() {
        lines.push(format!("STUN/TURN on {turn} (UDP and TCP)"));
    }
    if let Some(rtc) = server.rtc_addr() {
        lines.push(format!("WebRTC media on udp {rtc} (SFU, data channels, WHIP/WHEP)"));
    }
    if let Some(tls) = server.services().ice.as_ref().and_then(|i| i.tls_addr) {
        lines.push(format!("TURN over TLS on {tls}"));
    }
    for line in lines {
        cli::print_line(line)?;
    }
    server.run(shutdown_signal()).await.map_err(|e| e.to_string())
}

/// The first SIGTERM or ctrl-c starts a drain; a second one ends the process at once.
async fn shutdown_signal() {
    // One listener for both signals, made before the first wait: a second signal that comes
    // before a new listener would exist is not lost.
    let mut signals = Signals::new();
    signals.next().await;
    tokio::spawn(async move {
        signals.next().await;
        eprintln!("switchboard: second signal, exiting without waiting for the drain");
        std::process::exit(1);
    });
}

/// SIGTERM and SIGINT (ctrl-c), or ctrl-c alone where there are no Unix signals.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = signal(SignalKind::terminate()).ok().zip(signal(SignalKind::interrupt()).ok());
            Self { streams }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        match &mut self.streams {
            Some((term, int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            None => std::future::pending().await,
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
