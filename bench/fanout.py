#!/usr/bin/env python3
"""Fan-out benchmark: Switchboard vs a minimal Node `ws` broadcast server, same run, interleaved.

With --servers floor,floor-batch the floor (bench/floor/floor.c: the least a fan-out server can do)
runs in the same rounds, and each row is also given as a ratio of the floor's; --pin runs each server
on core 1 and the load generator on core 0 (bench/floor.sh does both).

With --protocols, ours is also measured with STOMP and SockJS (xhr-streaming) subscribers, each
row beside the Node peer's JSON WebSocket row of the same round. See bench/README.md. Everything
runs on loopback, is bounded in time and stops by itself.
Results: a summary table on stdout, JSON and logs in bench/results/<timestamp>/.
"""

import argparse
import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
# Benchmarks open thousands of connections from loopback: lift the per-client limits.
BENCH_LIMITS = {
    "SWITCHBOARD_MAX_CONNECTIONS_PER_IP": "0",
    "SWITCHBOARD_MAX_CONNECTIONS_PER_USER": "0",
    "SWITCHBOARD_MAX_PUBLISH_RATE": "0",
    "SWITCHBOARD_RTC_OFFERS_PER_IP_PER_MINUTE": "0",
}
SERVER_BIN = os.environ.get("FANOUT_SERVER_BIN") or os.path.join(ROOT, "target", "release", "switchboard")
LOADGEN_DIR = os.path.join(BENCH, "loadgen")
# FANOUT_LOADGEN_BIN: a load generator built elsewhere (then not built here).
LOADGEN = os.environ.get("FANOUT_LOADGEN_BIN") or os.path.join(LOADGEN_DIR, "target", "release", "loadgen")
PEER_DIR = os.path.join(BENCH, "peers", "node-ws")
# `--servers base,...`: another build of ours (before a change), measured in the same rounds.
BASE_BIN = os.environ.get("FANOUT_BASE_BIN", "")
FLOOR_SRC = os.path.join(BENCH, "floor", "floor.c")
FLOOR_BIN = os.path.join(BENCH, "floor", "floor")
# --pin: `taskset` prefixes for servers and load generator processes (empty without --pin).
PIN = {"server": [], "loadgen": []}
CLK_TCK = os.sysconf("SC_CLK_TCK")
PER_PROCESS = 5000  # connections per load generator process (the limit is 20,000 files)
# How our server's subscribers connect, by protocol (publishing is always JSON over /ws).
PROTOCOLS = {"json": "ws://127.0.0.1:{port}/ws", "stomp": "ws://127.0.0.1:{port}/stomp",
             "sockjs": "http://127.0.0.1:{port}/sockjs", "sse": "http://127.0.0.1:{port}/sse",
             "stream": "http://127.0.0.1:{port}/stream", "poll": "http://127.0.0.1:{port}/poll"}
# Which protocols each server's subscribers can speak.
SPEAKS = {"ours": set(PROTOCOLS), "base": set(PROTOCOLS), "node": {"json", "sse"}, "floor": {"json", "sse"},
          "floor-batch": {"json", "sse"}, "nats": {"json"}}
# nats-server's WebSocket listener (Debian `nats-server`): its rows are those of the JSON
# protocol, its subscribers and publisher speak NATS (CONNECT/SUB/PUB/MSG/PING) instead.
NATS_SERVER = os.environ.get("FANOUT_NATS_BIN", "nats-server")

# Every load generator process binds its connections to its own 127.0.0.X (ephemeral ports are
# per source address, and closed connections linger in TIME_WAIT for a minute).
_next_source = [10]


def next_source():
    x = _next_source[0]
    _next_source[0] = 10 if x >= 250 else x + 1
    return f"127.0.0.{x}"


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------------------------
# Processes


