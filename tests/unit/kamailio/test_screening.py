"""Screening and refusals the native request route asks the plugin for."""

from __future__ import annotations

from typing import Any

from routing.tables.store import StoreUnavailable
from tests.unit.kamailio.fakeksr import (assert_405_with_allow, counted, DROP_VAR, FakeKSR, FakeStore, MSG,
                                         request, STORE_FAILED_VAR)


# -- screening (the native request route; these are the decisions it asks the plugin for) ------
# The ban table, scanner User-Agents, pike, Max-Forwards, sanity and OPTIONS pings are native
# (templates/kamailio.routes.j2), proven on the running edge by tests/integration/test_defence.py.


def test_flood_from_a_stranger_is_banned_and_dropped_but_not_from_a_trunk(ksr: FakeKSR, router: Any) -> None:
    request(ksr, **{"$si": "198.18.0.9"})
    assert router.ksr_flood(MSG) == 1
    assert ksr.args_of("htable.sht_sets") == [("ipban", "198.18.0.9", "flood")]
    assert ksr.pv[DROP_VAR] == 1
    assert ksr.replies == [] and STORE_FAILED_VAR not in ksr.pv
    ksr.calls.clear()
    ksr.pv.clear()
    request(ksr)  # from the carrier's network: routed as usual
    router.ksr_flood(MSG)
    assert ksr.args_of("htable.sht_seti") == [("trust", "192.0.2.5", 1)] and DROP_VAR not in ksr.pv  # asked again in 1 s
    assert ksr.replies == []


def test_own_address_is_never_banned(ksr: FakeKSR, router: Any) -> None:
    ksr.returns["is_myself_srcip"] = True
    request(ksr, **{"$si": "127.0.0.1"})
    router.ksr_flood(MSG)
    assert ksr.args_of("htable.sht_seti") == []


def test_flood_check_during_a_store_outage_bans_nobody_and_the_invite_gets_503_without_waiting_again(
        ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = StoreUnavailable("Timeout reading from socket")
    request(ksr, **{"$si": "198.18.0.9"})
    router.ksr_flood(MSG)
    assert ksr.args_of("htable.sht_seti") == [] and DROP_VAR not in ksr.pv
    assert ksr.pv[STORE_FAILED_VAR] == 1 and ksr.replies == []
    # the native route then hands the INVITE over with $var(edge_sf) still set
    store.topology_error = AssertionError("redis must not be asked a second time")
    router.ksr_initial_invite(MSG)
    assert ksr.replies == [("tm", 503, "Routing Store Unavailable")]
    assert ksr.args_of("hdr.append_to_reply") == [("Retry-After: 7\r\n",)]
    assert store.acquired == [] and store.released == []


def test_flood_check_error_is_logged_and_answers_nothing(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = RuntimeError("boom")
    request(ksr, **{"$si": "198.18.0.9"})
    assert router.ksr_flood(MSG) == 1
    assert ksr.replies == []
    assert any(level == "err" and "exception in flood check" in text for level, text in ksr.logs)


# -- refusals the native route decides ----------------------------------------------------------


def test_max_forwards_exhausted_gives_483_logged_and_counted(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = AssertionError("routing must not run")
    request(ksr)
    router.ksr_refuse(MSG, "too_many_hops")
    assert ksr.replies == [("sl", 483, "Too Many Hops")]
    assert any(text.startswith("edge: reject 483 max_forwards request ") for _, text in ksr.logs)
    assert counted(ksr) == [("byoc_edge_rejections_total", "max_forwards")]


def test_in_dialog_request_without_a_dialog_gives_481(ksr: FakeKSR, router: Any) -> None:
    request(ksr, method="BYE")
    router.ksr_refuse(MSG, "no_dialog")
    assert ksr.replies == [("sl", 481, "Call/Transaction Does Not Exist")]


def test_register_without_a_digest_trunk_gives_405_with_allow(ksr: FakeKSR, router: Any) -> None:
    request(ksr, method="REGISTER")
    router.ksr_register(MSG)
    assert_405_with_allow(ksr)


def test_other_methods_give_405_with_allow(ksr: FakeKSR, router: Any) -> None:
    request(ksr, method="MESSAGE")
    router.ksr_refuse(MSG, "not_allowed")
    assert_405_with_allow(ksr)


def test_register_during_a_store_outage_gives_503_with_retry_after(ksr: FakeKSR, router: Any,
                                                                    store: FakeStore) -> None:
    store.topology_error = StoreUnavailable("Timeout reading from socket")
    request(ksr, method="REGISTER")
    router.ksr_register(MSG)
    assert ksr.replies == [("sl", 503, "Routing Store Unavailable")]
    assert ksr.args_of("hdr.append_to_reply") == [("Retry-After: 7\r\n",)]
