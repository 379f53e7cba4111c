#!/usr/bin/env bash
# Autobahn WebSocket conformance suite against /ws-echo, a plain echo endpoint on the same
# WebSocket stack as /ws, using the `kosoku` runner (pip install kosoku), which drives the Autobahn
# TestSuite's own case files and writes an Autobahn-format report (index.json + per-case files).
#
#   cargo build && e2e/autobahn.sh            # report in e2e/autobahn-report/ (or $AUTOBAHN_OUT)
#
# Environment:
#   SWITCHBOARD_BIN        the server binary (default: $CARGO_TARGET_DIR/debug/switchboard, else
#                          target/debug/switchboard of this repository)
#   AUTOBAHN_OUT           report directory
#   AUTOBAHN_STRICT_CLOSE  1 (default): also fail on closing-handshake verdicts (behaviorClose) other than
#                          OK/INFORMATIONAL
#   AUTOBAHN_PARALLELISM   cases run at once (default 1)
#
# Case selection: everything except
#   12.* and 13.*  permessage-deflate (compression). The server does not negotiate the extension,
#                  so all 216 cases end UNIMPLEMENTED. (With kosoku they are not slow: 1.7 s for
#                  all of them, measured; with the original Python 2 runner they take minutes.)
# Cases 9.3.1 and 9.4.1 (4 MiB message in 64-byte fragments) are kept: measured here they take
# 0.3 s and 0.7 s and their behavior is OK. Add more exclusions with AUTOBAHN_EXCLUDE="9.* 6.4.*".
# The whole run (301 cases) takes about 20 s on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -n "${SWITCHBOARD_BIN:-}" ]]; then
  bin="$SWITCHBOARD_BIN"
elif [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
  bin="$CARGO_TARGET_DIR/debug/switchboard"
else
  bin="$here/../target/debug/switchboard"
fi
[[ -x "$bin" ]] || { echo "switchboard binary not found at $bin (cargo build, or set SWITCHBOARD_BIN)" >&2; exit 2; }
command -v kosoku >/dev/null || { echo "kosoku not found (pip install kosoku)" >&2; exit 2; }

out="${AUTOBAHN_OUT:-$here/autobahn-report}"
rm -rf "$out"
mkdir -p "$out"
log="$out/server.log"

# Start the server on a free port; read the port it prints.
fifo="$(mktemp -u)"
mkfifo "$fifo"
# The suite opens hundreds of connections a second from loopback: lift the per-address limits.
env SWITCHBOARD_LOG=warn SWITCHBOARD_HTTP_ACCEPT_RATE_PER_IP=0 SWITCHBOARD_HTTP_MAX_SOCKETS_PER_IP=0 \
  SWITCHBOARD_MAX_CONNECTIONS_PER_IP=0 "$bin" serve --listen 127.0.0.1:0 --no-demo --ws-echo-endpoint >"$fifo" 2>"$log" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -f "$fifo"
}
trap cleanup EXIT
port=""
exec 3<"$fifo"
while IFS= read -r -t 15 line <&3; do
  if [[ "$line" =~ listening\ on\ http://127\.0\.0\.1:([0-9]+) ]]; then
    port="${BASH_REMATCH[1]}"
    break
  fi
done
[[ -n "$port" ]] || { echo "server did not start:" >&2; cat "$log" >&2; exit 2; }
# Keep draining the server's stdout so it never blocks on a full pipe.
cat <&3 >/dev/null &
exec 3<&-

exclude=(-x '12.*' -x '13.*')
for e in ${AUTOBAHN_EXCLUDE:-}; do exclude+=(-x "$e"); done

echo "autobahn: ws://127.0.0.1:$port/ws-echo, report in $out"
start=$(date +%s)
# kosoku exits non-zero when any verdict (including behaviorClose) is not OK; the checker below
# decides, so only a missing report is an error here.
set +e
timeout 300 kosoku "ws://127.0.0.1:$port/ws-echo" "${exclude[@]}" -p "${AUTOBAHN_PARALLELISM:-1}" -o "$out" >"$out/kosoku.log" 2>&1
rc=$?
set -e
echo "autobahn: kosoku exited $rc after $(( $(date +%s) - start )) s"
if [[ $rc -eq 124 ]]; then echo "autobahn: kosoku timed out" >&2; tail -20 "$out/kosoku.log" >&2; exit 1; fi
if [[ ! -f "$out/index.json" ]]; then echo "autobahn: no index.json" >&2; tail -20 "$out/kosoku.log" >&2; exit 1; fi
if ! kill -0 "$server" 2>/dev/null; then echo "autobahn: the server died during the run" >&2; cat "$log" >&2; exit 1; fi

strict=()
[[ "${AUTOBAHN_STRICT_CLOSE:-1}" == 1 ]] && strict=(--strict-close)
python3 "$here/autobahn_check.py" "$out/index.json" --min-cases 250 "${strict[@]}"
