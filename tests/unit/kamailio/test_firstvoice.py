"""The agent's first non-silent audio on transcoded calls (routing.kamailio.firstvoice, run by the
first-audio poll): a real UDP socket of the plugin gets the RTP the test sends it as rtpengine would."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import pytest

from routing.call import voice
from tests.unit.call.test_voice import OFFER, rtp, tone
from tests.unit.kamailio.fakehtable import HTables
from tests.unit.kamailio.fakeksr import MSG, FakeKSR, FakeNg, counted

CALL = "call-1"
SILENCE = b"\xd5" * 160  # A-law digital silence


class SubscribingNg(FakeNg):
    """rtpengine as the poll sees it: the call's query reply, a subscription offer, and every command kept."""

    def __init__(self, transcoding: bool, packets: int) -> None:
        super().__init__()
        flags = ["initialized"] + (["transcoding"] if transcoding else [])
        self.reply = {"tags": {"tt1": {"medias": [{"type": "audio", "flags": flags, "streams": [
            {"flags": ["RTP"], "stats": {"packets": packets}}]}]}}}
        self.replies = {"subscribe request": {"sdp": OFFER, "to-tag": "x"}, "subscribe answer": {}, "unsubscribe": {}}

    def local_host(self) -> str:
        return "127.0.0.1"

    def query(self, call_id: str, from_tag: str = "") -> dict[str, Any]:
        self.queries.append(call_id)
        return self.reply


@pytest.fixture
def router(kemi: Any, store: Any, ksr: FakeKSR) -> Any:
    """An edge with ``media.first_voice`` on (off by default)."""
    from dataclasses import replace

    from tests.unit.kamailio.conftest import RT, edge_over_fakes
    return edge_over_fakes(kemi, store, replace(RT, first_voice=True))


@pytest.fixture
def recorded(store: Any) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    store.record_media = lambda call_id, fields, keep_s=0: out.setdefault(call_id, {}).update(fields) or True  # type: ignore[attr-defined]
    return out


def _answered(ksr: FakeKSR, ago_ms: int) -> dict[str, str]:
    table = HTables(ksr).table("firstaudio")
    table[CALL] = f"{int(time.time() * 1000) - ago_ms}:origination:telnyx:bot:tt1"
    return table


def _send(router: Any, *payloads: bytes) -> None:
    """RTP to the watch's socket, as rtpengine forwards the agent's stream (PCMA: the offer's first G.711)."""
    port = router.worker.voice[CALL].sock.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        out.sendto(struct.pack("!BBHI", 0x80, 201, 1, 0) + b"\0" * 8, ("127.0.0.1", port))  # RTCP: skipped
        for payload in payloads:
            out.sendto(rtp(payload, pt=voice.PCMA), ("127.0.0.1", port))
    time.sleep(0.05)  # loopback delivery; the socket is read without waiting


def _alaw_tone() -> bytes:
    # a loud A-law frame: every code with the top magnitude bits set, alternating sign
    return bytes([0xAA, 0x2A] * 80)


def test_a_transcoded_agent_is_watched_until_its_first_voiced_frame(ksr: FakeKSR, router: Any,
                                                                    recorded: dict) -> None:
    table = _answered(ksr, 1000)
    router.worker.ngclient = ng = SubscribingNg(transcoding=True, packets=5)
    router.ksr_first_audio(MSG, "rtimer")
    assert 1000 <= int(recorded[CALL]["media_first_audio_ms"]) < 1200
    assert CALL in table and router.worker.voice[CALL].heard  # the entry waits for the first voice now
    (name, request), (name2, answer) = ng.commands
    assert name == "subscribe request" and request["from_tag"] == "tt1"
    assert request["to_tag"].startswith(voice.WATCH_TAG_PREFIX) and request["codec"] == {"transcode": ["PCMU"]}
    assert name2 == "subscribe answer" and answer["flags"] == ["allow transcoding"]
    assert f"m=audio {router.worker.voice[CALL].sock.getsockname()[1]} RTP/AVP 8" in answer["sdp"]
    sock = router.worker.voice[CALL].sock
    _send(router, SILENCE, SILENCE)
    router.ksr_first_audio(MSG, "rtimer")
    assert "media_first_voice_ms" not in recorded[CALL] and len(ng.queries) == 1  # heard: no more queries
    _send(router, SILENCE, _alaw_tone())
    router.ksr_first_audio(MSG, "rtimer")
    assert 1000 <= int(recorded[CALL]["media_first_voice_ms"]) < 1500
    assert ng.commands[-1] == ("unsubscribe", {"call_id": CALL, "to_tag": request["to_tag"]})
    assert CALL not in table and sock.fileno() == -1
    observed = [(a[0], a[2:]) for name, a in ksr.calls if name == "xhttp_prom.histogram_observe_l3"]
    assert ("byoc_edge_time_to_first_voice_seconds", ("origination", "telnyx", "bot")) in observed


def test_an_agent_heard_but_only_silent_is_dead_air(ksr: FakeKSR, router: Any, recorded: dict) -> None:
    table = _answered(ksr, 6000)
    router.worker.ngclient = ng = SubscribingNg(transcoding=True, packets=250)
    router.ksr_first_audio(MSG, "rtimer")
    assert recorded[CALL]["media_dead_air_s"] == "5" and "media_first_voice_ms" not in recorded[CALL]
    assert "media_first_audio_ms" in recorded[CALL]
    assert ("byoc_edge_dead_air_total", "origination", "telnyx", "bot") in counted(ksr)
    assert any("dead air: only silence from the agent" in text for _, text in ksr.logs)
    assert ng.commands[-1][0] == "unsubscribe" and CALL not in table


def test_a_call_without_transcoding_is_not_watched(ksr: FakeKSR, router: Any, recorded: dict) -> None:
    table = _answered(ksr, 500)
    router.worker.ngclient = ng = SubscribingNg(transcoding=False, packets=5)
    router.ksr_first_audio(MSG, "rtimer")
    assert ng.commands == [] and CALL not in table and "media_first_audio_ms" in recorded[CALL]


def test_a_call_that_ends_while_watched_has_its_socket_closed(ksr: FakeKSR, router: Any, recorded: dict) -> None:
    table = _answered(ksr, 500)
    router.worker.ngclient = ng = SubscribingNg(transcoding=True, packets=0)
    router.ksr_first_audio(MSG, "rtimer")
    sock = router.worker.voice[CALL].sock
    del table[CALL]  # dialog:end (routing.kamailio.dialogs)
    router.ksr_first_audio(MSG, "rtimer")
    assert sock.fileno() == -1 and CALL not in router.worker.voice
    assert [name for name, _ in ng.commands] == ["subscribe request", "subscribe answer"]  # the session goes with the call


def test_a_refused_subscription_leaves_the_time_to_first_audio(ksr: FakeKSR, router: Any, recorded: dict) -> None:
    table = _answered(ksr, 500)
    router.worker.ngclient = ng = SubscribingNg(transcoding=True, packets=5)
    del ng.replies["subscribe request"]  # rtpengine answers an error
    router.ksr_first_audio(MSG, "rtimer")
    assert router.worker.voice.get(CALL) is None and CALL not in table and "media_first_audio_ms" in recorded[CALL]
    assert any("first voice not measured" in text for _, text in ksr.logs)
