"""DTMF per side (routing/call/dtmf.py): digits sent in one side's mode arrive in the other side's mode.

Real SIPp peers place and answer the calls through the real edge; the sending peer plays
RFC 4733 events or in-band tones from a pcap (or sends SIP INFO), and the receiving peer's
SDP points its media at a recorder, which reads the RFC 4733 events and detects the tones
(Goertzel) in what rtpengine sends it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from routing.tables import admin
from routing.call.dtmf import DtmfMode
from routing.tables.model import Agent, Direction, Gateway, Trunk
from tests.sipp import SippRun, uac, uas

from tests.dtmfmedia import Recorder, event_pcap, silence_pcap, tone_pcap
from tests.helpers import wait_until

from . import dtmf_scenarios
from .conftest import AGENT_IP, CARRIER_A, DID, Edge

AGENT_PORT = 5090


def _provision(edge: Edge, carrier: str, agent: str, max_duration_s: int | None = None) -> None:
    admin.put_trunk(edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",), dtmf=DtmfMode(carrier),
                                      max_duration_s=max_duration_s))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",),
                                      dtmf=DtmfMode(agent)))
    edge.did(DID, "carrier", "bot")


def _te_pt(sdp_message: str) -> int | None:
    match = re.search(r"a=rtpmap:(\d+) telephone-event/8000", sdp_message)
    return int(match.group(1)) if match else None


def _call(edge: Edge, caller_xml: Path, callee_xml: Path, recorder: Recorder | None, record_at: str,
          ) -> tuple[SippRun, SippRun]:
    key = ["-key", "rtp_port", str(recorder.port)] if recorder else []
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario=callee_xml, rtp_echo=False,
                extra=key if record_at == "callee" else [])
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=caller_xml,
                  extra=key if record_at == "caller" else [])
    return carrier, agent


def _recorded(edge: Edge, digits: str) -> None:
    """Wait until the call record holds exactly ``digits`` (``caller:5:rfc4733,...``), during the call."""
    record = wait_until(edge.call_records, timeout=15, what="the call record")[0]
    wait_until(lambda: edge.redis.hget(record, "dtmf") == digits, timeout=15,
               what=f"{digits} in the call record (has {edge.redis.hget(record, 'dtmf')!r})")


def _finish(carrier: SippRun, agent: SippRun) -> None:
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()


@pytest.fixture
def recorder() -> Recorder:
    rec = Recorder(AGENT_IP)
    yield rec
    rec.close()


@pytest.fixture
def carrier_recorder() -> Recorder:
    rec = Recorder(CARRIER_A)
    yield rec
    rec.close()


def test_rfc4733_both_sides_pass_through(clean_edge: Edge, recorder: Recorder) -> None:
    edge = clean_edge
    _provision(edge, "rfc4733", "rfc4733")
    pcap = event_pcap(edge.workdir / "events.pcap", "5#")
    caller = dtmf_scenarios.caller(edge.workdir, te=True, record=False, pcap=pcap, hold_ms=4000)
    callee = dtmf_scenarios.callee(edge.workdir, te=True, record=True)
    carrier, agent = _call(edge, caller, callee, recorder, "callee")
    _recorded(edge, "caller:5:rfc4733,caller:#:rfc4733")  # seen by rtpengine, reported to the edge
    _finish(carrier, agent)
    pt = _te_pt(agent.received_requests("INVITE")[0])
    assert pt is not None
    assert recorder.events(pt) == "5#"
    assert recorder.tones(0) == ""


def test_rfc4733_carrier_to_inband_agent(clean_edge: Edge, recorder: Recorder) -> None:
    edge = clean_edge
    _provision(edge, "rfc4733", "inband")
    pcap = event_pcap(edge.workdir / "events.pcap", "5#")
    caller = dtmf_scenarios.caller(edge.workdir, te=True, record=False, pcap=pcap)
    callee = dtmf_scenarios.callee(edge.workdir, te=False, record=True)
    carrier, agent = _call(edge, caller, callee, recorder, "callee")
    _finish(carrier, agent)
    assert _te_pt(agent.received_requests("INVITE")[0]) is None  # the inband side is not offered events
    assert recorder.tones(0) == "5#"


def test_inband_carrier_to_rfc4733_agent(clean_edge: Edge, recorder: Recorder) -> None:
    edge = clean_edge
    _provision(edge, "inband", "rfc4733")
    pcap = tone_pcap(edge.workdir / "tones.pcap", "5#")
    caller = dtmf_scenarios.caller(edge.workdir, te=False, record=False, pcap=pcap, hold_ms=4000)
    callee = dtmf_scenarios.callee(edge.workdir, te=True, record=True)
    carrier, agent = _call(edge, caller, callee, recorder, "callee")
    _recorded(edge, "caller:5:inband,caller:#:inband")  # tones detected by rtpengine's DSP
    _finish(carrier, agent)
    pt = _te_pt(agent.received_requests("INVITE")[0])
    assert pt is not None  # the edge offers telephone-event to the rfc4733 side
    assert recorder.events(pt) == "5#"


def test_info_carrier_to_rfc4733_agent_and_digits_recorded(clean_edge: Edge, recorder: Recorder) -> None:
    edge = clean_edge
    _provision(edge, "info", "rfc4733")
    talk = silence_pcap(edge.workdir / "talk.pcap", 3000)
    caller = dtmf_scenarios.caller(edge.workdir, te=False, record=False, pcap=talk, info="5#", hold_ms=3000)
    callee = dtmf_scenarios.callee(edge.workdir, te=True, record=True)
    carrier, agent = _call(edge, caller, callee, recorder, "callee")
    # once each, from the INFO (the edge's own play of the digit, reported by rtpengine, is not counted again)
    _recorded(edge, "caller:5:info,caller:#:info")
    _finish(carrier, agent)
    assert not agent.received_requests("INFO")  # answered by the edge, turned into events
    assert [code for code, _ in carrier.received_status()].count(200) >= 3  # 200 to INVITE and to both INFOs
    pt = _te_pt(agent.received_requests("INVITE")[0])
    assert pt is not None
    assert recorder.events(pt) == "5#"


def test_info_carrier_to_inband_agent(clean_edge: Edge, recorder: Recorder) -> None:
    edge = clean_edge
    _provision(edge, "info", "inband")
    talk = silence_pcap(edge.workdir / "talk.pcap", 3000)
    caller = dtmf_scenarios.caller(edge.workdir, te=False, record=False, pcap=talk, info="5#")
    callee = dtmf_scenarios.callee(edge.workdir, te=False, record=True)
    carrier, agent = _call(edge, caller, callee, recorder, "callee")
    _finish(carrier, agent)
    assert not agent.received_requests("INFO")
    assert recorder.tones(0) == "5#"


def test_info_both_sides_relayed(clean_edge: Edge, recorder: Recorder) -> None:
    edge = clean_edge
    _provision(edge, "info", "info")
    talk = silence_pcap(edge.workdir / "talk.pcap", 2000)
    caller = dtmf_scenarios.caller(edge.workdir, te=False, record=False, pcap=talk, info="7")
    callee = dtmf_scenarios.callee(edge.workdir, te=False, record=True)
    carrier, agent = _call(edge, caller, callee, recorder, "callee")
    _finish(carrier, agent)
    infos = agent.received_requests("INFO")
    assert len(infos) == 1 and "Signal=7" in infos[0]
    assert recorder.tones(0) == ""


def test_info_agent_to_rfc4733_carrier(clean_edge: Edge, carrier_recorder: Recorder) -> None:
    edge = clean_edge
    _provision(edge, "rfc4733", "info")
    caller = dtmf_scenarios.caller(edge.workdir, te=True, record=True, hold_ms=3000)
    talk = silence_pcap(edge.workdir / "talk.pcap", 3000)
    callee = dtmf_scenarios.callee(edge.workdir, te=False, record=False, pcap=talk, info="9")
    carrier, agent = _call(edge, caller, callee, carrier_recorder, "caller")
    _recorded(edge, "callee:9:info")
    _finish(carrier, agent)
    assert not carrier.received_requests("INFO")
    assert carrier_recorder.events(101) == "9"  # the caller's own telephone-event payload type


def test_inband_agent_answering_to_rfc4733_carrier(clean_edge: Edge, carrier_recorder: Recorder) -> None:
    """Tones from the callee become events in the caller's own payload type (the answer direction)."""
    edge = clean_edge
    _provision(edge, "rfc4733", "inband")
    caller = dtmf_scenarios.caller(edge.workdir, te=True, record=True, hold_ms=4000)
    tones = tone_pcap(edge.workdir / "tones.pcap", "5#")
    callee = dtmf_scenarios.callee(edge.workdir, te=False, record=False, pcap=tones)
    carrier, agent = _call(edge, caller, callee, carrier_recorder, "caller")
    _recorded(edge, "callee:5:inband,callee:#:inband")
    _finish(carrier, agent)
    assert carrier_recorder.events(101) == "5#"


