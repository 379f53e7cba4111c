//! The video-call drawing game behind the `/game` demo page: a call room plus a built-in
//! referee ([`referee`]) that owns scores and turns. `POST /game/api/games/{id}` opens game
//! `id` (starting its referee on this node if none runs) and answers its channels:
//!
//! - `game:ID`: the call room (rooms namespace): its presence is the player list; the drawer's
//!   inbox `game:ID@CLIENT` receives the secret word;
//! - `gamestate:ID`: state, chat and right guesses, written by the referee alone
//!   (`client_publish = false`);
//! - `gamedraw:ID`: the strokes (clients publish; datagrams allowed; kept in history so a late
//!   joiner redraws the round);
//! - `gameguess:ID`: guesses and transport hellos, which players publish and only the referee
//!   reads (`private = true`).
//!
//! See `docs/game.md`.

pub mod referee;
pub mod round;
pub mod words;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use switchboard_protocol::{ChannelName, ErrorCode};

use crate::http::HttpError;
use crate::state::AppState;

/// A game's channels.
#[derive(Debug, Clone)]
pub struct Channels {
    /// The call room (its presence: the players).
    pub room: ChannelName,
    /// Written by the referee alone.
    pub state: ChannelName,
    /// Strokes.
    pub draw: ChannelName,
    /// Read by the referee alone.
    pub guess: ChannelName,
}

impl Channels {
    /// Game `id`'s channels, if `id` is a valid game name (1 to 40 of `A-Z a-z 0-9 _ -`).
    pub fn new(id: &str) -> Option<Self> {
        let valid = !id.is_empty()
            && id.len() <= 40
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return None;
        }
        let ch = |ns: &str| ChannelName::new(&format!("{ns}:{id}")).ok();
        Some(Self {
            room: ch("game")?,
            state: ch("gamestate")?,
            draw: ch("gamedraw")?,
            guess: ch("gameguess")?,
        })
    }
}

/// The games whose referee runs on this node.
#[derive(Default)]
struct Games(Mutex<HashSet<String>>);

/// The page (`/game` and its files under `/demo/`) and `POST /game/api/games/{id}`.
pub fn routes() -> Router<Arc<AppState>> {
    let games = Arc::new(Games::default());
    let mut router = Router::new().route(
        "/game/api/games/{id}",
        post(move |state: State<Arc<AppState>>, id: Path<String>| open(state, id, games.clone())),
    );
    let files = [
        ("/game", "text/html; charset=utf-8", include_str!("../../demo/game.html")),
        ("/demo/game.css", "text/css; charset=utf-8", include_str!("../../demo/game.css")),
        ("/demo/game.js", "text/javascript; charset=utf-8", include_str!("../../demo/game.js")),
        ("/demo/game-board.js", "text/javascript; charset=utf-8", include_str!("../../demo/game-board.js")),
        ("/demo/game-tiles.js", "text/javascript; charset=utf-8", include_str!("../../demo/game-tiles.js")),
    ];
    for (path, content_type, body) in files {
        let headers = [(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")];
        router = router.route(path, get(move || async move { (headers, body) }));
    }
    router
}

async fn open(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    games: Arc<Games>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let channels = Channels::new(&id)
        .ok_or_else(|| HttpError::new(ErrorCode::BadRequest, "a game name is 1 to 40 of A-Z a-z 0-9 _ -"))?;
    let round = Duration::from_secs(state.config.game_round_secs);
    {
        let mut running = games.0.lock().unwrap_or_else(|e| e.into_inner());
        if !running.contains(&id) {
            if running.len() >= state.config.game_max_games {
                let message = format!("{} games are running (game_max_games)", running.len());
                let full = HttpError::new(ErrorCode::LimitExceeded, message);
                return Err(HttpError { status: Some(StatusCode::SERVICE_UNAVAILABLE), ..full });
            }
            running.insert(id.clone());
            state.metrics.games.add(1);
            let (state, channels, games, id) = (state.clone(), channels.clone(), games.clone(), id.clone());
            let grace = Duration::from_secs(state.config.game_grace_secs);
            tokio::spawn(async move {
                referee::run(state.clone(), channels, round, grace).await;
                games.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                state.metrics.games.add(-1);
            });
        }
    }
    Ok(Json(serde_json::json!({
        "game": id,
        "room": channels.room.as_str(),
        "state": channels.state.as_str(),
        "draw": channels.draw.as_str(),
        "guess": channels.guess.as_str(),
        "roundSecs": round.as_secs(),
    })))
}
