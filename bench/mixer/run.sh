#!/usr/bin/env bash
# Audio mixer benchmark: our server's audio MCU (room participants in mixed mode, mix-minus)
# against Janus 1.1 (AudioBridge plugin), on loopback, N participants of whom SPEAKERS speak,
# from the same load generator (loadgen/), one server at a time, interleaved per N (ours, janus).
# See README.md.
#
# Prints, per N: the server's CPU milliseconds per participant per second (utime + stime from
# /proc/PID/stat over the window) for both and the ratio, and the latency from a speaker's tone
# onset to its decoded onset at the listeners (p50/p90), which includes what each server adds.
# Raw JSON: bench/results/mixer-<timestamp>/.
#
# Knobs (environment): NS ("10 30"), SPEAKERS (3), DURATION (20 s measured), WARMUP (5 s),
# ROUNDS (1), ONLY (ours | janus), MIX_SERVER_BIN (another build of ours; skips building it).
set -euo pipefail

NS=${NS:-"10 30"}
SPEAKERS=${SPEAKERS:-3}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
ROUNDS=${ROUNDS:-1}
ONLY=${ONLY:-}
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=mixer LOADGEN_NAME=mixer-loadgen JANUS_PLUGIN=audiobridge SERVER_BIN=${MIX_SERVER_BIN:-}
OURS_EXTRA_TOML="max_mixed_participants = 1000"
# shellcheck source=../lib/rtc.sh
. "$HERE/../lib/rtc.sh"
echo "load: N participants in one room, $SPEAKERS speaking (a tone half of every second); ${WARMUP} s warm-up, ${DURATION} s measured; N in: $NS; $ROUNDS round(s)" >&2
for r in $(seq "$ROUNDS"); do
  for n in $NS; do
    for who in $WHO; do
      "start_$who"
      echo "round $r, N=$n, $who (pid $SERVER_PID, $URL)..." >&2
      if ! "$LOADGEN" --target "$who" --url "$URL" --bind "$BIND" --n "$n" --speakers "$SPEAKERS" \
          --warmup "$WARMUP" --duration "$DURATION" --server-pid "$SERVER_PID" --hz "$HZ" \
          >"$OUT/$who-n$n-r$r.json" 2>"$OUT/$who-n$n-r$r.err"; then
        echo "  load generator failed:" >&2; cat "$OUT/$who-n$n-r$r.err" >&2
      fi
      cp "$WORK/$who.log" "$OUT/$who-n$n-r$r.log"
      stop_server
    done
  done
done

python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import glob, json, os, statistics, sys
out = sys.argv[1]
runs = {}
for path in glob.glob(os.path.join(out, "*.json")):
    try:
        d = json.load(open(path))
    except ValueError:
        continue
    runs.setdefault((d["n"], d["target"]), []).append(d)
def med(n, who, f):
    vals = [f(d) for d in runs.get((n, who), []) if f(d) is not None]
    return statistics.median(vals) if vals else None
def fmt(v, spec):
    return format(v, spec) if v is not None else "-"
print(f"{'N':>4} {'who':>6} {'CPU ms/part/s':>14} {'CPU %':>6} {'p50 ms':>7} {'p90 ms':>7} {'onsets':>9} {'RSS MiB':>8} {'lg-cpu':>7}")
for n in sorted({k[0] for k in runs}):
    for who in ("ours", "janus"):
        if (n, who) not in runs:
            continue
        g = lambda f: med(n, who, f)
        rss = g(lambda d: d["server_rss_kib"])
        cpu = g(lambda d: d["server_cpu_s"] / d["window_s"] * 100 if d["server_cpu_s"] is not None else None)
        onsets = f"{fmt(g(lambda d: d['onsets']), '.0f')}/{fmt(g(lambda d: d['onsets_expected']), '.0f')}"
        print(f"{n:>4} {who:>6} {fmt(g(lambda d: d['server_cpu_ms_per_participant_s']), '14.3f')} {fmt(cpu, '6.1f')}"
              f" {fmt(g(lambda d: d['latency_ms']['p50']), '7.1f')} {fmt(g(lambda d: d['latency_ms']['p90']), '7.1f')}"
              f" {onsets:>9} {fmt(rss / 1024 if rss else None, '8.1f')} {fmt(g(lambda d: d['loadgen_cpu_s']), '7.2f')}")
    o = med(n, "ours", lambda d: d["server_cpu_ms_per_participant_s"])
    j = med(n, "janus", lambda d: d["server_cpu_ms_per_participant_s"])
    if o and j:
        print(f"{n:>4}  CPU per participant ours/janus {o / j:.2f}")
print(f"(CPU ms/part/s: server CPU per participant per second of the window; p50/p90: a tone onset sent to "
      f"its decoded arrival at each listener, both servers' jitter buffers and mixing included; onsets: "
      f"detected/expected; medians over rounds; raw JSON in {out})")
PY