def test_termination_inband_agent_to_rfc4733_carrier(clean_edge: Edge, recorder: Recorder) -> None:
    """Agent -> carrier: the agent's mode is the caller's, the route's trunk's mode the callee's."""
    edge = clean_edge
    gateway = Recorder(CARRIER_A)  # the carrier's media
    try:
        admin.put_trunk(edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                          gateways=(Gateway(CARRIER_A, 5080),), dtmf=DtmfMode.RFC4733))
        admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",),
                                          dtmf=DtmfMode.INBAND))
        edge.route("+44", "carrier", "0.0100")
        tones = tone_pcap(edge.workdir / "tones.pcap", "5#")
        caller = dtmf_scenarios.caller(edge.workdir, te=False, record=False, pcap=tones, hold_ms=4000)
        callee = dtmf_scenarios.callee(edge.workdir, te=True, record=True)
        key = ["-key", "rtp_port", str(gateway.port)]
        carrier = uas(edge.workdir / "carrier", CARRIER_A, 5080, scenario=callee, rtp_echo=False, extra=key)
        agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, "+442071234567", scenario=caller)
        _recorded(edge, "caller:5:inband,caller:#:inband")
        assert agent.wait(timeout=30) == 0, agent.output()
        assert carrier.wait(timeout=30) == 0, carrier.output()
        pt = _te_pt(carrier.received_requests("INVITE")[0])
        assert pt is not None
        assert gateway.events(pt) == "5#"
    finally:
        gateway.close()


