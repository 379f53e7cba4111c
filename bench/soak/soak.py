#!/usr/bin/env python3
"""Soak: one release node on loopback, N subscribers over WebSocket, SSE, HTTP streaming and long
polling (the `fleet` binary, built on crates/client), each force-dropped every few seconds and
resumed from its cursor, while publishers post. Checks offsets (nothing lost or duplicated per
channel), `/api/channels` counts (exact while connected, zero after), and the server's RSS slope
after warm-up. Stops by itself. See bench/README.md.

    bench/soak/soak.py [--conns 5000] [--duration 600] [--rate 200] [--channels 100] [--no-build]
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sbproc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--rate", type=float, default=200, help="publications per second, all channels")
    ap.add_argument("--channels", type=int, default=100)
    ap.add_argument("--transports", default="ws,sse,stream,long-poll")
    ap.add_argument("--drop-min", type=float, default=2)
    ap.add_argument("--drop-max", type=float, default=6)
    ap.add_argument("--warmup", type=float, default=None, help="seconds before the RSS slope (default: a fifth)")
    ap.add_argument("--history", type=int, default=100, help="history_size of the soak namespace")
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        sbproc.build()
    node = sbproc.Node(config=sbproc.namespace_config(a.history))
    print(f"server {node.url} pid {node.proc.pid}, RSS {sbproc.rss_kib(node.proc.pid)} KiB", flush=True)
    warmup = a.warmup if a.warmup is not None else a.duration / 5
    cmd = ["nice", "-n", "10", sbproc.FLEET, "--url", node.url, "--conns", str(a.conns), "--duration",
           str(a.duration), "--rate", str(a.rate), "--channels", str(a.channels), "--transports",
           a.transports, "--drop-min", str(a.drop_min), "--drop-max", str(a.drop_max), "--pid",
           str(node.proc.pid), "--warmup", str(warmup), "--settle", "60"]
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=a.duration + 300)
    finally:
        alive = node.proc.poll() is None
        node.stop()
    print(out.stdout, end="")
    result = sbproc.parse_result(out.stdout)
    if not alive:
        print("FAIL: the server died during the run")
        return 1
    if not result or not result["ok"]:
        print("FAIL")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
