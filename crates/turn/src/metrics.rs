//! [`Metrics`]: atomic counters shared by the core and the drivers, rendered as Prometheus
//! text lines prefixed `switchboard_turn_`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::codec::attr::method;

const METHODS: [&str; 6] = ["binding", "allocate", "refresh", "create_permission", "channel_bind", "other"];

fn method_index(m: u16) -> usize {
    match m {
        method::BINDING => 0,
        method::ALLOCATE => 1,
        method::REFRESH => 2,
        method::CREATE_PERMISSION => 3,
        method::CHANNEL_BIND => 4,
        _ => 5,
    }
}

/// Counters of one TURN server. All are monotonic except `allocations_active`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Allocations currently held.
    pub allocations_active: AtomicU64,
    /// Allocations ever created.
    pub allocations_total: AtomicU64,
    /// Payload bytes relayed client → peer.
    pub bytes_to_peer: AtomicU64,
    /// Payload bytes relayed peer → client.
    pub bytes_to_client: AtomicU64,
    /// Packets relayed client → peer.
    pub packets_to_peer: AtomicU64,
    /// Packets relayed peer → client.
    pub packets_to_client: AtomicU64,
    /// Packets dropped by the bandwidth quota.
    pub packets_dropped_bandwidth: AtomicU64,
    /// Requests whose credentials were wrong, unknown or expired.
    pub auth_failures: AtomicU64,
    /// Peer addresses refused by the peer policy (403, or silently dropped Send indications).
    pub peers_denied: AtomicU64,
    /// Datagrams or frames that failed to decode.
    pub malformed: AtomicU64,
    /// TCP client connections currently open.
    pub tcp_connections: AtomicU64,
    requests: [[AtomicU64; 2]; 6],
}

impl Metrics {
    /// Counts one answered request of `method`; `ok` for a success response.
    pub fn record_request(&self, method: u16, ok: bool) {
        self.requests[method_index(method)][usize::from(!ok)].fetch_add(1, Relaxed);
    }

    /// Requests answered for `method` (success, error).
    pub fn requests(&self, method: u16) -> (u64, u64) {
        let r = &self.requests[method_index(method)];
        (r[0].load(Relaxed), r[1].load(Relaxed))
    }

    /// Prometheus text exposition lines, each metric prefixed `switchboard_turn_`.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut one = |name: &str, kind: &str, help: &str, series: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP switchboard_turn_{name} {help}");
            let _ = writeln!(out, "# TYPE switchboard_turn_{name} {kind}");
            for (labels, v) in series {
                let _ = writeln!(out, "switchboard_turn_{name}{labels} {v}");
            }
        };
        let l = |a: &AtomicU64| a.load(Relaxed);
        one(
            "allocations_active",
            "gauge",
            "Allocations currently held.",
            &[("", l(&self.allocations_active))],
        );
        one("allocations_total", "counter", "Allocations created.", &[("", l(&self.allocations_total))]);
        one(
            "relayed_bytes_total",
            "counter",
            "Payload bytes relayed.",
            &[
                ("{direction=\"to_peer\"}", l(&self.bytes_to_peer)),
                ("{direction=\"to_client\"}", l(&self.bytes_to_client)),
            ],
        );
        one(
            "relayed_packets_total",
            "counter",
            "Packets relayed.",
            &[
                ("{direction=\"to_peer\"}", l(&self.packets_to_peer)),
                ("{direction=\"to_client\"}", l(&self.packets_to_client)),
            ],
        );
        one(
            "dropped_packets_total",
            "counter",
            "Packets dropped by the bandwidth quota.",
            &[("{reason=\"bandwidth\"}", l(&self.packets_dropped_bandwidth))],
        );
        one(
            "auth_failures_total",
            "counter",
            "Requests with wrong, unknown or expired credentials.",
            &[("", l(&self.auth_failures))],
        );
        one(
            "peers_denied_total",
            "counter",
            "Peer addresses refused by the peer policy.",
            &[("", l(&self.peers_denied))],
        );
        one(
            "malformed_total",
            "counter",
            "Datagrams or frames that failed to decode.",
            &[("", l(&self.malformed))],
        );
        one("tcp_connections", "gauge", "TCP client connections open.", &[("", l(&self.tcp_connections))]);
        let labels: Vec<(String, u64)> = METHODS
            .iter()
            .enumerate()
            .flat_map(|(i, m)| {
                [("success", 0), ("error", 1)].map(|(res, j)| {
                    (format!("{{method=\"{m}\",result=\"{res}\"}}"), self.requests[i][j].load(Relaxed))
                })
            })
            .collect();
        let series: Vec<(&str, u64)> = labels.iter().map(|(s, v)| (s.as_str(), *v)).collect();
        one("requests_total", "counter", "Requests answered, by method and result.", &series);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_lines() {
        let m = Metrics::default();
        m.record_request(method::ALLOCATE, true);
        m.record_request(method::ALLOCATE, false);
        m.record_request(0x0FFF, false);
        m.bytes_to_peer.fetch_add(42, Relaxed);
        let text = m.render_prometheus();
        assert!(text.contains("switchboard_turn_requests_total{method=\"allocate\",result=\"success\"} 1\n"));
        assert!(text.contains("switchboard_turn_requests_total{method=\"other\",result=\"error\"} 1\n"));
        assert!(text.contains("switchboard_turn_relayed_bytes_total{direction=\"to_peer\"} 42\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("switchboard_turn_"), "{line}");
        }
        assert_eq!(m.requests(method::ALLOCATE), (1, 1));
    }
}