def test_rfc4733_agent_answering_to_inband_carrier(clean_edge: Edge, carrier_recorder: Recorder) -> None:
    """Events from the callee (in the payload type the edge offered it) arrive at the caller as tones."""
    edge = clean_edge
    _provision(edge, "inband", "rfc4733")
    caller = dtmf_scenarios.caller(edge.workdir, te=False, record=True, hold_ms=4000)
    offered_pt = 96  # rtpengine's first dynamic payload type, given to the telephone-event it adds
    events = event_pcap(edge.workdir / "events.pcap", "5#", te_pt=offered_pt)
    callee = dtmf_scenarios.callee(edge.workdir, te=True, record=False, pcap=events)
    carrier, agent = _call(edge, caller, callee, carrier_recorder, "caller")
    invite = wait_until(lambda: agent.received_requests("INVITE"), timeout=15, what="the INVITE at the agent")[0]
    assert _te_pt(invite) == offered_pt  # else the pcap's events would not match what the agent negotiated
    _recorded(edge, "callee:5:rfc4733,callee:#:rfc4733")
    _finish(carrier, agent)
    assert carrier_recorder.tones(0) == "5#"


def _cseqs(messages: list[str]) -> list[int]:
    return [int(re.search(r"^CSeq:\s*(\d+)", m, re.M | re.I).group(1)) for m in messages]


def _signals(infos: list[str]) -> str:
    return "".join(re.search(r"^Signal=(\S+)", m, re.M).group(1) for m in infos)


def test_rfc4733_carrier_to_info_agent_as_info_requests(clean_edge: Edge, recorder: Recorder) -> None:
    """The carrier's events reach the INFO agent as INFO requests on the carrier's behalf (not as
    tones), numbered in the carrier's CSeq space; the carrier's later BYE is renumbered above them,
    and the 200 the carrier gets carries its own number again."""
    edge = clean_edge
    _provision(edge, "rfc4733", "info")
    pcap = event_pcap(edge.workdir / "events.pcap", "5#")
    caller = dtmf_scenarios.caller(edge.workdir, te=True, record=False, pcap=pcap, hold_ms=4000)
    callee = dtmf_scenarios.callee(edge.workdir, te=False, record=True)
    carrier, agent = _call(edge, caller, callee, recorder, "callee")
    _recorded(edge, "caller:5:rfc4733,caller:#:rfc4733")
    _finish(carrier, agent)
    infos = agent.received_requests("INFO")
    assert _signals(infos) == "5#", infos
    invite, = _cseqs(agent.received_requests("INVITE"))
    info_cseqs = _cseqs(infos)
    bye, = _cseqs(agent.received_requests("BYE"))
    assert invite < info_cseqs[0] < info_cseqs[1] < bye  # RFC 3261 section 12.2.2 at the agent
    carrier_bye_ok = carrier.received_responses("BYE")
    assert carrier_bye_ok and _cseqs(carrier_bye_ok) == [2]  # the carrier's own number back
    assert len(recorder.packets) > 100  # the agent got the carrier's audio...
    assert recorder.tones(0) == ""  # ...with the digits silenced in it: they arrive once


