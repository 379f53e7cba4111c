"""Room recording with real peers: aiortc publishes over WHIP a video whose colour changes every
second (red, green, blue, ...) and a 440 Hz sine; the recording API records it; Debian's
ffprobe/ffmpeg decode every file and check codecs, duration, frame count, colours and tone. Also:
`kill -9` during a recording (the files play, the next start says `interrupted`), and bad input.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import math
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from array import array
from pathlib import Path

import pytest

aiortc = pytest.importorskip("aiortc")
import av  # noqa: E402
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import VideoStreamTrack  # noqa: E402

from conftest import start_server  # noqa: E402

if not shutil.which("ffprobe"):
    pytest.skip("ffprobe (Debian's ffmpeg) is not installed", allow_module_level=True)

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
FPS = 30
TONE = 440


class ColourTrack(VideoStreamTrack):
    """320x240 frames, one flat colour per second of the track's own clock."""

    def __init__(self):
        super().__init__()
        self.n = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        colour = COLOURS[(self.n // FPS) % len(COLOURS)]
        self.n += 1
        frame = av.VideoFrame(320, 240, "rgb24")
        frame.planes[0].update(bytes(colour) * (frame.planes[0].buffer_size // 3))
        frame = frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


class SineTrack(MediaStreamTrack):
    """A 440 Hz sine, 20 ms frames at 48 kHz, paced in real time."""

    kind = "audio"

    def __init__(self):
        super().__init__()
        self.samples = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.samples / 48000 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        pcm = array("h", (int(12000 * math.sin(2 * math.pi * TONE * (self.samples + i) / 48000)) for i in range(960)))
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(pcm.tobytes())
        frame.sample_rate = 48000
        frame.pts = self.samples
        frame.time_base = fractions.Fraction(1, 48000)
        self.samples += 960
        return frame


def http(method: str, url: str, body: str | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as res:
            text = res.read().decode()
            return res.status, json.loads(text) if text.startswith("{") else {"text": text}
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        return e.code, json.loads(text) if text.startswith("{") else {"text": text}


async def publish(url: str, headers: dict | None = None, video_codec: str | None = None) -> RTCPeerConnection:
    pc = RTCPeerConnection()
    video = pc.addTransceiver(ColourTrack(), direction="sendonly")
    if video_codec:
        from aiortc import RTCRtpSender
        video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                   if c.mimeType == f"video/{video_codec}"])
    pc.addTransceiver(SineTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    req = urllib.request.Request(url, data=pc.localDescription.sdp.encode(), method="POST",
                                 headers={"Content-Type": "application/sdp", **(headers or {})})
    answer = await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=10).read().decode())
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc


def probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def decode_errors(path: Path) -> str:
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stderr.strip()


def frame_colours(path: Path) -> list[tuple[float, tuple[int, int, int]]]:
    """(pts seconds, mean RGB) of every video frame."""
    pts = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout.split()
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", "scale=4:4", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-fps_mode", "passthrough", "-"], capture_output=True, check=True).stdout
    n = len(raw) // 48
    colours = []
    for i in range(n):
        px = raw[i * 48:(i + 1) * 48]
        colours.append(tuple(sum(px[c::3]) // 16 for c in range(3)))
    return list(zip([float(p) for p in pts[:n]], colours))


def nearest(rgb) -> int:
    return min(range(len(COLOURS)), key=lambda i: sum((a - b) ** 2 for a, b in zip(rgb, COLOURS[i])))


def tone_power(path: Path, freqs: list[int]) -> dict[int, float]:
    """Goertzel power of each frequency over the decoded audio (mono, 48 kHz)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
                         capture_output=True, check=True).stdout
    pcm = array("h")
    pcm.frombytes(raw[: len(raw) // 2 * 2])
    mid = len(pcm) // 2
    block = pcm[mid: mid + 9600]  # 200 ms from the middle
    powers = {}
    for f in freqs:
        k = 2 * math.cos(2 * math.pi * f / 48000)
        s1 = s2 = 0.0
        for x in block:
            s1, s2 = x + k * s1 - s2, s1
        powers[f] = s1 * s1 + s2 * s2 - k * s1 * s2
    return powers, len(pcm) / 48000


@pytest.fixture
def rooms(tmp_path):
    config = tmp_path / "rooms.toml"
    config.write_text("[namespaces.room]\nrooms = true\njoin_leave = true\n")
    return config


def start(tmp_path, rooms, recordings):
    return start_server(env={"SWITCHBOARD_RECORDINGS_DIR": str(recordings)},
                        args=["--no-demo", "--config", str(rooms)], tmp=tmp_path)


def wait_for_files(url: str, rid: str, kinds: set[str], limit: float = 15):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, rec = http("GET", f"{url}/api/recordings/{rid}")
        assert status == 200, rec
        if {f["kind"] for f in rec["files"]} >= kinds:
            return rec
        time.sleep(0.2)
    raise AssertionError(f"no {kinds} files in time: {rec}")


def test_aiortc_over_whip_is_recorded_and_ffmpeg_decodes_every_file(tmp_path, rooms):
    recordings = tmp_path / "recordings"
    server = start(tmp_path, rooms, recordings)
    try:
        async def main():
            pc = await publish(f"{server.url}/whip/room:rec")
            # The tracks flow once ICE and DTLS are up: wait for the engine to see the room.
            await asyncio.sleep(1.5)
            status, started = await asyncio.to_thread(http, "POST", f"{server.url}/api/rooms/room:rec/recordings")
            assert status == 201, started
            assert set(started) >= {"id", "room", "started", "files"} and started["room"] == "room:rec"
            rid = started["id"]
            await asyncio.to_thread(wait_for_files, server.url, rid, {"audio", "video"})
            await asyncio.sleep(5)
            status, stopped = await asyncio.to_thread(http, "DELETE", f"{server.url}/api/recordings/{rid}")
            await pc.close()
            return rid, status, stopped

        rid, status, stopped = asyncio.run(asyncio.wait_for(main(), 50))
        assert status == 200, stopped
        assert stopped["state"] == "stopped" and stopped["reason"] == "stopped", stopped
        files = {f["kind"]: f for f in stopped["files"]}
        assert set(files) == {"audio", "video"}, stopped
        assert all(f["participant"] == "whip" and f["bytes"] > 0 for f in files.values())
        listed = http("GET", f"{server.url}/api/recordings")[1]["recordings"]
        assert [r["id"] for r in listed] == [rid] and listed[0]["state"] == "stopped"

        video = recordings / rid / files["video"]["name"]
        audio = recordings / rid / files["audio"]["name"]
        assert video.name.startswith("room-rec_") and video.suffix == ".webm"
        for path in (video, audio):
            assert decode_errors(path) == "", f"{path.name} decodes without errors"

        v = probe(video)["streams"][0]
        assert (v["codec_name"], v["width"], v["height"]) == ("vp8", 320, 240)
        frames = int(v["nb_read_frames"])
        colours = frame_colours(video)
        duration = colours[-1][0] - colours[0][0]
        print(f"video: {frames} frames over {duration:.2f} s")
        assert 4.5 <= duration <= 6.6, duration  # 5 s (+ the wait for the files) ±10 %
        assert abs(frames - duration * FPS) <= 0.1 * duration * FPS, (frames, duration)

        # Colours change once a second, in order: the runs between changes last ~1 s.
        changes = []
        last = None
        for t, rgb in colours:
            c = nearest(rgb)
            if last is not None and c != last:
                assert c == (last + 1) % 3, f"colour order at {t:.2f} s"
                changes.append(t)
            last = c
        assert len(changes) >= 4, changes
        gaps = [b - a for a, b in zip(changes, changes[1:])]
        assert all(abs(g - 1.0) <= 0.15 for g in gaps), gaps

        a = probe(audio)["streams"][0]
        assert (a["codec_name"], a["sample_rate"]) == ("opus", "48000")
        powers, seconds = tone_power(audio, [TONE, 660, 880])
        print(f"audio: {seconds:.2f} s, powers {powers}")
        assert abs(seconds - duration) <= 0.1 * duration, (seconds, duration)
        assert powers[TONE] > 100 * max(powers[660], powers[880]), powers
        # A/V sync: both files start where the participant's tracks started, 100 ms apart at most.
        assert abs(files["audio"]["offset_ms"] - files["video"]["offset_ms"]) < 500, files

        # Range requests (a <video> seeks with them).
        req = urllib.request.Request(f"{server.url}{files['video']['url']}", headers={"Range": "bytes=0-3"})
        with urllib.request.urlopen(req) as res:
            assert res.status == 206 and res.read() == bytes([0x1A, 0x45, 0xDF, 0xA3]), "EBML magic"
            assert res.headers["Content-Type"] == "video/webm"

        # Stopping again removes the files; then the recording is gone.
        status, body = http("DELETE", f"{server.url}/api/recordings/{rid}")
        assert (status, body.get("deleted")) == (200, True)
        assert not (recordings / rid).exists()
        status, body = http("DELETE", f"{server.url}/api/recordings/{rid}")
        assert (status, body["error"]["code"]) == (404, 102)
    finally:
        server.stop()


def test_aiortc_h264_is_recorded_into_matroska_that_ffmpeg_decodes_even_cut_in_half(tmp_path, rooms):
    """H.264 is written as it arrives into .mkv (our own Matroska writer): ffprobe sees h264 in
    matroska with the SPS's size, ffmpeg -xerror decodes it, and half the file still plays."""
    recordings = tmp_path / "recordings"
    server = start(tmp_path, rooms, recordings)
    try:
        async def main():
            pc = await publish(f"{server.url}/whip/room:h264", video_codec="H264")
            await asyncio.sleep(1.5)
            status, started = await asyncio.to_thread(http, "POST", f"{server.url}/api/rooms/room:h264/recordings")
            assert status == 201, started
            rec = await asyncio.to_thread(wait_for_files, server.url, started["id"], {"audio", "video"})
            assert not rec.get("skipped"), rec
            await asyncio.sleep(4)
            status, stopped = await asyncio.to_thread(http, "DELETE", f"{server.url}/api/recordings/{started['id']}")
            await pc.close()
            return started["id"], status, stopped

        rid, status, stopped = asyncio.run(asyncio.wait_for(main(), 50))
        assert status == 200 and stopped["state"] == "stopped", stopped
        files = {f["kind"]: f for f in stopped["files"]}
        assert (files["video"]["codec"], files["audio"]["codec"]) == ("h264", "opus"), stopped
        video = recordings / rid / files["video"]["name"]
        assert video.suffix == ".mkv" and files["audio"]["name"].endswith(".webm")
        assert files["video"]["bytes"] == video.stat().st_size > 0
        assert abs(files["audio"]["offset_ms"] - files["video"]["offset_ms"]) < 500, files

        r = subprocess.run(["ffmpeg", "-xerror", "-v", "error", "-i", str(video), "-f", "null", "-"],
                           capture_output=True, text=True)
        assert (r.returncode, r.stderr.strip()) == (0, ""), r.stderr
        info = probe(video)
        assert "matroska" in info["format"]["format_name"], info["format"]
        v = info["streams"][0]
        assert (v["codec_name"], v["width"], v["height"]) == ("h264", 320, 240), v
        frames = int(v["nb_read_frames"])
        colours = frame_colours(video)
        duration = colours[-1][0] - colours[0][0]
        print(f"h264 video: {frames} frames over {duration:.2f} s, format duration {info['format'].get('duration')}")
        assert 3.6 <= duration <= 5.5, duration  # 4 s (+ the wait for the files) ±10 %
        assert abs(frames - duration * FPS) <= 0.1 * duration * FPS, (frames, duration)
        assert abs(float(info["format"]["duration"]) - files["video"]["offset_ms"] / 1000 - duration) < 0.5, info
        # The frames are in order: colours go red, green, blue, ...
        order = [nearest(rgb) for _, rgb in colours]
        changes = [(a, b) for a, b in zip(order, order[1:]) if a != b]
        assert len(changes) >= 3 and all(b == (a + 1) % 3 for a, b in changes), changes
        req = urllib.request.Request(f"{server.url}{files['video']['url']}", headers={"Range": "bytes=0-3"})
        with urllib.request.urlopen(req) as res:
            assert res.status == 206 and res.read() == bytes([0x1A, 0x45, 0xDF, 0xA3]), "EBML magic"
            assert res.headers["Content-Type"] == "video/x-matroska"

        # Cut in the middle (a crash mid-write): what is before the cut still decodes.
        cut = tmp_path / "cut.mkv"
        data = video.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        r = subprocess.run(["ffmpeg", "-xerror", "-v", "error", "-i", str(cut), "-f", "null", "-"], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        cut_frames = int(probe(cut)["streams"][0]["nb_read_frames"])
        print(f"cut in half: {cut_frames} of {frames} frames decode ({r.stderr.strip()!r})")
        assert frames * 0.3 <= cut_frames < frames, (cut_frames, frames)
    finally:
        server.stop()


def test_a_recording_cut_by_kill_9_plays_and_is_listed_interrupted(tmp_path, rooms):
    recordings = tmp_path / "recordings"
    server = start(tmp_path, rooms, recordings)
    try:
        async def main():
            pc = await publish(f"{server.url}/whip/room:crash")
            await asyncio.sleep(1.5)
            status, started = await asyncio.to_thread(http, "POST", f"{server.url}/api/rooms/room:crash/recordings")
            assert status == 201, started
            await asyncio.to_thread(wait_for_files, server.url, started["id"], {"audio", "video"})
            await asyncio.sleep(4)
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(5)
            await pc.close()
            return started["id"]

        rid = asyncio.run(asyncio.wait_for(main(), 40))
    finally:
        server.stop()
    again = start(tmp_path, rooms, recordings)
    try:
        status, rec = http("GET", f"{again.url}/api/recordings/{rid}")
        assert status == 200, rec
        assert rec["state"] == "interrupted", rec
        assert len(rec["files"]) == 2
        for f in rec["files"]:
            path = recordings / rid / f["name"]
            r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True,
                               text=True)
            assert r.returncode == 0, r.stderr
            seconds = float(subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "packet=pts_time", "-of", "csv=p=0", str(path)],
                capture_output=True, text=True).stdout.split()[-1]) - f["offset_ms"] / 1000
            print(f"{f['kind']}: plays {seconds:.2f} s of ~4 s")
            assert seconds >= 2.0, f"{f['name']} plays up to near the kill ({seconds:.2f} s of ~4)"
    finally:
        again.stop()


