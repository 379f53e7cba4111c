#!/usr/bin/env python3
"""Idle memory per connection: the RSS slope of a server over 2,000 … 10,000 idle subscribed
connections, per transport, for Switchboard and the Node peer (`peers/node-ws`, which serves
WebSocket and SSE subscribers) in the same run, interleaved. See bench/README.md.

Each connection is a plain socket of this script: a WebSocket (`/ws`, RFC 6455 handshake, one
`subscribe`, counted once its reply arrived), an SSE or NDJSON stream (`/sse`, `/stream`, counted
once its `subscribed` event arrived) or a held long poll (`/poll?wait=`, counted once sent: it
answers nothing until a publication or its wait ends). WebTransport sessions (`--transports wt`)
are held by the `wt_idle` example (`cargo build --release --example wt_idle`; `WT_IDLE_BIN`
names another build): one QUIC connection each, subscribed on its protocol stream. Socket
buffers are kernel memory, not in RSS: the slope is the server's own bytes per connection (for
WebTransport, QUIC's buffers are the server's own, and in it).
"""

import argparse
import base64
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
SERVER_BIN = os.environ.get("FANOUT_SERVER_BIN") or os.path.join(ROOT, "target", "release", "switchboard")
PEER = os.path.join(BENCH, "peers", "node-ws", "server.js")
# The default configuration, logs included (`info`: a line per connection). The server reads
# SWITCHBOARD_LOG, not RUST_LOG: set it here to measure another level.
OURS_ENV = {
    "SWITCHBOARD_HTTP_MAX_SOCKETS_PER_IP": "0",
    "SWITCHBOARD_HTTP_ACCEPT_RATE_PER_IP": "0",
    "SWITCHBOARD_MAX_CONNECTIONS_PER_IP": "0",
    "SWITCHBOARD_MAX_CONNECTIONS_PER_USER": "0",
}
# Which transports each server serves, and what a subscribed connection has received.
TRANSPORTS = {
    "ws": b'"subscribe"',
    "sse": b"event: subscribed",
    "stream": b'"subscribed"',
    "poll": None,
    # WebTransport sessions, held by the `wt_idle` example (a QUIC client of its own).
    "wt": None,
}
WT_IDLE_BIN = os.environ.get("WT_IDLE_BIN") or os.path.join(ROOT, "target", "release", "examples", "wt_idle")
PEER_TRANSPORTS = {"ws", "sse"}

_source = [100]


def next_source():
    """Each batch of connections from its own 127.0.0.X: ephemeral ports are per source address."""
    _source[0] = 100 if _source[0] >= 250 else _source[0] + 1
    return f"127.0.0.{_source[0]}"


class Server:
    def __init__(self, kind, logdir):
        self.kind = kind
        self.log = open(os.path.join(logdir, f"memory-{kind}.log"), "w")
        env = dict(os.environ)
        if kind == "ours":
            env.update(OURS_ENV)
            cmd = [SERVER_BIN, "serve", "--listen", "127.0.0.1:0", "--no-demo", "--no-turn", "--no-rtc"]
            pattern = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
        else:
            env["PORT"] = "0"
            cmd = ["node", PEER]
            pattern = re.compile(rb"node-ws listening on http://127\.0\.0\.1:(\d+)")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            with open(self.log.name, "rb") as f:
                m = pattern.search(f.read())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{kind} did not start, see {self.log.name}")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def ws_frame(text):
    """A masked text frame (zero mask: the bytes stay readable)."""
    data = text.encode()
    assert len(data) < 126
    return bytes([0x81, 0x80 | len(data), 0, 0, 0, 0]) + data


