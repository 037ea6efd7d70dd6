"""routing.call.plan: failover rules, choice of the final response, plan serialisation and lease swaps."""

from __future__ import annotations


import pytest

from routing.call.plan import CallPlan, Target, better_response, final_response, should_fail_over
from routing.tables.store import Lease
from tests.fakes import FakeStore

# -- should_fail_over ---------------------------------------------------------


@pytest.mark.parametrize("code", [408, 500, 502, 503, 504, 580, 599])
def test_fails_over_on_408_and_5xx(code: int) -> None:
    assert should_fail_over(code, answered=True, early_media=False) is True


@pytest.mark.parametrize("code", [408, 500, 503])
def test_fails_over_on_timeout_or_unreachable(code: int) -> None:
    assert should_fail_over(code, answered=False, early_media=False) is True


@pytest.mark.parametrize("code", [400, 403, 404, 480, 484, 486, 487, 488, 499])
def test_no_failover_on_other_4xx(code: int) -> None:
    assert should_fail_over(code, answered=True, early_media=False) is False


@pytest.mark.parametrize("code", [600, 603, 604, 606])
def test_no_failover_on_6xx(code: int) -> None:
    assert should_fail_over(code, answered=True, early_media=False) is False


@pytest.mark.parametrize("code", [200, 202, 299])
@pytest.mark.parametrize("answered", [True, False])
def test_no_failover_after_2xx(code: int, answered: bool) -> None:
    assert should_fail_over(code, answered=answered, early_media=False) is False


@pytest.mark.parametrize("code", [408, 480, 486, 500, 503, 600, 200])
@pytest.mark.parametrize("answered", [True, False])
def test_never_fails_over_after_early_media(code: int, answered: bool) -> None:
    assert should_fail_over(code, answered=answered, early_media=True) is False


# -- better_response / final_response -------------------------------------------


def test_6xx_beats_every_other_class() -> None:
    assert better_response((603, "Decline"), (486, "Busy Here"))
    assert better_response((600, "Busy Everywhere"), (302, "Moved"))
    assert not better_response((486, "Busy Here"), (603, "Decline"))
    assert not better_response((500, "Server Error"), (603, "Decline"))


def test_lowest_class_wins() -> None:
    assert better_response((486, "Busy Here"), (503, "Service Unavailable"))
    assert better_response((302, "Moved"), (404, "Not Found"))
    assert not better_response((503, "Service Unavailable"), (404, "Not Found"))


@pytest.mark.parametrize(("a", "b"), [((404, "Not Found"), (486, "Busy")), ((503, "x"), (500, "y")), ((603, "x"), (600, "y"))])
def test_a_tie_keeps_the_first(a: tuple[int, str], b: tuple[int, str]) -> None:
    assert not better_response(a, b)
    assert not better_response(b, a)


def _plan_after(responses: list[tuple[int, str, bool]]) -> CallPlan:
    targets = [Target(uri=f"sip:hop{i}@192.0.2.{i + 1}", label=f"hop{i}") for i in range(len(responses))]
    plan = CallPlan(call_id="c1", direction="termination", targets=targets)
    for i, (code, reason, answered) in enumerate(responses):
        plan.index = i
        plan.record(code, reason, answered)
    return plan


def test_final_response_prefers_6xx() -> None:
    plan = _plan_after([(486, "Busy Here", True), (603, "Decline", True), (404, "Not Found", True)])
    assert final_response(plan, (503, "All Carriers Failed")) == (603, "Decline")


def test_final_response_lowest_class() -> None:
    plan = _plan_after([(503, "Service Unavailable", True), (486, "Busy Here", True), (500, "Oops", True)])
    assert final_response(plan, (503, "All Carriers Failed")) == (486, "Busy Here")


def test_final_response_first_wins_a_tie() -> None:
    plan = _plan_after([(502, "Bad Gateway", True), (500, "Server Internal Error", True)])
    assert final_response(plan, (503, "All Carriers Failed")) == (502, "Bad Gateway")


def test_final_response_turns_503_into_500() -> None:
    plan = _plan_after([(503, "Service Unavailable", True)])
    assert final_response(plan, (503, "All Carriers Failed")) == (500, "Next Hop Unavailable")


def test_final_response_when_none_answered_is_the_default() -> None:
    plan = _plan_after([(408, "Request Timeout", False), (500, "Send Failed", False)])
    assert plan.best is None
    assert final_response(plan, (503, "All Carriers Failed")) == (503, "All Carriers Failed")
    assert final_response(plan, (503, "Agent Unreachable")) == (503, "Agent Unreachable")


