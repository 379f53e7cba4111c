//! The referee of one game: a task on the server that is the single writer of the game's state
//! channel. It follows the call room's presence (the players), reads what players publish on
//! the game's guess channel (which no client may read, so a right guess reaches nobody else),
//! and publishes the state, the chat and the round's clear marker; the word goes to the drawer
//! alone, into their signaling inbox. Players cannot publish on the state channel: its
//! namespace has `client_publish = false`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_protocol::ChannelName;

use super::round::{Game, Said};
use super::{Channels, words};
use crate::broker::NewPublication;
use crate::hub::{Outbox, Taken, next_conn_id};
use crate::model::{Delivery, Payload};
use crate::state::AppState;

/// How often the clock moves and presence is read again (presence events also wake it).
const TICK: Duration = Duration::from_millis(500);
/// Deliveries the referee's queue holds (guesses and presence events between two wakes).
const QUEUE: usize = 4096;
/// An empty game stops after this long.
const IDLE: Duration = Duration::from_secs(60);

/// What a player publishes on the guess channel.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum FromPlayer {
    /// A guess, or chat.
    Guess { text: String },
    /// "I am on this transport" (sent on every (re)connect and transport change).
    Hello { transport: String },
}

/// Runs game `channels` until it has been empty for [`IDLE`] or the server stops.
pub async fn run(state: Arc<AppState>, channels: Channels, round: Duration, grace: Duration) {
    let conn = next_conn_id();
    let outbox = Arc::new(Outbox::new(QUEUE, usize::MAX));
    for ch in [&channels.room, &channels.guess] {
        if let Err(e) = state.subscribe_local(ch, conn, outbox.clone()).await {
            tracing::warn!(error = %e, channel = %ch, "game referee cannot subscribe");
        }
    }
    let pick = |round: u64| words::WORDS[(rand::random::<u64>() ^ round) as usize % words::WORDS.len()];
    let mut game = Game::new(round.as_millis() as u64, grace.as_millis() as u64, pick);
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let mut shutdown = state.shutdown.subscribe();
    let mut batch = Vec::new();
    let mut empty_since: Option<Instant> = None;
    let mut round_seen = 0;
    let mut drawer_seen = String::new();
    let referee = Referee { state: &state, channels: &channels };
    referee.publish_state(&game, now()).await;
    loop {
        tokio::select! {
            _ = outbox.ready() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => break,
        }
        let mut changed = false;
        // Presence first (a newcomer's hello follows its join), read every wake: it is the truth
        // after drops, reconnects and on other nodes.
        match state.broker.presence(&channels.room).await {
            Ok(list) => {
                let list: Vec<(String, String)> =
                    list.iter().map(|c| (c.client.clone(), c.name.clone().unwrap_or_default())).collect();
                changed |= game.sync(&list, now());
            }
            Err(e) => tracing::debug!(error = %e, "game referee cannot read presence"),
        }
        if outbox.take(&mut batch) != Taken::Ok {
            // Guesses were lost: stop rather than judge on part of them; the next open restarts.
            tracing::warn!(game = %channels.room, "game referee's queue overflowed; the game stops");
            break;
        }
        for delivery in batch.drain(..) {
            let Delivery::Publication(p) = delivery else { continue };
            if p.channel != channels.guess {
                continue;
            }
            let (Some(info), Payload::Json(json)) = (&p.info, &p.payload) else { continue };
            match serde_json::from_slice::<FromPlayer>(json) {
                Ok(FromPlayer::Hello { transport }) => changed |= game.hello(&info.client, &transport),
                Ok(FromPlayer::Guess { text }) => {
                    state.metrics.game_guesses.add(1);
                    match game.say(&info.client, &text, now()) {
                        Said::Chat { client, name, text } => {
                            referee
                                .say(json!({"type": "chat", "client": client, "name": name, "text": text}))
                                .await
                        }
                        Said::Correct { client, name, points } => {
                            changed = true;
                            let line =
                                json!({"type": "correct", "client": client, "name": name, "points": points});
                            referee.say(line).await;
                        }
                        Said::Hidden => {}
                    }
                }
                Err(_) => {} // not a game message: nobody else reads this channel, so no harm
            }
        }
        changed |= game.tick(now());
        if game.round() != round_seen {
            round_seen = game.round();
            referee.clear(round_seen).await;
        }
        // The word goes to the drawer at the round's start and again whenever they come back.
        if let Some((drawer, word)) = game.secret() {
            let back = game.players().iter().any(|p| p.client == drawer && p.away_since.is_none());
            let key = format!("{round_seen}/{drawer}/{back}");
            if back && key != drawer_seen {
                referee.tell_word(drawer, word, round_seen).await;
            }
            drawer_seen = key;
        }
        if changed {
            referee.publish_state(&game, now()).await;
        }
        if game.is_empty() {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= IDLE {
                break;
            }
        } else {
            empty_since = None;
        }
    }
    for ch in [&channels.room, &channels.guess] {
        state.unsubscribe_local(ch, conn);
    }
}

struct Referee<'a> {
    state: &'a Arc<AppState>,
    channels: &'a Channels,
}

impl Referee<'_> {
    async fn publish(&self, channel: &ChannelName, data: Value) {
        let request = NewPublication {
            channel: channel.clone(),
            payload: Payload::Json(data.to_string().into()),
            info: None,
            idempotency_key: None,
            options: self.state.config.channel_options(channel).clone(),
        };
        if let Err(e) = self.state.publish(request).await {
            tracing::warn!(error = %e, channel = %channel, "game referee cannot publish");
        }
    }

    async fn publish_state(&self, game: &Game, now: u64) {
        let mut state = game.public(now);
        // Wall clock, so that a page reading this from history can tell how much time is left.
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        state["at"] = (at.as_millis() as u64).into();
        self.publish(&self.channels.state, state).await;
    }

    async fn say(&self, line: Value) {
        self.publish(&self.channels.state, line).await;
    }

    /// Marks the start of round `round` on the drawing channel: a late joiner replays the
    /// drawing's history back to the last marker.
    async fn clear(&self, round: u64) {
        self.publish(&self.channels.draw, json!({"clear": true, "round": round})).await;
    }

    async fn tell_word(&self, drawer: &str, word: &str, round: u64) {
        let Ok(inbox) = ChannelName::new(&format!("{}@{drawer}", self.channels.room)) else { return };
        self.publish(&inbox, json!({"type": "game-word", "round": round, "word": word})).await;
    }
}
