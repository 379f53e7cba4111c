use super::*;

const ROUND: u64 = 60_000;
const GRACE: u64 = 30_000;

fn game() -> Game {
    Game::new(ROUND, GRACE, |round| if round % 2 == 1 { "owl" } else { "kite" })
}

fn people(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(c, n)| ((*c).to_owned(), (*n).to_owned())).collect()
}

fn score(g: &Game, client: &str) -> u64 {
    g.players().iter().find(|p| p.client == client).map(|p| p.score).unwrap()
}

#[test]
fn a_round_starts_with_two_players_and_the_first_to_join_draws() {
    let mut g = game();
    g.sync(&people(&[("a", "Ada")]), 0);
    assert!(!g.tick(0), "one player waits");
    assert_eq!(g.phase(), &Phase::Waiting);
    g.sync(&people(&[("a", "Ada"), ("b", "Bob")]), 10);
    assert!(g.tick(10));
    assert_eq!(g.secret(), Some(("a", "owl")));
    let public = g.public(10).to_string();
    assert!(!public.contains("owl"), "the word is not public while drawn: {public}");
    assert!(public.contains("\"hint\":\"_ _ _\""), "{public}");
}

#[test]
fn a_correct_guess_scores_the_guesser_and_the_drawer_and_ends_the_round_when_all_guessed() {
    let mut g = game();
    g.sync(&people(&[("a", "Ada"), ("b", "Bob"), ("c", "Cy")]), 0);
    g.tick(0);
    assert_eq!(
        g.say("b", "cat", 1_000),
        Said::Chat { client: "b".into(), name: "Bob".into(), text: "cat".into() }
    );
    assert_eq!(g.say("a", "it's an OWL", 1_000), Said::Hidden, "the drawer cannot give it away");
    let Said::Correct { points, .. } = g.say("b", "  Owl ", 30_000) else { panic!("a correct guess") };
    assert_eq!(points, 20 + 40 + 20, "base, half the time left, first");
    assert_eq!(score(&g, "b"), points);
    assert_eq!(score(&g, "a"), 25);
    assert_eq!(g.say("b", "owl", 31_000), Said::Hidden, "once is enough, and no hints");
    assert!(matches!(g.phase(), Phase::Drawing { .. }), "Cy has not guessed yet");
    assert!(matches!(g.say("c", "owl", 60_000), Said::Correct { points: 20, .. }));
    assert_eq!(g.phase(), &Phase::Reveal { word: "owl", until: 60_000 + REVEAL_MS });
    assert!(g.public(60_000).to_string().contains("\"word\":\"owl\""));
    assert!(g.tick(60_000 + REVEAL_MS));
    assert_eq!(g.secret(), Some(("b", "kite")), "the pen passes in join order");
    assert_eq!(g.round(), 2);
}

#[test]
fn time_runs_out_and_the_word_is_revealed() {
    let mut g = game();
    g.sync(&people(&[("a", "Ada"), ("b", "Bob")]), 0);
    g.tick(0);
    assert!(!g.tick(ROUND - 1));
    assert!(g.tick(ROUND));
    assert!(matches!(g.phase(), Phase::Reveal { word: "owl", .. }));
}

#[test]
fn a_dropped_player_keeps_their_score_by_client_id_or_by_name_within_the_grace() {
    let mut g = game();
    g.sync(&people(&[("a", "Ada"), ("b", "Bob")]), 0);
    g.tick(0);
    g.say("b", "owl", 0);
    let bob = score(&g, "b");
    assert!(bob > 0);
    // Bob drops: the round ends (no one left to guess) but his place is kept.
    assert!(g.sync(&people(&[("a", "Ada")]), 1_000));
    assert!(g.public(1_000).to_string().contains("\"away\":true"));
    g.sync(&people(&[("a", "Ada"), ("b", "Bob")]), 2_000);
    assert_eq!(score(&g, "b"), bob, "same client id");
    // A reload: a new client id under the same name.
    g.sync(&people(&[("a", "Ada")]), 3_000);
    g.sync(&people(&[("a", "Ada"), ("b2", "Bob")]), 4_000);
    assert_eq!(g.players().len(), 2);
    assert_eq!(score(&g, "b2"), bob, "same name");
    // Past the grace, a player is gone for good.
    g.sync(&people(&[("a", "Ada")]), 5_000);
    g.tick(5_000 + GRACE);
    assert_eq!(g.players().len(), 1);
}

#[test]
fn the_drawer_leaving_for_good_ends_the_round_and_lone_players_wait() {
    let mut g = game();
    g.sync(&people(&[("a", "Ada"), ("b", "Bob")]), 0);
    g.tick(0);
    g.sync(&people(&[("b", "Bob")]), 1_000);
    assert!(g.tick(1_000), "fewer than two present: the round ends");
    assert!(matches!(g.phase(), Phase::Reveal { .. }));
    assert!(g.tick(1_000 + REVEAL_MS));
    assert_eq!(g.phase(), &Phase::Waiting);
}

#[test]
fn strangers_and_noise_are_ignored() {
    let mut g = game();
    g.sync(&people(&[("a", "Ada"), ("b", "Bob")]), 0);
    assert_eq!(g.say("zed", "hello", 0), Said::Hidden, "not a player");
    assert_eq!(g.say("a", "   ", 0), Said::Hidden);
    assert!(!g.hello("zed", "websocket"));
    assert!(g.hello("a", "webtransport-and-a-very-long-name"));
    assert_eq!(g.players()[0].transport.chars().count(), 16);
    let long = "x".repeat(1000);
    let Said::Chat { text, .. } = g.say("a", &long, 0) else { panic!() };
    assert_eq!(text.len(), MAX_TEXT);
}
