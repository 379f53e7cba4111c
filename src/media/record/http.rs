//! The recording API (`docs/recording.md`): start a room's recording, list, get, stop or delete
//! recordings, and download their files with range requests (so `<video>` can seek).
//!
//! Who may: the API key (or anyone on a server without secrets), or a client token whose `rec`
//! claim matches the room. A browser's `<video>` cannot send headers: file downloads also take
//! the token as `?token=`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use switchboard_protocol::{ChannelName, ErrorCode};
use tower::ServiceExt;

use super::{Mode, RecordError, Recorder};
use crate::http::{Caller, HttpError, caller};
use crate::media::video::service::{CompositionRequest, Running, VideoService};
use crate::state::AppState;

/// The routes, under the app's state (`video`: for composed recordings).
pub fn routes(recorder: Option<Arc<Recorder>>, video: Option<Arc<VideoService>>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/rooms/{room}/recordings", post(start))
        .route("/api/recordings", get(list))
        .route("/api/recordings/{id}", get(one).delete(stop_or_delete))
        .route("/api/recordings/{id}/files/{name}", get(download))
        .layer(Extension(recorder))
        .layer(Extension(video))
}

type Rec = Extension<Option<Arc<Recorder>>>;
type Video = Extension<Option<Arc<VideoService>>>;

fn status(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> HttpError {
    HttpError { status: Some(status), ..HttpError::new(code, message) }
}

impl From<RecordError> for HttpError {
    fn from(e: RecordError) -> Self {
        let (s, code) = match &e {
            RecordError::Unknown | RecordError::EmptyRoom => {
                (StatusCode::NOT_FOUND, ErrorCode::UnknownChannel)
            }
            RecordError::TooMany(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::LimitExceeded),
            RecordError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
            RecordError::Engine => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotAvailable),
            RecordError::Mixer(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::MixerFull),
        };
        status(s, code, e.to_string())
    }
}

fn recorder(Extension(r): Rec) -> Result<Arc<Recorder>, HttpError> {
    r.ok_or_else(|| {
        status(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotAvailable, "WebRTC is off: no recording")
    })
}

/// The caller, with `?token=` standing in for a Bearer header.
fn who(state: &AppState, headers: &HeaderMap, query: &HashMap<String, String>) -> Result<Caller, HttpError> {
    let mut headers = headers.clone();
    if let Some(token) = query.get("token")
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        headers.insert(header::AUTHORIZATION, v);
    }
    caller(&state.rules, &headers).map_err(|mut e| {
        e.status = Some(StatusCode::UNAUTHORIZED);
        e
    })
}

/// Whether `caller` may record (and see the recordings of) `room`.
fn may(caller: &Caller, room: &str) -> bool {
    match caller {
        Caller::Server | Caller::Open => true,
        Caller::Client(identity) => {
            ChannelName::new(room).is_ok_and(|room| crate::rules::may_record(identity, &room))
        }
    }
}

fn forbidden() -> HttpError {
    status(
        StatusCode::FORBIDDEN,
        ErrorCode::PermissionDenied,
        "this token may not record that room (rec claim)",
    )
}

fn unknown() -> HttpError {
    RecordError::Unknown.into()
}

