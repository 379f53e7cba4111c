//! The application's backend (`app_proxy_url`): one job, calling it.
//!
//! The JSON protocol's `rpc` and STOMP SENDs to `/app/...` become one [`AppCall`], which
//! [`AppProxy::call`] POSTs to the backend as JSON and whose answer it reads back as an
//! [`AppAnswer`]: a `result` for the caller and publications for the server to make. Publishing
//! them is not done here but by the connection's driver, through the channel rules, like every
//! other publication (`connection::rpc`).
//!
//! Plain HTTP/1.1 on hyper's pooled client, which the workspace already builds for the Rust
//! client crate. Every call has one deadline (`app_proxy_timeout_ms`) for connecting, sending
//! and reading the whole answer, and the answer's size is bounded (`max_frame_bytes`). A call is
//! sent once: a backend call need not be idempotent, so only a connection that was refused,
//! before anything was sent, is tried a second time (and hyper retries a request that a pooled
//! connection dropped before writing a byte of it).
//!
//! The wire contract is in `docs/protocol.md` ("The application's backend").

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use switchboard_protocol::ErrorCode;
use switchboard_protocol::frame::RpcKind;

use crate::config::Config;
use crate::model::Payload;

/// How long to wait before the one retry of a refused connection.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// One call to the backend, as the caller's connection made it.
#[derive(Debug, Clone)]
pub struct AppCall {
    /// `rpc`, or a STOMP `send`.
    pub kind: RpcKind,
    /// The caller's user (the token's `sub`); empty for an anonymous client.
    pub user: String,
    /// The caller's client id.
    pub client: String,
    /// The `rpc` method, or the STOMP destination without its prefix.
    pub method: String,
    /// The JSON argument (`None` is `null`).
    pub data: Option<Box<RawValue>>,
    /// A payload that is not JSON (a STOMP body), sent as `binary_b64`.
    pub binary: Option<Bytes>,
}

/// What the backend answered: its `result` and what it asks the server to publish.
#[derive(Debug)]
pub struct AppAnswer {
    /// For the caller (`null` when the backend sent none).
    pub result: Box<RawValue>,
    /// To publish, in this order, before the caller hears the result.
    pub publish: Vec<AppPublication>,
}

/// A publication the backend's answer asks for.
#[derive(Debug)]
pub struct AppPublication {
    /// The channel's name, as the backend gave it (the driver checks it).
    pub channel: String,
    /// Its payload.
    pub payload: Payload,
}

/// Why a call did not give a result. Each variant has its wire code ([`AppError::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// No backend is configured (108).
    #[error(
        "no application backend is configured: set app_proxy_url (SWITCHBOARD_APP_PROXY_URL) to the \
         HTTP endpoint that answers rpc calls and STOMP SENDs to the application prefix"
    )]
    NotConfigured,
    /// No answer in time (113); the call may or may not have taken effect.
    #[error("the application's backend did not answer within {0} ms")]
    Timeout(u64),
    /// The backend could not be reached, or answered with an error status (112).
    #[error("the application's backend is unavailable: {0}")]
    Unavailable(String),
    /// The backend's answer is not one we can use (112): not the expected JSON, too large, or
    /// asking for a publication that is not valid (nothing of it was published).
    #[error("the application's backend gave an invalid answer: {0}")]
    BadAnswer(String),
    /// The backend answered with an error of its own: its code and message, passed through.
    #[error("{message}")]
    Refused {
        /// The backend's code.
        code: u32,
        /// The backend's message.
        message: String,
    },
    /// Publishing what the backend's answer asked for failed (the rules, or the broker).
    #[error("publishing the backend's answer failed: {message}")]
    Publish {
        /// Why.
        code: ErrorCode,
        /// What.
        message: String,
    },
}

