//! The API of compositions and pipelines (`docs/video.md`), for the application's server (API
//! key; or anyone on a server without secrets):
//!
//! - `POST /api/rooms/{room}/compositions` → `201` with the composition and its output track;
//!   `GET` lists the room's compositions and pipelines; `DELETE .../compositions/{id}` stops one;
//!   `PATCH .../compositions/{id}` changes its layout live.
//! - `POST /api/rooms/{room}/pipelines` → `201`; `DELETE .../pipelines/{id}` stops one.
//!
//! Errors: `400` code 107 (bad request, with the filter's own code in the message), `404` code
//! 102 (no such track, composition or pipeline), `429` code 106 (a cap), `503` code 108 (no
//! WebRTC), `401`/`403` (codes 101/103) for callers that are not the server; in a cluster, `421`
//! code 111 with `node` when another node holds the room's media (as the recording API).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use switchboard_protocol::{ChannelName, ErrorCode};

use super::service::{CompositionRequest, CompositionUpdate, PipelineRequest, VideoError, VideoService};
use crate::http::{Caller, HttpError, caller};
use crate::state::AppState;

/// The routes, under the app's state.
pub fn routes(video: Option<Arc<VideoService>>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/rooms/{room}/compositions", post(compose).get(list))
        .route("/api/rooms/{room}/compositions/{id}", delete(stop).patch(update))
        .route("/api/rooms/{room}/pipelines", post(pipeline).get(list))
        .route("/api/rooms/{room}/pipelines/{id}", delete(stop))
        .layer(Extension(video))
}

type Video = Extension<Option<Arc<VideoService>>>;

fn status(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> HttpError {
    HttpError { status: Some(status), ..HttpError::new(code, message) }
}

impl From<VideoError> for HttpError {
    fn from(e: VideoError) -> Self {
        let (s, code) = match &e {
            VideoError::Bad(_) | VideoError::Filter(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            VideoError::TooMany { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::LimitExceeded),
            VideoError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::UnknownChannel),
            VideoError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotAvailable),
        };
        status(s, code, e.to_string())
    }
}

/// The service and the room, for the server only.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    video: Video,
    room: &str,
) -> Result<(Arc<VideoService>, ChannelName), HttpError> {
    let who = caller(&state.rules, headers).map_err(|mut e| {
        e.status = Some(StatusCode::UNAUTHORIZED);
        e
    })?;
    if let Caller::Client(_) = who {
        return Err(status(
            StatusCode::FORBIDDEN,
            ErrorCode::PermissionDenied,
            "compositions and pipelines need the API key",
        ));
    }
    let Extension(video) = video;
    let video = video.ok_or_else(|| {
        status(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotAvailable, "WebRTC is off: no video processing")
    })?;
    let room = ChannelName::new(room).ok().filter(|r| state.rules.is_room(r)).ok_or_else(|| {
        status(StatusCode::NOT_FOUND, ErrorCode::UnknownChannel, format!("{room} is not a room"))
    })?;
    Ok((video, room))
}

/// `421` with code 111 and the node when another node holds the room's media (a cluster).
async fn elsewhere(state: &AppState, room: &ChannelName) -> Result<Option<Response>, HttpError> {
    let holder = crate::rtc::http::elsewhere(state, room).await?;
    Ok(holder.map(|holder| crate::rtc::http::served_elsewhere(room, &holder)))
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HttpError> {
    let body = if body.is_empty() { b"{}".as_slice() } else { body };
    serde_json::from_slice(body)
        .map_err(|e| status(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, format!("bad request body: {e}")))
}

async fn compose(
    State(state): State<Arc<AppState>>,
    video: Video,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let (video, room) = authorize(&state, &headers, video, &room)?;
    let req: CompositionRequest = json(&body)?;
    if let Some(moved) = elsewhere(&state, &room).await? {
        return Ok(moved);
    }
    let running = video.compose(room, req).await?;
    Ok((StatusCode::CREATED, Json(running)).into_response())
}

async fn pipeline(
    State(state): State<Arc<AppState>>,
    video: Video,
    Path(room): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let (video, room) = authorize(&state, &headers, video, &room)?;
    let req: PipelineRequest = json(&body)?;
    if let Some(moved) = elsewhere(&state, &room).await? {
        return Ok(moved);
    }
    let running = video.pipeline(room, req).await?;
    Ok((StatusCode::CREATED, Json(running)).into_response())
}

async fn list(
    State(state): State<Arc<AppState>>,
    video: Video,
    Path(room): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (video, room) = authorize(&state, &headers, video, &room)?;
    Ok(Json(serde_json::json!({ "running": video.list(room.as_str()) })).into_response())
}

async fn stop(
    State(state): State<Arc<AppState>>,
    video: Video,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (video, room) = authorize(&state, &headers, video, &room)?;
    let stopped = video.stop(room.as_str(), &id).await?;
    Ok(Json(stopped).into_response())
}

async fn update(
    State(state): State<Arc<AppState>>,
    video: Video,
    Path((room, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let (video, room) = authorize(&state, &headers, video, &room)?;
    let req: CompositionUpdate = json(&body)?;
    let updated = video.update(room.as_str(), &id, req)?;
    Ok(Json(updated).into_response())
}
