//! Long-term credentials (RFC 8489 §9.2) and nonces.
//!
//! Two credential sources: static users (user → password) and time-limited credentials from a
//! shared secret, as coturn's `use-auth-secret` and the "TURN REST API" draft define them:
//! the username is `EXPIRY:USER` (or just `EXPIRY`), a Unix time in seconds, and the password
//! is `base64(HMAC-SHA1(secret, username))`. Static users are looked up first.
//!
//! Nonces are stateless: 16 hex digits of the issue time (milliseconds since the server's
//! start) followed by 16 hex digits of an HMAC-SHA256 over it with a random per-process key.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;

use crate::codec::long_term_key;
use crate::crypto;

/// Makes a time-limited credential for `user`, valid for `ttl` from `now_unix` (seconds since
/// the Unix epoch), for a server configured with `auth_secret = secret`.
///
/// Returns `(username, password)` to hand to a WebRTC client as an ICE server's
/// `username` / `credential`.
pub fn make_credential(secret: &str, user: &str, ttl: Duration, now_unix: u64) -> (String, String) {
    let expiry = now_unix.saturating_add(ttl.as_secs());
    let username = if user.is_empty() { expiry.to_string() } else { format!("{expiry}:{user}") };
    let password = rest_password(secret, &username);
    (username, password)
}

fn rest_password(secret: &str, username: &str) -> String {
    let mac = crypto::hmac_sha1(secret.as_bytes(), &[username.as_bytes()]);
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// The user a quota is counted against: `USER` of `EXPIRY:USER`, else the whole name.
pub(crate) fn quota_user(username: &str) -> &str {
    match username.split_once(':') {
        Some((expiry, user)) if !expiry.is_empty() && expiry.bytes().all(|b| b.is_ascii_digit()) => user,
        _ => username,
    }
}

/// Why a username got no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialError {
    /// Neither a static user nor a well-formed time-limited name.
    Unknown,
    /// A time-limited name whose expiry has passed.
    Expired,
}

/// Looks up keys for usernames.
pub(crate) struct Authenticator {
    realm: String,
    static_users: HashMap<String, String>,
    secret: Option<String>,
}

impl Authenticator {
    pub(crate) fn new(realm: String, static_users: HashMap<String, String>, secret: Option<String>) -> Self {
        Self { realm, static_users, secret }
    }

    pub(crate) fn realm(&self) -> &str {
        &self.realm
    }

    /// The long-term key for `username` at `now_unix`.
    pub(crate) fn key(&self, username: &str, now_unix: u64) -> Result<[u8; 16], CredentialError> {
        if let Some(password) = self.static_users.get(username) {
            return Ok(long_term_key(username, &self.realm, password));
        }
        let Some(secret) = &self.secret else {
            return Err(CredentialError::Unknown);
        };
        let expiry = username.split_once(':').map_or(username, |(e, _)| e);
        if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CredentialError::Unknown);
        }
        let expiry: u64 = expiry.parse().map_err(|_| CredentialError::Unknown)?;
        if expiry < now_unix {
            return Err(CredentialError::Expired);
        }
        let password = rest_password(secret, username);
        Ok(long_term_key(username, &self.realm, &password))
    }
}

/// Result of checking a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    /// Ours and fresh.
    Valid,
    /// Not ours, malformed, or too old: answer 438 with a new one.
    Stale,
}

/// Issues and checks stateless nonces.
pub(crate) struct Nonces {
    key: [u8; 32],
    lifetime_ms: u64,
}

impl Nonces {
    pub(crate) fn new(lifetime: Duration) -> Self {
        let mut key = [0u8; 32];
        crypto::random_bytes(&mut key);
        Self { key, lifetime_ms: u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX) }
    }

    fn mac(&self, issued: u64) -> u64 {
        let mac = crypto::hmac_sha256(&self.key, &[&issued.to_be_bytes()]);
        u64::from_be_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], mac[6], mac[7]])
    }

    /// A nonce issued at `now_ms` (milliseconds since the server started).
    pub(crate) fn issue(&self, now_ms: u64) -> String {
        format!("{now_ms:016x}{:016x}", self.mac(now_ms))
    }

    pub(crate) fn check(&self, nonce: &[u8], now_ms: u64) -> NonceCheck {
        let parsed = (nonce.len() == 32).then(|| std::str::from_utf8(nonce).ok()).flatten().and_then(|s| {
            let issued = u64::from_str_radix(s.get(..16)?, 16).ok()?;
            let mac = u64::from_str_radix(s.get(16..)?, 16).ok()?;
            Some((issued, mac))
        });
        let Some((issued, mac)) = parsed else {
            return NonceCheck::Stale;
        };
        let want = self.mac(issued);
        if !crypto::ct_eq(&want.to_be_bytes(), &mac.to_be_bytes()) {
            return NonceCheck::Stale;
        }
        if issued > now_ms || now_ms - issued >= self.lifetime_ms {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_credentials_match_coturn_scheme() {
        let (user, pass) = make_credential("s3cret", "alice", Duration::from_secs(3600), 1_000);
        assert_eq!(user, "4600:alice");
        // base64(HMAC-SHA1("s3cret", "4600:alice")) is 28 characters.
        assert_eq!(pass.len(), 28);
        assert_eq!(pass, rest_password("s3cret", "4600:alice"));
        let (plain, _) = make_credential("s3cret", "", Duration::from_secs(10), 5);
        assert_eq!(plain, "15");

        let auth = Authenticator::new("r".into(), HashMap::new(), Some("s3cret".into()));
        assert_eq!(auth.key(&user, 4599), Ok(long_term_key(&user, "r", &pass)));
        assert!(auth.key(&user, 4600).is_ok());
        assert_eq!(auth.key(&user, 4601), Err(CredentialError::Expired));
        assert!(auth.key("15", 10).is_ok());
        assert_eq!(auth.key("alice", 10), Err(CredentialError::Unknown));
        assert_eq!(auth.key(":alice", 10), Err(CredentialError::Unknown));
        assert_eq!(auth.key("99999999999999999999999:x", 10), Err(CredentialError::Unknown));
    }

    #[test]
    fn static_users_and_quota_user() {
        let mut users = HashMap::new();
        users.insert("bob".to_owned(), "pw".to_owned());
        let auth = Authenticator::new("r".into(), users, None);
        assert_eq!(auth.key("bob", 0), Ok(long_term_key("bob", "r", "pw")));
        assert_eq!(auth.key("4600:bob", 0), Err(CredentialError::Unknown));
        assert_eq!(quota_user("4600:bob"), "bob");
        assert_eq!(quota_user("bob"), "bob");
        assert_eq!(quota_user("a:b"), "a:b");
    }

    #[test]
    fn nonces() {
        let n = Nonces::new(Duration::from_secs(600));
        let nonce = n.issue(1_000);
        assert_eq!(n.check(nonce.as_bytes(), 1_000), NonceCheck::Valid);
        assert_eq!(n.check(nonce.as_bytes(), 600_999), NonceCheck::Valid);
        assert_eq!(n.check(nonce.as_bytes(), 601_000), NonceCheck::Stale);
        assert_eq!(n.check(nonce.as_bytes(), 999), NonceCheck::Stale);
        let mut forged = nonce.clone().into_bytes();
        forged[31] = if forged[31] == b'0' { b'1' } else { b'0' };
        assert_eq!(n.check(&forged, 1_000), NonceCheck::Stale);
        assert_eq!(n.check(b"garbage", 1_000), NonceCheck::Stale);
        assert_eq!(Nonces::new(Duration::from_secs(1)).check(nonce.as_bytes(), 1_000), NonceCheck::Stale);
    }
}
