//! The demo app (`/`), the SDK files (`/sdk/...`) and the demo's ticker publisher.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use switchboard_protocol::ChannelName;

use crate::broker::PublishRequest;
use crate::model::Payload;
use crate::server::AppState;

/// The channel the ticker publishes on.
pub const TICKER_CHANNEL: &str = "demo:ticker";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse + Clone {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
}

/// `/sdk/switchboard.js` and its types: always served.
pub fn sdk_routes() -> Router<Arc<AppState>> {
    let js = asset("text/javascript; charset=utf-8", include_str!("../sdk/switchboard.js"));
    let dts = asset("application/typescript; charset=utf-8", include_str!("../sdk/switchboard.d.ts"));
    Router::new()
        .route("/sdk/switchboard.js", get(move || async move { js }))
        .route("/sdk/switchboard.d.ts", get(move || async move { dts }))
}

/// The demo app.
pub fn routes() -> Router<Arc<AppState>> {
    let html = asset("text/html; charset=utf-8", include_str!("../demo/index.html"));
    let js = asset("text/javascript; charset=utf-8", include_str!("../demo/demo.js"));
    let css = asset("text/css; charset=utf-8", include_str!("../demo/demo.css"));
    let cursors_html = asset("text/html; charset=utf-8", include_str!("../demo/cursors.html"));
    let cursors_js = asset("text/javascript; charset=utf-8", include_str!("../demo/cursors.js"));
    let video_html = asset("text/html; charset=utf-8", include_str!("../demo/video.html"));
    let video_js = asset("text/javascript; charset=utf-8", include_str!("../demo/video.js"));
    Router::new()
        .route("/", get(move || async move { html }))
        .route("/demo/demo.js", get(move || async move { js }))
        .route("/demo/demo.css", get(move || async move { css }))
        .route("/cursors", get(move || async move { cursors_html }))
        .route("/demo/cursors.js", get(move || async move { cursors_js }))
        .route("/video", get(move || async move { video_html }))
        .route("/demo/video.js", get(move || async move { video_js }))
}

/// Publishes a made-up price every 500 ms on [`TICKER_CHANNEL`] until the server stops.
pub async fn ticker(state: Arc<AppState>) {
    let Ok(channel) = ChannelName::new(TICKER_CHANNEL) else {
        return;
    };
    let options = state.config.channel_options(&channel).clone();
    let symbols = ["SWB", "RUST", "HTTP"];
    let mut prices = [100.0f64, 42.0, 1.1];
    let mut interval = tokio::time::interval(Duration::from_millis(500));
    let mut shutdown = state.shutdown.subscribe();
    for seq in 1u64.. {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => return,
        }
        let i = (seq % 3) as usize;
        let step = (rand::random::<f64>() - 0.5) * prices[i] * 0.01;
        prices[i] = (prices[i] + step).max(0.01);
        let data = serde_json::json!({"symbol": symbols[i], "price": (prices[i] * 100.0).round() / 100.0, "seq": seq});
        let request = PublishRequest {
            channel: channel.clone(),
            payload: Payload::Json(data.to_string().into()),
            info: None,
            idempotency_key: None,
            options: options.clone(),
        };
        if let Err(e) = state.publish(request).await {
            tracing::warn!(error = %e, "demo ticker publish failed");
        }
    }
}
