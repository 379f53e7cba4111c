//! Prometheus metrics: a fixed set of atomic counters, rendered as text at `GET /metrics`.
//! Hot paths add in batches (one `add` per fan-out or per socket write), not per message.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

const LATENCY_BUCKETS_MS: [f64; 12] =
    [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0];

/// A histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        if let Some(i) = LATENCY_BUCKETS_MS.iter().position(|b| ms <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Appends this histogram as Prometheus text, `switchboard_{name}` in seconds.
    pub fn render(&self, s: &mut String, name: &str, help: &str) {
        let _ = write!(s, "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} histogram\n");
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(s, "switchboard_{name}_bucket{{le=\"{}\"}} {cumulative}", b / 1000.0);
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(s, "switchboard_{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "switchboard_{name}_sum {sum}\nswitchboard_{name}_count {count}");
    }
}

/// The transports, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// `/ws`.
    WebSocket,
    /// `/sse`.
    Sse,
    /// `/stream`.
    Stream,
    /// `/poll` with `wait`.
    LongPoll,
    /// `/poll`.
    Poll,
    /// `/wt` (WebTransport over HTTP/3).
    WebTransport,
    /// `/rtc/dc` (a WebRTC data channel).
    WebRtc,
    /// STOMP over WebSocket (`/stomp`, or `/ws` with a `vNN.stomp` subprotocol).
    Stomp,
    /// A SockJS session (`/sockjs`), whatever it carries.
    Sockjs,
}

impl TransportKind {
    /// Every transport.
    pub const ALL: [TransportKind; 9] = [
        TransportKind::WebSocket,
        TransportKind::Sse,
        TransportKind::Stream,
        TransportKind::LongPoll,
        TransportKind::Poll,
        TransportKind::WebTransport,
        TransportKind::WebRtc,
        TransportKind::Stomp,
        TransportKind::Sockjs,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            TransportKind::WebSocket => "websocket",
            TransportKind::Sse => "sse",
            TransportKind::Stream => "stream",
            TransportKind::LongPoll => "long_poll",
            TransportKind::Poll => "poll",
            TransportKind::WebTransport => "webtransport",
            TransportKind::WebRtc => "webrtc",
            TransportKind::Stomp => "stomp",
            TransportKind::Sockjs => "sockjs",
        }
    }
}

/// Every metric of the server.
#[derive(Debug, Default)]
pub struct Metrics {
    connections: [Gauge; TransportKind::ALL.len()],
    connections_total: [Counter; TransportKind::ALL.len()],
    /// Publications accepted.
    pub publications: Counter,
    /// Client commands and API requests received.
    pub messages_in: Counter,
    /// Bytes received in commands and publish bodies.
    pub bytes_in: Counter,
    /// Deliveries queued to connections.
    pub deliveries: Counter,
    /// Deliveries dropped because a connection's queue was full.
    pub deliveries_dropped: Counter,
    /// Frames and events written to clients.
    pub messages_out: Counter,
    /// Bytes written to clients.
    pub bytes_out: Counter,
    /// Deliveries the fan-out wrote to a waiting connection's socket itself ([`crate::direct`]),
    /// counted in `messages_out` too.
    pub direct_writes: Counter,
    /// Connections ended as slow consumers.
    pub slow_consumers: Counter,
    /// Connections refused because the node held `max_connections`.
    pub refused_total: Counter,
    /// Connections refused by `max_connections_per_ip`.
    pub refused_per_ip: Counter,
    /// Connections refused by `max_connections_per_user`.
    pub refused_per_user: Counter,
    /// Publishes refused by `max_publish_rate`.
    pub publish_rate_limited: Counter,
    /// Subscriptions and publications refused by `max_channels`.
    pub channel_limit_refused: Counter,
    /// Channels whose state was swept after `channel_idle_ttl`.
    pub channels_swept: Counter,
    /// Channels whose state the node holds (the in-memory broker's streams).
    pub channels: Gauge,
    /// WebRTC offers refused by `rtc_offers_per_ip_per_minute`.
    pub rtc_offers_refused: Counter,
    /// From publish to the socket write that carried it.
    pub fanout_latency: Histogram,
    /// WebRTC peer connections held (SFU, WHIP, WHEP, data channels).
    pub rtc_peers: Gauge,
    /// Games of the `/game` demo whose referee runs on this node.
    pub games: Gauge,
    /// Guesses and chat lines the game referees received.
    pub game_guesses: Counter,
    /// Media frames the SFU forwarded to receivers.
    pub rtc_frames_forwarded: Counter,
    /// Bytes of media the SFU forwarded (payload, before RTP packetization).
    pub rtc_bytes_forwarded: Counter,
    /// Disconnects and unsubscribes done through the admin endpoints.
    pub admin_actions: Counter,
    /// Admin endpoint requests refused (no or a wrong key or password).
    pub admin_refused: Counter,
    /// Stats snapshots this node published on `__admin:stats`.
    pub admin_stats_published: Counter,
    /// Publications per second by channel (the dashboard's busiest first).
    pub channel_rates: crate::channel_rates::ChannelRates,
    /// Frames a media tap dropped because its consumer (recording, mixer) was behind.
    pub media_tap_dropped: Counter,
    /// Recordings running on this node.
    pub recordings_active: Gauge,
    /// Recordings that ended with an error (full disk, ...).
    pub recordings_failed: Counter,
    /// Bytes recordings wrote.
    pub recording_bytes_written: Counter,
    /// Metrics of the optional services (the TURN server's), appended to [`Metrics::render`].
    sources: Sources,
}

