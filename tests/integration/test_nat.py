"""NAT with real parts: an edge with one network per side behind a 1:1 NAT emulated with nftables.

The edge (fixture ``sided_edge``) faces carriers on EDGE_IP, advertised as PUBLIC_IP, and agents on
AGENT_FACING_IP; ``one_to_one_nat`` sends PUBLIC_IP to EDGE_IP and EDGE_IP's packets to the carrier
out from PUBLIC_IP, as a cloud elastic IP does.  Two baresip UAs (with SIP traces) talk through it:
the carrier must see only PUBLIC_IP in Via, Record-Route, Contact and SDP ``c=``/``o=`` (and every
packet from PUBLIC_IP), the agent only AGENT_FACING_IP, and each must hear the other's tone.
SIPp peers add re-INVITEs and UPDATEs from either side, caller or callee (with RTP counted after
them), and a delayed offer, and a carrier writes a private address (10.9.8.7) into its SDP: the
media still flows.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Iterator

import pytest

from routing.tables import admin
from routing.tables.model import Agent, Direction, Gateway, MediaPolicy, Trunk
from tests.sipp import uac, uas
from tests.baresip import Baresip, stop_all
from tests.helpers import wait_until

from .sided import (Peer, assert_answers_at, assert_offers_from, assert_sees_only, assert_tone, reoffer_call,
                    sdp_lines_received, talk, top_via)
from .conftest import AGENT_FACING_IP, AGENT_IP, CARRIER_C, DID, EDGE_IP, NAT_CARRIER, NET, PUBLIC_IP, Edge

CARRIER_TONE = 440
AGENT_TONE = 1000
RTP_BASE = 25000 + 200 * (int(NET.rsplit(".", 1)[1]) % 40)
AGENT_PORT = 5091
CARRIER_PORT = 5081
#: topoh's mask address (sided_edge): of neither network, seen by both sides
MASK_IP = "192.0.2.1"
NUMBER = "+14155550199"
PRIVATE_SDP_IP = "10.9.8.7"


@pytest.fixture
def nat_edge(sided_edge: Edge, one_to_one_nat: str, clean_edge: Edge) -> Iterator[Edge]:
    edge = clean_edge
    admin.put_trunk(edge.redis, Trunk("natc", Direction.BOTH, cidrs=(f"{NAT_CARRIER}/32", f"{CARRIER_C}/32"),
                                      gateways=(Gateway(NAT_CARRIER, CARRIER_PORT),)))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:ua@{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",)))
    edge.did(DID, "natc", "bot")
    edge.route("+1", "natc", "0.0100")
    yield edge
    stop_all()


def agent_port(edge: Edge) -> int:
    return next(l.port for l in edge.settings.sip.listen if l.side == "agent")


def carrier_port(edge: Edge) -> int:
    return next(l.port for l in edge.settings.sip.listen if l.side == "carrier")


def peers(edge: Edge) -> tuple[Baresip, Baresip]:
    # the carrier's account is the number agents call (baresip answers 404 to other users)
    carrier = Baresip(edge.workdir / "carrier", NAT_CARRIER, tone_hz=CARRIER_TONE, sip_port=CARRIER_PORT,
                      rtp_base=RTP_BASE, sip_trace=True, user=NUMBER)
    agent = Baresip(edge.workdir / "agent", AGENT_IP, tone_hz=AGENT_TONE, sip_port=AGENT_PORT,
                    rtp_base=RTP_BASE + 100, sip_trace=True)
    return carrier, agent


def carrier_view() -> tuple[set[str], list[str]]:
    return {PUBLIC_IP, NAT_CARRIER, MASK_IP}, [f"c=IN IP4 {PUBLIC_IP}"]


def agent_view() -> tuple[set[str], list[str]]:
    return {AGENT_FACING_IP, AGENT_IP, MASK_IP}, [f"c=IN IP4 {AGENT_FACING_IP}"]


def test_origination_through_a_one_to_one_nat(nat_edge: Edge) -> None:
    """The carrier calls the public address; each side sees only its own side's edge address;
    tones both ways; the agent hangs up (its BYE crosses the NAT to the carrier)."""
    edge = nat_edge
    carrier, agent = peers(edge)
    with carrier, agent:
        talk(edge, carrier, agent, f"sip:{DID}@{PUBLIC_IP}:{carrier_port(edge)}", hangs_up=agent)
    assert_tone(carrier.recording, AGENT_TONE)
    assert_tone(agent.recording, CARRIER_TONE)
    assert_sees_only(carrier, PUBLIC_IP, *carrier_view())
    assert_sees_only(agent, AGENT_FACING_IP, *agent_view())


def test_termination_through_a_one_to_one_nat(nat_edge: Edge) -> None:
    """The agent calls out through the agent-facing address; the carrier is reached from the
    public address only; tones both ways; the carrier hangs up (its BYE crosses the NAT inbound)."""
    edge = nat_edge
    carrier, agent = peers(edge)
    with carrier, agent:
        talk(edge, agent, carrier, f"sip:{NUMBER}@{AGENT_FACING_IP}:{agent_port(edge)}", hangs_up=carrier)
    assert_tone(carrier.recording, AGENT_TONE)
    assert_tone(agent.recording, CARRIER_TONE)
    assert_sees_only(carrier, PUBLIC_IP, *carrier_view())
    assert_sees_only(agent, AGENT_FACING_IP, *agent_view())


def private_sdp_gateway(workdir: Path) -> Path:
    """uas_wait_bye.xml answering with a private connection address in its SDP (its RTP still comes
    from, and is echoed at, its real address)."""
    text = (Path(__file__).resolve().parents[2] / "sipp" / "uas_wait_bye.xml").read_text()
    assert text.count("c=IN IP[media_ip_type] [media_ip]") >= 1
    path = workdir / "uas_private_sdp.xml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace("c=IN IP[media_ip_type] [media_ip]", f"c=IN IP4 {PRIVATE_SDP_IP}"))
    return path


def test_private_address_in_the_carriers_sdp_keeps_the_media_path(nat_edge: Edge) -> None:
    """The carrier's gateway answers with c=10.9.8.7 while its SIP and RTP come from CARRIER_C
    (which media.private_networks does not list): rtpengine sends to the SIP source, learns the
    real RTP source, and the agent hears its own tone echoed back by the carrier."""
    edge = nat_edge
    admin.put_trunk(edge.redis, Trunk("natc", Direction.BOTH, cidrs=(f"{CARRIER_C}/32",),
                                      gateways=(Gateway(CARRIER_C, CARRIER_PORT),)), replace=True)
    gateway = uas(edge.workdir / "gateway", CARRIER_C, CARRIER_PORT, scenario=private_sdp_gateway(edge.workdir),
                  answer_ms=100, rtp_echo=True)
    agent = Baresip(edge.workdir / "agent", AGENT_IP, tone_hz=AGENT_TONE, sip_port=AGENT_PORT,
                    rtp_base=RTP_BASE + 100)
    with agent:
        agent.dial(f"sip:{NUMBER}@{AGENT_FACING_IP}:{agent_port(edge)}")
        agent.wait_event("CALL_ESTABLISHED")
        wait_until(lambda: edge.active_leases() == 2, timeout=5, what="call admitted")
        time.sleep(2.0)  # the audio itself: the recording needs a few seconds of the echoed tone
        agent.hangup()
        agent.wait_event("CALL_CLOSED")
    assert gateway.wait(timeout=15) == 0, gateway.output()
    assert f"c=IN IP4 {PRIVATE_SDP_IP}" in gateway.messages()  # the private address really was sent
    assert_tone(agent.recording, AGENT_TONE)


def test_reinvite_and_update_from_either_side_keep_each_sides_address(nat_edge: Edge) -> None:
    """SIPp callers send a re-INVITE with SDP (and an UPDATE) inside the call: from the carrier
    (origination, through the NAT) and from the agent (termination).  Every SDP each side
    receives, initial or in-dialog, offer or answer, names only its own side's edge address."""
    edge = nat_edge
    work = edge.workdir
    agent = uas(work / "orig-agent", AGENT_IP, AGENT_PORT, answer_ms=100)
    carrier = uac(work / "orig-carrier", NAT_CARRIER, CARRIER_PORT + 2, f"{PUBLIC_IP}:{carrier_port(edge)}", DID, hold_ms=300)
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()
    gateway = uas(work / "term-carrier", NAT_CARRIER, CARRIER_PORT, answer_ms=100)
    caller = uac(work / "term-agent", AGENT_IP, AGENT_PORT + 2, f"{AGENT_FACING_IP}:{agent_port(edge)}", NUMBER,
                 hold_ms=300)
    assert caller.wait(timeout=30) == 0, caller.output()
    assert gateway.wait(timeout=30) == 0, gateway.output()
    for run, address in ((carrier, PUBLIC_IP), (gateway, PUBLIC_IP), (agent, AGENT_FACING_IP),
                         (caller, AGENT_FACING_IP)):
        lines = sdp_lines_received(run)
        # callers: the 200s to the INVITE and the re-INVITE; callees: the INVITE and the re-INVITE
        # (the scenarios' UPDATE and its 200 carry no SDP)
        assert len([l for l in lines if l.startswith("c=")]) == 2, (run.name, lines)
        assert all(l.endswith(f"IN IP4 {address}") for l in lines), (run.name, address, lines)


