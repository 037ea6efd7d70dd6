"""The agent's 200 OK held until its first RTP packet (agent ``hold_answer_ms``) on the running
edge: SIPp agents answer at once and start their audio (SIPp's G.711 pcap) 1.5 s later, or
never; the carrier's own trace times its INVITE to the 200 it receives."""

from __future__ import annotations

import time
from pathlib import Path

from routing.tables.cdrstore import CdrStore
from tests.sipp import PCMU_ANSWER_SDP, reply, uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, DID, Edge
from .test_agent_health import _invite_to_final_s


def _agent(edge: Edge, talk_after_ms: int | None) -> Path:
    """An agent that answers at once (retransmitting its 200 until the ACK), starts its audio
    ``talk_after_ms`` later without waiting for the ACK (or never: None), then takes the BYE.
    The ACK must not come during the pause (SIPp would abort the call): only a held answer
    brings it after the audio."""
    talk = ("" if talk_after_ms is None else
            f'  <pause milliseconds="{talk_after_ms}"/>\n  <nop><action>\n'
            '    <exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap"/>\n  </action></nop>\n')
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="agent answers, talks after {talk_after_ms} ms">
  <recv request="INVITE"/>
{reply("200 OK", tag="01", dialog=True, retrans=True, sdp=PCMU_ANSWER_SDP)}{talk}  <recv request="ACK"/>
  <recv request="BYE"/>
{reply("200 OK")}</scenario>
"""
    path = edge.workdir / f"agent_talks_{talk_after_ms}.xml"
    path.write_text(text)
    return path


def _call(edge: Edge, talk_after_ms: int | None, hold_answer_ms: int) -> tuple[float, dict]:
    """One carrier call to an agent holding its answers: the seconds from the carrier's INVITE to
    its 200, and the call's record."""
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [], probe=False, hold_answer_ms=hold_answer_ms)
    edge.did(DID, "carrier-a", "bot")
    since = int(time.time() * 1000)
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario=_agent(edge, talk_after_ms), rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario="uac_simple.xml", hold_ms=1000)
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()
    [record] = wait_until(lambda: CdrStore(edge.redis, 86400).records(since, int(time.time() * 1000) + 1000),
                          what="the call's record")
    return _invite_to_final_s(carrier.messages()), record


def test_the_answer_reaches_the_caller_with_the_agents_first_rtp(clean_edge: Edge) -> None:
    took, record = _call(clean_edge, 1500, hold_answer_ms=5000)
    # the agent answered at once; the caller got the 200 once its audio flowed (the poll runs
    # every 250 ms, media.first_audio_poll_ms): 1.5 s plus at most one interval and its jitter
    assert 1.4 <= took <= 2.1, took
    assert record["status"] == "answered" and record["hangup"] == "caller", record
    assert 1450 <= int(record["media"]["media_answer_held_ms"]) <= 2000, record["media"]
    assert "answer released after" in clean_edge.log() and "the agent's first RTP" in clean_edge.log()


def test_an_agent_that_never_talks_is_answered_at_the_hold_limit(clean_edge: Edge) -> None:
    took, record = _call(clean_edge, None, hold_answer_ms=1000)
    assert 0.95 <= took <= 1.6, took
    assert record["status"] == "answered", record
    assert 1000 <= int(record["media"]["media_answer_held_ms"]) <= 1500, record["media"]
    assert "hold limit reached" in clean_edge.log()


def test_without_a_hold_the_answer_is_relayed_at_once(clean_edge: Edge) -> None:
    # (an agent that never talks: one that pauses before its audio would meet the ACK in its pause)
    took, record = _call(clean_edge, None, hold_answer_ms=0)
    assert took < 0.5, took
    assert "media_answer_held_ms" not in record["media"]
