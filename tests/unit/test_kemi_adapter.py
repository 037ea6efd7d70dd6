"""routing.kemi.Router driven through a fake ``KSR`` module: replies, relays, failover, slot release."""

from __future__ import annotations

import dataclasses
import importlib
import json
import inspect
import sys
import types
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterator, Sequence

import pytest

import routing
from routing import keys
from dataclasses import replace

from routing.model import Agent, DataError, Did, Direction, Gateway, MediaPolicy, RouteEntry, SrtpMode, Trunk
from routing.numbers import NumberFormat
from routing.plan import CallPlan, Target
from routing.runtime import RuntimeSettings
from tests.fakes import FakeStore as SharedFakeStore
from routing.store import Admission, Lease, StoreUnavailable, Topology

RT = RuntimeSettings(node="t1", lease_ttl_s=600, retry_after_s=7)
PLAN_AVP = "$avp(edge_plan)"
EARLY_AVP = "$avp(edge_early)"

#: KSR functions the router may call, with the value each returns unless a test changes it.
DEFAULT_RETURNS: dict[str, Any] = {
    "force_rport": True,  # SR_KEMIP_BOOL
    "is_myself_srcip": False,  # SR_KEMIP_BOOL: app_python3 hands Python a bool
    "htable.sht_is_null": 1,  # source not in the ban table
    "htable.sht_seti": 1,
    "htable.sht_sets": 1,
    "hdr.remove": 1,
    "htable.sht_rm": 1,
    "htable.sht_gete": "",
    "pike.pike_check_req": 1,
    "sl.send_reply": 1,
    "sl.sl_reply_error": 1,
    "tm.t_reply": 1,
    "tm.t_relay": 1,
    "tm.t_on_failure": 1,
    "tm.t_on_reply": 1,
    "tm.t_check_trans": -1,
    "tm.t_newtran": 1,
    "tm.t_is_canceled": -1,
    "tm.t_branch_timeout": -1,
    "tmx.t_precheck_trans": -1,
    "tmx.t_cancel_branches": 1,
    "set_drop": None,
    "hdr.append": 1,
    "hdr.append_to_reply": 1,
    "rr.record_route": 1,
    "rr.loose_route": 1,
    "rtpengine.rtpengine_manage": 1,
    "rtpengine.rtpengine_offer": 1,
    "rtpengine.rtpengine_answer": 1,
    "tm.t_on_branch": 1,
    "rtpengine.rtpengine_delete0": 1,
    "rtpengine.rtpengine_delete": 1,
    "dialog.dlg_manage": 1,
    "dialog.is_known_dlg": 1,
    "dialog.dlg_set_timeout": 1,
    "dialog.dlg_set_property": 1,
    "dialog.dlg_reset_property": 1,
    "maxfwd.process_maxfwd": 1,
    "sanity.sanity_check": 1,
    "siputils.has_totag": -1,
    "textops.remove_hf_re": 1,
    "textops.has_body_type": 1,  # the INVITE carries SDP
    **{f"xhttp_prom.counter_inc_l{n}": 1 for n in range(4)},
    **{f"xhttp_prom.histogram_observe_l{n}": 1 for n in range(4)},
}


