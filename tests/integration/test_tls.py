"""TLS signalling with a real TLS-capable SIP UA (baresip): a carrier calls over TLS and the
call leaves toward a UDP agent (RFC 5658 double Record-Route)."""

from __future__ import annotations

from routing import admin
from routing.model import Agent, Direction, Trunk
from routing.sipp import uas

from tests.baresip import Baresip

from .conftest import AGENT_IP, DID, EDGE_IP, NET, Edge

BARESIP_IP = f"{NET}.41"


def test_carrier_over_tls_reaches_udp_agent(clean_edge: Edge) -> None:
    edge = clean_edge
    # a TLS connection leaves from the kernel's choice of source address: the edge's own, or
    # 127.0.0.1 (the loopback's primary address) when the tests run on another EDGE_TEST_NET
    sources = (f"{EDGE_IP}/32",) + (("127.0.0.1/32",) if EDGE_IP != "127.0.0.1" else ())
    admin.put_trunk(edge.redis, Trunk("tls-carrier", Direction.BOTH, cidrs=sources))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:5090",), (f"{AGENT_IP}/32",)))
    edge.did(DID, "tls-carrier", "bot")
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", answer_ms=200, rtp_echo=False)
    # trust the edge's (self-signed) certificate
    with Baresip(edge.workdir / "carrier", BARESIP_IP, codecs=["PCMU"], cafile=edge.settings.tls_certificate) as ua:
        ua.dial(f"sip:{DID}@{EDGE_IP}:{edge.tls_port};transport=tls")
        ua.wait_event("CALL_ESTABLISHED")
        ua.hangup()
        ua.wait_event("CALL_CLOSED")
    assert agent.wait(timeout=20) == 0, agent.output()
    invite = agent.received_requests("INVITE")[0]
    assert "transport=tls" in invite  # the edge record-routes both transports
    assert "X-Edge-Trunk: tls-carrier" in invite
    assert agent.received_requests("ACK") and agent.received_requests("BYE")
