"""Replies: metrics of 18x/2xx, a reliable 18x that breaks the media policy."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.kamailio.fakeksr import (counted, failed_branch, FakeKSR, FakeStore, MSG, origination_plan,
                                         provisional, REPLY_DROP_AVP)


# -- metrics (xhttp_prom) ------------------------------------------------------------------------


def test_first_18x_observes_pdd_and_first_2xx_setup_time_and_answer(ksr: FakeKSR, router: Any) -> None:
    ksr.pv.update({"$avp(edge_mlabels)": "termination|carrier-a|bot", "$avp(edge_t0)": "1.0"})
    for code in (180, 183, 200, 200):
        ksr.pv["$rs"] = code
        router.ksr_onreply_manage(MSG)
    observed = [(args[0], *args[2:]) for name, args in ksr.calls if name == "xhttp_prom.histogram_observe_l2"]
    assert observed == [("byoc_edge_post_dial_delay_seconds", "termination", "carrier-a"),
                        ("byoc_edge_setup_time_seconds", "termination", "carrier-a")]
    assert counted(ksr) == [("byoc_edge_calls_answered_total", "termination", "carrier-a", "bot")]


def test_in_dialog_replies_count_nothing(ksr: FakeKSR, router: Any) -> None:
    ksr.pv["$rs"] = 200  # a re-INVITE's 200: its transaction carries no metric labels
    router.ksr_onreply_manage(MSG)
    assert [n for n, _ in ksr.calls if n.startswith("xhttp_prom")] == []


# -- a reliable 18x (RFC 3262) that breaks the media policy ----------------------------------------


def test_reliable_183_breaking_the_policy_is_dropped_and_its_branch_cancelled(ksr: FakeKSR, router: Any) -> None:
    provisional(ksr, origination_plan())
    router.ksr_onreply_manage(MSG)
    assert ksr.args_of("tmx.t_cancel_branches") == [("this",)]
    # the native onreply route drops the reply the plugin marks (and clears the mark)
    assert ksr.pv.pop(REPLY_DROP_AVP) == 1 and "rtpengine.rtpengine_answer" not in ksr.names()
    assert json.loads(ksr.pv["$avp(edge_early_refused)"]) == [488, "SRTP Required", "srtp_required"]
    assert [text for _, text in ksr.logs if "reject" in text][0].startswith(
        "edge: reject 488 srtp_required reliable-provisional reply=183 ")
    ksr.calls.clear()
    router.ksr_onreply_manage(MSG)  # the callee retransmits its 183 until the CANCEL reaches it
    assert ksr.calls == [("pv.seti", (REPLY_DROP_AVP, 1))]


def test_unreliable_183_breaking_the_policy_still_passes(ksr: FakeKSR, router: Any) -> None:
    provisional(ksr, origination_plan(), reliable=False)
    router.ksr_onreply_manage(MSG)
    assert "rtpengine.rtpengine_answer" in ksr.names()
    assert REPLY_DROP_AVP not in ksr.pv and "tmx.t_cancel_branches" not in ksr.names()
    assert ksr.pv.get("$avp(edge_early_refused)") is None


def test_failure_route_after_the_cancel_answers_488_with_the_reason(ksr: FakeKSR, router: Any, store: FakeStore,
                                                                   cdr_table: dict[str, str]) -> None:
    plan = origination_plan()
    cdr_table["call-1"] = json.dumps({"cseq": "1", "start": 1000})
    failed_branch(ksr, plan, 487, "Request Terminated")
    ksr.pv["$avp(edge_early_refused)"] = json.dumps([488, "SRTP Required", "srtp_required"])
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == []  # no failover: the policy is the call's
    assert ksr.replies == [("tm", 488, "SRTP Required")]
    assert ksr.args_of("hdr.append_to_reply") == [('Reason: SIP;cause=488;text="SRTP Required"\r\n',)]
    assert store.released == ["call-1"] and "rtpengine.rtpengine_delete0" in ksr.names()
    (record,) = router.worker.writer.records
    assert (record["status"], record["sip_code"], record["reject_tag"]) == ("failed", 488, "srtp_required")
    assert record["gateways"] == [{"gateway": "bot sip:agent-a", "result": "srtp_required"}]


def test_a_2xx_racing_the_cancel_ends_the_call_at_its_ack(ksr: FakeKSR, router: Any,
                                                          cdr_table: dict[str, str]) -> None:
    plan = origination_plan()
    cdr_table["call-1"] = json.dumps({"cseq": "1", "start": 1000})
    provisional(ksr, plan, code=200)
    ksr.pv["$avp(edge_early_refused)"] = json.dumps([488, "SRTP Required", "srtp_required"])
    router.ksr_onreply_manage(MSG)
    state = json.loads(cdr_table["call-1"])
    assert state["media_refused"] == [488, "SRTP Required", "srtp_required"] and state["answer"]


# -- the answer: leases extended, the ACK awaited ---------------------------------------------------


def test_answer_extends_the_leases_and_waits_for_the_ack(ksr: FakeKSR, router: Any, store: FakeStore,
                                                       cdr_table: dict[str, str]) -> None:
    """The 2xx extends the admission's short lease to the answered call's (lease_ttl_s) and arms the
    call clock's ACK form 32 s (64*T1) away; the native route CALL_STARTED replaces it at the ACK
    (tests/integration/test_overload.py proves the release without an ACK)."""
    deadline: dict[str, str] = {}
    cdr_sets = ksr.module.htable.sht_sets
    ksr.module.htable.sht_sets = lambda name, key, value: (
        deadline.__setitem__(key, value) if name == "deadline" else cdr_sets(name, key, value))
    ksr.module.htable.sht_is_null = lambda name, key: -1 if name == "deadline" and key in deadline else 1
    cdr_table["call-1"] = json.dumps({"cseq": "1", "start": 1000})
    ksr.pv.update({"$ci": "call-1", "$rs": 200, "$rm": "INVITE", "$avp(edge_plan)": origination_plan().dumps(),
                   "$ft": "ft1"})
    ksr.returns["textops.has_body_type"] = -1
    now = __import__("time").time()
    router.ksr_onreply_manage(MSG)
    lease_ttl_s = router.worker.settings.lease_ttl_s
    assert store.extended == [("call-1", lease_ttl_s)]
    due, kind, _, tag = deadline["call-1"].split(":")
    assert (kind, tag) == ("noack", "ft1") and now + 31 <= int(due) <= now + 33
    router.ksr_onreply_manage(MSG)  # a retransmitted 2xx changes nothing
    assert store.extended == [("call-1", lease_ttl_s)]
