//! One-way HTTP subscribers: Server-Sent Events, NDJSON streaming and long polling.

use super::*;

// ---------------------------------------------------------------------------------------------
// Server-Sent Events: `GET /sse?channel=C`; `event: subscribed` answers, each `data:` line with
// a `"t":` timestamp is a delivery. The body is chunked (ours, Node) or ends with the connection (the floor).

/// With `ndjson`, HTTP streaming (`GET /stream`): a line with `"subscribed"` answers, each line
/// with a `"t":` timestamp is a delivery.
pub(crate) async fn sse_subscriber(o: &Opts, rec: &mut Recorder<'_>, ndjson: bool) -> io::Result<()> {
    let mut t = Tcp::connect(o.addr, o.source).await?;
    let accept = if ndjson { "application/x-ndjson" } else { "text/event-stream" };
    let request = format!(
        "GET {}?channel={} HTTP/1.1\r\nHost: {}\r\nAccept: {accept}\r\n\r\n",
        o.path, o.channel, o.host
    );
    t.stream.write_all(request.as_bytes()).await?;
    let (status, head) = t.read_head().await?;
    if status != 200 {
        return Err(other(format!("sse: {}", status_line(&head))));
    }
    rec.stats.connected.fetch_add(1, Relaxed);
    let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut body = SockjsBody::new(chunked);
    loop {
        body.take(&mut t)?;
        let now = unix_micros();
        while let Some(line) = body.next_line() {
            if ndjson {
                if let Some(ts) = number_after(line, JSON.timestamp) {
                    rec.delivery(now, Some(ts));
                } else if line.windows(12).any(|w| w == b"\"subscribed\"") {
                    rec.subscribed();
                }
            } else if line.starts_with(b"event: subscribed") {
                rec.subscribed();
            } else if let Some(data) = line.strip_prefix(b"data: ")
                && let Some(ts) = number_after(data, JSON.timestamp)
            {
                // Ours sends the publication itself, the peers `{"pub":...}`: both carry `"t":`.
                rec.delivery(now, Some(ts));
            }
        }
        rec.flush(now);
        if body.done() || !t.fill().await? {
            rec.stats.closed(1006);
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Long polling: `GET /poll?channel=C` first (a 204 with the cursor: subscribed), then
// `&since=CURSOR&wait=25` again and again on the same kept-alive connection; each `"t":` in a
// 200's publications is a delivery; the next request carries the answer's cursor.

pub(crate) async fn poll_subscriber(o: &Opts, rec: &mut Recorder<'_>) -> io::Result<()> {
    let mut t = Tcp::connect(o.addr, o.source).await?;
    rec.stats.connected.fetch_add(1, Relaxed);
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("channel={}&since={c}&wait=25", o.channel),
            None => format!("channel={}", o.channel),
        };
        let request = format!("GET {}?{query} HTTP/1.1\r\nHost: {}\r\n\r\n", o.path, o.host);
        t.stream.write_all(request.as_bytes()).await?;
        let (status, head) = match t.read_head().await {
            Ok(r) => r,
            Err(_) => {
                rec.stats.closed(1006);
                return Ok(());
            }
        };
        if status != 200 && status != 204 {
            return Err(other(format!("poll: {}", status_line(&head))));
        }
        let len: usize = header(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while t.end - t.start < len {
            if !t.fill().await? {
                rec.stats.closed(1006);
                return Ok(());
            }
        }
        let now = unix_micros();
        let body = &t.buf[t.start..t.start + len];
        let mut at = 0;
        while let Some(i) = find(&body[at..], JSON.timestamp) {
            rec.delivery(now, number_after(&body[at + i..], JSON.timestamp));
            at += i + JSON.timestamp.len();
        }
        t.start += len;
        rec.flush(now);
        cursor = header(&head, "switchboard-cursor").map(str::to_owned);
        if cursor.is_none() {
            return Err(other("poll: no Switchboard-Cursor header"));
        }
        if !rec.answered {
            rec.subscribed();
        }
    }
}