def test_bad_input_gets_codes_and_the_server_keeps_serving(tmp_path, rooms):
    recordings = tmp_path / "recordings"
    secret = "recording-test-secret-0123456789abcdef"
    server = start_server(env={"SWITCHBOARD_RECORDINGS_DIR": str(recordings), "SWITCHBOARD_TOKEN_SECRET": secret,
                               "SWITCHBOARD_API_KEY": "key"},
                          args=["--no-demo", "--config", str(rooms)], tmp=tmp_path)
    import jwt
    try:
        key = {"X-API-Key": "key"}
        # A channel that is not a room, and a room with nobody in it: 404, code 102.
        status, body = http("POST", f"{server.url}/api/rooms/chat/recordings", headers=key)
        assert (status, body["error"]["code"]) == (404, 102), body
        status, body = http("POST", f"{server.url}/api/rooms/room:nobody/recordings", headers=key)
        assert (status, body["error"]["code"]) == (404, 102), body
        # No credentials: 401; a token without the room in its `rec` claim: 403, code 103.
        status, body = http("POST", f"{server.url}/api/rooms/room:x/recordings")
        assert status == 401, body
        token = jwt.encode({"sub": "u", "rec": ["room:other*"]}, secret, algorithm="HS256")
        bearer = {"Authorization": f"Bearer {token}"}
        status, body = http("POST", f"{server.url}/api/rooms/room:x/recordings", headers=bearer)
        assert (status, body["error"]["code"]) == (403, 103), body
        # Unknown ids (and anything that is not one): 404.
        for rid in ["0123456789abcdef", "..%2F..%2Fetc"]:
            status, body = http("DELETE", f"{server.url}/api/recordings/{rid}", headers=key)
            assert status == 404, body
        # A token that may record `room:other*` records there.
        async def main():
            pc = await publish(f"{server.url}/whip/room:other1", {"Authorization": "Bearer key"})
            await asyncio.sleep(1.5)
            status, started = await asyncio.to_thread(http, "POST", f"{server.url}/api/rooms/room:other1/recordings",
                                                      None, bearer)
            assert status == 201, started
            status, listed = await asyncio.to_thread(http, "GET", f"{server.url}/api/recordings", None, bearer)
            assert [r["id"] for r in listed["recordings"]] == [started["id"]]
            await pc.close()
            return started["id"]

        asyncio.run(asyncio.wait_for(main(), 30))
        assert http("GET", f"{server.url}/healthz")[0] == 200
    finally:
        server.stop()


