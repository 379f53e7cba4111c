"""End-to-end: a third-party WebSocket client (Python `websockets`) on `/ws`, subprotocol
`switchboard.v1.json`, against the real `switchboard` binary. The wire contract is docs/protocol.md.

Run: cargo build && cd e2e/python && python -m pytest -q
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from pathlib import Path

import jwt
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

SUBPROTOCOL = "switchboard.v1.json"
STEP = 5.0  # seconds any single expected event may take

CONFIG = """
[namespaces.chat]
presence = true
join_leave = true

[namespaces.ro]
client_publish = false

[namespaces.quiet]
history_size = 0
presence = false
"""


def run(coro, timeout: float = 30.0):
    """Runs `coro` to completion within `timeout` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def config_file(tmp_path) -> Path:
    p = tmp_path / "switchboard.toml"
    p.write_text(CONFIG)
    return p


@pytest.fixture
def server(make_server, config_file):
    return make_server(args=["--no-demo", "--config", str(config_file)])


def api_publish(server, channel, data=None, **extra):
    body = {"channel": channel, **extra}
    if data is not None:
        body["data"] = data
    req = urllib.request.Request(f"{server.url}/api/publish", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=STEP) as res:
        return json.loads(res.read())


def api_get(server, path):
    with urllib.request.urlopen(f"{server.url}{path}", timeout=STEP) as res:
        return json.loads(res.read())


