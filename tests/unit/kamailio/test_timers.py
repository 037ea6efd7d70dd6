"""The rtimer work: call clock, media watchdog, DTMF log (routing.kamailio.timers)."""

from __future__ import annotations

import importlib
import json
import socket
import time
import types
from dataclasses import replace
from typing import Any, Iterator

import pytest

from routing.call import media
from routing.call.decision import Reason, Reject
from routing.ngclient import NgError
from tests.helpers import free_port
from tests.unit.kamailio.conftest import edge_over_fakes
from tests.unit.kamailio.fakehtable import HTables
from tests.unit.kamailio.fakeksr import MSG, FakeKSR, FakeStore, RT, counted

CALL = "call-1"


@pytest.fixture
def timers(kemi: types.ModuleType) -> types.ModuleType:
    return importlib.import_module("routing.kamailio.timers")


@pytest.fixture
def ht(ksr: FakeKSR) -> HTables:
    return HTables(ksr)


@pytest.fixture
def kept(store: FakeStore) -> list[tuple[str, dict[str, str]]]:
    """What the timers keep with a call (record_media) and its digits (record_dtmf)."""
    out: list[tuple[str, dict[str, str]]] = []

    def record_media(call_id: str, fields: dict[str, str], keep_s: int = 0) -> bool:
        out.append((call_id, dict(fields)))
        return True

    def record_dtmf(call_id: str, entry: str) -> bool:
        out.append((call_id, {"dtmf": entry}))
        return True

    store.record_media = record_media  # type: ignore[attr-defined]
    store.record_dtmf = record_dtmf  # type: ignore[attr-defined]
    return out


def _warnings(ksr: FakeKSR) -> list[str]:
    return [text for level, text in ksr.logs if level in ("warn", "err")]


# -- the call clock ---------------------------------------------------------------------------------


def test_answered_call_past_its_deadline_is_ended_and_its_cleanup_armed(timers: types.ModuleType, ht: HTables,
                                                                        router: Any, store: FakeStore) -> None:
    now = int(time.time())
    ht.table("deadline").update({CALL: f"{now - 5}:11:22:ft1:tt1", "call-2": f"{now + 3600}:33:44:ft2:tt2"})
    timers.call_clock(router.worker)
    # no UDP listener to send the BYEs itself from: the dialog module ends the dialog
    assert [(rpc["method"], rpc["params"]) for rpc in ht.rpcs] == [("dlg.end_dlg", [11, 22])]
    at, form, _, tag = ht.table("deadline")[CALL].split(":")
    assert (form, tag) == ("cleanup", "ft1") and now + 3 <= int(at) <= now + 4
    assert ht.table("deadline")["call-2"] == f"{now + 3600}:33:44:ft2:tt2"
    assert store.released == []  # dialog:end releases it, or the cleanup below


def test_call_with_a_media_refusal_is_ended_with_a_reason_header(timers: types.ModuleType, ht: HTables,
                                                                  router: Any) -> None:
    now = int(time.time())
    ht.table("cdr")[CALL] = json.dumps({"start": 1, "media_refused": [488, "SRTP Required", "srtp_required"]})
    ht.table("deadline")[CALL] = f"{now}:11:22:ft1:tt1"
    timers.call_clock(router.worker)
    (rpc,) = ht.rpcs
    assert rpc["params"] == [11, 22, media.reason_header(Reject.of(Reason.SRTP_REQUIRED)) + "\r\n"]


@pytest.mark.parametrize(("form", "warning"), [
    ("cleanup::ft1", "ended without dialog:end"),
    ("noack::ft1", "answered but no ACK within 32 s"),
])
def test_cleanup_or_unacked_answer_past_due_releases_the_call(timers: types.ModuleType, ht: HTables, router: Any,
                                                             ksr: FakeKSR, store: FakeStore, form: str,
                                                             warning: str) -> None:
    ht.table("deadline")[CALL] = f"{int(time.time()) - 1}:{form}"
    ht.table("mediawatch")[CALL] = f"{int(time.time()) + 30}:30:1:ft1"
    timers.call_clock(router.worker)
    assert store.released == [CALL]
    assert ht.table("deadline") == {} and ht.table("mediawatch") == {}
    assert ht.rpcs == []
    assert any(warning in text for text in _warnings(ksr))


