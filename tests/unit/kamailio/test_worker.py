"""Per-process state and KSR helpers (routing.kamailio.worker)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import types
from typing import Any

import pytest

from routing.call import metrics
from routing.call.decision import Reason, Reject
from routing.tables.store import StoreUnavailable
from tests.unit.kamailio.fakeksr import (FakeKSR, FakeStore, LEASE_A, MSG, RecordingWriter, request, RT,
                                         termination_plan)


@pytest.fixture
def worker_module(kemi: types.ModuleType) -> types.ModuleType:
    return importlib.import_module("routing.kamailio.worker")


# -- KSR helpers ---------------------------------------------------------------------------------------


def test_pv_is_text_and_empty_when_kamailio_has_none(worker_module: types.ModuleType, ksr: FakeKSR) -> None:
    ksr.pv.update({"$sp": 5060, "$ci": "call-1"})
    assert (worker_module.pv("$sp"), worker_module.pv("$ci"), worker_module.pv("$fn")) == ("5060", "call-1", "")


def test_count_and_observe_use_the_function_of_their_label_count(worker_module: types.ModuleType,
                                                                 ksr: FakeKSR) -> None:
    worker_module.count(metrics.REJECTIONS, "acl_source")
    worker_module.observe(metrics.SETUP_TIME, -0.25, "termination", "a")  # a clock step back counts as 0
    worker_module.observe(metrics.SETUP_TIME, 1.5, "termination", "a")
    assert ksr.args_of("xhttp_prom.counter_inc_l1") == [(metrics.REJECTIONS.name, 1, "acl_source")]
    assert ksr.args_of("xhttp_prom.histogram_observe_l2") == [
        (metrics.SETUP_TIME.name, "0.000000", "termination", "a"),
        (metrics.SETUP_TIME.name, "1.500000", "termination", "a")]


def test_hop_labels_name_the_hops_trunk_and_none_for_a_missing_agent(worker_module: types.ModuleType) -> None:
    assert worker_module.hop_labels(termination_plan(("a", LEASE_A))) == ("termination", "a", "none")


# -- refusals and records --------------------------------------------------------------------------------


def test_stateful_reply_adds_retry_after_then_answers_through_tm_logged_and_counted(ksr: FakeKSR,
                                                                                    router: Any) -> None:
    request(ksr, method="BYE")
    router.worker.reply(Reject.of(Reason.STORE_UNAVAILABLE, 7), stateful=True)
    names = ksr.names()
    assert names.index("hdr.append_to_reply") < names.index("tm.t_reply")
    assert ksr.args_of("hdr.append_to_reply") == [("Retry-After: 7\r\n",)]
    assert ksr.replies == [("tm", 503, "Routing Store Unavailable")]
    assert ksr.args_of("xhttp_prom.counter_inc_l1") == [(metrics.REJECTIONS.name, 1, "store_unavailable")]
    assert any(text.startswith("edge: reject 503 store_unavailable request call-id=call-1 ") for _, text in ksr.logs)


@pytest.mark.parametrize(("method", "answered"), [("ACK", False), ("BYE", True), ("INVITE", True)])
def test_internal_error_is_answered_500_but_never_to_an_ack(ksr: FakeKSR, router: Any, method: str,
                                                            answered: bool) -> None:
    request(ksr, method=method)
    router.worker.reply_internal_error()
    assert ksr.replies == ([("sl", 500, "Internal Server Error")] if answered else [])


def test_call_record_that_cannot_be_written_is_logged_whole(ksr: FakeKSR, router: Any) -> None:
    def broken(record: dict) -> str:
        raise OSError("No space left on device")

    router.worker.writer.write = broken
    request(ksr, **{"$si": "198.18.0.1"})
    router.ksr_initial_invite(MSG)  # refused: its record is written
    assert ksr.replies == [("sl", 403, "Source Not Allowed")]
    (lost,) = [text for level, text in ksr.logs if level == "err"]
    assert lost.startswith("edge: call record lost (spool failed): ")
    record = json.loads(lost.removeprefix("edge: call record lost (spool failed): ").split(" | ", 1)[0])
    assert (record["status"], record["reject_tag"]) == ("rejected", "acl_source")


def test_snapshot_reads_the_request_from_pseudo_variables(ksr: FakeKSR, router: Any) -> None:
    request(ksr, **{"$au": "user1", "$mb": "INVITE sip:x SIP/2.0\r\nVia: a\r\nX-Tenant: 7\r\n\r\n"})
    router.worker.start(MSG)
    req = router.worker.snapshot()
    assert (req.method, req.call_id, req.src_ip, req.src_port, req.proto) == ("INVITE", "call-1", "192.0.2.5", 5060,
                                                                              "udp")
    assert (req.ruri_user, req.to_user, req.from_user, req.auth_user) == ("+14155550100", "+14155550100",
                                                                          "2125550123", "user1")
    assert req.header_names == ("Via", "X-Tenant")
    assert req.received_ms == router.worker.now_ms > 0


# -- records and traces of refused INVITEs ------------------------------------------------------------


def test_no_refusal_record_when_trace_ttl_is_zero(kemi: types.ModuleType, ksr: FakeKSR, store: FakeStore) -> None:
    router = kemi.Edge(dataclasses.replace(RT, trace_ttl_s=0))
    router.worker.store = store
    router.worker.writer = RecordingWriter()
    request(ksr, **{"$si": "198.18.0.1"})
    router.ksr_initial_invite(MSG)
    assert ksr.replies == [("sl", 403, "Source Not Allowed")]
    assert store.traces == {}


def test_refusal_is_answered_even_when_it_cannot_be_recorded(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    def broken(*args: object) -> None:
        raise StoreUnavailable("down")

    store.keep_trace = broken  # type: ignore[method-assign]
    request(ksr, **{"$si": "198.18.0.1"})
    router.ksr_initial_invite(MSG)
    assert ksr.replies == [("sl", 403, "Source Not Allowed")]
    assert any("cannot record the refusal" in text for _, text in ksr.logs)


def test_refused_invite_gets_a_rejected_record(ksr: FakeKSR, router: Any) -> None:
    request(ksr, **{"$si": "198.18.0.1", "$cs": "7"})
    router.ksr_initial_invite(MSG)
    (record,) = router.worker.writer.records
    assert (record["id"], record["status"], record["sip_code"], record["reject_tag"]) == (
        "t1:call-1:7", "rejected", 403, "acl_source")
    assert record["number"] == "+14155550100" and record["gateways"] == []


def test_non_invite_refusals_get_no_record(ksr: FakeKSR, router: Any) -> None:
    request(ksr, method="MESSAGE")
    router.ksr_refuse(MSG, "not_allowed")
    assert ksr.replies and router.worker.writer.records == []