class Client:
    """One `/ws` connection: numbered commands, replies matched by id, pushes queued in order."""

    def __init__(self, ws, auto_pong: bool = True):
        self.ws = ws
        self.next_id = 1
        self.pushes: list = []  # JSON pushes and (header, payload) binary pushes, in arrival order
        self.pings = 0
        self.auto_pong = auto_pong
        self.replies: dict[int, dict] = {}

    @classmethod
    async def open(cls, server, auto_pong=True, subprotocols=(SUBPROTOCOL,), **kw):
        ws = await ws_connect(server.ws_url, subprotocols=list(subprotocols) or None,
                              ping_interval=None, open_timeout=STEP, close_timeout=2, **kw)
        return cls(ws, auto_pong=auto_pong)

    async def close(self):
        await self.ws.close()

    async def _recv_one(self, timeout=STEP):
        msg = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(msg, bytes):
            header, _, payload = msg.partition(b"\n")
            self.pushes.append((json.loads(header), payload))
            return
        frame = json.loads(msg)
        if "id" in frame:
            self.replies[frame["id"]] = frame
        elif "ping" in frame:
            self.pings += 1
            if self.auto_pong:
                await self.ws.send('{"pong":{}}')
        else:
            self.pushes.append(frame)

    async def send(self, cmd: str, body: dict) -> int:
        i = self.next_id
        self.next_id += 1
        await self.ws.send(json.dumps({"id": i, cmd: body}))
        return i

    async def reply(self, i: int, timeout=STEP) -> dict:
        deadline = time.monotonic() + timeout
        while i not in self.replies:
            await self._recv_one(max(0.01, deadline - time.monotonic()))
        return self.replies.pop(i)

    async def call(self, cmd: str, body: dict, timeout=STEP) -> dict:
        """Sends a command; returns the reply body (`{"error": ...}` for an error reply)."""
        frame = await self.reply(await self.send(cmd, body), timeout)
        return frame.get(cmd, frame) if "error" not in frame else {"error": frame["error"]}

    async def ok(self, cmd: str, body: dict) -> dict:
        r = await self.call(cmd, body)
        assert "error" not in r, f"{cmd} {body} failed: {r}"
        return r

    async def push(self, timeout=STEP):
        """The next push (JSON dict, or (header, payload) for a binary frame)."""
        deadline = time.monotonic() + timeout
        while not self.pushes:
            await self._recv_one(max(0.01, deadline - time.monotonic()))
        return self.pushes.pop(0)

    async def pubs(self, n: int, timeout=STEP) -> list[dict]:
        """The next `n` pushes, which must all be JSON publications."""
        out = []
        for _ in range(n):
            p = await self.push(timeout)
            assert isinstance(p, dict) and "pub" in p, f"expected a pub push, got {p!r}"
            out.append(p["pub"])
        return out

    async def closed(self, timeout=STEP):
        """Reads until the server closes; returns its close frame (code, reason)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                await self._recv_one(max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as e:
            assert e.rcvd is not None, f"connection ended without a close frame from the server ({e!r})"
            return e.rcvd.code, e.rcvd.reason
        except TimeoutError:
            raise AssertionError(f"the server did not close the connection within {timeout} s; "
                                 f"replies: {self.replies}, pushes: {self.pushes}") from None


# --- connect, publish, subscribe ---------------------------------------------------------------


def test_connect_reply_and_subprotocol(server):
    async def main():
        c = await Client.open(server)
        assert c.ws.subprotocol == SUBPROTOCOL
        r = await c.ok("connect", {"name": "py"})
        assert isinstance(r["client"], str) and r["client"]
        assert isinstance(r["version"], str) and r["version"]
        assert r["ping"] == 25  # default ping_interval
        # A second connect on the same connection is a bad request; the connection stays.
        again = await c.call("connect", {})
        assert again["error"]["code"] == 107
        assert await c.ok("ping", {}) == {}
        await c.close()

    run(main())


def test_connection_without_subprotocol_is_accepted_and_connects_on_first_command(server):
    async def main():
        c = await Client.open(server, subprotocols=())
        assert c.ws.subprotocol is None
        r = await c.ok("subscribe", {"channel": "news"})
        assert r["channel"] == "news"
        assert r["recovered"] is False and r["replayed"] == 0  # a fresh subscription has nothing to recover
        await c.close()

    run(main())


def test_publish_ack_carries_offset_and_epoch_and_subscribers_get_the_push(server):
    async def main():
        sub = await Client.open(server)
        pub = await Client.open(server)
        s = await sub.ok("subscribe", {"channel": "room"})
        assert s["offset"] == 0
        acks = [await pub.ok("publish", {"channel": "room", "data": {"i": i}}) for i in range(1, 4)]
        assert [a["offset"] for a in acks] == [1, 2, 3]
        assert {a["epoch"] for a in acks} == {s["epoch"]}
        got = await sub.pubs(3)
        assert [(p["offset"], p["data"]) for p in got] == [(1, {"i": 1}), (2, {"i": 2}), (3, {"i": 3})]
        # Only the subscriber is present; the publisher never subscribed.
        assert len((await pub.ok("presence", {"channel": "room"}))["clients"]) == 1
        assert all(p["channel"] == "room" and p["epoch"] == s["epoch"] and "client" in p["info"] for p in got)
        await sub.close()
        await pub.close()

    run(main())


def test_subscribe_with_since_resumes_after_disconnect_without_loss_in_order(server):
    async def main():
        a = await Client.open(server)
        s = await a.ok("subscribe", {"channel": "feed"})
        for i in range(1, 4):
            api_publish(server, "feed", {"n": i})
        got = await a.pubs(3)
        position = {"epoch": got[-1]["epoch"], "offset": got[-1]["offset"]}
        assert position == {"epoch": s["epoch"], "offset": 3}
        await a.close()

        # While away: 25 publications, from the API and from another WebSocket client.
        b = await Client.open(server)
        for i in range(4, 29):
            if i % 2:
                api_publish(server, "feed", {"n": i})
            else:
                await b.ok("publish", {"channel": "feed", "data": {"n": i}})

        a = await Client.open(server)
        r = await a.ok("subscribe", {"channel": "feed", "since": position})
        assert r["recovered"] is True
        assert r["replayed"] == 25
        assert (r["epoch"], r["offset"]) == (position["epoch"], 3)
        await b.ok("publish", {"channel": "feed", "data": {"n": 29}})  # live, right behind the replay
        got = await a.pubs(26)
        assert [p["offset"] for p in got] == list(range(4, 30)), "every publication once, in order"
        assert [p["data"]["n"] for p in got] == list(range(4, 30))
        # Nothing more: the next push is a fresh publication, not a duplicate.
        api_publish(server, "feed", {"n": 30})
        assert (await a.pubs(1))[0]["offset"] == 30
        await a.close()
        await b.close()

    run(main())


def test_resume_from_an_unknown_epoch_is_announced_as_not_recovered(server):
    async def main():
        for i in range(3):
            api_publish(server, "feed", {"n": i})
        c = await Client.open(server)
        r = await c.ok("subscribe", {"channel": "feed", "since": {"epoch": "ZZZZZZZZ", "offset": 1}})
        assert r["recovered"] is False
        assert r["replayed"] == 0
        assert r["offset"] == 3 and r["epoch"] != "ZZZZZZZZ"
        api_publish(server, "feed", {"n": 99})
        (p,) = await c.pubs(1)
        assert p["offset"] == 4 and p["data"] == {"n": 99}, "only new publications follow"
        await c.close()

    run(main())


def test_idempotency_key_deduplicates_publications(server):
    async def main():
        c = await Client.open(server)
        await c.ok("subscribe", {"channel": "once"})
        first = await c.ok("publish", {"channel": "once", "data": {"v": 1}, "idempotency_key": "k-1"})
        again = await c.ok("publish", {"channel": "once", "data": {"v": 2}, "idempotency_key": "k-1"})
        assert again == first
        other = await c.ok("publish", {"channel": "once", "data": {"v": 3}, "idempotency_key": "k-2"})
        assert other["offset"] == first["offset"] + 1
        # The API shares the key space of the channel.
        via_api = api_publish(server, "once", {"v": 4}, idempotency_key="k-2")
        assert via_api == other
        got = await c.pubs(2)
        assert [p["data"] for p in got] == [{"v": 1}, {"v": 3}]
        h = await c.ok("history", {"channel": "once"})
        assert [p["data"] for p in h["publications"]] == [{"v": 1}, {"v": 3}]
        await c.close()

    run(main())


def test_history_command(server):
    async def main():
        c = await Client.open(server)
        acks = [await c.ok("publish", {"channel": "h", "data": {"n": n}}) for n in range(1, 6)]
        epoch = acks[0]["epoch"]
        h = await c.ok("history", {"channel": "h"})
        assert (h["epoch"], h["offset"]) == (epoch, 5)
        assert [p["offset"] for p in h["publications"]] == [1, 2, 3, 4, 5]
        assert [p["data"]["n"] for p in h["publications"]] == [1, 2, 3, 4, 5]
        h = await c.ok("history", {"channel": "h", "since": {"epoch": epoch, "offset": 2}})
        assert [p["offset"] for p in h["publications"]] == [3, 4, 5]
        h = await c.ok("history", {"channel": "h", "limit": 2, "reverse": True})
        assert [p["offset"] for p in h["publications"]] == [5, 4]
        h = await c.ok("history", {"channel": "h", "limit": 2})
        assert [p["offset"] for p in h["publications"]] == [1, 2]
        # The server API answers the same.
        api = api_get(server, f"/api/history?channel=h&since={epoch}:2")
        assert [p["offset"] for p in api["publications"]] == [3, 4, 5]
        # History off for the namespace.
        assert (await c.call("history", {"channel": "quiet:x"}))["error"]["code"] == 108
        await c.close()

    run(main())


def test_presence_command_and_join_leave_events(server):
    async def main():
        a = await Client.open(server)
        ra = await a.ok("connect", {"name": "ann"})
        await a.ok("subscribe", {"channel": "chat:room"})
        b = await Client.open(server)
        rb = await b.ok("connect", {"name": "bob"})
        await b.ok("subscribe", {"channel": "chat:room"})

        # Each subscriber hears every join in the channel, its own included, in order.
        own = await a.push()
        assert own == {"join": {"channel": "chat:room", "client": ra["client"], "user": "", "name": "ann"}}, own
        join = await a.push()
        assert join == {"join": {"channel": "chat:room", "client": rb["client"], "user": "", "name": "bob"}}, join

        p = await a.ok("presence", {"channel": "chat:room"})
        assert set(p["clients"]) == {ra["client"], rb["client"]}
        assert p["clients"][ra["client"]]["name"] == "ann"
        assert p["clients"][rb["client"]]["name"] == "bob"
        assert api_get(server, "/api/presence?channel=chat:room")["clients"].keys() == p["clients"].keys()

        await b.close()
        leave = await a.push()
        assert leave == {"leave": {"channel": "chat:room", "client": rb["client"], "user": "", "name": "bob"}}, leave
        p = await a.ok("presence", {"channel": "chat:room"})
        assert set(p["clients"]) == {ra["client"]}

        # Unsubscribing leaves presence too.
        await a.ok("unsubscribe", {"channel": "chat:room"})
        assert api_get(server, "/api/presence?channel=chat:room")["clients"] == {}
        # Presence off for the namespace.
        assert (await a.call("presence", {"channel": "quiet:x"}))["error"]["code"] == 108
        await a.close()

    run(main())


def test_binary_publication_is_received_as_a_binary_frame(server):
    async def main():
        sub = await Client.open(server)
        await sub.ok("subscribe", {"channel": "bin"})
        pub = await Client.open(server)
        await pub.ok("connect", {"name": "sender"})
        payload = bytes(range(256)) + b"\n\n{not json}\x00"
        i = pub.next_id
        pub.next_id += 1
        header = json.dumps({"id": i, "publish": {"channel": "bin"}}, separators=(",", ":")).encode()
        await pub.ws.send(header + b"\n" + payload)
        ack = (await pub.reply(i))["publish"]
        assert ack["offset"] == 1

        push = await sub.push()
        assert isinstance(push, tuple), f"expected a binary frame, got {push!r}"
        head, body = push
        assert body == payload
        assert head["pub"]["channel"] == "bin"
        assert head["pub"]["offset"] == 1 and head["pub"]["epoch"] == ack["epoch"]
        assert "data" not in head["pub"] and "b64" not in head["pub"]

        # A JSON transport shows the same publication as base64.
        h = api_get(server, "/api/history?channel=bin")
        assert base64.b64decode(h["publications"][0]["b64"]) == payload

        # And a binary publication made through the API arrives as a binary frame as well.
        api_publish(server, "bin", b64=base64.b64encode(b"\x01\x02api").decode())
        head, body = await sub.push()
        assert body == b"\x01\x02api" and head["pub"]["offset"] == 2

        # Binary with an idempotency key.
        i = pub.next_id
        pub.next_id += 1
        header = json.dumps({"id": i, "publish": {"channel": "bin", "idempotency_key": "bk"}}).encode()
        await pub.ws.send(header + b"\nonce")
        first = (await pub.reply(i))["publish"]
        i2 = pub.next_id
        pub.next_id += 1
        await pub.ws.send(header.replace(f'"id": {i}'.encode(), f'"id": {i2}'.encode()) + b"\ntwice")
        assert (await pub.reply(i2))["publish"] == first
        head, body = await sub.push()
        assert (body, head["pub"]["offset"]) == (b"once", 3)
        await sub.close()
        await pub.close()

    run(main())


# --- errors and limits -------------------------------------------------------------------------


def test_command_errors_keep_the_connection(server):
    async def main():
        c = await Client.open(server)
        assert (await c.call("frobnicate", {}))["error"]["code"] == 104
        assert (await c.call("subscribe", {"channel": "bad channel"}))["error"]["code"] == 107
        assert (await c.call("subscribe", {"channel": ""}))["error"]["code"] == 107
        assert (await c.call("subscribe", {"channel": "x" * 256}))["error"]["code"] == 107
        assert (await c.call("publish", {"channel": "no spaces allowed", "data": 1}))["error"]["code"] == 107
        assert (await c.call("publish", {"channel": "ro:x", "data": 1}))["error"]["code"] == 103
        assert (await c.call("unsubscribe", {"channel": "never"}))["error"]["code"] == 110
        await c.ok("subscribe", {"channel": "twice"})
        assert (await c.call("subscribe", {"channel": "twice"}))["error"]["code"] == 105
        # Still usable.
        assert await c.ok("ping", {}) == {}
        await c.ok("publish", {"channel": "twice", "data": "fine"})
        (p,) = await c.pubs(1)
        assert p["data"] == "fine"
        await c.close()

    run(main())


@pytest.mark.parametrize("frame", [
    '{"id": 1, "subscribe": ',   # truncated JSON
    "not json at all",
    '"a string"',
    '{"ping": {}}',              # a command without an id
    '{"id": 0, "ping": {}}',     # id must be non-zero
    # "Every text frame is one JSON object": an array is not a command, even one whose elements
    # line up with the command fields (id, connect, ...).
    "[1, 2, 3]",
    '[7, {"name": "positional"}]',
])
def test_malformed_frame_closes_with_3500(server, frame):
    async def main():
        c = await Client.open(server)
        await c.ws.send(frame)
        code, _ = await c.closed()
        assert code == 3500

    run(main())


def test_too_many_subscriptions_is_106(make_server):
    srv = make_server(env={"SWITCHBOARD_MAX_SUBSCRIPTIONS": "2"}, args=["--no-demo"])

    async def main():
        c = await Client.open(srv)
        await c.ok("subscribe", {"channel": "one"})
        await c.ok("subscribe", {"channel": "two"})
        r = await c.call("subscribe", {"channel": "three"})
        assert r["error"]["code"] == 106
        # Freeing a slot makes room again.
        await c.ok("unsubscribe", {"channel": "one"})
        await c.ok("subscribe", {"channel": "three"})
        await c.close()

    run(main())


def test_oversize_message_closes_with_1009(make_server):
    srv = make_server(env={"SWITCHBOARD_MAX_FRAME_BYTES": "1024", "SWITCHBOARD_MAX_PUBLICATION_BYTES": "512"},
                      args=["--no-demo"])

    async def main():
        c = await Client.open(srv)
        # Within the frame limit but over the publication limit: an error reply, the connection stays.
        r = await c.call("publish", {"channel": "big", "data": "x" * 700})
        assert r["error"]["code"] == 106
        await c.ok("publish", {"channel": "big", "data": "x" * 400})
        # Over the frame limit: close 1009.
        await c.ws.send(json.dumps({"id": 99, "publish": {"channel": "big", "data": "x" * 2000}}))
        code, _ = await c.closed()
        assert code == 1009
        # Binary frames too.
        c = await Client.open(srv)
        await c.ws.send(b'{"id":1,"publish":{"channel":"big"}}\n' + b"\0" * 4096)
        code, _ = await c.closed()
        assert code == 1009

    run(main())


# --- liveness ----------------------------------------------------------------------------------


def test_answered_pings_keep_the_connection(make_server):
    srv = make_server(env={"SWITCHBOARD_PING_INTERVAL": "1", "SWITCHBOARD_PONG_TIMEOUT": "1"}, args=["--no-demo"])

    async def main():
        c = await Client.open(srv, auto_pong=True)
        r = await c.ok("connect", {})
        assert r["ping"] == 1
        await c.ok("subscribe", {"channel": "alive"})
        # Four server pings answered (well past ping + pong timeout); then still connected.
        deadline = time.monotonic() + 10
        while c.pings < 4:
            await c._recv_one(max(0.01, deadline - time.monotonic()))
        assert await c.ok("ping", {}) == {}
        api_publish(srv, "alive", {"still": True})
        (p,) = await c.pubs(1)
        assert p["data"] == {"still": True}
        await c.close()

    run(main())


def test_unanswered_ping_closes_with_3003(make_server):
    srv = make_server(env={"SWITCHBOARD_PING_INTERVAL": "1", "SWITCHBOARD_PONG_TIMEOUT": "1"}, args=["--no-demo"])

    async def main():
        c = await Client.open(srv, auto_pong=False)
        await c.ok("connect", {})
        t0 = time.monotonic()
        code, reason = await c.closed(timeout=8)
        assert code == 3003, (code, reason)
        assert c.pings >= 1, "closed for no pong without having been pinged"
        assert time.monotonic() - t0 < 5

    run(main())


def test_client_close_gets_a_close_frame_back(server):
    """RFC 6455 5.5.1: the endpoint that receives a Close frame sends one in response."""

    async def main():
        c = await Client.open(server)
        await c.ok("subscribe", {"channel": "bye"})
        await c.ws.close(1000, "done")
        assert c.ws.protocol.close_sent is not None and c.ws.protocol.close_sent.code == 1000
        assert c.ws.protocol.close_rcvd is not None, "the server dropped TCP without answering the close frame"
        assert c.ws.protocol.close_rcvd.code == 1000

    run(main())


# --- authentication ----------------------------------------------------------------------------

SECRET = "s"


def token(**claims) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def auth_server(make_server, config_file):
    return make_server(env={"SWITCHBOARD_TOKEN_SECRET": SECRET}, args=["--no-demo", "--config", str(config_file)])


def test_auth_frame_before_connect_closes_3501(auth_server):
    async def main():
        c = await Client.open(auth_server)
        await c.send("subscribe", {"channel": "news"})
        code, _ = await c.closed()
        assert code == 3501

    run(main())


@pytest.mark.parametrize("bad", [None, "", "not.a.jwt", "wrong-secret", "no-sub"])
def test_auth_bad_token_closes_3501(auth_server, bad):
    tok = {
        None: None, "": "", "not.a.jwt": "not.a.jwt",
        "wrong-secret": jwt.encode({"sub": "u"}, "other", algorithm="HS256"),
        "no-sub": token(name="nobody"),
    }[bad]

    async def main():
        c = await Client.open(auth_server)
        await c.send("connect", {} if tok is None else {"token": tok})
        code, _ = await c.closed()
        assert code == 3501

    run(main())


def test_auth_valid_token_connects_and_claims_apply(auth_server):
    async def main():
        tok = token(sub="alice", name="Alice", exp=int(time.time()) + 300, subs=["chat:*"], pubs=["chat:*"])
        c = await Client.open(auth_server)
        r = await c.ok("connect", {"token": tok})
        await c.ok("subscribe", {"channel": "chat:room"})
        assert (await c.push())["join"]["user"] == "alice"  # its own join (chat has join_leave)
        p = await c.ok("presence", {"channel": "chat:room"})
        assert p["clients"][r["client"]]["user"] == "alice"
        assert p["clients"][r["client"]]["name"] == "Alice"
        ack = await c.ok("publish", {"channel": "chat:room", "data": "hi"})
        (pub,) = await c.pubs(1)
        assert pub["offset"] == ack["offset"] and pub["info"]["user"] == "alice"
        # Outside the token's patterns.
        assert (await c.call("subscribe", {"channel": "news"}))["error"]["code"] == 103
        assert (await c.call("publish", {"channel": "news", "data": 1}))["error"]["code"] == 103
        await c.close()

    run(main())


def test_auth_expired_token_closes_3005(auth_server):
    async def main():
        c = await Client.open(auth_server)
        await c.send("connect", {"token": token(sub="alice", exp=int(time.time()) - 10)})
        code, _ = await c.closed()
        assert code == 3005

    run(main())


def test_auth_token_expiring_during_the_connection_closes_3005(auth_server):
    async def main():
        c = await Client.open(auth_server)
        await c.ok("connect", {"token": token(sub="alice", exp=int(time.time()) + 2)})
        await c.ok("subscribe", {"channel": "news"})
        code, _ = await c.closed(timeout=6)
        assert code == 3005

    run(main())