#[derive(Deserialize, Default)]
struct StartBody {
    /// Audio only, in Ogg/Opus.
    #[serde(default)]
    audio_only: bool,
    /// The room's audio mix, in one Ogg/Opus file.
    #[serde(default)]
    mix: bool,
    /// A composition's video and the room's mix, in one WebM file.
    #[serde(default)]
    composed: bool,
    /// For `composed`: a running composition's id, or the settings of one to start for this
    /// recording (default: a 640×360 grid at 15 fps), stopped with it.
    #[serde(default)]
    composition: Option<CompositionChoice>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CompositionChoice {
    Running(String),
    New(CompositionRequest),
}

fn bad(message: impl Into<String>) -> HttpError {
    status(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
}

/// The composition a composed recording takes: the one named, or a new one it owns (and
/// whether it does).
async fn composition_for(
    video: Option<Arc<VideoService>>,
    room: &ChannelName,
    choice: Option<CompositionChoice>,
) -> Result<(Arc<VideoService>, Running, bool), HttpError> {
    let video = video.ok_or_else(|| {
        status(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotAvailable, "WebRTC is off: no composition")
    })?;
    let default = || serde_json::from_value::<CompositionRequest>(serde_json::json!({}));
    match choice {
        Some(CompositionChoice::Running(id)) => {
            let running =
                video.list(room.as_str()).into_iter().find(|r| r.id == id && r.kind == "composition");
            let running = running.ok_or_else(|| {
                status(
                    StatusCode::NOT_FOUND,
                    ErrorCode::UnknownChannel,
                    format!("no composition {id} in {room}"),
                )
            })?;
            Ok((video, running, false))
        }
        choice => {
            let request = match choice {
                Some(CompositionChoice::New(r)) => r,
                _ => default().map_err(|e| bad(e.to_string()))?,
            };
            let running = video.compose(room.clone(), request).await?;
            Ok((video, running, true))
        }
    }
}

async fn start(
    State(state): State<Arc<AppState>>,
    rec: Rec,
    Extension(video): Video,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let caller = who(&state, &headers, &query)?;
    let recorder = recorder(rec)?;
    let room = ChannelName::new(&name).map_err(|e| HttpError::new(ErrorCode::BadRequest, e.to_string()))?;
    if !state.rules.is_room(&room) {
        return Err(status(StatusCode::NOT_FOUND, ErrorCode::UnknownChannel, "unknown room"));
    }
    if !may(&caller, room.as_str()) {
        return Err(forbidden());
    }
    let body: StartBody = if body.is_empty() {
        StartBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| HttpError::new(ErrorCode::BadRequest, format!("bad request body: {e}")))?
    };
    if let Some(holder) = crate::rtc::http::elsewhere(&state, &room).await? {
        // As the SFU's endpoints: the room's media, and so its recording, is on another node.
        return Ok(crate::rtc::http::served_elsewhere(&room, &holder));
    }
    if [body.audio_only, body.mix, body.composed || body.composition.is_some()].iter().filter(|b| **b).count()
        > 1
    {
        return Err(bad("audio_only, mix and composed are ways of recording: choose one"));
    }
    let info = if body.composed || body.composition.is_some() {
        let (video, running, owned) = composition_for(video, &room, body.composition).await?;
        let on_end: Option<super::OnEnd> = owned.then(|| {
            let (video, room, id) = (video.clone(), running.room.clone(), running.id.clone());
            // It runs on the recording's thread: the stopped event is published on this runtime.
            let runtime = tokio::runtime::Handle::current();
            Box::new(move || drop(video.stop_on(&runtime, &room, &id))) as super::OnEnd
        });
        let mode = Mode::Composed { composition: running.id.clone(), track: running.track.clone(), on_end };
        let recorded = recorder.record(&room, mode).await;
        if recorded.is_err() && owned {
            let _ = video.stop(room.as_str(), &running.id).await;
        }
        recorded?
    } else if body.mix {
        recorder.record(&room, Mode::Mix).await?
    } else {
        recorder.record(&room, Mode::Tracks { audio_only: body.audio_only }).await?
    };
    let location = format!("/api/recordings/{}", info.id);
    let mut body =
        serde_json::json!({"id": info.id, "room": info.room, "started": info.started, "files": info.files});
    if let Some(composition) = &info.composition {
        body["composition"] = composition.clone().into();
    }
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(body)).into_response())
}

async fn list(
    State(state): State<Arc<AppState>>,
    rec: Rec,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let caller = who(&state, &headers, &query)?;
    let recorder = recorder(rec)?;
    let all = recorder.list(query.get("room").map(String::as_str));
    let mine: Vec<_> =
        all.into_iter().filter(|r| may(&caller, r["room"].as_str().unwrap_or_default())).collect();
    Ok(Json(serde_json::json!({ "recordings": mine })).into_response())
}

/// The recording `id` if the caller may see it (else as if there were none, or 403).
fn visible(recorder: &Recorder, caller: &Caller, id: &str) -> Result<String, HttpError> {
    let room = recorder.room_of(id).ok_or_else(unknown)?;
    if !may(caller, &room) {
        return Err(forbidden());
    }
    Ok(room)
}

async fn one(
    State(state): State<Arc<AppState>>,
    rec: Rec,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let caller = who(&state, &headers, &query)?;
    let recorder = recorder(rec)?;
    visible(&recorder, &caller, &id)?;
    Ok(Json(recorder.get(&id).ok_or_else(unknown)?).into_response())
}

/// Stops a running recording (`200` with it, now `stopped`); removes a finished one's files
/// (`200 {"deleted": true}`); then it is gone (`404`, code 102).
async fn stop_or_delete(
    State(state): State<Arc<AppState>>,
    rec: Rec,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let caller = who(&state, &headers, &query)?;
    let recorder = recorder(rec)?;
    visible(&recorder, &caller, &id)?;
    if recorder.stop(&id, "stopped").await {
        return Ok(Json(recorder.get(&id).ok_or_else(unknown)?).into_response());
    }
    recorder.remove(&id)?;
    Ok(Json(serde_json::json!({"id": id, "deleted": true})).into_response())
}

async fn download(
    State(state): State<Arc<AppState>>,
    rec: Rec,
    Path((id, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, HttpError> {
    let caller = who(&state, &headers, &query)?;
    let recorder = recorder(rec)?;
    visible(&recorder, &caller, &id)?;
    let path = recorder.file(&id, &name).ok_or_else(unknown)?;
    let mime = match name.rsplit('.').next() {
        Some("ogg") => "audio/ogg",
        Some("mkv") => "video/x-matroska",
        _ => "video/webm",
    };
    let serve =
        tower_http::services::ServeFile::new_with_mime(path, &mime.parse().expect("a valid mime type"));
    match serve.oneshot(request).await {
        Ok(r) => Ok(r.map(Body::new)),
        Err(e) => Err(status(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, e.to_string())),
    }
}
