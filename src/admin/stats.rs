//! One node's stats: a snapshot of its gauges and per-second rates, published on
//! [`super::STATS_CHANNEL`] every `admin_stats_interval_ms` (so a dashboard connected to any
//! node of a cluster sees every node) and answered by `GET /api/admin/node`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};
use switchboard_protocol::ChannelName;

use crate::broker::{Health, NewPublication};
use crate::config::ChannelOptions;
use crate::metrics::TransportKind;
use crate::model::Payload;
use crate::state::AppState;

/// The busiest channels each snapshot lists, so a dashboard on any node can rank the cluster's.
pub const BUSIEST: usize = 10;

/// Stats publications kept in the channel's history (per cluster, all nodes together).
const HISTORY: usize = 300;

/// The counters a rate is computed from.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    publications: u64,
}

/// This node's name, start time and last rates.
#[derive(Debug)]
pub struct Sampler {
    node: String,
    started: SystemTime,
    last: Mutex<Option<(Instant, Counters)>>,
    /// Per second, over the last interval: in, out, bytes in, bytes out, publications.
    rates: Mutex<[f64; 5]>,
}

impl Sampler {
    /// A sampler for a node reached at `node_url` (empty: a random name).
    pub fn new(node_url: &str) -> Self {
        let node = match node_url.trim_end_matches('/') {
            "" => format!("node-{:06x}", rand::random::<u32>() & 0xff_ffff),
            url => url.to_owned(),
        };
        Self { node, started: SystemTime::now(), last: Mutex::default(), rates: Mutex::default() }
    }

    /// This node's name in the stats.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn counters(state: &AppState) -> Counters {
        let m = &state.metrics;
        Counters {
            messages_in: m.messages_in.get(),
            messages_out: m.messages_out.get(),
            bytes_in: m.bytes_in.get(),
            bytes_out: m.bytes_out.get(),
            publications: m.publications.get(),
        }
    }

    /// Takes a sample: the rates since the previous one.
    pub fn tick(&self, state: &AppState) {
        let (now, c) = (Instant::now(), Self::counters(state));
        let mut last = self.last.lock();
        if let Some((at, p)) = *last {
            let secs = now.saturating_duration_since(at).as_secs_f64().max(1e-3);
            let rate = |a: u64, b: u64| (a.saturating_sub(b) as f64 / secs * 10.0).round() / 10.0;
            *self.rates.lock() = [
                rate(c.messages_in, p.messages_in),
                rate(c.messages_out, p.messages_out),
                rate(c.bytes_in, p.bytes_in),
                rate(c.bytes_out, p.bytes_out),
                rate(c.publications, p.publications),
            ];
        }
        *last = Some((now, c));
        state.metrics.channel_rates.prune(crate::channel_rates::now_seconds());
    }

    /// The node's snapshot now, with the rates of the last sample.
    pub fn snapshot(&self, state: &AppState) -> Value {
        let m = &state.metrics;
        let mut connections = serde_json::Map::new();
        for t in TransportKind::ALL {
            connections.insert(t.label().into(), json!(m.open_connections(t)));
        }
        let [rin, rout, bin, bout, pubs] = *self.rates.lock();
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (up, reason) = match state.broker.health() {
            Health::Ok => (true, None),
            Health::Unavailable(why) => (false, Some(why)),
        };
        json!({
            "node": self.node,
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": unix(self.started).as_secs(),
            "uptime_seconds": self.started.elapsed().unwrap_or_default().as_secs(),
            "at_ms": unix(SystemTime::now()).as_millis() as u64,
            "broker": {
                "kind": state.config.broker.split("://").next().unwrap_or("memory"),
                "up": up,
                "reason": reason,
                "reconnects": state.broker.reconnects(),
            },
            "connections": connections,
            "channels": state.hub.channels().len(),
            "rate": {
                "messages_in": rin,
                "messages_out": rout,
                "bytes_in": bin,
                "bytes_out": bout,
                "publications": pubs,
            },
            "totals": {
                "messages_in": m.messages_in.get(),
                "messages_out": m.messages_out.get(),
                "publications": m.publications.get(),
                "slow_consumers": m.slow_consumers.get(),
            },
            "rtc_peers": m.rtc_peers.get(),
            "busiest": m
                .channel_rates
                .busiest(crate::channel_rates::now_seconds(), BUSIEST)
                .into_iter()
                .map(|(c, r)| json!({"channel": c.as_str(), "rate": (r * 10.0).round() / 10.0}))
                .collect::<Vec<_>>(),
        })
    }
}

/// Publishes this node's snapshot on the stats channel every `admin_stats_interval_ms` until
/// the server stops.
pub async fn publish(state: Arc<AppState>) {
    let Ok(channel) = ChannelName::new(super::STATS_CHANNEL) else { return };
    let options = ChannelOptions {
        history_size: HISTORY,
        history_ttl: 600,
        presence: false,
        client_publish: false,
        ..ChannelOptions::default()
    };
    let every = Duration::from_millis(state.config.admin_stats_interval_ms.max(100));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = state.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        state.sampler.tick(&state);
        let data = state.sampler.snapshot(&state);
        let request = NewPublication {
            channel: channel.clone(),
            payload: Payload::Json(data.to_string().into()),
            info: None,
            idempotency_key: None,
            options: options.clone(),
        };
        // Not counted as the node's own traffic would be: the stats would measure themselves.
        if let Err(e) = state.broker.publish(request).await {
            tracing::debug!(error = %e, "admin stats publish failed");
        }
        state.metrics.admin_stats_published.add(1);
    }
}
