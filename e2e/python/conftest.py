"""Fixtures for the Python end-to-end tests: the real `switchboard` binary on a free port.

Binary: $SWITCHBOARD_BIN, else $CARGO_TARGET_DIR/debug/switchboard, else ../../target/debug/switchboard
(relative to this directory). Build it first with `cargo build`.

Every test is bounded: `E2E_TEST_TIMEOUT` seconds (default 60) of wall time, enforced with SIGALRM.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
LISTENING = re.compile(rb"switchboard listening on http://([\d.]+):(\d+)")


def server_bin() -> Path:
    if os.environ.get("SWITCHBOARD_BIN"):
        return Path(os.environ["SWITCHBOARD_BIN"]).resolve()
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]).resolve() / "debug" / "switchboard"
    return HERE.parent.parent / "target" / "debug" / "switchboard"


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    stderr_path: Path
    env: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def logs(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self, grace: float = 3.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def start_server(env: dict | None = None, args: list[str] | None = None, tmp: Path | None = None,
                 timeout: float = 15.0) -> Server:
    bin_path = server_bin()
    if not bin_path.exists():
        pytest.fail(f"switchboard binary not found at {bin_path} (run `cargo build` or set SWITCHBOARD_BIN)")
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    child_env["SWITCHBOARD_LOG"] = "warn"
    child_env.update({k: str(v) for k, v in (env or {}).items()})
    stderr_path = (tmp or Path("/tmp")) / f"switchboard-{os.getpid()}-{time.monotonic_ns()}.log"
    stderr = open(stderr_path, "wb")
    proc = subprocess.Popen(
        [str(bin_path), "serve", "--listen", "127.0.0.1:0", *(args or [])],
        stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=child_env,
    )
    stderr.close()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            m = LISTENING.search(out)
            if m:
                return Server(proc=proc, port=int(m.group(2)), stderr_path=stderr_path, env=env or {})
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                break
            if sel.select(left):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    proc.wait(2)
                    break
                out += chunk
    finally:
        sel.close()
    proc.kill()
    proc.wait(5)
    raise RuntimeError(f"switchboard did not start (exit {proc.returncode}): stdout={out!r}\n"
                       f"stderr={stderr_path.read_text(errors='replace')}")


@pytest.fixture
def make_server(tmp_path):
    """`make_server(env={...}, args=[...])` starts a server; every one is stopped after the test."""
    servers: list[Server] = []

    def make(env: dict | None = None, args: list[str] | None = None) -> Server:
        s = start_server(env=env, args=args, tmp=tmp_path)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(make_server) -> Server:
    """A server with default settings (demo namespaces on, ticker off)."""
    return make_server(args=["--no-demo"])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    limit = int(os.environ.get("E2E_TEST_TIMEOUT", "60"))

    def on_alarm(signum, frame):
        raise TimeoutError(f"{item.nodeid} exceeded {limit} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