def test_values_that_are_not_deadlines_are_left_alone(timers: types.ModuleType, ht: HTables, router: Any,
                                                      ksr: FakeKSR, store: FakeStore) -> None:
    ht.table("deadline")[CALL] = "soon:11:22:ft1:tt1"
    timers.call_clock(router.worker)
    assert ht.table("deadline") == {CALL: "soon:11:22:ft1:tt1"}
    assert ht.rpcs == [] and store.released == [] and _warnings(ksr) == []


def test_end_now_moves_the_deadline_to_now_and_keeps_the_reason(timers: types.ModuleType, ht: HTables,
                                                                router: Any, kept: list) -> None:
    ht.table("deadline")[CALL] = "1900000000:11:22:ft1:tt1"
    timers.end_now(router.worker, CALL, "rtp_timeout", 1700000000.7)
    assert ht.table("deadline")[CALL] == "1700000000:11:22:ft1:tt1"
    assert kept == [(CALL, {"media_end_reason": "rtp_timeout"})]


def test_end_now_leaves_a_cleanup_alone(timers: types.ModuleType, ht: HTables, router: Any, kept: list) -> None:
    ht.table("deadline")[CALL] = "1900000000:cleanup::ft1"
    timers.end_now(router.worker, CALL, "rtp_timeout", 1700000000)
    assert ht.table("deadline")[CALL] == "1900000000:cleanup::ft1"


# -- the media watchdog ------------------------------------------------------------------------------


def test_watchdog_ends_a_call_without_rtp_for_its_timeout_in_the_same_tick(
        timers: types.ModuleType, ht: HTables, router: Any, kept: list) -> None:
    """rtpengine no longer knows the call (FakeNg: unknown call-id): silent since the answer."""
    now = int(time.time())
    ht.table("deadline")[CALL] = f"{now + 3600}:11:22:ft1:tt1"
    ht.table("mediawatch")[CALL] = f"{now - 1}:30:{now - 60}:ft1"
    timers.call_clock(router.worker)
    assert ht.table("mediawatch") == {}
    # the watchdog moved the deadline to now, and the clock then ended the call
    assert [(rpc["method"], rpc["params"]) for rpc in ht.rpcs] == [("dlg.end_dlg", [11, 22])]
    assert ht.table("deadline")[CALL].split(":")[1:] == ["cleanup", "", "ft1"]
    assert kept == [(CALL, {"media_end_reason": "rtp_timeout"})]


def test_watchdog_checks_again_a_call_still_within_its_timeout(timers: types.ModuleType, ht: HTables,
                                                              router: Any) -> None:
    now = int(time.time())
    ht.table("deadline")[CALL] = f"{now + 3600}:11:22:ft1:tt1"
    ht.table("mediawatch")[CALL] = f"{now - 1}:30:{now - 5}:ft1"
    timers.call_clock(router.worker)
    next_s, rest = ht.table("mediawatch")[CALL].split(":", 1)
    assert rest == f"30:{now - 5}:ft1"
    assert now + RT.media_check_interval_s <= int(next_s) <= now + RT.media_check_interval_s + 1
    assert ht.table("deadline")[CALL] == f"{now + 3600}:11:22:ft1:tt1"


def test_watchdog_never_ends_a_call_when_rtpengine_does_not_answer(timers: types.ModuleType, ht: HTables,
                                                                   router: Any, ksr: FakeKSR) -> None:
    def silent(call_id: str, from_tag: str = "") -> dict:
        raise NgError("rtpengine 127.0.0.1:2223 did not answer query: timed out")

    router.worker.ngclient.query = silent
    now = int(time.time())
    ht.table("deadline")[CALL] = f"{now + 3600}:11:22:ft1:tt1"
    ht.table("mediawatch")[CALL] = f"{now - 1}:30:{now - 600}:ft1"
    timers.call_clock(router.worker)
    assert int(ht.table("mediawatch")[CALL].split(":")[0]) >= now + RT.media_check_interval_s
    assert ht.table("deadline")[CALL] == f"{now + 3600}:11:22:ft1:tt1"
    assert any("cannot query" in text for text in _warnings(ksr))


