#!/usr/bin/env bash
# Compositions (bench/compose/README.md), three parts, each on demand (PARTS, default all three):
#  cpu      the composition's CPU per composed frame, ours against ffmpeg's xstack over the same VP8
#           inputs, interleaved (ours, ffmpeg, ours, ffmpeg), both on one thread with libvpx
#           realtime settings; and each filter's CPU per frame;
#  latency  the end-to-end latency a composition adds, 4 and 9 aiortc publishers at 640x360 and
#           15 fps, composed frame at a WHEP player against the same publisher's frame at a plain
#           SFU subscriber, in the same run (latency.py);
#  sfu      the SFU's forwarding latency in another room (bench/sfu's load generator, room:bench)
#           with 0, 1 and 2 compositions of HOLD_PUBLISHERS publishers running, interleaved.
# Usage: bench/compose/run.sh [ROUNDS] (default 2). Knobs (environment): PARTS ("cpu latency sfu"),
# LAT_SECONDS (15), HOLD_PUBLISHERS (4), SFU_SUBS (10), SFU_SECONDS (10).
# Needs ffmpeg (cpu), python3 with aiortc (latency, sfu); writes bench/results/compose-*/.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-2}
PARTS=${PARTS:-"cpu latency sfu"}
LAT_SECONDS=${LAT_SECONDS:-15}
HOLD_PUBLISHERS=${HOLD_PUBLISHERS:-4}
SFU_SUBS=${SFU_SUBS:-10}
SFU_SECONDS=${SFU_SECONDS:-10}
out=bench/results/compose-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
secs=10; fps=15; W=640; H=360

xstack() { # n: ffmpeg decode + xstack grid + VP8 encode, CPU seconds per output frame
  local n=$1 inputs=() layout cols
  for i in $(seq 0 $((n - 1))); do inputs+=(-i "$out/in$i.ivf"); done
  if [ "$n" = 4 ]; then cols=2; layout="0_0|w0_0|0_h0|w0_h0"; else cols=3
    layout="0_0|w0_0|w0+w1_0|0_h0|w0_h0|w0+w1_h0|0_h0+h1|w0_h0+h1|w0+w1_h0+h1"; fi
  local tw=$((W / cols)) th=$((H / cols)) f=""
  for i in $(seq 0 $((n - 1))); do f+="[$i:v]scale=${tw}:${th}[s$i];"; done
  for i in $(seq 0 $((n - 1))); do f+="[s$i]"; done
  f+="xstack=inputs=$n:layout=$layout[v]"
  /usr/bin/time -f "%U %S" -o "$out/time.txt" ffmpeg -loglevel error -y -threads 1 -filter_threads 1 \
    "${inputs[@]}" -filter_complex "$f" -map "[v]" -r "$fps" -c:v libvpx -deadline realtime -cpu-used 8 \
    -threads 1 -b:v 1200k -f null - 
  local frames=$((secs * fps))
  awk -v n="$n" -v f="$frames" '{ printf "{\"what\":\"ffmpeg_xstack\",\"inputs\":%d,\"frames\":%d,\"cpu_ms_per_frame\":%.3f}\n", n, f, ($1 + $2) * 1000 / f }' "$out/time.txt"
}

cpu_part() {
  echo "inputs: 9 x ${secs}s of 640x360 at ${fps} fps (ffmpeg testsrc2, libvpx realtime)"
  for i in $(seq 0 8); do
    ffmpeg -loglevel error -y -f lavfi -i "testsrc2=size=640x360:rate=${fps},hue=h=$((i * 40))" -t "$secs" \
      -c:v libvpx -deadline realtime -cpu-used 8 -b:v 800k -g 300 "$out/in$i.ivf"
  done
  cargo build --release --example compose_bench >/dev/null 2>&1 || cargo build --release --example compose_bench
  bin=${CARGO_TARGET_DIR:-target}/release/examples/compose_bench
  for r in $(seq 1 "$rounds"); do
    for n in 4 9; do
      ins=(); for i in $(seq 0 $((n - 1))); do ins+=("$out/in$i.ivf"); done
      "$bin" compose $W $H $fps "${ins[@]}" | tee -a "$out/results.jsonl"
      xstack "$n" | tee -a "$out/results.jsonl"
    done
  done
  "$bin" filters "$out/in0.ivf" | tee -a "$out/results.jsonl"
}

# The server for the latency and sfu parts: loopback, no demo, per-IP limits lifted (every peer
# is on 127.0.0.1), two compositions allowed.
SERVER_PID=; HOLD_PID=
cleanup() {
  [ -n "$HOLD_PID" ] && kill "$HOLD_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
start_server() {
  cargo build --quiet --release --bin switchboard
  cat >"$out/switchboard.toml" <<CONF
listen = "127.0.0.1:0"
demo = false
turn = false
log = "warn"
http_max_sockets_per_ip = 0
http_accept_rate_per_ip = 0
max_connections_per_ip = 0
max_connections_per_user = 0
rtc_offers_per_ip_per_minute = 0
video_max_compositions = 2
[namespaces.room]
rooms = true
CONF
  "${CARGO_TARGET_DIR:-target}/release/switchboard" serve --config "$out/switchboard.toml" \
    >"$out/server.out" 2>"$out/server.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$out/server.out" 2>/dev/null && break; sleep 0.1; done
  url=$(grep -o 'http://[0-9.:]*' "$out/server.out" | head -1)
  [ -n "$url" ] || { echo "the server did not start" >&2; cat "$out/server.log" >&2; exit 1; }
}

latency_part() {
  for r in $(seq 1 "$rounds"); do
    for n in 4 9; do
      python3 bench/compose/latency.py --url "$url" --publishers "$n" --duration "$LAT_SECONDS" \
        | tee -a "$out/results.jsonl"
    done
  done
}

sfu_part() {
  local loadgen
  (cd bench/sfu/loadgen && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" cargo build --quiet --release)
  loadgen="$(cd bench/sfu/loadgen && echo "${CARGO_TARGET_DIR:-$PWD/target}")/release/sfu-loadgen"
  for r in $(seq 1 "$rounds"); do
    for k in 0 1 2; do
      # The same publishers every time (room:cmp), composed k times; the SFU measured in room:bench.
      coproc HOLD { exec python3 bench/compose/latency.py --url "$url" --hold \
        --publishers "$HOLD_PUBLISHERS" --compositions "$k"; }
      read -r ready <&"${HOLD[0]}"
      [ "$ready" = ready ] || { echo "latency.py --hold did not start" >&2; exit 1; }
      "$loadgen" --target ours --url "$url" --subs "$SFU_SUBS" --warmup 3 --duration "$SFU_SECONDS" \
        --server-pid "$SERVER_PID" --hz "$(getconf CLK_TCK)" \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); d.update(what="sfu_latency", compositions=int(sys.argv[1]), composed_publishers=int(sys.argv[2])); print(json.dumps(d))' "$k" "$HOLD_PUBLISHERS" \
        | tee -a "$out/results.jsonl"
      eval "exec ${HOLD[1]}>&-"  # its stdin closed: it stops its compositions and leaves
      wait "$HOLD_PID" || true
      HOLD_PID=
    done
  done
}

case " $PARTS " in *" cpu "*) cpu_part ;; esac
case " $PARTS " in *" latency "*|*" sfu "*) start_server ;; esac
case " $PARTS " in *" latency "*) latency_part ;; esac
case " $PARTS " in *" sfu "*) sfu_part ;; esac
python3 bench/compose/summary.py "$out/results.jsonl" | tee "$out/summary.txt"
echo "results: $out/results.jsonl"
