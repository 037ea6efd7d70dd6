"""Per-trunk and per-agent concurrency: atomic admission under a burst, release on every ending."""

from __future__ import annotations

import time

from routing.tables import keys

from .conftest import AGENT_IP, CARRIER_A, DID, Edge
from .replies import final_invite_responses, header_values, status_line
from tests.sipp import reject_uac_scenario, uac, uas
from tests.helpers import wait_until

AGENT_PORT = 5090


def provision(edge: Edge, trunk_max: int | None = None, agent_max: int | None = None) -> None:
    edge.trunk("carrier-a", [f"{CARRIER_A}/32"], [(CARRIER_A, 5080)], max_calls=trunk_max)
    edge.agent("bot", [f"sip:{AGENT_IP}:{AGENT_PORT}"], [f"{AGENT_IP}/32"], max_calls=agent_max)
    edge.did(DID, "carrier-a", "bot")


def burst(edge: Edge, calls: int, answer_ms: int = 1500) -> tuple[list[tuple[int, str]], int, list[str]]:
    """Fire ``calls`` INVITEs at once from the carrier; the agent answers each after ``answer_ms``.

    Returns the final responses the carrier got, how many INVITEs reached the agent,
    and those final responses whole (:func:`replies.final_invite_responses`).
    """
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", calls=calls,
                answer_ms=answer_ms, rtp_echo=False)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir),
                  calls=calls, rate=1000, limit=calls)
    assert carrier.wait(timeout=60) == 0, carrier.output()
    reached = len(agent.received_requests("INVITE"))
    agent.stop()
    return carrier.final_status(), reached, final_invite_responses(carrier)


def test_trunk_limit_never_exceeded_under_burst(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, trunk_max=3)
    finals, reached, responses = burst(edge, calls=12)
    assert len(finals) == 12
    assert finals.count((200, "OK")) == 3
    assert finals.count((503, "Trunk Limit Reached: carrier-a")) == 9
    assert reached == 3  # the agent never saw more calls than the trunk allows
    refused = [r for r in responses if status_line(r) == (503, "Trunk Limit Reached: carrier-a")]
    assert [header_values(r, "Retry-After") for r in refused] == [["7"]] * 9  # limits.retry_after_s


def test_agent_limit_never_exceeded_under_burst(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, agent_max=2)
    finals, reached, responses = burst(edge, calls=8)
    assert finals.count((200, "OK")) == 2
    assert finals.count((503, "Agent Limit Reached: bot")) == 6
    assert reached == 2
    refused = [r for r in responses if status_line(r) == (503, "Agent Limit Reached: bot")]
    assert [header_values(r, "Retry-After") for r in refused] == [["7"]] * 6  # limits.retry_after_s


def test_slots_held_during_call_and_released_by_bye(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, trunk_max=5, agent_max=5)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, answer_ms=100)
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, hold_ms=2500)
    # while the call is up it holds one trunk slot and one agent slot
    wait_until(lambda: edge.leases().get(keys.trunk_lease("carrier-a")) == 1, what="trunk slot taken")
    assert edge.leases().get(keys.agent_lease("bot")) == 1
    assert carrier.proc.poll() is None
    carrier.wait()
    agent.stop()
    wait_until(lambda: edge.active_leases() == 0, what="slots released after BYE")


def test_dialog_timeout_sends_bye_both_ways_and_releases(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, trunk_max=5)
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_wait_bye.xml", answer_ms=50, rtp_echo=False)
    started = time.monotonic()
    carrier = uac(edge.workdir / "carrier", CARRIER_A, 5070, edge.sip, DID, scenario="uac_wait_bye.xml")
    wait_until(lambda: edge.active_leases() == 2, what="call admitted")
    # neither side hangs up; the call clock ends the call at max_call_duration_s (12 s)
    assert carrier.wait(timeout=30) == 0, carrier.output()
    assert agent.wait(timeout=30) == 0, agent.output()
    assert time.monotonic() - started >= 7
    assert carrier.received_requests("BYE") and agent.received_requests("BYE")
    wait_until(lambda: edge.active_leases() == 0, what="slots released after dialog timeout")


def test_rejected_and_failed_calls_hold_no_slot(clean_edge: Edge) -> None:
    edge = clean_edge
    provision(edge, trunk_max=1)
    # agent down: the call fails after the failover timeout; the slot must come back
    caller = uac(edge.workdir / "c1", CARRIER_A, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir))
    caller.wait()
    assert caller.final_status() == [(503, "Agent Unreachable")]
    assert edge.active_leases() == 0
    # so the single slot is free for the next call
    agent = uas(edge.workdir / "agent", AGENT_IP, AGENT_PORT, scenario="uas_answer.xml", answer_ms=50, rtp_echo=False)
    caller = uac(edge.workdir / "c2", CARRIER_A, 5070, edge.sip, DID, scenario=reject_uac_scenario(edge.workdir))
    caller.wait()
    assert caller.final_status() == [(200, "OK")]
    agent.stop()
