"""Header policy on the wire: X- headers pass only when allowed, identity headers only from
trusted sides, the edge's own X-Edge-* never from a peer."""

from __future__ import annotations

from routing.tables import admin
from routing.tables.model import Agent, Direction, Gateway, Trunk
from tests.sipp import SCENARIOS, reject_uac_scenario, uac, uas

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


def _with_headers(scenario: str, workdir, name: str) -> object:
    """A copy of ``sipp/<scenario>`` whose every request carries HEADERS."""
    text = (SCENARIOS / scenario).read_text().replace("      Max-Forwards: 70\n", "      Max-Forwards: 70\n" + HEADERS)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(text)
    return path


def _agent_policy_applied(request: str) -> None:
    assert "X-Tenant: 42" in request, request
    for gone in ("X-Call-Reason", "X-Edge-", "P-Asserted-Identity", "Diversion"):
        assert gone not in request, (gone, request)


def test_in_dialog_requests_follow_the_senders_policy(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    # termination: the agent (caller) sends INFO, re-INVITE, UPDATE and BYE with every header
    carrier = uas(edge.workdir / "carrier", CARRIER_A, 5080, scenario="uas_agent.xml", answer_ms=20,
                  rtp_echo=False, extra=["-key", "media_relay", edge.settings.rtpengine.address])
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, "+442071838750", hold_ms=200,
                scenario=_with_headers("uac_call.xml", edge.workdir, "uac_call_headers.xml"))
    assert agent.wait() == 0, agent.output()
    assert carrier.wait() == 0, carrier.output()
    in_dialog = [*carrier.received_requests("INFO"), carrier.received_requests("INVITE")[1],
                 *carrier.received_requests("UPDATE"), *carrier.received_requests("BYE")]
    assert len(in_dialog) == 4
    for request in in_dialog:
        _agent_policy_applied(request)
    # origination: the agent (callee) re-INVITEs and hangs up with every header; the carrier's own
    # allow-list (X-Call-Reason, trusted identity) does not apply to what the agent sends
    agent = uas(edge.workdir / "agent2", AGENT_IP, 5090, answer_ms=200, rtp_echo=False,
                scenario=_with_headers("uas_hangup.xml", edge.workdir, "uas_hangup_headers.xml"))
    carrier = uac(edge.workdir / "carrier2", CARRIER_A, 5070, edge.sip, DID, scenario="uac_callee_hangs_up.xml")
    assert agent.wait() == 0, agent.output()
    assert carrier.wait() == 0, carrier.output()
    for request in (carrier.received_requests("INVITE")[0], carrier.received_requests("BYE")[0]):
        _agent_policy_applied(request)
