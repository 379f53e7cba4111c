//! `switchboard-fuzz --target NAME|all --seconds N --seed S [--crashes DIR]`, or
//! `switchboard-fuzz --target NAME --replay FILE` to run one saved input (hex or raw).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use switchboard_fuzz::{Budget, all_targets, fuzz, quiet_panics, run_one, unhex};

const USAGE: &str = "usage: switchboard-fuzz [--target NAME|all] [--seconds N | --inputs N] [--seed S] \
                     [--crashes DIR] [--replay FILE] [--list]";

fn main() -> ExitCode {
    let mut target = "all".to_owned();
    let mut budget = Budget::Time(Duration::from_secs(10));
    let mut seed = 1u64;
    let mut crashes = PathBuf::from("fuzz-crashes");
    let mut replay = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match flag.as_str() {
            "--target" => target = value(),
            "--seconds" => budget = Budget::Time(Duration::from_secs_f64(value().parse().unwrap_or(10.0))),
            "--inputs" => budget = Budget::Inputs(value().parse().unwrap_or(10_000)),
            "--seed" => seed = value().parse().unwrap_or(1),
            "--crashes" => crashes = PathBuf::from(value()),
            "--replay" => replay = Some(PathBuf::from(value())),
            "--list" => {
                for t in all_targets() {
                    println!("{}", t.name());
                }
                return ExitCode::SUCCESS;
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let mut targets: Vec<_> =
        all_targets().into_iter().filter(|t| target == "all" || t.name() == target).collect();
    if targets.is_empty() {
        eprintln!("no target {target:?}; --list shows them");
        return ExitCode::from(2);
    }
    if let Some(path) = replay {
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("cannot read {}", path.display());
            return ExitCode::from(2);
        };
        let input = std::str::from_utf8(&bytes).ok().and_then(unhex).unwrap_or(bytes);
        // Keep the default hook: a replay should print the panic and its backtrace.
        return match run_one(targets[0].as_mut(), &input) {
            Some(_) => ExitCode::FAILURE,
            None => {
                println!("{}: no panic", targets[0].name());
                ExitCode::SUCCESS
            }
        };
    }
    quiet_panics();
    let mut failed = false;
    println!("{:<8} {:>12} {:>8} {:>12} {:>7}", "target", "inputs", "secs", "inputs/s", "crashes");
    for t in &mut targets {
        let r = fuzz(t.as_mut(), seed, budget, &crashes);
        println!(
            "{:<8} {:>12} {:>8.1} {:>12.0} {:>7}",
            r.target,
            r.inputs,
            r.elapsed.as_secs_f64(),
            r.rate(),
            r.crashes.len()
        );
        failed |= !r.crashes.is_empty();
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
