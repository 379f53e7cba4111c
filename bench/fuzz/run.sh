#!/usr/bin/env bash
# The fuzzing job (not CI): every target for SECONDS each (default 600) from SEED, release build,
# nice'd. Crashing inputs land in bench/fuzz/crashes/ (hex); replay one with
#   cargo run --release -p switchboard-fuzz -- --target NAME --replay FILE
# Usage: bench/fuzz/run.sh [SECONDS] [SEED] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-600}
seed=${2:-$(date +%s)}
shift $(( $# > 2 ? 2 : $# ))
targets=("$@")
nice -n 10 cargo build --release -p switchboard-fuzz
bin=${CARGO_TARGET_DIR:-target}/release/switchboard-fuzz
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("$bin" --list)
echo "seed $seed, $seconds s per target, $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf "%-8s %12s %8s %12s %7s\n" target inputs secs inputs/s crashes
status=0
for t in "${targets[@]}"; do
  nice -n 10 "$bin" --target "$t" --seconds "$seconds" --seed "$seed" --crashes bench/fuzz/crashes | tail -n +2 || status=1
done
exit $status
