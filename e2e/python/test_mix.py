"""The audio MCU against aiortc (a WebRTC stack this project did not write): three participants
send sine tones of 440, 660 and 880 Hz into an SFU room; the spectra (Goertzel, in the test) of
what the mixer sends are checked. Waits are on events (tracks announced, a peer gone); the only
time windows are the audio sampled.
"""

from __future__ import annotations

import array
import asyncio
import fractions
import json
import math
import time
import urllib.parse

import pytest

aiortc = pytest.importorskip("aiortc")
import av  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamTrack  # noqa: E402

from test_webrtc import http_async, join_room, run  # noqa: E402

ROOM = "room:py-mix"
RATE = 48_000


@pytest.fixture
def server(make_server, tmp_path):
    """Rooms as the demo configures them; one mixed room at most on this node."""
    config = tmp_path / "rooms.toml"
    config.write_text("max_mixed_rooms = 1\n[namespaces.room]\nrooms = true\njoin_leave = true\n")
    return make_server(args=["--no-demo", "--config", str(config)])


class Tone(MediaStreamTrack):
    """A microphone playing a sine tone, paced in real time."""

    kind = "audio"

    def __init__(self, freq: float):
        super().__init__()
        self.freq = freq
        self.n = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.n / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = array.array(
            "h", (int(8000 * math.sin(2 * math.pi * self.freq * (self.n + k) / RATE)) for k in range(960))
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = RATE
        frame.pts = self.n
        frame.time_base = fractions.Fraction(1, RATE)
        self.n += 960
        return frame


class Ear:
    """Collects the first channel of a received audio track."""

    def __init__(self, track):
        self.track = track
        self.pcm = array.array("h")
        self.task = asyncio.ensure_future(self.listen())

    async def listen(self):
        while True:
            frame = await self.track.recv()
            data = array.array("h", bytes(frame.planes[0]))
            channels = len(frame.layout.channels)
            # The plane is padded past the samples.
            self.pcm.extend(data[: frame.samples * channels : channels])

    async def window(self, seconds: float) -> array.array:
        """The next `seconds` of audio."""
        start = len(self.pcm)
        want = int(seconds * RATE)
        while len(self.pcm) - start < want:
            await asyncio.sleep(0.02)
        return self.pcm[start:start + want]


def amplitude(pcm, freq: float) -> float:
    """The amplitude of `freq` in `pcm` (Goertzel)."""
    w = 2 * math.pi * freq / RATE
    coeff = 2 * math.cos(w)
    s1 = s2 = 0.0
    for x in pcm:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return 2 * math.sqrt(max(power, 0.0)) / len(pcm)


def tones(pcm) -> dict:
    return {f: round(amplitude(pcm, f)) for f in (440, 660, 880)}


async def audio_tracks(pc: RTCPeerConnection) -> list:
    """Collects the remote audio tracks of `pc` as they come."""
    got = []
    pc.on("track", lambda t: got.append(t) if t.kind == "audio" else None)
    return got


async def publish_tone(server, room: str, freq: float, mixed: bool):
    """A participant joined to `room` sending `freq`; with `mixed`, it also receives the mix."""
    ws, client = await join_room(server.ws_url, room, f"tone-{freq}")
    pc = RTCPeerConnection()
    received = await audio_tracks(pc)
    # One m-line both ways: the tone out, the mix in (aiortc bundles a second one poorly).
    pc.addTransceiver(Tone(freq), direction="sendrecv" if mixed else "sendonly")
    subscribe = {"0": "mix"} if mixed else {}
    await pc.setLocalDescription(await pc.createOffer())
    body = json.dumps({"client": client, "sdp": pc.localDescription.sdp, "publish": {"0": "mic"},
                       "subscribe": subscribe})
    status, _, text = await http_async("POST", f"{server.url}/rtc/sfu/{urllib.parse.quote(room)}", body,
                                       "application/json")
    assert status == 201, text
    joined = json.loads(text)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=joined["sdp"], type="answer"))
    return ws, client, pc, joined["peer"], received


