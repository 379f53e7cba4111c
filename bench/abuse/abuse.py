#!/usr/bin/env python3
"""Abuse: what hostile clients do to everyone else. One release node on loopback; a probe
measures publish-to-delivery latency (POST /api/publish -> an SSE subscriber) with and without
each abuse running, and the server's RSS is sampled:

- slowloris: thousands of sockets sending a request header a byte a second;
- a WebSocket client that subscribes and never reads while its channel is flooded;
- thousands of subscriptions from one WebSocket connection;
- oversized request headers and bodies.

Reports what the server does today (refusals, closes, memory); re-run it after a change to
compare. Bounded in time, loopback only.

    bench/abuse/abuse.py [--slowloris 3000] [--seconds 20] [--no-build]
"""

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "soak"))
import sbproc  # noqa: E402


class Probe:
    """An SSE subscriber on `probe:lat` and a keep-alive publisher; `measure` gives latencies."""

    def __init__(self, port):
        self.port = port
        self.waiting = {}

    async def start(self):
        r, w = await asyncio.open_connection("127.0.0.1", self.port)
        w.write(b"GET /sse?channel=probe:lat HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        await w.drain()
        self.sse = (r, w)
        self.reader_task = asyncio.ensure_future(self._read(r))
        self.pub = await asyncio.open_connection("127.0.0.1", self.port)
        await asyncio.sleep(0.3)

    async def _read(self, r):
        while True:
            line = await r.readline()
            if not line:
                return
            if b'"seq":' in line:
                i = line.index(b'"seq":') + 6
                while line[i:i + 1] == b" ":
                    i += 1
                j = i
                while j < len(line) and line[j:j + 1].isdigit():
                    j += 1
                fut = self.waiting.pop(int(line[i:j]), None)
                if fut and not fut.done():
                    fut.set_result(time.perf_counter())

    async def publish(self, seq):
        body = json.dumps({"channel": "probe:lat", "data": {"seq": seq}}, separators=(",", ":")).encode()
        r, w = self.pub
        w.write(b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0].split(b":")[1])
        await r.readexactly(length)

    async def measure(self, n=150, every=0.02, timeout=5.0):
        """Latencies in ms; a probe that times out counts as `timeout`."""
        out = []
        for seq in range(n):
            seq += int(time.time() * 1000) * 1000
            fut = asyncio.get_running_loop().create_future()
            self.waiting[seq] = fut
            t0 = time.perf_counter()
            try:
                await asyncio.wait_for(self.publish(seq), timeout)
                t1 = await asyncio.wait_for(fut, timeout)
                out.append((t1 - t0) * 1000)
            except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError):
                out.append(timeout * 1000)
            await asyncio.sleep(every)
        return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def ws_frame(text, opcode=1):
    """A masked client frame."""
    payload = text.encode() if isinstance(text, str) else text
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def ws_open(port, rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    r, w = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    w.write((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
             f"Sec-WebSocket-Protocol: switchboard.v1.json\r\n\r\n").encode())
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(f"no upgrade: {head[:80]!r}")
    return r, w


async def ws_read_text(r):
    """One server frame's payload (servers do not mask)."""
    b0, b1 = await r.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await r.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await r.readexactly(8), "big")
    return b0 & 0x0F, await r.readexactly(n)


class Rss:
    def __init__(self, pid):
        self.pid, self.peak, self.task = pid, 0, None

    async def _run(self):
        while True:
            self.peak = max(self.peak, sbproc.rss_kib(self.pid) or 0)
            await asyncio.sleep(0.25)

    def start(self):
        self.peak = sbproc.rss_kib(self.pid) or 0
        self.task = asyncio.ensure_future(self._run())

    def stop(self):
        self.task.cancel()
        return self.peak


async def slowloris(port, n, stop):
    """n sockets, each sending a header byte a second until `stop`; returns how many the server
    had closed by then."""
    socks = []
    for _ in range(n):
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            socks.append((r, w))
        except OSError:
            break
    closed = 0
    while not stop.is_set():
        await asyncio.sleep(1)
        for r, w in socks:
            if not w.is_closing():
                try:
                    w.write(b"a")
                except OSError:
                    pass
    for r, w in socks:
        if r.at_eof() or w.is_closing():
            closed += 1
        else:
            try:
                await asyncio.wait_for(r.read(1), 0.001)
                closed += 1 if r.at_eof() else 0
            except (asyncio.TimeoutError, OSError):
                pass
        w.transport.abort()
    return len(socks), closed


async def never_reader(port, stop, size, count):
    """Subscribes to abuse:flood and never reads, while `count` publications of `size` bytes go
    to that channel; returns whether the server closed the connection."""
    r, w = await ws_open(port, rcvbuf=4096)
    w.write(ws_frame(json.dumps({"id": 1, "connect": {}})))
    w.write(ws_frame(json.dumps({"id": 2, "subscribe": {"channel": "abuse:flood"}})))
    await w.drain()
    pr, pw = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"channel": "abuse:flood", "data": {"x": "y" * size}}).encode()
    req = (b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    for _ in range(count):
        if stop.is_set():
            break
        pw.write(req)
        await pw.drain()
        head = await pr.readuntil(b"\r\n\r\n")
        length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0].split(b":")[1])
        await pr.readexactly(length)
    await stop.wait()
    # Now read what is there: a close frame (or EOF) means the server cut the slow consumer.
    cut = False
    try:
        while True:
            op, _ = await asyncio.wait_for(ws_read_text(r), 2)
            if op == 8:
                cut = True
                break
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
        cut = r.at_eof()
    w.transport.abort()
    pw.transport.abort()
    return cut


