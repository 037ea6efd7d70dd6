"""One network per side with a transport of its own per side, on the real stack.

Fixture ``transport_sides_edge``: carriers on EDGE_IP over UDP only, agents on AGENT_FACING_IP over
TCP and TLS only.  SIPp peers over TCP (``-t t1``) and baresip over TLS (its certificate verified by
the edge, the edge's verified by it) call in both directions: every request to each side leaves
from that side's socket and transport (top Via, Record-Route), in-dialog requests follow (the
callee's re-INVITE and UPDATE, BYE from either side), each side sees only its own side's addresses,
and media flows both ways (RTP counted after the re-offers; tones over TLS).  An agent whose
certificate the edge does not trust is never reached.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from routing.tables import admin
from routing.tables.model import Agent, Direction, Gateway, MediaPolicy, Trunk
from tests.sipp import reject_uac_scenario, uac
from routing.ops.tlscert import write_selfsigned
from tests.baresip import Baresip, stop_all

from .conftest import AGENT2_IP, AGENT_FACING_IP, AGENT_IP, CARRIER_A, CARRIER_B, DID, EDGE_IP, Edge
from .sided import (Peer, assert_answers_at, assert_offers_from, assert_sees_only, assert_tone,
                    received_with_transport, reoffer_call, requests_received, sipp_topology_addresses, talk,
                    top_via, transports_received)

MASK_IP = "192.0.2.1"
NUMBER = "+14155550177"
PCMU = MediaPolicy(codecs=("PCMU",))
TCP_AGENT_PORT = 5090
TLS_AGENT_PORT = 5094  # baresip: UDP/TCP on 5094, TLS on 5095
CARRIER_PORT = 5080
CARRIER_TONE = 440
AGENT_TONE = 1000


def listener(edge: Edge, transport: str) -> int:
    return next(l.port for l in edge.settings.sip.listen if l.transport == transport)


@pytest.fixture
def sides_edge(transport_sides_edge: Edge, clean_edge: Edge) -> Iterator[Edge]:
    yield clean_edge
    stop_all()


def provision(edge: Edge, agent_uri: str, agent_cidrs: tuple[str, ...], gateway: str = CARRIER_A) -> None:
    """Trunk ``carr`` (carriers A and B, PCMU only, its gateway ``gateway``), agent ``bot`` (PCMU
    only) at ``agent_uri``, DID -> bot, +1 -> carr."""
    admin.put_trunk(edge.redis, Trunk("carr", Direction.BOTH, cidrs=(f"{CARRIER_A}/32", f"{CARRIER_B}/32"),
                                      gateways=(Gateway(gateway, CARRIER_PORT),), media=PCMU))
    admin.put_agent(edge.redis, Agent("bot", (agent_uri,), agent_cidrs, media=PCMU))
    edge.did(DID, "carr", "bot")
    edge.route("+1", "carr", "0.0100")


def carrier_allowed(*peers: str) -> set[str]:
    return {EDGE_IP, MASK_IP, *peers}


def agent_allowed(*peers: str) -> set[str]:
    return {AGENT_FACING_IP, MASK_IP, *peers}


def test_agent_side_over_tcp(sides_edge: Edge) -> None:
    """Origination (carrier UDP -> agent TCP; the carrier hangs up) and termination (agent TCP ->
    carrier UDP; the agent hangs up), the callee sending a re-INVITE and an UPDATE in each: the
    agent gets every message over TCP from the agent-facing TCP socket (INVITE, ACK, re-offers, BYE,
    Record-Route with transport=tcp), the carrier over UDP from the carrier socket, each seeing only
    its side's addresses; offers follow the receiver's codecs; RTP flows both ways afterwards."""
    edge = sides_edge
    provision(edge, f"sip:bot@{AGENT_IP}:{TCP_AGENT_PORT};transport=tcp", (f"{AGENT_IP}/32",))
    tcp, udp = listener(edge, "tcp"), listener(edge, "udp")
    reoffers = ("INVITE", "UPDATE")
    work = edge.workdir
    orig = reoffer_call(work / "orig", Peer(CARRIER_A, CARRIER_PORT + 2), Peer(AGENT_IP, TCP_AGENT_PORT, ("-t", "t1")),
                        f"{EDGE_IP}:{udp}", DID, reoffers, hangs_up="caller")
    term = reoffer_call(work / "term", Peer(AGENT_IP, TCP_AGENT_PORT + 2, ("-t", "t1")), Peer(CARRIER_A, CARRIER_PORT),
                        f"{AGENT_FACING_IP}:{tcp}", NUMBER, reoffers, hangs_up="caller")
    agent_via, carrier_via = f"TCP {AGENT_FACING_IP}:{tcp}", f"UDP {EDGE_IP}:{udp}"
    # origination: the agent (callee) over TCP, the carrier (caller) over UDP
    (invite,) = requests_received(orig.callee, "INVITE", 1)
    assert top_via(invite) == agent_via, invite
    assert re.search(rf"^Record-Route: <sip:{re.escape(AGENT_FACING_IP)}:{tcp};transport=tcp;", invite, re.M), invite
    for method in ("ACK", "BYE"):
        assert [top_via(m) for m in requests_received(orig.callee, method)] == [agent_via], method
    assert_offers_from(orig.caller, reoffers, EDGE_IP, carrier_allowed(CARRIER_A), ["0", "101"], "UDP")
    assert_answers_at(orig.callee, reoffers, AGENT_FACING_IP)
    # termination: the carrier (callee) over UDP, the agent (caller) over TCP
    (invite,) = requests_received(term.callee, "INVITE", 1)
    assert top_via(invite) == carrier_via, invite
    assert [top_via(m) for m in requests_received(term.callee, "BYE")] == [carrier_via]
    assert_offers_from(term.caller, reoffers, AGENT_FACING_IP, agent_allowed(AGENT_IP), ["0", "101"], "TCP")
    assert_answers_at(term.callee, reoffers, EDGE_IP)
    for call, agent, carrier in ((orig, orig.callee, orig.caller), (term, term.caller, term.callee)):
        assert transports_received(agent) == {"TCP"}, agent.name
        assert transports_received(carrier) == {"UDP"}, carrier.name
        assert sipp_topology_addresses(agent) <= agent_allowed(AGENT_IP), sipp_topology_addresses(agent)
        assert sipp_topology_addresses(carrier) <= carrier_allowed(CARRIER_A), sipp_topology_addresses(carrier)
    assert orig.caller_rtp_sources == {EDGE_IP} and orig.callee_rtp_sources == {AGENT_FACING_IP}
    assert term.caller_rtp_sources == {AGENT_FACING_IP} and term.callee_rtp_sources == {EDGE_IP}


def tls_peers(edge: Edge, workdir: Path) -> tuple[Baresip, Baresip]:
    """A UDP carrier (baresip, account NUMBER) and a TLS agent (baresip with the certificate the
    edge trusts for agents, trusting the edge's)."""
    pki = Path(edge.settings.sip.tls.ca_list).parent
    bundle = workdir / "agent.pem"
    workdir.mkdir(parents=True, exist_ok=True)
    bundle.write_text((pki / "agent.crt").read_text() + (pki / "agent.key").read_text())
    carrier = Baresip(workdir / "carrier", CARRIER_B, tone_hz=CARRIER_TONE, sip_port=CARRIER_PORT,
                      sip_trace=True, user=NUMBER)
    agent = Baresip(workdir / "agent", AGENT_IP, tone_hz=AGENT_TONE, sip_port=TLS_AGENT_PORT, sip_trace=True,
                    cafile=edge.settings.tls_certificate, extra_config=f"sip_certificate\t{bundle}")
    return carrier, agent


def assert_agent_over_tls(edge: Edge, agent: Baresip) -> None:
    """Every SIP message the agent received came over TLS from the agent-facing address, each
    request's top Via naming the agent-facing TLS socket."""
    messages = received_with_transport(agent)
    assert messages and {t for t, _, _ in messages} == {"tls"}, [(t, s) for t, s, _ in messages]
    assert {s.rsplit(":", 1)[0] for _, s, _ in messages} == {AGENT_FACING_IP}, [s for _, s, _ in messages]
    requests = [lines for _, _, lines in messages if lines and not lines[0].startswith("SIP/2.0")]
    assert requests
    for lines in requests:
        assert top_via("\n".join(lines)) == f"TLS {AGENT_FACING_IP}:{listener(edge, 'tls')}", lines


def test_agent_side_over_tls(sides_edge: Edge) -> None:
    """baresip agent over TLS, baresip carrier over UDP.  Origination: the edge connects to the
    agent from the agent-facing address over TLS (verifying the agent's certificate with
    ``sip.tls.ca_list``), the agent hangs up.  Termination: the agent connects to the agent-facing
    TLS socket (verifying the edge's certificate for that address), the carrier hangs up, and its
    BYE reaches the agent over TLS.  Each side sees only its side's addresses; tones both ways."""
    edge = sides_edge
    tls = listener(edge, "tls")
    # the agent's TLS connections leave from the kernel's choice of source address (its own, the
    # edge's address it connects to, or 127.0.0.1): its ACL names each
    provision(edge, f"sip:ua@{AGENT_IP}:{TLS_AGENT_PORT + 1};transport=tls",
              (f"{AGENT_IP}/32", f"{AGENT_FACING_IP}/32", "127.0.0.1/32"), gateway=CARRIER_B)
    for direction in ("origination", "termination"):
        carrier, agent = tls_peers(edge, edge.workdir / direction)
        with carrier, agent:
            if direction == "origination":
                talk(edge, carrier, agent, f"sip:{DID}@{EDGE_IP}:{listener(edge, 'udp')}", hangs_up=agent)
            else:
                talk(edge, agent, carrier, f"sip:{NUMBER}@{AGENT_FACING_IP}:{tls};transport=tls", hangs_up=carrier)
        assert_tone(carrier.recording, AGENT_TONE)
        assert_tone(agent.recording, CARRIER_TONE)
        assert_sees_only(carrier, EDGE_IP, carrier_allowed(CARRIER_B), [f"c=IN IP4 {EDGE_IP}"])
        # 127.0.0.1: the agent's own source address, echoed in the received= of its Via in responses
        assert_sees_only(agent, AGENT_FACING_IP, agent_allowed(AGENT_IP, "127.0.0.1"), [f"c=IN IP4 {AGENT_FACING_IP}"])
        assert_agent_over_tls(edge, agent)


def test_an_agent_whose_certificate_is_not_trusted_is_not_reached(sides_edge: Edge) -> None:
    """The edge checks a TLS agent's certificate against ``sip.tls.ca_list``: an agent presenting a
    certificate of another CA is never offered the call, and the carrier gets 503 Agent Unreachable."""
    edge = sides_edge
    pki = edge.workdir / "pki"
    write_selfsigned(pki / "other.crt", pki / "other.key", [AGENT2_IP])
    bundle = pki / "other.pem"
    bundle.write_text((pki / "other.crt").read_text() + (pki / "other.key").read_text())
    provision(edge, f"sip:ua@{AGENT2_IP}:{TLS_AGENT_PORT + 1};transport=tls", (f"{AGENT2_IP}/32",))
    logged = len(edge.log())
    with Baresip(edge.workdir / "untrusted", AGENT2_IP, sip_port=TLS_AGENT_PORT,
                 extra_config=f"sip_certificate\t{bundle}") as agent:
        caller = uac(edge.workdir / "carrier", CARRIER_A, CARRIER_PORT + 2, f"{EDGE_IP}:{listener(edge, 'udp')}", DID,
                     scenario=reject_uac_scenario(edge.workdir))
        assert caller.wait(timeout=30) == 0, caller.output()
        assert caller.final_status() == [(503, "Agent Unreachable")]
        assert not agent.has_event("CALL_INCOMING")
    assert "certificate verify failed" in edge.log()[logged:]
