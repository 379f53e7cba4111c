//! Plain-HTTP plumbing over hyper: the base URL, query strings, sending a request and turning a
//! failed answer into [`Error::Http`].

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::Error;

/// The pooled HTTP/1 client every request of one [`crate::Client`] shares.
pub(crate) type Http = HyperClient<HttpConnector, Full<Bytes>>;

/// A response body as a stream of chunks, however they were cut.
pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>;

/// A new pooled client with `TCP_NODELAY` (these are small, latency-bound requests).
pub(crate) fn new_client() -> Http {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    HyperClient::builder(TokioExecutor::new()).build(connector)
}

/// A server's base URL: `http://host[:port][/prefix]`, kept without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    /// `host[:port]`.
    authority: String,
    /// `""` or `/prefix`.
    prefix: String,
}

impl BaseUrl {
    /// Parses and checks a base URL.
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(Error::Url(format!("{url}: TLS is not supported yet, use http://")));
            }
            _ => return Err(Error::Url(format!("{url}: expected http://host[:port][/prefix]"))),
        };
        if rest.contains(['?', '#', '@']) {
            return Err(Error::Url(format!("{url}: no query, fragment or user info allowed")));
        }
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let base = Self { authority: authority.to_owned(), prefix: prefix.trim_end_matches('/').to_owned() };
        if authority.is_empty() || base.http("/", "").parse::<hyper::Uri>().is_err() {
            return Err(Error::Url(format!("{url}: not a valid URL")));
        }
        Ok(base)
    }

    /// `http://authority/prefix{path}{query}`; `query` is empty or starts with `?`.
    pub(crate) fn http(&self, path: &str, query: &str) -> String {
        format!("http://{}{}{path}{query}", self.authority, self.prefix)
    }

    /// The same with the `ws` scheme.
    pub(crate) fn ws(&self, path: &str) -> String {
        format!("ws://{}{}{path}", self.authority, self.prefix)
    }

    /// `host:port` to open a TCP connection to (port 80 when the URL names none).
    pub(crate) fn socket_addr(&self) -> String {
        let has_port = match self.authority.rfind(']') {
            Some(end) => self.authority[end..].contains(':'),
            None => self.authority.contains(':'),
        };
        if has_port { self.authority.clone() } else { format!("{}:80", self.authority) }
    }
}

/// A query string under construction: `?a=1&b=2`, values percent-encoded.
#[derive(Debug, Default)]
pub(crate) struct Query(String);

impl Query {
    /// Appends `key=value`.
    pub(crate) fn push(&mut self, key: &str, value: &str) -> &mut Self {
        self.0.push(if self.0.is_empty() { '?' } else { '&' });
        self.0.push_str(key);
        self.0.push('=');
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                self.0.push(char::from(b));
            } else {
                self.0.push_str(&format!("%{b:02X}"));
            }
        }
        self
    }

    /// The text, `""` when empty.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Sends a request; any status comes back as a response.
pub(crate) async fn send(http: &Http, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, Error> {
    Ok(http.request(req).await?)
}

/// Fails with [`Error::Http`] unless the status is 2xx.
pub(crate) async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>, Error> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Err(http_error(status, &body))
}

/// Reads a 2xx JSON answer, or fails with [`Error::Http`].
pub(crate) async fn json<T: DeserializeOwned>(resp: Response<Incoming>) -> Result<T, Error> {
    let body = check(resp).await?.into_body().collect().await?.to_bytes();
    serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("bad JSON answer: {e}")))
}

/// A response body as a [`ByteStream`].
pub(crate) fn body_stream(resp: Response<Incoming>) -> ByteStream {
    Box::pin(BodyDataStream::new(resp.into_body()).map_err(Error::from))
}

/// The [`Error::Http`] for a failed answer: the `{"error": {"code", "message"}}` body when there
/// is one, else the body's text.
pub(crate) fn http_error(status: u16, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        error: switchboard_protocol::frame::ErrorBody,
    }
    match serde_json::from_slice::<Wrapper>(body) {
        Ok(Wrapper { error }) => Error::Http { status, code: Some(error.code), message: error.message },
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
            Error::Http { status, code: None, message: text.trim().to_owned() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let b = BaseUrl::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(b.http("/sse", "?a=1"), "http://127.0.0.1:8080/sse?a=1");
        assert_eq!(b.ws("/ws"), "ws://127.0.0.1:8080/ws");
        assert_eq!(b.socket_addr(), "127.0.0.1:8080");
        let b = BaseUrl::parse("HTTP://example.com/rt/").unwrap();
        assert_eq!(b.http("/api/publish", ""), "http://example.com/rt/api/publish");
        assert_eq!(b.socket_addr(), "example.com:80");
        assert_eq!(BaseUrl::parse("http://[::1]").unwrap().socket_addr(), "[::1]:80");
        assert_eq!(BaseUrl::parse("http://[::1]:9").unwrap().socket_addr(), "[::1]:9");
        for bad in ["https://x", "ws://x", "x", "http://", "http:///p", "http://a?b", "http://a b"] {
            assert!(matches!(BaseUrl::parse(bad), Err(Error::Url(_))), "{bad}");
        }
    }

    #[test]
    fn encodes_queries() {
        let mut q = Query::default();
        assert_eq!(q.as_str(), "");
        q.push("channel", "chat:lobby/a=b").push("name", "Zoë & co").push("since", "aB-_9");
        assert_eq!(q.as_str(), "?channel=chat%3Alobby%2Fa%3Db&name=Zo%C3%AB%20%26%20co&since=aB-_9");
    }

    #[test]
    fn reads_error_bodies() {
        let e = http_error(400, br#"{"error":{"code":107,"message":"bad cursor"}}"#);
        assert!(
            matches!(e, Error::Http { status: 400, code: Some(107), ref message } if message == "bad cursor")
        );
        let e = http_error(502, b"Bad Gateway\n");
        assert!(
            matches!(e, Error::Http { status: 502, code: None, ref message } if message == "Bad Gateway")
        );
    }
}
