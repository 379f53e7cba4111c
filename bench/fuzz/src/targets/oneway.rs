//! The one-way transports' request parsing (`/sse`, `/stream`, `/poll`): the query string and
//! the `Last-Event-ID` header, which carries a cursor.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};
use switchboard::transport::OneWayParams;

use crate::Target;

/// `OneWayParams::parse`. The input is `QUERY 0x1e LAST-EVENT-ID`.
pub struct OneWay;

impl Target for OneWay {
    fn name(&self) -> &'static str {
        "oneway"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        let cursor = URL_SAFE_NO_PAD.encode(r#"{"chat:lobby":["e1",5],"news":["e2",0]}"#);
        [
            format!("channel=chat:lobby&channel=news&since={cursor}&wait=25&limit=100&name=ann\x1e"),
            format!("channel=chat%3Alobby&token=abc&session=c1.tag\x1e{cursor}"),
            "channel=a&channel=a&since=&wait=0\x1e".to_owned(),
            format!("channel=x\x1e{cursor}=="),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[b"&channel=", b"&since=", b"&wait=", b"&limit=", b"%", b"%00", b"+", b"=", b"\x1e", b"eyJ"]
    }

    fn run(&mut self, input: &[u8]) {
        let (query, header) = match input.iter().position(|b| *b == 0x1e) {
            Some(i) => (&input[..i], Some(&input[i + 1..])),
            None => (input, None),
        };
        let mut headers = HeaderMap::new();
        if let Some(value) = header.and_then(|h| HeaderValue::from_bytes(h).ok()) {
            headers.insert("last-event-id", value);
        }
        let query = String::from_utf8_lossy(query);
        let _ = OneWayParams::parse(Some(&query), &headers, 16);
    }
}
