//! Client tokens from an identity provider: keys from a JWKS served over HTTP by the test (as
//! Keycloak or Auth0 publish theirs), picked by `kid`, and a rotated key taken without a restart.
//! Algorithms, `aud`, `iss` and `nbf` are unit-tested in `src/policy.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::TestServer;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;

const EC_KEY: &str = include_str!("fixtures/jwt/ec.key.pem");
const ED_KEY: &str = include_str!("fixtures/jwt/ed.key.pem");

/// A key of the identity provider: its `kid`, algorithm and private key.
struct Signer {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
}

impl Signer {
    fn ec(kid: &'static str) -> Self {
        Signer { kid, alg: Algorithm::ES256, key: EncodingKey::from_ec_pem(EC_KEY.as_bytes()).unwrap() }
    }

    fn ed(kid: &'static str) -> Self {
        Signer { kid, alg: Algorithm::EdDSA, key: EncodingKey::from_ed_pem(ED_KEY.as_bytes()).unwrap() }
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.into());
        jwk
    }

    fn token(&self, sub: &str) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.into());
        jsonwebtoken::encode(&header, &serde_json::json!({ "sub": sub }), &self.key).unwrap()
    }
}

/// Serves `/jwks.json` with whatever `keys` holds at the time of each request.
async fn identity_provider(keys: Arc<Mutex<Vec<Jwk>>>) -> String {
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let keys = keys.lock().clone();
            async move { axum::Json(JwkSet { keys }) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn tokens_verify_with_the_jwks_key_their_kid_names_and_a_rotated_key_is_taken_without_a_restart() {
    let (first, second) = (Signer::ec("2026-11"), Signer::ed("2026-12"));
    let published = Arc::new(Mutex::new(vec![first.jwk()]));
    let url = identity_provider(published.clone()).await;
    let server = TestServer::with(|c| {
        c.token_jwks_url = url;
        c.token_jwks_refresh = 1;
    })
    .await;
    let client = server.client();
    let connects = |token: String| {
        let client = client.clone();
        async move {
            let mut ws = client.websocket().await.unwrap();
            ws.connect(Some(&token), None).await.map(|reply| reply.user)
        }
    };

    // The first key, once the set is fetched (at start).
    let token = first.token("alice");
    common::eventually_async("the first key verifies", Duration::from_secs(5), || {
        let token = token.clone();
        async move { connects(token).await.is_ok() }
    })
    .await;
    assert_eq!(connects(first.token("alice")).await.unwrap(), "alice");
    // A key the set does not hold yet: refused, with no other way in.
    assert!(connects(second.token("bob")).await.is_err(), "an unknown kid is refused");
    let forged = {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(first.kid.into());
        jsonwebtoken::encode(&header, &serde_json::json!({ "sub": "mallory" }), &second.key).unwrap()
    };
    assert!(connects(forged).await.is_err(), "a known kid with another key's signature is refused");

    // The provider rotates: the new key is taken without a restart.
    published.lock().push(second.jwk());
    let token = second.token("bob");
    common::eventually_async("the rotated key verifies", Duration::from_secs(10), || {
        let token = token.clone();
        async move { connects(token).await.is_ok() }
    })
    .await;
    assert_eq!(connects(second.token("bob")).await.unwrap(), "bob");
    server.stop().await;
}
