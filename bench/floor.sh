#!/usr/bin/env bash
# CPU per delivery against the floor (bench/floor/floor.c) and the Node peers, each server pinned to
# core 1 and the load generator to core 0: WebSocket 1,000 x 50 and 10,000 x 5 msg/s, SSE
# 1,000 x 50, two rounds, interleaved. See bench/README.md. Extra arguments go to fanout.py.
set -euo pipefail
cd "$(dirname "$0")"
exec python3 fanout.py --pin --servers ours,floor,floor-batch,node --protocols json,sse \
  --rates-small 50 --rates-big 5 --no-search --duration 4 --rounds 2 "$@"
