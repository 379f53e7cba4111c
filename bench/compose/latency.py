#!/usr/bin/env python3
"""The end-to-end latency a composition adds (bench/compose/README.md), with real WebRTC peers.

N aiortc publishers send 640x360 video over WHIP to `room:cmp` at a fixed rate; every frame shows
its send time (ms on this process's monotonic clock, 12 bits and their complement as 24 black or
white blocks, big enough to survive VP8 and a 3x3 grid's downscale). Two WHEP players decode in
the same process, on the same clock:

- `direct`: a plain SFU subscriber of one publisher's track (the SFU path alone);
- `composed`: a player of a composition of the room, reading the stamps of all its tiles (each
  publisher's frames arrive at their own phase against the composition's ticks).

latency = receive time - stamp, publisher encode and player decode included in both, so the
difference of the two is what the composition adds: decode, the wait for its next tick (0 to
1/fps), compose, encode.

`--hold` instead keeps the publishers and `--compositions` compositions running (no players)
until stdin closes: the load under which run.sh measures the SFU's latency in another room.
Prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import sys
import time
import urllib.request

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import VideoStreamTrack

W, H, COLS, ROWS, BITS = 640, 360, 8, 3, 12  # blocks in the top 3/4: the tile label is below
GAP = 4  # between tiles (src/media/video/layout.rs)
ROOM = "room:cmp"


def now_ms() -> int:
    return int(time.monotonic() * 1000)


def stamped(ms: int) -> av.VideoFrame:
    value = ms & 0xFFF
    bits = value | ((~value & 0xFFF) << BITS)
    bw, bh = W // COLS, H // (ROWS + 1)
    y = bytearray()
    for row in range(ROWS):
        line = b"".join((b"\xeb" if bits >> (row * COLS + col) & 1 else b"\x10") * bw for col in range(COLS))
        y += line * bh
    y += b"\x80" * (W * (H - ROWS * bh))
    frame = av.VideoFrame(W, H, "yuv420p")
    frame.planes[0].update(bytes(y))
    frame.planes[1].update(b"\x80" * (W * H // 4))
    frame.planes[2].update(b"\x80" * (W * H // 4))
    return frame


def read_stamp(frame: av.VideoFrame, x0: int, y0: int, w: int, h: int) -> int | None:
    """The 12-bit stamp in the `w`x`h` picture at `x0`, `y0`; None if it does not check."""
    grey = frame.reformat(format="gray").planes[0]
    data, stride = bytes(grey), grey.line_size
    bits = 0
    for i in range(ROWS * COLS):
        row, col = divmod(i, COLS)
        x = x0 + int((col + 0.5) * w / COLS)
        y = y0 + int((row + 0.5) * h / (ROWS + 1))
        if data[y * stride + x] > 128:
            bits |= 1 << i
    value, check = bits & 0xFFF, bits >> BITS
    return value if check == (~value & 0xFFF) else None


def tiles(n: int) -> list[tuple[int, int, int, int]]:
    """The tiles of a full grid of `n` (4, 9) on the canvas (layout.rs: cols = ceil(sqrt(n)))."""
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    tw, th = (W - GAP * (cols - 1)) // cols & ~1, (H - GAP * (rows - 1)) // rows & ~1
    return [(c * (tw + GAP) & ~1, r * (th + GAP) & ~1, tw, th) for r in range(rows) for c in range(cols)][:n]


class Stamped(VideoStreamTrack):
    def __init__(self, fps: int):
        super().__init__()
        self.fps, self.n, self.start = fps, 0, None

    async def recv(self):
        self.start = self.start or time.monotonic()
        await asyncio.sleep(max(0.0, self.start + self.n / self.fps - time.monotonic()))
        frame = stamped(now_ms())
        frame.pts, frame.time_base = self.n * 90000 // self.fps, fractions.Fraction(1, 90000)
        self.n += 1
        return frame


async def http(method: str, url: str, body: str = "", content_type: str = "application/json"):
    def call():
        req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                                     headers={"Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read().decode()

    return await asyncio.get_running_loop().run_in_executor(None, call)


async def publish(url: str, fps: int) -> RTCPeerConnection:
    pc = RTCPeerConnection()
    pc.addTransceiver(Stamped(fps), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    _, answer = await http("POST", f"{url}/whip/{ROOM}", pc.localDescription.sdp, "application/sdp")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc


async def play(url: str, query: str, rects: list, samples: list, measuring: asyncio.Event):
    pc = RTCPeerConnection()
    ready = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def on_track(track):
        if not ready.done():
            ready.set_result(track)

    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    _, answer = await http("POST", f"{url}/whep/{ROOM}{query}", pc.localDescription.sdp, "application/sdp")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    track = await asyncio.wait_for(ready, 20)

    async def consume():
        while True:
            frame = await track.recv()
            got = now_ms()
            for rect in rects if measuring.is_set() else ():
                stamp = read_stamp(frame, *rect)
                if stamp is not None:
                    samples.append((got - stamp) & 0xFFF)

    return pc, asyncio.ensure_future(consume())


def pct(values: list, p: float):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else None


async def compose(url: str, fps: int, layout: str = "grid") -> dict:
    body = json.dumps({"width": W, "height": H, "fps": fps, "layout": layout})
    status, text = await http("POST", f"{url}/api/rooms/{ROOM}/compositions", body)
    assert status == 201, text
    return json.loads(text)


async def stop(url: str, comp: dict) -> None:
    """Stops a composition at once (the next run must not find it still composing)."""
    await http("DELETE", f"{url}/api/rooms/{ROOM}/compositions/{comp['id']}")


async def main(a) -> None:
    if a.hold:
        pubs = [await publish(a.url, a.fps) for _ in range(a.publishers)]
        comps = [await compose(a.url, a.fps) for _ in range(a.compositions)]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for comp in comps:
            await stop(a.url, comp)
    else:
        measuring = asyncio.Event()
        direct, composed = [], []
        comp = await compose(a.url, a.fps)
        c_pc, c_task = await play(a.url, f"?track={comp['track']}", tiles(a.publishers), composed, measuring)
        pubs = [await publish(a.url, a.fps) for _ in range(a.publishers)]
        # A WHEP player without `?track` plays the room's newest video: the last publisher's.
        d_pc, d_task = await play(a.url, "", [(0, 0, W, H)], direct, measuring)
        await asyncio.sleep(a.warmup)
        measuring.set()
        await asyncio.sleep(a.duration)
        measuring.clear()
        for task in (d_task, c_task):
            task.cancel()
        out = {"what": "composition_latency", "publishers": a.publishers, "fps": a.fps, "size": f"{W}x{H}"}
        for name, s in (("direct", direct), ("composed", composed)):
            out[name] = {"samples": len(s), "p50_ms": pct(s, 0.5), "p95_ms": pct(s, 0.95)}
        if direct and composed:
            out["added_p50_ms"] = pct(composed, 0.5) - pct(direct, 0.5)
            out["added_p95_ms"] = pct(composed, 0.95) - pct(direct, 0.95)
        print(json.dumps(out), flush=True)
        await stop(a.url, comp)
        await asyncio.gather(d_pc.close(), c_pc.close())
    await asyncio.gather(*(pc.close() for pc in pubs))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--warmup", type=float, default=4)
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--hold", action="store_true")
    p.add_argument("--compositions", type=int, default=1)
    asyncio.run(main(p.parse_args()))
