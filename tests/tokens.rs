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

/// An HS256 token with `claims`, signed with `secret`.
fn hs256(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The next text frame that is not a ping, as JSON.
async fn next_json(ws: &mut switchboard_client::WsConnection) -> serde_json::Value {
    loop {
        let frame =
            tokio::time::timeout(Duration::from_secs(10), ws.recv_raw()).await.expect("a frame in time");
        match frame.expect("the connection stays").unwrap() {
            switchboard_client::RawFrame::Text(t) if t != r#"{"ping":{}}"# => {
                return serde_json::from_str(&t).unwrap();
            }
            switchboard_client::RawFrame::Close { code, reason } => panic!("closed: {code:?} {reason}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_private_channel_is_read_with_a_subscription_token_which_ends_the_subscription_when_it_expires() {
    let secret = "sub-token-secret";
    let server = TestServer::with(|c| {
        c.token_secret = secret.into();
        c.api_key = "k".into();
        let private = switchboard::config::ChannelOptions { private: true, ..Default::default() };
        c.namespaces.insert("vip".into(), private);
    })
    .await;
    let connection = hs256(secret, serde_json::json!({ "sub": "alice" }));
    let mut ws = server.client().websocket().await.unwrap();
    ws.connect(Some(&connection), None).await.unwrap();

    // Without a token, refused; with another user's, refused; with hers, subscribed.
    ws.send_raw(r#"{"id":2,"subscribe":{"channel":"vip:a"}}"#).await.unwrap();
    assert_eq!(next_json(&mut ws).await["error"]["code"], 103);
    let bobs = hs256(secret, serde_json::json!({ "sub": "bob", "channel": "vip:a" }));
    ws.send_raw(&format!(r#"{{"id":3,"subscribe":{{"channel":"vip:a","token":"{bobs}"}}}}"#)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["error"]["code"], 103);
    let short =
        hs256(secret, serde_json::json!({ "sub": "alice", "channel": "vip:a", "exp": unix_now() + 3 }));
    ws.send_raw(&format!(r#"{{"id":4,"subscribe":{{"channel":"vip:a","token":"{short}"}}}}"#)).await.unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["subscribe"]["channel"], "vip:a", "{reply}");
    server.client().with_api_key("k").publish("vip:a", &serde_json::json!({"n": 1})).await.unwrap();
    assert_eq!(next_json(&mut ws).await["pub"]["data"]["n"], 1);

    // The token expires: the subscription ends with a notice; the connection stays.
    let notice = next_json(&mut ws).await;
    assert_eq!(notice["unsubscribed"]["channel"], "vip:a", "{notice}");
    assert_eq!(notice["unsubscribed"]["code"], 3005);
    ws.send_raw(r#"{"id":5,"ping":{}}"#).await.unwrap();
    assert_eq!(next_json(&mut ws).await["id"], 5, "the connection is still served");

    // SSE: `sub_token=` opens the channel; without it the request is refused before streaming.
    let addr = server.addr;
    let long = hs256(secret, serde_json::json!({ "sub": "alice", "channel": "vip:a" }));
    let path = |sub: &str| format!("/sse?channel=vip:a&token={connection}{sub}");
    let (status, _, body) = common::http_request(addr, "GET", &path(""), &[], "").await;
    assert_eq!((status, body["error"]["code"].as_u64()), (403, Some(103)));
    let (status, _) = sse_head(addr, &path(&format!("&sub_token={long}"))).await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// The status and the first bytes of a streaming GET (the response does not end by itself).
async fn sse_head(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", addr.port());
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    (text[9..12].parse().unwrap(), text)
}
