#!/usr/bin/env bash
# The composition's CPU per composed frame, ours against ffmpeg's xstack over the same VP8 inputs,
# interleaved (ours, ffmpeg, ours, ffmpeg), both on one thread with libvpx realtime settings.
# Usage: bench/compose/run.sh [ROUNDS] (default 2). Needs ffmpeg; writes bench/results/compose-*/.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-2}
out=bench/results/compose-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
secs=10; fps=15; W=640; H=360
echo "inputs: 9 x ${secs}s of 640x360 at ${fps} fps (ffmpeg testsrc2, libvpx realtime)"
for i in $(seq 0 8); do
  ffmpeg -loglevel error -y -f lavfi -i "testsrc2=size=640x360:rate=${fps},hue=h=$((i * 40))" -t "$secs" \
    -c:v libvpx -deadline realtime -cpu-used 8 -b:v 800k -g 300 "$out/in$i.ivf"
done
cargo build --release --example compose_bench >/dev/null 2>&1 || cargo build --release --example compose_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/compose_bench

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

for r in $(seq 1 "$rounds"); do
  for n in 4 9; do
    ins=(); for i in $(seq 0 $((n - 1))); do ins+=("$out/in$i.ivf"); done
    "$bin" compose $W $H $fps "${ins[@]}" | tee -a "$out/results.jsonl"
    xstack "$n" | tee -a "$out/results.jsonl"
  done
done
"$bin" filters "$out/in0.ivf" | tee -a "$out/results.jsonl"
echo "results: $out/results.jsonl"
