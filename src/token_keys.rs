//! The keys that verify client JWTs: the HMAC `token_secret` (HS256/384/512) and a PEM public key
//! (`token_public_key`: RSA for RS*/PS*, EC P-256/P-384 for ES256/ES384, Ed25519 for EdDSA), as
//! Centrifugo and most identity providers sign them. A token's `alg` picks the key; an `alg`
//! with no key configured is refused.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Header};

use crate::jwks::Jwks;

/// The verifying keys, by algorithm family.
#[derive(Default, Clone)]
pub struct TokenKeys {
    hmac: Option<DecodingKey>,
    rsa: Option<DecodingKey>,
    ec: Option<DecodingKey>,
    ed: Option<DecodingKey>,
    /// Keys by `kid` from `token_jwks_url`.
    jwks: Option<Arc<Jwks>>,
}

impl TokenKeys {
    /// Keys from a secret (may be empty) and a public key (PEM text, a path to a PEM file, or
    /// empty). `Err` says what is wrong with the public key.
    pub fn new(secret: &str, public_key: &str) -> Result<Self, String> {
        let mut keys = TokenKeys {
            hmac: (!secret.is_empty()).then(|| DecodingKey::from_secret(secret.as_bytes())),
            ..TokenKeys::default()
        };
        if public_key.is_empty() {
            return Ok(keys);
        }
        let pem = if public_key.trim_start().starts_with("-----BEGIN") {
            public_key.to_owned()
        } else {
            std::fs::read_to_string(public_key).map_err(|e| format!("cannot read {public_key}: {e}"))?
        };
        let pem = pem.as_bytes();
        keys.rsa = DecodingKey::from_rsa_pem(pem).ok();
        keys.ec = DecodingKey::from_ec_pem(pem).ok();
        keys.ed = DecodingKey::from_ed_pem(pem).ok();
        if keys.rsa.is_none() && keys.ec.is_none() && keys.ed.is_none() {
            return Err("not a PEM public key of RSA, EC (P-256, P-384) or Ed25519".into());
        }
        Ok(keys)
    }

    /// These keys and those of a JWKS.
    pub fn with_jwks(mut self, jwks: Arc<Jwks>) -> Self {
        self.jwks = Some(jwks);
        self
    }

    /// Whether any key is configured (then clients need a token).
    pub fn any(&self) -> bool {
        self.hmac.is_some()
            || self.rsa.is_some()
            || self.ec.is_some()
            || self.ed.is_some()
            || self.jwks.is_some()
    }

    /// The key for a token with this header: the JWKS key its `kid` names, else the configured
    /// key of its `alg`'s family.
    pub fn for_header(&self, header: &Header) -> Option<DecodingKey> {
        if let (Some(jwks), Some(kid)) = (&self.jwks, &header.kid)
            && let Some(key) = jwks.key(kid)
        {
            return Some(key);
        }
        self.for_algorithm(header.alg).cloned()
    }

    /// The key for tokens signed with `alg`, if one is configured.
    pub fn for_algorithm(&self, alg: Algorithm) -> Option<&DecodingKey> {
        use Algorithm::*;
        match alg {
            HS256 | HS384 | HS512 => self.hmac.as_ref(),
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => self.rsa.as_ref(),
            ES256 | ES384 => self.ec.as_ref(),
            EdDSA => self.ed.as_ref(),
            // An algorithm newer than this code knows of: no key of ours.
            _ => None,
        }
    }
}
