//! Fuzzing on the stable toolchain (cargo-fuzz needs nightly): a seeded generator mutates a
//! corpus of valid inputs (byte flips, truncation, splicing, repetition, length-field and number
//! tweaks, dictionary tokens) and drives every decoder the server exposes to the network. A
//! panic is caught, its input saved (hex) with the seed, and the run goes on.
//!
//! No coverage feedback: the corpus is written by hand to reach deep states (signed tokens,
//! authenticated TURN requests, a connected session) and mutations stack on each other through a
//! small pool of recent inputs.
//!
//! - [`rng`]: a SplitMix64 generator, so a seed replays the same inputs on every machine.
//! - [`mutate`]: the mutator.
//! - [`targets`]: one module per decoder family, each a [`Target`].
//! - [`fuzz`]: the loop, with its budget and its report.

pub mod mutate;
pub mod rng;
pub mod targets;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rng::Rng;

/// One decoder (or a few that share an input shape) under test.
pub trait Target {
    /// The name `--target` takes.
    fn name(&self) -> &'static str;
    /// Valid inputs the mutator starts from.
    fn corpus(&self) -> Vec<Vec<u8>>;
    /// Tokens worth inserting (keywords, delimiters, escapes).
    fn dictionary(&self) -> &'static [&'static [u8]];
    /// Feeds one input. Must not panic: a panic is the bug this harness looks for. Targets may
    /// assert their own invariants (a round trip that must hold) with `assert!`.
    fn run(&mut self, input: &[u8]);
}

/// Every target, in a fixed order.
pub fn all_targets() -> Vec<Box<dyn Target>> {
    vec![
        Box::new(targets::protocol::Frames),
        Box::new(targets::protocol::Cursors),
        Box::new(targets::protocol::SockJs),
        Box::new(targets::stomp::Stomp),
        Box::new(targets::turn::Turn::new()),
        Box::new(targets::session::Sessions::new()),
        Box::new(targets::oneway::OneWay),
        Box::new(targets::jwt::Jwt::new()),
    ]
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// Wall-clock time.
    Time(Duration),
    /// A fixed number of inputs (deterministic: the CI pass).
    Inputs(u64),
}

/// What one target's run did.
#[derive(Debug)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// Inputs run.
    pub inputs: u64,
    /// Wall-clock time spent.
    pub elapsed: Duration,
    /// Files holding the inputs that panicked.
    pub crashes: Vec<PathBuf>,
}

impl Report {
    /// Inputs per second.
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the panic hook with one that records the message instead of printing a backtrace per
/// crash (the harness prints one line and saves the input).
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
    }));
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Reverse of [`hex`]; whitespace is ignored.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

/// Runs one input under `catch_unwind`; `Some(message)` if it panicked.
pub fn run_one(target: &mut dyn Target, input: &[u8]) -> Option<String> {
    match catch_unwind(AssertUnwindSafe(|| target.run(input))) {
        Ok(()) => None,
        Err(_) => Some(LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| "panic".into())),
    }
}

/// Inputs kept for further mutation (mutations stack without coverage feedback).
const POOL: usize = 256;
/// Longest input generated.
const MAX_INPUT: usize = 64 * 1024;

/// Fuzzes `target` from `seed` within `budget`; panicking inputs are saved under `crash_dir`.
pub fn fuzz(target: &mut dyn Target, seed: u64, budget: Budget, crash_dir: &Path) -> Report {
    let name = target.name();
    let corpus = target.corpus();
    let dict = target.dictionary();
    // One stream per target, so `--target all` and `--target NAME` replay the same inputs.
    let mut rng = Rng::new(seed ^ rng::hash(name.as_bytes()));
    let mut pool: Vec<Vec<u8>> = Vec::with_capacity(POOL);
    let mut crashes = Vec::new();
    let started = Instant::now();
    let mut inputs = 0u64;
    // The corpus itself runs first: a valid input that panics is the plainest bug.
    for input in &corpus {
        inputs += 1;
        if let Some(msg) = run_one(target, input) {
            crashes.push(save_crash(crash_dir, name, seed, inputs, input, &msg));
        }
    }
    loop {
        match budget {
            Budget::Inputs(n) if inputs >= n => break,
            // Reading the clock every input would cost more than the cheapest targets.
            Budget::Time(d) if inputs.is_multiple_of(256) && started.elapsed() >= d => break,
            _ => {}
        }
        let base = if !pool.is_empty() && rng.chance(1, 3) {
            &pool[rng.below(pool.len())]
        } else if corpus.is_empty() || rng.chance(1, 50) {
            &Vec::new()
        } else {
            &corpus[rng.below(corpus.len())]
        };
        let other = if corpus.is_empty() { &Vec::new() } else { &corpus[rng.below(corpus.len())] };
        let mut input = base.clone();
        let most = if rng.chance(1, 4) { 16 } else { 4 };
        let rounds = 1 + rng.below(most);
        for _ in 0..rounds {
            mutate::mutate(&mut rng, &mut input, other, dict, MAX_INPUT);
        }
        inputs += 1;
        if let Some(msg) = run_one(target, &input) {
            crashes.push(save_crash(crash_dir, name, seed, inputs, &input, &msg));
            // One target panicking in a loop would only fill the disk.
            if crashes.len() >= 20 {
                break;
            }
        }
        if rng.chance(1, 16) {
            if pool.len() < POOL {
                pool.push(input);
            } else {
                let i = rng.below(POOL);
                pool[i] = input;
            }
        }
    }
    Report { target: name, inputs, elapsed: started.elapsed(), crashes }
}

fn save_crash(dir: &Path, target: &str, seed: u64, n: u64, input: &[u8], msg: &str) -> PathBuf {
    let path = dir.join(format!("{target}-seed{seed}-input{n}.hex"));
    let _ = std::fs::create_dir_all(dir);
    if let Err(e) = std::fs::write(&path, hex(input) + "\n") {
        eprintln!("cannot save {}: {e}", path.display());
    }
    eprintln!(
        "CRASH target={target} seed={seed} input#{n} len={} saved={}\n  panic: {msg}",
        input.len(),
        path.display()
    );
    path
}