def test_record_notes_every_hop_in_order() -> None:
    plan = _plan_after([(408, "Request Timeout", False), (503, "Service Unavailable", True), (486, "Busy Here", True)])
    assert plan.tried == ["hop0=timeout", "hop1=503", "hop2=486"]
    assert plan.best == (486, "Busy Here")


# -- serialisation ----------------------------------------------------------------


def test_dumps_loads_round_trip() -> None:
    lease_a = Lease("edge:lease:trunk:a", 10, "trunk a")
    lease_b = Lease("edge:lease:trunk:b", None, "trunk b")
    plan = CallPlan(
        call_id="abc@198.51.100.1",
        direction="termination",
        targets=[
            Target("sip:+14155550100@192.0.2.10:5060", "a 192.0.2.10:5060", "a", lease_a, max_duration_s=600),
            Target("sips:+14155550100@gw.example.net:5061;transport=tls", "b gw.example.net:5061", "b", lease_b),
            Target("sip:bot@agent.example.com", "bot sip:bot@agent.example.com"),
        ],
        index=1,
        held="edge:lease:trunk:b",
        best=(486, "Busy Here"),
        tried=["a 192.0.2.10:5060=486", "a 192.0.2.11:5060=trunk_limit"],
        full=[503, "Trunk Limit Reached: a", "trunk_limit", 5],
        agent="bot",
        retry_after_s=9,
    )
    text = plan.dumps()
    assert isinstance(text, str)
    again = CallPlan.loads(text)
    assert again == plan
    assert again.best == (486, "Busy Here") and isinstance(again.best, tuple)
    assert again.targets[0].lease == lease_a
    assert again.targets[2].lease is None
    assert again.targets[0].max_duration_s == 600
    assert again.full == [503, "Trunk Limit Reached: a", "trunk_limit", 5]
    assert again.current == plan.current
    assert CallPlan.loads(again.dumps()) == plan


def test_dumps_is_the_json_of_asdict() -> None:
    """The dicts written out field by field give byte for byte what json.dumps(dataclasses.asdict(plan)) gives."""
    import dataclasses
    import json

    plan = CallPlan(
        call_id="abc", direction="termination",
        targets=[Target("sip:a@b", "a b", "a", Lease("edge:lease:trunk:a", 3, "trunk a", 2.5, "edge:cps:trunk:a"), 60),
                 Target("sip:c@d", "c")],
        best=(480, "Temporarily Unavailable"), tried=["a b=480"], full=[503, "x", "trunk_limit", 5],
        agent="bot", trunk="a", auth_tried=[0],
    )
    assert plan.dumps() == json.dumps(dataclasses.asdict(plan), separators=(",", ":"))


def test_round_trip_of_a_fresh_plan() -> None:
    plan = CallPlan(call_id="x", direction="origination", targets=[Target("sip:a@b", "a")])
    assert CallPlan.loads(plan.dumps()) == plan


# -- advance ------------------------------------------------------------------------


LEASE_A = Lease("edge:lease:trunk:a", 2, "trunk a")
LEASE_B = Lease("edge:lease:trunk:b", 1, "trunk b")
LEASE_C = Lease("edge:lease:trunk:c", None, "trunk c")


def termination_plan() -> CallPlan:
    """Two gateways on trunk a, one on b, one on c."""
    return CallPlan(
        call_id="call-1",
        direction="termination",
        targets=[
            Target("sip:+1@192.0.2.1", "a gw1", "a", LEASE_A),
            Target("sip:+1@192.0.2.2", "a gw2", "a", LEASE_A),
            Target("sip:+1@192.0.2.3", "b gw1", "b", LEASE_B),
            Target("sip:+1@192.0.2.4", "c gw1", "c", LEASE_C),
        ],
    )


def test_first_advance_acquires_the_first_trunk() -> None:
    store, plan = FakeStore(), termination_plan()
    target = plan.advance(store, 300, start=0)
    assert target is plan.targets[0]
    assert plan.index == 0 and plan.held == LEASE_A.key
    assert store.acquired == [
        {"call_id": "call-1", "leases": [LEASE_A], "ttl_s": 300, "release": [], "facts": {"trunk": "a"}}
    ]


def test_same_trunk_lease_is_not_reacquired() -> None:
    store, plan = FakeStore(), termination_plan()
    plan.advance(store, 300, start=0)
    target = plan.advance(store, 300)
    assert target is plan.targets[1]
    assert plan.index == 1 and plan.held == LEASE_A.key
    assert len(store.acquired) == 1


