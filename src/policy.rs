//! Who a caller is: token verification, session tokens and the API key. Pure functions of the
//! configuration, the token and the time passed in, so sessions stay sans-IO. What a caller may do
//! on a channel is decided by [`crate::rules`].

use std::fmt::Write as _;

use aws_lc_rs::{digest, hmac};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use switchboard_protocol::{ChannelName, Disconnect};

use crate::config::Config;
use crate::token_keys::TokenKeys;

/// Who a connection is, from its token (or anonymous when the server needs none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`; empty for anonymous clients.
    pub user: String,
    /// The token's `name`.
    pub name: Option<String>,
    /// Channel patterns the client may subscribe to; `None` means as the namespace allows.
    pub subs: Option<Vec<String>>,
    /// Channel patterns the client may publish on; `None` means as the namespace allows.
    pub pubs: Option<Vec<String>>,
    /// Room patterns the client may record (the `rec` claim, `docs/recording.md`); none without.
    pub rec: Option<Vec<String>>,
    /// Unix seconds at which the token expires.
    pub expires_at: Option<u64>,
    /// Channels opened by verified subscription tokens (the session adds and removes them).
    pub granted: Vec<ChannelName>,
    /// A dashboard's connection, from an admin ticket ([`Policy::admin_ticket`]): it may read
    /// the node's stats channel and nothing else.
    pub admin: bool,
}

/// What an admin ticket starts with: `sbadmin.EXP.TAG`.
pub const ADMIN_TICKET_PREFIX: &str = "sbadmin.";
/// The user an admin ticket's connection runs as.
pub const ADMIN_USER: &str = "__admin";

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    subs: Option<Vec<String>>,
    #[serde(default)]
    pubs: Option<Vec<String>>,
    #[serde(default)]
    rec: Option<Vec<String>>,
    /// Only subscription tokens carry it: one is never taken for a connection token.
    #[serde(default)]
    channel: Option<serde::de::IgnoredAny>,
}

/// A subscription token's claims: `sub` must be the connection's user, `channel` the channel.
#[derive(Deserialize)]
struct SubscriptionClaims {
    #[serde(default)]
    sub: String,
    channel: String,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
}

/// Why a subscription token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionRefused {
    /// Not a valid token (signature, claims, time, or no key to check it with).
    Invalid,
    /// Past its `exp`.
    Expired,
    /// Valid, but for another channel or another user.
    NotYours,
}

/// The server's rules, built once from the configuration.
pub struct Policy {
    config: std::sync::Arc<Config>,
    keys: TokenKeys,
    /// Signs session tokens: from `token_secret` when set (so every node of a cluster accepts
    /// the others'), else random per process.
    session_key: hmac::Key,
}

/// Bytes of HMAC-SHA256 kept in a session token.
const SESSION_TAG_BYTES: usize = 16;

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("requires_token", &self.keys.any()).finish()
    }
}

impl Policy {
    /// Rules for `config`.
    pub fn new(config: std::sync::Arc<Config>) -> Self {
        // `Config::validate` refused a key that does not parse; a config built in code without
        // validating gets no public key rather than a panic.
        let keys = TokenKeys::new(&config.token_secret, &config.token_public_key)
            .or_else(|_| TokenKeys::new(&config.token_secret, ""))
            .unwrap_or_default();
        let keys = if config.token_jwks_url.is_empty() {
            keys
        } else {
            let jwks = crate::jwks::Jwks::new(&config.token_jwks_url);
            jwks.spawn(std::time::Duration::from_secs(config.token_jwks_refresh.max(1)));
            keys.with_jwks(jwks)
        };
        let session_key = if config.token_secret.is_empty() {
            hmac::Key::new(hmac::HMAC_SHA256, &rand::random::<[u8; 32]>())
        } else {
            let seed = [b"switchboard session tokens\0".as_slice(), config.token_secret.as_bytes()].concat();
            hmac::Key::new(hmac::HMAC_SHA256, digest::digest(&digest::SHA256, &seed).as_ref())
        };
        Self { config, keys, session_key }
    }

