"""The `speaker` layout with real peers: two aiortc participants join a room over the SFU, each
with a flat-coloured camera and a microphone; aiortc marks its audio packets with their RFC 6464
level, which the SFU forwards and the composition reads. The one who speaks takes the top three
quarters of the composed picture, the other the strip below; when they swap (the first falls
silent, the second speaks) the layout follows. Waits are on decoded frames, with deadlines.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import pytest

pytest.importorskip("aiortc")
from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402

from test_mix import Tone  # noqa: E402
from test_video import BLUE, RED, Picture, api, frame_where, near, play, rgb  # noqa: E402
from test_webrtc import http_async, join_room, run  # noqa: E402

ROOM = "room:py-video"  # test_video's room: its `play` plays a track of it


class Voice(Tone):
    """A microphone that speaks (a tone) while `loud`, else sends silence."""

    def __init__(self, freq: float, loud: bool):
        super().__init__(freq)
        self.loud = loud

    async def recv(self):
        frame = await super().recv()
        if not self.loud:
            frame.planes[0].update(bytes(frame.planes[0].buffer_size))
        return frame


async def participant(server, name: str, colour, voice: Voice):
    """`name` joins the room and publishes a camera of `colour` and `voice` through the SFU."""
    ws, client = await join_room(server.ws_url, ROOM, name)
    pc = RTCPeerConnection()
    pc.addTransceiver(Picture(colour), direction="sendonly")
    pc.addTransceiver(voice, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    body = json.dumps({"client": client, "sdp": pc.localDescription.sdp,
                       "publish": {"0": "camera", "1": "mic"}, "subscribe": {}})
    status, _, text = await http_async("POST", f"{server.url}/rtc/sfu/{urllib.parse.quote(ROOM)}", body,
                                       "application/json")
    assert status == 201, text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=json.loads(text)["sdp"], type="answer"))
    return ws, pc


def test_the_speaker_layout_gives_the_one_who_speaks_the_big_tile_and_follows_a_swap(make_server, tmp_path):
    config = tmp_path / "rooms.toml"
    config.write_text("[namespaces.room]\nrooms = true\njoin_leave = true\n")
    server = make_server(args=["--no-demo", "--config", str(config)])
    # 640x360: the speaker's tile is the top three quarters (y < 270), the others share the strip.
    big, strip = (320, 135), (320, 315)

    async def main():
        ann_voice, bob_voice = Voice(440, loud=True), Voice(660, loud=False)
        ann = await participant(server, "ann", RED, ann_voice)
        bob = await participant(server, "bob", BLUE, bob_voice)
        status, comp = await api("POST", f"{server.url}/api/rooms/{ROOM}/compositions",
                                 {"layout": "speaker", "fps": 10})
        assert status == 201 and comp["layout"] == "speaker", comp
        viewer, track = await play(server.url, comp["track"])

        await frame_where(track, lambda f: near(rgb(f, *big), RED) and near(rgb(f, *strip), BLUE), 20)
        # They swap: ann falls silent, bob speaks. The last speaker holds through silence, so
        # the switch is bob's voice taking over, within the level window (about a second).
        ann_voice.loud, bob_voice.loud = False, True
        await frame_where(track, lambda f: near(rgb(f, *big), BLUE) and near(rgb(f, *strip), RED), 15)

        await viewer.close()
        for ws, pc in (ann, bob):
            await pc.close()
            await ws.close()

    run(main(), 60)
