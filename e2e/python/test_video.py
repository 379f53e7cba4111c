"""Compositions (video MCU) and filter pipelines with real peers: aiortc publishes flat red, blue
and green video over WHIP; a composition of the room is played over WHEP (`?track=`) by aiortc,
which decodes it: its tiles have the publishers' colours where the grid puts them, at the
configured size and RTP rate, and a third publisher turns the grid into three tiles. A pipeline
pixelates a publisher showing rustface's test picture and reports the faces on the room channel.
Bad input gets its codes; the SFU keeps forwarding throughout. Waits are on decoded frames and
events, with deadlines.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest

aiortc = pytest.importorskip("aiortc")
import av  # noqa: E402
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import VideoStreamTrack  # noqa: E402

from test_webrtc import http_async, join_room, run  # noqa: E402

ROOM = "room:py-video"
RED, BLUE, GREEN = (230, 20, 20), (20, 20, 230), (20, 200, 20)
FACES = Path(__file__).resolve().parents[2] / "vendor" / "rustface" / "faces.png"


@pytest.fixture
def server(make_server, tmp_path):
    config = tmp_path / "rooms.toml"
    config.write_text("video_max_compositions = 1\n[namespaces.room]\nrooms = true\njoin_leave = true\n")
    return make_server(args=["--no-demo", "--config", str(config)])


def flat(colour, width: int = 320, height: int = 240) -> av.VideoFrame:
    image = av.VideoFrame(width, height, "rgb24")
    image.planes[0].update(bytes(colour) * (image.planes[0].buffer_size // 3))
    return image.reformat(format="yuv420p")


class Picture(VideoStreamTrack):
    """A still picture (a flat colour, or an image), 320x240 unless the image says otherwise."""

    def __init__(self, colour=None, image: av.VideoFrame | None = None):
        super().__init__()
        self.frame = flat(colour) if image is None else image.reformat(format="yuv420p")

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.frame.width, self.frame.height, "yuv420p")
        for dst, src in zip(frame.planes, self.frame.planes):
            dst.update(bytes(src))
        frame.pts, frame.time_base = pts, time_base
        return frame


async def publish(url: str, track, *more) -> RTCPeerConnection:
    pc = RTCPeerConnection()
    for t in (track, *more):
        pc.addTransceiver(t, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, _, answer = await http_async("POST", f"{url}/whip/{ROOM}", pc.localDescription.sdp, "application/sdp")
    assert status == 201, answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc


async def play(url: str, track: str | None = None):
    """A WHEP player (of `track`, else of the room's newest video); returns it and its track."""
    pc = RTCPeerConnection()
    ready = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def on_track(t):
        if t.kind == "video" and not ready.done():
            ready.set_result(t)

    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    query = f"?track={track}" if track else ""
    status, _, answer = await http_async("POST", f"{url}/whep/{ROOM}{query}", pc.localDescription.sdp,
                                         "application/sdp")
    assert status == 201, answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc, await asyncio.wait_for(ready, 20)


async def api(method: str, url: str, body=None):
    status, _, text = await http_async(method, url, json.dumps(body) if body is not None else "",
                                       "application/json")
    return status, json.loads(text) if text.startswith("{") else text


def rgb(frame, x: int, y: int):
    plane = frame.reformat(format="rgb24").planes[0]
    i = y * plane.line_size + 3 * x
    return tuple(bytes(plane)[i:i + 3])


def grey_variance(frame, xs: range, ys: range) -> float:
    """The luma variance of a region (no numpy here: plain Python)."""
    plane = frame.reformat(format="gray").planes[0]
    data = bytes(plane)
    values = [data[y * plane.line_size + x] for y in ys for x in xs]
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def near(a, b, tolerance=45) -> bool:
    return all(abs(p - q) <= tolerance for p, q in zip(a, b))


def assert_last_picture_red_then_blue(path):
    """The file's last picture (640x360) is red on the left and blue on the right."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-sseof", "-0.5", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    assert len(raw) == 640 * 360 * 3, len(raw)

    def px(x, y):
        i = (y * 640 + x) * 3
        return tuple(raw[i:i + 3])

    assert near(px(160, 180), RED) and near(px(480, 180), BLUE), (px(160, 180), px(480, 180))


async def frame_where(track, ok, limit: float):
    """The first decoded frame for which `ok(frame)` holds, within `limit` seconds."""
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        last = await asyncio.wait_for(track.recv(), 20)
        if ok(last):
            return last
    samples = {p: rgb(last, *p) for p in [(160, 90), (480, 90), (320, 270)]} if last is not None else None
    raise AssertionError(f"no matching frame in {limit} s; last: {samples}")


class Switching(Picture):
    """A flat colour at 640x360, then at 320x240 once `shrink()` is called: one track, so one
    encoder, which starts the new size with a keyframe as a camera switching modes does."""

    def __init__(self, colour):
        super().__init__(colour)
        self.frame = flat(colour, 640, 360)
        self.small = flat(colour)

    def shrink(self):
        self.frame = self.small


class Watch:
    """Decodes a track in the background, keeping `sample(frame)` of every frame, so that a test
    can wait for what it expects without a backlog of old frames in between."""

    def __init__(self, track, sample=lambda f: None):
        self.samples: list = []
        self.changed = asyncio.Event()
        self.task = asyncio.ensure_future(self.run(track, sample))

    async def run(self, track, sample):
        try:
            while True:
                frame = await track.recv()
                self.samples.append(sample(frame))
                self.changed.set()
        except Exception:  # the track ended (MediaStreamError): no more frames
            self.changed.set()

    @property
    def count(self) -> int:
        return len(self.samples)

    async def until(self, ok, limit: float = 15):
        """Waits until `ok(self)` holds, for at most `limit` seconds of decoded frames."""
        deadline = time.monotonic() + limit
        while not (self.samples and ok(self)):
            left = deadline - time.monotonic()
            assert left > 0 and not self.task.done(), f"not reached in {limit} s; last: {self.samples[-3:]}"
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def more(self, n: int, limit: float = 15):
        """Waits for `n` more frames."""
        target = self.count + n
        await self.until(lambda w: w.count >= target, limit)


def room_data(msg: dict):
    pub = msg.get("pub") or {}
    return pub.get("data") if isinstance(pub, dict) else None


async def room_message(ws, pick, limit: float = 15):
    """The first `pick(data)` that is not None of the room channel's publications."""
    deadline = time.monotonic() + limit
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no matching room message in {limit} s"
        data = room_data(json.loads(await asyncio.wait_for(ws.recv(), left)))
        if isinstance(data, dict) and (found := pick(data)) is not None:
            return found


async def new_video_track(ws, known: set) -> str:
    """The id of the next publisher's video track (the room's track list on its channel)."""
    def pick(data):
        if "sfu" not in data:
            return None
        new = [t["id"] for t in data["sfu"]["tracks"]
               if t["kind"] == "video" and t.get("participant") != "server" and t["id"] not in known]
        return new[0] if new else None

    track = await room_message(ws, pick)
    known.add(track)
    return track


async def video_event(ws, unit: str, event: str):
    """The next `event` of composition or pipeline `unit` on the room channel."""
    def pick(data):
        video = data.get("video")
        return video["event"] if video and video["id"] == unit and video["event"]["event"] == event else None

    return await room_message(ws, pick)


def config(tmp_path, extra: str = "") -> list[str]:
    path = tmp_path / "rooms.toml"
    path.write_text(extra + "[namespaces.room]\nrooms = true\njoin_leave = true\n")
    return ["--no-demo", "--config", str(path)]


def no_panic(server):
    log = server.stderr_path.read_text(errors="replace")
    assert "panicked" not in log, log[-3000:]


def test_two_publishers_compose_into_one_track_a_third_joins_and_bad_input_gets_codes(server):
    async def main():
        red = await publish(server.url, Picture(RED))
        blue = await publish(server.url, Picture(BLUE))
        status, comp = await api("POST", f"{server.url}/api/rooms/{ROOM}/compositions",
                                 {"width": 640, "height": 360, "fps": 15})
        assert status == 201, comp
        assert comp["kind"] == "composition" and comp["track"].startswith("server-composition")
        viewer, track = await play(server.url, comp["track"])

        two = await frame_where(track, lambda f: near(rgb(f, 160, 180), RED) and near(rgb(f, 480, 180), BLUE), 20)
        assert (two.width, two.height) == (640, 360)
        # RTP time advances by 90000/15 per frame: the configured rate (the clock of the stream,
        # not of this machine).
        frames = [await asyncio.wait_for(track.recv(), 10) for _ in range(10)]
        steps = [(b.pts - a.pts) for a, b in zip(frames, frames[1:])]
        assert sorted(steps)[len(steps) // 2] == 6000, steps

        green = await publish(server.url, Picture(GREEN))
        three = await frame_where(
            track, lambda f: near(rgb(f, 160, 90), RED) and near(rgb(f, 480, 90), BLUE) and near(rgb(f, 320, 270), GREEN),
            10)
        joined = time.monotonic()
        assert (three.width, three.height) == (640, 360)

        # Bad input and the caps: codes, and nothing stops.
        status, err = await api("POST", f"{server.url}/api/rooms/{ROOM}/compositions", {})
        assert status == 429 and err["error"]["code"] == 106, err
        status, err = await api("POST", f"{server.url}/api/rooms/{ROOM}/pipelines",
                                {"track": "nope", "filters": [{"type": "pixelate"}]})
        assert status == 404 and err["error"]["code"] == 102, err
        status, err = await api("POST", f"{server.url}/api/rooms/{ROOM}/pipelines",
                                {"track": comp["track"], "filters": [{"type": "sepia"}]})
        assert status == 400 and err["error"]["code"] == 107 and "unknown_filter" in err["error"]["message"], err
        status, err = await api("POST", f"{server.url}/api/rooms/{ROOM}/compositions", {"width": 4000, "height": 360})
        assert status == 400 and err["error"]["code"] == 107, err

        # The publisher that stops: its tile goes, the others stay; the SFU goes on forwarding
        # (a plain WHEP player gets frames of the newest track).
        await red.close()
        await frame_where(track, lambda f: near(rgb(f, 160, 180), BLUE) and near(rgb(f, 480, 180), GREEN), 15)
        sfu, sfu_track = await play(server.url)
        await asyncio.wait_for(sfu_track.recv(), 20)

        status, listed = await api("GET", f"{server.url}/api/rooms/{ROOM}/compositions")
        assert status == 200 and [r["id"] for r in listed["running"]] == [comp["id"]], listed
        status, stopped = await api("DELETE", f"{server.url}/api/rooms/{ROOM}/compositions/{comp['id']}")
        assert status == 200 and stopped["id"] == comp["id"], stopped
        status, err = await api("DELETE", f"{server.url}/api/rooms/{ROOM}/compositions/{comp['id']}")
        assert status == 404 and err["error"]["code"] == 102, err
        status, _, text = await http_async("GET", f"{server.url}/metrics", "", "text/plain")
        assert "switchboard_video_frames_total" in text and "switchboard_video_refused_total 1" in text, text[-2000:]
        await asyncio.gather(blue.close(), green.close(), viewer.close(), sfu.close())
        return joined

    run(main(), 55)


def test_a_pipeline_pixelates_a_track_and_reports_faces_on_the_room_channel(server):
    async def main():
        image = next(av.open(str(FACES)).decode(video=0))
        ws, _ = await join_room(server.ws_url, ROOM, "watcher")
        source = await publish(server.url, Picture(image=image))
        probe, probe_track = await play(server.url)
        first = await asyncio.wait_for(probe_track.recv(), 20)
        assert (first.width, first.height) == (480, 270)
        tracks = []
        # The source's id: the room's track list arrives on the room channel.
        while not tracks:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
            pub = msg.get("pub") or {}
            data = pub.get("data") if isinstance(pub, dict) else None
            if isinstance(data, dict) and "sfu" in data:
                tracks = [t["id"] for t in data["sfu"]["tracks"] if t["kind"] == "video"]
        filters = [{"type": "faces", "rate": 2, "width": 480}, {"type": "pixelate", "region": {"x": 0.5, "y": 0.5, "w": 0.5, "h": 0.5}, "block": 32}]
        status, pipe = await api("POST", f"{server.url}/api/rooms/{ROOM}/pipelines",
                                 {"track": tracks[0], "filters": filters})
        assert status == 201, pipe
        viewer, track = await play(server.url, pipe["track"])

        # Faces, on the room channel: boxes over the three faces of the picture (detections run
        # twice a second; the first frames of a fresh WebRTC stream may be blurry: wait for one).
        known = [(5, 50, 55, 55), (207, 35, 61, 60), (385, 33, 60, 62)]

        def overlap(a, b):
            w = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
            h = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
            return w * h

        def all_found(faces):
            return all(any(overlap((f["x"], f["y"], f["w"], f["h"]), k) * 2 > k[2] * k[3] for f in faces)
                       for k in known)

        deadline, seen = time.monotonic() + 15, []
        while not (seen and all_found(seen[-1])):
            assert time.monotonic() < deadline, seen[-3:]
            msg = json.loads(await asyncio.wait_for(ws.recv(), 20))
            pub = msg.get("pub") or {}
            data = pub.get("data") if isinstance(pub, dict) else None
            if isinstance(data, dict) and "video" in data and data["video"]["id"] == pipe["id"]:
                event = data["video"]["event"]
                assert event["event"] == "faces" and (event["width"], event["height"]) == (480, 270), event
                seen.append(event["faces"])

        # The filtered track: the lower-right quarter is blocks, the rest is the picture.
        out = await asyncio.wait_for(track.recv(), 20)
        for _ in range(5):
            out = await asyncio.wait_for(track.recv(), 20)
        xs, ys = range(240, 480), range(140, 270)
        before, after = grey_variance(first, xs, ys), grey_variance(out, xs, ys)
        assert after < 0.6 * before, (after, before)
        # One block (the region starts at 240, 134; blocks are 32 wide), inside its edges.
        block = grey_variance(out, range(244, 268), range(138, 162))
        assert block < 30, block
        # The upper-left quarter is the picture still (within codec noise).
        xs, ys = range(0, 200), range(0, 120)
        assert grey_variance(out, xs, ys) > 0.5 * grey_variance(first, xs, ys)

        status, stopped = await api("DELETE", f"{server.url}/api/rooms/{ROOM}/pipelines/{pipe['id']}")
        assert status == 200, stopped
        await asyncio.gather(source.close(), probe.close(), viewer.close())
        await ws.close()

    run(main(), 55)


def test_a_recording_of_the_room_records_the_composition_as_one_webm_that_ffmpeg_decodes(make_server, tmp_path):
    import shutil

    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg (Debian's) is not installed")
    config = tmp_path / "rooms.toml"
    config.write_text("[namespaces.room]\nrooms = true\njoin_leave = true\n")
    recordings = tmp_path / "recordings"
    server = make_server(env={"SWITCHBOARD_RECORDINGS_DIR": str(recordings)}, args=["--no-demo", "--config", str(config)])

    async def main():
        red = await publish(server.url, Picture(RED))
        blue = await publish(server.url, Picture(BLUE))
        status, comp = await api("POST", f"{server.url}/api/rooms/{ROOM}/compositions", {"fps": 10})
        assert status == 201, comp
        # Recording starts once the composition shows both tiles (a WHEP player sees them).
        viewer, track = await play(server.url, comp["track"])
        await frame_where(track, lambda f: near(rgb(f, 160, 180), RED) and near(rgb(f, 480, 180), BLUE), 20)
        status, rec = await api("POST", f"{server.url}/api/rooms/{ROOM}/recordings")
        assert status == 201, rec
        for _ in range(30):  # 3 s of the composition at 10 fps
            await asyncio.wait_for(track.recv(), 10)
        status, stopped = await api("DELETE", f"{server.url}/api/recordings/{rec['id']}")
        assert status == 200, stopped
        await asyncio.gather(red.close(), blue.close(), viewer.close())
        return rec["id"], stopped

    rid, stopped = run(main(), 55)
    composed = [f for f in stopped["files"] if f["participant"] == "server" and f["kind"] == "video"]
    assert len(composed) == 1, stopped["files"]
    path = recordings / rid / composed[0]["name"]
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
                           capture_output=True, text=True, check=True)
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("vp8", 640, 360), stream
    assert int(stream["nb_read_frames"]) >= 10, stream
    assert_last_picture_red_then_blue(path)


def test_a_composed_recording_is_one_webm_of_the_grid_and_the_rooms_mixed_audio(make_server, tmp_path):
    """OpenVidu's COMPOSED mode without a browser: `{"composed": true}` starts a composition for
    the recording, and its one WebM holds the grid (red left, blue right) and the mix of both
    publishers' tones; stopping the recording stops that composition. Bad choices get codes."""
    import shutil
    from array import array

    from test_mix import Tone, amplitude

    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg (Debian's) is not installed")
    config = tmp_path / "rooms.toml"
    config.write_text("video_max_compositions = 1\n[namespaces.room]\nrooms = true\njoin_leave = true\n")
    recordings = tmp_path / "recordings"
    server = make_server(env={"SWITCHBOARD_RECORDINGS_DIR": str(recordings)}, args=["--no-demo", "--config", str(config)])
    path = f"{server.url}/api/rooms/{ROOM}"

    async def main():
        red = await publish(server.url, Picture(RED), Tone(440))
        blue = await publish(server.url, Picture(BLUE), Tone(660))
        # The node's one composition runs: a recording that needs a new one is refused (429, 106),
        # one naming a composition that is not there too (404, 102), and two ways at once (400).
        status, other = await api("POST", f"{path}/compositions", {"fps": 10})
        assert status == 201, other
        status, body = await api("POST", f"{path}/recordings", {"composed": True})
        assert (status, body["error"]["code"]) == (429, 106), body
        status, body = await api("POST", f"{path}/recordings", {"composition": "cmp-0000000000000000"})
        assert (status, body["error"]["code"]) == (404, 102), body
        status, body = await api("POST", f"{path}/recordings", {"composed": True, "mix": True})
        assert (status, body["error"]["code"]) == (400, 107), body
        status, _ = await api("DELETE", f"{path}/compositions/{other['id']}")
        assert status == 200

        status, rec = await api("POST", f"{path}/recordings", {"composed": True, "composition": {"fps": 10}})
        assert status == 201, rec
        status, listed = await api("GET", f"{path}/compositions")
        [comp] = listed["running"]
        assert comp["id"] == rec["composition"], (listed, rec)
        # Watch the composition (a WHEP player) until it shows both tiles, then 3 s of it.
        viewer, track = await play(server.url, comp["track"])
        await frame_where(track, lambda f: near(rgb(f, 160, 180), RED) and near(rgb(f, 480, 180), BLUE), 20)
        for _ in range(30):
            await asyncio.wait_for(track.recv(), 10)
        status, stopped = await api("DELETE", f"{server.url}/api/recordings/{rec['id']}")
        assert status == 200, stopped
        # The composition was the recording's own: it stopped with it.
        status, listed = await api("GET", f"{path}/compositions")
        assert (status, listed["running"]) == (200, []), listed
        await asyncio.gather(red.close(), blue.close(), viewer.close())
        return rec["id"], stopped

    rid, stopped = run(main(), 70)
    assert (stopped["state"], stopped["reason"]) == ("stopped", "stopped"), stopped
    [f] = stopped["files"]
    assert (f["kind"], f["codec"], f["label"]) == ("video", "vp8+opus", "composed"), f
    file = recordings / rid / f["name"]
    assert f["name"].endswith("_composed.webm") and f["bytes"] == file.stat().st_size > 0, f
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(file)],
        capture_output=True, text=True, check=True).stdout)
    streams = {s["codec_type"]: s for s in probe["streams"]}
    assert len(probe["streams"]) == 2, probe["streams"]
    video, audio = streams["video"], streams["audio"]
    assert (video["codec_name"], video["width"], video["height"]) == ("vp8", 640, 360), video
    assert audio["codec_name"] == "opus", audio
    duration = float(probe["format"]["duration"])
    print(f"composed recording: {duration:.2f} s, {video['nb_read_frames']} video frames, "
          f"{audio['nb_read_frames']} audio packets")
    # About 3 s at 10 fps (ended after the player's 30 frames; the file starts at a keyframe).
    assert 2.0 <= duration <= 8.0, probe["format"]
    assert int(video["nb_read_frames"]) >= 20, video
    assert int(audio["nb_read_frames"]) >= duration * 50 * 0.8, audio  # a 20 ms packet each tick

    assert_last_picture_red_then_blue(file)
    # The audio: both publishers' tones, mixed (the median over 250 ms blocks).
    pcm = array("h")
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(file), "-vn", "-f", "s16le", "-ac", "1", "-ar", "48000",
                              "-"], capture_output=True, check=True).stdout
    pcm.frombytes(decoded[: len(decoded) // 2 * 2])
    blocks = [pcm[i: i + 12000] for i in range(0, len(pcm) - 12000, 12000)]
    assert blocks, len(pcm)
    got = {hz: round(sorted(amplitude(b, hz) for b in blocks)[len(blocks) // 2]) for hz in (440, 660, 880)}
    print("composed recording tones (median of", len(blocks), "blocks)", got)
    assert got[440] > 1500 and got[660] > 1500, got
    assert got[880] < 0.1 * min(got[440], got[660]), got


# Grid of two: tiles at x 0..318 and 322..640. Speaker of two: the speaker over y 0..270 at full
# width, the other in the strip from y 274.
POINTS = [(160, 180), (480, 180), (320, 130), (320, 320)]


def composed(frame):
    return [rgb(frame, *p) for p in POINTS]


def grid(a, b):
    """Two tiles of colours `a` and `b`, either way round (tiles of tracks present when the
    composition starts come in no set order)."""
    def ok(w):
        left, right = w.samples[-1][:2]
        return (near(left, a) and near(right, b)) or (near(left, b) and near(right, a))

    return ok


def test_a_publisher_switching_resolution_then_stopping_keeps_the_composition_and_the_sfu_going(make_server, tmp_path):
    server = make_server(args=config(tmp_path, "video_max_compositions = 1\nvideo_max_pipelines = 1\n"))

    async def main():
        ws, _ = await join_room(server.ws_url, ROOM, "watcher")
        known: set = set()
        red_track = Switching(RED)
        red = await publish(server.url, red_track)
        red_id = await new_video_track(ws, known)
        blue = await publish(server.url, Picture(BLUE))
        blue_id = await new_video_track(ws, known)
        # A plain SFU subscriber of blue's own track: forwarding must never stop.
        sfu_pc, sfu_track = await play(server.url, blue_id)
        sfu = Watch(sfu_track)

        status, comp = await api("POST", f"{server.url}/api/rooms/{ROOM}/compositions", {"fps": 15})
        assert status == 201, comp
        comp_pc, comp_track = await play(server.url, comp["track"])
        grid_watch = Watch(comp_track, composed)
        status, pipe = await api("POST", f"{server.url}/api/rooms/{ROOM}/pipelines",
                                 {"track": red_id, "filters": [{"type": "pixelate", "region": {"x": 0, "y": 0, "w": 0.25, "h": 0.25}}]})
        assert status == 201, pipe
        pipe_pc, pipe_track = await play(server.url, pipe["track"])
        filtered = Watch(pipe_track, lambda f: (f.width, f.height, rgb(f, f.width * 3 // 4, f.height * 3 // 4)))

        def filtered_at(w, h):
            return lambda watch: watch.samples[-1][:2] == (w, h) and near(watch.samples[-1][2], RED)

        await grid_watch.until(grid(RED, BLUE), 20)
        await filtered.until(filtered_at(640, 360), 20)

        # The switch: the pipeline's output follows the source's new size...
        red_track.shrink()
        await filtered.until(filtered_at(320, 240))
        # ...and the composition goes on with red in its tile: over 3 s of composed frames (past
        # the 2 s after which a stalled tile would turn into a placeholder) every frame is red and
        # blue.
        switched = grid_watch.count
        red_at = 0 if near(grid_watch.samples[-1][0], RED) else 1
        await grid_watch.more(45)
        for sample in grid_watch.samples[switched:]:
            assert near(sample[red_at], RED) and near(sample[1 - red_at], BLUE), sample
        await sfu.more(15)

        # The layout, live: speaker (one tile large, the other in the strip), and bad updates.
        url = f"{server.url}/api/rooms/{ROOM}/compositions"
        status, changed = await api("PATCH", f"{url}/{comp['id']}", {"layout": "speaker"})
        assert status == 200 and changed["layout"] == "speaker", changed

        def speaker(w):
            big, strip = w.samples[-1][2], w.samples[-1][3]
            return (near(big, RED) and near(strip, BLUE)) or (near(big, BLUE) and near(strip, RED))

        await grid_watch.until(speaker)
        status, err = await api("PATCH", f"{url}/{comp['id']}", {"layout": "mosaic"})
        assert status == 400 and err["error"]["code"] == 107, err
        status, err = await api("PATCH", f"{url}/{pipe['id']}", {"layout": "grid"})
        assert status == 404 and err["error"]["code"] == 102, err
        status, err = await api("PATCH", f"{url}/cmp-nope", {"layout": "grid"})
        assert status == 404 and err["error"]["code"] == 102, err
        status, listed = await api("GET", url)
        assert [(r["id"], r.get("layout")) for r in listed["running"]] == [(comp["id"], "speaker"), (pipe["id"], None)], listed
        status, _ = await api("PATCH", f"{url}/{comp['id']}", {"layout": "grid"})
        assert status == 200
        await grid_watch.until(grid(RED, BLUE))

        # Red stops: its tile goes (blue alone fills the canvas), its pipeline stops by itself with
        # an event, freeing its place under the cap; the SFU goes on forwarding blue.
        await red.close()
        await grid_watch.until(grid(BLUE, BLUE))
        event = await video_event(ws, pipe["id"], "stopped")
        assert event == {"event": "stopped", "kind": "pipeline", "reason": "source_gone"}, event
        status, listed = await api("GET", url)
        assert [r["id"] for r in listed["running"]] == [comp["id"]], listed
        status, err = await api("DELETE", f"{server.url}/api/rooms/{ROOM}/pipelines/{pipe['id']}")
        assert status == 404 and err["error"]["code"] == 102, err
        status, again = await api("POST", f"{server.url}/api/rooms/{ROOM}/pipelines",
                                  {"track": blue_id, "filters": [{"type": "pixelate"}]})
        assert status == 201, again
        status, _ = await api("DELETE", f"{server.url}/api/rooms/{ROOM}/pipelines/{again['id']}")
        assert status == 200
        event = await video_event(ws, again["id"], "stopped")
        assert event["reason"] == "stopped", event
        await sfu.more(15)
        await grid_watch.more(15)
        no_panic(server)
        await asyncio.gather(blue.close(), sfu_pc.close(), comp_pc.close(), pipe_pc.close())
        await ws.close()

    run(main(), 55)


def test_a_composition_whose_room_empties_stops_by_itself_and_frees_its_place(make_server, tmp_path):
    server = make_server(args=config(tmp_path, "video_max_compositions = 1\nvideo_room_empty_seconds = 1\n"))

    async def main():
        ws, _ = await join_room(server.ws_url, ROOM, "watcher")
        blue = await publish(server.url, Picture(BLUE))
        await new_video_track(ws, set())
        status, comp = await api("POST", f"{server.url}/api/rooms/{ROOM}/compositions", {"fps": 10})
        assert status == 201, comp
        viewer, track = await play(server.url, comp["track"])
        await frame_where(track, lambda f: near(rgb(f, 320, 180), BLUE), 20)
        # The publisher and the viewer leave: nobody is in the room on this node any more (the
        # watcher is on the room channel, not a WebRTC peer).
        await asyncio.gather(blue.close(), viewer.close())
        event = await video_event(ws, comp["id"], "stopped")
        assert event == {"event": "stopped", "kind": "composition", "reason": "room_empty"}, event
        status, listed = await api("GET", f"{server.url}/api/rooms/{ROOM}/compositions")
        assert listed["running"] == [], listed
        status, _, text = await http_async("GET", f"{server.url}/metrics", "", "text/plain")
        assert "switchboard_video_compositions 0" in text, text[-2000:]
        # Its place is free, for one of two asked for at once (a place is taken at admission, not
        # once the composition runs); a composition of a room nobody joins stops as well.
        both = await asyncio.gather(*(api("POST", f"{server.url}/api/rooms/{ROOM}/compositions", {}) for _ in range(2)))
        assert sorted(status for status, _ in both) == [201, 429], both
        again = next(body for status, body in both if status == 201)
        event = await video_event(ws, again["id"], "stopped")
        assert event["reason"] == "room_empty", event
        no_panic(server)
        await ws.close()

    run(main(), 55)
