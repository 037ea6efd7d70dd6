"""First non-silent audio on a transcoded call, on the running edge: a G.722 carrier (baresip)
calls a PCMU-only agent (SIPp playing a pcap), so rtpengine transcodes the agent's stream; the
agent sends RTP silence from its answer, then a 1000 Hz tone 1.5 s later.  The edge subscribes to
the agent's stream (ng ``subscribe request``/``answer``), finds the first voiced frame, unsubscribes,
and records first audio near 0 and first voice near 1.5 s; an agent silent throughout is dead air."""

from __future__ import annotations

import time
import wave
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from routing.call import voice
from routing.ngclient import NgClient
from routing.tables import admin
from routing.tables.cdrstore import CdrStore
from routing.tables.model import Agent, Direction, MediaPolicy, Trunk
from tests.baresip import Baresip, dominant_frequency, pcmu_tone, stop_all
from tests.dtmfmedia import write_pcap
from tests.helpers import wait_until
from tests.sipp import PCMU_ANSWER_SDP, reply, uas

from .conftest import AGENT_IP, CARRIER_A, DID, NET, Edge, restarted
from .test_metrics import kamailio_samples

AGENT_PORT = 5090
AGENT_TONE = 1000
HUM = 500
LABELS = 'agent="bot",direction="origination",trunk="carrier"'
RTP_BASE = 23000 + 100 * (int(NET.rsplit(".", 1)[1]) % 60) + 40


@pytest.fixture
def voice_edge(clean_edge: Edge) -> Iterator[Edge]:
    """The edge with ``media.first_voice`` on (off by default: see docs/agents.md), restarted after."""
    media = clean_edge.settings.media.model_copy(update={"first_voice": True})
    with restarted(clean_edge, "kamailio", media=media):
        yield from _provisioned(clean_edge)


def _provisioned(clean_edge: Edge) -> Iterator[Edge]:
    admin.put_trunk(clean_edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                            media=MediaPolicy(codecs=("G722",))))
    admin.put_agent(clean_edge.redis, Agent("bot", (f"sip:bot@{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",),
                                            media=MediaPolicy(codecs=("PCMU",)), probe=False))
    clean_edge.did(DID, "carrier", "bot")
    yield clean_edge
    stop_all()


