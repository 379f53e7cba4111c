//! TLS for the main listener: `tls_cert` / `tls_key`, reloaded when either file changes (a
//! renewed certificate is served from the next handshake, no restart), ALPN `h2` and
//! `http/1.1`, the aws-lc-rs provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A file's identity for change detection: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Reads and checks a certificate chain and its key.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("tls_cert {}: no certificate in it", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let signer =
        aws_lc_rs::sign::any_supported_type(&der).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| format!("tls_key {} does not match tls_cert: {e}", key.display()))?;
    Ok(Arc::new(certified))
}

/// Serves the current certificate; each handshake checks the files' stamps (two `stat`s, far
/// cheaper than the handshake) and reloads them when they changed.
#[derive(Debug)]
pub struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    stamps: (Stamp, Stamp),
    key: Arc<CertifiedKey>,
    /// A failed reload (a half-written pair) is retried at most once a second.
    failed: Option<Instant>,
}

impl Reloading {
    /// Loads the pair once; an error here stops start-up.
    pub fn new(cert: &Path, key: &Path) -> Result<Self, String> {
        let stamps = (stamp(cert), stamp(key));
        let loaded = load(cert, key)?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: Mutex::new(Current { stamps, key: loaded, failed: None }),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        let mut current = self.current.lock();
        let retry = current.failed.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if stamps != current.stamps && retry {
            match load(&self.cert, &self.key) {
                Ok(key) => {
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    *current = Current { stamps, key, failed: None };
                }
                Err(e) => {
                    tracing::warn!("TLS certificate not reloaded, serving the previous one: {e}");
                    current.failed = Some(Instant::now());
                }
            }
        }
        current.key.clone()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The listener's TLS configuration.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let resolver = Arc::new(Reloading::new(cert, key)?);
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
