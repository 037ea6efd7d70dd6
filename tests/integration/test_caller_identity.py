"""Caller identity on the running edge: the carrier's STIR/SHAKEN verification of the caller (the
``verstat`` of the From or P-Asserted-Identity user part) reaches the agent as ``X-Edge-Verstat`` and
the call record; the caller ID policy of termination calls (an unowned caller ID replaced by the
agent's owned default for the whole call, or refused)."""

from __future__ import annotations

import re
import time

from routing.tables.cdrstore import CdrStore
from routing.tables.model import CallerIdAction, CallerIdPolicy
from tests.sipp import reject_uac_scenario, uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, DID, Edge


def _call(edge: Edge, caller: str, extra_headers: str = "") -> tuple[str, dict]:
    """A carrier call to the DID from ``caller`` (From user, with its parameters); the agent's
    INVITE and the call's record."""
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], probe=False)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [], probe=False)
    edge.did(DID, "carrier-a", "bot")
    since = int(time.time() * 1000)
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_answer.xml", answer_ms=50, rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, caller=caller,
                  scenario=reject_uac_scenario(edge.workdir, extra_headers=extra_headers))
    assert carrier.wait() == 0, carrier.output()
    assert agent.wait() == 0, agent.output()
    [record] = wait_until(lambda: CdrStore(edge.redis, 86400).records(since, int(time.time() * 1000) + 1000),
                          what="the call's record")
    return agent.received_requests("INVITE")[0], record


def test_verstat_of_the_from_user_reaches_the_agent_and_the_record(clean_edge: Edge) -> None:
    invite, record = _call(clean_edge, "+14155550123;verstat=TN-Validation-Passed")
    assert "X-Edge-Verstat: TN-Validation-Passed" in invite
    assert "X-Edge-Caller: +14155550123" in invite  # the number without its parameter
    assert record["verstat"] == "TN-Validation-Passed" and record["caller"] == "+14155550123"


def test_verstat_of_the_p_asserted_identity_reaches_the_agent(clean_edge: Edge) -> None:
    pai = "      P-Asserted-Identity: <sip:+14155550123;verstat=TN-Validation-Failed@carrier.example;user=phone>\n"
    invite, record = _call(clean_edge, "+14155550123", pai)
    assert "X-Edge-Verstat: TN-Validation-Failed" in invite and record["verstat"] == "TN-Validation-Failed"


def test_no_verstat_header_when_the_carrier_sends_none(clean_edge: Edge) -> None:
    invite, record = _call(clean_edge, "+14155550123")
    assert "X-Edge-Verstat" not in invite and record["verstat"] == ""


def _termination(edge: Edge, **trunk: object) -> None:
    """carrier-a owns the DID (an owned caller ID on it) and takes +44 calls; bot may present its DIDs only."""
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, 5080)], probe=False, **trunk)
    edge.agent("bot", [f"sip:{AGENT_IP}:5090"], [f"{AGENT_IP}/32"], probe=False, caller_id=DID)
    edge.did(DID, "carrier-a", "bot")
    edge.route("+44", "carrier-a", "0.0100")


def test_an_unowned_caller_id_is_replaced_by_the_agents_owned_default_for_the_whole_call(clean_edge: Edge) -> None:
    edge = clean_edge
    _termination(edge, caller_id_policy=CallerIdPolicy.OWNED, caller_id_action=CallerIdAction.REPLACE)
    carrier = uas(edge.workdir / "carrier", CARRIER_A, 5080, scenario="uas_answer.xml", answer_ms=50, rtp_echo=False)
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, "+442071838750", caller="+12125550123",
                scenario="uac_simple.xml", hold_ms=300)
    assert agent.wait() == 0, agent.output()
    assert carrier.wait() == 0, carrier.output()
    [invite] = carrier.received_requests("INVITE")
    [bye] = carrier.received_requests("BYE")
    for request in (invite, bye):  # the carrier sees the owned number on every request of the call
        assert re.search(rf"^From:.*<sip:\{DID}@", request, re.M | re.I), request
        assert "+12125550123" not in request
    answer = next(r for r in agent.received_responses("INVITE") if re.search(r"^SIP/2\.0 200 ", r, re.M))
    assert re.search(r"^From:.*sip:\+12125550123@", answer, re.M | re.I), answer  # the agent gets its own back


def test_an_unowned_caller_id_on_a_refusing_trunk_gets_403(clean_edge: Edge) -> None:
    edge = clean_edge
    _termination(edge, caller_id_policy=CallerIdPolicy.OWNED)
    agent = uac(edge.workdir / "agent", AGENT_IP, 5070, edge.sip, "+442071838750", caller="+12125550123",
                scenario=reject_uac_scenario(edge.workdir))
    assert agent.wait() == 0, agent.output()
    assert agent.final_status() == [(403, "Caller ID Not Allowed")]
