//! The terminal clients: `switchboard publish` and `switchboard subscribe`, thin wrappers over
//! the Rust client crate.

use std::io::Write;

use base64::Engine;
use clap::Args;
use serde_json::{Map, Value, json};
use switchboard_client::{Client, Cursor, Event, Publication, Transport};

/// `switchboard publish`.
#[derive(Args)]
pub struct PublishArgs {
    /// The channel.
    channel: String,
    /// The JSON payload.
    data: String,
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SWITCHBOARD_URL")]
    url: String,
    /// The API key, when the server has one.
    #[arg(long, env = "SWITCHBOARD_API_KEY")]
    api_key: Option<String>,
    /// Store the publication once per key, however often it is retried.
    #[arg(long)]
    idempotency_key: Option<String>,
}

/// `switchboard subscribe`.
#[derive(Args)]
pub struct SubscribeArgs {
    /// The channels.
    #[arg(required = true)]
    channels: Vec<String>,
    /// ws, sse, stream, long-poll or poll.
    #[arg(long, default_value = "ws")]
    transport: String,
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SWITCHBOARD_URL")]
    url: String,
    /// A client token, when the server requires one.
    #[arg(long, env = "SWITCHBOARD_TOKEN")]
    token: Option<String>,
    /// Resume from this cursor (as printed in the `cursor` of earlier output).
    #[arg(long)]
    since: Option<String>,
    /// Stop after this many publications.
    #[arg(long)]
    count: Option<u64>,
}

/// Publishes and prints `{"offset", "epoch"}`.
pub async fn publish(args: PublishArgs) -> Result<(), String> {
    let data: serde_json::Value =
        serde_json::from_str(&args.data).map_err(|e| format!("the payload is not JSON: {e}"))?;
    let mut client = Client::new(&args.url).map_err(|e| e.to_string())?;
    if let Some(key) = args.api_key {
        client = client.with_api_key(key);
    }
    let reply = match &args.idempotency_key {
        Some(key) => client.publish_with_key(&args.channel, &data, key).await,
        None => client.publish(&args.channel, &data).await,
    }
    .map_err(|e| e.to_string())?;
    print_line(json!({"offset": reply.offset, "epoch": reply.epoch}))?;
    Ok(())
}

/// Subscribes and prints one JSON line per event, each with the cursor to resume from.
pub async fn subscribe(args: SubscribeArgs) -> Result<(), String> {
    let transport: Transport =
        args.transport.parse().map_err(|e: switchboard_client::Error| e.to_string())?;
    let mut client = Client::new(&args.url).map_err(|e| e.to_string())?;
    if let Some(token) = args.token {
        client = client.with_token(token);
    }
    let since = match &args.since {
        Some(text) => Some(Cursor::decode(text).map_err(|e| format!("--since: {e}"))?),
        None => None,
    };
    let channels: Vec<&str> = args.channels.iter().map(String::as_str).collect();
    let mut sub = client.subscribe(transport, &channels, since).await.map_err(|e| e.to_string())?;
    let mut seen = 0u64;
    while let Some(event) = sub.next().await {
        let mut line = match event.map_err(|e| e.to_string())? {
            Event::Publication(p) => {
                seen += 1;
                json!({ "pub": publication(p) })
            }
            Event::Subscribed(s) => json!({ "subscribed": s }),
            Event::Join(j) => json!({ "join": j }),
            Event::Leave(l) => json!({ "leave": l }),
            Event::Connected { client } => json!({"connected": {"client": client}}),
            Event::Unsubscribed { channel, code, reason } => {
                json!({"unsubscribed": {"channel": channel, "code": code, "reason": reason}})
            }
            Event::Disconnected { code, reason } => {
                print_line(json!({"disconnect": {"code": code, "reason": reason}}))?;
                return Err(format!(
                    "disconnected: {code} {reason}; resume with --since {}",
                    sub.cursor().encode()
                ));
            }
            other => json!({ "event": format!("{other:?}") }),
        };
        line["cursor"] = Value::String(sub.cursor().encode());
        if print_line(line)? == Printed::ReaderGone {
            return Ok(());
        }
        if args.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}

/// A publication as printed: its wire object (`docs/protocol.md`), without absent fields.
fn publication(p: Publication) -> Value {
    let mut out = Map::new();
    out.insert("channel".into(), p.channel.into());
    out.insert("offset".into(), p.offset.into());
    out.insert("epoch".into(), p.epoch.into());
    if let Some(data) = p.data {
        out.insert("data".into(), data);
    }
    if let Some(binary) = p.binary {
        out.insert("b64".into(), base64::engine::general_purpose::STANDARD.encode(binary).into());
    }
    if let Some(info) = p.info {
        out.insert("info".into(), json!(info));
    }
    Value::Object(out)
}

/// Whether a line reached stdout.
#[derive(Debug, PartialEq, Eq)]
pub enum Printed {
    /// It did.
    Yes,
    /// Whoever read stdout has gone (`| head -2` got its lines).
    ReaderGone,
}

/// Prints one line. A reader that has gone ends the command quietly, as it does any Unix tool,
/// where `println!` would panic; other write errors are errors.
pub fn print_line(line: impl std::fmt::Display) -> Result<Printed, String> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Printed::Yes),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Printed::ReaderGone),
        Err(e) => Err(format!("cannot write to stdout: {e}")),
    }
}
