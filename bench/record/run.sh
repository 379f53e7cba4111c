#!/usr/bin/env bash
# Recording benchmark: N tracks recorded at once (N WHIP publishers, str0m, one VP8 track each,
# every frame a parsable keyframe with filler; loadgen/ reuses bench/sfu's peers). For each N,
# the same load twice on a fresh server, interleaved: without recording (the SFU receiving only:
# the peer measured in the same run) and recorded. See README.md.
#
# Prints per N: media Mbit/s, server CPU ms per Mbit/s without and with recording and the ratio,
# the CPU the recording adds per recorded Mbit, disk write rate, frames the tap dropped, and
# frames in the files (ffprobe) against frames sent while recording.
# Raw JSON: bench/results/record-<timestamp>/.
#
# Knobs (environment): NS ("10 50"), DURATION (15 s measured), WARMUP (3 s), FPS (30),
# FRAME_BYTES (4000: ~1 Mbit/s per track), RECORD_SERVER_BIN (another build; skips building).
set -euo pipefail

NS=${NS:-"10 50"}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
FPS=${FPS:-30}
FRAME_BYTES=${FRAME_BYTES:-4000}
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=record LOADGEN_NAME=record-loadgen JANUS_PLUGIN= SERVER_BIN=${RECORD_SERVER_BIN:-} ONLY=ours
# shellcheck source=../lib/rtc.sh
. "$HERE/../lib/rtc.sh"
OURS_EXTRA_TOML="recordings_dir = \"$WORK/recordings\"
recordings_max = 4"

start_server() {
  rm -rf "$WORK/recordings"
  start_ours
}

printf '%-4s %-9s %-12s %-12s %-7s %-14s %-10s %-8s %s\n' N Mbit/s "ms/Mbit off" "ms/Mbit rec" ratio "+ms/rec Mbit" "disk MB/s" dropped "frames in files/sent"
for n in $NS; do
  for mode in off rec; do
    start_server
    flag=""; [ "$mode" = rec ] && flag="--record"
    "$LOADGEN" --url "$URL" --tracks "$n" $flag --fps "$FPS" --frame-bytes "$FRAME_BYTES" --warmup "$WARMUP" \
      --duration "$DURATION" --server-pid "$SERVER_PID" --hz "$HZ" >"$OUT/n$n-$mode.json"
    if [ "$mode" = rec ]; then
      id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["recording"])' "$OUT/n$n-$mode.json")
      total=0
      for f in "$WORK/recordings/$id"/*.webm; do
        c=$(ffprobe -v error -count_packets -select_streams v -show_entries stream=nb_read_packets -of csv=p=0 "$f")
        total=$((total + c))
      done
      echo "$total" >"$OUT/n$n-frames-in-files"
    fi
    stop_server
  done
  python3 - "$OUT" "$n" <<'PY'
import json, sys
out, n = sys.argv[1], sys.argv[2]
off = json.load(open(f"{out}/n{n}-off.json"))
rec = json.load(open(f"{out}/n{n}-rec.json"))
files = int(open(f"{out}/n{n}-frames-in-files").read())
a, b = off["server_cpu_ms_per_mbit"], rec["server_cpu_ms_per_mbit"]
print(f"{n:<4} {rec['media_mbit_per_s']:<9.1f} {a:<12.2f} {b:<12.2f} {b / a:<7.2f} {b - a:<14.2f} "
      f"{rec['disk_mbyte_per_s']:<10.2f} {int(rec['tap_dropped']):<8} {files}/{rec['frames_sent_while_recording']}")
PY
done
echo "raw: $OUT" >&2