class Server:
    """A server under test, started on a free port; output goes to a log file."""

    def __init__(self, kind, outdir, tag, env_extra=None):
        self.kind = kind
        self.logpath = os.path.join(outdir, f"{tag}-{kind}.log")
        self.logf = open(self.logpath, "w")
        env = dict(os.environ)
        if kind in ("ours", "base"):
            # The server reads SWITCHBOARD_LOG (not RUST_LOG): no line per connection.
            env.update({"SWITCHBOARD_LOG": "warn"})
            # Thousands of sockets from one address (loopback): lift the per-IP caps.
            env.update({"SWITCHBOARD_HTTP_MAX_SOCKETS_PER_IP": "0", "SWITCHBOARD_HTTP_ACCEPT_RATE_PER_IP": "0"})
            env.update(BENCH_LIMITS)
            env.update(env_extra or {})
            cmd = [BASE_BIN if kind == "base" else SERVER_BIN, "serve", "--listen", "127.0.0.1:0", "--no-demo"]
            pattern = re.compile(r"switchboard listening on http://127\.0\.0\.1:(\d+)")
        elif kind == "nats":
            # Its WebSocket port must be named up front: a free one, taken from the kernel.
            import socket
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ws_port = s.getsockname()[1]
            conf = os.path.join(outdir, f"{tag}-nats.conf")
            with open(conf, "w") as f:
                f.write(f"host: 127.0.0.1\nport: -1\nwebsocket {{\n  host: 127.0.0.1\n  port: {ws_port}\n"
                        "  no_tls: true\n}\n")
            cmd = [NATS_SERVER, "-c", conf]
            pattern = re.compile(r"Listening for websocket clients on ws://127\.0\.0\.1:(\d+)")
        elif kind.startswith("floor"):
            cmd = [FLOOR_BIN] + (["--batch"] if kind == "floor-batch" else [])
            pattern = re.compile(r"floor listening on http://127\.0\.0\.1:(\d+)")
        else:
            env["PORT"] = "0"
            cmd = ["node", os.path.join(PEER_DIR, "server.js")]
            pattern = re.compile(r"node-ws listening on http://127\.0\.0\.1:(\d+)")
        self.proc = subprocess.Popen(PIN["server"] + cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        deadline = time.time() + 15
        while time.time() < deadline:
            with open(self.logpath) as f:
                m = pattern.search(f.read())
            if m:
                self.port = int(m.group(1))
                self.url = f"ws://127.0.0.1:{self.port}/" + ("" if kind == "nats" else "ws")
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{kind} server did not start, see {self.logpath}")

    def sub_url(self, proto):
        """Where `proto` subscribers connect (the Node peer speaks json only)."""
        if proto not in SPEAKS[self.kind]:
            raise ValueError(f"the {self.kind} peer does not speak {proto}")
        if self.kind == "nats":
            return self.url
        return PROTOCOLS[proto].format(port=self.port)

    def wire(self, proto):
        """What the load generator speaks for a `proto` row of this server."""
        return "nats" if self.kind == "nats" else proto

    def cpu_seconds(self):
        return sum(proc_cpu(self.pid))

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


class Subs:
    """One load generator `sub` process."""

    def __init__(self, url, conns, proto="json"):
        self.conns = conns
        self.source = next_source()
        self.proc = subprocess.Popen(
            PIN["loadgen"] + [LOADGEN, "sub", "--url", url, "--conns", str(conns), "--source", self.source,
             "--proto", proto],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1, start_new_session=True)
        self.ready = None

    def readline(self, timeout):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            return None
        return self.proc.stdout.readline().strip()

    def wait_ready(self, timeout):
        deadline = time.time() + timeout
        while self.ready is None and time.time() < deadline:
            line = self.readline(max(0.0, deadline - time.time()))
            if line and line.startswith("ready"):
                self.ready = kv(line)
        return self.ready

    def ask(self, cmd, timeout=10):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.readline(max(0.0, deadline - time.time()))
            if line is None:
                break
            if line.startswith("ready"):
                self.ready = kv(line)
                continue
            return line
        raise RuntimeError(f"load generator did not answer {cmd!r}")

    def stats(self):
        line = self.ask("stats")
        out = kv(line)
        if " error=" in line:  # the first error, spaces and all (it comes last)
            out["error"] = line.split(" error=", 1)[1]
        return out

    def hist(self):
        line = self.ask("hist", timeout=30)
        out = []
        for item in line.split()[1:]:
            v, c = item.split(":")
            out.append((int(v), int(c)))
        return out

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(3)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()


def proc_cpu(pid):
    """(utime, stime) of a process, all threads, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return (0.0, 0.0)
    return (int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)


def kv(line):
    out = {}
    for item in line.split()[1:]:
        if "=" in item:
            k, v = item.split("=", 1)
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
    return out


def open_subs(url, conns, first=False, proto="json"):
    """Starts load generator processes for `conns` more subscribers; waits until all answered."""
    procs = []
    parts = max(2 if first else 1, math.ceil(conns / PER_PROCESS))
    try:
        for i in range(parts):
            n = conns // parts + (1 if i < conns % parts else 0)
            procs.append(Subs(url, n, proto))
        for p in procs:
            r = p.wait_ready(120)
            if r is None:
                raise RuntimeError(f"subscribers not ready after 120 s: {p.stats()}")
            if r.get("failed"):
                raise RuntimeError(f"{r['failed']} subscriptions failed: {p.stats()}")
    except Exception:
        for p in procs:
            p.stop()
        raise
    return procs


# --------------------------------------------------------------------------------------------
# Measurements


def percentile(hist, q):
    total = sum(c for _, c in hist)
    if total == 0:
        return float("nan")
    rank = max(1, math.ceil(q * total))
    seen = 0
    for v, c in hist:
        seen += c
        if seen >= rank:
            return v
    return hist[-1][0]


def merge(hists):
    acc = {}
    for h in hists:
        for v, c in h:
            acc[v] = acc.get(v, 0) + c
    return sorted(acc.items())


def slope(points):
    """Least-squares slope and intercept of [(x, y)]."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    b = sxy / sxx
    return b, my - b * mx


def publish_phase(server, subs, rate, duration, size):
    """Publishes at `rate` for `duration` s and waits for the deliveries to drain."""
    n = sum(s.ready["subscribed"] for s in subs)
    for s in subs:
        if s.ask("reset") != "reset":
            raise RuntimeError("reset failed")
    cpu0 = proc_cpu(server.pid)
    lg0 = sum(sum(proc_cpu(s.proc.pid)) for s in subs)
    t0 = time.time()
    pub = subprocess.run(
        PIN["loadgen"] + [LOADGEN, "pub", "--url", server.url, "--rate", str(rate), "--duration", str(duration),
         "--size", str(size), "--source", next_source(), "--proto", server.wire("json")],
        capture_output=True, text=True, timeout=duration + 60)
    pline = [l for l in pub.stdout.splitlines() if l.startswith("published")]
    if not pline:
        raise RuntimeError(f"publisher failed: {pub.stdout} {pub.stderr}")
    p = kv(pline[0])
    expected = p["sent"] * n
    # Drain: until everything arrived, or nothing arrived for 15 s (an overloaded Node peer stops
    # writing while it runs a long synchronous broadcast loop), bounded at 120 s.
    last_total, last_change, deadline = -1, time.time(), time.time() + 120
    while time.time() < deadline:
        st = [s.stats() for s in subs]
        total = sum(x["deliveries"] for x in st)
        if total >= expected:
            break
        if total != last_total:
            last_total, last_change = total, time.time()
        elif time.time() - last_change > 15:
            break
        time.sleep(0.2)
    cpu1 = proc_cpu(server.pid)
    lg1 = sum(sum(proc_cpu(s.proc.pid)) for s in subs)
    st = [s.stats() for s in subs]
    total = sum(x["deliveries"] for x in st)
    closed = sum(x["closed"] for x in st)
    codes = ",".join(str(x["codes"]) for x in st if "codes" in x)
    errors = [x["error"] for x in st if "error" in x]
    last = max(x["last_delivery_us"] for x in st) / 1e6
    wall = max(last - t0, 1e-6)
    h = merge(s.hist() for s in subs)
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    cpu = user + system
    return {
        "subscribers": n, "rate": rate, "duration": duration, "sent": p["sent"],
        "pub_rate": p["rate"], "pub_errors": p["errors"], "expected": expected,
        "deliveries": total, "complete": total / expected if expected else 0.0,
        "wall_s": wall, "deliveries_per_s": total / wall, "server_cpu_s": cpu,
        "deliveries_per_cpu_s": total / cpu if cpu > 0 else float("inf"),
        "server_user_s": user, "server_sys_s": system, "loadgen_cpu_s": lg1 - lg0,
        "p50_ms": percentile(h, 0.50) / 1000, "p99_ms": percentile(h, 0.99) / 1000,
        "p999_ms": percentile(h, 0.999) / 1000, "max_ms": (h[-1][0] / 1000) if h else float("nan"),
        "closed": closed, "close_codes": codes, "bad": sum(x.get("bad", 0) for x in st),
        "sockjs_reopened": sum(x.get("reopened", 0) for x in st),
        "subscriber_error": errors[0] if errors else None,
    }


def stop_all(subs, server):
    for s in subs:
        s.stop()
    if server:
        server.stop()


def label(kind, proto):
    """A row's name: `ours` and `node` for the JSON WebSocket, `ours-stomp`, `ours-sockjs`."""
    return kind if proto == "json" else f"{kind}-{proto}"


def run_one(kind, n, rates, args, outdir, tag, memory_steps=None, proto="json"):
    """One server, `n` subscribers speaking `proto` (opened in steps, RSS after each), one
    publishing window per rate; a list of results, the memory figures on the first."""
    name = label(kind, proto)
    server = Server(kind, outdir, f"{tag}-{proto}" if proto != "json" else tag)
    subs = []
    try:
        time.sleep(0.5)
        base_rss = server.rss_kib()
        mem = []
        steps = memory_steps or [n]
        have = 0
        for target in steps:
            subs += open_subs(server.sub_url(proto), target - have, first=not subs, proto=server.wire(proto))
            have = target
            time.sleep(args.settle)
            mem.append((target, server.rss_kib()))
        out = []
        for rate in rates:
            r = publish_phase(server, subs, rate, args.duration, args.size)
            r.update({"server": name, "kind": kind, "proto": proto, "tag": tag,
                      "server_log": os.path.basename(server.logpath)})
            if not out:
                r.update({"rss_base_kib": base_rss, "rss_kib": mem})
                if len(mem) >= 2:
                    r["kib_per_conn"], r["rss_intercept_kib"] = slope(mem)
            out.append(r)
            time.sleep(1)
        return out
    finally:
        stop_all(subs, server)


class RateSearch:
    """One server's rising-rate search: at --search-subs subscribers, the publish rate rises
    x--search-step per phase from --search-start until a phase fails (anything lost, a subscriber
    closed, the publisher behind its pace, or p99 over --search-p99 ms), then two bisection
    steps between the last good and the first bad rate."""

    def __init__(self, kind, args, outdir):
        self.kind, self.args, self.outdir = kind, args, outdir
        self.server, self.subs, self.phases = None, [], []
        self.rate, self.best, self.worst, self.bisections = args.search_start, None, None, 2

    def setup(self):
        stop_all(self.subs, self.server)
        self.server = Server(self.kind, self.outdir, f"maxrate-{self.kind}-{len(self.phases)}")
        self.subs = open_subs(self.server.url, self.args.search_subs, first=True,
                              proto=self.server.wire("json"))
        time.sleep(self.args.settle)

    def next_rate(self):
        """The rate of this server's next phase; None when its search is over."""
        if self.worst is None:
            return self.rate if self.rate <= self.args.search_max else None
        if self.bisections and self.best:
            mid = (self.best + self.worst) // 2
            if mid not in (self.best, self.worst):
                return mid
        return None

    def phase(self, rate):
        a = self.args
        r = publish_phase(self.server, self.subs, rate, a.search_duration, a.size)
        r["ok"] = (r["deliveries"] >= r["expected"] and r["closed"] == 0 and r["p99_ms"] <= a.search_p99
                   and r["pub_rate"] >= 0.95 * r["rate"])
        self.phases.append(r)
        log(f"  {self.kind} max-rate search N={a.search_subs}: {rate:>6} msg/s -> "
            f"{r['deliveries_per_s']:>10,.0f} deliveries/s, complete {r['complete']:.4f}, "
            f"p99 {r['p99_ms']:.1f} ms, closed {r['closed']}, "
            f"{r['deliveries_per_cpu_s']:,.0f} per CPU-s {'ok' if r['ok'] else 'FAILED'}")
        if self.worst is None:
            if r["ok"]:
                self.best, self.rate = rate, max(rate + 1, int(rate * a.search_step))
            else:
                self.worst = rate
        else:
            self.bisections -= 1
            if r["ok"]:
                self.best = rate
            else:
                self.worst = rate
        if r["closed"] or not self.server.alive():
            self.setup()

    def result(self):
        half = None
        if self.best:
            half = publish_phase(self.server, self.subs, max(1, self.best // 2), self.args.duration,
                                 self.args.size)
            log(f"  {self.kind} at half of max ({self.best // 2} msg/s): p50 {half['p50_ms']:.2f} ms, "
                f"p99 {half['p99_ms']:.2f} ms, max {half['max_ms']:.1f} ms")
        return {"server": self.kind, "subscribers": self.args.search_subs, "max_rate": self.best,
                "first_failing_rate": self.worst, "phases": self.phases, "half": half}


def find_max_rates(kinds, args, outdir):
    """The rising-rate searches of `kinds`, interleaved: every server is set up at once (an idle
    one costs nothing), and each step runs one phase of each search, in reverse order every other
    step, since the first server of a round runs slower. Run one after the other, the searches
    followed the machine's load more than the servers."""
    searches = [RateSearch(k, args, outdir) for k in kinds]
    try:
        for s in searches:
            s.setup()
        step = 0
        while True:
            todo = [(s, s.next_rate()) for s in searches]
            todo = [(s, rate) for s, rate in todo if rate is not None]
            if not todo:
                break
            for s, rate in (todo if step % 2 == 0 else todo[::-1]):
                s.phase(rate)
            step += 1
        return [s.result() for s in searches]
    finally:
        for s in searches:
            stop_all(s.subs, s.server)


# --------------------------------------------------------------------------------------------


def build(args):
    if args.skip_build:
        return
    log("building: cargo build --release (server), loadgen, npm ci (peer)")
    if not os.environ.get("FANOUT_SERVER_BIN"):
        subprocess.run(["nice", "cargo", "build", "--release", "--bin", "switchboard"], cwd=ROOT,
                       check=True)
    # Its own target dir, whatever CARGO_TARGET_DIR says: LOADGEN names the binary there.
    if not os.environ.get("FANOUT_LOADGEN_BIN"):
        target = os.path.join(LOADGEN_DIR, "target")
        subprocess.run(["nice", "cargo", "build", "--release", "--target-dir", target], cwd=LOADGEN_DIR,
                       check=True)
    if "nats" in args.kinds and not shutil.which(NATS_SERVER):
        sys.exit(f"{NATS_SERVER} not found: apt-get install nats-server, or --servers without nats")
    if any(k.startswith("floor") for k in args.kinds):
        subprocess.run(["cc", "-O2", "-o", FLOOR_BIN, FLOOR_SRC], check=True)
    if not os.path.isdir(os.path.join(PEER_DIR, "node_modules", "ws")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PEER_DIR, check=True)


def fmt_row(r):
    mark = "*" if r["complete"] < 0.99 else " "
    return (f"{r['server']:<11} {r['subscribers']:>6} {r['rate']:>6} {r['deliveries_per_s']:>12,.0f} "
            f"{r['complete']:>6.3f}{mark}{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['max_ms']:>8.1f} "
            f"{r['server_cpu_s']:>7.2f} {r['server_sys_s'] / max(r['server_cpu_s'], 1e-9):>4.0%} "
            f"{r['deliveries_per_cpu_s']:>12,.0f} {r['loadgen_cpu_s']:>7.2f} {r['closed']:>6}")


def median(xs):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def floor_ratios(runs, sizes, summary):
    """Per load and protocol: each server's deliveries per CPU-second against the floor's,
    floor-batch's and the Node peer's rows of the same round and protocol (median of the rounds)."""
    out = []
    for n, rates, rows in sizes:
        for rate in rates:
            for proto in dict.fromkeys(p for _, p in rows):
                kinds = [k for k, p in rows if p == proto]
                refs = [k for k in ("floor", "floor-batch", "node", "base") if k in kinds]
                if not refs:
                    continue
                by = {k: {r["round"]: r for r in runs if r["kind"] == k and r["proto"] == proto
                          and r["subscribers"] == n and r["rate"] == rate} for k in kinds}
                out.append(f"N={n}, {rate} msg/s, {proto}: medians over rounds; ratios of deliveries/CPU-s per round")
                out.append("    server        deliv/cpu-s  user%  p50(ms)  p99(ms)   compl  "
                           + "  ".join(f"vs {k:<11}" for k in refs))
                for k in kinds:
                    rs = list(by[k].values())
                    if not rs:
                        continue
                    user = median([r["server_user_s"] / max(r["server_cpu_s"], 1e-9) for r in rs])
                    row = (f"    {k:<12} {median([r['deliveries_per_cpu_s'] for r in rs]):>12,.0f} {user:>6.0%} "
                           f"{median([r['p50_ms'] for r in rs]):>8.2f} {median([r['p99_ms'] for r in rs]):>8.2f} "
                           f"{min(r['complete'] for r in rs):>7.3f}")
                    for ref in refs:
                        ratios = [r["deliveries_per_cpu_s"] / by[ref][r["round"]]["deliveries_per_cpu_s"]
                                  for r in rs if r["round"] in by[ref]]
                        m = median(ratios)
                        summary[f"vs_{ref}_{k}_{proto}_{n}_{rate}"] = m
                        row += f"  {m:>13.2f}"
                    out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 2)),
                    help="rounds per subscriber count, the servers in reverse order every other round (default 2)")
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--big", type=int, default=10000)
    ap.add_argument("--rates-small", default="50,200",
                    help="publication rates (msg/s) with --small subscribers (default 50,200: "
                         "50k and 200k deliveries/s)")
    ap.add_argument("--rates-big", default="5,20,50",
                    help="publication rates (msg/s) with --big subscribers (default 5,20,50: "
                         "50k, 200k and 500k deliveries/s)")
    ap.add_argument("--duration", type=float, default=6, help="publishing window, s")
    ap.add_argument("--size", type=int, default=64, help="publish payload size, bytes")
    ap.add_argument("--settle", type=float, default=1.5, help="pause before reading RSS, s")
    ap.add_argument("--search-subs", type=int, default=1000, help="subscribers in the max-rate search")
    ap.add_argument("--search-p99", type=float, default=50, help="max-rate search: highest p99 allowed, ms")
    ap.add_argument("--search-servers", default="",
                    help="servers searched, a list (default: every --servers one that speaks json)")
    ap.add_argument("--search-start", type=int, default=50)
    ap.add_argument("--search-step", type=float, default=1.4)
    ap.add_argument("--search-max", type=int, default=10000)
    ap.add_argument("--search-duration", type=float, default=4)
    ap.add_argument("--no-search", action="store_true", help="skip the max-rate search")
    ap.add_argument("--only", choices=list(SPEAKS), help="run one server only")
    ap.add_argument("--servers", default="ours,node",
                    help="the servers of each round, in order: ours, node, floor, floor-batch, "
                         "base (ours built from FANOUT_BASE_BIN, e.g. before a change) (default ours,node)")
    ap.add_argument("--pin", action="store_true",
                    help="servers on core 1 (taskset -c 1), load generator on core 0")
    ap.add_argument("--protocols", default="json",
                    help="how our server's subscribers subscribe at --small, one row each, beside "
                         "the Node peer's json row: a list of json, stomp (STOMP 1.2 over a "
                         "WebSocket at /stomp), sockjs (the JSON protocol over SockJS "
                         "xhr_streaming at /sockjs), sse (GET /sse; every server but ours "
                         "only speaks json and sse); default json. Publishing is always JSON over /ws")
    ap.add_argument("--no-big", action="store_true", help="skip the --big subscriber rows")
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    protocols = [x.strip() for x in args.protocols.split(",") if x.strip()]
    if not protocols or any(p not in PROTOCOLS for p in protocols) or len(set(protocols)) < len(protocols):
        sys.exit(f"--protocols: a list of {', '.join(PROTOCOLS)}")

    args.kinds = [args.only] if args.only else [k.strip() for k in args.servers.split(",") if k.strip()]
    if not args.kinds or any(k not in SPEAKS for k in args.kinds):
        sys.exit(f"--servers: a list of {', '.join(SPEAKS)}")
    if args.pin:
        PIN["server"], PIN["loadgen"] = ["taskset", "-c", "1"], ["taskset", "-c", "0"]
    build(args)
    for path in (SERVER_BIN, LOADGEN):
        if not os.path.exists(path):
            sys.exit(f"missing {path}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(BENCH, "results", stamp)
    os.makedirs(outdir, exist_ok=True)
    started = time.time()
    kinds = args.kinds
    rates_small = [int(x) for x in args.rates_small.split(",")]
    rates_big = [int(x) for x in args.rates_big.split(",")]
    big_steps = sorted({min(args.big, s) for s in (1000, 4000, 7000, args.big)})
    # The rows of each round, in order: at --small, ours with each protocol, then the Node peer
    # (json only); at --big, ours and node with json.
    small_rows = [(k, p) for p in protocols for k in kinds if p in SPEAKS[k]]
    big_rows = [(k, "json") for k in kinds]
    sizes = [(args.small, rates_small, small_rows)]
    if not args.no_big:
        sizes.append((args.big, rates_big, big_rows))
    runs, failures = [], []
    log(f"fan-out benchmark, results in {outdir}")
    for rnd in range(1, args.rounds + 1):
        for n, rates, rows in sizes:
            # Every other round in the reverse order: the first server of a round runs slower
            # (in five paired runs the second had the lower p99 every time, whichever build it
            # was), so each server is first as often as last.
            for kind, proto in (rows if rnd % 2 else rows[::-1]):
                tag = f"r{rnd}-{n}"
                name = label(kind, proto)
                try:
                    results = run_one(kind, n, rates, args, outdir, tag,
                                      memory_steps=big_steps if n == args.big else None, proto=proto)
                except RuntimeError as e:
                    # One protocol failing should not lose the other rows: say why, go on.
                    failures.append({"round": rnd, "server": name, "subscribers": n, "error": str(e)})
                    log(f"  round {rnd} {name:<11} N={n:>6}: FAILED: {e}")
                    continue
                for r in results:
                    r["round"] = rnd
                    runs.append(r)
                    extra = (f", RSS slope {r['kib_per_conn']:.2f} KiB/conn" if "kib_per_conn" in r else "")
                    if r["subscriber_error"]:
                        extra += f", subscriber error: {r['subscriber_error']}"
                    if r["sockjs_reopened"]:
                        extra += f", xhr_streaming responses reopened {r['sockjs_reopened']}"
                    log(f"  round {rnd} {name:<11} N={n:>6} rate={r['rate']}: "
                        f"{r['deliveries_per_s']:,.0f} deliveries/s, {r['deliveries_per_cpu_s']:,.0f} per CPU-s "
                        f"(user {r['server_user_s']:.2f} s, sys {r['server_sys_s']:.2f} s, loadgen {r['loadgen_cpu_s']:.2f} s), "
                        f"p50 {r['p50_ms']:.2f} / p99 {r['p99_ms']:.2f} / max {r['max_ms']:.1f} ms, "
                        f"complete {r['complete']:.3f}, closed {r['closed']}{extra}")
    search = []
    searched = [k.strip() for k in args.search_servers.split(",") if k.strip()] or \
        [k for k in kinds if "json" in SPEAKS[k]]
    if searched and not args.no_search:
        log(f"max sustainable rate, {', '.join(searched)} interleaved, N={args.search_subs}, "
            f"p99 <= {args.search_p99:g} ms, nothing lost")
        search = find_max_rates(searched, args, outdir)

    # Summary.
    lines = []
    lines.append("")
    lines.append(f"Fan-out benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
                 f"payload {args.size} B, {args.duration:g} s windows, {args.rounds} rounds)")
    lines.append("")
    lines.append("server         subs   rate  deliveries/s  compl  p50(ms)  p99(ms)  max(ms)  cpu(s)  sys  deliv/cpu-s  lg-cpu  closed")
    for r in runs:
        lines.append(fmt_row(r))
    if any(r["complete"] < 0.99 for r in runs):
        lines.append("* the drain stopped before every delivery arrived: CPU time includes work for "
                     "deliveries not yet written")
    for f in failures:
        lines.append(f"FAILED round {f['round']} {f['server']} N={f['subscribers']}: {f['error']}")
    lines.append("")
    summary = {}
    for n, rates, rows in sizes:
        names = [label(k, p) for k, p in rows]
        for rate in rates:
            per = {k: [r for r in runs if r["server"] == k and r["subscribers"] == n
                       and r["rate"] == rate] for k in names}
            table = []
            for k in names:
                if not per[k]:
                    continue
                s = summary[f"{k}_{n}_{rate}"] = {
                    "deliveries_per_cpu_s": median([r["deliveries_per_cpu_s"] for r in per[k]]),
                    "deliveries_per_s": median([r["deliveries_per_s"] for r in per[k]]),
                    "p50_ms": median([r["p50_ms"] for r in per[k]]),
                    "p99_ms": median([r["p99_ms"] for r in per[k]]),
                    "max_ms": max(r["max_ms"] for r in per[k]),
                    "complete": min(r["complete"] for r in per[k]),
                }
                lines.append(f"median {k:<11} N={n:>6} rate={rate:>4}: {s['deliveries_per_s']:>10,.0f} deliveries/s, "
                             f"{s['deliveries_per_cpu_s']:>10,.0f} deliveries/CPU-s, p50 {s['p50_ms']:.2f} ms, "
                             f"p99 {s['p99_ms']:.2f} ms, max {s['max_ms']:.1f} ms")
            node = {r["round"]: r for r in per.get("node", [])}
            for k in names:
                if k == "node" or not node:
                    continue
                # Each of our rows against the Node peer's row of the same round.
                pairs = [(a, node[a["round"]]) for a in per[k] if a["round"] in node]
                if not pairs:
                    continue
                ratios = [a["deliveries_per_cpu_s"] / b["deliveries_per_cpu_s"] for a, b in pairs]
                p50s = [a["p50_ms"] / b["p50_ms"] for a, b in pairs]
                p99s = [a["p99_ms"] / b["p99_ms"] for a, b in pairs]
                summary["ratio_" + (f"{n}_{rate}" if k == "ours" else f"{k}_{n}_{rate}")] = median(ratios)
                summary[f"latency_ratio_{k}_{n}_{rate}"] = {"p50": median(p50s), "p99": median(p99s)}
                table.append((k, median(ratios), median(p50s), median(p99s)))
                who = "ours/node" if k == "ours" else f"{k}/node"
                lines.append(f"  deliveries per CPU-s {who} at N={n}, {rate} msg/s: median {median(ratios):.2f} "
                             f"(per round: {', '.join(f'{x:.2f}' for x in ratios)}); "
                             f"latency {who}: p50 {median(p50s):.3g}, p99 {median(p99s):.3g}"
                             + ("   target >= 3" if n == args.big and k == "ours" else ""))
            if len(table) > 1:
                # Also each protocol against our json row of the same round: what the protocol
                # costs, without the Node peer's own noise in the ratio.
                ours = {r["round"]: r for r in per.get("ours", [])}
                lines.append(f"  N={n}, {rate} msg/s, medians:")
                lines.append("    row            deliv/cpu-s  vs node  vs ours   p50(ms)  p99(ms)  compl")
                for k, ratio, _, _ in table + [("node", 1.0, 0, 0)]:
                    s = summary[f"{k}_{n}_{rate}"]
                    vs_ours = median([r["deliveries_per_cpu_s"] / ours[r["round"]]["deliveries_per_cpu_s"]
                                      for r in per[k] if r["round"] in ours])
                    if k != "ours" and not math.isnan(vs_ours):
                        summary[f"vs_ours_{k}_{n}_{rate}"] = vs_ours
                    lines.append(f"    {k:<12} {s['deliveries_per_cpu_s']:>13,.0f} {ratio:>8.2f} {vs_ours:>8.2f} "
                                 f"{s['p50_ms']:>9.2f} {s['p99_ms']:>8.2f} {s['complete']:>6.3f}")
    for k in kinds:
        slopes = [r["kib_per_conn"] for r in runs if r["server"] == k and "kib_per_conn" in r]
        if slopes:
            summary[f"{k}_kib_per_conn"] = median(slopes)
            pts = [r["rss_kib"] for r in runs if r["server"] == k and "kib_per_conn" in r][0]
            lines.append(f"RSS per idle subscribed connection, {k}: median slope {median(slopes):.2f} KiB/conn "
                         f"(per round: {', '.join(f'{x:.2f}' for x in slopes)}; first round "
                         f"{', '.join(f'{n}:{v / 1024:.0f}MiB' for n, v in pts)})"
                         + ("   target <= 8" if k == "ours" else ""))
    for sr in search:
        best = sr["max_rate"]
        lines.append(f"max rate, {sr['server']}, N={sr['subscribers']} (p99 <= {args.search_p99:g} ms, nothing lost): "
                     + (f"{best} msg/s ({best * sr['subscribers']:,} deliveries/s)" if best else
                        f"below {args.search_start} msg/s")
                     + f", first failing {sr['first_failing_rate']}")
        if sr["half"]:
            h = sr["half"]
            lines.append(f"  at half ({h['rate']} msg/s, {h['deliveries_per_s']:,.0f} deliveries/s): "
                         f"p50 {h['p50_ms']:.2f} ms, p99 {h['p99_ms']:.2f} ms, max {h['max_ms']:.1f} ms")
    lines += floor_ratios(runs, sizes, summary)
    lines.append(f"total time {time.time() - started:.0f} s")
    text = "\n".join(lines)
    log(text)
    with open(os.path.join(outdir, "summary.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"args": vars(args), "runs": runs, "failures": failures, "search": search,
                   "summary": summary}, f, indent=1)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