async def many_subscriptions(port, n):
    r, w = await ws_open(port)
    w.write(ws_frame(json.dumps({"id": 1, "connect": {}})))
    for i in range(n):
        w.write(ws_frame(json.dumps({"id": i + 2, "subscribe": {"channel": f"abuse:s{i}"}})))
    await w.drain()
    ok = refused = 0
    codes = {}
    try:
        while ok + refused < n + 1:
            op, payload = await asyncio.wait_for(ws_read_text(r), 10)
            if op == 8:
                break
            for line in payload.split(b"\n"):
                if not line.strip():
                    continue
                m = json.loads(line)
                if "error" in m:
                    refused += 1
                    codes[m["error"].get("code")] = codes.get(m["error"].get("code"), 0) + 1
                elif "id" in m:
                    ok += 1
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
        pass
    w.transport.abort()
    return ok - 1, refused, codes


async def raw_request(port, data, read_timeout=10):
    """Sends `data`, returns the status line (or what happened)."""
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(data)
        await asyncio.wait_for(w.drain(), read_timeout)
        line = await asyncio.wait_for(r.readline(), read_timeout)
        w.transport.abort()
        return line.decode(errors="replace").strip() or "connection closed"
    except asyncio.TimeoutError:
        return "no answer"
    except (OSError, asyncio.IncompleteReadError) as e:
        return f"{type(e).__name__}"


async def phase(name, probe, rss, abuse=None, settle=2.0):
    """Runs the probe alone (abuse None) or alongside an abuse coroutine factory."""
    rss.start()
    stop = asyncio.Event()
    task = asyncio.ensure_future(abuse(stop)) if abuse else None
    if task:
        await asyncio.sleep(settle)
    lat = await probe.measure()
    stop.set()
    detail = await task if task else None
    peak = rss.stop()
    line = f"{name:<28} p50 {pct(lat, 0.5):7.2f} ms  p99 {pct(lat, 0.99):8.2f} ms  RSS peak {peak / 1024:7.1f} MiB"
    print(line + (f"  {detail}" if detail is not None else ""), flush=True)
    return {"phase": name, "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "rss_peak_kib": peak, "detail": str(detail)}


async def run(a, node):
    port = node.port
    probe = Probe(port)
    await probe.start()
    rss = Rss(node.proc.pid)
    results = [await phase("baseline", probe, rss)]

    async def slow(stop):
        n, closed = await slowloris(port, a.slowloris, stop)
        return f"{n} slowloris sockets, {closed} closed by the server"
    results.append(await phase(f"slowloris x{a.slowloris}", probe, rss, slow, settle=a.seconds))
    results.append(await phase("baseline again", probe, rss))

    async def flood(stop):
        cut = await never_reader(port, stop, a.flood_bytes, a.flood_count)
        return f"{a.flood_count} x {a.flood_bytes} B to a reader that never reads; cut by the server: {cut}"
    results.append(await phase("never-reading subscriber", probe, rss, flood, settle=1))

    async def subs(stop):
        ok, refused, codes = await many_subscriptions(port, a.subscriptions)
        return f"{a.subscriptions} subscribes on one connection: {ok} ok, {refused} refused {codes}"
    results.append(await phase(f"{a.subscriptions} subscriptions", probe, rss, subs, settle=0))

    async def big(stop):
        header = await raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        many = await raw_request(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: b\r\n" * 20000 + b"\r\n")
        body = b'{"channel":"abuse:big","data":"' + b"x" * (64 << 20) + b'"}'
        big_body = await raw_request(port, b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body, 30)
        ws_big = "?"
        try:
            r, w = await ws_open(port)
            w.write(ws_frame("[" * 16 + json.dumps({"id": 1, "connect": {}}) + "]" * 16))
            w.write(ws_frame(b"x" * (16 << 20)))
            await w.drain()
            op, payload = await asyncio.wait_for(ws_read_text(r), 10)
            ws_big = f"opcode {op} {payload[:60]!r}"
            w.transport.abort()
        except Exception as e:  # noqa: BLE001 - we report whatever happened
            ws_big = type(e).__name__
        return f"1 MiB header: {header!r}; 20k headers: {many!r}; 64 MiB body: {big_body!r}; 16 MiB WS frame: {ws_big}"
    results.append(await phase("oversized header/body", probe, rss, big, settle=0))
    results.append(await phase("baseline at the end", probe, rss))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slowloris", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=20, help="slowloris runs this long before the probe")
    ap.add_argument("--flood-bytes", type=int, default=60000)
    ap.add_argument("--flood-count", type=int, default=2000)
    ap.add_argument("--subscriptions", type=int, default=5000)
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        sbproc.build()
    node = sbproc.Node()
    print(f"server {node.url} pid {node.proc.pid}", flush=True)
    try:
        results = asyncio.run(run(a, node))
        alive = node.proc.poll() is None
    finally:
        node.stop()
    print("RESULT " + json.dumps({"server_alive": alive, "phases": results}))
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