def test_watchdog_waits_for_a_silent_rtpengine_once_a_tick_not_once_per_call(
        timers: types.ModuleType, ht: HTables, router: Any, ksr: FakeKSR) -> None:
    """A dead rtpengine with many calls must not hold the call clock 0.5 s per call (its pings find it dead)."""
    asked: list[str] = []

    def silent(call_id: str, from_tag: str = "") -> dict:
        asked.append(call_id)
        raise NgError("rtpengine 127.0.0.1:2223 did not answer query: timed out")

    router.worker.ngclient.query = silent
    now = int(time.time())
    for call_id in ("c1", "c2", "c3"):
        ht.table("deadline")[call_id] = f"{now + 3600}:11:22:ft1:tt1"
        ht.table("mediawatch")[call_id] = f"{now - 1}:30:{now - 600}:ft1"
    timers.call_clock(router.worker)
    assert len(asked) == 1
    assert all(int(ht.table("mediawatch")[c].split(":")[0]) >= now + RT.media_check_interval_s for c in ("c1", "c2", "c3"))


# -- the DTMF log ---------------------------------------------------------------------------------------


@pytest.fixture
def logging_router(kemi: types.ModuleType, store: FakeStore) -> Iterator[Any]:
    """An edge whose DTMF log listens on a free loopback port."""
    router = edge_over_fakes(kemi, store, replace(RT, dtmf_log_port=free_port()))
    yield router
    if router.worker.dtmf_sock is not None:
        router.worker.dtmf_sock.close()


