#!/usr/bin/env bash
# SFU forwarding benchmark: our server (WHIP/WHEP, str0m) against Janus 1.1 (VideoRoom plugin),
# on loopback, one publisher and N subscribers from the same load generator (loadgen/), one
# server at a time, interleaved per N (ours, janus). See README.md.
#
# Prints, per N: forwarded megabits and packets per second, server CPU milliseconds per forwarded
# megabit (utime + stime from /proc/PID/stat over the measured window) for both and the ratio,
# latency p50/p99, loss and RSS. Raw JSON: bench/results/sfu-<timestamp>/.
#
# Knobs (environment): NS ("10 25 50"), DURATION (20 s measured), WARMUP (5 s), FPS (30),
# FRAME_BYTES (12000: about 10 RTP packets, 2.9 Mbit/s per subscriber), ROUNDS (1),
# ONLY (ours | janus), SFU_SERVER_BIN (another build of ours; skips building it).
set -euo pipefail

NS=${NS:-"10 25 50"}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
FPS=${FPS:-30}
FRAME_BYTES=${FRAME_BYTES:-12000}
ROUNDS=${ROUNDS:-1}
ONLY=${ONLY:-}
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=sfu LOADGEN_NAME=sfu-loadgen JANUS_PLUGIN=videoroom SERVER_BIN=${SFU_SERVER_BIN:-} OURS_EXTRA_TOML=
# shellcheck source=../lib/rtc.sh
. "$HERE/../lib/rtc.sh"
echo "load: 1 publisher, N subscribers, VP8 ${FRAME_BYTES} B keyframes at ${FPS} fps; ${WARMUP} s warm-up, ${DURATION} s measured; N in: $NS; $ROUNDS round(s)" >&2
for r in $(seq "$ROUNDS"); do
  for n in $NS; do
    for who in $WHO; do
      "start_$who"
      echo "round $r, N=$n, $who (pid $SERVER_PID, $URL)..." >&2
      if ! "$LOADGEN" --target "$who" --url "$URL" --bind "$BIND" --subs "$n" --fps "$FPS" \
          --frame-bytes "$FRAME_BYTES" --warmup "$WARMUP" --duration "$DURATION" \
          --server-pid "$SERVER_PID" --hz "$HZ" >"$OUT/$who-n$n-r$r.json" 2>"$OUT/$who-n$n-r$r.err"; then
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
    runs.setdefault((d["subs"], d["target"]), []).append(d)
def med(n, who, f):
    vals = [f(d) for d in runs.get((n, who), []) if f(d) is not None]
    return statistics.median(vals) if vals else None
def fmt(v, spec):
    return format(v, spec) if v is not None else "-"
cpu_ms = lambda d: d["server_cpu_s_per_mbit"] * 1e3 if d["server_cpu_s_per_mbit"] is not None else None
print(f"{'N':>4} {'who':>6} {'Mbit/s':>8} {'pkt/s':>8} {'CPU ms/Mbit':>12} {'p50 ms':>7} {'p99 ms':>7} {'loss':>7} {'RSS MiB':>8} {'lg-cpu':>7}")
for n in sorted({k[0] for k in runs}):
    for who in ("ours", "janus"):
        if (n, who) not in runs:
            continue
        g = lambda f: med(n, who, f)
        rss = g(lambda d: d["server_rss_kib"])
        print(f"{n:>4} {who:>6} {fmt(g(lambda d: d['media_mbit_per_s']), '8.1f')} {fmt(g(lambda d: d['packets_per_s']), '8.0f')}"
              f" {fmt(g(cpu_ms), '12.3f')} {fmt(g(lambda d: d['latency_ms']['p50']), '7.2f')}"
              f" {fmt(g(lambda d: d['latency_ms']['p99']), '7.2f')} {fmt(g(lambda d: d['loss']), '7.4f')}"
              f" {fmt(rss / 1024 if rss else None, '8.1f')} {fmt(g(lambda d: d['loadgen_cpu_s']), '7.2f')}")
    o, j = med(n, "ours", cpu_ms), med(n, "janus", cpu_ms)
    if o and j:
        print(f"{n:>4}  CPU per forwarded Mbit ours/janus {o / j:.2f}")
print(f"(Mbit/s: VP8 payload received by all subscribers; CPU ms/Mbit: server CPU over the window per forwarded "
      f"payload megabit; medians over rounds; raw JSON in {out})")
PY
