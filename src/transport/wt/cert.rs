//! HTTP/3 certificates: a configured PEM pair, or a self-signed development certificate that a
//! browser accepts through `serverCertificateHashes`.
//!
//! The browsers' rule for a hash-pinned certificate: ECDSA (P-256 here), currently valid, and
//! valid for at most 14 days in total. Ours is valid for [`VALIDITY`] (from an hour before it was
//! made, for clock skew) and replaced every [`RENEW_EVERY`], so the hash served at
//! `/wt/cert-hash` always names a certificate with days left.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wtransport::Identity;
use wtransport::tls::self_signed::time::{Duration as TimeDuration, OffsetDateTime};

/// Total validity of a development certificate (the browsers allow at most 14 days).
pub const VALIDITY: Duration = Duration::from_secs(10 * 24 * 3600);
/// How long before its start a development certificate is already valid (clock skew).
pub const BACKDATE: Duration = Duration::from_secs(3600);
/// A development certificate is replaced after this long, with days of validity left.
pub const RENEW_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why no certificate could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The PEM files could not be read or parsed.
    #[error("cannot load tls_cert {cert:?} / tls_key {key:?}: {message}")]
    Load {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// Why.
        message: String,
    },
    /// The self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
}

/// A certificate with what the browser needs to pin it.
pub struct Cert {
    /// Certificate chain and key.
    pub identity: Identity,
    /// SHA-256 of the leaf certificate's DER.
    pub hash: [u8; 32],
    /// Unix seconds when it stops being valid (self-signed only).
    pub not_after: Option<u64>,
}

impl Cert {
    /// A self-signed ECDSA P-256 certificate for `localhost`, the loopback addresses and `host`.
    pub fn self_signed(host: Option<IpAddr>) -> Result<Self, CertError> {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        if let Some(ip) = host.filter(|ip| !ip.is_unspecified() && !ip.is_loopback()) {
            names.push(ip.to_string());
        }
        let now = OffsetDateTime::now_utc();
        let not_before = now - TimeDuration::seconds(BACKDATE.as_secs() as i64);
        let not_after = not_before + TimeDuration::seconds(VALIDITY.as_secs() as i64);
        let identity = Identity::self_signed_builder()
            .subject_alt_names(names)
            .not_before(not_before)
            .not_after(not_after)
            .build()
            .map_err(|e| CertError::Generate(e.to_string()))?;
        let not_after = u64::try_from(not_after.unix_timestamp()).ok();
        Ok(Self::with_identity(identity, not_after))
    }

    /// The configured PEM certificate chain and key.
    pub async fn load(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let identity = Identity::load_pemfiles(cert, key).await.map_err(|e| CertError::Load {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(Self::with_identity(identity, None))
    }

    fn with_identity(identity: Identity, not_after: Option<u64>) -> Self {
        let hash =
            identity.certificate_chain().as_slice().first().map(|c| *c.hash().as_ref()).unwrap_or_default();
        Self { identity, hash, not_after }
    }

    /// The hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        self.hash.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_certificates_fit_the_browsers_fourteen_day_rule() {
        const { assert!(VALIDITY.as_secs() < 14 * 24 * 3600) };
        const { assert!(RENEW_EVERY.as_secs() + BACKDATE.as_secs() < VALIDITY.as_secs()) };
        let cert = Cert::self_signed(Some("10.1.2.3".parse().unwrap())).unwrap();
        let not_after = cert.not_after.unwrap();
        let now = unix_now();
        assert!(not_after > now + RENEW_EVERY.as_secs(), "still valid when it is replaced");
        assert!(not_after <= now + VALIDITY.as_secs());
        assert_eq!(cert.hash_hex().len(), 64);
        let again = Cert::self_signed(None).unwrap();
        assert_ne!(cert.hash, again.hash, "a fresh key every time");
    }
}