def test_inband_agent_to_info_carrier_as_info_requests(clean_edge: Edge, carrier_recorder: Recorder) -> None:
    """The answering agent's tones reach the INFO carrier as INFO requests on the agent's behalf;
    the agent's own first request (its BYE, CSeq 1) is renumbered above them for the carrier."""
    edge = clean_edge
    _provision(edge, "info", "inband")
    caller = dtmf_scenarios.caller(edge.workdir, te=False, record=True, until_bye=True)
    tones = tone_pcap(edge.workdir / "tones.pcap", "5#")
    callee = dtmf_scenarios.callee(edge.workdir, te=False, record=False, pcap=tones, hangup_ms=2500)
    carrier, agent = _call(edge, caller, callee, carrier_recorder, "caller")
    _recorded(edge, "callee:5:inband,callee:#:inband")
    _finish(carrier, agent)
    infos = carrier.received_requests("INFO")
    assert _signals(infos) == "5#", infos
    info_cseqs = _cseqs(infos)
    bye, = _cseqs(carrier.received_requests("BYE"))
    assert info_cseqs[0] < info_cseqs[1] < bye
    agent_bye_ok = agent.received_responses("BYE")
    assert agent_bye_ok and _cseqs(agent_bye_ok) == [1]
    assert len(carrier_recorder.packets) > 100
    assert carrier_recorder.tones(0) == ""
    wait_until(lambda: edge.active_leases() == 0, timeout=10, what="the call's slots released")


def test_edge_ended_call_after_info_requests_sends_its_bye_above_them(clean_edge: Edge, recorder: Recorder) -> None:
    """The dialog module's own BYE (maximum duration) on the carrier's behalf is numbered above the
    INFO requests the edge sent on the carrier's behalf: the agent accepts it (RFC 3261 section 12.2.2)."""
    edge = clean_edge
    _provision(edge, "rfc4733", "info", max_duration_s=4)
    pcap = event_pcap(edge.workdir / "events.pcap", "7")
    caller = dtmf_scenarios.caller(edge.workdir, te=True, record=False, pcap=pcap, until_bye=True)
    callee = dtmf_scenarios.callee(edge.workdir, te=False, record=True)
    carrier, agent = _call(edge, caller, callee, recorder, "callee")
    _finish(carrier, agent)
    infos = agent.received_requests("INFO")
    assert _signals(infos) == "7", infos
    bye, = _cseqs(agent.received_requests("BYE"))
    assert bye > _cseqs(infos)[0]
    assert "maximum duration" in edge.log()
    wait_until(lambda: edge.active_leases() == 0, timeout=10, what="the call's slots released")


def test_inband_both_sides_pass_as_tones(clean_edge: Edge, recorder: Recorder) -> None:
    """Two in-band sides: the tones pass with the audio, and no side is offered telephone-event."""
    edge = clean_edge
    _provision(edge, "inband", "inband")
    pcap = tone_pcap(edge.workdir / "tones.pcap", "5#")
    caller = dtmf_scenarios.caller(edge.workdir, te=True, record=False, pcap=pcap, hold_ms=3000)
    callee = dtmf_scenarios.callee(edge.workdir, te=False, record=True)
    carrier, agent = _call(edge, caller, callee, recorder, "callee")
    _finish(carrier, agent)
    assert _te_pt(agent.received_requests("INVITE")[0]) is None  # stripped though the carrier offered it
    assert recorder.tones(0) == "5#"


def test_termination_rfc4733_agent_to_info_carrier_that_demands_digest(clean_edge: Edge) -> None:
    """Agent -> carrier, the carrier in info mode and demanding digest: the edge's retried INVITE
    takes CSeq 2 (the dialog module's track_cseq_updates shifts the agent's later requests by one);
    the INFO on the agent's behalf and the agent's BYE stack on top of that shift, in order."""
    edge = clean_edge
    gateway = Recorder(CARRIER_A)
    try:
        admin.put_trunk(edge.redis, Trunk("carrier", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                          gateways=(Gateway(CARRIER_A, 5080),), dtmf=DtmfMode.INFO))
        admin.set_trunk_password(edge.redis, edge.secret_box(), "carrier", "acct-1", "s3cret-pw")
        admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",),
                                          dtmf=DtmfMode.RFC4733))
        edge.route("+44", "carrier", "0.0100")
        events = event_pcap(edge.workdir / "events.pcap", "9")
        caller = dtmf_scenarios.caller(edge.workdir, te=True, record=False, pcap=events, hold_ms=4000)
        callee = dtmf_scenarios.callee(edge.workdir, te=False, record=True, challenge=True)
        carrier = uas(edge.workdir / "carrier", CARRIER_A, 5080, scenario=callee, rtp_echo=False,
                      extra=["-key", "rtp_port", str(gateway.port)])
        agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, "+442071234567", scenario=caller)
        _recorded(edge, "caller:9:rfc4733")
        assert agent.wait(timeout=30) == 0, agent.output()
        assert carrier.wait(timeout=30) == 0, carrier.output()
        invites = _cseqs(carrier.received_requests("INVITE"))
        infos = carrier.received_requests("INFO")
        assert _signals(infos) == "9", infos
        bye, = _cseqs(carrier.received_requests("BYE"))
        assert invites == [1, 2] and 2 < _cseqs(infos)[0] < bye
        assert _cseqs(agent.received_responses("BYE")) == [2]
        assert gateway.tones(0) == ""
    finally:
        gateway.close()
