//! The drawing game's rules as a pure state machine: players (the call room's participants),
//! turns, the secret word, guesses and scores. The referee task ([`super::referee`]) feeds it
//! presence, guesses and the clock, and publishes what it says; nothing here does I/O, so the
//! rules are unit-tested directly. Times are milliseconds on any monotonic clock.

use serde_json::{Value, json};

/// How long the word stays shown between rounds.
pub const REVEAL_MS: u64 = 4_000;
/// Longest guess or chat line kept, in characters.
pub const MAX_TEXT: usize = 120;
/// Longest transport name a player may report.
const MAX_TRANSPORT: usize = 16;

/// One player: a participant of the call room, kept for `grace_ms` after they leave so that a
/// dropped connection (same client id) or a reloaded page (same name) gets its score back.
#[derive(Debug, Clone)]
pub struct Player {
    /// The connection's client id (a reconnect keeps it).
    pub client: String,
    /// The display name given at connect.
    pub name: String,
    /// Points so far.
    pub score: u64,
    /// What the player's page says it is connected with.
    pub transport: String,
    /// Since when the player is not in the room, if they left.
    pub away_since: Option<u64>,
    /// Guessed this round's word.
    pub guessed: bool,
}

/// Where the game is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Fewer than two players.
    Waiting,
    /// `drawer` draws `word` until `deadline`.
    Drawing { drawer: String, word: &'static str, started: u64, deadline: u64 },
    /// The word is shown until `until`.
    Reveal { word: &'static str, until: u64 },
}

/// What a guess or chat line led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    /// Shown to everyone as chat.
    Chat { client: String, name: String, text: String },
    /// Right: `points` to the guesser (the drawer got some too).
    Correct { client: String, name: String, points: u64 },
    /// Not shown (it would give the word away, or it was empty).
    Hidden,
}

/// A game: see the module docs.
#[derive(Debug)]
pub struct Game {
    players: Vec<Player>,
    phase: Phase,
    round: u64,
    /// Whose turn was last, to pass the pen in join order.
    last_drawer: Option<String>,
    round_ms: u64,
    grace_ms: u64,
    /// Picks words; a function of the round so tests can fix it.
    pick: fn(u64) -> &'static str,
}

impl Game {
    /// A game whose rounds last `round_ms` and whose absent players are kept `grace_ms`.
    pub fn new(round_ms: u64, grace_ms: u64, pick: fn(u64) -> &'static str) -> Self {
        Self {
            players: Vec::new(),
            phase: Phase::Waiting,
            round: 0,
            last_drawer: None,
            round_ms,
            grace_ms,
            pick,
        }
    }

    /// The players, in join order.
    pub fn players(&self) -> &[Player] {
        &self.players
    }

    /// The phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The round number (1 for the first round).
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The drawer and word of the round being drawn.
    pub fn secret(&self) -> Option<(&str, &'static str)> {
        match &self.phase {
            Phase::Drawing { drawer, word, .. } => Some((drawer, word)),
            _ => None,
        }
    }

    fn present(&self) -> impl Iterator<Item = &Player> {
        self.players.iter().filter(|p| p.away_since.is_none())
    }

    /// The room's participants now (`(client, name)`); returns whether anything changed. A
    /// newcomer whose name is that of an absent player takes that player's place and score
    /// (a reloaded page has a new client id).
    pub fn sync(&mut self, present: &[(String, String)], now: u64) -> bool {
        let mut changed = false;
        for (client, name) in present {
            if let Some(p) = self.players.iter_mut().find(|p| &p.client == client) {
                if p.away_since.take().is_some() {
                    changed = true;
                }
                continue;
            }
            let name = clip(name, 40);
            let back = self.players.iter().position(|p| p.away_since.is_some() && p.name == name);
            if let Some(i) = back {
                let old = std::mem::replace(&mut self.players[i].client, client.clone());
                self.players[i].away_since = None;
                if let Phase::Drawing { drawer, .. } = &mut self.phase
                    && *drawer == old
                {
                    *drawer = client.clone();
                }
                if self.last_drawer.as_deref() == Some(old.as_str()) {
                    self.last_drawer = Some(client.clone());
                }
            } else {
                self.players.push(Player {
                    client: client.clone(),
                    name: if name.is_empty() { format!("player {}", self.players.len() + 1) } else { name },
                    score: 0,
                    transport: String::new(),
                    away_since: None,
                    guessed: false,
                });
            }
            changed = true;
        }
        for p in &mut self.players {
            if p.away_since.is_none() && !present.iter().any(|(c, _)| *c == p.client) {
                p.away_since = Some(now);
                changed = true;
            }
        }
        changed
    }

    /// A player says which transport they are on.
    pub fn hello(&mut self, client: &str, transport: &str) -> bool {
        let Some(p) = self.players.iter_mut().find(|p| p.client == client) else { return false };
        let transport = clip(transport, MAX_TRANSPORT);
        if p.transport == transport {
            return false;
        }
        p.transport = transport;
        true
    }