async def whep_mix(server, room: str):
    pc = RTCPeerConnection()
    received = await audio_tracks(pc)
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, _, answer = await http_async("POST", f"{server.url}/whep/{room}?audio=mix", pc.localDescription.sdp,
                                         "application/sdp")
    return pc, received, status, answer


async def tracks_announced(ws, n: int) -> list:
    """Waits for a track list of the room with `n` tracks."""
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
        tracks = (msg.get("pub", {}).get("data") or {}).get("sfu", {}).get("tracks")
        if tracks is not None and len(tracks) == n:
            return tracks


def test_mixed_participant_hears_the_others_not_itself_and_whep_hears_the_room(server):
    async def main():
        ws_a, _, pc_a, _, heard_a = await publish_tone(server, ROOM, 440, mixed=True)
        ws_b, _, pc_b, _, _ = await publish_tone(server, ROOM, 660, mixed=False)
        ws_c, c, pc_c, peer_c, _ = await publish_tone(server, ROOM, 880, mixed=False)
        await tracks_announced(ws_a, 3)

        viewer, heard_v, status, answer = await whep_mix(server, ROOM)
        assert status == 201, answer
        await viewer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        # The mixed participant gets one audio track: the others, without its own voice.
        while not heard_a:
            await asyncio.sleep(0.05)
        ear_a = Ear(heard_a[0])
        await ear_a.window(1.0)  # the jitter buffers and the decoder settle
        got = tones(await ear_a.window(0.5))
        print("mixed participant hears", got)
        assert got[660] > 1500 and got[880] > 1500, got
        assert got[440] < 0.1 * min(got[660], got[880]), got
        assert len(heard_a) == 1, "one mixed track, not one per participant"

        # The WHEP room-mix viewer hears all three.
        while not heard_v:
            await asyncio.sleep(0.05)
        ear_v = Ear(heard_v[0])
        await ear_v.window(1.0)
        got = tones(await ear_v.window(0.5))
        print("WHEP room mix", got)
        assert all(a > 1500 for a in got.values()), got

        # A second mixed room is over this node's max_mixed_rooms = 1: code 114.
        other, _, status, answer = await whep_mix(server, "room:py-mix-2")
        assert status == 503, answer
        assert json.loads(answer)["error"]["code"] == 114, answer
        await other.close()

        # c leaves: once the room says so, its tone is gone from the mix within a second.
        status, _, _ = await http_async("DELETE", f"{server.url}/rtc/peers/{peer_c}", "", "text/plain")
        assert status == 200
        await tracks_announced(ws_a, 2)
        gone_at = time.monotonic()
        while True:
            pcm = await ear_v.window(0.2)
            got = tones(pcm)
            if got[880] < 0.1 * got[660]:
                break
            assert time.monotonic() - gone_at < 1.0, f"880 Hz still in the mix: {got}"
        print("880 Hz gone after", round(time.monotonic() - gone_at, 3), "s:", got)
        assert got[440] > 1500 and got[660] > 1500, got

        metrics = (await http_async("GET", f"{server.url}/metrics", "", "text/plain"))[2]
        assert "switchboard_mixers 1" in metrics, metrics
        assert "switchboard_mixed_participants 2" in metrics
        assert "switchboard_mix_refused_total 1" in metrics
        figures = dict(line.split(" ", 1) for line in metrics.splitlines() if line.startswith("switchboard_mix_added"))
        count = float(figures["switchboard_mix_added_latency_seconds_count"])
        assert count > 0, "the mixer measures the latency it adds"
        print("mixer added latency, mean ms:", round(1000 * float(figures["switchboard_mix_added_latency_seconds_sum"]) / count, 1))

        for t in (ear_a.task, ear_v.task):
            t.cancel()
        await asyncio.gather(pc_a.close(), pc_b.close(), pc_c.close(), viewer.close())
        for ws in (ws_a, ws_b, ws_c):
            await ws.close()

    run(main(), timeout=50)
