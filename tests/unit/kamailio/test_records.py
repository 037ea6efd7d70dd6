"""Call records of failed and answered calls (refusals: test_worker.py)."""

from __future__ import annotations

import json
from typing import Any

from routing.call.plan import CallPlan, Target
from tests.unit.kamailio.fakeksr import (failed_branch, FakeKSR, FakeStore, LEASE_A, MSG, origination_plan,
                                         PLAN_AVP, termination_plan)


# -- call records ---------------------------------------------------------------------------------


def test_failed_attempt_record_from_the_failure_route(ksr: FakeKSR, router: Any, cdr_table: dict[str, str]) -> None:
    plan = origination_plan()
    cdr_table["call-1"] = json.dumps({"cseq": "1", "start": 1000, "cc": ["PCMU/8000"]})
    failed_branch(ksr, plan, 486, "Busy Here")
    router.ksr_failure_manage(MSG)
    (record,) = router.worker.writer.records
    assert (record["status"], record["sip_code"], record["trunk"], record["agent"]) == ("failed", 486, "telnyx", "bot")
    assert record["gateways"] == [{"gateway": "bot sip:agent-a", "result": "486"}]
    assert record["codecs_caller"] == ["PCMU/8000"] and "call-1" not in cdr_table
    router.ksr_dialog_event(MSG, "dialog:failed")  # the dialog's own end writes nothing more
    assert len(router.worker.writer.records) == 1


def test_answered_call_record_on_dialog_end(ksr: FakeKSR, router: Any, store: FakeStore,
                                            cdr_table: dict[str, str]) -> None:
    plan = termination_plan(("a", LEASE_A))
    plan = CallPlan(**{**{f: getattr(plan, f) for f in plan.__slots__},
                       "targets": [Target(plan.targets[0].uri, plan.targets[0].label, "a", LEASE_A, rate="0.02",
                                          billing="60/60")]})
    cdr_table["call-1"] = json.dumps({"cseq": "1", "start": int(__import__("time").time() * 1000) - 5000})
    ksr.pv.update({"$ci": "call-1", "$rs": 200, "$rm": "INVITE", PLAN_AVP: plan.dumps()})
    ksr.returns["textops.has_body_type"] = -1
    router.ksr_onreply_manage(MSG)
    assert store.call_fields["call-1"]["trunk"] == "a" and store.call_fields["call-1"]["answer_ms"]
    store.call_fields["call-1"]["mos"] = "4.2"
    state = json.loads(cdr_table["call-1"])
    assert state["answer"] and state["trunk"] == "a" and state["rate"] == "0.02"
    state["answer"] -= 3000  # talked for 3 s
    cdr_table["call-1"] = json.dumps(state)
    ksr.pv.update({"$dlg(callid)": "call-1", "$rm": "BYE", "$rs": None, "$ft": "callee-tag", "$dlg(from_tag)": "x"})
    router.ksr_dialog_event(MSG, "dialog:end")
    (record,) = router.worker.writer.records
    assert (record["status"], record["trunk"], record["billable_s"], record["cost"]) == ("answered", "a", 60, "0.020000")
    assert record["gateways"] == [{"gateway": "a gw", "result": "200"}]
    assert record["hangup"] == "callee" and record["media"] == {"mos": "4.2"}
    # the talk time and the final quality of each side into the per-trunk histograms
    observed = [args for name, args in ksr.calls if name.startswith("xhttp_prom.histogram_observe")]
    [duration] = [a for a in observed if a[0] == "byoc_edge_call_duration_seconds"]
    assert duration[2:] == ("termination", "a", "none") and 2.9 <= float(duration[1]) <= 3.5  # this plan names no agent
    assert not [a for a in observed if a[0].startswith("byoc_edge_call_mos")]  # "mos" is no per-side reading


def test_a_release_redis_did_not_answer_is_retried_by_the_call_clock(ksr: FakeKSR, router: Any,
                                                                    store: FakeStore) -> None:
    """A call that ends during a Sentinel failover gives its slots back once redis answers again,
    not when its leases expire."""
    import importlib

    from routing.tables.store import StoreUnavailable
    from tests.unit.kamailio.fakehtable import HTables

    records = importlib.import_module("routing.kamailio.records")
    ht = HTables(ksr)
    working = store.finish

    def down(call_id: str, media: object = None, keep_s: int = 0) -> dict:
        raise StoreUnavailable("Connection refused")

    store.finish = down  # type: ignore[method-assign]
    ksr.pv.update({"$dlg(callid)": "call-1", "$rm": "BYE"})
    router.ksr_dialog_event(MSG, "dialog:end")
    assert list(ht.table("unreleased")) == ["call-1"] and store.released == []
    assert records.retry_releases(router.worker) == 0  # still down: kept for the next tick
    assert list(ht.table("unreleased")) == ["call-1"]
    store.finish = working  # type: ignore[method-assign]
    assert records.retry_releases(router.worker) == 1
    assert store.released == ["call-1"] and ht.table("unreleased") == {}
