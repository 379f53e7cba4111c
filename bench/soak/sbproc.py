"""Process helpers shared by bench/soak, bench/chaos and bench/abuse: free ports, a release
Switchboard node, a Redis or NATS broker, the fleet binary. Loopback only; every process is
started in its own session and killed by its pid."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SWITCHBOARD = os.environ.get("SWITCHBOARD_RELEASE_BIN", os.path.join(TARGET, "release", "switchboard"))
FLEET = os.path.join(TARGET, "release", "fleet")


def build():
    """cargo build --release of the server and the fleet (nice'd: the machine is shared)."""
    subprocess.run(["nice", "-n", "10", "cargo", "build", "--release", "--bin", "switchboard",
                    "-p", "switchboard-soak"], cwd=ROOT, check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# Every client of these runs comes from loopback: the per-address and per-user limits would
# refuse the fleet (they are tested in tests/listener.rs and tests/limits.rs). The timeouts and
# byte bounds stay on: they are what the abuse run measures.
LIFT_PER_CLIENT_LIMITS = {
    "SWITCHBOARD_HTTP_MAX_SOCKETS_PER_IP": "0",
    "SWITCHBOARD_HTTP_ACCEPT_RATE_PER_IP": "0",
    "SWITCHBOARD_MAX_CONNECTIONS_PER_IP": "0",
    "SWITCHBOARD_MAX_CONNECTIONS_PER_USER": "0",
    "SWITCHBOARD_MAX_PUBLISH_RATE": "0",
}


def server_env(broker="memory", config=None):
    """The environment of a node: ours without SWITCHBOARD_*, the per-client limits lifted, then
    SERVER_ENV's KEY=VALUE pairs (which may set them again)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(LIFT_PER_CLIENT_LIMITS)
    env["SWITCHBOARD_BROKER"] = broker
    if config:
        env["SWITCHBOARD_CONFIG"] = config
    for pair in os.environ.get("SERVER_ENV", "").split():
        k, _, v = pair.partition("=")
        env[k] = v
    return env


class Node:
    """A release Switchboard on 127.0.0.1:port (0: any); restartable on the same port."""

    def __init__(self, broker="memory", port=0, log="warn", config=None):
        self.broker, self.log, self.proc, self.config = broker, log, None, config
        self.port = port
        self.start()

    def start(self, attempts=20):
        """Starts the node; a restart on the same port retries while the old one's port is busy."""
        for attempt in range(attempts):
            self.stderr = tempfile.TemporaryFile("w+")
            self.proc = subprocess.Popen(
                [SWITCHBOARD, "serve", "--listen", f"127.0.0.1:{self.port}", "--no-demo", "--no-turn", "--log", self.log],
                env=server_env(self.broker, self.config), stdout=subprocess.PIPE, stderr=self.stderr,
                text=True, start_new_session=True)
            line = self.proc.stdout.readline()
            addr = [w for w in line.split() if w.startswith("http://")]
            if addr:
                break
            self.proc.wait()
            self.stderr.seek(0)
            err = self.stderr.read()[-300:]
            if attempt == attempts - 1:
                raise RuntimeError(f"node did not start: {line!r} {err}")
            time.sleep(0.5)
        self.url = addr[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Broker:
    """redis-server (no persistence) or nats-server -js on a free port; restartable in place."""

    def __init__(self, kind):
        self.kind, self.port = kind, free_port()
        self.dir = tempfile.mkdtemp(prefix=f"sb-{kind}-")
        self.url = f"{kind}://127.0.0.1:{self.port}"
        self.start()

    def start(self):
        if self.kind == "redis":
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning"]
        else:
            cmd = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.dir]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_port(self.port)
        time.sleep(0.3)

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def namespace_config(history_size, history_ttl=600):
    """A config file giving the `soak` namespace a history this size (small, so that it is full
    early and the RSS slope after warm-up is not the history filling up)."""
    f = tempfile.NamedTemporaryFile("w", prefix="sb-soak-", suffix=".toml", delete=False)
    f.write(f"[namespaces.soak]\nhistory_size = {history_size}\nhistory_ttl = {history_ttl}\n")
    f.close()
    return f.name


def parse_result(text):
    """The fleet's `RESULT {json}` line."""
    import json
    for line in text.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return None
