"""Dialog events: slots released, media session closed, the dialog timeout."""

from __future__ import annotations

import json
from typing import Any

import pytest

from routing.tables.model import MediaPolicy
from routing.tables.store import StoreUnavailable
from tests.unit.kamailio.fakeksr import FakeKSR, FakeStore, MSG


# -- dialog events ---------------------------------------------------------------------------


def test_dialog_end_releases_the_dialog_call_id(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    ksr.pv.update({"$dlg(callid)": "dlg-call", "$ci": "other-call", "$rm": "BYE", "$dlg(from_tag)": "ft1"})
    assert router.ksr_dialog_event(MSG, "dialog:end") == 1
    assert store.released == ["dlg-call"]
    # a side's BYE is relayed natively: the session is deleted here, its final statistics in the reply
    assert router.worker.ngclient.commands == [("delete", {"call_id": "dlg-call", "from_tag": "ft1"})]
    assert ksr.args_of("rtpengine.rtpengine_delete") == []  # rtpengine knew no such session: nothing more


def test_dialog_end_keeps_the_final_statistics_of_the_delete_reply(ksr: FakeKSR, router: Any,
                                                                    store: FakeStore) -> None:
    reply = {"result": "ok", "created": 1, "tags": {"ft1": {"medias": []}}, "totals": {}}
    router.worker.ngclient.replies["delete"] = reply
    ksr.pv.update({"$dlg(callid)": "dlg-call", "$rm": "BYE", "$dlg(from_tag)": "ft1"})
    router.ksr_dialog_event(MSG, "dialog:end")
    from routing.call import quality
    assert router.worker.ngclient.queries == []  # one ng round trip: the delete
    expected = quality.summary(reply, "ft1", 0)
    # kept by the release itself (one redis round trip), for media.quality_ttl_s after the call
    [(call_id, fields, keep_s)] = store.finished_media
    assert call_id == "dlg-call" and set(fields) == set(expected)
    assert keep_s == router.worker.settings.media_quality_ttl_s


def test_dialog_end_falls_back_to_the_modules_delete_when_rtpengine_does_not_answer(
        ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    from routing.ngclient import NgError
    router.worker.ngclient.replies["delete"] = NgError("rtpengine 127.0.0.1:2223 did not answer delete: timed out")
    ksr.pv.update({"$dlg(callid)": "dlg-call", "$rm": "BYE", "$dlg(from_tag)": "ft1"})
    router.ksr_dialog_event(MSG, "dialog:end")
    assert ksr.args_of("rtpengine.rtpengine_delete") == [("call-id=dlg-call from-tag=ft1",)]


def test_dialog_timeout_also_deletes_the_media_session(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    ksr.pv.update({"$dlg(callid)": "dlg-call", "$rm": "OPTIONS", "$dlg(from_tag)": "ft1"})
    router.ksr_dialog_event(MSG, "dialog:end")
    assert store.released == ["dlg-call"]
    assert router.worker.ngclient.commands == [("delete", {"call_id": "dlg-call", "from_tag": "ft1"})]


def test_dialog_failed_releases_and_other_events_do_not(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    ksr.pv.update({"$dlg(callid)": "dlg-call", "$rm": "INVITE"})
    router.ksr_dialog_event(MSG, "dialog:start")
    assert store.released == []
    router.ksr_dialog_event(MSG, "dialog:failed")
    assert store.released == ["dlg-call"]


def test_dialog_event_errors_are_logged_not_raised(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    def broken(call_id: str, media: object = None, keep_s: int = 0) -> int:
        raise StoreUnavailable("down")

    store.finish = broken  # type: ignore[method-assign]
    ksr.pv.update({"$dlg(callid)": "dlg-call", "$rm": "BYE"})
    assert router.ksr_dialog_event(MSG, "dialog:end") == 1
    assert any(level == "err" and "cannot release" in text for level, text in ksr.logs)
    assert router.worker.writer.down == 1  # call records go straight to the spool for a while


@pytest.mark.parametrize(("dflags", "lifetime", "clock", "reason", "cleanup"), [
    ("1026", "10", "1700000000:1:2:ft1", "sip_keepalive", True),  # expired 10 s after the keepalives failed
    ("1026", "72", "1700000000:1:2:ft1", None, True),  # the backstop default_timeout expired
    ("2", "10", "1700000000:1:2:ft1", None, True),  # flags without DLG_FLAG_EXPIRED: no keepalive end
    ("1026", "10", "1700000000:cleanup::ft1", None, False),  # the call clock is ending it
    ("1026", "10", "", None, False),  # never ACKed: no call clock ran
])
def test_dialog_timeout_keeps_the_keepalive_end_and_arms_the_cleanup(
        ksr: FakeKSR, router: Any, store: FakeStore, dflags: str, lifetime: str, clock: str, reason: str | None,
        cleanup: bool) -> None:
    kept: list[dict] = []
    store.record_media = lambda call_id, fields, keep_s=0: kept.append(dict(fields)) or True  # type: ignore[attr-defined]
    media = json.dumps({"caller": MediaPolicy().to_json(), "callee": MediaPolicy(sip_keepalive=True).to_json()})
    ksr.pv.update({"$dlg(callid)": "dlg-call", "$rm": "OPTIONS", "$dlg(from_tag)": "ft1", "$dlg(dflags)": dflags,
                   "$dlg(lifetime)": lifetime, "$sht(deadline=>dlg-call)": clock, "$dlg_var(edge_media)": media})
    assert router.ksr_dialog_event(MSG, "dialog:timeout") == 1
    assert store.released == []  # dialog:end (or the cleanup) releases, not the timeout
    assert kept == ([{"media_end_reason": reason}] if reason else [])
    armed = [args for args in ksr.args_of("htable.sht_sets") if args[0] == "deadline"]
    if cleanup:  # dialog:end may never come (dlg_bye_all race): the call clock cleans up in 3 s
        ((_, key, value),) = armed
        assert key == "dlg-call" and value.endswith(":cleanup::ft1"), value
    else:
        assert armed == []


# -- the call-end drain (the native dialog:end queues, ksr_call_end drains) ------------------


def test_call_end_drain_releases_every_queued_call_in_one_batch_and_resets_the_flag(
        ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    from routing.kamailio.callstate import ENDED_COUNT_TABLE, ENDED_TABLE, EndedCall
    from tests.unit.kamailio.fakehtable import HTables
    ht = HTables(ksr)
    batches: list[list[str]] = []
    finish_many = store.finish_many
    store.finish_many = lambda calls, keep_s=0: batches.append([c for c, _ in calls]) or finish_many(calls, keep_s)  # type: ignore[method-assign]
    ht.table(ENDED_TABLE).update({"c1": EndedCall(1796679209122, "caller", "t1").encode(),
                                  "c2": EndedCall(1796679210000, "edge", "t2").encode(),
                                  "bad": "garbage"})
    ht.table(ENDED_COUNT_TABLE)["n"] = "1"
    assert router.ksr_call_end(MSG, "rtimer") == 1
    assert ("htable.sht_seti", (ENDED_COUNT_TABLE, "n", 0)) in ksr.calls  # reset before the queue is read
    assert batches == [["c1", "c2"]]  # one redis write for both
    assert sorted(store.released) == ["c1", "c2"]
    # each media session deleted with the caller's tag (rtpengine's from-tag)
    assert sorted((p["call_id"], p["from_tag"]) for _, p in router.worker.ngclient.commands) == [("c1", "t1"), ("c2", "t2")]
    assert set(ht.table(ENDED_TABLE)) == {"bad"}  # a malformed entry is left to its autoexpire


def test_call_end_drain_records_an_answered_call_with_its_end_time_and_hangup(
        ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    from routing.kamailio.callstate import CDR_TABLE, ENDED_TABLE, CallRecordState, EndedCall
    from tests.unit.kamailio.fakehtable import HTables
    ht = HTables(ksr)
    state = CallRecordState(cseq="1", start_ms=1796679200000, answer_ms=1796679201000, direction="origination",
                            trunk="telnyx", agent="bot", number="+14155550100", caller="+12125550100")
    ht.table(CDR_TABLE)["c1"] = state.encode()
    ht.table(ENDED_TABLE)["c1"] = EndedCall(1796679209122, "callee", "t1").encode()
    router.ksr_call_end(MSG, "rtimer")
    [record] = router.worker.writer.records
    assert (record["call_id"], record["end_ms"], record["hangup"]) == ("c1", 1796679209122, "callee")
    assert record["answer_ms"] == 1796679201000 and "c1" not in ht.table(CDR_TABLE)


def test_call_end_drain_leaves_the_rest_of_a_large_queue_for_the_next_tick(
        ksr: FakeKSR, router: Any, store: FakeStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from routing.kamailio import dialogs
    from routing.kamailio.callstate import ENDED_COUNT_TABLE, ENDED_TABLE, EndedCall
    from tests.unit.kamailio.fakehtable import HTables
    ht = HTables(ksr)
    monkeypatch.setattr(dialogs, "ENDED_BATCH", 2)
    for n in range(3):
        ht.table(ENDED_TABLE)[f"c{n}"] = EndedCall(1796679209000, "caller", f"t{n}").encode()
    router.ksr_call_end(MSG, "rtimer")
    assert len(store.released) == 2 and len(ht.table(ENDED_TABLE)) == 1
    assert ksr.args_of("htable.sht_seti")[-1] == (ENDED_COUNT_TABLE, "n", 1)  # the next tick goes on
    router.ksr_call_end(MSG, "rtimer")
    assert len(store.released) == 3 and not ht.table(ENDED_TABLE)