    /// The session token that lets `user` reclaim client id `client` on a later connection:
    /// `CLIENT.TAG`, the tag binding both.
    pub fn session_token(&self, client: &str, user: &str) -> String {
        let tag = self.session_tag(client, user);
        let mut out = String::with_capacity(client.len() + 1 + 2 * SESSION_TAG_BYTES);
        out.push_str(client);
        out.push('.');
        for b in &tag.as_ref()[..SESSION_TAG_BYTES] {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// The client id a session token names, if it is one this server issued to `user`.
    pub fn resume(&self, token: &str, user: &str) -> Option<String> {
        let (client, _) = token.rsplit_once('.')?;
        let valid = !client.is_empty()
            && client.len() <= 64
            && client.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (valid && constant_time_eq(self.session_token(client, user).as_bytes(), token.as_bytes()))
            .then(|| client.to_owned())
    }

    fn session_tag(&self, client: &str, user: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.session_key);
        for part in [client, "\0", user] {
            ctx.update(part.as_bytes());
        }
        ctx.sign()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Verifies a connection's token at `unix_now`: its signature with the key of its `alg`, then
    /// `exp`, `nbf`, and `aud` and `iss` when configured. Without a key every connection is
    /// anonymous and a token is ignored.
    pub fn authenticate(&self, token: Option<&str>, unix_now: u64) -> Result<Identity, Disconnect> {
        if let Some(ticket) = token.and_then(|t| t.strip_prefix(ADMIN_TICKET_PREFIX)) {
            return self.admin_identity(ticket, unix_now);
        }
        if !self.keys.any() {
            return Ok(Identity::default());
        }
        let token = token.filter(|t| !t.is_empty()).ok_or(Disconnect::UNAUTHORIZED)?;
        let claims = self.decode::<Claims>(token).ok_or(Disconnect::UNAUTHORIZED)?;
        if claims.sub.is_empty() || claims.channel.is_some() || claims.nbf.is_some_and(|nbf| nbf > unix_now) {
            return Err(Disconnect::UNAUTHORIZED);
        }
        if claims.exp.is_some_and(|exp| exp <= unix_now) {
            return Err(Disconnect::TOKEN_EXPIRED);
        }
        Ok(Identity {
            user: claims.sub,
            name: claims.name,
            subs: claims.subs,
            pubs: claims.pubs,
            rec: claims.rec,
            expires_at: claims.exp,
            granted: Vec::new(),
            admin: false,
        })
    }

    /// A connection token for a dashboard, valid until `exp` (unix seconds): it reads the
    /// node's stats channel only. Signed with the session key, so every node of a cluster
    /// sharing `token_secret` takes it.
    pub fn admin_ticket(&self, exp: u64) -> String {
        let tag = hmac::sign(&self.session_key, format!("admin\0{exp}").as_bytes());
        let mut out = format!("{ADMIN_TICKET_PREFIX}{exp}.");
        for b in &tag.as_ref()[..SESSION_TAG_BYTES] {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    fn admin_identity(&self, ticket: &str, unix_now: u64) -> Result<Identity, Disconnect> {
        let exp = ticket.split_once('.').and_then(|(exp, _)| exp.parse::<u64>().ok());
        let Some(exp) = exp else { return Err(Disconnect::UNAUTHORIZED) };
        let full = format!("{ADMIN_TICKET_PREFIX}{ticket}");
        if !constant_time_eq(self.admin_ticket(exp).as_bytes(), full.as_bytes()) {
            return Err(Disconnect::UNAUTHORIZED);
        }
        if exp <= unix_now {
            return Err(Disconnect::TOKEN_EXPIRED);
        }
        Ok(Identity {
            user: ADMIN_USER.into(),
            subs: Some(vec![crate::admin::STATS_CHANNEL.into()]),
            pubs: Some(Vec::new()),
            admin: true,
            ..Identity::default()
        })
    }

    /// Whether `key` opens the dashboard's endpoints (`/api/admin/...`, `/api/connections`):
    /// the admin password or the API key; with neither configured, whether the server runs
    /// open (no secrets at all, loopback only).
    pub fn admin_ok(&self, key: Option<&str>) -> bool {
        let password = &self.config.admin_password;
        if !password.is_empty() && key.is_some_and(|k| constant_time_eq(k.as_bytes(), password.as_bytes())) {
            return true;
        }
        if !self.config.api_key.is_empty() {
            return key.is_some_and(|k| constant_time_eq(k.as_bytes(), self.config.api_key.as_bytes()));
        }
        // Never open on another address, even with `insecure_allow_open`.
        password.is_empty() && !self.config.requires_token() && self.config.listen.ip().is_loopback()
    }

    /// Verifies a subscription token for `user` on `channel` at `unix_now`: the same keys and
    /// checks as a connection token, plus its `channel` and `sub` claims. Answers its expiry.
    pub fn subscription(
        &self,
        token: &str,
        user: &str,
        channel: &str,
        unix_now: u64,
    ) -> Result<Option<u64>, SubscriptionRefused> {
        if !self.keys.any() {
            return Err(SubscriptionRefused::Invalid);
        }
        let claims = self.decode::<SubscriptionClaims>(token).ok_or(SubscriptionRefused::Invalid)?;
        if claims.nbf.is_some_and(|nbf| nbf > unix_now) {
            return Err(SubscriptionRefused::Invalid);
        }
        if claims.exp.is_some_and(|exp| exp <= unix_now) {
            return Err(SubscriptionRefused::Expired);
        }
        if claims.channel != channel || claims.sub != user {
            return Err(SubscriptionRefused::NotYours);
        }
        Ok(claims.exp)
    }

    /// A token's claims, once its signature (with the key its header names) and `aud`/`iss`
    /// check out.
    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Option<T> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = self.keys.for_header(&header)?;
        jsonwebtoken::decode::<T>(token, &key, &self.validation(header.alg)).ok().map(|d| d.claims)
    }

    /// What a token signed with `alg` must satisfy beyond its signature. Times are checked
    /// against the time the caller passes in, not the system clock.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims.clear();
        v.validate_aud = !self.config.token_audience.is_empty();
        if v.validate_aud {
            v.set_audience(&[&self.config.token_audience]);
        }
        if !self.config.token_issuer.is_empty() {
            v.set_issuer(&[&self.config.token_issuer]);
        }
        v
    }

    /// Whether `key` is the configured API key; with none configured, whether the API is open
    /// (no secrets at all, which `Config::validate` allows on loopback only).
    pub fn api_key_ok(&self, key: Option<&str>) -> bool {
        // The admin password is a second API key, for the people at the dashboard.
        let password = &self.config.admin_password;
        if !password.is_empty() && key.is_some_and(|k| constant_time_eq(k.as_bytes(), password.as_bytes())) {
            return true;
        }
        if self.config.api_key.is_empty() {
            return !self.config.requires_token();
        }
        key.is_some_and(|k| constant_time_eq(k.as_bytes(), self.config.api_key.as_bytes()))
    }
}

/// The `channel` claim of a token, read WITHOUT verifying it: only to tell which channel a
/// subscription token is meant for before [`Policy::subscription`] checks it.
pub fn claimed_channel(token: &str) -> Option<String> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    struct Named {
        channel: String,
    }
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Named>(&json).ok().map(|n| n.channel)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    pub(crate) fn token(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn policy(secret: &str) -> Policy {
        Policy::new(Arc::new(Config { token_secret: secret.into(), ..Config::default() }))
    }

    #[test]
    fn open_server_takes_everyone() {
        let p = policy("");
        let who = p.authenticate(None, 0).unwrap();
        assert_eq!(who, Identity::default());
        assert!(p.api_key_ok(None));
    }

    #[test]
    fn verifies_tokens_and_expiry_against_the_given_time() {
        let p = policy("s");
        assert_eq!(p.authenticate(None, 0), Err(Disconnect::UNAUTHORIZED));
        assert_eq!(p.authenticate(Some("garbage"), 0), Err(Disconnect::UNAUTHORIZED));
        let foreign = token("other", serde_json::json!({"sub": "u"}));
        assert_eq!(p.authenticate(Some(&foreign), 0), Err(Disconnect::UNAUTHORIZED));
        let t = token(
            "s",
            serde_json::json!({"sub": "alice", "exp": 100, "subs": ["chat:*"], "pubs": ["chat:lobby"]}),
        );
        let who = p.authenticate(Some(&t), 99).unwrap();
        assert_eq!(who.user, "alice");
        assert_eq!(p.authenticate(Some(&t), 100), Err(Disconnect::TOKEN_EXPIRED));
        assert_eq!(who.subs.as_deref(), Some(&["chat:*".to_owned()][..]));
        assert!(!p.api_key_ok(None), "with a token secret and no API key, the API is closed");
    }

    #[test]
    fn subscription_tokens_name_one_channel_for_one_user_and_are_never_connection_tokens() {
        use SubscriptionRefused::*;
        let p = policy("s");
        let sub = token("s", serde_json::json!({"sub": "alice", "channel": "vip:a", "exp": 100}));
        assert_eq!(p.subscription(&sub, "alice", "vip:a", 99), Ok(Some(100)));
        assert_eq!(p.subscription(&sub, "alice", "vip:a", 100), Err(Expired));
        assert_eq!(p.subscription(&sub, "alice", "vip:b", 99), Err(NotYours));
        assert_eq!(p.subscription(&sub, "bob", "vip:a", 99), Err(NotYours));
        let foreign = token("other", serde_json::json!({"sub": "alice", "channel": "vip:a"}));
        assert_eq!(p.subscription(&foreign, "alice", "vip:a", 0), Err(Invalid));
        let connection = token("s", serde_json::json!({"sub": "alice"}));
        assert_eq!(p.subscription(&connection, "alice", "vip:a", 0), Err(Invalid), "no channel claim");
        assert_eq!(p.authenticate(Some(&sub), 0), Err(Disconnect::UNAUTHORIZED), "a channel claim");
        assert_eq!(claimed_channel(&sub).as_deref(), Some("vip:a"));
        assert_eq!(claimed_channel("no.t-a-token"), None);
        let open = policy("");
        assert_eq!(open.subscription(&sub, "alice", "vip:a", 0), Err(Invalid), "no key to check it with");
    }

    const RSA_KEY: &str = include_str!("../tests/fixtures/jwt/rsa.key.pem");
    const RSA_PUB: &str = include_str!("../tests/fixtures/jwt/rsa.pub.pem");
    const EC_KEY: &str = include_str!("../tests/fixtures/jwt/ec.key.pem");
    const EC_PUB: &str = include_str!("../tests/fixtures/jwt/ec.pub.pem");
    const ED_KEY: &str = include_str!("../tests/fixtures/jwt/ed.key.pem");
    const ED_PUB: &str = include_str!("../tests/fixtures/jwt/ed.pub.pem");

    fn signed(alg: Algorithm, private_pem: &str, claims: serde_json::Value) -> String {
        use jsonwebtoken::EncodingKey;
        let pem = private_pem.as_bytes();
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        };
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key.unwrap()).unwrap()
    }

