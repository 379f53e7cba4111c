//! The terminal clients: `switchboard publish` and `switchboard subscribe`, thin wrappers over
//! the Rust client crate.

use clap::Args;
use switchboard_client::{Client, Cursor, Event, Transport};

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
    println!("{}", serde_json::json!({"offset": reply.offset, "epoch": reply.epoch}));
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
        let line = match event.map_err(|e| e.to_string())? {
            Event::Publication(p) => {
                seen += 1;
                serde_json::json!({"pub": {"channel": p.channel, "offset": p.offset, "epoch": p.epoch,
                    "data": p.data, "binary_len": p.binary.map(|b| b.len())}})
            }
            Event::Subscribed(s) => serde_json::json!({ "subscribed": s }),
            Event::Join(j) => serde_json::json!({ "join": j }),
            Event::Leave(l) => serde_json::json!({ "leave": l }),
            Event::Connected { client } => serde_json::json!({"connected": {"client": client}}),
            Event::Disconnected { code, reason } => {
                println!("{}", serde_json::json!({"disconnect": {"code": code, "reason": reason}}));
                return Err(format!(
                    "disconnected: {code} {reason}; resume with --since {}",
                    sub.cursor().encode()
                ));
            }
            other => serde_json::json!({ "event": format!("{other:?}") }),
        };
        let mut line = line;
        line["cursor"] = serde_json::Value::String(sub.cursor().encode());
        println!("{line}");
        if args.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}