class FakeKSR:
    """A stand-in for the ``KSR`` module Kamailio injects into app_python3.

    ``module`` is what gets installed as ``sys.modules["KSR"]``.  Every call is
    appended to ``calls`` as ``(name, args)``; ``returns`` sets what each
    function answers; pseudo-variables live in the ``pv`` dict; ``relayed``
    holds the ``$ru`` of every ``t_relay``; ``logs`` holds ``(level, text)``.
    A function not listed in :data:`DEFAULT_RETURNS` does not exist, so an
    unexpected call fails the test.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.returns = dict(DEFAULT_RETURNS)
        self.pv: dict[str, Any] = {}
        self.relayed: list[str] = []
        #: the Router whose armed branch route t_relay runs (as tm does), when set
        self.router: Any = None
        self.dropped = False
        self.logs: list[tuple[str, str]] = []
        self.module = types.ModuleType("KSR")
        groups: dict[str, types.SimpleNamespace] = {}
        for name in DEFAULT_RETURNS:
            group, dot, func = name.partition(".")
            if not dot:  # a core function such as KSR.force_rport
                setattr(self.module, name, self._function(name))
                continue
            setattr(groups.setdefault(group, types.SimpleNamespace()), func, self._function(name))
        groups["pv"] = types.SimpleNamespace(get=self._pv_get, sets=self._pv_set("sets"), seti=self._pv_set("seti"))
        for group, namespace in groups.items():
            setattr(self.module, group, namespace)
        for level in ("info", "err", "warn", "dbg", "notice", "crit"):
            setattr(self.module, level, self._log(level))

    def _function(self, name: str) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self.calls.append((name, args))
            if name == "set_drop":
                self.dropped = True
            if name == "tm.t_relay":
                self.relayed.append(self.pv.get("$ru"))
                armed = self.args_of("tm.t_on_branch")
                if armed and self.router is not None and self.returns[name] > 0:
                    self.dropped = False
                    getattr(self.router, armed[-1][0])(None)
                    if self.dropped:  # tm sends no branch: t_relay fails
                        return -1
            return self.returns[name]

        return call

    def _pv_get(self, name: str) -> Any:
        return self.pv.get(name)

    def _pv_set(self, kind: str) -> Callable[[str, Any], None]:
        def set_(name: str, value: Any) -> None:
            self.calls.append((f"pv.{kind}", (name, value)))
            self.pv[name] = value

        return set_

    def _log(self, level: str) -> Callable[[str], None]:
        def log(text: str) -> None:
            self.logs.append((level, text))

        return log

    def args_of(self, name: str) -> list[tuple[Any, ...]]:
        """Arguments of every call of ``name``, in order."""
        return [args for called, args in self.calls if called == name]

    def names(self) -> list[str]:
        """Names of every call, in order."""
        return [called for called, _ in self.calls]

    @property
    def replies(self) -> list[tuple[str, int, str]]:
        """Every final answer the router sent: ``(sl|tm, code, reason)``."""
        return [
            ("sl" if called == "sl.send_reply" else "tm", args[0], args[1])
            for called, args in self.calls
            if called in ("sl.send_reply", "tm.t_reply")
        ]


@dataclass
class FakeStore(SharedFakeStore):
    """The shared in-memory store, plus failures: ``topology_error`` makes topology()
    raise; ``acquire_error_at`` (1-based) makes that acquire() call raise
    StoreUnavailable, as a redis timeout would."""

    topology_error: BaseException | None = None
    acquire_error_at: int | None = None

    def topology(self) -> Topology:
        if self.topology_error is not None:
            raise self.topology_error
        return super().topology()

    def acquire(
        self,
        call_id: str,
        leases: Sequence[Lease],
        ttl_s: int,
        release: Sequence[str] = (),
        facts: dict[str, str] | None = None,
    ) -> Admission:
        if self.acquire_error_at == len(self.acquired) + 1:
            self.acquired.append({"call_id": call_id, "leases": list(leases), "release": list(release)})
            raise StoreUnavailable("Timeout reading from socket")
        return super().acquire(call_id, leases, ttl_s, release, facts)


def provisioned_store() -> FakeStore:
    """One carrier trunk (192.0.2.0/24), one agent with two URIs, one DID."""
    telnyx = Trunk(
        name="telnyx",
        direction=Direction.BOTH,
        cidrs=("192.0.2.0/24",),
        gateways=(Gateway("192.0.2.10"),),
        number_format=NumberFormat(country_code="1", national_length=10, international_prefix="011"),
    )
    bot = Agent(name="bot", uris=("sip:agent.example.com:5080", "sip:bot@10.9.0.2"), cidrs=("10.9.0.0/24",))
    return FakeStore(
        trunks={"telnyx": telnyx},
        agents={"bot": bot},
        dids={"+14155550100": Did("+14155550100", "telnyx", "bot")},
    )


@pytest.fixture
def ksr() -> FakeKSR:
    return FakeKSR()


@pytest.fixture
def kemi(ksr: FakeKSR, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """routing.kemi imported against the fake KSR, and forgotten afterwards."""
    monkeypatch.setitem(sys.modules, "KSR", ksr.module)
    sys.modules.pop("routing.kemi", None)
    module = importlib.import_module("routing.kemi")
    assert module.KSR is ksr.module
    try:
        yield module
    finally:
        sys.modules.pop("routing.kemi", None)
        if hasattr(routing, "kemi"):
            delattr(routing, "kemi")


@pytest.fixture
def store() -> FakeStore:
    return provisioned_store()


class RecordingWriter:
    """Stands in for the call-record writer: keeps every record written."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.down = 0

    def write(self, record: dict[str, Any]) -> str:
        self.records.append(record)
        return "stored"

    def mark_down(self) -> None:
        self.down += 1

    def replay(self) -> tuple[int, int]:
        return 0, 0


@pytest.fixture
def router(kemi: types.ModuleType, store: FakeStore, ksr: FakeKSR) -> Any:
    router = kemi.Router(RT)
    router.store = store
    router._writer = RecordingWriter()
    ksr.router = router
    return router


#: an SDP offer with PCMU, PCMA and telephone-event over plain RTP
SDP_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def request(ksr: FakeKSR, method: str = "INVITE", **pvs: Any) -> None:
    """Pseudo-variables of an initial request from the carrier to the DID."""
    ksr.pv.update(
        {
            "$rm": method,
            "$ci": "call-1",
            "$si": "192.0.2.5",
            "$sp": 5060,
            "$pr": "udp",
            "$rU": "+14155550100",
            "$tU": "+14155550100",
            "$fU": "2125550123",
            "$fn": "",
            "$rb": SDP_OFFER,
        }
    )
    ksr.pv.update(pvs)


MSG = object()


# -- errors never escape ---------------------------------------------------------------