/// Renders a component's metrics as Prometheus text.
type Render = Box<dyn Fn(&mut String) + Send + Sync>;

/// Renderers of other components' metrics.
#[derive(Default)]
struct Sources(parking_lot::Mutex<Vec<Render>>);

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} sources", self.0.lock().len())
    }
}

impl Metrics {
    /// A connection of `transport` opened; the guard counts it down when dropped.
    pub fn connection(self: &std::sync::Arc<Self>, transport: TransportKind) -> ConnectionGuard {
        let i = transport as usize;
        self.connections[i].add(1);
        self.connections_total[i].add(1);
        ConnectionGuard { metrics: self.clone(), index: i }
    }

    /// A request counted already (a poll) is held open as a connection (a long poll waiting);
    /// the guard counts it down when dropped.
    pub fn held(self: &std::sync::Arc<Self>, transport: TransportKind) -> ConnectionGuard {
        let i = transport as usize;
        self.connections[i].add(1);
        ConnectionGuard { metrics: self.clone(), index: i }
    }

    /// A poll request was served.
    pub fn request(&self, transport: TransportKind) {
        self.connections_total[transport as usize].add(1);
    }

    /// Open connections of `transport`.
    pub fn open_connections(&self, transport: TransportKind) -> i64 {
        self.connections[transport as usize].get()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        s.push_str("# HELP switchboard_connections Open connections by transport.\n# TYPE switchboard_connections gauge\n");
        for t in TransportKind::ALL {
            let _ = writeln!(
                s,
                "switchboard_connections{{transport=\"{}\"}} {}",
                t.label(),
                self.connections[t as usize].get()
            );
        }
        s.push_str("# HELP switchboard_connections_total Connections (and poll requests) accepted by transport.\n# TYPE switchboard_connections_total counter\n");
        for t in TransportKind::ALL {
            let _ = writeln!(
                s,
                "switchboard_connections_total{{transport=\"{}\"}} {}",
                t.label(),
                self.connections_total[t as usize].get()
            );
        }
        let counters = [
            ("publications_total", "Publications accepted.", &self.publications),
            ("messages_in_total", "Commands and API requests received.", &self.messages_in),
            ("bytes_in_total", "Bytes received in commands and publish bodies.", &self.bytes_in),
            ("deliveries_total", "Deliveries queued to connections.", &self.deliveries),
            (
                "deliveries_dropped_total",
                "Deliveries dropped at a full connection queue.",
                &self.deliveries_dropped,
            ),
            ("messages_out_total", "Frames and events written to clients.", &self.messages_out),
            ("bytes_out_total", "Bytes written to clients.", &self.bytes_out),
            (
                "direct_writes_total",
                "Deliveries the fan-out wrote to a waiting connection's socket itself (also in messages_out).",
                &self.direct_writes,
            ),
            ("slow_consumers_total", "Connections ended as slow consumers.", &self.slow_consumers),
            (
                "publish_rate_limited_total",
                "Publishes refused by max_publish_rate.",
                &self.publish_rate_limited,
            ),
            (
                "channel_limit_refused_total",
                "Subscriptions and publications refused by max_channels.",
                &self.channel_limit_refused,
            ),
            ("channels_swept_total", "Idle channels whose state was swept.", &self.channels_swept),
            (
                "rtc_offers_refused_total",
                "WebRTC offers refused by rtc_offers_per_ip_per_minute.",
                &self.rtc_offers_refused,
            ),
            (
                "admin_actions_total",
                "Disconnects and unsubscribes done through the admin endpoints.",
                &self.admin_actions,
            ),
            (
                "admin_refused_total",
                "Admin endpoint requests refused for a missing or wrong key.",
                &self.admin_refused,
            ),
            (
                "admin_stats_published_total",
                "Stats snapshots published on __admin:stats.",
                &self.admin_stats_published,
            ),
            (
                "channel_rates_untracked_total",
                "Publications to channels whose rate went untracked (admin_rate_channels reached).",
                &self.channel_rates.untracked,
            ),
            ("rtc_frames_forwarded_total", "Media frames the SFU forwarded.", &self.rtc_frames_forwarded),
            ("game_guesses_total", "Guesses and chat lines the game referees received.", &self.game_guesses),
            (
                "rtc_bytes_forwarded_total",
                "Media payload bytes the SFU forwarded.",
                &self.rtc_bytes_forwarded,
            ),
            (
                "media_tap_dropped_total",
                "Frames media taps dropped because their consumer (recording, mixer) was behind.",
                &self.media_tap_dropped,
            ),
            ("recordings_failed_total", "Recordings that ended with an error.", &self.recordings_failed),
            ("recording_bytes_written_total", "Bytes recordings wrote.", &self.recording_bytes_written),
        ];
        for (name, help, c) in counters {
            let _ = write!(
                s,
                "# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} counter\nswitchboard_{name} {}\n",
                c.get()
            );
        }
        s.push_str("# HELP switchboard_connections_refused_total Connections refused, by the limit that refused them.\n# TYPE switchboard_connections_refused_total counter\n");
        for (reason, c) in [
            ("total", &self.refused_total),
            ("per_ip", &self.refused_per_ip),
            ("per_user", &self.refused_per_user),
        ] {
            let _ = writeln!(s, "switchboard_connections_refused_total{{reason=\"{reason}\"}} {}", c.get());
        }
        let _ = write!(
            s,
            "# HELP switchboard_channels Channels whose state this node holds.\n# TYPE switchboard_channels gauge\nswitchboard_channels {}\n",
            self.channels.get()
        );
        let _ = write!(
            s,
            "# HELP switchboard_rtc_peers WebRTC peer connections held.\n# TYPE switchboard_rtc_peers gauge\nswitchboard_rtc_peers {}\n",
            self.rtc_peers.get()
        );
        let _ = write!(
            s,
            "# HELP switchboard_games Games whose referee runs on this node.\n# TYPE switchboard_games gauge\nswitchboard_games {}\n",
            self.games.get()
        );
        let _ = write!(
            s,
            "# HELP switchboard_channel_rates_tracked Channels whose publication rate is tracked.\n# TYPE switchboard_channel_rates_tracked gauge\nswitchboard_channel_rates_tracked {}\n",
            self.channel_rates.tracked.get()
        );
        let _ = write!(
            s,
            "# HELP switchboard_recordings_active Recordings running on this node.\n# TYPE switchboard_recordings_active gauge\nswitchboard_recordings_active {}\n",
            self.recordings_active.get()
        );
        let h = &self.fanout_latency;
        s.push_str("# HELP switchboard_fanout_latency_seconds From publish to the write that carried it.\n# TYPE switchboard_fanout_latency_seconds histogram\n");
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                s,
                "switchboard_fanout_latency_seconds_bucket{{le=\"{}\"}} {cumulative}",
                b / 1000.0
            );
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(s, "switchboard_fanout_latency_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "switchboard_fanout_latency_seconds_sum {}",
            h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "switchboard_fanout_latency_seconds_count {count}");
        for source in self.sources.0.lock().iter() {
            source(&mut s);
        }
        s
    }

    /// Adds a component's metrics (rendered as Prometheus text) to [`Metrics::render`].
    pub fn add_source(&self, render: impl Fn(&mut String) + Send + Sync + 'static) {
        self.sources.0.lock().push(Box::new(render));
    }
}

/// Counts a connection down when dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: std::sync::Arc<Metrics>,
    index: usize,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.connections[self.index].add(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn renders_counters_gauges_and_histogram() {
        let m = Arc::new(Metrics::default());
        let g = m.connection(TransportKind::Sse);
        m.fanout_latency.observe(Duration::from_millis(3));
        m.publications.add(2);
        let text = m.render();
        assert!(text.contains("switchboard_connections{transport=\"sse\"} 1"));
        assert!(text.contains("switchboard_publications_total 2"));
        assert!(text.contains("switchboard_fanout_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("switchboard_fanout_latency_seconds_bucket{le=\"0.002\"} 0"));
        drop(g);
        assert!(m.render().contains("switchboard_connections{transport=\"sse\"} 0"));
    }
}
