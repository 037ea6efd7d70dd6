"""Per-process state and KSR helpers (routing.kamailio.worker)."""

from __future__ import annotations

import dataclasses
import types
from typing import Any

from routing.tables.store import StoreUnavailable
from tests.unit.kamailio.fakeksr import FakeKSR, FakeStore, MSG, RecordingWriter, request, RT


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