    fn with(tweak: impl FnOnce(&mut Config)) -> Policy {
        let mut config = Config::default();
        tweak(&mut config);
        config.validate().expect("a valid configuration");
        Policy::new(Arc::new(config))
    }

    #[test]
    fn verifies_rsa_ec_and_ed25519_tokens_with_the_public_key() {
        let alice = serde_json::json!({"sub": "alice"});
        let cases = [
            (RSA_PUB, Algorithm::RS256, RSA_KEY),
            (RSA_PUB, Algorithm::RS512, RSA_KEY),
            (RSA_PUB, Algorithm::PS256, RSA_KEY),
            (EC_PUB, Algorithm::ES256, EC_KEY),
            (ED_PUB, Algorithm::EdDSA, ED_KEY),
        ];
        for (public, alg, private) in cases {
            let p = with(|c| c.token_public_key = public.into());
            let t = signed(alg, private, alice.clone());
            assert_eq!(p.authenticate(Some(&t), 0).unwrap().user, "alice", "{alg:?}");
            // Signed by another key of the same kind: refused.
            let other = with(|c| c.token_public_key = if public == EC_PUB { ED_PUB } else { EC_PUB }.into());
            assert_eq!(other.authenticate(Some(&t), 0), Err(Disconnect::UNAUTHORIZED), "{alg:?}");
        }
        // HS256 signed with the public key as its secret (algorithm confusion): no HMAC key, refused.
        let p = with(|c| c.token_public_key = RSA_PUB.into());
        let confused = token(RSA_PUB, alice.clone());
        assert_eq!(p.authenticate(Some(&confused), 0), Err(Disconnect::UNAUTHORIZED));
        // HS384 and HS512 with the secret.
        let p = with(|c| c.token_secret = "s".into());
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let key = jsonwebtoken::EncodingKey::from_secret(b"s");
            let t = jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &alice, &key).unwrap();
            assert_eq!(p.authenticate(Some(&t), 0).unwrap().user, "alice", "{alg:?}");
        }
    }

    #[test]
    fn checks_audience_issuer_and_not_before_when_asked() {
        let p = with(|c| {
            c.token_public_key = ED_PUB.into();
            c.token_audience = "switchboard".into();
            c.token_issuer = "https://id.example".into();
        });
        let claims = |aud: &str, iss: &str| serde_json::json!({"sub": "u", "aud": aud, "iss": iss});
        let ok = signed(Algorithm::EdDSA, ED_KEY, claims("switchboard", "https://id.example"));
        assert!(p.authenticate(Some(&ok), 0).is_ok());
        for bad in [claims("other", "https://id.example"), claims("switchboard", "https://evil.example")] {
            let t = signed(Algorithm::EdDSA, ED_KEY, bad.clone());
            assert_eq!(p.authenticate(Some(&t), 0), Err(Disconnect::UNAUTHORIZED), "{bad}");
        }
        let later = signed(
            Algorithm::EdDSA,
            ED_KEY,
            serde_json::json!({"sub": "u", "aud": "switchboard",
            "iss": "https://id.example", "nbf": 100}),
        );
        assert_eq!(p.authenticate(Some(&later), 99), Err(Disconnect::UNAUTHORIZED), "not yet valid");
        assert!(p.authenticate(Some(&later), 100).is_ok());
    }

    #[test]
    fn a_public_key_that_does_not_parse_is_refused_at_start() {
        let config = Config {
            token_public_key: "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----".into(),
            ..Config::default()
        };
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("token_public_key"), "{e}");
        let config = Config { token_public_key: "/nonexistent/key.pem".into(), ..Config::default() };
        assert!(config.validate().unwrap_err().to_string().contains("cannot read /nonexistent/key.pem"));
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/ec.pub.pem");
        let p = with(|c| c.token_public_key = path.into());
        let t = signed(Algorithm::ES256, EC_KEY, serde_json::json!({"sub": "u"}));
        assert!(p.authenticate(Some(&t), 0).is_ok(), "a path to a PEM file");
    }

    #[test]
    fn session_tokens_name_their_client_for_their_user_only() {
        let p = policy("s");
        let t = p.session_token("0123abcd", "alice");
        assert_eq!(p.resume(&t, "alice").as_deref(), Some("0123abcd"));
        assert_eq!(p.resume(&t, "bob"), None, "bound to the user");
        assert_eq!(policy("s").resume(&t, "alice").as_deref(), Some("0123abcd"), "same secret, same key");
        assert_eq!(policy("other").resume(&t, "alice"), None);
        let forged = format!("{}{}", &t[..t.len() - 1], if t.ends_with('0') { '1' } else { '0' });
        assert_eq!(p.resume(&forged, "alice"), None);
        for bad in ["", ".", "0123abcd", "0123abcd.", "a b.00", &t.replace("0123abcd", "0123abce")] {
            assert_eq!(p.resume(bad, "alice"), None, "{bad:?}");
        }
        let open = policy("");
        assert_eq!(open.resume(&t, "alice"), None, "without a secret each process has its own key");
        let t = open.session_token("x", "");
        assert_eq!(open.resume(&t, "").as_deref(), Some("x"));
    }

    #[test]
    fn api_key_compares_exactly() {
        let p = Policy::new(Arc::new(Config { api_key: "k1".into(), ..Config::default() }));
        assert!(p.api_key_ok(Some("k1")));
        assert!(!p.api_key_ok(Some("k2")));
        assert!(!p.api_key_ok(Some("k1 ")));
        assert!(!p.api_key_ok(None));
    }

    #[test]
    fn admin_tickets_open_the_stats_channel_only_and_expire() {
        let policy =
            Policy::new(std::sync::Arc::new(Config { token_secret: "s".into(), ..Config::default() }));
        let ticket = policy.admin_ticket(1_000);
        let id = policy.authenticate(Some(&ticket), 999).expect("a valid ticket");
        assert!(id.admin);
        assert_eq!(id.subs.as_deref(), Some(&[crate::admin::STATS_CHANNEL.to_owned()][..]));
        assert_eq!(policy.authenticate(Some(&ticket), 1_000), Err(Disconnect::TOKEN_EXPIRED));
        let forged = ticket.replace("sbadmin.1000.", "sbadmin.9999.");
        assert_eq!(policy.authenticate(Some(&forged), 999), Err(Disconnect::UNAUTHORIZED));
        assert_eq!(policy.authenticate(Some("sbadmin.x"), 0), Err(Disconnect::UNAUTHORIZED));
        let other =
            Policy::new(std::sync::Arc::new(Config { token_secret: "t".into(), ..Config::default() }));
        assert_eq!(other.authenticate(Some(&ticket), 999), Err(Disconnect::UNAUTHORIZED), "another secret");
    }

    #[test]
    fn the_admin_endpoints_take_the_password_or_the_key_and_are_never_open_off_loopback() {
        let admin =
            |config: Config, key: Option<&str>| Policy::new(std::sync::Arc::new(config)).admin_ok(key);
        assert!(admin(Config::default(), None), "open loopback server, nothing configured");
        let pw = Config { admin_password: "pw".into(), ..Config::default() };
        assert!(!admin(pw.clone(), None));
        assert!(admin(pw.clone(), Some("pw")));
        let both = Config { api_key: "k".into(), ..pw };
        assert!(admin(both.clone(), Some("k")) && admin(both.clone(), Some("pw")));
        assert!(!admin(both, Some("x")));
        let public = Config {
            listen: "0.0.0.0:8080".parse().expect("an address"),
            insecure_allow_open: true,
            ..Config::default()
        };
        assert!(!admin(public, None), "insecure_allow_open does not open the admin endpoints");
        let secured = Config { token_secret: "s".into(), ..Config::default() };
        assert!(!admin(secured, None), "tokens required and no key: closed");
    }
}
