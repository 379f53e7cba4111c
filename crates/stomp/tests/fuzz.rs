//! Fuzzing on the stable toolchain (`cargo fuzz` needs nightly): seeded random frames, random
//! byte soup and mutated valid streams, fed whole and in random chunks.
//!
//! Every input must decode without a panic, the same way whole (with `decode`) as in chunks
//! (with a `Decoder` resuming its check: on a prefix the check answers "incomplete" or the
//! final answer, never something else), within the limits, and
//! every accepted frame must re-encode and decode to itself.
//!
//! `cargo test -p switchboard-stomp --test fuzz` runs a fixed seed in a few seconds. The long
//! run, with a fresh seed printed at the start:
//!
//! ```text
//! STOMP_FUZZ_SECONDS=600 cargo test --release -p switchboard-stomp --test fuzz -- --ignored --nocapture
//! ```
//!
//! A failure prints its seed; `STOMP_FUZZ_SEED=<seed>` replays it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use switchboard_stomp::{
    Command, DecodeError, Decoded, Decoder, Frame, Limits, Version, decode, encode_to_bytes,
};

/// xorshift64*: small, fast, and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Ordinary characters (escape letters among them), and those that matter to STOMP.
const PLAIN: &[char] = &['a', 'b', 'n', 'r', 'c', '1', '-', ' ', 'é', '/'];
const SPECIAL: &[char] = &[':', ':', '\\', '\\', '\n', '\r'];
/// Fragments for byte soup and insertions.
const PIECES: &[&[u8]] = &[
    b"SEND",
    b"MESSAGE",
    b"CONNECT",
    b"CONNECTED",
    b"SUBSCRIBE",
    b"ERROR",
    b"ACK",
    b"\n",
    b"\r\n",
    b"\r",
    b":",
    b"\\",
    b"\\n",
    b"\\c",
    b"\\r",
    b"\\\\",
    b"\\t",
    b"\0",
    b"content-length:",
    b"content-length:3\n",
    b"0",
    b"7",
    b"a",
    b"\xff",
    b"\xc3\xa9",
    b"destination:/topic/a\n",
    b"\n\n",
];

const UNLIMITED: Limits = Limits {
    max_frame_size: usize::MAX,
    max_headers: usize::MAX,
    max_header_line: usize::MAX,
    max_body: usize::MAX,
};

fn text(rng: &mut Rng, min: usize, max: usize) -> String {
    let char = |rng: &mut Rng| match rng.below(100) {
        0 => '\0',
        1..15 => *rng.pick(SPECIAL),
        _ => *rng.pick(PLAIN),
    };
    (0..min + rng.below(max - min + 1)).map(|_| char(rng)).collect()
}

fn random_frame(rng: &mut Rng) -> Frame {
    let mut frame = Frame::new(*rng.pick(&Command::ALL));
    for _ in 0..rng.below(6) {
        let name = if rng.one_in(20) { "content-length".to_owned() } else { text(rng, 1, 6) };
        frame = frame.header(name, text(rng, 0, 8));
    }
    if frame.command.allows_body() {
        let body: Vec<u8> =
            (0..rng.below(40)).map(|_| if rng.one_in(4) { 0 } else { rng.next() as u8 }).collect();
        frame = frame.body(body);
    }
    frame
}

fn random_version(rng: &mut Rng) -> Version {
    *rng.pick(&Version::ALL)
}

fn random_limits(rng: &mut Rng) -> Limits {
    if rng.one_in(2) {
        return Limits::default();
    }
    Limits {
        max_frame_size: rng.below(200),
        max_headers: rng.below(8),
        max_header_line: rng.below(40),
        max_body: rng.below(64),
    }
}

/// Rewrites the header part of an encoded frame to end its lines in CRLF.
fn with_crlf(frame: &[u8]) -> Vec<u8> {
    let Some(end) = frame.windows(2).position(|w| w == b"\n\n") else { return frame.to_vec() };
    let mut out: Vec<u8> = frame[..end + 2]
        .iter()
        .flat_map(|&b| if b == b'\n' { vec![b'\r', b'\n'] } else { vec![b] })
        .collect();
    out.extend_from_slice(&frame[end + 2..]);
    out
}

