//! Fan-out load generator for `bench/fanout.py`.
//!
//! `loadgen sub`: opens N subscribers to one channel, answers the server's pings, and records, for
//! every publication received, the latency from the publish timestamp carried in its payload
//! (`{"t": <unix micros>, ...}`) in an HDR histogram. It is driven over stdin/stdout, one command a
//! line (see [`control`]), so a driver can read the server's memory while every connection is
//! idle, then reset the counters around a publishing window. `--proto` says how they subscribe:
//!
//! - `json` (default): our JSON protocol over a WebSocket (`/ws`; the Node peer speaks it too).
//! - `stomp`: STOMP 1.2 over a WebSocket (`/stomp`), see [`stomp_subscriber`].
//! - `sockjs`: our JSON protocol inside a SockJS session over `xhr_streaming` (`/sockjs`), see
//!   [`sockjs_subscriber`].
//!
//! `loadgen pub`: one WebSocket publisher (JSON protocol) at a fixed rate for a fixed time.
//!
//! The WebSocket client is a minimal one written for this tool (RFC 6455 framing of text, ping,
//! pong and close frames; fragmented messages are reassembled): one task and one small read
//! buffer per connection, every read parses all the frames it brought, so the generator can keep
//! up with the server on the same machine. Both servers under test (ours and `bench/peers`) speak
//! the same JSON shapes, so the generator drives them identically. SockJS's HTTP/1.1 requests are
//! written by hand too, and its chunked responses decoded as they come ([`Chunked`]).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, SemaphorePermit};

mod json;
mod nats;
mod net;
mod publish;
mod sockjs;
mod stomp;
mod stream;
mod sub;
#[cfg(test)]
mod tests;

use json::*;
use nats::*;
use net::*;
use publish::*;
use sockjs::*;
use stomp::*;
use stream::*;
use sub::*;

const SUBPROTOCOL: &str = "switchboard.v1.json";
/// What @stomp/stompjs offers first; `/stomp` speaks STOMP whatever is offered.
const STOMP_SUBPROTOCOL: &str = "v12.stomp";
/// Initial read buffer per connection; it grows only for a frame larger than it.
const READ_BUF: usize = 8 * 1024;
/// Most bytes of an HTTP response head we accept.
const MAX_HEAD: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { usage() };
    let opts = Opts::parse(&args[1..]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    match cmd.as_str() {
        "sub" => rt.block_on(sub_main(opts)),
        "pub" => rt.block_on(pub_main(opts)),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage:\n  loadgen sub --url ws://HOST:PORT/PATH --conns N [--proto json|stomp|sockjs|sse|stream|nats|poll] [--source 127.0.0.X] [--channel C] [--inflight K]\n  \
         loadgen pub --url ws://HOST:PORT/PATH --rate MSGS_PER_S --duration SECS [--channel C] [--size BYTES] [--source 127.0.0.X]\n\n\
         --proto json: our JSON protocol, URL ws://HOST:PORT/ws; stomp: STOMP 1.2, ws://HOST:PORT/stomp;\n\
         sockjs: the JSON protocol over SockJS xhr_streaming, http://HOST:PORT/sockjs (the service's prefix);\n\
         sse: Server-Sent Events, http://HOST:PORT/sse (`?channel=C` is added);\n\
         stream: NDJSON streaming, http://HOST:PORT/stream (`?channel=C` is added);\n\
         nats: the NATS protocol over a WebSocket, ws://HOST:PORT/ (nats-server's websocket listener; `pub` too);\n\
         poll: long polling, http://HOST:PORT/poll (`?channel=C&since=&wait=25` is added)\n\n\
         sub reads commands on stdin: stats | reset | hist | quit"
    );
    std::process::exit(2)
}

/// How `sub` subscribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Json,
    Stomp,
    Sockjs,
    Sse,
    /// NDJSON streaming: `GET /stream?channel=C`, one JSON object a line.
    Stream,
    /// The NATS client protocol over a WebSocket (nats-server's `websocket` listener).
    Nats,
    /// Long polling: `GET /poll?channel=C&since=CURSOR&wait=25`, again at once after each answer.
    Poll,
}

struct Opts {
    addr: SocketAddr,
    host: String,
    path: String,
    proto: Proto,
    conns: usize,
    source: Option<IpAddr>,
    channel: String,
    inflight: usize,
    rate: f64,
    duration: f64,
    size: usize,
}

impl Opts {
    fn parse(args: &[String]) -> Self {
        let mut url = None;
        let mut o = Opts {
            addr: "127.0.0.1:0".parse().unwrap(),
            host: String::new(),
            path: "/ws".into(),
            proto: Proto::Json,
            conns: 1,
            source: None,
            channel: "bench".into(),
            inflight: 256,
            rate: 100.0,
            duration: 10.0,
            size: 64,
        };
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let v = it.next().unwrap_or_else(|| usage());
            match k.as_str() {
                "--url" => url = Some(v.clone()),
                "--proto" => {
                    o.proto = match v.as_str() {
                        "json" => Proto::Json,
                        "stomp" => Proto::Stomp,
                        "sockjs" => Proto::Sockjs,
                        "sse" => Proto::Sse,
                        "stream" => Proto::Stream,
                        "nats" => Proto::Nats,
                        "poll" => Proto::Poll,
                        _ => usage(),
                    }
                }
                "--conns" => o.conns = v.parse().unwrap_or_else(|_| usage()),
                "--source" => o.source = Some(v.parse().unwrap_or_else(|_| usage())),
                "--channel" => o.channel = v.clone(),
                "--inflight" => o.inflight = v.parse().unwrap_or_else(|_| usage()),
                "--rate" => o.rate = v.parse().unwrap_or_else(|_| usage()),
                "--duration" => o.duration = v.parse().unwrap_or_else(|_| usage()),
                "--size" => o.size = v.parse().unwrap_or_else(|_| usage()),
                _ => usage(),
            }
        }
        let url = url.unwrap_or_else(|| usage());
        // ws:// for the WebSocket protocols, http:// for SockJS (only the host and path are used).
        let rest =
            url.strip_prefix("ws://").or_else(|| url.strip_prefix("http://")).unwrap_or_else(|| usage());
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        o.host = hostport.to_string();
        o.path = path.to_string();
        o.addr = hostport.parse().unwrap_or_else(|_| {
            eprintln!("--url must name an IP address and port");
            std::process::exit(2)
        });
        o
    }
}

fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn other(e: impl Into<String>) -> io::Error {
    io::Error::other(e.into())
}