impl AppError {
    /// The error code the caller gets.
    pub fn code(&self) -> u32 {
        match self {
            AppError::NotConfigured => ErrorCode::NotAvailable.code(),
            AppError::Timeout(_) => ErrorCode::BackendTimeout.code(),
            AppError::Unavailable(_) | AppError::BadAnswer(_) => ErrorCode::BackendUnavailable.code(),
            AppError::Refused { code, .. } => *code,
            AppError::Publish { code, .. } => code.code(),
        }
    }
}

/// The request body (see the module docs).
#[derive(Serialize)]
struct CallBody<'a> {
    kind: RpcKind,
    user: &'a str,
    client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<&'a str>,
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_b64: Option<String>,
}

/// The answer body: `{"result", "publish"}` or `{"error"}`.
#[derive(Deserialize)]
struct AnswerBody {
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    publish: Vec<PublicationBody>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct PublicationBody {
    channel: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    b64: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: u32,
    #[serde(default)]
    message: String,
}

/// The backend's client. Cheap to share: one pool of connections for the whole node.
#[derive(Debug, Clone)]
pub struct AppProxy {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    timeout: Duration,
    max_answer: usize,
}

impl AppProxy {
    /// The backend of `config`, if it names one (`app_proxy_url`, checked by
    /// [`Config::validate`]).
    pub fn from_config(config: &Config) -> Option<Self> {
        let uri: Uri = config.app_proxy_url.parse().ok()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Some(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri,
            timeout: Duration::from_millis(config.app_proxy_timeout_ms),
            max_answer: config.max_frame_bytes,
        })
    }

    /// POSTs `call` and reads the answer, within the deadline.
    pub async fn call(&self, call: &AppCall) -> Result<AppAnswer, AppError> {
        let binary_b64 = call.binary.as_ref().map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        let (method, destination) = match call.kind {
            RpcKind::Rpc => (Some(call.method.as_str()), None),
            RpcKind::Send => (None, Some(call.method.as_str())),
        };
        let body = CallBody {
            kind: call.kind,
            user: &call.user,
            client: &call.client,
            method,
            destination,
            data: call.data.as_deref(),
            binary_b64,
        };
        // Strings and raw JSON always serialize.
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let answer = match tokio::time::timeout(self.timeout, self.exchange(body)).await {
            Ok(answer) => answer,
            Err(_) => Err(AppError::Timeout(ms)),
        };
        if let Err(e) = &answer
            && !matches!(e, AppError::Refused { .. })
        {
            tracing::warn!(method = %call.method, error = %e, "application backend call failed");
        }
        answer
    }

    async fn exchange(&self, body: Bytes) -> Result<AppAnswer, AppError> {
        let response = match self.client.request(self.request(body.clone())).await {
            // Refused before a byte was sent: nothing can have happened, so one more try.
            Err(e) if e.is_connect() => {
                tokio::time::sleep(RETRY_DELAY).await;
                self.client.request(self.request(body)).await
            }
            other => other,
        }
        .map_err(|e| AppError::Unavailable(with_causes(&e)))?;
        let status = response.status().as_u16();
        let bytes = Limited::new(response.into_body(), self.max_answer)
            .collect()
            .await
            .map_err(|e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                Some(_) => AppError::BadAnswer(format!("larger than {} bytes", self.max_answer)),
                None => AppError::Unavailable(format!("reading its answer: {e}")),
            })?
            .to_bytes();
        parse_answer(status, &bytes)
    }

    fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers
            .insert(USER_AGENT, HeaderValue::from_static(concat!("switchboard/", env!("CARGO_PKG_VERSION"))));
        request
    }
}