/// A valid stream: a few encodable frames with heart-beats around them.
fn valid_stream(rng: &mut Rng, version: Version) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(3) {
        if rng.one_in(3) {
            out.extend_from_slice(if rng.one_in(2) { b"\n" } else { b"\r\n" });
        }
        if let Ok(bytes) = encode_to_bytes(&random_frame(rng), version) {
            out.extend(if rng.one_in(3) { with_crlf(&bytes) } else { bytes.to_vec() });
        }
    }
    out
}

fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(7) {
            0 if at < bytes.len() => bytes[at] = rng.next() as u8,
            1 if at < bytes.len() => bytes[at] = *rng.pick(b"\n\r\0:\\c"),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3 => {
                let end = (at + rng.below(8)).min(bytes.len());
                bytes.drain(at..end);
            }
            4 => {
                let end = (at + rng.below(16)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.below(bytes.len() + 1);
                bytes.splice(to..to, copy);
            }
            5 => bytes.truncate(at),
            _ => {
                let piece = rng.pick(PIECES);
                bytes.splice(at..at, piece.iter().copied());
            }
        }
    }
}

fn soup(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(12)).flat_map(|_| rng.pick(PIECES).iter().copied()).collect()
}

/// What decoding a stream gave: each item with the bytes it took, and how it stopped.
#[derive(Debug, PartialEq)]
struct Outcome {
    items: Vec<(Decoded, usize)>,
    end: Result<(), DecodeError>,
    /// Bytes not consumed, buffered or not.
    left: usize,
}

/// Decodes `input` fed whole with [`decode`], or in random chunks with a [`Decoder`] (which
/// resumes its check where the previous call stopped) when `chunks` is given.
fn run(input: &[u8], version: Version, limits: &Limits, mut chunks: Option<&mut Rng>) -> Outcome {
    let mut decoder = Decoder::new(version, *limits);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut items = Vec::new();
    loop {
        if fed < input.len() {
            let take = chunks.as_mut().map_or(input.len(), |rng| 1 + rng.below(8)).min(input.len() - fed);
            buf.extend_from_slice(&input[fed..fed + take]);
            fed += take;
        }
        loop {
            let before = buf.len();
            let decoded = match chunks {
                Some(_) => decoder.decode(&mut buf),
                None => decode(&mut buf, version, limits),
            };
            match decoded {
                Ok(Some(item)) => {
                    assert!(buf.len() < before, "an item consumes bytes");
                    items.push((item, before - buf.len()));
                }
                Ok(None) => break,
                Err(error) => {
                    assert_eq!(buf.len(), before, "an error consumes nothing");
                    return Outcome { items, end: Err(error), left: buf.len() + input.len() - fed };
                }
            }
        }
        if fed == input.len() {
            return Outcome { items, end: Ok(()), left: buf.len() };
        }
    }
}

/// Decodes `bytes`, which must hold exactly one frame.
fn decode_one(bytes: &[u8], version: Version) -> Frame {
    let outcome = run(bytes, version, &UNLIMITED, None);
    match (&outcome.items[..], &outcome.end, outcome.left) {
        ([(Decoded::Frame(frame), _)], Ok(()), 0) => frame.clone(),
        _ => panic!("not one frame: {outcome:?}"),
    }
}

/// Every property, for one input.
fn check_input(rng: &mut Rng, input: &[u8], version: Version, limits: &Limits) {
    let whole = run(input, version, limits, None);
    let chunked = run(input, version, limits, Some(rng));
    assert_eq!(whole, chunked, "whole and chunked decoding differ");
    for (item, taken) in &whole.items {
        let Decoded::Frame(frame) = item else { continue };
        assert!(*taken <= limits.max_frame_size && frame.body.len() <= limits.max_body);
        assert!(frame.headers.len() <= limits.max_headers);
        // 1.1 reads a \r escape (as stompjs sends it) that it cannot write back: 1.2 can.
        let cr = frame.headers.iter().any(|(n, v)| n.contains('\r') || v.contains('\r'));
        let version = if cr && version == Version::V1_1 { Version::V1_2 } else { version };
        let bytes = encode_to_bytes(frame, version).expect("an accepted frame re-encodes");
        assert_eq!(&decode_one(&bytes, version), frame, "re-encoded {bytes:?}");
    }
}

