//! Token keys from an identity provider's JWKS (`token_jwks_url`), as Keycloak, Auth0 or Okta
//! publish them: fetched at start, again every `token_jwks_refresh` seconds, and at once (at most
//! every [`MIN_REFETCH`]) when a token names a `kid` the set does not hold, so a rotated key is
//! picked up without a restart. A token's `kid` picks its key; the key's own algorithm family
//! must match the token's `alg`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use parking_lot::RwLock;
use tokio::sync::Notify;

/// The soonest a `kid` nobody knows makes the set be fetched again.
const MIN_REFETCH: Duration = Duration::from_secs(10);
/// The longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest JWKS document taken.
const MAX_BODY: usize = 1 << 20;

/// The keys of a JWKS, by `kid`, kept fresh by [`Jwks::spawn`].
pub struct Jwks {
    url: String,
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// A token named an unknown `kid`.
    unknown: Notify,
}

impl Jwks {
    /// An empty set for `url`; [`spawn`](Self::spawn) fills it.
    pub fn new(url: &str) -> Arc<Self> {
        Arc::new(Jwks { url: url.to_owned(), keys: RwLock::new(HashMap::new()), unknown: Notify::new() })
    }

    /// The key named `kid`; an unknown one asks for a fetch.
    pub fn key(&self, kid: &str) -> Option<DecodingKey> {
        let key = self.keys.read().get(kid).cloned();
        if key.is_none() {
            self.unknown.notify_one();
        }
        key
    }

    /// Keeps the set fresh while the node runs: fetches now, every `every`, and when a token
    /// names an unknown `kid`. Failures are logged and the last good set is kept.
    pub fn spawn(self: &Arc<Self>, every: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let jwks = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                let Some(this) = jwks.upgrade() else { return };
                match tokio::time::timeout(FETCH_TIMEOUT, fetch(&this.url)).await {
                    Ok(Ok(keys)) => {
                        tracing::debug!(url = %this.url, keys = keys.len(), "token JWKS fetched");
                        *this.keys.write() = keys;
                    }
                    Ok(Err(e)) => tracing::warn!(url = %this.url, "token JWKS fetch failed: {e}"),
                    Err(_) => tracing::warn!(url = %this.url, "token JWKS fetch timed out"),
                }
                tokio::time::sleep(MIN_REFETCH.min(every)).await;
                let _ =
                    tokio::time::timeout(every.saturating_sub(MIN_REFETCH), this.unknown.notified()).await;
            }
        });
    }
}

/// The keys of the JWKS at `url` (http or https), by `kid`; keys without a `kid` or of a kind
/// we cannot use are left out.
async fn fetch(url: &str) -> Result<HashMap<String, DecodingKey>, String> {
    let body = get(url).await?;
    let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?)))
        .collect())
}

/// One GET over HTTP/1.1, TLS for `https` (the system's roots); the body, if the status is 200.
async fn get(url: &str) -> Result<Bytes, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("token_jwks_url must be http:// or https://".into()),
    };
    let host = uri.host().ok_or("no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = Request::get(path)
        .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
        .header(hyper::header::USER_AGENT, concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    if tls {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

async fn send<T>(io: T, request: Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    if response.status() != hyper::StatusCode::OK {
        return Err(format!("answered {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_BODY).collect().await.map_err(|e| e.to_string())?;
    Ok(body.to_bytes())
}
