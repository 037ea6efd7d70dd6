"""The entry guard: an exception never escapes, and the entries app_python3 calls."""

from __future__ import annotations

import dataclasses

import pytest

from routing.tables.store import StoreUnavailable

import inspect
import types
from typing import Any

from routing.tables.model import DataError
from tests.unit.kamailio.fakeksr import FakeKSR, FakeStore, MSG, request, RT


# -- errors never escape ---------------------------------------------------------------


def test_python_exception_gives_exactly_one_500_and_logs_the_traceback(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = RuntimeError("boom")
    request(ksr)
    assert router.ksr_initial_invite(MSG) == 1
    assert ksr.replies == [("sl", 500, "Internal Server Error")]
    errors = [text for level, text in ksr.logs if level == "err"]
    assert len(errors) == 1
    assert "Traceback" in errors[0] and "RuntimeError: boom" in errors[0]
    assert ksr.relayed == []


def test_store_unavailable_gives_503_with_retry_after(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = StoreUnavailable("Timeout reading from socket")
    request(ksr)
    router.ksr_initial_invite(MSG)
    # stateful: INVITE retransmissions queued behind the redis timeout meet the transaction
    assert ksr.replies == [("tm", 503, "Routing Store Unavailable")]
    assert ksr.args_of("hdr.append_to_reply") == [("Retry-After: 7\r\n",)]
    names = ksr.names()
    assert names.index("tm.t_newtran") < names.index("hdr.append_to_reply") < names.index("tm.t_reply")
    assert any(level == "err" and "unavailable" in text for level, text in ksr.logs)


def test_malformed_routing_data_gives_500(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = DataError("edge:trunk:x direction: must be inbound, outbound or both")
    request(ksr)
    router.ksr_initial_invite(MSG)
    assert ksr.replies == [("sl", 500, "Internal Server Error")]
    assert ksr.args_of("hdr.append_to_reply") == []
    assert any(level == "err" and "edge:trunk:x" in text for level, text in ksr.logs)


def test_without_redis_a_store_is_returned_but_not_kept(kemi: types.ModuleType) -> None:
    """The worker's single redis connection cannot be opened (nothing listens on port 1): a
    pooled store is returned, whose commands fail as StoreUnavailable, and the next call tries again."""
    router = kemi.Edge(dataclasses.replace(RT, redis_port=1))  # nothing listens on port 1
    assert router.worker.store is None
    store = router.worker.open_store()
    assert store.node == "t1" and router.worker.store is None
    with pytest.raises(StoreUnavailable):
        store.did("+14155550100")

def test_dialog_event_signature_takes_msg_and_event(kemi: types.ModuleType) -> None:
    params = list(inspect.signature(kemi.Edge.ksr_dialog_event).parameters)
    assert params == ["self", "msg", "event"]


def test_every_entry_is_behind_the_one_guard(kemi: types.ModuleType) -> None:
    entries = [name for name in dir(kemi.Edge) if name.startswith("ksr_")]
    assert len(entries) == 25, entries
    for name in entries:
        method = getattr(kemi.Edge, name)
        assert method.__code__ is kemi.entry("x")(lambda self, msg: None).__code__, name  # the guard's own run()
        assert "msg" in inspect.signature(method).parameters, name


def test_timer_exception_is_logged_once_per_part_and_the_timer_keeps_ticking(ksr: FakeKSR, router: Any) -> None:
    # the fake KSR has no htable iterator: the release retries, the media watchdog, the answers' extension and the
    # clock all fail
    assert router.ksr_call_clock(MSG, "rtimer") == 1
    errors = [text for level, text in ksr.logs if level == "err"]
    assert [text.split(":", 2)[1].strip() for text in errors] == [
        "exception retrying releases", "exception in media watchdog", "exception extending answered calls", "exception in call clock"]
    assert ksr.replies == []
