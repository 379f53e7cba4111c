#!/usr/bin/env python3
"""Chaos: three release nodes on Redis (then on NATS), clients (the `fleet` binary: WebSocket,
SSE, HTTP streaming, long polling, force-dropped and resumed) reaching them through a user-space
TCP proxy that delays, stalls and cuts connections; during the run a node is killed with -9 and
restarted, the broker is restarted, and the proxy is impaired. Asserts, per client and per
transport, that every acknowledged publication was delivered or its gap reported
(`recovered: false` on resume): no silent loss, no duplicate, every subscriber caught up at the
end, no subscription left on any node. Bounded in time, loopback only. See bench/README.md.

    bench/chaos/chaos.py [--brokers redis,nats] [--conns 300] [--duration 90] [--no-build]
"""

import argparse
import asyncio
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "soak"))
import sbproc  # noqa: E402


class Proxy:
    """Forwards 127.0.0.1:port to a node. Impairment (set from any thread): `delay` seconds added
    per chunk (random up to that), `cut` probability per chunk of resetting both sides, `stall`
    until a time (nothing forwarded, connections kept)."""

    def __init__(self, loop, target_port):
        self.loop, self.target_port = loop, target_port
        self.delay, self.cut, self.stall_until = 0.0, 0.0, 0.0
        self.port = sbproc.free_port()
        self.cuts = 0
        asyncio.run_coroutine_threadsafe(self._listen(), loop).result()

    async def _listen(self):
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port, backlog=4096)

    async def _client(self, reader, writer):
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pipes = [asyncio.ensure_future(self._pipe(reader, up_w)), asyncio.ensure_future(self._pipe(up_r, writer))]
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for p in pipes:
            p.cancel()
        for w in (writer, up_w):
            w.transport.abort()

    async def _pipe(self, reader, writer):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            while time.time() < self.stall_until:
                await asyncio.sleep(0.1)
            if self.delay:
                await asyncio.sleep(random.random() * self.delay)
            if self.cut and random.random() < self.cut:
                self.cuts += 1
                return
            writer.write(data)
            await writer.drain()


def run_broker(kind, a, loop):
    print(f"== {kind}: 3 nodes, {a.conns} subscribers, {a.duration:.0f}s", flush=True)
    broker = sbproc.Broker(kind)
    nodes = [sbproc.Node(broker.url) for _ in range(3)]
    proxies = [Proxy(loop, n.port) for n in nodes]
    urls = [f"http://127.0.0.1:{p.port}" for p in proxies]
    apis = [n.url for n in nodes]
    cmd = ["nice", "-n", "10", sbproc.FLEET, "--conns", str(a.conns), "--duration", str(a.duration),
           "--rate", str(a.rate), "--channels", str(a.channels), "--drop-min", "3", "--drop-max", "8",
           "--settle", "90", "--warmup", str(a.duration), "--seed", str(a.seed)]
    for u in urls:
        cmd += ["--url", u]
    for u in apis:
        cmd += ["--api", u]
    fleet = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errs = []
    threading.Thread(target=lambda: errs.extend(fleet.stderr), daemon=True).start()
    t0 = time.time()
    events = []

    def at(frac):
        delay = t0 + a.duration * frac - time.time()
        if delay > 0:
            time.sleep(delay)

    def log(what):
        events.append(f"{time.time() - t0:6.1f}s {what}")
        print(f"  {events[-1]}", flush=True)

    try:
        at(0.15)
        log("kill -9 node 2")
        nodes[1].kill9()
        time.sleep(5)
        nodes[1].start()
        log("node 2 restarted")
        at(0.40)
        log(f"broker {kind} killed")
        broker.kill9()
        time.sleep(3)
        broker.start()
        log(f"broker {kind} restarted")
        at(0.60)
        log("proxies: delay up to 300 ms, cut 2% of chunks, node 1 stalled 8 s")
        for p in proxies:
            p.delay, p.cut = 0.3, 0.02
        proxies[0].stall_until = time.time() + 8
        time.sleep(15)
        for p in proxies:
            p.delay, p.cut = 0.0, 0.0
        log("proxies healthy")
        at(0.80)
        log("kill -9 node 3")
        nodes[2].kill9()
        time.sleep(3)
        nodes[2].start()
        log("node 3 restarted")
        out, _ = fleet.communicate(timeout=a.duration + 400)
    finally:
        if fleet.poll() is None:
            fleet.kill()
        for n in nodes:
            n.stop()
        broker.stop()
        for p in proxies:
            loop.call_soon_threadsafe(p.server.close)
    print(out, end="")
    result = sbproc.parse_result(out)
    cuts = sum(p.cuts for p in proxies)
    print(f"  proxy cuts: {cuts}")
    return result, events


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", default="redis,nats")
    ap.add_argument("--conns", type=int, default=300)
    ap.add_argument("--duration", type=float, default=90)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--channels", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        sbproc.build()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    summary, ok = [], True
    for kind in a.brokers.split(","):
        result, _ = run_broker(kind, a, loop)
        good = bool(result) and result["lost"] == 0 and result["duplicated"] == 0 and result["behind"] == 0 \
            and result["leaked_after_leave"] == 0
        ok &= good
        if result:
            summary.append(f"{kind}: {'OK' if good else 'FAIL'} acked {result['acked']} (failed {result['publish_failed']}), "
                           f"lost {result['lost']}, duplicated {result['duplicated']}, gaps reported "
                           f"{result['gaps_reported']}, behind {result['behind']}, leaked {result['leaked_after_leave']}")
        else:
            summary.append(f"{kind}: FAIL (no result from the fleet)")
    print("== summary")
    for line in summary:
        print("  " + line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