def test_callee_reinvite_and_update_reach_the_caller_from_its_side(nat_edge: Edge) -> None:
    """After the answer the callee sends a re-INVITE and then an UPDATE, each with an SDP offer of
    PCMA, PCMU and telephone-event: from the agent to a carrier behind the NAT (origination; the
    agent hangs up) and from a carrier behind the NAT to the agent (termination; the agent, the
    caller, hangs up).  Each reaches the caller from the edge's socket on the caller's side (top Via
    and every address in it: that side's only), offering only the caller's codecs (its media
    policy: PCMU); each 200 reaches the callee naming the callee side's address; RTP keeps flowing
    both ways afterwards, each side receiving it from its own side's media address."""
    edge = nat_edge
    admin.put_trunk(edge.redis, Trunk("natc", Direction.BOTH, cidrs=(f"{NAT_CARRIER}/32",),
                                      gateways=(Gateway(NAT_CARRIER, CARRIER_PORT),),
                                      media=MediaPolicy(codecs=("PCMU",))), replace=True)
    admin.put_agent(edge.redis, Agent("bot", (f"sip:ua@{AGENT_IP}:{AGENT_PORT}",), (f"{AGENT_IP}/32",),
                                      media=MediaPolicy(codecs=("PCMU",))), replace=True)
    carrier_sees, _ = carrier_view()
    agent_sees, _ = agent_view()
    reoffers = ("INVITE", "UPDATE")
    work = edge.workdir
    orig = reoffer_call(work / "orig", Peer(NAT_CARRIER, CARRIER_PORT + 8), Peer(AGENT_IP, AGENT_PORT),
                        f"{PUBLIC_IP}:{carrier_port(edge)}", DID, reoffers, hangs_up="callee")
    term = reoffer_call(work / "term", Peer(AGENT_IP, AGENT_PORT + 8), Peer(NAT_CARRIER, CARRIER_PORT),
                        f"{AGENT_FACING_IP}:{agent_port(edge)}", NUMBER, reoffers, hangs_up="caller")
    for call, (caller_addr, caller_sees), (callee_addr, callee_sees) in (
            (orig, (PUBLIC_IP, carrier_sees), (AGENT_FACING_IP, agent_sees)),
            (term, (AGENT_FACING_IP, agent_sees), (PUBLIC_IP, carrier_sees))):
        assert_offers_from(call.caller, reoffers, caller_addr, caller_sees, ["0", "101"])
        assert_answers_at(call.callee, reoffers, callee_addr)
        for run, address in ((call.caller, caller_addr), (call.callee, callee_addr)):
            lines = sdp_lines_received(run)
            assert lines and all(l.endswith(f"IN IP4 {address}") for l in lines), (run.name, address, lines)
        assert call.caller_rtp_sources == {caller_addr}, call.caller_rtp_sources
        assert call.callee_rtp_sources == {callee_addr}, call.callee_rtp_sources
    # the BYEs crossed too: the agent's (origination callee) reached the carrier, the agent's
    # (termination caller) reached the carrier gateway, each from the carrier side only
    for run in (orig.caller, term.callee):
        (bye,) = run.received_requests("BYE")
        assert top_via(bye) == f"UDP {PUBLIC_IP}:{carrier_port(edge)}", bye


