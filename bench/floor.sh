#!/usr/bin/env bash
# CPU per delivery against the floor (bench/floor/floor.c), the Node peers and nats-server's WebSocket
# listener, each server pinned to core 1 and the load generator to core 0: WebSocket 1,000 x 50 and
# 10,000 x 5 msg/s, SSE, NDJSON streaming and long polling (ours only) 1,000 x 50, two rounds, interleaved; then the
# rising-rate search at 1,000 subscribers (p99 <= 50 ms, nothing lost) for each server. See
# bench/README.md. Extra arguments go to fanout.py.
set -euo pipefail
cd "$(dirname "$0")"
exec python3 fanout.py --pin --servers ours,floor,floor-batch,node,nats --protocols json,sse,stream,poll \
  --rates-small 50 --rates-big 5 --duration 4 --rounds 2 "$@"