def test_python_exception_gives_exactly_one_500_and_logs_the_traceback(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = RuntimeError("boom")
    request(ksr)
    assert router.ksr_request_route(MSG) == 1
    assert ksr.replies == [("sl", 500, "Internal Server Error")]
    errors = [text for level, text in ksr.logs if level == "err"]
    assert len(errors) == 1
    assert "Traceback" in errors[0] and "RuntimeError: boom" in errors[0]
    assert ksr.relayed == []


def test_store_unavailable_gives_503_with_retry_after(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = StoreUnavailable("Timeout reading from socket")
    request(ksr)
    router.ksr_request_route(MSG)
    # stateful: INVITE retransmissions queued behind the redis timeout meet the transaction
    assert ksr.replies == [("tm", 503, "Routing Store Unavailable")]
    assert ksr.args_of("hdr.append_to_reply") == [("Retry-After: 7\r\n",)]
    names = ksr.names()
    assert names.index("tm.t_newtran") < names.index("hdr.append_to_reply") < names.index("tm.t_reply")
    assert any(level == "err" and "unavailable" in text for level, text in ksr.logs)


def test_malformed_routing_data_gives_500(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = DataError("edge:trunk:x direction: must be inbound, outbound or both")
    request(ksr)
    router.ksr_request_route(MSG)
    assert ksr.replies == [("sl", 500, "Internal Server Error")]
    assert ksr.args_of("hdr.append_to_reply") == []
    assert any(level == "err" and "edge:trunk:x" in text for level, text in ksr.logs)


def test_store_is_opened_lazily_when_child_init_did_not_run(kemi: types.ModuleType) -> None:
    router = kemi.Router(RT)
    assert router.store is None
    assert router._store() is router.store  # connect() does not talk to redis yet
    assert router.store.node == "t1"


# -- screening -------------------------------------------------------------------------------


def test_banned_source_is_dropped_silently(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = AssertionError("routing must not run")
    ksr.returns["htable.sht_is_null"] = -1
    request(ksr)
    router.ksr_request_route(MSG)
    assert ksr.replies == [] and ksr.relayed == []


def test_own_address_is_never_banned(kemi: types.ModuleType, ksr: FakeKSR, store: FakeStore) -> None:
    router = kemi.Router(RuntimeSettings(scanner_user_agents=("sipsak",)))
    router.store = store
    ksr.returns["is_myself_srcip"] = True
    request(ksr, **{"$ua": "sipsak 0.9.8", "$si": "127.0.0.1"})
    router.ksr_request_route(MSG)
    assert ksr.args_of("htable.sht_seti") == []


def test_scanner_user_agent_is_banned(kemi: types.ModuleType, ksr: FakeKSR, store: FakeStore) -> None:
    router = kemi.Router(RuntimeSettings(scanner_user_agents=("friendly-scanner",)))
    router.store = store
    request(ksr, **{"$ua": "Friendly-Scanner 2.0", "$si": "198.18.0.9"})
    router.ksr_request_route(MSG)
    assert ksr.replies == []
    assert ksr.args_of("htable.sht_seti") == [("ipban", "198.18.0.9", 1)]


def test_flood_from_a_stranger_is_banned_but_not_from_a_trunk(ksr: FakeKSR, router: Any) -> None:
    ksr.returns["pike.pike_check_req"] = -1
    request(ksr, **{"$si": "198.18.0.9"})
    router.ksr_request_route(MSG)
    assert ksr.args_of("htable.sht_seti") == [("ipban", "198.18.0.9", 1)]
    assert ksr.replies == []
    ksr.calls.clear()
    request(ksr)  # from the carrier's network
    router.ksr_request_route(MSG)
    assert ksr.args_of("htable.sht_seti") == []
    assert ksr.relayed == ["sip:+14155550100@agent.example.com:5080"]


# -- request route ------------------------------------------------------------------------


def test_max_forwards_exhausted_gives_483(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.topology_error = AssertionError("routing must not run")
    ksr.returns["maxfwd.process_maxfwd"] = -1
    request(ksr)
    router.ksr_request_route(MSG)
    assert ksr.replies == [("sl", 483, "Too Many Hops")]
    assert ksr.args_of("maxfwd.process_maxfwd") == [(70,)]


def test_options_without_user_is_answered_200(ksr: FakeKSR, router: Any) -> None:
    request(ksr, method="OPTIONS", **{"$rU": ""})
    router.ksr_request_route(MSG)
    assert ksr.replies == [("sl", 200, "OK")]
    assert ksr.relayed == []


def test_register_gives_405_with_allow(ksr: FakeKSR, router: Any) -> None:
    request(ksr, method="REGISTER")
    router.ksr_request_route(MSG)
    assert ksr.replies == [("sl", 405, "Method Not Allowed")]
    allow = [args[0] for args in ksr.args_of("hdr.append_to_reply") if args[0].startswith("Allow:")]
    assert len(allow) == 1
    assert allow[0].endswith("\r\n")
    methods = {m.strip() for m in allow[0][len("Allow:") :].split(",")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"} <= methods
    assert "REGISTER" not in methods


def test_reject_decision_is_sent_statelessly(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    request(ksr, **{"$si": "198.18.0.1"})
    router.ksr_request_route(MSG)
    assert ksr.replies == [("sl", 403, "Source Not Allowed")]
    # logged with its reason code and recorded for edgectl explain
    assert any(text.startswith("edge: reject 403 acl_source request ") for _, text in ksr.logs)
    record = json.loads(store.traces[ksr.pv["$ci"]])
    assert (record["code"], record["tag"], record["stage"], record["where"]) == (403, "acl_source", "acl", "request")


def test_no_refusal_record_when_trace_ttl_is_zero(kemi: types.ModuleType, ksr: FakeKSR, store: FakeStore) -> None:
    router = kemi.Router(dataclasses.replace(RT, trace_ttl_s=0))
    router.store = store
    router._writer = RecordingWriter()
    request(ksr, **{"$si": "198.18.0.1"})
    router.ksr_request_route(MSG)
    assert ksr.replies == [("sl", 403, "Source Not Allowed")]
    assert store.traces == {}


def test_refusal_is_answered_even_when_it_cannot_be_recorded(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    def broken(*args: object) -> None:
        raise StoreUnavailable("down")

    store.keep_trace = broken  # type: ignore[method-assign]
    request(ksr, **{"$si": "198.18.0.1"})
    router.ksr_request_route(MSG)
    assert ksr.replies == [("sl", 403, "Source Not Allowed")]
    assert any("cannot record the refusal" in text for _, text in ksr.logs)


def test_relay_decision(ksr: FakeKSR, router: Any, kemi: types.ModuleType, store: FakeStore) -> None:
    request(ksr)
    router.ksr_request_route(MSG)
    assert ksr.replies == []
    assert ksr.args_of("hdr.remove") == []  # no header to strip in this request
    assert ksr.pv["$ru"] == "sip:+14155550100@agent.example.com:5080"
    assert ksr.relayed == ["sip:+14155550100@agent.example.com:5080"]
    assert ksr.args_of("hdr.append") == [
        ("X-Edge-Trunk: telnyx\r\n",),
        ("X-Edge-DID: +14155550100\r\n",),
        ("X-Edge-Caller: +12125550123\r\n",),
    ]
    armed = ksr.args_of("tm.t_on_failure") + ksr.args_of("tm.t_on_reply")
    assert armed == [("ksr_failure_manage",), ("ksr_onreply_manage",)]
    for (name,) in armed:
        assert hasattr(kemi.Router, name) and callable(getattr(kemi.Router, name)), name
    names = ksr.names()
    for step in ("hdr.append", "rr.record_route", "rtpengine.rtpengine_offer",
                 "dialog.dlg_manage", "tm.t_newtran", "tm.t_on_failure", "tm.t_on_branch", "tm.t_relay"):
        assert step in names, step
    assert hasattr(kemi.Router, "ksr_branch_manage")
    assert ksr.args_of("tm.t_on_branch")[0] == ("ksr_branch_manage",)
    (flags,) = ksr.args_of("rtpengine.rtpengine_offer")[0]  # made in the branch route, node default policies
    assert flags.split() == ["replace-origin", "replace-session-connection", "ICE=remove", "strict-source",
                             "endpoint-learning=heuristic", "RTP/AVP",
                             "codec-mask-all", "codec-offer-PCMU", "codec-offer-PCMA", "codec-offer-telephone-event"]
    assert names.index("dialog.dlg_manage") < names.index("tm.t_relay")
    assert names.index("tm.t_on_failure") < names.index("tm.t_relay")
    plan = CallPlan.loads(ksr.pv[PLAN_AVP])
    assert plan.call_id == "call-1" and plan.index == 0 and len(plan.targets) == 2
    assert store.released == []


def test_termination_relay(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.route_table["+1"] = [RouteEntry("+1", "telnyx", Decimal("0.01"))]
    request(ksr, **{"$si": "10.9.0.7", "$rU": "14155550100"})
    router.ksr_request_route(MSG)
    assert ksr.replies == []
    assert ksr.relayed == ["sip:+14155550100@192.0.2.10:5060"]
    assert ksr.args_of("hdr.append") == []
    assert [a["leases"][0].key for a in store.acquired] == [keys.agent_lease("bot"), keys.trunk_lease("telnyx")]


def test_store_failure_after_partial_admission_releases_the_slots(
    ksr: FakeKSR, router: Any, store: FakeStore
) -> None:
    """The agent slot was taken, then redis timed out on the trunk slot: the 503 must not
    leave the agent slot held for lease_ttl_s (no dialog exists yet to release it)."""
    store.route_table["+1"] = [RouteEntry("+1", "telnyx", Decimal("0.01"))]
    store.acquire_error_at = 2
    request(ksr, **{"$si": "10.9.0.7", "$rU": "+14155550100"})
    router.ksr_request_route(MSG)
    assert ksr.replies == [("tm", 503, "Routing Store Unavailable")]
    assert len(store.acquired) == 2  # agent admitted, then the trunk acquire failed
    assert store.released == ["call-1"]


def test_relay_send_error_moves_to_the_next_target(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    request(ksr)
    ksr.returns["tm.t_relay"] = -1
    router.ksr_request_route(MSG)
    assert ksr.relayed == ["sip:+14155550100@agent.example.com:5080", "sip:bot@10.9.0.2"]
    assert ksr.replies == [("tm", 503, "Agent Unreachable")]
    assert store.released == ["call-1"]


def test_rtpengine_failure_releases_the_slots(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    request(ksr)
    ksr.returns["rtpengine.rtpengine_offer"] = -1
    router.ksr_request_route(MSG)
    assert ksr.replies == [("tm", 503, "Media Relay Unavailable")]
    assert store.released == ["call-1"]
    assert ksr.relayed == ["sip:+14155550100@agent.example.com:5080"]  # the branch was dropped, no failover


def test_srtp_required_but_plain_offer_gets_488(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.trunks["telnyx"] = replace(store.trunks["telnyx"], media=MediaPolicy(srtp=SrtpMode.SDES))
    request(ksr)
    router.ksr_request_route(MSG)
    assert ksr.replies == [("sl", 488, "SRTP Required")]
    assert store.released == ["call-1"]
    assert ksr.relayed == []


def test_agent_policy_shapes_the_offer(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.agents["bot"] = replace(store.agents["bot"], media=MediaPolicy(codecs=("opus",), srtp=SrtpMode.DTLS))
    request(ksr)
    router.ksr_request_route(MSG)
    (flags,) = ksr.args_of("rtpengine.rtpengine_offer")[0]
    assert "UDP/TLS/RTP/SAVP SDES-off" in flags and "codec-transcode-opus" in flags


def test_sip_keepalive_of_the_callee_sets_ka_dst_only(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.agents["bot"] = replace(store.agents["bot"], media=MediaPolicy(sip_keepalive=True))
    request(ksr)
    router.ksr_request_route(MSG)
    assert ("ka-dst",) in ksr.args_of("dialog.dlg_set_property")
    assert ("ka-src",) in ksr.args_of("dialog.dlg_reset_property")
    assert ("ka-src",) not in ksr.args_of("dialog.dlg_set_property")


# -- dialog events ---------------------------------------------------------------------------


def test_dialog_event_signature_takes_msg_and_event(kemi: types.ModuleType) -> None:
    params = list(inspect.signature(kemi.Router.ksr_dialog_event).parameters)
    assert params == ["self", "msg", "event"]


def test_dialog_end_releases_the_dialog_call_id(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    ksr.pv.update({"$dlg(callid)": "dlg-call", "$ci": "other-call", "$rm": "BYE", "$dlg(from_tag)": "ft1"})
    assert router.ksr_dialog_event(MSG, "dialog:end") == 1
    assert store.released == ["dlg-call"]
    assert ksr.args_of("rtpengine.rtpengine_delete") == []  # the BYE itself deleted the media session


def test_dialog_timeout_also_deletes_the_media_session(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    ksr.pv.update({"$dlg(callid)": "dlg-call", "$rm": "OPTIONS", "$dlg(from_tag)": "ft1"})
    router.ksr_dialog_event(MSG, "dialog:end")
    assert store.released == ["dlg-call"]
    assert ksr.args_of("rtpengine.rtpengine_delete") == [("call-id=dlg-call from-tag=ft1",)]


def test_dialog_failed_releases_and_other_events_do_not(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    ksr.pv.update({"$dlg(callid)": "dlg-call", "$rm": "INVITE"})
    router.ksr_dialog_event(MSG, "dialog:start")
    assert store.released == []
    router.ksr_dialog_event(MSG, "dialog:failed")
    assert store.released == ["dlg-call"]


def test_dialog_event_errors_are_logged_not_raised(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    def broken(call_id: str) -> int:
        raise StoreUnavailable("down")

    store.finish = broken  # type: ignore[method-assign]
    ksr.pv.update({"$dlg(callid)": "dlg-call", "$rm": "BYE"})
    assert router.ksr_dialog_event(MSG, "dialog:end") == 1
    assert any(level == "err" and "cannot release" in text for level, text in ksr.logs)
    assert router._writer.down == 1  # call records go straight to the spool for a while


# -- failure route -----------------------------------------------------------------------------


def origination_plan() -> CallPlan:
    return CallPlan(
        call_id="call-1",
        direction="origination",
        targets=[Target("sip:+1@agent-a", "bot sip:agent-a"), Target("sip:+1@agent-b", "bot sip:agent-b")],
        agent="bot",
        trunk="telnyx",
        retry_after_s=RT.retry_after_s,
    )


LEASE_A = Lease(keys.trunk_lease("a"), 2, "trunk a")
LEASE_B = Lease(keys.trunk_lease("b"), 2, "trunk b")


def termination_plan(*trunks: tuple[str, Lease]) -> CallPlan:
    targets = [Target(f"sip:+14155550100@gw-{name}", f"{name} gw", name, lease) for name, lease in trunks]
    return CallPlan(
        call_id="call-1", direction="termination", targets=targets, held=targets[0].lease.key,
        retry_after_s=RT.retry_after_s,
    )


def failed_branch(ksr: FakeKSR, plan: CallPlan, code: int | None, reason: str = "", timed_out: bool = False) -> None:
    """The state tm leaves for the failure route after the current hop failed."""
    ksr.pv.update({"$ci": plan.call_id, PLAN_AVP: plan.dumps(), "$ru": plan.current.uri})
    if code is not None:
        ksr.pv.update({"$T_reply_code": code, "$T_reply_reason": reason})
    ksr.returns["tm.t_branch_timeout"] = 1 if timed_out else -1


def test_failure_route_exception_answers_500_logged_with_its_tag(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    failed_branch(ksr, origination_plan(), 503, "Service Unavailable")
    ksr.pv[PLAN_AVP] = "{not a plan"
    assert router.ksr_failure_manage(MSG) == 1
    assert ksr.replies == [("tm", 500, "Internal Server Error")]
    assert any(text.startswith("edge: reject 500 internal_error failure ") for _, text in ksr.logs)


def test_503_fails_over_to_the_second_target(ksr: FakeKSR, router: Any) -> None:
    failed_branch(ksr, origination_plan(), 503, "Service Unavailable")
    assert router.ksr_failure_manage(MSG) == 1
    assert ksr.relayed == ["sip:+1@agent-b"]
    assert ksr.replies == []
    assert ksr.args_of("tm.t_on_failure") == [("ksr_failure_manage",)]  # re-armed for the new branch
    plan = CallPlan.loads(ksr.pv[PLAN_AVP])
    assert plan.index == 1
    assert plan.tried == ["bot sip:agent-a=503"]
    assert plan.best == (503, "Service Unavailable")


def test_termination_failover_swaps_trunk_slots(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    failed_branch(ksr, termination_plan(("a", LEASE_A), ("b", LEASE_B)), 500, "Server Internal Error")
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == ["sip:+14155550100@gw-b"]
    assert [(a["call_id"], a["leases"], a["release"]) for a in store.acquired] == [("call-1", [LEASE_B], [LEASE_A.key])]
    assert CallPlan.loads(ksr.pv[PLAN_AVP]).held == LEASE_B.key


@pytest.mark.parametrize(("code", "reason"), [(486, "Busy Here"), (404, "Not Found"), (603, "Decline")])
def test_final_4xx_6xx_does_not_fail_over(ksr: FakeKSR, router: Any, store: FakeStore, code: int, reason: str) -> None:
    failed_branch(ksr, origination_plan(), code, reason)
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == []
    assert ksr.replies == []  # tm relays the hop's own final response
    assert "rtpengine.rtpengine_delete0" in ksr.names()


def test_no_failover_after_early_media(ksr: FakeKSR, router: Any) -> None:
    failed_branch(ksr, origination_plan(), 503, "Service Unavailable")
    ksr.pv[EARLY_AVP] = 1
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == []
    assert ksr.replies == []


def test_nothing_answered_and_no_target_left(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    plan = termination_plan(("a", LEASE_A))
    failed_branch(ksr, plan, 408, "Request Timeout", timed_out=True)
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == []
    assert ksr.replies == [("tm", 503, "All Carriers Failed")]
    assert store.released == ["call-1"]
    assert any("tried=a gw=timeout" in text for _, text in ksr.logs)
    record = json.loads(store.traces[ksr.pv["$ci"]])
    assert (record["tag"], record["stage"], record["where"], record["tried"]) == (
        "carriers_failed", "failover", "failover", ["a gw=timeout"])


def test_no_reply_code_at_all_counts_as_timeout(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    failed_branch(ksr, origination_plan(), None, timed_out=True)
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == ["sip:+1@agent-b"]


def test_last_target_503_gives_500(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    plan = origination_plan()
    plan.index = 1
    failed_branch(ksr, plan, 503, "Service Unavailable")
    router.ksr_failure_manage(MSG)
    assert ksr.replies == [("tm", 500, "Next Hop Unavailable")]
    assert store.released == ["call-1"]


def test_last_origination_target_unanswered_gives_agent_unreachable(ksr: FakeKSR, router: Any) -> None:
    plan = origination_plan()
    plan.index = 1
    failed_branch(ksr, plan, 408, "Request Timeout", timed_out=True)
    router.ksr_failure_manage(MSG)
    assert ksr.replies == [("tm", 503, "Agent Unreachable")]


def test_failover_onto_a_full_trunk_names_the_limit(ksr: FakeKSR, router: Any, store: FakeStore) -> None:
    store.full_keys = {LEASE_B.key}
    failed_branch(ksr, termination_plan(("a", LEASE_A), ("b", LEASE_B)), 408, "Request Timeout", timed_out=True)
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == []
    assert ksr.replies == [("tm", 503, "Trunk Limit Reached: b")]
    assert ("Retry-After: 7\r\n",) in ksr.args_of("hdr.append_to_reply")
    assert store.released == ["call-1"]


def test_canceled_transaction_does_not_fail_over(ksr: FakeKSR, router: Any) -> None:
    failed_branch(ksr, origination_plan(), 487, "Request Terminated")
    ksr.returns["tm.t_is_canceled"] = 1
    router.ksr_failure_manage(MSG)
    assert ksr.relayed == [] and ksr.replies == []


def test_relay_strips_spoofed_edge_headers_and_unlisted_x_headers(ksr: FakeKSR, router: Any) -> None:
    message = (
        "INVITE sip:+14155550100@edge SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.5\r\n"
        "X-Edge-Trunk: spoofed\r\nx-tenant: 7\r\nP-Asserted-Identity: <sip:+1@x>\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    request(ksr, **{"$mb": message})
    router.ksr_request_route(MSG)
    # the carrier trunk allows no X- header but is trusted for identity
    assert ksr.args_of("hdr.remove") == [("X-Edge-Trunk",), ("x-tenant",)]


# -- call records ---------------------------------------------------------------------------------


@pytest.fixture
def cdr_table(ksr: FakeKSR) -> dict[str, str]:
    """The htable ``cdr`` as a dict (sht_sets / sht_gete / sht_rm on it)."""
    table: dict[str, str] = {}
    ksr.module.htable.sht_sets = lambda name, key, value: table.__setitem__(key, value) if name == "cdr" else 1
    ksr.module.htable.sht_gete = lambda name, key: table.get(key, "") if name == "cdr" else ""
    ksr.module.htable.sht_rm = lambda name, key: table.pop(key, None) if name == "cdr" else None
    return table


def test_refused_invite_gets_a_rejected_record(ksr: FakeKSR, router: Any) -> None:
    request(ksr, **{"$si": "198.18.0.1", "$cs": "7"})
    router.ksr_request_route(MSG)
    (record,) = router._writer.records
    assert (record["id"], record["status"], record["sip_code"], record["reject_tag"]) == (
        "t1:call-1:7", "rejected", 403, "acl_source")
    assert record["number"] == "+14155550100" and record["gateways"] == []


def test_non_invite_refusals_get_no_record(ksr: FakeKSR, router: Any) -> None:
    request(ksr, method="MESSAGE")
    router.ksr_request_route(MSG)
    assert ksr.replies and router._writer.records == []


def test_failed_attempt_record_from_the_failure_route(ksr: FakeKSR, router: Any, cdr_table: dict[str, str]) -> None:
    plan = origination_plan()
    cdr_table["call-1"] = json.dumps({"cseq": "1", "start": 1000, "cc": ["PCMU/8000"]})
    failed_branch(ksr, plan, 486, "Busy Here")
    router.ksr_failure_manage(MSG)
    (record,) = router._writer.records
    assert (record["status"], record["sip_code"], record["trunk"], record["agent"]) == ("failed", 486, "telnyx", "bot")
    assert record["gateways"] == [{"gateway": "bot sip:agent-a", "result": "486"}]
    assert record["codecs_caller"] == ["PCMU/8000"] and "call-1" not in cdr_table
    router.ksr_dialog_event(MSG, "dialog:failed")  # the dialog's own end writes nothing more
    assert len(router._writer.records) == 1


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
    (record,) = router._writer.records
    assert (record["status"], record["trunk"], record["billable_s"], record["cost"]) == ("answered", "a", 60, "0.020000")
    assert record["gateways"] == [{"gateway": "a gw", "result": "200"}]
    assert record["hangup"] == "callee" and record["media"] == {"mos": "4.2"}
def test_answer_extends_the_leases_and_watches_for_the_ack_which_starts_the_clock(
        ksr: FakeKSR, router: Any, store: FakeStore, cdr_table: dict[str, str]) -> None:
    """The 2xx extends the admission's short lease to the answered call's (lease_ttl_s) and arms a
    NO_ACK deadline 32 s (64*T1) away in the call clock's table; the ACK replaces it with the call's
    own deadline.  Without an ACK the clock releases the slots (tests/integration/test_overload.py)."""
    deadline: dict[str, str] = {}
    cdr_sets, cdr_gete = ksr.module.htable.sht_sets, ksr.module.htable.sht_gete
    ksr.module.htable.sht_sets = lambda name, key, value: (
        deadline.__setitem__(key, value) if name == "deadline" else cdr_sets(name, key, value))
    ksr.module.htable.sht_gete = lambda name, key: deadline.get(key, "") if name == "deadline" else cdr_gete(name, key)
    ksr.module.htable.sht_is_null = lambda name, key: -1 if name == "deadline" and key in deadline else 1
    cdr_table["call-1"] = json.dumps({"cseq": "1", "start": 1000})
    ksr.pv.update({"$ci": "call-1", "$rs": 200, "$rm": "INVITE", PLAN_AVP: origination_plan().dumps(), "$ft": "ft1"})
    ksr.returns["textops.has_body_type"] = -1
    now = __import__("time").time()
    router.ksr_onreply_manage(MSG)
    assert store.extended == [("call-1", RT.lease_ttl_s)]
    due, kind, _, tag = deadline["call-1"].split(":")
    assert (kind, tag) == ("noack", "ft1") and now + 31 <= int(due) <= now + 33
    router.ksr_onreply_manage(MSG)  # a retransmitted 2xx changes nothing
    assert store.extended == [("call-1", RT.lease_ttl_s)]
    ksr.pv.update({"$rm": "ACK", "$dlg(state)": "4", "$dlg(h_entry)": "7", "$dlg(h_id)": "9", "$tt": "tt1",
                   "$dlg_var(edge_max_dur)": "120"})
    router._start_clock()
    due, h_entry, h_id, ft, tt = deadline["call-1"].split(":")
    assert (h_entry, h_id, ft, tt) == ("7", "9", "ft1", "tt1") and int(due) >= now + 119
    router._start_clock()  # a retransmitted ACK keeps the running clock
    assert deadline["call-1"].split(":")[1] == "7"


# -- metrics (xhttp_prom) ------------------------------------------------------------------------


def counted(ksr: FakeKSR) -> list[tuple[Any, ...]]:
    """Every counter increment: (metric name, *label values)."""
    return [(args[0], *args[2:]) for name, args in ksr.calls if name.startswith("xhttp_prom.counter_inc_l")]


def test_relayed_call_counts_an_attempt_and_refusals_count_their_reason(ksr: FakeKSR, router: Any) -> None:
    request(ksr)
    router.ksr_request_route(MSG)
    assert counted(ksr) == [("byoc_edge_calls_attempted_total", "origination", "telnyx", "bot")]
    assert ksr.pv["$avp(edge_mlabels)"] == "origination|telnyx|bot"
    ksr.calls.clear()
    request(ksr, **{"$rU": "+14155559999", "$ci": "call-2"})
    router.ksr_request_route(MSG)
    assert counted(ksr) == [("byoc_edge_rejections_total", "did_not_found")]


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


def test_failover_and_final_failure_are_counted_by_trunk_and_sip_class(ksr: FakeKSR, router: Any) -> None:
    failed_branch(ksr, termination_plan(("a", LEASE_A), ("b", LEASE_B)), 503, "Service Unavailable")
    router.ksr_failure_manage(MSG)
    assert counted(ksr) == [("byoc_edge_failovers_total", "termination", "a")]
    ksr.calls.clear()
    failed_branch(ksr, CallPlan.loads(ksr.pv[PLAN_AVP]), 486, "Busy Here")
    router.ksr_failure_manage(MSG)
    assert counted(ksr) == [("byoc_edge_calls_failed_total", "termination", "b", "4xx")]


def test_giving_up_counts_the_answer_sent(ksr: FakeKSR, router: Any) -> None:
    plan = origination_plan()
    plan.index = 1
    failed_branch(ksr, plan, None, timed_out=True)
    router.ksr_failure_manage(MSG)
    assert ksr.replies == [("tm", 503, "Agent Unreachable")]
    # the answer the edge chose is a refusal with a tag: logged and counted under that tag
    assert counted(ksr) == [("byoc_edge_rejections_total", "agent_unreachable"),
                            ("byoc_edge_calls_failed_total", "origination", "telnyx", "5xx")]
    assert any(text.startswith("edge: reject 503 agent_unreachable failover ") for _, text in ksr.logs)


# -- one network per side (routing.sides) -----------------------------------------------------

SIDE_SOCKETS = {"carrier": {"udp": "udp:10.0.1.10:5060"}, "agent": {"udp": "udp:10.0.2.10:5060"}}


@pytest.fixture
def sided_router(kemi: types.ModuleType, store: FakeStore, ksr: FakeKSR) -> Any:
    router = kemi.Router(replace(RT, media_sides=True, sip_sockets=SIDE_SOCKETS))
    router.store = store
    router._writer = RecordingWriter()
    ksr.router = router
    return router


def test_origination_leaves_from_the_agent_socket_naming_both_interfaces(ksr: FakeKSR, sided_router: Any) -> None:
    request(ksr)
    sided_router.ksr_request_route(MSG)
    assert ksr.replies == []
    assert ("$fs", "udp:10.0.2.10:5060") in ksr.args_of("pv.sets")
    (flags,) = ksr.args_of("rtpengine.rtpengine_offer")[0]
    assert flags.split()[-2:] == ["direction=carrier", "direction=agent"]  # the offer came from the carrier
    # the agent's answer names no interface: rtpengine keeps the ones the offer chose
    ksr.pv.update({"$rs": 180, "$rb": SDP_OFFER})
    ksr.pv["$avp(edge_from_caller)"] = 1
    sided_router.ksr_onreply_manage(MSG)
    (answer,) = ksr.args_of("rtpengine.rtpengine_answer")[0]
    assert "direction=" not in answer


def test_delayed_offer_from_the_agent_names_its_interface_first(ksr: FakeKSR, sided_router: Any) -> None:
    """An INVITE without SDP: the agent's 200 carries the offer, made from the agent's side."""
    request(ksr)
    ksr.returns["textops.has_body_type"] = -1
    sided_router.ksr_request_route(MSG)
    ksr.returns["textops.has_body_type"] = 1
    ksr.pv.update({"$rs": 200, "$rm": "INVITE", "$rb": SDP_OFFER, "$avp(edge_from_caller)": 1,
                   "$avp(edge_req_sdp)": 0})
    sided_router.ksr_onreply_manage(MSG)
    (offer,) = ksr.args_of("rtpengine.rtpengine_manage")[-1]
    assert offer.split()[-2:] == ["direction=agent", "direction=carrier"]


def test_termination_leaves_from_the_carrier_socket(ksr: FakeKSR, sided_router: Any, store: FakeStore) -> None:
    store.route_table["+1"] = [RouteEntry("+1", "telnyx", Decimal("0.01"))]
    request(ksr, **{"$si": "10.9.0.7", "$rU": "14155550100"})
    sided_router.ksr_request_route(MSG)
    assert ksr.relayed == ["sip:+14155550100@192.0.2.10:5060"]
    assert ("$fs", "udp:10.0.1.10:5060") in ksr.args_of("pv.sets")
    (flags,) = ksr.args_of("rtpengine.rtpengine_offer")[0]
    assert flags.split()[-2:] == ["direction=agent", "direction=carrier"]


def test_failover_hop_is_sent_from_its_sides_socket(ksr: FakeKSR, sided_router: Any) -> None:
    failed_branch(ksr, termination_plan(("a", LEASE_A), ("b", LEASE_B)), 503, "Service Unavailable")
    sided_router.ksr_failure_manage(MSG)
    assert ksr.relayed == ["sip:+14155550100@gw-b"]
    assert ("$fs", "udp:10.0.1.10:5060") in ksr.args_of("pv.sets")


@pytest.mark.parametrize("from_tag, expected", [
    ("caller-tag", ["direction=carrier", "direction=agent"]),  # re-INVITE from the carrier (the caller)
    ("callee-tag", ["direction=agent", "direction=carrier"]),  # re-INVITE/UPDATE from the agent
])
def test_in_dialog_offer_names_the_senders_interface_first(ksr: FakeKSR, sided_router: Any, from_tag: str,
                                                           expected: list[str]) -> None:
    request(ksr, **{"$ft": from_tag, "$dlg(from_tag)": "caller-tag", "$dlg_var(edge_dir)": "origination"})
    ksr.returns["siputils.has_totag"] = 1
    sided_router.ksr_request_route(MSG)
    (flags,) = ksr.args_of("rtpengine.rtpengine_manage")[0]
    assert flags.split()[-2:] == expected
    assert ksr.pv["$avp(edge_dir)"] == "origination"  # for the reply route's answer


def test_one_network_edge_names_no_interface_and_forces_no_socket(ksr: FakeKSR, router: Any) -> None:
    request(ksr)
    router.ksr_request_route(MSG)
    assert "$fs" not in [name for name, _ in ksr.args_of("pv.sets")]
    (flags,) = ksr.args_of("rtpengine.rtpengine_offer")[0]
    assert "direction=" not in flags


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


# -- a reliable 18x (RFC 3262) that breaks the media policy ----------------------------------------

_CLEAR_ANSWER = "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"


def provisional(ksr: FakeKSR, plan: CallPlan, code: int = 183, reliable: bool = True) -> None:
    """tm's state in the reply route of the callee's 18x answering the caller's offer; the callee
    side requires SDES and answers in clear."""
    sides = {"caller": MediaPolicy().to_json(), "callee": MediaPolicy(srtp=SrtpMode.SDES).to_json()}
    ksr.pv.update({"$ci": plan.call_id, "$rs": code, "$rm": "INVITE", PLAN_AVP: plan.dumps(), "$rb": _CLEAR_ANSWER,
                   "$avp(edge_media)": json.dumps(sides), "$avp(edge_from_caller)": 1, "$avp(edge_req_sdp)": 1,
                   "$(hdr(Require)[*])": "timer, 100rel" if reliable else "", "$hdr(RSeq)": "1" if reliable else ""})


def test_reliable_183_breaking_the_policy_is_dropped_and_its_branch_cancelled(ksr: FakeKSR, router: Any) -> None:
    provisional(ksr, origination_plan())
    router.ksr_onreply_manage(MSG)
    assert ksr.args_of("tmx.t_cancel_branches") == [("this",)]
    assert "set_drop" in ksr.names() and "rtpengine.rtpengine_answer" not in ksr.names()
    assert json.loads(ksr.pv["$avp(edge_early_refused)"]) == [488, "SRTP Required", "srtp_required"]
    assert [text for _, text in ksr.logs if "reject" in text][0].startswith(
        "edge: reject 488 srtp_required reliable-provisional reply=183 ")
    ksr.calls.clear()
    router.ksr_onreply_manage(MSG)  # the callee retransmits its 183 until the CANCEL reaches it
    assert ksr.names() == ["set_drop"]


def test_unreliable_183_breaking_the_policy_still_passes(ksr: FakeKSR, router: Any) -> None:
    provisional(ksr, origination_plan(), reliable=False)
    router.ksr_onreply_manage(MSG)
    assert "rtpengine.rtpengine_answer" in ksr.names()
    assert "set_drop" not in ksr.names() and "tmx.t_cancel_branches" not in ksr.names()
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
    (record,) = router._writer.records
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