def test_delayed_offer_through_the_sides(nat_edge: Edge) -> None:
    """Termination with an INVITE without SDP: the carrier's offer in its 200 (through the NAT) is
    made from the carrier interface, so the agent's 200 names the agent-facing address and the
    ACK's answer reaching the carrier names the public one; a re-INVITE from the agent after it too."""
    from .test_media_late_offer import callee_scenario, caller_scenario, sdp

    edge = nat_edge
    work = edge.workdir
    body = sdp("RTP/AVP", [(0, "PCMU/8000")])
    gateway = uas(work / "carrier", NAT_CARRIER, CARRIER_PORT, scenario=callee_scenario(work, body, body),
                  answer_ms=100, rtp_echo=False)
    caller = uac(work / "agent", AGENT_IP, AGENT_PORT + 4, f"{AGENT_FACING_IP}:{agent_port(edge)}", NUMBER,
                 scenario=caller_scenario(work, body, reinvite_offer=body), hold_ms=300)
    assert caller.wait(timeout=30) == 0, caller.output()
    assert gateway.wait(timeout=30) == 0, gateway.output()
    for run, address in ((gateway, PUBLIC_IP), (caller, AGENT_FACING_IP)):
        lines = sdp_lines_received(run)
        # agent: the 200's offer and the re-INVITE's answer; carrier: the ACK's answer and the re-INVITE
        assert len([l for l in lines if l.startswith("c=")]) == 2, (run.name, lines)
        assert all(l.endswith(f"IN IP4 {address}") for l in lines), (run.name, address, lines)


