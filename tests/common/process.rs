//! `switchboard serve` as a child process, for tests that kill a node outright (an in-process
//! server can only be shut down gracefully).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// One `switchboard serve` process on 127.0.0.1:0; killed on drop.
pub struct Node {
    child: Child,
    /// `http://127.0.0.1:PORT`, as the node printed it.
    pub url: String,
}

impl Node {
    /// A node on `broker` (a `redis://` or `nats://` URL) with a 3 s presence TTL. The test's
    /// own `SWITCHBOARD_*` variables are not passed on.
    pub fn start(broker: &str) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        for (k, _) in std::env::vars() {
            if k.starts_with("SWITCHBOARD_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--no-demo", "--log", "warn"])
            .env("SWITCHBOARD_BROKER", broker)
            .env("SWITCHBOARD_PRESENCE_TTL", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("switchboard starts");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        out.read_line(&mut line).expect("a first line");
        // Keep draining: a closed pipe would fail the node's next print.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Self { child, url }
    }

    /// Kills the process (SIGKILL: its clients see their connections drop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
