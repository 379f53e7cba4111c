#!/usr/bin/env bash
# TURN relay benchmark: our server (crates/turn example, --release) against Debian's coturn,
# on loopback, driven by the same turnutils_uclient load, interleaved A B A B.
#
# Prints, per server: relayed messages per second (echoed round trips client -> TURN -> peer
# -> TURN -> client, counted once per direction), CPU time per relayed MB (utime + stime of
# the server process from /proc/PID/stat), and the ratio ours/coturn.
#
# Knobs (environment): ROUNDS (3), CLIENTS (20), MESSAGES (2000 per client), SIZE (200 bytes),
# INTERVAL (ms between packets per session, 1), TRANSPORT ("" for UDP, "-t" for TCP).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-20}
MESSAGES=${MESSAGES:-2000}
SIZE=${SIZE:-200}
INTERVAL=${INTERVAL:-1}
TRANSPORT=${TRANSPORT:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HZ=$(getconf CLK_TCK)

for tool in turnserver turnutils_uclient turnutils_peer python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install coturn python3)" >&2; exit 1; }
done

echo "building the turn_server example (release)..." >&2
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --quiet --release -p switchboard-turn --example turn_server)
OURS_BIN="$TARGET/release/examples/turn_server"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { # a port free on both UDP and TCP, and (with $1=2) the next one too
  python3 - "$@" <<'PY'
import socket, sys
span = int(sys.argv[1]) if len(sys.argv) > 1 else 1
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    ok = True
    held = [u]
    for p in range(port, port + span):
        try:
            if p != port:
                x = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); x.bind(("127.0.0.1", p)); held.append(x)
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM); t.bind(("127.0.0.1", p)); held.append(t)
        except OSError:
            ok = False
    for s in held: s.close()
    if ok and port + span < 65536:
        print(port); break
PY
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The far end.
PEER_PORT=$(free_port)
turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 &
PIDS+=($!)

# Ours.
"$OURS_BIN" --listen 127.0.0.1:0 --user bench:benchpw --realm bench --allow-loopback-peers \
  --bandwidth 0 --max-allocations-per-user 100000 --max-allocations-per-ip 0 >"$WORK/ours.out" 2>&1 &
OURS_PID=$!
PIDS+=($OURS_PID)
for _ in $(seq 50); do grep -q TURN_LISTEN "$WORK/ours.out" && break; sleep 0.1; done
OURS_PORT=$(sed -n 's/^TURN_LISTEN=.*:\([0-9]*\)$/\1/p' "$WORK/ours.out")

# coturn, with a generated config.
COTURN_PORT=$(free_port)
RELAY_LO=$(free_port 200)
cat >"$WORK/turnserver.conf" <<CONF
listening-ip=127.0.0.1
listening-port=$COTURN_PORT
relay-ip=127.0.0.1
min-port=$RELAY_LO
max-port=$((RELAY_LO + 199))
allow-loopback-peers
no-tls
no-dtls
no-cli
lt-cred-mech
user=bench:benchpw
realm=bench
no-stdout-log
log-file=$WORK/coturn.log
simple-log
pidfile=$WORK/coturn.pid
CONF
turnserver -c "$WORK/turnserver.conf" >/dev/null 2>&1 &
COTURN_PID=$!
PIDS+=($COTURN_PID)
sleep 1
kill -0 "$COTURN_PID" || { echo "coturn did not start" >&2; cat "$WORK/coturn.log" >&2; exit 1; }

run_load() { # $1=label $2=port $3=pid -> prints "msgs_per_s cpu_s_per_mb relayed_msgs"
  local label=$1 port=$2 pid=$3 out="$WORK/uclient-$1.txt"
  local c0 t0 t1 c1
  c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  timeout 300 turnutils_uclient $TRANSPORT -c -u bench -w benchpw -p "$port" -e 127.0.0.1 -r "$PEER_PORT" \
    -m "$CLIENTS" -n "$MESSAGES" -l "$SIZE" -z "$INTERVAL" 127.0.0.1 >"$out" 2>&1 || true
  t1=$(date +%s.%N); c1=$(cpu_ticks "$pid")
  local sent recv lost
  sent=$(grep -o 'tot_send_msgs=[0-9]*' "$out" | tail -1 | cut -d= -f2)
  recv=$(grep -o 'tot_recv_msgs=[0-9]*' "$out" | tail -1 | cut -d= -f2)
  lost=$(grep -o 'Total lost packets [0-9]*' "$out" | tail -1 | awk '{print $4}')
  python3 - "$label" "${sent:-0}" "${recv:-0}" "${lost:-0}" "$t0" "$t1" "$c0" "$c1" "$HZ" "$SIZE" <<'PY'
import sys
label, sent, recv, lost, t0, t1, c0, c1, hz, size = sys.argv[1:]
sent, recv, lost, size = int(sent), int(recv), int(lost), int(size)
wall = float(t1) - float(t0)
cpu = (int(c1) - int(c0)) / int(hz)
relayed = sent + recv            # each echoed message crosses the relay twice
mb = relayed * size / 1e6
print(f"{label} {relayed / wall:.1f} {cpu / mb if mb else float('nan'):.4f} {relayed} {lost} {wall:.2f} {cpu:.2f}")
PY
}

echo "load: uclient ${TRANSPORT:-(udp)} -m $CLIENTS -n $MESSAGES -l $SIZE -z $INTERVAL, $ROUNDS rounds, A B interleaved"
printf '%-8s %-6s %14s %16s %10s %6s %8s %8s\n' round server "relayed msg/s" "CPU s/relayed MB" relayed lost wall_s cpu_s
RESULTS="$WORK/results.txt"
: >"$RESULTS"
for r in $(seq "$ROUNDS"); do
  for who in ours coturn; do
    if [ "$who" = ours ]; then line=$(run_load ours "$OURS_PORT" "$OURS_PID"); else line=$(run_load coturn "$COTURN_PORT" "$COTURN_PID"); fi
    echo "$line" >>"$RESULTS"
    read -r label rate cpu relayed lost wall cpus <<<"$line"
    printf '%-8s %-6s %14s %16s %10s %6s %8s %8s\n' "$r" "$label" "$rate" "$cpu" "$relayed" "$lost" "$wall" "$cpus"
  done
done

python3 - "$RESULTS" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def med(who, i):
    return statistics.median(float(r[i]) for r in rows if r[0] == who)
o_rate, c_rate = med("ours", 1), med("coturn", 1)
o_cpu, c_cpu = med("ours", 2), med("coturn", 2)
print()
print(f"median relayed msg/s     ours {o_rate:10.1f}   coturn {c_rate:10.1f}   ours/coturn {o_rate / c_rate:.2f}")
print(f"median CPU s/relayed MB  ours {o_cpu:10.4f}   coturn {c_cpu:10.4f}   ours/coturn {o_cpu / c_cpu:.2f}")
PY
