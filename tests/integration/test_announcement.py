"""A DID's fallback ending with an announcement (``announce:NAME``), on the running edge: the
agent fails, rtpengine plays ``NAME.wav`` to the caller as early media (183 with rtpengine's
SDP), then the caller gets the refusal it would have got without it; the call is never answered.

The caller is baresip (it plays early media and records what it hears, ``sndfile``), so the
announcement is checked by its frequency: the WAV is a 700 Hz tone written by the test."""

from __future__ import annotations

import math
import struct
import time
import wave
from pathlib import Path
from typing import Iterator

import pytest

from routing.tables import admin, keys
from routing.tables.cdrstore import CdrStore
from routing.tables.model import Agent, Did, Direction, MediaPolicy, Trunk
from routing.tables.model.did import parse_fallback
from tests.baresip import Baresip, dominant_frequency, stop_all
from tests.callquality import call_record
from tests.helpers import wait_until

from .conftest import AGENT2_IP, CARRIER_A, DID, NET, Edge
from .test_edgectl import edgectl

ANNOUNCEMENT_HZ = 700
ANNOUNCEMENT_S = 3.0
#: nothing listens there: the agent's only URI fails after its answer timeout
DEAD = f"sip:{AGENT2_IP}:5090"
RTP_BASE = 27000 + 100 * (int(NET.rsplit(".", 1)[1]) % 60)


def write_tone(path: Path, hz: float, seconds: float, rate: int = 8000) -> None:
    """A mono 16-bit PCM WAV of a sine tone at half scale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(struct.pack("<h", int(16000 * math.sin(2 * math.pi * hz * i / rate)))
                      for i in range(int(seconds * rate)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


@pytest.fixture
def announcing_edge(clean_edge: Edge) -> Iterator[Edge]:
    edge = clean_edge
    write_tone(edge.settings.media.announcements_dir / "closed.wav", ANNOUNCEMENT_HZ, ANNOUNCEMENT_S)
    codecs = MediaPolicy(codecs=("PCMU",))
    admin.put_trunk(edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",), media=codecs))
    admin.put_agent(edge.redis, Agent("bot", (DEAD,), (), media=codecs, probe=False, answer_timeout_ms=400))
    admin.put_did(edge.redis, Did(DID, "carrier", "bot", parse_fallback("announce:closed", "test")))
    yield edge
    stop_all()


def announced_call(edge: Edge, refusal: str) -> None:
    """The carrier calls the DID: 183, the announcement heard for its length, then ``refusal``
    (``"503 Agent Unreachable"``) and never an answer."""
    carrier = Baresip(edge.workdir / "carrier", CARRIER_A, codecs=["PCMU"], tone_hz=440, rtp_base=RTP_BASE)
    with carrier:
        carrier.dial(f"sip:{DID}@{edge.sip}")
        carrier.wait_event("CALL_PROGRESS", timeout=10)
        started = time.monotonic()
        closed = carrier.wait_event("CALL_CLOSED", timeout=ANNOUNCEMENT_S + 10)
        heard_for = time.monotonic() - started
    assert not carrier.has_event("CALL_ESTABLISHED"), carrier.events  # never answered: never billed
    assert refusal in closed.get("param", ""), (closed, heard_for)
    # the refusal came once the file had played (ANNOUNCE_TICK resumes it within 0.1 s)
    assert ANNOUNCEMENT_S - 0.3 <= heard_for <= ANNOUNCEMENT_S + 1.5, heard_for
    hz, level = dominant_frequency(carrier.recording)
    assert abs(hz - ANNOUNCEMENT_HZ) <= 8 and level > 500, (hz, level)


def test_a_failed_agent_gives_the_caller_the_announcement_then_the_refusal(announcing_edge: Edge) -> None:
    edge = announcing_edge
    # the refusal the caller gets without an announcement: the agent's only URI timed out
    announced_call(edge, "503 Agent Unreachable")
    # the call record: refused, after the agent's hop and the announcement
    call_id = next(r["call_id"] for r in _records(edge))
    record = call_record(edge.redis, call_id)
    assert record["status"] != "answered" and record["sip_code"] == 503, record
    assert record["gateways"][-1] == {"gateway": "announce closed", "result": "183"}, record
    # nothing held afterwards: no call, no slot
    wait_until(lambda: not list(edge.redis.scan_iter("edge:call:*")), timeout=5, what="no call left")
    assert not [k for k in edge.redis.scan_iter("edge:lease:*") if edge.redis.zcard(k)]


def test_an_agent_probed_down_gives_the_caller_the_announcement_at_once(probing_edge: Edge,
                                                                       announcing_edge: Edge) -> None:
    """The request route's path: every URI of the agent is marked down by its OPTIONS probes, so
    there is no hop to try; the caller hears the announcement, then 503 All Agent URIs Down."""
    edge = announcing_edge
    admin.put_agent(edge.redis, Agent("bot", (DEAD,), (), media=MediaPolicy(codecs=("PCMU",)), probe=True), replace=True)
    wait_until(lambda: edge.redis.smembers(keys.AGENTS_DOWN) == {f"bot/{DEAD}"}, timeout=15,
               what="the agent's only URI marked down")
    announced_call(edge, "503 All Agent URIs Down")
    record = call_record(edge.redis, _records(edge)[-1]["call_id"])
    assert record["sip_code"] == 503 and record["reject_tag"] == "agent_down", record
    assert record["gateways"] == [{"gateway": "announce closed", "result": "183"}], record
    assert edge.active_leases() == 0


def test_explain_names_the_announcement_step(announcing_edge: Edge) -> None:
    out = edgectl(announcing_edge, "explain", "--source", CARRIER_A, "--to", DID).stdout
    assert "fallback announce:closed: closed.wav played to the caller as early media (183)" in out, out


def _records(edge: Edge) -> list[dict]:
    store = CdrStore(edge.redis, 86400)
    return wait_until(lambda: store.records(0, int(time.time() * 1000) + 1000), timeout=10, what="a call record")


def test_a_caller_who_hangs_up_during_the_announcement_leaves_nothing_behind(announcing_edge: Edge) -> None:
    """CANCEL while the INVITE is suspended: tm answers it (487), the media session goes with the
    CANCEL, and the announcement's later resumption finds no transaction (clean_edge checks that no
    slot, call or rtpengine session is left)."""
    edge = announcing_edge
    carrier = Baresip(edge.workdir / "carrier", CARRIER_A, codecs=["PCMU"], tone_hz=440, rtp_base=RTP_BASE)
    with carrier:
        carrier.dial(f"sip:{DID}@{edge.sip}")
        carrier.wait_event("CALL_PROGRESS", timeout=10)
        carrier.hangup()
        carrier.wait_event("CALL_CLOSED", timeout=10)
    wait_until(lambda: "announcement of call-id=" in edge.log() and "ended without its transaction" in edge.log(),
               timeout=ANNOUNCEMENT_S + 5, what="the announcement's end finding no transaction")
    assert not carrier.has_event("CALL_ESTABLISHED")
