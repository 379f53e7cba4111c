#!/usr/bin/env bash
# Fan-out benchmark: Switchboard vs a minimal Node `ws` server. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")"
exec python3 fanout.py "$@"
