//! `switchboard bench` as a person runs it: against the in-process server it starts, over every
//! transport of the Rust client, a table with a line per transport; `--json`; fan-out mode.

use std::process::Command;

fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .env_remove("SWITCHBOARD_URL")
        .env_remove("SWITCHBOARD_API_KEY")
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn the_table_has_every_transport_with_every_message() {
    let (ok, stdout, stderr) = bench(&["--messages", "30", "--rate", "60", "--poll-interval-ms", "200"]);
    assert!(ok, "bench failed: {stderr}");
    assert!(stdout.contains("in-process server http://127.0.0.1:"), "{stdout}");
    for transport in ["ws", "sse", "stream", "long-poll", "poll"] {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(transport))
            .unwrap_or_else(|| panic!("no line for {transport}:\n{stdout}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[1], "30", "{transport} received every message: {line}");
        let p50: f64 = cells[2].parse().expect("a p50");
        assert!(p50 > 0.0, "{transport}: {line}");
        assert_eq!((cells[5], cells[6]), ("0", "0"), "{transport}: nothing lost or duplicated: {line}");
    }
    // The progress bar is for terminals only: a pipe gets nothing but the table.
    assert!(!stderr.contains('█'), "{stderr}");
}

#[test]
fn json_and_fanout() {
    let (ok, stdout, stderr) =
        bench(&["--transports", "ws", "--fanout", "20", "--rate", "20", "--duration", "2", "--json"]);
    assert!(ok, "bench failed: {stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON document");
    let r = &v["results"][0];
    assert_eq!(r["transport"], "ws ×20");
    assert_eq!(
        (r["expected"].as_u64(), r["received"].as_u64(), r["lost"].as_u64()),
        (Some(800), Some(800), Some(0))
    );
    assert!(r["p99_ms"].as_f64().is_some_and(|p| p > 0.0), "{r}");
}

#[test]
fn a_bad_transport_is_a_clear_error() {
    let (ok, _, stderr) = bench(&["--transports", "carrier-pigeon"]);
    assert!(!ok);
    assert!(stderr.contains("unknown transport \"carrier-pigeon\""), "{stderr}");
}
