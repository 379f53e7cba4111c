#!/usr/bin/env python3
"""Multi-node fan-out benchmark: one channel, WebSocket subscribers spread evenly over 1, 2 or 3
Switchboard nodes sharing a Redis or a NATS, one publisher on the first node; against the
in-memory single node measured in the same run, interleaved. See README.md beside this file."""

import argparse
import math
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SWITCHBOARD = os.path.join(ROOT, "target", "release", "switchboard")
LOADGEN_DIR = os.path.join(ROOT, "bench", "loadgen")
LOADGEN = os.path.join(LOADGEN_DIR, "target", "release", "loadgen")
_source = [60]


def next_source():
    """A fresh 127.0.0.X source address (about 28,000 ephemeral ports per address)."""
    x = _source[0]
    _source[0] = 60 if x >= 250 else x + 1
    return f"127.0.0.{x}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kv(line):
    out = {}
    for item in line.split()[1:]:
        if "=" in item:
            k, v = item.split("=", 1)
            try:
                out[k] = int(v)
            except ValueError:
                out[k] = v
    return out


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Backend:
    """A broker server: none (memory), redis-server or nats-server -js."""

    def __init__(self, kind):
        self.kind, self.proc, self.dir = kind, None, None
        if kind == "memory":
            self.url = "memory"
            return
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"sb-bench-{kind}-")
        if kind == "redis":
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning"]
            self.url = f"redis://127.0.0.1:{self.port}"
        else:
            cmd = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.dir]
            self.url = f"nats://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_port(self.port)
        time.sleep(0.3)

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class Node:
    def __init__(self, broker_url):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        env["SWITCHBOARD_BROKER"] = broker_url
        # Thousands of sockets from one address (loopback): lift the per-IP caps.
        env["SWITCHBOARD_HTTP_MAX_SOCKETS_PER_IP"] = "0"
        env["SWITCHBOARD_HTTP_ACCEPT_RATE_PER_IP"] = "0"
        # Benchmarks open thousands of connections from loopback: lift the per-client limits.
        env.update({"SWITCHBOARD_MAX_CONNECTIONS_PER_IP": "0", "SWITCHBOARD_MAX_CONNECTIONS_PER_USER": "0",
                    "SWITCHBOARD_MAX_PUBLISH_RATE": "0"})
        self.proc = subprocess.Popen(
            [SWITCHBOARD, "serve", "--listen", "127.0.0.1:0", "--no-demo", "--log", "warn"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)
        line = self.proc.stdout.readline()
        addr = [w for w in line.split() if w.startswith("http://")]
        if not addr:
            raise RuntimeError(f"node did not start: {line!r}")
        self.url = addr[0].replace("http://", "ws://") + "/ws"

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Subs:
    """One `loadgen sub` process (protocol: `ready ...` once subscribed; stats/reset/hist)."""

    def __init__(self, url, conns):
        self.proc = subprocess.Popen(
            [LOADGEN, "sub", "--url", url, "--conns", str(conns), "--source", next_source()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            bufsize=1, start_new_session=True)
        self.ready = None

    def line(self, timeout):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().strip() if r else None

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while self.ready is None and time.time() < deadline:
            line = self.line(max(0.0, deadline - time.time()))
            if line and line.startswith("ready"):
                self.ready = kv(line)
        if self.ready is None or self.ready.get("failed"):
            raise RuntimeError(f"subscribers not ready: {self.ready}")

    def ask(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.line(30)
            if line is None:
                raise RuntimeError(f"load generator did not answer {cmd}")
            if not line.startswith("ready"):
                return line

    def hist(self):
        return [tuple(map(int, item.split(":"))) for item in self.ask("hist").split()[1:]]

    def stop(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(3)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def percentile(hist, q):
    total = sum(c for _, c in hist)
    if not total:
        return float("nan")
    rank, seen = max(1, math.ceil(q * total)), 0
    for v, c in sorted(hist):
        seen += c
        if seen >= rank:
            return v
    return hist[-1][0]


def run(kind, nodes_n, args):
    backend = Backend(kind)
    nodes, subs = [], []
    try:
        nodes = [Node(backend.url) for _ in range(nodes_n)]
        per = [args.subs // nodes_n + (1 if i < args.subs % nodes_n else 0) for i in range(nodes_n)]
        subs = [Subs(n.url, c) for n, c in zip(nodes, per)]
        for s in subs:
            s.wait_ready()
        time.sleep(0.5)
        for s in subs:
            s.ask("reset")
        t0 = time.time()
        pub = subprocess.run(
            [LOADGEN, "pub", "--url", nodes[0].url, "--rate", str(args.rate), "--duration",
             str(args.duration), "--size", str(args.size), "--source", next_source()],
            capture_output=True, text=True, timeout=args.duration + 60)
        p = [kv(l) for l in pub.stdout.splitlines() if l.startswith("published")]
        if not p:
            raise RuntimeError(f"publisher failed: {pub.stdout} {pub.stderr}")
        expected = p[0]["sent"] * args.subs
        last, changed = -1, time.time()
        while time.time() - t0 < args.duration + 60:
            total = sum(kv(s.ask("stats"))["deliveries"] for s in subs)
            if total >= expected:
                break
            if total != last:
                last, changed = total, time.time()
            elif time.time() - changed > 2:
                break
            time.sleep(0.2)
        stats = [kv(s.ask("stats")) for s in subs]
        total = sum(x["deliveries"] for x in stats)
        end = max(x["last_delivery_us"] for x in stats) / 1e6
        hist = [item for s in subs for item in s.hist()]
        return {
            "broker": kind, "nodes": nodes_n, "deliveries": total,
            "complete": total / expected if expected else 0.0,
            "deliveries_per_s": total / max(end - t0, 1e-6),
            "p50_ms": percentile(hist, 0.5) / 1000, "p99_ms": percentile(hist, 0.99) / 1000,
            "closed": sum(x["closed"] for x in stats),
        }
    finally:
        for s in subs:
            s.stop()
        for n in nodes:
            n.stop()
        backend.stop()


def build():
    if not os.path.exists(SWITCHBOARD):
        subprocess.run(["cargo", "build", "--release", "--bin", "switchboard"], cwd=ROOT, check=True)
    if not os.path.exists(LOADGEN):
        subprocess.run(["cargo", "build", "--release"], cwd=LOADGEN_DIR, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--subs", type=int, default=1500, help="subscribers in total (default 1500)")
    ap.add_argument("--rate", type=int, default=100, help="publications per second (default 100)")
    ap.add_argument("--duration", type=int, default=5, help="seconds of publishing (default 5)")
    ap.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (default 1)")
    ap.add_argument("--brokers", default="redis,nats", help="shared brokers to measure")
    ap.add_argument("--nodes", default="1,2,3", help="node counts to measure")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        build()
    configs = [("memory", 1)] + [(b, int(n)) for b in args.brokers.split(",") for n in args.nodes.split(",")]
    for kind, _ in configs:
        if kind != "memory" and not shutil.which(f"{kind}-server"):
            sys.exit(f"{kind}-server is not installed (apt-get install {kind}-server)")
    results = []
    for r in range(args.rounds):
        for kind, n in configs:
            res = run(kind, n, args)
            res["round"] = r
            results.append(res)
            print(f"  round {r} {kind} x{n}: {res['deliveries_per_s']:.0f} deliveries/s, "
                  f"p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, "
                  f"complete {res['complete']:.3f}", file=sys.stderr)
    print(f"\n{args.subs} WebSocket subscribers on one channel spread over the nodes, "
          f"{args.rate} msg/s for {args.duration} s from one publisher on node 1, {args.size} B; "
          f"medians over {args.rounds} round(s)\n")
    print(f"{'broker':8} {'nodes':>5} {'deliveries/s':>13} {'vs memory':>9} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'compl':>6}")

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2

    base = med([x["deliveries_per_s"] for x in results if x["broker"] == "memory"])
    for kind, n in configs:
        rs = [x for x in results if x["broker"] == kind and x["nodes"] == n]
        d = med([x["deliveries_per_s"] for x in rs])
        print(f"{kind:8} {n:>5} {d:>13.0f} {d / base:>9.2f} {med([x['p50_ms'] for x in rs]):>8.2f} "
              f"{med([x['p99_ms'] for x in rs]):>8.2f} {med([x['complete'] for x in rs]):>6.3f}")


if __name__ == "__main__":
    main()
