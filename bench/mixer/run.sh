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
ROOT=$(cd "$HERE/../.." && pwd)
HZ=$(getconf CLK_TCK)
OUT="$ROOT/bench/results/mixer-$(date +%Y%m%d-%H%M%S)"
LOADGEN="$HERE/loadgen/target/release/mixer-loadgen"

command -v python3 >/dev/null || { echo "missing python3" >&2; exit 1; }

# Janus from Debian, installed once; without it only ours is measured.
JANUS=1
[ "$ONLY" = ours ] && JANUS=0
if [ "$JANUS" = 1 ] && ! command -v janus >/dev/null; then
  echo "installing janus (apt)..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y janus >&2 || JANUS=0
  else sudo -n apt-get install -y janus >&2 || JANUS=0; fi
  [ "$JANUS" = 1 ] || echo "janus could not be installed: measuring ours only" >&2
fi
JANUS_LIB=$(dirname "$(find /usr/lib -name libjanus_audiobridge.so -path '*janus/plugins*' 2>/dev/null | head -1)")/..

if [ -n "${MIX_SERVER_BIN:-}" ]; then
  OURS_BIN=$MIX_SERVER_BIN
else
  echo "building the server (cargo build --release)..." >&2
  (cd "$ROOT" && nice cargo build --quiet --release --bin switchboard)
  OURS_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/switchboard"
fi
echo "building the load generator (release)..." >&2
(cd "$HERE/loadgen" && CARGO_TARGET_DIR="$HERE/loadgen/target" nice cargo build --quiet --release)

mkdir -p "$OUT"
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # $1=file $2=pattern: up to 10 s
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}

# Ours: no demo app, no TURN, one rooms namespace; media on the HTTP listener's IP (127.0.0.1).
start_ours() {
  cat >"$WORK/switchboard.toml" <<CONF
listen = "127.0.0.1:0"
demo = false
turn = false
log = "warn"
http_max_sockets_per_ip = 0
http_accept_rate_per_ip = 0
# Every peer comes from loopback: lift the per-client limits.
max_connections_per_ip = 0
max_connections_per_user = 0
rtc_offers_per_ip_per_minute = 0
max_mixed_participants = 1000
[namespaces.room]
rooms = true
CONF
  # Fresh files: the shell truncates them only once the background job has started, so the
  # previous run's lines could otherwise be read.
  rm -f "$WORK/ours.out" "$WORK/ours.log"
  "$OURS_BIN" serve --config "$WORK/switchboard.toml" >"$WORK/ours.out" 2>"$WORK/ours.log" &
  SERVER_PID=$!
  wait_for "$WORK/ours.out" "switchboard listening on"
  URL=$(sed -n 's/^switchboard listening on \(http:[^ ]*\).*/\1/p' "$WORK/ours.out")
  BIND=127.0.0.1
}

# Janus: a config dir holding only the HTTP transport and the AudioBridge plugin (symlinked into
# their own folders, so nothing else loads), half-trickle (its candidates in its SDP), no session
# timeout (so no keepalives are needed), log level warnings.
start_janus() {
  local dir="$WORK/janus" port
  port=$(free_port)
  rm -rf "$dir"; mkdir -p "$dir/plugins" "$dir/transports" "$dir/none"
  ln -s "$JANUS_LIB/plugins/libjanus_audiobridge.so" "$dir/plugins/"
  ln -s "$JANUS_LIB/transports/libjanus_http.so" "$dir/transports/"
  cat >"$dir/janus.jcfg" <<CONF
general: {
  configs_folder = "$dir"
  plugins_folder = "$dir/plugins"
  transports_folder = "$dir/transports"
  events_folder = "$dir/none"
  loggers_folder = "$dir/none"
  debug_level = 4
  session_timeout = 0
}
nat: {
  nice_debug = false
  full_trickle = false
}
CONF
  cat >"$dir/janus.transport.http.jcfg" <<CONF
general: {
  json = "compact"
  base_path = "/janus"
  http = true
  port = $port
  ip = "127.0.0.1"
  https = false
}
admin: {
  admin_http = false
}
CONF
  echo 'general: {}' >"$dir/janus.plugin.audiobridge.jcfg"
  rm -f "$WORK/janus.log"
  # Line-buffered, or its start-up lines may sit in the stdio buffer.
  stdbuf -oL janus -F "$dir" -C "$dir/janus.jcfg" -o >"$WORK/janus.log" 2>&1 &
  SERVER_PID=$!
  wait_for "$WORK/janus.log" "HTTP webserver started"
  URL="http://127.0.0.1:$port/janus"
  # libnice gathers no loopback candidates: Janus offers its first interface address, so the
  # load generator binds there (traffic between local addresses still goes through lo).
  BIND=$(sed -n 's/^Using \([0-9.]*\) as local IP.*/\1/p' "$WORK/janus.log" | head -1)
  [ -n "$BIND" ] || { echo "janus printed no local IP (no non-loopback IPv4 interface?)" >&2; exit 1; }
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

WHO="ours janus"
[ "$JANUS" = 1 ] || WHO=ours
[ "$ONLY" = janus ] && WHO=janus
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
