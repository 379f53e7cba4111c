//! The demo app (`/`), the SDK files (`/sdk/...`) and the demo's ticker publisher.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use switchboard_protocol::ChannelName;

use crate::broker::NewPublication;
use crate::model::Payload;
use crate::state::AppState;

/// The channel the ticker publishes on.
pub const TICKER_CHANNEL: &str = "demo:ticker";

/// A static file's response.
pub fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse + Clone {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
}

/// The SDK: its entry `/sdk/switchboard.js`, the modules it imports at `/sdk/src/...` and its
/// types; always served, embedded in the binary. Every file under `sdk/src/` is listed here (a
/// test checks that none is missing); any other path under `/sdk/` is a 404.
pub fn sdk_routes() -> Router<Arc<AppState>> {
    macro_rules! sdk_files {
        ($($path:literal),* $(,)?) => { [$(($path, include_str!(concat!("../sdk/", $path)))),*] };
    }
    let modules = sdk_files![
        "switchboard.js",
        "src/client.js",
        "src/codec.js",
        "src/emitter.js",
        "src/errors.js",
        "src/ice.js",
        "src/retry.js",
        "src/subscription.js",
        "src/token.js",
        "src/rooms/mesh.js",
        "src/rooms/room.js",
        "src/rooms/sfu.js",
        "src/rooms/tracks.js",
        "src/transports/conn.js",
        "src/transports/oneway.js",
        "src/transports/poll.js",
        "src/transports/sse.js",
        "src/transports/stream.js",
        "src/transports/webrtc.js",
        "src/transports/websocket.js",
        "src/transports/webtransport.js",
    ];
    let dts = asset("application/typescript; charset=utf-8", include_str!("../sdk/switchboard.d.ts"));
    let mut router = Router::new().route("/sdk/switchboard.d.ts", get(move || async move { dts }));
    for (path, body) in modules {
        let js = asset("text/javascript; charset=utf-8", body);
        router = router.route(&format!("/sdk/{path}"), get(move || async move { js }));
    }
    router
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
    let recordings_js = asset("text/javascript; charset=utf-8", include_str!("../demo/recordings.js"));
    let composed_js = asset("text/javascript; charset=utf-8", include_str!("../demo/composed.js"));
    Router::new()
        .route("/", get(move || async move { html }))
        .route("/demo/demo.js", get(move || async move { js }))
        .route("/demo/demo.css", get(move || async move { css }))
        .route("/cursors", get(move || async move { cursors_html }))
        .route("/demo/cursors.js", get(move || async move { cursors_js }))
        .route("/video", get(move || async move { video_html }))
        .route("/demo/video.js", get(move || async move { video_js }))
        .route("/demo/recordings.js", get(move || async move { recordings_js }))
        .route("/demo/composed.js", get(move || async move { composed_js }))
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
        let request = NewPublication {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::config::Config;

    fn js_files(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("sdk/src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                js_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "js") {
                out.push(path.to_string_lossy().into_owned());
            }
        }
    }

    async fn get_path(path: &str) -> (StatusCode, Option<String>, Vec<u8>) {
        let app = sdk_routes().with_state(AppState::new(Config::default()));
        let request = Request::get(path).body(Body::empty()).expect("a request");
        let response = app.oneshot(request).await.expect("the router answers");
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = to_bytes(response.into_body(), usize::MAX).await.expect("a body");
        (status, content_type, body.to_vec())
    }

    #[tokio::test]
    async fn every_sdk_module_is_served_as_javascript_and_nothing_else() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk");
        let mut files = Vec::new();
        js_files(&root.join("src"), &mut files);
        assert!(files.len() > 10, "found the SDK's modules: {files:?}");
        files.push(root.join("switchboard.js").to_string_lossy().into_owned());
        for file in files {
            let rel = file.strip_prefix(root.to_str().expect("utf-8 path")).expect("under sdk/");
            let (status, content_type, body) = get_path(&format!("/sdk{rel}")).await;
            assert_eq!(status, StatusCode::OK, "/sdk{rel} is not served: list it in sdk_routes");
            assert_eq!(content_type.as_deref(), Some("text/javascript; charset=utf-8"), "{rel}");
            assert!(body == std::fs::read(&file).expect("readable"), "{rel}: served a different body");
        }
        for missing in ["/sdk/src/nope.js", "/sdk/src/", "/sdk/../Cargo.toml", "/sdk/test/codec.test.mjs"] {
            assert_eq!(get_path(missing).await.0, StatusCode::NOT_FOUND, "{missing}");
        }
    }
}