def test_a_failover_on_the_held_lease_extends_it_by_one_hop() -> None:
    """The admission's lease lasts one hop (RuntimeSettings.admission_ttl_s): the next gateway of
    the same trunk may ring as long again, so the failover renews the call's leases."""
    store, plan = FakeStore(), termination_plan()
    plan.advance(store, 300, start=0)
    assert store.extended == []  # the first hop: the admission itself set the lease
    plan.advance(store, 300)
    assert store.extended == [("call-1", 300)]


def test_a_different_trunk_swaps_the_lease() -> None:
    store, plan = FakeStore(), termination_plan()
    plan.advance(store, 300, start=0)
    plan.advance(store, 300)
    target = plan.advance(store, 300)
    assert target is plan.targets[2]
    assert plan.held == LEASE_B.key
    assert store.acquired[-1]["leases"] == [LEASE_B]
    assert store.acquired[-1]["release"] == [LEASE_A.key]
    assert store.acquired[-1]["facts"] == {"trunk": "b"}


def test_a_full_trunk_is_skipped_and_recorded() -> None:
    store, plan = FakeStore(full_keys={LEASE_B.key}), termination_plan()
    plan.advance(store, 300, start=0)
    plan.advance(store, 300)
    target = plan.advance(store, 300)
    assert target is plan.targets[3]
    assert plan.index == 3 and plan.held == LEASE_C.key
    assert plan.full == [503, "Trunk Limit Reached: b", "trunk_limit", 5]
    assert "b gw1=trunk_limit" in plan.tried
    assert [c["leases"] for c in store.acquired] == [[LEASE_A], [LEASE_B], [LEASE_C]]
    # a's slot was left together with the attempt on b; nothing is held when c is tried
    assert store.acquired[1]["release"] == [LEASE_A.key]
    assert store.acquired[2]["release"] == []


def test_a_paced_trunk_is_skipped_with_its_own_refusal() -> None:
    store, plan = FakeStore(paced_keys={LEASE_A.key: 250}), termination_plan()
    plan.retry_after_s = 9
    target = plan.advance(store, 300, start=0)
    assert target is plan.targets[2]
    assert plan.tried[:2] == ["a gw1=trunk_cps", "a gw2=trunk_cps"]
    assert plan.full == [503, "Trunk CPS Limit Reached: a", "trunk_cps", 1]  # 250 ms rounds up to 1 s
    store.full_keys = {LEASE_B.key, LEASE_C.key}
    assert plan.advance(store, 300) is None
    assert plan.full == [503, "Trunk Limit Reached: c", "trunk_limit", 9]


def test_paced_refusal_retry_after_rounds_the_wait_up() -> None:
    store = FakeStore(paced_keys={LEASE_A.key: 1001, LEASE_B.key: 1001, LEASE_C.key: 1001})
    plan = termination_plan()
    assert plan.advance(store, 300, start=0) is None
    assert plan.full == [503, "Trunk CPS Limit Reached: c", "trunk_cps", 2]


def test_first_trunk_full_at_start() -> None:
    store, plan = FakeStore(full_keys={LEASE_A.key}), termination_plan()
    target = plan.advance(store, 300, start=0)
    assert target is plan.targets[2]
    assert plan.tried == ["a gw1=trunk_limit", "a gw2=trunk_limit"]
    assert plan.full == [503, "Trunk Limit Reached: a", "trunk_limit", 5]


def test_all_full_gives_none() -> None:
    store = FakeStore(full_keys={LEASE_A.key, LEASE_B.key, LEASE_C.key})
    plan = termination_plan()
    assert plan.advance(store, 300, start=0) is None
    assert plan.held is None
    assert plan.full == [503, "Trunk Limit Reached: c", "trunk_limit", 5]
    assert plan.tried == ["a gw1=trunk_limit", "a gw2=trunk_limit", "b gw1=trunk_limit", "c gw1=trunk_limit"]
    assert plan.index == len(plan.targets) - 1


def test_advance_past_the_last_target_gives_none_without_acquiring() -> None:
    store, plan = FakeStore(), termination_plan()
    plan.advance(store, 300, start=3)
    calls = len(store.acquired)
    assert plan.advance(store, 300) is None
    assert len(store.acquired) == calls


def test_targets_without_lease_never_touch_the_store() -> None:
    store = FakeStore()
    plan = CallPlan(
        call_id="o1", direction="origination", targets=[Target("sip:a@h1", "bot h1"), Target("sip:a@h2", "bot h2")]
    )
    assert plan.advance(store, 300, start=0) is plan.targets[0]
    assert plan.advance(store, 300) is plan.targets[1]
    assert plan.advance(store, 300) is None
    assert store.acquired == []
