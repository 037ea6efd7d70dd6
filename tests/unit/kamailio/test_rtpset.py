"""An rtpengine set in the adapter (routing.kamailio.rtpset): each call's ng commands to its node,
the call clock's pings, a dead node disabled in the module and its answered calls ended."""

from __future__ import annotations

import importlib
import time
import types
from dataclasses import replace
from typing import Any

import pytest

from routing.ngclient import NgError
from tests.unit.kamailio.conftest import edge_over_fakes
from tests.unit.kamailio.fakehtable import HTables
from tests.unit.kamailio.fakeksr import RT, FakeKSR, FakeNg, FakeStore

A, B = ("10.0.0.1", 2223, 1), ("10.0.0.2", 2224, 1)
URL_A, URL_B = "udp:10.0.0.1:2223", "udp:10.0.0.2:2224"


@pytest.fixture
def ht(ksr: FakeKSR) -> HTables:
    return HTables(ksr)


@pytest.fixture
def timers(kemi: types.ModuleType) -> types.ModuleType:
    return importlib.import_module("routing.kamailio.timers")


@pytest.fixture
def rtpset(kemi: types.ModuleType) -> types.ModuleType:
    return importlib.import_module("routing.kamailio.rtpset")


@pytest.fixture
def nodes() -> dict[str, FakeNg]:
    """A fake ng client per node; ``ping`` answered ``pong`` unless a test makes it fail."""
    out = {URL_A: FakeNg(), URL_B: FakeNg()}
    for ng in out.values():
        ng.replies["ping"] = {"result": "pong"}
    return out


@pytest.fixture
def set_router(kemi: types.ModuleType, store: FakeStore, ksr: FakeKSR, nodes: dict[str, FakeNg]) -> Any:
    router = edge_over_fakes(kemi, store, replace(RT, rtpengine_nodes=(A, B), rtpengine_disable_s=5))
    router.worker.ng_at = lambda host, port: nodes[f"udp:{host}:{port}"]
    return router


def test_without_a_set_the_local_client_and_no_ping(rtpset: types.ModuleType, router: Any, ht: HTables) -> None:
    assert rtpset.client(router.worker, "c1") is router.worker.ng()
    assert rtpset.watch(router.worker, time.time()) == []
    assert ht.rpcs == [] and ht.tables == {}
    assert rtpset.choose(router.worker, "c1") == ""
    assert rtpset.answer_facts(router.worker, "c1") == {}  # the local rtpengine: nothing in the live hash


def test_a_calls_commands_go_to_its_node(rtpset: types.ModuleType, set_router: Any, ht: HTables,
                                          nodes: dict[str, FakeNg]) -> None:
    ht.table("rtpnode").update({"c1": URL_A, "c2": URL_B})
    assert rtpset.client(set_router.worker, "c1") is nodes[URL_A]
    assert rtpset.client(set_router.worker, "c2") is nodes[URL_B]
    rtpset.forget(set_router.worker, "c1")
    assert ht.table("rtpnode") == {"c2": URL_B}


def test_an_announcement_takes_the_modules_choice_of_a_node_up(rtpset: types.ModuleType, set_router: Any,
                                                               ht: HTables) -> None:
    chosen = {rtpset.choose(set_router.worker, f"call-{i}") for i in range(40)}
    assert chosen == {URL_A, URL_B}
    ht.table("rtpdown")[URL_B] = "1"
    assert rtpset.choose(set_router.worker, "call-x") == URL_A == ht.table("rtpnode")["call-x"]


def test_a_node_failing_three_pings_is_disabled_and_its_answered_calls_end(
        timers: types.ModuleType, set_router: Any, ht: HTables, nodes: dict[str, FakeNg], store: FakeStore,
        ksr: FakeKSR) -> None:
    kept: list[tuple[str, dict[str, str]]] = []
    store.record_media = lambda call_id, fields, keep_s=0: kept.append((call_id, dict(fields))) or True  # type: ignore[attr-defined]
    now = int(time.time())
    ht.table("rtpnode").update({"on-a": URL_A, "on-b": URL_B, "ringing-b": URL_B})
    ht.table("deadline").update({"on-a": f"{now + 3600}:11:22:ft1:tt1", "on-b": f"{now + 3600}:33:44:ft2:tt2"})
    nodes[URL_B].replies["ping"] = NgError("rtpengine 10.0.0.2:2224 did not answer ping: timed out")
    for _ in range(2):
        timers.call_clock(set_router.worker)
    assert ht.rpcs == [] and not ht.table("rtpdown")  # two lost pings: nothing yet
    timers.call_clock(set_router.worker)
    assert URL_B in ht.table("rtpdown")
    methods = [(rpc["method"], rpc["params"]) for rpc in ht.rpcs]
    # disabled in the module, then the call on B ended by the clock in the same tick (no UDP listener
    # in the fakes: through the dialog module); the call on A and the one still ringing left alone
    assert methods == [("rtpengine.enable", [URL_B, 0]), ("dlg.end_dlg", [33, 44])]
    assert kept == [("on-b", {"media_end_reason": "rtpengine_lost"})]
    assert ht.table("deadline")["on-a"] == f"{now + 3600}:11:22:ft1:tt1"
    assert ht.table("rtpnode") == {"on-a": URL_A, "ringing-b": URL_B}
    assert any("did not answer 3 pings" in text for level, text in ksr.logs if level == "err")
    # back: its first answer enables it again
    nodes[URL_B].replies["ping"] = {"result": "pong"}
    timers.call_clock(set_router.worker)
    assert ht.table("rtpdown") == {}
    assert (ht.rpcs[-1]["method"], ht.rpcs[-1]["params"]) == ("rtpengine.enable", [URL_B, 1])


def test_a_lost_ping_between_answers_never_marks_a_node_down(timers: types.ModuleType, set_router: Any,
                                                            ht: HTables, nodes: dict[str, FakeNg]) -> None:
    for ok in (False, False, True, False, False, True):
        nodes[URL_A].replies["ping"] = {"result": "pong"} if ok else NgError("lost")
        timers.call_clock(set_router.worker)
    assert ht.table("rtpdown") == {} and ht.rpcs == []


def test_the_calls_node_goes_into_its_live_hash_with_the_answer(rtpset: types.ModuleType, set_router: Any,
                                                                 ht: HTables) -> None:
    """The other edge nodes ask that node about the call's media should this one die (monitor/nodeloss.py)."""
    ht.table("rtpnode")["c1"] = URL_B
    assert rtpset.answer_facts(set_router.worker, "c1") == {"rtp_node": URL_B}
    assert rtpset.answer_facts(set_router.worker, "c2") == {}  # no node kept
