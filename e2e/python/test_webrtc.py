"""aiortc (a WebRTC stack this project did not write) against the SFU: WHIP in, WHEP out, and as a
room participant through the SFU's own endpoints, joined over the WebSocket protocol.

Media is aiortc's synthetic video (a generated frame sequence); the receiving side decodes real
frames (`track.recv()` returns decoded `av.VideoFrame`s), so this checks forwarding end to end.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request

import pytest
from websockets.asyncio.client import connect as ws_connect

aiortc = pytest.importorskip("aiortc")
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import VideoStreamTrack  # noqa: E402


@pytest.fixture
def server(make_server, tmp_path):
    """A server whose `room` namespace holds rooms (as the demo configures it)."""
    config = tmp_path / "rooms.toml"
    config.write_text("[namespaces.room]\nrooms = true\njoin_leave = true\n")
    return make_server(args=["--no-demo", "--config", str(config)])


def run(coro, timeout: float = 45):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def http(method: str, url: str, body: str, content_type: str) -> tuple[int, dict, str]:
    req = urllib.request.Request(url, data=body.encode(), method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, {k.lower(): v for k, v in res.headers.items()}, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


async def http_async(*args) -> tuple[int, dict, str]:
    return await asyncio.to_thread(http, *args)


async def publisher(url: str) -> RTCPeerConnection:
    pc = RTCPeerConnection()
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, answer = await http_async("POST", url, pc.localDescription.sdp, "application/sdp")
    assert status == 201, answer
    assert headers["content-type"] == "application/sdp"
    assert headers["location"].startswith("/rtc/peers/")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc


async def frames_received(pc: RTCPeerConnection, n: int) -> list:
    """Decoded frames from the first remote video track of `pc`."""
    track = await asyncio.wait_for(pc.track_ready, 20)
    return [await asyncio.wait_for(track.recv(), 20) for _ in range(n)]


def watch_tracks(pc: RTCPeerConnection) -> None:
    loop = asyncio.get_running_loop()
    pc.track_ready = loop.create_future()

    @pc.on("track")
    def on_track(track):
        if track.kind == "video" and not pc.track_ready.done():
            pc.track_ready.set_result(track)


def test_aiortc_publishes_over_whip_and_plays_over_whep(server):
    async def main():
        pub = await publisher(f"{server.url}/whip/room:py-whip")
        sub = RTCPeerConnection()
        watch_tracks(sub)
        sub.addTransceiver("video", direction="recvonly")
        await sub.setLocalDescription(await sub.createOffer())
        status, _, answer = await http_async("POST", f"{server.url}/whep/room:py-whip", sub.localDescription.sdp,
                                             "application/sdp")
        assert status == 201, answer
        await sub.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        frames = await frames_received(sub, 10)
        assert all(f.width == 640 and f.height == 480 for f in frames), [(f.width, f.height) for f in frames]
        # pts increase: these are successive frames, not one repeated.
        assert frames[-1].pts > frames[0].pts
        await asyncio.gather(pub.close(), sub.close())

    run(main())


async def join_room(ws_url: str, room: str, name: str):
    """A WebSocket session subscribed to `room`; returns it and its client id."""
    ws = await ws_connect(ws_url, subprotocols=["switchboard.v1.json"])
    await ws.send(json.dumps({"id": 1, "connect": {"name": name}}))
    client = None
    while client is None:
        msg = json.loads(await ws.recv())
        if msg.get("id") == 1:
            client = msg["connect"]["client"]
    await ws.send(json.dumps({"id": 2, "subscribe": {"channel": room}}))
    while json.loads(await ws.recv()).get("id") != 2:
        pass
    return ws, client


def test_aiortc_participants_publish_and_subscribe_through_the_sfu(server):
    room = "room:py-sfu"
    path = f"{server.url}/rtc/sfu/{urllib.parse.quote(room)}"

    async def main():
        ws_a, a = await join_room(server.ws_url, room, "aio-a")
        ws_b, b = await join_room(server.ws_url, room, "aio-b")

        # a publishes its camera, labelled.
        pc_a = RTCPeerConnection()
        pc_a.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await pc_a.setLocalDescription(await pc_a.createOffer())
        body = json.dumps({"client": a, "sdp": pc_a.localDescription.sdp, "publish": {"0": "camera"}})
        status, headers, text = await http_async("POST", path, body, "application/json")
        assert status == 201, text
        joined = json.loads(text)
        assert headers["location"] == f"/rtc/peers/{joined['peer']}"
        await pc_a.setRemoteDescription(RTCSessionDescription(sdp=joined["sdp"], type="answer"))

        # The room channel announces a's track to b.
        track = None
        while track is None:
            msg = json.loads(await asyncio.wait_for(ws_b.recv(), 15))
            tracks = (msg.get("pub", {}).get("data") or {}).get("sfu", {}).get("tracks", [])
            track = next((t for t in tracks if t["participant"] == a), None)
        assert (track["kind"], track["label"], track["name"]) == ("video", "camera", "aio-a")

        # b receives it on a receive-only m-line named in `subscribe`.
        pc_b = RTCPeerConnection()
        watch_tracks(pc_b)
        pc_b.addTransceiver("video", direction="recvonly")
        await pc_b.setLocalDescription(await pc_b.createOffer())
        body = json.dumps({"client": b, "sdp": pc_b.localDescription.sdp, "subscribe": {"0": track["id"]}})
        status, _, text = await http_async("POST", path, body, "application/json")
        assert status == 201, text
        await pc_b.setRemoteDescription(RTCSessionDescription(sdp=json.loads(text)["sdp"], type="answer"))
        frames = await frames_received(pc_b, 10)
        assert frames[0].width == 640

        # Someone who is not in the room cannot join its SFU.
        body = json.dumps({"client": "not-in-room", "sdp": pc_b.localDescription.sdp})
        status, _, text = await http_async("POST", path, body, "application/json")
        assert status == 404 and json.loads(text)["error"]["code"] == 102

        # a leaves: the track list loses its track.
        status, _, _ = await http_async("DELETE", f"{server.url}/rtc/peers/{joined['peer']}", "", "text/plain")
        assert status == 200
        while True:
            msg = json.loads(await asyncio.wait_for(ws_b.recv(), 15))
            data = msg.get("pub", {}).get("data") or {}
            if "sfu" in data and not any(t["participant"] == a for t in data["sfu"]["tracks"]):
                break
        await asyncio.gather(pc_a.close(), pc_b.close(), ws_a.close(), ws_b.close())

    run(main())


@pytest.mark.parametrize("codec", ["VP8", "H264"])
def test_admin_rooms_report_an_aiortc_whip_track_codec_size_and_bitrate(server, codec):
    """`GET /api/rooms/{room}` (the dashboard's rooms panel): the server reads the picture size from
    the keyframes' own headers (VP8's frame header, H.264's SPS), and measures the bitrate."""
    from aiortc import RTCRtpSender

    room = f"room:py-admin-{codec.lower()}"

    async def main():
        pub = RTCPeerConnection()
        t = pub.addTransceiver(VideoStreamTrack(), direction="sendonly")
        t.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                               if c.mimeType == f"video/{codec}"])
        await pub.setLocalDescription(await pub.createOffer())
        status, _, answer = await http_async("POST", f"{server.url}/whip/{room}", pub.localDescription.sdp,
                                             "application/sdp")
        assert status == 201, answer
        await pub.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        sub = RTCPeerConnection()
        watch_tracks(sub)
        sub.addTransceiver("video", direction="recvonly")
        await sub.setLocalDescription(await sub.createOffer())
        status, _, answer = await http_async("POST", f"{server.url}/whep/{room}", sub.localDescription.sdp,
                                             "application/sdp")
        assert status == 201, answer
        await sub.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await frames_received(sub, 5)
        detail = None
        for _ in range(100):
            status, _, body = await http_async("GET", f"{server.url}/api/rooms/{urllib.parse.quote(room)}", "", "text/plain")
            assert status == 200, body
            detail = json.loads(body)
            whip = next(p for p in detail["peers"] if p["role"] == "whip")
            whep = next(p for p in detail["peers"] if p["role"] == "whep")
            track = whip["published"][0] if whip["published"] else {}
            recv = next((r for r in whep["receiving"] if r["track"]), {})
            if track.get("bitrate") and track.get("width") and recv.get("bitrate"):
                break
            await asyncio.sleep(0.2)
        assert track["codec"] == codec, detail
        assert (track["width"], track["height"]) == (640, 480), detail
        assert track["bitrate"] > 0 and track["layers"] == [], detail
        assert recv["track"] == track["id"] and recv["layer"] is None, detail
        assert (recv["width"], recv["height"]) == (640, 480) and recv["bitrate"] > 0, detail
        await asyncio.gather(pub.close(), sub.close())

    run(main())
