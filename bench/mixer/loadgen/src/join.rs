//! Our side of the mixer benchmark's signaling: a participant joins the room over `/ws` (its
//! presence), then opens its SFU peer in mixed mode. HTTP and Janus: bench/sfu's `signal.rs`.

use std::io;

use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::signal::{err, http};

/// Joins `room` on our server as a participant over `/ws` (the socket must stay open: presence),
/// then opens its SFU peer publishing on `mid` and receiving the room's mix on the same m-line.
/// The WebSocket and the answer.
pub async fn join_ours(
    url: &str,
    room: &str,
    name: &str,
    offer: &str,
    mid: &str,
) -> io::Result<(Ws, String)> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let ws_url = format!("{}/ws", url.replacen("http://", "ws://", 1));
    let mut req = ws_url.into_client_request().map_err(io::Error::other)?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", "switchboard.v1.json".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.map_err(io::Error::other)?;
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"id": 1, "connect": {"name": name}}))).await.map_err(io::Error::other)?;
    ws.send(send(json!({"id": 2, "subscribe": {"channel": room}}))).await.map_err(io::Error::other)?;
    let mut client = None;
    loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else { return Err(err("ws closed")) };
        let v: Value = serde_json::from_str(&t).map_err(io::Error::other)?;
        if v["id"] == 1 {
            client = v["connect"]["client"].as_str().map(str::to_owned);
        }
        if v["id"] == 2 {
            if v.get("error").is_some() {
                return Err(err(format!("subscribe {room}: {v}")));
            }
            break;
        }
    }
    let client = client.ok_or_else(|| err("no client id"))?;
    let body = json!({"client": client, "sdp": offer, "publish": {mid: "mic"}, "subscribe": {mid: "mix"}});
    let path = format!("{url}/rtc/sfu/{}", room.replace(':', "%3A"));
    // The room's presence may lag the subscribe's reply a moment: 404 (code 102) is retried.
    let mut tries = 0;
    let (status, text) = loop {
        let (status, text) = http("POST", &path, "application/json", &body.to_string()).await?;
        tries += 1;
        if status != 404 || tries == 20 {
            break (status, text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    if status != 201 {
        return Err(err(format!("POST {path}: {status} {text}")));
    }
    let v: Value = serde_json::from_str(&text).map_err(io::Error::other)?;
    let sdp = v["sdp"].as_str().ok_or_else(|| err("no sdp"))?.to_owned();
    Ok((ws, sdp))
}

/// A participant's WebSocket, kept open for its presence.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;