async def recording_events(ws_url: str, room: str):
    """A WebSocket session subscribed to `room` (the channel recording events are published on)."""
    from websockets.asyncio.client import connect as ws_connect
    ws = await ws_connect(ws_url, subprotocols=["switchboard.v1.json"])
    await ws.send(json.dumps({"id": 1, "connect": {"name": "watcher"}}))
    while json.loads(await ws.recv()).get("id") != 1:
        pass
    await ws.send(json.dumps({"id": 2, "subscribe": {"channel": room}}))
    while json.loads(await ws.recv()).get("id") != 2:
        pass
    return ws


async def next_recording_event(ws) -> dict:
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
        event = (msg.get("pub", {}).get("data") or {}).get("recording")
        if event:
            return event


def test_a_full_disk_fails_the_recording_with_the_reason_and_the_room_goes_on(tmp_path, rooms):
    recordings = tmp_path / "small"
    recordings.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(recordings)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    server = start(tmp_path, rooms, recordings)
    try:
        async def main():
            ws = await recording_events(server.ws_url, "room:full")
            pc = await publish(f"{server.url}/whip/room:full")
            await asyncio.sleep(1.5)
            status, started = await asyncio.to_thread(http, "POST", f"{server.url}/api/rooms/room:full/recordings")
            assert status == 201, started
            first = await next_recording_event(ws)
            assert (first["event"], first["id"]) == ("started", started["id"]), first
            # 256 KiB fill in a few seconds of 320x240 VP8 and Opus.
            failed = await next_recording_event(ws)
            assert failed["event"] == "failed", failed
            assert "No space left on device" in failed["reason"], failed
            status, rec = await asyncio.to_thread(http, "GET", f"{server.url}/api/recordings/{started['id']}")
            assert (status, rec["state"]) == (200, "failed") and "No space" in rec["reason"], rec
            # The server and the room go on: a WHEP player still gets the room's media.
            assert (await asyncio.to_thread(http, "GET", f"{server.url}/healthz"))[0] == 200
            await pc.close()
            await ws.close()

        asyncio.run(asyncio.wait_for(main(), 40))
    finally:
        server.stop()
        subprocess.run(["umount", str(recordings)])