/// An error with its causes, which hyper keeps apart (`client error (Connect)`: `connection
/// refused`).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The backend's answer, from its status and body.
fn parse_answer(status: u16, body: &[u8]) -> Result<AppAnswer, AppError> {
    let parsed = serde_json::from_slice::<AnswerBody>(body);
    // An error object is the backend's own answer, whatever status came with it.
    if let Ok(AnswerBody { error: Some(e), .. }) = parsed {
        return Err(AppError::Refused { code: e.code, message: e.message });
    }
    if !(200..300).contains(&status) {
        return Err(AppError::Unavailable(format!("it answered HTTP {status}")));
    }
    let answer = parsed.map_err(|e| {
        AppError::BadAnswer(format!("expected {{\"result\", \"publish\"}} or {{\"error\"}}: {e}"))
    })?;
    let mut publish = Vec::with_capacity(answer.publish.len());
    for (i, p) in answer.publish.into_iter().enumerate() {
        let payload = match (p.data, p.b64) {
            (Some(data), None) => Payload::Json(Bytes::copy_from_slice(data.get().as_bytes())),
            (None, Some(b64)) => Payload::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| AppError::BadAnswer(format!("publish[{i}].b64 is not base64")))?
                    .into(),
            ),
            _ => return Err(AppError::BadAnswer(format!("publish[{i}] needs exactly one of data and b64"))),
        };
        publish.push(AppPublication { channel: p.channel, payload });
    }
    // Absent (or `null`) is `null`.
    let result = answer.result.unwrap_or_else(|| RawValue::NULL.to_owned());
    Ok(AppAnswer { result, publish })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_a_result_publications_or_the_backends_error() {
        let a = parse_answer(
            200,
            br#"{"result":{"ok":1},"publish":[{"channel":"a","data":[1]},{"channel":"b#u","b64":"AP8="}]}"#,
        )
        .unwrap();
        assert_eq!(a.result.get(), r#"{"ok":1}"#);
        assert_eq!(a.publish.len(), 2);
        assert!(matches!(&a.publish[0].payload, Payload::Json(b) if &b[..] == b"[1]"));
        assert!(matches!(&a.publish[1].payload, Payload::Binary(b) if &b[..] == b"\x00\xff"));
        assert_eq!(parse_answer(200, b"{}").unwrap().result.get(), "null");
        assert_eq!(parse_answer(204, b"{}").unwrap().publish.len(), 0);

        let refused = parse_answer(422, br#"{"error":{"code":4001,"message":"no such room"}}"#).unwrap_err();
        assert_eq!(refused, AppError::Refused { code: 4001, message: "no such room".into() });
        assert_eq!(refused.code(), 4001);
        let e = parse_answer(200, br#"{"error":{"code":103,"message":"not yours"},"result":1}"#).unwrap_err();
        assert_eq!(e.code(), 103, "an error wins over a result");

        let e = parse_answer(500, b"<html>oops</html>").unwrap_err();
        assert!(matches!(&e, AppError::Unavailable(m) if m.contains("HTTP 500")), "{e}");
        assert_eq!(e.code(), 112);
        for bad in [
            &b"not json"[..],
            br#"{"publish":[{"channel":"a"}]}"#,
            br#"{"publish":[{"channel":"a","b64":"!"}]}"#,
        ] {
            let e = parse_answer(200, bad).unwrap_err();
            assert!(matches!(e, AppError::BadAnswer(_)), "{e}");
            assert_eq!(e.code(), 112);
        }
        assert_eq!(AppError::Timeout(5).code(), 113);
        assert_eq!(AppError::NotConfigured.code(), 108);
        assert!(AppError::NotConfigured.to_string().contains("app_proxy_url"));
    }

    #[test]
    fn the_request_names_the_caller_and_the_method_or_destination() {
        let call = |kind| CallBody {
            kind,
            user: "alice",
            client: "c1",
            method: (kind == RpcKind::Rpc).then_some("m"),
            destination: (kind == RpcKind::Send).then_some("chat.send"),
            data: None,
            binary_b64: None,
        };
        let rpc = serde_json::to_value(call(RpcKind::Rpc)).unwrap();
        assert_eq!(
            rpc,
            serde_json::json!({"kind":"rpc","user":"alice","client":"c1","method":"m","data":null})
        );
        let send = serde_json::to_value(call(RpcKind::Send)).unwrap();
        assert_eq!(send["kind"], "send");
        assert_eq!(send["destination"], "chat.send");
    }
}
