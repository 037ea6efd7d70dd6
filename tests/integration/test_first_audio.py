"""Time to first audio and dead air on the running edge: an agent that starts sending RTP 1.5 s
after its 200 OK gets a time to first audio of 1.5 s (to within the 0.25 s poll) in its call
record and in the per-trunk histogram; an agent that never sends any is counted as dead air."""

from __future__ import annotations

import time
from pathlib import Path

from routing.tables.cdrstore import CdrStore
from tests.sipp import PCMU_ANSWER_SDP, reply, uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, DID, Edge
from .test_metrics import kamailio_samples

LABELS = 'agent="bot",direction="origination",trunk="carrier-a"'


def _agent(edge: Edge, talk_after_ms: int | None) -> Path:
    """An agent that answers, then sends audio (SIPp's G.711 pcap) ``talk_after_ms`` after the ACK,
    or never (None); it takes the BYE."""
    talk = ("" if talk_after_ms is None else
            f'  <pause milliseconds="{talk_after_ms}"/>\n  <nop><action>\n'
            '    <exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap"/>\n  </action></nop>\n')
    answer = reply("200 OK", tag="01", dialog=True, retrans=True, sdp=PCMU_ANSWER_SDP)
    bye_ok = reply("200 OK")
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="agent talks after {talk_after_ms} ms">
  <recv request="INVITE"/>
{answer}  <recv request="ACK"/>
{talk}  <recv request="BYE"/>
{bye_ok}</scenario>
"""
    path = edge.workdir / f"agent_talks_{talk_after_ms}.xml"
    path.write_text(text)
    return path


def _call(edge: Edge, talk_after_ms: int | None, hold_ms: int) -> dict:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [], probe=False)
    edge.did(DID, "carrier-a", "bot")
    since = int(time.time() * 1000)
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario=_agent(edge, talk_after_ms), rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario="uac_simple.xml", hold_ms=hold_ms)
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()
    [record] = wait_until(lambda: CdrStore(edge.redis, 86400).records(since, int(time.time() * 1000) + 1000),
                          what="the call's record")
    return record


def test_time_to_first_audio_of_an_agent_that_talks_after_1_5_s(clean_edge: Edge) -> None:
    edge = clean_edge
    before = kamailio_samples(edge).get(("byoc_edge_time_to_first_audio_seconds_count", LABELS), 0)
    record = _call(edge, 1500, hold_ms=3000)
    first_ms = int(record["media"]["media_first_audio_ms"])
    # the poll runs every 250 ms (media.first_audio_poll_ms): 1.5 s plus at most one interval and its jitter
    assert 1450 <= first_ms <= 1850, first_ms
    assert "media_dead_air_s" not in record["media"]
    assert kamailio_samples(edge)[("byoc_edge_time_to_first_audio_seconds_count", LABELS)] == before + 1


def test_an_agent_that_never_sends_audio_is_dead_air(clean_edge: Edge) -> None:
    edge = clean_edge
    before = kamailio_samples(edge).get(("byoc_edge_dead_air_total", LABELS), 0)
    record = _call(edge, None, hold_ms=6500)
    assert record["media"].get("media_dead_air_s") == "5" and "media_first_audio_ms" not in record["media"]
    assert kamailio_samples(edge)[("byoc_edge_dead_air_total", LABELS)] == before + 1
    assert "dead air: no RTP from the agent" in edge.log()
