//! What `switchboard bench` measured and how it shows it: a hand-rolled progress bar on stderr
//! (only at a terminal), then a table or JSON.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::{Value, json};

/// One transport's (or one fan-out's) figures.
pub struct Row {
    name: String,
    expected: u64,
    pub received: u64,
    duplicates: u64,
    seen: HashSet<u64>,
    latencies_us: Vec<u64>,
    elapsed: Duration,
}

impl Row {
    pub fn new(name: &str, expected: u64) -> Self {
        Self {
            name: name.into(),
            expected,
            received: 0,
            duplicates: 0,
            seen: HashSet::new(),
            latencies_us: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// A publication `n` arrived after `latency`; false for a duplicate.
    pub fn record(&mut self, n: u64, latency: Duration) -> bool {
        if !self.seen.insert(n) {
            self.duplicates += 1;
            return false;
        }
        self.record_fanout(latency);
        true
    }

    /// A delivery to one of many subscribers (no per-message identity kept).
    pub fn record_fanout(&mut self, latency: Duration) {
        self.received += 1;
        self.latencies_us.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn finish(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
        self.latencies_us.sort_unstable();
    }

    fn percentile_ms(&self, q: f64) -> Option<f64> {
        let n = self.latencies_us.len();
        let i = ((q * n as f64) as usize).min(n.checked_sub(1)?);
        Some(self.latencies_us[i] as f64 / 1000.0)
    }

    fn rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn json(&self) -> Value {
        json!({
            "transport": self.name, "expected": self.expected, "received": self.received,
            "lost": self.expected.saturating_sub(self.received), "duplicates": self.duplicates,
            "p50_ms": self.percentile_ms(0.5), "p99_ms": self.percentile_ms(0.99),
            "max_ms": self.percentile_ms(1.0), "per_second": (self.rate() * 10.0).round() / 10.0,
        })
    }
}

/// The table: one line per row.
pub fn table(title: &str, rows: &[Row], fanout: bool) -> String {
    let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1}"));
    let rate = if fanout { "deliveries/s" } else { "msg/s" };
    let mut out = format!("{title}\n\n");
    out += &format!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>6} {:>5} {:>13}\n",
        "transport", "received", "p50 ms", "p99 ms", "max ms", "lost", "dup", rate
    );
    out += &format!("{}\n", "-".repeat(82));
    for r in rows {
        out += &format!(
            "{:<16} {:>9} {:>9} {:>9} {:>9} {:>6} {:>5} {:>13.1}\n",
            r.name,
            r.received,
            ms(r.percentile_ms(0.5)),
            ms(r.percentile_ms(0.99)),
            ms(r.percentile_ms(1.0)),
            r.expected.saturating_sub(r.received),
            r.duplicates,
            r.rate(),
        );
    }
    out.trim_end().to_owned()
}

/// A progress bar on stderr when it is a terminal; silent otherwise (logs, pipes, tests).
pub struct Progress {
    total: u64,
    done: u64,
    label: String,
    on: bool,
}

impl Progress {
    pub fn new(total: u64) -> Self {
        Self { total: total.max(1), done: 0, label: String::new(), on: std::io::stderr().is_terminal() }
    }

    pub fn label(&mut self, label: &str) {
        label.clone_into(&mut self.label);
        self.draw();
    }

    pub fn step(&mut self) {
        self.done += 1;
        // Redraw at most once per percent.
        if self.done * 100 / self.total != (self.done - 1) * 100 / self.total {
            self.draw();
        }
    }

    fn draw(&self) {
        if !self.on {
            return;
        }
        const WIDTH: u64 = 30;
        let filled = (self.done.min(self.total) * WIDTH / self.total) as usize;
        let bar = format!("{}{}", "█".repeat(filled), "░".repeat(WIDTH as usize - filled));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{:<14} {bar} {:>3}%", self.label, self.done * 100 / self.total);
        let _ = err.flush();
    }

    pub fn finish(&mut self) {
        if self.on {
            let _ = write!(std::io::stderr().lock(), "\r{}\r", " ".repeat(60));
        }
    }
}