    /// A line from `client` in the guess box.
    pub fn say(&mut self, client: &str, text: &str, now: u64) -> Said {
        let text = clip(text.trim(), MAX_TEXT);
        let Some(i) = self.players.iter().position(|p| p.client == client) else { return Said::Hidden };
        if text.is_empty() {
            return Said::Hidden;
        }
        let name = self.players[i].name.clone();
        let Phase::Drawing { drawer, word, started, deadline } = &self.phase else {
            return Said::Chat { client: client.to_owned(), name, text };
        };
        let (word, started, deadline) = (*word, *started, *deadline);
        let said = normalize(&text);
        let may_guess = drawer != client && !self.players[i].guessed;
        if may_guess && said == word {
            let left = deadline.saturating_sub(now) as f64 / (deadline - started).max(1) as f64;
            let first = !self.players.iter().any(|p| p.guessed);
            let points = 20 + (80.0 * left).round() as u64 + if first { 20 } else { 0 };
            self.players[i].score += points;
            self.players[i].guessed = true;
            let drawer = drawer.clone();
            if let Some(d) = self.players.iter_mut().find(|p| p.client == drawer) {
                d.score += 25;
            }
            if self.present().filter(|p| p.client != drawer).all(|p| p.guessed) {
                self.phase = Phase::Reveal { word, until: now + REVEAL_MS };
            }
            return Said::Correct { client: client.to_owned(), name, points };
        }
        // Whoever knows the word may not spell it out for the others.
        if said.contains(word) {
            return Said::Hidden;
        }
        Said::Chat { client: client.to_owned(), name, text }
    }

    /// Moves the clock; returns whether the phase changed (a new round clears the canvas).
    pub fn tick(&mut self, now: u64) -> bool {
        let before = self.players.len();
        self.players.retain(|p| p.away_since.is_none_or(|t| now.saturating_sub(t) < self.grace_ms));
        let dropped = before != self.players.len();
        let enough = self.present().count() >= 2;
        match &self.phase {
            Phase::Waiting if enough => self.start(now),
            Phase::Waiting => dropped,
            Phase::Drawing { drawer, word, deadline, .. } => {
                let word = *word;
                let gone = !self.players.iter().any(|p| p.client == *drawer);
                if now >= *deadline || gone || !enough {
                    self.phase = Phase::Reveal { word, until: now + REVEAL_MS };
                    return true;
                }
                dropped
            }
            Phase::Reveal { until, .. } if now >= *until => {
                if enough {
                    self.start(now)
                } else {
                    self.phase = Phase::Waiting;
                    true
                }
            }
            Phase::Reveal { .. } => dropped,
        }
    }

    /// The next present player after the last drawer, in join order, draws a new word.
    fn start(&mut self, now: u64) -> bool {
        let present: Vec<&Player> = self.present().collect();
        let after = self.last_drawer.as_ref().and_then(|d| self.players.iter().position(|p| &p.client == d));
        let next = match after {
            Some(i) => self.players[i + 1..]
                .iter()
                .chain(&self.players[..=i])
                .find(|p| p.away_since.is_none())
                .map(|p| p.client.clone()),
            None => present.first().map(|p| p.client.clone()),
        };
        let Some(drawer) = next else { return false };
        self.round += 1;
        for p in &mut self.players {
            p.guessed = false;
        }
        let word = (self.pick)(self.round);
        self.last_drawer = Some(drawer.clone());
        self.phase = Phase::Drawing { drawer, word, started: now, deadline: now + self.round_ms };
        true
    }

    /// Whether nobody has been here for a while: the referee may stop.
    pub fn is_empty(&self) -> bool {
        self.players.is_empty()
    }

    /// The public state (never the word while it is drawn). `deadline` is in ms from now.
    pub fn public(&self, now: u64) -> Value {
        let players: Vec<Value> = self
            .players
            .iter()
            .map(|p| {
                json!({"client": p.client, "name": p.name, "score": p.score, "transport": p.transport,
                       "away": p.away_since.is_some(), "guessed": p.guessed})
            })
            .collect();
        let mut state = json!({"type": "state", "round": self.round, "players": players});
        match &self.phase {
            Phase::Waiting => state["phase"] = "waiting".into(),
            Phase::Drawing { drawer, word, deadline, .. } => {
                state["phase"] = "drawing".into();
                state["drawer"] = drawer.as_str().into();
                state["hint"] = word.chars().map(|_| "_").collect::<Vec<_>>().join(" ").into();
                state["msLeft"] = deadline.saturating_sub(now).into();
            }
            Phase::Reveal { word, until } => {
                state["phase"] = "reveal".into();
                state["word"] = (*word).into();
                state["msLeft"] = until.saturating_sub(now).into();
            }
        }
        state
    }
}

/// Lower case, single spaces: how guesses are compared.
fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// At most `max` characters, control characters dropped.
fn clip(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

#[cfg(test)]
#[path = "round_tests.rs"]
mod tests;
