//! The CI pass: every target's corpus and a fixed-seed batch of its mutations, deterministic
//! (an input count, not a time), so a decoder that starts panicking fails `cargo test`.

use switchboard_fuzz::{Budget, Target, all_targets, fuzz, quiet_panics};

/// Inputs per target: a few seconds in all in a debug build.
const INPUTS: u64 = 4_000;

#[test]
fn every_target_survives_a_fixed_seed_batch() {
    quiet_panics();
    let dir = std::env::temp_dir().join(format!("switchboard-fuzz-ci-{}", std::process::id()));
    let mut failures = Vec::new();
    for mut t in all_targets() {
        let r = fuzz(t.as_mut(), 20_261_205, Budget::Inputs(INPUTS), &dir);
        assert_eq!(r.inputs, INPUTS, "{} stopped early", r.target);
        failures.extend(r.crashes);
    }
    assert!(failures.is_empty(), "panicking inputs saved: {failures:?}");
}

/// The harness itself: a target that panics on one byte is caught, reported and saved, and
/// the run goes on.
#[test]
fn a_panic_is_caught_and_its_input_saved() {
    struct Bomb;
    impl Target for Bomb {
        fn name(&self) -> &'static str {
            "bomb"
        }
        fn corpus(&self) -> Vec<Vec<u8>> {
            vec![b"abc".to_vec()]
        }
        fn dictionary(&self) -> &'static [&'static [u8]] {
            &[b"!"]
        }
        fn run(&mut self, input: &[u8]) {
            assert!(!input.contains(&b'!'), "boom");
        }
    }
    quiet_panics();
    let dir = std::env::temp_dir().join(format!("switchboard-fuzz-bomb-{}", std::process::id()));
    let r = fuzz(&mut Bomb, 7, Budget::Inputs(1_000_000), &dir);
    assert!(!r.crashes.is_empty(), "the mutator never inserted the dictionary token");
    let saved = std::fs::read_to_string(&r.crashes[0]).unwrap();
    let input = switchboard_fuzz::unhex(&saved).unwrap();
    assert!(input.contains(&b'!'));
    let _ = std::fs::remove_dir_all(dir);
}

/// The corpus reaches deep states, or the fuzzing would stay at the front door: signed TURN
/// requests get an allocation, signed tokens authenticate, the frames and STOMP frames parse.
#[test]
fn the_corpus_is_valid() {
    use switchboard_fuzz::targets::{jwt::Jwt, turn::Turn};
    use switchboard_turn::codec::{self, Class, attr::method};

    let turn = Turn::new();
    let allocated = turn.corpus().iter().any(|input| {
        turn.responses(input).iter().any(|frame| {
            matches!(codec::decode(frame), Ok(codec::Frame::Stun(m))
                if m.method == method::ALLOCATE && m.class == Class::Success)
        })
    });
    assert!(allocated, "no signed Allocate in the TURN corpus succeeded");

    let jwt = Jwt::new();
    let corpus = jwt.corpus();
    assert_eq!(jwt.check(&corpus[0]).map(|i| i.user), Ok("alice".to_owned()), "structured token");
    assert_eq!(jwt.check(&corpus[1]).map(|i| i.user), Ok("alice".to_owned()), "raw token");
    assert!(jwt.check(&corpus[5]).is_err(), "an expired token is refused");

    for input in switchboard_fuzz::targets::protocol::Frames.corpus() {
        let text = String::from_utf8_lossy(&input);
        if !text.contains('\n') {
            assert!(switchboard_protocol::frame::parse_client_frame(&text).is_ok(), "{text}");
        }
    }
}
