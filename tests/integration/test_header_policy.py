"""Header policy on the wire: X- headers pass only when allowed, identity headers only from
trusted sides, the edge's own X-Edge-* never from a peer."""

from __future__ import annotations

from routing import admin
from routing.model import Agent, Direction, Gateway, Trunk
from routing.sipp import reject_uac_scenario, uac, uas

from .conftest import AGENT_IP, CARRIER_A, DID, Edge

HEADERS = (
    "      X-Call-Reason: support\n      X-Tenant: 42\n      X-Edge-DID: +19005550000\n"
    "      P-Asserted-Identity: <sip:+12025550100@carrier.example>\n      Diversion: <sip:+12025550111@x>;reason=unknown\n"
)


def provision(edge: Edge) -> None:
    admin.put_trunk(edge.redis, Trunk("carrier-a", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                      gateways=(Gateway(CARRIER_A, 5080),), x_headers=("X-Call-Reason",)))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:5090",), (f"{AGENT_IP}/32",),
                                      x_headers=("X-Tenant",)))
    edge.did(DID, "carrier-a", "bot")
    edge.route("+44", "carrier-a", "0.0100")


def test_origination_passes_allowed_x_headers_and_trusted_identity(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID,
                  scenario=reject_uac_scenario(edge.workdir, extra_headers=HEADERS))
    assert carrier.wait() == 0, carrier.output()
    invite = agent.received_requests("INVITE")[0]
    assert "X-Call-Reason: support" in invite
    assert "X-Tenant" not in invite
    assert "+19005550000" not in invite and f"X-Edge-DID: {DID}" in invite
    assert "P-Asserted-Identity: <sip:+12025550100@carrier.example>" in invite  # carriers are trusted
    agent.stop()


def test_termination_strips_untrusted_agent_identity(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    carrier = uas(edge.workdir / "carrier", CARRIER_A, 5080, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, "+442071838750",
                scenario=reject_uac_scenario(edge.workdir, extra_headers=HEADERS))
    assert agent.wait() == 0, agent.output()
    invite = carrier.received_requests("INVITE")[0]
    assert "X-Tenant: 42" in invite
    for gone in ("X-Call-Reason", "X-Edge-", "P-Asserted-Identity", "Diversion"):
        assert gone not in invite, gone
    carrier.stop()