def _event(port: int, call_id: str, source_tag: str, event: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(json.dumps({"callid": call_id, "source_tag": source_tag, "type": "DTMF", "event": event,
                                "duration": 200}).encode(), ("127.0.0.1", port))


def _read_until(timers: types.ModuleType, router: Any, kept: list, count: int) -> None:
    """Run the DTMF log until ``count`` digits were kept (10 s at most: a loaded machine may be slow to
    deliver the datagrams; the loop ends as soon as they are read)."""
    deadline = time.monotonic() + 10
    while len(kept) < count and time.monotonic() < deadline:
        timers.dtmf_log(router.worker)
        time.sleep(0.01)


def test_dtmf_log_records_digits_of_known_calls_only(timers: types.ModuleType, ht: HTables, logging_router: Any,
                                                     kept: list) -> None:
    ht.table("dtmfcall")[CALL] = "ft1,rfc4733,rfc4733"
    timers.dtmf_log(logging_router.worker)  # binds the socket
    port = logging_router.worker.settings.dtmf_log_port
    _event(port, "stranger", "x", 1)
    _event(port, CALL, "ft1", 5)
    _event(port, CALL, "tt1", 11)  # '#' from the callee
    _read_until(timers, logging_router, kept, 2)
    assert kept == [(CALL, {"dtmf": "caller:5:rfc4733"}), (CALL, {"dtmf": "callee:#:rfc4733"})]


def test_dtmf_log_skips_the_edges_own_plays_from_an_info_side(timers: types.ModuleType, ht: HTables,
                                                             logging_router: Any, ksr: FakeKSR, kept: list) -> None:
    """Digits rtpengine reports from an ``info`` side are the edge's own plays, recorded from the INFO;
    the other side's digits are recorded, and sent to the info side as INFO (here: no CSeq map, so not)."""
    ht.table("dtmfcall")[CALL] = "ft1,info,rfc4733"
    timers.dtmf_log(logging_router.worker)
    port = logging_router.worker.settings.dtmf_log_port
    _event(port, CALL, "ft1", 7)
    _event(port, CALL, "tt1", 3)
    _read_until(timers, logging_router, kept, 1)
    timers.dtmf_log(logging_router.worker)
    assert kept == [(CALL, {"dtmf": "callee:3:rfc4733"})]
    assert any("digit 3 not sent as INFO: the call is not known" in text for text in _warnings(ksr))


def test_dtmf_log_gives_a_bridged_legs_digits_to_the_bridge(timers: types.ModuleType, ht: HTables,
                                                            logging_router: Any, kept: list) -> None:
    """The leg's rtpengine call carries the carrier's media after a bridged transfer: the carrier's
    digit (the leg's caller tag) goes in the original call's record, as its side there."""
    from routing.call import bridge as bx
    leg = "xfer-" + CALL
    b = bx.Bridge(CALL, leg, "bot", "telnyx", "ct", "at", "+442071838751", True, phase="bridged", leg_tag="lt",
                  target_tag="tt", dtmf="rfc4733,rfc4733")
    ht.table("xfer")[CALL] = ht.table("xfer")[leg] = b.encode()
    ht.table("dtmfcall")[leg] = "lt,rfc4733,rfc4733"
    timers.dtmf_log(logging_router.worker)
    port = logging_router.worker.settings.dtmf_log_port
    _event(port, leg, "lt", 5)
    _event(port, leg, "tt", 9)
    _read_until(timers, logging_router, kept, 2)
    assert kept == [(CALL, {"dtmf": "caller:5:rfc4733"}), (leg, {"dtmf": "callee:9:rfc4733"})]


def test_first_audio_is_timed_from_the_answer_and_a_silent_agent_is_dead_air(ksr: Any, router: Any,
                                                                             store: Any) -> None:
    """The poll finds the agent's first packets on one call (its time to first audio observed and
    recorded), none yet on a second (kept), none for too long on a third (dead air)."""
    ht = HTables(ksr)
    now_ms = int(time.time() * 1000)
    table = ht.table("firstaudio")
    table["talking"] = f"{now_ms - 1500}:origination:telnyx:bot:tt1"
    table["waiting"] = f"{now_ms - 1000}:origination:telnyx:bot:tt2"
    table["silent"] = f"{now_ms - 6000}:origination:telnyx:bot:tt3"
    streams = lambda packets: {"medias": [{"type": "audio", "streams": [  # noqa: E731
        {"flags": ["RTP"], "stats": {"packets": packets}}, {"flags": ["RTCP"], "stats": {"packets": 3}}]}]}
    replies = {"talking": {"tags": {"tt1": streams(12)}}, "waiting": {"tags": {"tt2": streams(0)}},
               "silent": {"tags": {"tt3": streams(0)}}}
    router.worker.ngclient.query = lambda call_id, from_tag="": replies[call_id]  # type: ignore[method-assign]
    recorded: dict[str, dict[str, str]] = {}
    store.record_media = lambda call_id, fields, keep_s=0: recorded.setdefault(call_id, fields) or True  # type: ignore[attr-defined]
    router.ksr_first_audio(MSG, "rtimer")
    assert set(table) == {"waiting"}
    assert 1500 <= int(recorded["talking"]["media_first_audio_ms"]) < 1700
    assert recorded["silent"] == {"media_dead_air_s": "5"}
    observed = [a for name, a in ksr.calls if name == "xhttp_prom.histogram_observe_l3"]
    assert [(a[0], a[2:]) for a in observed] == [("byoc_edge_time_to_first_audio_seconds", ("origination", "telnyx", "bot"))]
    assert ("byoc_edge_dead_air_total", "origination", "telnyx", "bot") in counted(ksr)


# -- spend accrual (routing.tables.spend) -------------------------------------------------------


class Accrued(list):
    """Stands for SpendAccrual: the accrue() calls."""

    def accrue(self, call_id: str, total_micros: int, trunk: str, account: str, day: str) -> int:
        self.append((call_id, total_micros, trunk, account))
        return total_micros


@pytest.mark.parametrize(("capped", "expected"), [("trunk", [(CALL, 1_200_000, "b", "")]),
                                                  ("account", [(CALL, 1_200_000, "b", "acme")]),
                                                  ("none", [])])
def test_watchdog_accrues_the_spend_so_far_of_calls_under_a_cap_only(
        timers: types.ModuleType, ht: HTables, router: Any, store: FakeStore, capped: str, expected: list) -> None:
    from decimal import Decimal

    from routing.tables.model import Account, Trunk

    store.trunks["b"] = Trunk("b", daily_spend_cap=Decimal("5") if capped == "trunk" else None)
    store.accounts["acme"] = Account("acme", daily_spend_cap=Decimal("5") if capped == "account" else None)
    now = int(time.time())
    answered_ms = (now - 30) * 1000
    ht.table("cdr")[CALL] = json.dumps({"start": answered_ms - 1000, "dir": "termination", "trunk": "b",
                                         "rate": "1.20", "billing": "60/60", "answer": answered_ms,
                                         **({"acct": "acme"} if capped == "account" else {})})
    ht.table("deadline")[CALL] = f"{now + 3600}:11:22:ft1:tt1"
    ht.table("mediawatch")[CALL] = f"{now - 1}:30:{now - 5}:ft1"
    router.worker.spend = accrued = Accrued()
    timers.call_clock(router.worker)
    assert accrued == expected  # 30 s of a 60/60 call at 1.20/min: its first minute, whole
