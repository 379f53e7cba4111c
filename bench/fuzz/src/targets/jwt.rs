//! Connection tokens: `Policy::authenticate`, on raw token text and on tokens whose header and
//! claims were mutated before being signed with the right key (to reach the claim checks).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use switchboard::Config;
use switchboard::policy::{Identity, Policy};
use switchboard_protocol::Disconnect;

use crate::Target;

const SECRET: &str = "fuzz-secret";
/// The time tokens are checked at.
const NOW: u64 = 1_700_000_000;

/// JWT parsing and verification.
pub struct Jwt {
    policy: Policy,
    key: EncodingKey,
}

impl Jwt {
    /// A policy with an HMAC secret, an audience and an issuer.
    pub fn new() -> Self {
        let config = Config {
            token_secret: SECRET.into(),
            token_audience: "app".into(),
            token_issuer: "https://issuer.test".into(),
            ..Config::default()
        };
        Self { policy: Policy::new(Arc::new(config)), key: EncodingKey::from_secret(SECRET.as_bytes()) }
    }

    /// `header.claims.signature`, signed with the HMAC the header's `alg` names (HS256 if none).
    fn sign(&self, header: &[u8], claims: &[u8]) -> String {
        let alg = serde_json::from_slice::<serde_json::Value>(header)
            .ok()
            .and_then(|h| h.get("alg").and_then(|a| a.as_str()).map(str::to_owned))
            .and_then(|a| a.parse::<Algorithm>().ok())
            .filter(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            .unwrap_or(Algorithm::HS256);
        let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &self.key, alg).unwrap_or_default();
        format!("{message}.{signature}")
    }
}

impl Default for Jwt {
    fn default() -> Self {
        Self::new()
    }
}

const CLAIMS: &[&str] = &[
    r#"{"sub":"alice","exp":1800000000,"aud":"app","iss":"https://issuer.test"}"#,
    r#"{"sub":"bob","name":"Bob","nbf":1600000000,"exp":1800000000,"aud":["x","app"],"iss":"https://issuer.test","subs":["chat:*","news"],"pubs":["chat:*"]}"#,
    r#"{"sub":"c","exp":1600000000,"aud":"app","iss":"https://issuer.test"}"#,
    r#"{"sub":"","aud":"app","iss":"https://issuer.test","channels":["a"]}"#,
];

impl Target for Jwt {
    fn name(&self) -> &'static str {
        "jwt"
    }

    /// First byte 1: `HEADER 0x1e CLAIMS`, signed before checking; otherwise the token text.
    fn corpus(&self) -> Vec<Vec<u8>> {
        let mut c = Vec::new();
        for (i, claims) in CLAIMS.iter().enumerate() {
            let header = [r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"alg":"HS512","kid":"k1"}"#][i % 2];
            let mut structured = vec![1u8];
            structured.extend_from_slice(header.as_bytes());
            structured.push(0x1e);
            structured.extend_from_slice(claims.as_bytes());
            c.push(structured);
            let mut raw = vec![0u8];
            raw.extend_from_slice(self.sign(header.as_bytes(), claims.as_bytes()).as_bytes());
            c.push(raw);
        }
        c
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b".",
            b"\"alg\":\"none\"",
            b"\"alg\":\"RS256\"",
            b"\"alg\":\"HS384\"",
            b"\"exp\":",
            b"\"nbf\":",
            b"\"aud\":",
            b"\"iss\":",
            b"\"sub\":",
            b"\"subs\":[",
            b"\"crit\":[\"x\"]",
            b"\"jwk\":{}",
            b"\"kid\":",
            b"1e999",
            b"-1",
            b"null",
            b"eyJ",
        ]
    }

    fn run(&mut self, input: &[u8]) {
        let _ = self.check(input);
    }
}

impl Jwt {
    /// What `authenticate` says of one input.
    pub fn check(&self, input: &[u8]) -> Result<Identity, Disconnect> {
        let Some((&mode, rest)) = input.split_first() else { return Err(Disconnect::UNAUTHORIZED) };
        let token = if mode == 1 {
            let (header, claims) = match rest.iter().position(|b| *b == 0x1e) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{}"[..]),
            };
            self.sign(header, claims)
        } else {
            String::from_utf8_lossy(rest).into_owned()
        };
        self.policy.authenticate(Some(&token), NOW)
    }
}
