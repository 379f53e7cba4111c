//! Checks on a loaded configuration that its schema cannot express.

use std::net::SocketAddr;

use switchboard_protocol::ChannelName;

use super::{Config, ConfigError, check_backend_url};

impl Config {
    /// Checks what the schema cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if !self.listen.ip().is_loopback() && !self.requires_token() && !self.insecure_allow_open {
            return Err(ConfigError::OpenOnPublicAddress(self.listen));
        }
        if let Err(e) = crate::token_keys::TokenKeys::new(&self.token_secret, &self.token_public_key) {
            return invalid(&format!("token_public_key: {e}"));
        }
        let jwks = &self.token_jwks_url;
        if !(jwks.is_empty() || jwks.starts_with("https://") || jwks.starts_with("http://")) {
            return invalid("token_jwks_url must be an http:// or https:// URL");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return invalid("log_format must be \"text\" or \"json\"");
        }
        if self.outbound_queue == 0 || self.max_subscriptions == 0 || self.max_connections == 0 {
            return invalid("outbound_queue, max_subscriptions and max_connections must be > 0");
        }
        if self.outbound_queue_bytes < 2 * self.max_history_reply_bytes.max(self.max_frame_bytes) {
            return invalid(
                "outbound_queue_bytes must be at least twice max_history_reply_bytes and max_frame_bytes",
            );
        }
        if self.admin_stats_interval_ms < 100 {
            return invalid("admin_stats_interval_ms must be at least 100");
        }
        if self.channel_idle_ttl == 0 {
            return invalid("channel_idle_ttl must be > 0");
        }
        if self.max_publish_rate > 0 && self.max_publish_burst == 0 {
            return invalid("max_publish_burst must be > 0 when max_publish_rate is set");
        }
        if self.ws_read_buffer_bytes < 64 {
            return invalid("ws_read_buffer_bytes must be at least 64");
        }
        if self.max_publication_bytes > self.max_frame_bytes {
            return invalid("max_publication_bytes must not exceed max_frame_bytes");
        }
        if self.ping_interval == 0
            || self.pong_timeout == 0
            || self.heartbeat_interval == 0
            || self.connect_timeout == 0
        {
            return invalid(
                "ping_interval, pong_timeout, heartbeat_interval and connect_timeout must be > 0",
            );
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return invalid("set both tls_cert and tls_key, or neither");
        }
        if !self.http_redirect_listen.is_empty() {
            if self.http_redirect_listen.parse::<SocketAddr>().is_err() {
                return invalid("http_redirect_listen must be IP:PORT");
            }
            if self.tls_cert.is_empty() {
                return invalid("http_redirect_listen needs tls_cert and tls_key (it redirects to https)");
            }
        }
        if self.webtransport_max_streams == 0 {
            return invalid("webtransport_max_streams must be > 0");
        }
        if !self.node_url.is_empty()
            && !self.node_url.starts_with("http://")
            && !self.node_url.starts_with("https://")
        {
            return invalid("node_url must be an http:// or https:// URL");
        }
        if self.game_round_secs == 0 {
            return invalid("game_round_secs must be > 0");
        }
        if self.recordings_dir.is_empty()
            || self.recording_max_seconds == 0
            || self.recording_buffer_frames == 0
        {
            return invalid(
                "recordings_dir must be set, recording_max_seconds and recording_buffer_frames > 0",
            );
        }
        if self.rtc_max_peers == 0 || self.rtc_max_tracks == 0 || self.rtc_video_send_buffer < 64 {
            return invalid("rtc_max_peers and rtc_max_tracks must be > 0, rtc_video_send_buffer >= 64");
        }
        let (w, h) = (self.video_max_width, self.video_max_height);
        if !(16..=4096).contains(&w)
            || !(16..=4096).contains(&h)
            || !w.is_multiple_of(2)
            || !h.is_multiple_of(2)
        {
            return invalid("video_max_width and video_max_height must be even, 16..=4096");
        }
        if !(1..=60).contains(&self.video_max_fps) || self.video_queue_frames == 0 {
            return invalid("video_max_fps must be 1..=60 and video_queue_frames > 0");
        }
        if self.mix_speakers == 0 || !(20..=80).contains(&self.mix_jitter_ms) {
            return invalid("mix_speakers must be > 0 and mix_jitter_ms within 20..=80");
        }
        if !self.rtc_listen.is_empty() && self.rtc_listen.parse::<SocketAddr>().is_err() {
            return invalid("rtc_listen must be IP:PORT");
        }
        if !self.rtc_external_ip.is_empty() && self.rtc_external_ip.parse::<std::net::IpAddr>().is_err() {
            return invalid("rtc_external_ip must be an IP address");
        }
        if !self.app_proxy_url.is_empty() {
            check_backend_url(&self.app_proxy_url).map_err(ConfigError::Invalid)?;
        }
        if self.app_proxy_timeout_ms == 0 {
            return invalid("app_proxy_timeout_ms must be > 0");
        }
        let prefix = self.app_destination_prefix.as_str();
        if prefix.len() < 3 || !prefix.starts_with('/') || !prefix.ends_with('/') {
            return invalid(
                "app_destination_prefix must start and end with / and name something, e.g. /app/",
            );
        }
        if ["/topic/", "/queue/", "/user/"].iter().any(|d| prefix.starts_with(d) || d.starts_with(prefix)) {
            return invalid("app_destination_prefix must not overlap /topic/, /queue/ or /user/");
        }
        let private = std::iter::once(&self.defaults).chain(self.namespaces.values()).any(|o| o.private);
        if private && !self.requires_token() {
            return invalid(
                "a private namespace needs token keys (token_secret, token_public_key or token_jwks_url)",
            );
        }
        if self.presence_ttl < 3 {
            return invalid("presence_ttl must be at least 3 seconds");
        }
        if self.turn {
            self.turn_server().map_err(|e| ConfigError::Invalid(format!("turn: {e}")))?;
        }
        for ns in self.namespaces.keys() {
            if ns.is_empty() || ChannelName::new(ns).is_err() || ns.contains(':') {
                return invalid(&format!("namespace name {ns:?} is not a valid channel prefix"));
            }
        }
        Ok(())
    }
}
