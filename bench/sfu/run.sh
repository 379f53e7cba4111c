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
ROOT=$(cd "$HERE/../.." && pwd)
HZ=$(getconf CLK_TCK)
OUT="$ROOT/bench/results/sfu-$(date +%Y%m%d-%H%M%S)"
LOADGEN="$HERE/loadgen/target/release/sfu-loadgen"

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
JANUS_LIB=$(dirname "$(find /usr/lib -name libjanus_videoroom.so -path '*janus/plugins*' 2>/dev/null | head -1)")/..

if [ -n "${SFU_SERVER_BIN:-}" ]; then
  OURS_BIN=$SFU_SERVER_BIN
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

# Janus: a config dir holding only the HTTP transport and the VideoRoom plugin (symlinked into
# their own folders, so nothing else loads), half-trickle (its candidates in its SDP), no session
# timeout (so no keepalives are needed), log level warnings.
start_janus() {
  local dir="$WORK/janus" port
  port=$(free_port)
  rm -rf "$dir"; mkdir -p "$dir/plugins" "$dir/transports" "$dir/none"
  ln -s "$JANUS_LIB/plugins/libjanus_videoroom.so" "$dir/plugins/"
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
  echo 'general: {}' >"$dir/janus.plugin.videoroom.jcfg"
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
