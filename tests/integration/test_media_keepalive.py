"""Keepalive and silence filling per side, on the real stack.

* ``fill_silence``: the carrier (SIPp for the signalling, a Python RTP endpoint for its media) talks
  all along; the agent talks for one second and then falls silent.  What reaches the carrier after
  that is counted by payload type: nothing with ``none``, a continuous PCMU stream with ``audio``,
  CN (payload type 13, RFC 3389) packets with ``cn``; and an agent that never sent one packet gets
  nothing filled (rtpengine's DTX handling starts from a first packet).
* ``sip_keepalive``: the agent answers and then freezes (SIGSTOP); the dialog module's in-dialog
  OPTIONS to it time out and the call is ended with BYE to the carrier, slots back to zero, and its
  call record says why (``media_end_reason=sip_keepalive``).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from pathlib import Path

import pytest

from routing.tables import admin
from routing.tables.cdrstore import CdrStore
from routing.tables.model import Agent, Direction, MediaPolicy, SilenceFill, Trunk
from tests.sipp import SippRun, reply, uac, uas
from tests.helpers import wait_until
from tests.rtppeer import RtpPeer

from .conftest import AGENT_IP, CARRIER_A, DID, NET, Edge

AGENT_PORT = 5090
RTP_PORT = 26000 + 100 * (int(NET.rsplit(".", 1)[1]) % 60)
_runs = itertools.count()


def _sdp(ip: str, port: int, cn: bool) -> str:
    fmts = "0 13" if cn else "0"
    lines = ["v=0", f"o=- 1 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0", f"m=audio {port} RTP/AVP {fmts}",
             "a=rtpmap:0 PCMU/8000"] + (["a=rtpmap:13 CN/8000"] if cn else []) + ["a=ptime:20", "a=sendrecv"]
    return "\n".join(f"      {line}" for line in lines)


def carrier_scenario(workdir: Path, sdp: str, wait_bye: bool = False) -> Path:
    """An INVITE with ``sdp``, ACK, then a BYE after ``-d`` ms (or, ``wait_bye``, the edge's BYE)."""
    head = """      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Carrier" <sip:[caller]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>{to}
      Call-ID: [call_id]
      CSeq: {cseq}
      Contact: <sip:[caller]@[local_ip]:[local_port]>
      Max-Forwards: 70
"""
    invite = (f"      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{head.format(to='', cseq='1 INVITE')}"
              f"      Content-Type: application/sdp\n      Content-Length: [len]\n\n{sdp}\n")
    ack = (f"      ACK [next_url] SIP/2.0\n{head.format(to='[peer_tag_param]', cseq='1 ACK')}      [routes]\n"
           "      Content-Length: 0\n\n")
    bye = (f"      BYE [next_url] SIP/2.0\n{head.format(to='[peer_tag_param]', cseq='2 BYE')}      [routes]\n"
           "      Content-Length: 0\n\n")
    end = ('  <recv request="BYE"/>\n' + reply("200 OK")) if wait_bye else \
        f'  <pause/>\n  <send retrans="500"><![CDATA[\n{bye}    ]]></send>\n  <recv response="200"/>\n'
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier">
  <send retrans="500"><![CDATA[
{invite}    ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
{ack}    ]]></send>
{end}</scenario>
"""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"carrier_{next(_runs)}.xml"
    path.write_text(text)
    return path


def agent_scenario(workdir: Path, sdp: str) -> Path:
    """Answers the INVITE with ``sdp``, takes the ACK and the BYE."""
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="agent">
  <recv request="INVITE"/>
{reply("100 Trying")}{reply("200 OK", tag="01", dialog=True, retrans=True, sdp=sdp)}  <recv request="ACK"/>
  <recv request="BYE"/>
{reply("200 OK")}</scenario>
"""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"agent_{next(_runs)}.xml"
    path.write_text(text)
    return path


def provision(edge: Edge, trunk: MediaPolicy, agent: MediaPolicy) -> None:
    admin.put_trunk(edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",), media=trunk))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:bot@{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",), media=agent))
    edge.did(DID, "carrier", "bot")


def _received(run: SippRun, first_line: str) -> list[str]:
    return [b for b in run.messages().split("-----------------------------------------------")
            if "message received" in b and re.search(rf"^{re.escape(first_line)}", b, re.M)]


def _media_address(message: str) -> tuple[str, int]:
    ip = re.search(r"^c=IN IP4 (\S+)", message, re.M).group(1)
    port = int(re.search(r"^m=audio (\d+)", message, re.M).group(1))
    return ip, port


