"""The failure route: failover, the end of an attempt."""

from __future__ import annotations

import json
from typing import Any

import pytest

from routing.call.plan import CallPlan
from tests.unit.kamailio.fakeksr import (counted, EARLY_AVP, failed_branch, FakeKSR, FakeStore, LEASE_A,
                                         LEASE_B, MSG, origination_plan, PLAN_AVP, termination_plan)


# -- failure route -----------------------------------------------------------------------------


def test_failure_route_exception_answers_500_logged_with_its_tag(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    failed_branch(ksr, origination_plan(), 503, "Service Unavailable")
    ksr.pv[PLAN_AVP] = "{not a plan"
    assert router.ksr_failure_manage(MSG) == 1
    assert ksr.replies == [("tm", 500, "Internal Server Error")]
    assert any(text.startswith("edge: reject 500 internal_error failure ") for _, text in ksr.logs)


def test_503_fails_over_to_the_second_target(ksr: FakeKSR, router: Any) -> None:
    failed_branch(ksr, origination_plan(), 503, "Service Unavailable")
    assert router.ksr_failure_manage(MSG) == 1
    assert ksr.relayed == ["sip:+1@agent-b"]
    assert ksr.replies == []
    assert ksr.args_of("tm.t_on_failure") == [("ksr_failure_manage",)]  # re-armed for the new branch
    plan = CallPlan.loads(ksr.pv[PLAN_AVP])
    assert plan.index == 1
    assert plan.tried == ["bot sip:agent-a=503"]
    assert plan.best == (503, "Service Unavailable")


def test_termination_failover_swaps_trunk_slots(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    failed_branch(ksr, termination_plan(("a", LEASE_A), ("b", LEASE_B)), 500, "Server Internal Error")
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == ["sip:+14155550100@gw-b"]
    assert [(a["call_id"], a["leases"], a["release"]) for a in store.acquired] == [("call-1", [LEASE_B], [LEASE_A.key])]
    assert CallPlan.loads(ksr.pv[PLAN_AVP]).held == LEASE_B.key


@pytest.mark.parametrize(("code", "reason"), [(486, "Busy Here"), (404, "Not Found"), (603, "Decline")])
def test_final_4xx_6xx_does_not_fail_over(ksr: FakeKSR, router: Any, store: FakeStore, code: int, reason: str) -> None:
    failed_branch(ksr, origination_plan(), code, reason)
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == []
    assert ksr.replies == []  # tm relays the hop's own final response
    assert "rtpengine.rtpengine_delete0" in ksr.names()


def test_no_failover_after_early_media(ksr: FakeKSR, router: Any) -> None:
    failed_branch(ksr, origination_plan(), 503, "Service Unavailable")
    ksr.pv[EARLY_AVP] = 1
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == []
    assert ksr.replies == []


def test_nothing_answered_and_no_target_left(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    plan = termination_plan(("a", LEASE_A))
    failed_branch(ksr, plan, 408, "Request Timeout", timed_out=True)
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == []
    assert ksr.replies == [("tm", 503, "All Carriers Failed")]
    assert store.released == ["call-1"]
    assert any("tried=a gw=timeout" in text for _, text in ksr.logs)
    record = json.loads(store.traces[ksr.pv["$ci"]])
    assert (record["tag"], record["stage"], record["where"], record["tried"]) == (
        "carriers_failed", "failover", "failover", ["a gw=timeout"])


def test_no_reply_code_at_all_counts_as_timeout(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    failed_branch(ksr, origination_plan(), None, timed_out=True)
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == ["sip:+1@agent-b"]


def test_last_target_503_gives_500(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    plan = origination_plan()
    plan.index = 1
    failed_branch(ksr, plan, 503, "Service Unavailable")
    router.ksr_failure_manage(MSG)
    assert ksr.replies == [("tm", 500, "Next Hop Unavailable")]
    assert store.released == ["call-1"]


def test_last_origination_target_unanswered_gives_agent_unreachable(ksr: FakeKSR, router: Any) -> None:
    plan = origination_plan()
    plan.index = 1
    failed_branch(ksr, plan, 408, "Request Timeout", timed_out=True)
    router.ksr_failure_manage(MSG)
    assert ksr.replies == [("tm", 503, "Agent Unreachable")]


def test_failover_onto_a_full_trunk_names_the_limit(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.full_keys = {LEASE_B.key}
    failed_branch(ksr, termination_plan(("a", LEASE_A), ("b", LEASE_B)), 408, "Request Timeout", timed_out=True)
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == []
    assert ksr.replies == [("tm", 503, "Trunk Limit Reached: b")]
    assert ("Retry-After: 7\r\n",) in ksr.args_of("hdr.append_to_reply")
    assert store.released == ["call-1"]


def test_canceled_transaction_does_not_fail_over(ksr: FakeKSR, router: Any) -> None:
    failed_branch(ksr, origination_plan(), 487, "Request Terminated")
    ksr.returns["tm.t_is_canceled"] = 1
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == [] and ksr.replies == []


def test_failover_and_final_failure_are_counted_by_trunk_and_sip_class(ksr: FakeKSR, router: Any) -> None:
    failed_branch(ksr, termination_plan(("a", LEASE_A), ("b", LEASE_B)), 503, "Service Unavailable")
    router.ksr_failure_manage(MSG)
    assert counted(ksr) == [("byoc_edge_failovers_total", "termination", "a")]
    ksr.calls.clear()
    failed_branch(ksr, CallPlan.loads(ksr.pv[PLAN_AVP]), 486, "Busy Here")
    router.ksr_failure_manage(MSG)
    assert counted(ksr) == [("byoc_edge_calls_failed_total", "termination", "b", "4xx")]


def test_giving_up_counts_the_answer_sent(ksr: FakeKSR, router: Any) -> None:
    plan = origination_plan()
    plan.index = 1
    failed_branch(ksr, plan, None, timed_out=True)
    router.ksr_failure_manage(MSG)
    assert ksr.replies == [("tm", 503, "Agent Unreachable")]
    # the answer the edge chose is a refusal with a tag: logged and counted under that tag
    assert counted(ksr) == [("byoc_edge_rejections_total", "agent_unreachable"),
                            ("byoc_edge_calls_failed_total", "origination", "telnyx", "5xx")]
    assert any(text.startswith("edge: reject 503 agent_unreachable failover ") for _, text in ksr.logs)
