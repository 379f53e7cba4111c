# The WebRTC benchmarks' shared parts (bench/sfu, bench/mixer, bench/record): building our
# server and the benchmark's load generator, starting ours (and Janus from Debian with one
# plugin) on loopback, one at a time, and cleaning up. Sourced by a run.sh after it sets:
#
#   HERE             the benchmark's folder (its loadgen/ is built)
#   BENCH            the results folder's prefix: bench/results/$BENCH-<timestamp>/
#   LOADGEN_NAME     the load generator's binary name
#   JANUS_PLUGIN     videoroom | audiobridge; empty: ours only
#   SERVER_BIN       another build of ours (skips building it), or empty
#   OURS_EXTRA_TOML  lines for ours' configuration, or empty
#   ONLY             ours | janus | empty (both)
#
# It sets ROOT, HZ, OUT, LOADGEN, OURS_BIN, WORK, JANUS (1: measured), WHO (who to run) and
# gives start_ours / start_janus (both set URL, BIND and SERVER_PID), stop_server, free_port and
# wait_for.

ROOT=$(cd "$HERE/../.." && pwd)
HZ=$(getconf CLK_TCK)
OUT="$ROOT/bench/results/$BENCH-$(date +%Y%m%d-%H%M%S)"
LOADGEN="$HERE/loadgen/target/release/$LOADGEN_NAME"
ONLY=${ONLY:-}

command -v python3 >/dev/null || { echo "missing python3" >&2; exit 1; }

# Janus from Debian, installed once; without it only ours is measured.
JANUS=1
[ "$ONLY" = ours ] || [ -z "${JANUS_PLUGIN:-}" ] && JANUS=0
if [ "$JANUS" = 1 ] && ! command -v janus >/dev/null; then
  echo "installing janus (apt)..." >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y janus >&2 || JANUS=0
  else sudo -n apt-get install -y janus >&2 || JANUS=0; fi
  [ "$JANUS" = 1 ] || echo "janus could not be installed: measuring ours only" >&2
fi
JANUS_LIB=$(dirname "$(find /usr/lib -name "libjanus_${JANUS_PLUGIN:-videoroom}.so" -path '*janus/plugins*' 2>/dev/null | head -1)")/..

if [ -n "${SERVER_BIN:-}" ]; then
  OURS_BIN=$SERVER_BIN
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
${OURS_EXTRA_TOML:-}
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

# Janus: a config dir holding only the HTTP transport and the $JANUS_PLUGIN plugin (symlinked into
# their own folders, so nothing else loads), half-trickle (its candidates in its SDP), no session
# timeout (so no keepalives are needed), log level warnings.
start_janus() {
  local dir="$WORK/janus" port
  port=$(free_port)
  rm -rf "$dir"; mkdir -p "$dir/plugins" "$dir/transports" "$dir/none"
  ln -s "$JANUS_LIB/plugins/libjanus_$JANUS_PLUGIN.so" "$dir/plugins/"
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
  echo 'general: {}' >"$dir/janus.plugin.$JANUS_PLUGIN.jcfg"
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
if [ "$JANUS" != 1 ]; then WHO=ours; fi
if [ "$ONLY" = janus ]; then WHO=janus; fi