def run_call(edge: Edge, fill: SilenceFill, agent_packets: bool = True) -> list[int]:
    """Carrier talks throughout; the agent talks 1 s (or never) and then is silent; returns the payload
    types reaching the carrier from 0.5 s to 2.5 s after the agent fell silent."""
    provision(edge, MediaPolicy(codecs=("PCMU",), fill_silence=fill), MediaPolicy(codecs=("PCMU",)))
    n = next(_runs)
    carrier_rtp = RtpPeer(CARRIER_A, RTP_PORT + 2 * n)
    agent_rtp = RtpPeer(AGENT_IP, RTP_PORT + 2 * n + 50)
    try:
        agent = uas(edge.workdir / f"agent{n}", AGENT_IP, AGENT_PORT, rtp_echo=False,
                    scenario=agent_scenario(edge.workdir, _sdp(AGENT_IP, RTP_PORT + 2 * n + 50, cn=False)))
        carrier = uac(edge.workdir / f"carrier{n}", CARRIER_A, 5070, edge.sip, DID, hold_ms=4500,
                      scenario=carrier_scenario(edge.workdir, _sdp(CARRIER_A, RTP_PORT + 2 * n, cn=True)))
        wait_until(lambda: _received(carrier, "SIP/2.0 200") and _received(agent, "ACK"), timeout=10,
                   what="call answered")
        carrier_rtp.target = _media_address(_received(carrier, "SIP/2.0 200")[0])
        agent_rtp.target = _media_address(_received(agent, "INVITE ")[0])
        carrier_rtp.talking = True
        agent_rtp.talking = agent_packets
        time.sleep(1.0)  # the agent's talk: the stream rtpengine decodes before the silence
        agent_rtp.talking = False
        silent = time.monotonic()
        wait_until(lambda: time.monotonic() > silent + 2.5, timeout=5, what="2.5 s of agent silence")
        heard = [pt for t, pt, _ in carrier_rtp.received if silent + 0.5 <= t <= silent + 2.5]
        assert carrier.wait(timeout=15) == 0, carrier.output()
        assert agent.wait(timeout=15) == 0, agent.output()
        return heard
    finally:
        carrier_rtp.close()
        agent_rtp.close()


def test_no_fill_carrier_hears_nothing_while_agent_is_silent(clean_edge: Edge) -> None:
    heard = run_call(clean_edge, SilenceFill.NONE)
    assert len(heard) <= 2, heard  # a straggler at most


def test_audio_fill_sends_a_continuous_pcmu_stream(clean_edge: Edge) -> None:
    heard = run_call(clean_edge, SilenceFill.AUDIO)
    assert len(heard) >= 80, f"{len(heard)} packets in 2 s"  # 100 at 20 ms
    assert set(heard) == {0}, set(heard)


def test_cn_fill_sends_comfort_noise_packets(clean_edge: Edge) -> None:
    heard = run_call(clean_edge, SilenceFill.CN)
    assert len(heard) >= 80, f"{len(heard)} packets in 2 s"
    assert set(heard) == {13}, set(heard)  # RFC 3389 comfort noise, static payload type 13


def test_fill_needs_a_first_packet_from_the_silent_side(clean_edge: Edge) -> None:
    """rtpengine 10.5 fills gaps in a stream it decodes: an agent that never sends one packet gets
    nothing generated toward the carrier (documented limit)."""
    heard = run_call(clean_edge, SilenceFill.AUDIO, agent_packets=False)
    assert len(heard) <= 2, heard


def test_sip_keepalive_ends_a_call_whose_agent_stopped_answering(long_call_edge: Edge, clean_edge: Edge) -> None:
    """The agent (sip_keepalive yes) answers and freezes: no BYE, no answer to anything.  The dialog
    module's OPTIONS to it (every media.keepalive_interval_s, 30 s) time out, and the edge ends the
    call with BYE to the carrier; the carrier (sip_keepalive no) never gets an OPTIONS.  The call record
    and the kept media record say ``media_end_reason=sip_keepalive``."""
    edge = clean_edge
    since = int(time.time() * 1000)
    provision(edge, MediaPolicy(codecs=("PCMU",), rtp_timeout_s=600),
              MediaPolicy(codecs=("PCMU",), rtp_timeout_s=600, sip_keepalive=True))
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, rtp_echo=False,
                scenario=agent_scenario(edge.workdir, _sdp(AGENT_IP, RTP_PORT + 90, cn=False)))
    started = time.monotonic()
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID,
                  scenario=carrier_scenario(edge.workdir, _sdp(CARRIER_A, RTP_PORT + 92, cn=False), wait_bye=True))
    wait_until(lambda: _received(agent, "ACK"), timeout=10, what="call answered")
    os.kill(agent.proc.pid, signal.SIGSTOP)
    try:
        assert carrier.wait(timeout=75) == 0, carrier.output()
        ended = time.monotonic() - started
        wait_until(lambda: edge.active_leases() == 0, timeout=15, what="slots released")
    finally:
        os.kill(agent.proc.pid, signal.SIGCONT)
    # the first keepalive goes out 30 s after the answer; its 408 leaves the dialog 10 s
    assert 30 <= ended <= 60, ended
    assert _received(carrier, "BYE ")
    assert not _received(carrier, "OPTIONS ")
    call_id = re.search(r"^Call-ID: (\S+)", carrier.messages(), re.M).group(1)
    cdrs = CdrStore(edge.redis, 86400)
    (record,) = wait_until(lambda: cdrs.records(since, int(time.time() * 1000) + 1000), timeout=15,
                           what="the call record")
    assert record["call_id"] == call_id and record["status"] == "answered" and record["hangup"] == "edge", record
    assert record["media"].get("media_end_reason") == "sip_keepalive", record
    kept = edge.redis.hgetall(f"edge:media:{edge.settings.node}:{call_id}")
    assert kept.get("media_end_reason") == "sip_keepalive", kept
    assert f"call-id={call_id} ended by the dialog module: a side with sip_keepalive" in edge.log()