def test_registration_to_a_carrier_leaves_from_the_carrier_side(nat_edge: Edge) -> None:
    """The edge's REGISTER to a carrier's registrar leaves from the carrier socket (uac_reg socket):
    Via and Contact name the public address, never the agent-facing one."""
    from routing.tables import keys
    from routing.tables.model import Registration
    from routing.ops.secrets import SecretBox, create_key

    edge = nat_edge
    contact = "edge0a1b2c3d4e5f6a7b"
    registrar = uas(edge.workdir / "registrar", NAT_CARRIER, CARRIER_PORT + 4, scenario="uas_registrar.xml",
                    rtp_echo=False, extra=["-key", "authusername", "acct-nat", "-key", "authpassword", "Nat-Pa55-1",
                                           "-key", "expires", "60"])
    create_key(edge.settings.secret_key_path)
    admin.put_trunk(edge.redis, Trunk("natreg", Direction.BOTH,
                                      register=Registration(f"{NAT_CARRIER}:{CARRIER_PORT + 4}", contact)))
    admin.set_trunk_password(edge.redis, SecretBox(edge.settings.secret_key_path), "natreg", "acct-nat", "Nat-Pa55-1")
    wait_until(lambda: edge.redis.hget(keys.registration("natreg", edge.settings.node), "state") == "registered",
               timeout=20, what="registered")
    assert registrar.wait(timeout=10) == 0, registrar.output()
    registers = registrar.received_requests("REGISTER")
    assert len(registers) == 2, registers  # 401, then 200
    for message in registers:
        assert re.search(rf"^Via: SIP/2.0/UDP {re.escape(PUBLIC_IP)}:\d+;", message, re.M), message
        assert f"Contact: <sip:{contact}@{PUBLIC_IP}:{carrier_port(edge)}>" in message, message
        assert f"{AGENT_FACING_IP}:" not in message and f"{EDGE_IP}:" not in message


def test_edge_ends_the_call_toward_each_side_from_that_sides_socket(nat_edge: Edge) -> None:
    """The edge's own BYEs (the call clock at the trunk's max_duration_s) reach the carrier from the
    public address and the agent from the agent-facing address: that side's Via on top, and below it
    (the agent's BYE passes the edge's own request route) only the topology mask."""
    edge = nat_edge
    admin.put_trunk(edge.redis, Trunk("natc", Direction.BOTH, cidrs=(f"{NAT_CARRIER}/32",),
                                      gateways=(Gateway(NAT_CARRIER, CARRIER_PORT),), max_duration_s=2), replace=True)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_wait_bye.xml", answer_ms=100)
    carrier = uac(edge.workdir / "carrier", NAT_CARRIER, CARRIER_PORT + 6, f"{PUBLIC_IP}:{carrier_port(edge)}", DID,
                  scenario="uac_wait_bye.xml")
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()
    for run, address in ((carrier, PUBLIC_IP), (agent, AGENT_FACING_IP)):
        (bye,) = run.received_requests("BYE")
        vias = re.findall(r"^Via: SIP/2.0/UDP ([0-9.]+)", bye, re.M)
        assert vias[0] == address and set(vias[1:]) <= {MASK_IP}, (run.name, bye)
