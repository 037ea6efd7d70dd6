"""Sides of different IP families on the real stack: IPv4 carriers, IPv6 agents.

Fixture ``ipv6_sides_edge``: carriers on EDGE_IP (UDP), agents on [::1] (UDP), rtpengine with a
``carrier`` interface on EDGE_IP and an ``agent`` interface on ::1.  SIPp peers (an IPv4 carrier, an
IPv6 agent on ::1) call in both directions, the callee sending a re-INVITE and an UPDATE with SDP:
the agent gets every message from the edge's IPv6 socket with only IPv6 addresses (SDP
``c=IN IP6 ::1``, Record-Route ``[::1]``), the carrier only IPv4 ones, and RTP is relayed between
the families both ways after the re-offers; the edge's own BYEs (call clock) leave from each
side's socket.  IPv6 loopback has one address, so the agent and the
edge's agent side share ::1 (on different ports).
"""

from __future__ import annotations

import re
from typing import Iterator

import pytest

from routing.tables import admin
from routing.tables.model import Agent, Direction, Gateway, MediaPolicy, Trunk
from tests.sipp import stop_all, uac, uas
from tests.helpers import free_ports

from .conftest import AGENT_IP6, CARRIER_A, DID, EDGE_IP, Edge
from .sided import (Peer, assert_answers_at, assert_offers_from, reoffer_call, requests_received,
                    sipp_topology_addresses, top_via)

MASK_IP = "192.0.2.1"
NUMBER = "+14155550166"
PCMU = MediaPolicy(codecs=("PCMU",))
CARRIER_PORT = 5080


def side_port(edge: Edge, side: str) -> int:
    return next(l.port for l in edge.settings.sip.listen if l.side == side)


@pytest.fixture
def v6_edge(ipv6_sides_edge: Edge, clean_edge: Edge) -> Iterator[Edge]:
    yield clean_edge
    stop_all()


def test_ipv6_agents_and_ipv4_carriers(v6_edge: Edge) -> None:
    """Origination (IPv4 carrier -> IPv6 agent; the agent re-offers and hangs up) and termination
    (IPv6 agent -> IPv4 carrier; the carrier re-offers, the agent hangs up)."""
    edge = v6_edge
    agent_port, agent_caller_port = free_ports(AGENT_IP6, 2)
    admin.put_trunk(edge.redis, Trunk("carr", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                      gateways=(Gateway(CARRIER_A, CARRIER_PORT),), media=PCMU))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:bot@[{AGENT_IP6}]:{agent_port}",), (f"{AGENT_IP6}/128",),
                                      media=PCMU))
    edge.did(DID, "carr", "bot")
    edge.route("+1", "carr", "0.0100")
    carrier_sock, agent_sock = side_port(edge, "carrier"), side_port(edge, "agent")
    reoffers = ("INVITE", "UPDATE")
    work = edge.workdir
    orig = reoffer_call(work / "orig", Peer(CARRIER_A, CARRIER_PORT + 2), Peer(AGENT_IP6, agent_port),
                        f"{EDGE_IP}:{carrier_sock}", DID, reoffers, hangs_up="callee")
    term = reoffer_call(work / "term", Peer(AGENT_IP6, agent_caller_port), Peer(CARRIER_A, CARRIER_PORT),
                        f"[{AGENT_IP6}]:{agent_sock}", NUMBER, reoffers, hangs_up="caller")
    agent_via, carrier_via = f"UDP [{AGENT_IP6}]:{agent_sock}", f"UDP {EDGE_IP}:{carrier_sock}"
    agent_sees, carrier_sees = {AGENT_IP6, MASK_IP}, {EDGE_IP, CARRIER_A, MASK_IP}
    # origination: the INVITE reaches the agent from the IPv6 socket, record-routed there, SDP in IPv6
    (invite,) = requests_received(orig.callee, "INVITE", 1)
    assert top_via(invite) == agent_via, invite
    assert re.search(rf"^Record-Route: <sip:\[{re.escape(AGENT_IP6)}\]:{agent_sock};r2=on;", invite, re.M), invite
    assert f"c=IN IP6 {AGENT_IP6}" in invite, invite
    assert_offers_from(orig.caller, reoffers, EDGE_IP, carrier_sees, ["0", "101"])
    assert_answers_at(orig.callee, reoffers, AGENT_IP6)
    assert [top_via(b) for b in orig.caller.received_requests("BYE")] == [carrier_via]  # the agent's BYE
    # termination: the carrier's re-offers reach the agent in IPv6, its INVITE left the IPv4 socket
    (invite,) = requests_received(term.callee, "INVITE", 1)
    assert top_via(invite) == carrier_via and f"c=IN IP4 {EDGE_IP}" in invite, invite
    assert_offers_from(term.caller, reoffers, AGENT_IP6, agent_sees, ["0", "101"])
    assert_answers_at(term.callee, reoffers, EDGE_IP)
    assert [top_via(b) for b in term.callee.received_requests("BYE")] == [carrier_via]  # the agent's BYE
    for agent, carrier in ((orig.callee, orig.caller), (term.caller, term.callee)):
        assert sipp_topology_addresses(agent) <= agent_sees, sipp_topology_addresses(agent)
        assert sipp_topology_addresses(carrier) <= carrier_sees, sipp_topology_addresses(carrier)
    assert orig.caller_rtp_sources == {EDGE_IP} and orig.callee_rtp_sources == {AGENT_IP6}
    assert term.caller_rtp_sources == {AGENT_IP6} and term.callee_rtp_sources == {EDGE_IP}


def test_edge_ends_the_call_toward_each_family_from_that_sides_socket(v6_edge: Edge) -> None:
    """The edge's own BYEs (the call clock at the trunk's max_duration_s) reach the IPv4 carrier from
    the carrier socket and the IPv6 agent from the [::1] socket: that side's Via on top, and below it
    (the agent's BYE passes the edge's own request route) only the topology mask."""
    edge = v6_edge
    (agent_port,) = free_ports(AGENT_IP6, 1)
    admin.put_trunk(edge.redis, Trunk("carr", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",), max_duration_s=2))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:bot@[{AGENT_IP6}]:{agent_port}",), (f"{AGENT_IP6}/128",)))
    edge.did(DID, "carr", "bot")
    agent = uas(edge.workdir / "agent", AGENT_IP6, agent_port, scenario="uas_wait_bye.xml", answer_ms=100)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, CARRIER_PORT + 4, f"{EDGE_IP}:{side_port(edge, 'carrier')}",
                  DID, scenario="uac_wait_bye.xml")
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()
    (bye,) = carrier.received_requests("BYE")
    assert re.findall(r"^Via: (.*?);", bye, re.M) == [f"SIP/2.0/UDP {EDGE_IP}:{side_port(edge, 'carrier')}"], bye
    (bye,) = agent.received_requests("BYE")
    vias = re.findall(r"^Via: (.*?);", bye, re.M)
    assert vias[0] == f"SIP/2.0/UDP [{AGENT_IP6}]:{side_port(edge, 'agent')}", bye
    assert set(vias[1:]) <= {f"SIP/2.0/UDP {MASK_IP}"}, bye
