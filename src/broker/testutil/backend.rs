//! Real `redis-server` and `nats-server -js` processes on free ports, for tests. Std only, so that
//! the integration tests' harness (`tests/common/mod.rs`) includes this one file too (`#[path]`).
//!
//! A missing server binary skips the test with a message, except under `CI=true`, where it fails:
//! CI must run these tests (`scripts/test` installs Debian's `redis-server` and `nats-server`).

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `redis-server`, data in memory only (a restart loses everything).
    Redis,
    /// `redis-server` with an fsync-always append-only file (a restart keeps everything).
    RedisPersistent,
    /// `nats-server -js` with file storage (a restart keeps the streams).
    Nats,
}

/// A running server; killed (and its data removed) on drop.
pub struct Backend {
    kind: Kind,
    /// The port it listens on, kept across restarts.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Backend {
    /// Starts a server, or `None` (with a message) when its binary is missing outside CI.
    pub fn start(kind: Kind) -> Option<Self> {
        let binary = match kind {
            Kind::Redis | Kind::RedisPersistent => "redis-server",
            Kind::Nats => "nats-server",
        };
        if find(binary).is_none() {
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("{binary} is not installed, and CI must run this test (apt-get install {binary})");
            }
            eprintln!("SKIPPED: {binary} is not installed (apt-get install {binary})");
            return None;
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("switchboard-{binary}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let mut server = Self { kind, port: free_port(), dir, child: None };
        server.spawn();
        Some(server)
    }

    /// `redis://127.0.0.1:PORT` or `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis | Kind::RedisPersistent => format!("redis://127.0.0.1:{}", self.port),
            Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// Where the server keeps its data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.display().to_string();
        let mut cmd = match self.kind {
            Kind::Redis | Kind::RedisPersistent => {
                let mut c = Command::new(find("redis-server").expect("redis-server"));
                c.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--dir", &dir]).args([
                    "--daemonize",
                    "no",
                    "--protected-mode",
                    "no",
                    "--loglevel",
                    "warning",
                ]);
                if self.kind == Kind::RedisPersistent {
                    c.args(["--appendonly", "yes", "--appendfsync", "always"]);
                } else {
                    c.args(["--appendonly", "no"]);
                }
                c
            }
            Kind::Nats => {
                let mut c = Command::new(find("nats-server").expect("nats-server"));
                c.args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd", &dir]);
                c
            }
        };
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        self.child = Some(child.expect("the server starts"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "{:?} did not listen on {}", self.kind, self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.kind == Kind::Nats {
            // JetStream needs a moment after the listener is up.
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Kills the server (SIGKILL: nothing is flushed that was not already).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port with the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
