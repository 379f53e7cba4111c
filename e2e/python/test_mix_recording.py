"""A room-mix recording (`{"mix": true}`) with real peers: three aiortc participants send 440,
660 and 880 Hz into a room that nobody listens to mixed; the recording starts the room's mixer,
writes one Ogg/Opus file, and releases the mixer when it stops. ffprobe checks the file and the
decoded audio's spectrum (Goertzel) holds all three tones.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import urllib.parse
from array import array

import pytest

pytest.importorskip("aiortc")

from test_mix import amplitude, publish_tone, tracks_announced, whep_mix  # noqa: E402
from test_recording import next_recording_event, recording_events  # noqa: E402
from test_webrtc import http_async  # noqa: E402

if not shutil.which("ffprobe"):
    pytest.skip("ffprobe (Debian's ffmpeg) is not installed", allow_module_level=True)

ROOM = "room:py-mixrec"
OTHER = "room:py-mixrec-2"
SECONDS = 4.0


@pytest.fixture
def server(make_server, tmp_path):
    """Rooms; one mixed room at most on this node (a mix recording counts)."""
    config = tmp_path / "rooms.toml"
    config.write_text("max_mixed_rooms = 1\n[namespaces.room]\nrooms = true\njoin_leave = true\n")
    recordings = tmp_path / "recordings"
    return make_server(env={"SWITCHBOARD_RECORDINGS_DIR": str(recordings)},
                       args=["--no-demo", "--config", str(config)]), recordings


async def api(server, method: str, path: str, body: dict | None = None):
    status, _, text = await http_async(method, f"{server.url}{path}", json.dumps(body) if body else "",
                                       "application/json")
    return status, json.loads(text) if text.startswith("{") else text


def recordings_path(room: str) -> str:
    return f"/api/rooms/{urllib.parse.quote(room)}/recordings"


def test_the_room_mix_is_recorded_into_one_ogg_opus_file_with_every_tone(server):
    server, recordings = server

    async def main():
        peers = [await publish_tone(server, ROOM, f, mixed=False) for f in (440, 660, 880)]
        await tracks_announced(peers[0][0], 3)
        # A participant in another room, so that room can be asked for a mix too.
        other = await publish_tone(server, OTHER, 500, mixed=False)
        events = await recording_events(server.ws_url, ROOM)

        status, started = await api(server, "POST", recordings_path(ROOM), {"mix": True})
        assert status == 201, started
        rid = started["id"]
        # The recording holds the node's one mixed room: a second room's mix is refused (114).
        status, body = await api(server, "POST", recordings_path(OTHER), {"mix": True})
        assert (status, body["error"]["code"]) == (503, 114), body
        viewer, _, status, answer = await whep_mix(server, OTHER)
        assert status == 503 and json.loads(answer)["error"]["code"] == 114, answer
        await viewer.close()

        # Wait for the file (the first mixed packet), then record SECONDS of it.
        while True:
            status, rec = await api(server, "GET", f"/api/recordings/{rid}")
            assert status == 200 and rec["state"] == "recording", rec
            if rec["files"]:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(SECONDS)
        status, stopped = await api(server, "DELETE", f"/api/recordings/{rid}")
        assert status == 200, stopped
        # The room's members learn of it as of any recording: started, then stopped with the file.
        ev = await next_recording_event(events)
        assert (ev["event"], ev["id"], ev["files"]) == ("started", rid, []), ev
        ev = await next_recording_event(events)
        assert (ev["event"], ev["reason"]) == ("stopped", "stopped"), ev
        assert ev["files"] == [f["name"] for f in stopped["files"]], ev
        await events.close()

        # Stopped, the recording no longer holds the mixer: the other room may mix now.
        viewer, _, status, answer = await whep_mix(server, OTHER)
        assert status == 201, answer
        await viewer.close()
        for ws, _, pc, _, _ in [*peers, other]:
            await pc.close()
            await ws.close()
        return stopped

    stopped = asyncio.run(asyncio.wait_for(main(), 50))
    assert stopped["state"] == "stopped" and stopped["mix"] is True, stopped
    [f] = stopped["files"]
    assert (f["kind"], f["codec"], f["track"]) == ("audio", "opus", "mix"), f
    assert f["name"].startswith("room-py-mixrec_") and f["name"].endswith("_room-mix.ogg"), f
    path = recordings / stopped["id"] / f["name"]
    assert f["bytes"] == path.stat().st_size > 0

    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True).stdout)
    [stream] = probe["streams"]
    assert (probe["format"]["format_name"], stream["codec_name"]) == ("ogg", "opus"), probe
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
                             capture_output=True, check=True)
    assert decoded.stderr == b"", decoded.stderr
    pcm = array("h")
    pcm.frombytes(decoded.stdout[: len(decoded.stdout) // 2 * 2])
    seconds = len(pcm) / 48000
    print(f"room mix: {seconds:.2f} s decoded, ffprobe says {probe['format'].get('duration')} s")
    assert abs(seconds - SECONDS) <= 0.1 * SECONDS, seconds
    assert abs(float(probe["format"]["duration"]) - SECONDS) <= 0.1 * SECONDS, probe["format"]

    # Every speaker is in the mix (no mix-minus): each tone's median over the file's 250 ms blocks
    # (a loaded machine may starve the senders or the mixer for a moment; the file keeps that).
    blocks = [pcm[i: i + 12000] for i in range(12000, len(pcm) - 12000, 12000)]
    got = {hz: round(statistics.median(amplitude(b, hz) for b in blocks)) for hz in (440, 660, 880, 500)}
    print("room mix tones (median of", len(blocks), "blocks)", got)
    assert all(got[hz] > 1500 for hz in (440, 660, 880)), got
    assert got[500] < 0.1 * min(got[440], got[660], got[880]), "the other room's tone is not in it"
