"""The carrier's STIR/SHAKEN verification of the caller on the running edge: the ``verstat`` of the
From (or P-Asserted-Identity) user part reaches the agent as ``X-Edge-Verstat`` and the call record."""

from __future__ import annotations

import time

from routing.tables.cdrstore import CdrStore
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
