"""Toll-fraud guardrails on the running edge: destination policy, CPS pacing, maximum call
duration per trunk, REFER and 3xx toward destinations outside policy."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from routing.tables import admin
from routing.tables.model import Agent, Direction, Gateway, Trunk
from tests.sipp import SippRun, reject_uac_scenario, uac, uas
from tests.helpers import wait_until

from .conftest import AGENT_IP, CARRIER_A, CARRIER_B, DID, Edge
from .replies import final_invite_responses, header_values, status_line

GW = 5080
_runs = itertools.count()


def provision(edge: Edge, *, a: dict | None = None, b: dict | None = None, agent: dict | None = None) -> None:
    admin.put_trunk(edge.redis, Trunk("carrier-a", Direction.BOTH, cidrs=(f"{CARRIER_A}/32",),
                                      gateways=(Gateway(CARRIER_A, GW),), **(a or {})))
    admin.put_trunk(edge.redis, Trunk("carrier-b", Direction.BOTH, cidrs=(f"{CARRIER_B}/32",),
                                      gateways=(Gateway(CARRIER_B, GW),), **(b or {})))
    admin.put_agent(edge.redis, Agent("bot", (f"sip:{AGENT_IP}:5090",), (f"{AGENT_IP}/32",), **(agent or {})))
    edge.did(DID, "carrier-a", "bot")
    edge.route("+", "carrier-a", "0.0100")
    edge.route("+", "carrier-b", "0.0200")


def calls_from_the_agent(edge: Edge, number: str, calls: int = 1, rate: int = 10) -> SippRun:
    """``calls`` INVITEs from the agent to ``number`` at ``rate`` per second, each ended by its final response."""
    caller = uac(edge.workdir / f"agent-{next(_runs)}", AGENT_IP, 5070, edge.sip, number,
                 scenario=reject_uac_scenario(edge.workdir), calls=calls, rate=rate, limit=calls)
    assert caller.wait() == 0, caller.output()
    return caller


def place(edge: Edge, number: str, calls: int = 1, rate: int = 10) -> list[tuple[int, str]]:
    return calls_from_the_agent(edge, number, calls, rate).final_status()


def test_premium_destination_blocked_node_wide(clean_edge: Edge) -> None:
    provision(clean_edge)
    assert place(clean_edge, "+19005550123") == [(403, "Destination Not Allowed")]


def test_agent_allow_list_and_deny_list(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, agent={"allow_prefixes": ("+1", "+44"), "deny_prefixes": ("+4470",)})
    assert place(edge, "+33142685300") == [(403, "Destination Not Allowed")]  # not allowed
    assert place(edge, "+447012345678") == [(403, "Destination Not Allowed")]  # denied wins
    carrier = uas(edge.workdir / "a", CARRIER_A, GW, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    assert place(edge, "+442071838750") == [(200, "OK")]
    carrier.stop()


def test_trunk_deny_list_moves_the_call_to_another_trunk(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, a={"deny_prefixes": ("+44",)})
    carrier_b = uas(edge.workdir / "b", CARRIER_B, GW, scenario="uas_answer.xml", answer_ms=20, rtp_echo=False)
    assert place(edge, "+442071838750") == [(200, "OK")]
    assert carrier_b.received_requests("INVITE")


def test_destination_refused_by_every_trunk(clean_edge: Edge) -> None:
    provision(clean_edge, a={"allow_prefixes": ("+1",)}, b={"allow_prefixes": ("+1",)})
    assert place(clean_edge, "+442071838750") == [(403, "Destination Not Allowed")]


def test_cps_pacing_refuses_a_burst_with_retry_after(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, a={"max_cps": 2.0})
    edge.redis.delete("edge:route:+")
    edge.route("+", "carrier-a", "0.0100")  # a single trunk, so nothing fails over
    carrier = uas(edge.workdir / "a", CARRIER_A, GW, scenario="uas_answer.xml", calls=10, answer_ms=20, rtp_echo=False)
    caller = calls_from_the_agent(edge, "+442071838750", calls=10, rate=100)
    carrier.stop()
    finals = [status_line(r) for r in final_invite_responses(caller)]
    answered = finals.count((200, "OK"))
    paced = [r for r in final_invite_responses(caller) if status_line(r) == (503, "Trunk CPS Limit Reached: carrier-a")]
    assert answered + len(paced) == 10, finals
    # a bucket of 2 tokens refilled at 2/s: the burst of 10 in ~0.1 s admits 2 or 3
    assert 2 <= answered <= 3, finals
    # Retry-After is the wait for the bucket's next token, rounded up to whole seconds (RFC 3261
    # section 20.33; docs/routing.md): at 2 tokens/s it is under 0.5 s, so 1, not limits.retry_after_s (7)
    assert [header_values(r, "Retry-After") for r in paced] == [["1"]] * len(paced), paced


def test_cps_pacing_retry_after_is_the_wait_for_the_next_token(clean_edge: Edge) -> None:
    """A trunk paced at 0.25 calls/s holds one token, refilled every 4 s: a burst of 3 admits one
    call, and the other two are told to retry after 4 s (the wait for the next token, the burst
    lasting far less than 1 s), not after limits.retry_after_s (7)."""
    edge = clean_edge
    provision(edge, a={"max_cps": 0.25})
    edge.redis.delete("edge:route:+")
    edge.route("+", "carrier-a", "0.0100")  # a single trunk, so nothing fails over
    carrier = uas(edge.workdir / "a", CARRIER_A, GW, scenario="uas_answer.xml", calls=3, answer_ms=20, rtp_echo=False)
    caller = calls_from_the_agent(edge, "+442071838750", calls=3, rate=100)
    carrier.stop()
    responses = final_invite_responses(caller)
    assert sorted(status_line(r) for r in responses) == [(200, "OK")] + [(503, "Trunk CPS Limit Reached: carrier-a")] * 2
    assert [header_values(r, "Retry-After") for r in responses if status_line(r)[0] == 503] == [["4"], ["4"]]


def test_cps_paced_trunk_is_skipped_for_the_next(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, a={"max_cps": 1.0})
    a = uas(edge.workdir / "a", CARRIER_A, GW, scenario="uas_answer.xml", calls=3, answer_ms=20, rtp_echo=False)
    b = uas(edge.workdir / "b", CARRIER_B, GW, scenario="uas_answer.xml", calls=3, answer_ms=20, rtp_echo=False)
    finals = place(edge, "+442071838750", calls=3, rate=100)
    a.stop()
    b.stop()
    assert finals == [(200, "OK")] * 3
    assert len(a.received_requests("INVITE")) == 1 and len(b.received_requests("INVITE")) == 2


def test_trunk_max_duration_tears_the_call_down(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, a={"max_duration_s": 2})
    agent = uas(edge.workdir / "agent", AGENT_IP, 5090, scenario="uas_wait_bye.xml", answer_ms=20, rtp_echo=False)
    started = time.monotonic()
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario="uac_wait_bye.xml")
    assert carrier.wait(timeout=20) == 0, carrier.output()
    assert agent.wait(timeout=20) == 0, agent.output()
    elapsed = time.monotonic() - started
    assert 1.5 <= elapsed < 6, elapsed  # the node default would be 8 s
    wait_until(lambda: edge.active_leases() == 0, what="slots released after the trunk's max duration")


def _refer_call(edge: Edge, refer_to: str) -> tuple[list[tuple[int, str]], list[str]]:
    """Agent calls out through carrier-a, then sends REFER to ``refer_to``; returns the REFER's
    responses as seen by the agent and the REFERs that reached the carrier."""
    scenario = Path(__file__).resolve().parents[2] / "sipp" / "uac_refer.xml"
    carrier = uas(edge.workdir / f"a-{next(_runs)}", CARRIER_A, GW, scenario="uas_refer.xml", answer_ms=20,
                  rtp_echo=False)
    agent = uac(edge.workdir / f"agent-{next(_runs)}", AGENT_IP, 5070, edge.sip, "+442071838750",
                scenario=scenario, extra=["-key", "refer_to", refer_to])
    assert agent.wait() == 0, agent.output()
    carrier.stop()
    refer_answers = [s for s in agent.received_status() if s[0] in (202, 403)]
    return refer_answers, carrier.received_requests("REFER")


def test_refer_to_premium_number_refused(clean_edge: Edge) -> None:
    provision(clean_edge)
    answers, reached = _refer_call(clean_edge, "sip:+19005550123@127.0.0.12")
    assert answers == [(403, "Transfer Not Allowed")]
    assert reached == []


def test_refer_within_policy_relayed(clean_edge: Edge) -> None:
    provision(clean_edge)
    answers, reached = _refer_call(clean_edge, "sip:+442071838751@127.0.0.12")
    assert answers == [(202, "Accepted")]
    # a termination call whose agent transfers the carrier leg: the Refer-To is rewritten to the
    # trunk's gateway, and Referred-By names the edge, not the agent
    [refer] = reached
    assert header_values(refer, "Refer-To") == [f"<sip:+442071838751@{CARRIER_A}>"]
    [referred_by] = header_values(refer, "Referred-By")
    assert AGENT_IP not in referred_by and referred_by.startswith("<sip:+14155550123@")


def test_redirect_to_premium_number_refused(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    uas(edge.workdir / "a", CARRIER_A, GW, scenario="uas_redirect.xml", rtp_echo=False,
        extra=["-key", "contact", "sip:+19005550123@198.51.100.9"])
    assert place(edge, "+442071838750") == [(403, "Redirect Not Allowed")]


def test_redirect_within_policy_relayed(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge)
    uas(edge.workdir / "a", CARRIER_A, GW, scenario="uas_redirect.xml", rtp_echo=False,
        extra=["-key", "contact", "sip:+442071838799@198.51.100.9"])
    assert place(edge, "+442071838750") == [(302, "Moved Temporarily")]
