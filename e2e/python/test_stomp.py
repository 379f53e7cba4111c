"""STOMP with a non-JavaScript client: stomp.py 9 (`WSStompConnection`, which offers no
subprotocol) on `/stomp`: subscribe, send, receipts, transactions, a wrong passcode refused."""

import json
import threading
import time

import jwt
import pytest
import stomp

SECRET = "stomp-secret"


class Frames(stomp.ConnectionListener):
    """Every MESSAGE, RECEIPT and ERROR, with a way to wait for them."""

    def __init__(self):
        self.messages, self.receipts, self.errors = [], [], []
        self.changed = threading.Condition()

    def _add(self, to, frame):
        with self.changed:
            to.append(frame)
            self.changed.notify_all()

    def on_message(self, frame):
        self._add(self.messages, frame)

    def on_receipt(self, frame):
        self._add(self.receipts, frame)

    def on_error(self, frame):
        self._add(self.errors, frame)

    def wait(self, what, timeout=5.0):
        with self.changed:
            assert self.changed.wait_for(what, timeout), "timed out"


def connected(server, sub):
    conn = stomp.WSStompConnection([("127.0.0.1", server.port)], ws_path="/stomp")
    frames = Frames()
    conn.set_listener("frames", frames)
    conn.connect(sub, jwt.encode({"sub": sub}, SECRET, algorithm="HS256"), wait=True)
    return conn, frames


@pytest.fixture
def secured(make_server):
    return make_server(args=["--no-demo"], env={"SWITCHBOARD_TOKEN_SECRET": SECRET, "SWITCHBOARD_API_KEY": "k"})


def test_subscribe_send_receipts_and_transactions(secured):
    conn, frames = connected(secured, "alice")
    conn.subscribe(destination="/topic/chat:py", id="s1", ack="auto", headers={"receipt": "sub"})
    frames.wait(lambda: any(r.headers.get("receipt-id") == "sub" for r in frames.receipts))

    conn.send(destination="/topic/chat:py", body=json.dumps({"n": 1}), headers={"receipt": "send"})
    frames.wait(lambda: len(frames.messages) == 1)
    assert json.loads(frames.messages[0].body) == {"n": 1}
    assert frames.messages[0].headers["subscription"] == "s1"
    receipt = next(r for r in frames.receipts if r.headers.get("receipt-id") == "send")
    assert receipt.headers["position"] == frames.messages[0].headers["position"]

    tx = conn.begin()
    conn.send(destination="/topic/chat:py", body=json.dumps({"n": 2}), transaction=tx)
    time.sleep(0.3)  # nothing may arrive before the COMMIT: a window to see a wrong early delivery
    assert len(frames.messages) == 1
    conn.commit(tx)
    frames.wait(lambda: len(frames.messages) == 2)
    assert json.loads(frames.messages[1].body) == {"n": 2}
    conn.disconnect()


def test_a_wrong_passcode_is_refused_with_an_error(secured):
    conn = stomp.WSStompConnection([("127.0.0.1", secured.port)], ws_path="/stomp")
    frames = Frames()
    conn.set_listener("frames", frames)
    with pytest.raises(stomp.exception.ConnectFailedException):
        conn.connect("mallory", jwt.encode({"sub": "mallory"}, "not-the-secret", algorithm="HS256"), wait=True)
    frames.wait(lambda: frames.errors)
    assert frames.errors[0].headers["code"] == "101"