/// Counts of what one run did.
#[derive(Default, Debug)]
struct Stats {
    iterations: u64,
    inputs: u64,
    round_trips: u64,
    frames_accepted: u64,
}

fn iteration(rng: &mut Rng, stats: &mut Stats) {
    let version = random_version(rng);
    // A random frame round-trips when it can be encoded at all.
    let frame = random_frame(rng);
    if let Ok(bytes) = encode_to_bytes(&frame, version) {
        let mut expected = frame.clone();
        expected.headers.retain(|(name, _)| name != "content-length");
        let crlf = with_crlf(&bytes);
        assert_eq!(decode_one(&bytes, version), expected, "{bytes:?}");
        assert_eq!(decode_one(&crlf, version), expected, "{crlf:?}");
        stats.round_trips += 1;
        stats.inputs += 2;
    }
    let limits = random_limits(rng);
    let mut stream = valid_stream(rng, version);
    check_input(rng, &stream, version, &limits);
    mutate(rng, &mut stream);
    check_input(rng, &stream, version, &limits);
    let soup = soup(rng);
    check_input(rng, &soup, version, &limits);
    stats.inputs += 3;
    stats.frames_accepted += run(&stream, version, &limits, None).items.len() as u64;
}

/// Runs iterations from `seed` until `done`, reporting the seed if one panics.
fn fuzz(seed: u64, mut done: impl FnMut(u64) -> bool) -> Stats {
    let mut rng = Rng::new(seed);
    let mut stats = Stats::default();
    let mut n = 0;
    while !done(n) {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| iteration(&mut rng, &mut stats)));
        if let Err(panic) = result {
            eprintln!("fuzz failure: STOMP_FUZZ_SEED={seed}, iteration {n}");
            std::panic::resume_unwind(panic);
        }
        n += 1;
        stats.iterations = n;
    }
    stats
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn fuzz_fixed_seed() {
    let iterations = env_u64("STOMP_FUZZ_ITERATIONS").unwrap_or(100_000);
    let seed = env_u64("STOMP_FUZZ_SEED").unwrap_or(0x5710_4D0C);
    let started = Instant::now();
    let stats = fuzz(seed, |n| n >= iterations);
    eprintln!("{stats:?} in {:?}", started.elapsed());
    // The generators must produce more than noise: most random frames encode, and mutated
    // streams still hold frames the decoder accepts.
    assert!(stats.round_trips > iterations / 2, "{stats:?}");
    assert!(stats.frames_accepted > iterations / 2, "{stats:?}");
}

#[test]
#[ignore = "long run: STOMP_FUZZ_SECONDS (default 600) of fresh random input"]
fn fuzz_for_minutes() {
    let seconds = env_u64("STOMP_FUZZ_SECONDS").unwrap_or(600);
    let seed = env_u64("STOMP_FUZZ_SEED")
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64));
    eprintln!("STOMP_FUZZ_SEED={seed}");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let stats = fuzz(seed, |n| n % 1024 == 0 && Instant::now() >= deadline);
    eprintln!("{stats:?} in {seconds} s");
}

#[test]
fn bodies_with_nul_survive_the_fuzz_helpers() {
    // The helpers themselves: CRLF rewriting leaves the body alone.
    let frame = Frame::new(Command::Send).header("a", "b").body(Bytes::from_static(b"x\n\ny\0"));
    let bytes = encode_to_bytes(&frame, Version::V1_2).expect("encode");
    assert_eq!(with_crlf(&bytes), b"SEND\r\na:b\r\ncontent-length:5\r\n\r\nx\n\ny\0\0");
    assert_eq!(decode_one(&with_crlf(&bytes), Version::V1_2), frame);
}
