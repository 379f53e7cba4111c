//! The built-in STUN/TURN server (crate `switchboard-turn`): its configuration from ours, and
//! `GET /api/ice-servers`, which hands out fresh time-limited credentials.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use switchboard_protocol::ErrorCode;
use switchboard_turn::{TurnConfig, TurnError, make_credential};

use crate::http::{HttpError, bearer};
use crate::session::Now;
use crate::state::AppState;

/// Why the TURN server did not start, with what to change. A port it cannot bind is most often
/// held by another node on the same machine (every node defaults to port 3478): the text names
/// the flag and option that give this node its own address, and those that turn TURN off.
pub fn start_error(config: &TurnConfig, e: &TurnError) -> String {
    let TurnError::Io { source, .. } = e else {
        return e.to_string();
    };
    let busy = match source.kind() {
        std::io::ErrorKind::AddrInUse => " (is another switchboard node running on this machine?)",
        _ => "",
    };
    let example = SocketAddr::new(config.listen.ip(), config.listen.port().wrapping_add(1).max(1));
    let tls = match &config.tls {
        Some(tls) => format!(
            "; TURN over TLS listens on {} (turn_tls_listen, SWITCHBOARD_TURN_TLS_LISTEN)",
            tls.listen
        ),
        None => String::new(),
    };
    format!(
        "{e}{busy}. Give this node its own STUN/TURN address with --turn-listen IP:PORT \
         (e.g. --turn-listen {example}; turn_listen in the configuration file, \
         SWITCHBOARD_TURN_LISTEN){tls}, or run it without STUN/TURN: --no-turn (turn = false, \
         SWITCHBOARD_TURN=false)"
    )
}

/// A random secret for time-limited credentials, when none is configured.
pub fn random_secret() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// What `/api/ice-servers` needs to know about the running TURN server.
#[derive(Debug, Clone)]
pub struct IceInfo {
    /// The TURN server's address (UDP; TCP on the same port when `tcp`).
    pub addr: SocketAddr,
    /// The TURN-over-TLS address, when a certificate is configured.
    pub tls_addr: Option<SocketAddr>,
    /// TCP is served too.
    pub tcp: bool,
    /// The address to advertise instead of `addr`'s IP.
    pub external_ip: Option<IpAddr>,
    /// The shared secret.
    pub secret: String,
    /// How long credentials stay valid.
    pub ttl: Duration,
    /// Its metrics.
    pub metrics: Arc<switchboard_turn::Metrics>,
}

/// `/api/ice-servers`, answered from the running TURN server (`None`: it is off).
pub fn routes(ice: Option<IceInfo>) -> axum::Router<Arc<AppState>> {
    let handler = move |state, headers| ice_servers(state, headers, ice.clone());
    axum::Router::new().route("/api/ice-servers", axum::routing::get(handler))
}

/// `GET /api/ice-servers`: `{"iceServers": [...], "ttl": secs}`, ready for `RTCPeerConnection`.
async fn ice_servers(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ice: Option<IceInfo>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let Some(ice) = ice else {
        return Err(HttpError::new(ErrorCode::NotAvailable, "the TURN server is off"));
    };
    let user = if state.config.requires_token() {
        let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        if state.rules.auth().api_key_ok(key) {
            "server".to_owned()
        } else {
            let token = bearer(&headers);
            state
                .rules
                .auth()
                .authenticate(token, Now::current().unix)
                .map_err(|d| HttpError::new(ErrorCode::Unauthorized, d.reason))?
                .user
        }
    } else {
        "anonymous".to_owned()
    };
    let host = match (ice.external_ip, ice.addr.ip()) {
        (Some(ip), _) => ip.to_string(),
        (None, ip) if ip.is_unspecified() => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host).to_owned())
            .unwrap_or_else(|| "127.0.0.1".into()),
        (None, ip) => ip.to_string(),
    };
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
    let port = ice.addr.port();
    let (username, credential) = make_credential(&ice.secret, &user, ice.ttl, Now::current().unix);
    let mut turn_urls = vec![format!("turn:{host}:{port}?transport=udp")];
    if ice.tcp {
        turn_urls.push(format!("turn:{host}:{port}?transport=tcp"));
    }
    if let Some(tls) = ice.tls_addr {
        // `turns:` needs the certificate's name; the Host the client used is the best guess.
        let name = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host).to_owned())
            .unwrap_or_else(|| host.clone());
        turn_urls.push(format!("turns:{name}:{}?transport=tcp", tls.port()));
    }
    Ok(Json(serde_json::json!({
        "iceServers": [
            {"urls": [format!("stun:{host}:{port}")]},
            {"urls": turn_urls, "username": username, "credential": credential},
        ],
        "ttl": ice.ttl.as_secs(),
    })))
}