def request(transport, port):
    host = f"127.0.0.1:{port}"
    if transport == "ws":
        key = base64.b64encode(os.urandom(16)).decode()
        return (f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: switchboard.v1.json\r\n\r\n").encode()
    path = {"sse": "/sse?channel=bench", "stream": "/stream?channel=bench",
            "poll": "/poll?channel=bench&wait=60"}[transport]
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n".encode()


def open_conns(port, transport, count, held, timeout=120):
    """Opens `count` more subscribed connections (appended to `held`)."""
    sel = selectors.DefaultSelector()
    marker = TRANSPORTS[transport]
    pending = {}
    source = next_source()
    opened = 0
    for _ in range(count):
        if opened and opened % 20000 == 0:
            source = next_source()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(request(transport, port))
        opened += 1
        held.append(s)
        if marker is None:
            continue
        s.setblocking(False)
        pending[s] = [b"", False]
        sel.register(s, selectors.EVENT_READ)
        # Keep the number waiting small: the server answers in order anyway.
        while len(pending) > 200:
            drain(sel, pending, marker, timeout)
    while pending:
        drain(sel, pending, marker, timeout)
    sel.close()


def drain(sel, pending, marker, timeout):
    events = sel.select(timeout)
    if not events:
        raise RuntimeError(f"{len(pending)} connections got no answer in {timeout} s")
    for key, _ in events:
        s = key.fileobj
        state = pending[s]
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError(f"connection closed: {state[0][:200]!r}")
        state[0] += chunk
        if marker == b'"subscribe"' and not state[1]:
            # WebSocket: the 101 first, then the subscription.
            if b"\r\n\r\n" in state[0]:
                head, rest = state[0].split(b"\r\n\r\n", 1)
                if not head.startswith(b"HTTP/1.1 101"):
                    raise RuntimeError(f"handshake refused: {head[:200]!r}")
                state[0], state[1] = rest, True
                s.sendall(ws_frame('{"id":1,"subscribe":{"channel":"bench"}}'))
            continue
        if marker in state[0]:
            sel.unregister(s)
            del pending[s]


def slope(points):
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    b = sxy / sxx
    return b, my - b * mx


class WtSessions:
    """Subscribed WebTransport sessions, held by `wt_idle` (see bench/webtransport/idle.rs)."""

    def __init__(self, port, logdir):
        self.log = open(os.path.join(logdir, "wt_idle.log"), "w")
        self.proc = subprocess.Popen([WT_IDLE_BIN, f"http://127.0.0.1:{port}"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.count = 0

    def open(self, n):
        self.proc.stdin.write(f"open {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line.startswith("ok "):
            raise RuntimeError(f"wt_idle: {line!r}, see {self.log.name}")
        self.count = int(line.split()[1])

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def measure(kind, transport, steps, settle, logdir):
    server = Server(kind, logdir)
    held = []
    wt = WtSessions(server.port, logdir) if transport == "wt" else None
    try:
        time.sleep(0.5)
        points = []
        for target in steps:
            if wt:
                wt.open(target - wt.count)
            else:
                open_conns(server.port, transport, target - len(held), held)
            time.sleep(settle)
            points.append((target, server.rss_kib() * 1024))
        b, a = slope(points)
        return b, a, points
    finally:
        if wt:
            wt.close()
        for s in held:
            s.close()
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--transports", default="ws,sse,stream,poll")
    ap.add_argument("--steps", default="2000,4000,6000,8000,10000")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--settle", type=float, default=1.5, help="pause before reading RSS, s")
    ap.add_argument("--only", choices=["ours", "node"])
    args = ap.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    for t in transports:
        if t not in TRANSPORTS:
            sys.exit(f"--transports: a list of {', '.join(TRANSPORTS)}")
    logdir = os.path.join(BENCH, "results", "memory-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(logdir, exist_ok=True)
    kinds = [args.only] if args.only else ["ours", "node"]
    results = {}
    for rnd in range(args.rounds):
        for t in transports:
            for kind in kinds:
                if kind == "node" and t not in PEER_TRANSPORTS:
                    continue
                b, a, pts = measure(kind, t, steps, args.settle, logdir)
                results.setdefault((kind, t), []).append(b)
                print(f"round {rnd + 1} {kind:<5} {t:<7} {b:8.0f} B/conn "
                      f"(intercept {a / 2**20:.1f} MiB; "
                      + ", ".join(f"{n}:{v / 2**20:.1f}MiB" for n, v in pts) + ")", flush=True)
    print()
    print("idle memory per subscribed connection (RSS slope, median of rounds)")
    for (kind, t), bs in sorted(results.items(), key=lambda x: (x[0][1], x[0][0])):
        bs = sorted(bs)
        print(f"  {t:<7} {kind:<5} {bs[len(bs) // 2] / 1024:6.2f} KiB")


if __name__ == "__main__":
    main()