def _agent(edge: Edge, silence_ms: int, tone_ms: int, hum_ms: int = 0) -> Path:
    """A PCMU agent that answers and, from the ACK, sends ``silence_ms`` of RTP silence (mu-law 0xFF)
    then ``tone_ms`` of a 1000 Hz tone at -9 dBov, then ``hum_ms`` of a 500 Hz hum at about -51 dBov
    (comfort-noise level), 20 ms packets; it takes the BYE."""
    payloads = ([b"\xff" * 160] * (silence_ms // 20) + pcmu_tone(AGENT_TONE, tone_ms // 20)
                + pcmu_tone(HUM, hum_ms // 20, level=0.004))
    pcap = write_pcap(edge.workdir / "agent.pcap", [(0, i == 0, 160 * i, p) for i, p in enumerate(payloads)])
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="agent: silence then a tone">
  <recv request="INVITE"/>
{reply("200 OK", tag="01", dialog=True, retrans=True, sdp=PCMU_ANSWER_SDP)}  <recv request="ACK"/>
  <nop><action>
    <exec play_pcap_audio="{pcap}"/>
  </action></nop>
  <recv request="BYE"/>
{reply("200 OK")}</scenario>
"""
    path = edge.workdir / "agent_voice.xml"
    path.write_text(text)
    return path


def _heard(path: Path, start_s: float, end_s: float) -> tuple[float, float]:
    """(strongest frequency in Hz, RMS on the 16-bit scale) of a WAV recording between two times (s)."""
    with wave.open(str(path), "rb") as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    samples = samples.reshape(-1, channels).mean(axis=1)[int(start_s * rate):int(end_s * rate)]
    assert len(samples) >= rate, f"{path.name}: {len(samples) / rate:.2f} s between {start_s} and {end_s} s"
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1.0 / rate)
    return float(freqs[int(np.argmax(spectrum[1:])) + 1]), float(np.sqrt(np.mean(samples ** 2)))


def _live(edge: Edge) -> tuple[str, dict[str, str]]:
    """(Call-ID, live call hash) of the one call in progress."""
    [key] = edge.call_records()
    return key.split(":", 3)[3], edge.redis.hgetall(key)


def _watch_tags(edge: Edge, call_id: str) -> list[str]:
    """The edge's subscriptions to the call's streams that rtpengine holds (ng ``query``)."""
    with NgClient("127.0.0.1", edge.settings.rtpengine.ng_port, 2.0) as ng:
        tags = ng.query(call_id).get("tags", {})
    return [sub["tag"] for party in tags.values() for sub in party.get("subscribers", [])
            if str(sub.get("tag", "")).startswith(voice.WATCH_TAG_PREFIX)]


def _call(edge: Edge, until: str, silence_ms: int, tone_ms: int, hum_ms: int = 0) -> tuple[dict, Baresip, int]:
    """The carrier calls the DID and hangs up once the live call has ``until`` and 1.5 s more of audio;
    returns the call's record, the carrier and rtpengine's transcoded stream count once the watch ended."""
    since = int(time.time() * 1000)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario=_agent(edge, silence_ms, tone_ms, hum_ms),
                rtp_echo=False)
    carrier = Baresip(edge.workdir / "carrier", CARRIER_A, codecs=["G722"], tone_hz=440, rtp_base=RTP_BASE)
    carrier.start()
    carrier.dial(f"sip:{DID}@{edge.sip}")
    carrier.wait_event("CALL_ESTABLISHED")
    call_id, _ = wait_until(lambda: edge.call_records() and _live(edge), what="the live call")
    # the watch is up while the agent is silent: rtpengine copies the agent's stream to the edge
    assert wait_until(lambda: _watch_tags(edge, call_id), timeout=1.4, what="the edge's subscription")
    wait_until(lambda: _live(edge)[1].get(until), timeout=9, what=f"{until} in the live call")
    assert _watch_tags(edge, call_id) == []  # unsubscribed once measured
    # rtpengine transcodes the agent's stream (its flag is counted again once the copy is gone)
    transcoded = int(edge.rtpengine_totals().get("Transcoded media", 0))
    time.sleep(1.5)  # the audio itself: the carrier's recording needs a second of the agent's tone
    carrier.hangup()
    carrier.wait_event("CALL_CLOSED")
    assert agent.wait(timeout=15) == 0, agent.output()
    [record] = wait_until(lambda: CdrStore(edge.redis, 86400).records(since, int(time.time() * 1000) + 1000),
                          what="the call's record")
    return record, carrier, transcoded


def test_first_voice_of_an_agent_silent_for_1_5_s_on_a_transcoded_call(voice_edge: Edge) -> None:
    edge = voice_edge
    before = kamailio_samples(edge).get(("byoc_edge_time_to_first_voice_seconds_count", LABELS), 0)
    record, carrier, transcoded = _call(edge, "media_first_voice_ms", 1500, 3000)
    media = record["media"]
    assert transcoded > 0
    assert int(media["media_first_audio_ms"]) <= 400  # silence from the answer: first audio at the first poll
    assert 1250 <= int(media["media_first_voice_ms"]) <= 1750, media  # the tone 1.5 s after the answer
    assert "media_dead_air_s" not in media
    assert kamailio_samples(edge)[("byoc_edge_time_to_first_voice_seconds_count", LABELS)] == before + 1
    # the subscription did not disturb the call's own transcoding: the carrier heard the agent's tone
    freq, rms = dominant_frequency(carrier.recording, skip_s=2.0)
    assert rms > 300 and abs(freq - AGENT_TONE) <= 8, (freq, rms)
    # the quality reading names the agent's stream, not the edge's subscription
    assert int(media["media_callee_packets"]) >= 100


def test_an_agent_that_never_stops_being_silent_is_dead_air_without_first_voice(voice_edge: Edge) -> None:
    """Silence, then a hum below the threshold for the rest of the call: never voice; the carrier
    hears the hum through the watch (the copy does not disturb the call's own transcoding)."""
    edge = voice_edge
    before = kamailio_samples(edge).get(("byoc_edge_dead_air_total", LABELS), 0)
    record, carrier, transcoded = _call(edge, "media_dead_air_s", 500, 0, hum_ms=8000)
    assert transcoded > 0
    media = record["media"]
    assert int(media["media_first_audio_ms"]) <= 400 and media["media_dead_air_s"] == "5"
    assert "media_first_voice_ms" not in media
    assert kamailio_samples(edge)[("byoc_edge_dead_air_total", LABELS)] == before + 1
    assert "dead air: only silence from the agent" in edge.log()
    # 1-4.5 s into the call: while the edge held its copy of the agent's stream (until dead air at 5 s)
    freq, rms = _heard(carrier.recording, 1.0, 4.5)
    assert rms > 30 and abs(freq - HUM) <= 8, (freq, rms)
