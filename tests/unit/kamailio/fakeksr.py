"""A stand-in for Kamailio's ``KSR`` module and the fakes the plugin's unit tests share
(store, rtpengine ng client, call-record writer), with helpers that set up a message."""

from __future__ import annotations

import json
import sys
from pathlib import Path
import types
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import routing.kamailio
from routing.tables import keys
from routing.tables.model import Agent, Did, Direction, Gateway, MediaPolicy, SrtpMode, Trunk
from routing.ngclient import NgError
from routing.call.numbers import NumberFormat
from routing.call.plan import CallPlan, Target
from routing.ops.runtime import RuntimeSettings
from routing.tables.store import Admission, Lease, StoreUnavailable, Topology
from tests.fakes import FakeStore as SharedFakeStore

RT = RuntimeSettings(node="t1", lease_ttl_s=600, retry_after_s=7)
PLAN_AVP = "$avp(edge_plan)"
EARLY_AVP = "$avp(edge_early)"
#: what the plugin and the native routes of templates/kamailio.routes.j2 pass each other
OFFER_AVP = "$avp(edge_offer)"
MEDIA_ERROR_AVP = "$avp(edge_media_err)"
REPLY_DROP_AVP = "$avp(edge_reply_drop)"
DROP_VAR = "$var(edge_drop)"
STORE_FAILED_VAR = "$var(edge_sf)"

#: KSR functions the router may call, with the value each returns unless a test changes it.
DEFAULT_RETURNS: dict[str, Any] = {
    "is_myself_srcip": False,  # SR_KEMIP_BOOL: app_python3 hands Python a bool
    "is_myself": False,
    "hdr.is_present": -1,
    "htable.sht_seti": 1,
    "htable.sht_is_null": 1,  # no entry (the 2xx arms the call clock's ACK form only then)
    "htable.sht_sets": 1,
    "hdr.remove": 1,
    "htable.sht_rm": 1,
    "htable.sht_gete": "",
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
    "tm.t_set_fr": 1,
    "uac.uac_replace_from_uri": 1,
    "uac.uac_replace_from": 1,
    "tmx.t_precheck_trans": -1,
    "tmx.t_cancel_branches": 1,
    "tmx.t_cancel_callid": 1,
    "dialog.dlg_get": -1,
    "uac.uac_req_send": 1,
    "tm.t_uac_send": 1,
    "hdr.append": 1,
    "hdr.append_to_reply": 1,
    "rr.record_route": 1,
    "rtpengine.rtpengine_manage": 1,
    "rtpengine.rtpengine_answer": 1,
    "rtpengine.rtpengine_offer": 1,
    "tm.t_on_branch": 1,
    "rtpengine.rtpengine_delete0": 1,
    "rtpengine.rtpengine_delete": 1,
    "dialog.dlg_manage": 1,
    "dialog.is_known_dlg": 1,
    "dialog.dlg_set_timeout": 1,
    "dialog.dlg_set_property": 1,
    "dialog.dlg_reset_property": 1,
    "siputils.has_totag": -1,
    "textops.remove_hf_re": 1,
    "textops.has_body_type": 1,  # the INVITE carries SDP
    "secsipid.secsipid_check": 1,  # the Identity header verifies (routing.kamailio.identitycheck)
    **{f"xhttp_prom.counter_inc_l{n}": 1 for n in range(4)},
    **{f"xhttp_prom.histogram_observe_l{n}": 1 for n in range(4)},
    "xhttp_prom.gauge_set_l0": 1,
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
        #: the ``$avp(edge_offer)`` each ``t_relay`` left for the native branch route
        self.offers: list[Any] = []
        #: the native branch route (templates/kamailio.routes.j2) as tm runs it inside ``t_relay``:
        #: False drops the branch (tm then sends nothing and ``t_relay`` fails)
        self.branch_route: Callable[[], bool] | None = None
        self.logs: list[tuple[str, str]] = []
        self.module = types.ModuleType("KSR")
        groups: dict[str, types.SimpleNamespace] = {}
        for name in DEFAULT_RETURNS:
            group, dot, func = name.partition(".")
            if not dot:  # a core function such as KSR.force_rport
                setattr(self.module, name, self._function(name))
                continue
            setattr(groups.setdefault(group, types.SimpleNamespace()), func, self._function(name))
        groups["pv"] = types.SimpleNamespace(get=self._pv_get, sets=self._pv_set("sets"), seti=self._pv_set("seti"),
                                             unset=self._pv_unset)
        for group, namespace in groups.items():
            setattr(self.module, group, namespace)
        for level in ("info", "err", "warn", "dbg", "notice", "crit"):
            setattr(self.module, level, self._log(level))

    def _pv_unset(self, name: str) -> int:
        """``KSR.pv.unset``: the variable is gone (``$uac_req(all)``: every ``$uac_req(...)``)."""
        self.calls.append(("pv.unset", (name,)))
        prefix = name[:-len("all)")] if name.endswith("(all)") else None
        for key in [k for k in self.pv if k == name or (prefix and k.startswith(prefix))]:
            del self.pv[key]
        return 1

    def _function(self, name: str) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self.calls.append((name, args))
            if name == "tm.t_relay":
                self.relayed.append(self.pv.get("$ru"))
                self.offers.append(self.pv.get(OFFER_AVP))
                armed = self.args_of("tm.t_on_branch")
                if armed and self.branch_route is not None and self.returns[name] > 0:
                    if not self.branch_route():  # tm sends no branch: t_relay fails
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

    def _pv_unset(self, name: str) -> None:
        self.calls.append(("pv.unset", (name,)))
        self.pv.pop(name, None)

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
        confirm: bool = False,
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



class FakeNg:
    """Stands in for rtpengine's ng control socket: keeps every query and command; the session is
    unknown (rtpengine's ``Unknown call-id``) unless ``replies`` holds a reply for the command,
    so by default no media statistics are taken."""

    def __init__(self, address: tuple[str, int] = ("127.0.0.1", 2223)) -> None:
        self.address = address
        self.queries: list[str] = []
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.replies: dict[str, dict[str, Any] | NgError] = {}

    def query(self, call_id: str, from_tag: str = "") -> dict[str, Any]:
        self.queries.append(call_id)
        raise NgError("rtpengine answered error", "Unknown call-id")

    def command(self, name: str, **params: Any) -> dict[str, Any]:
        self.commands.append((name, params))
        reply = self.replies.get(name, NgError("rtpengine answered error", "Unknown call-id"))
        if isinstance(reply, NgError):
            raise reply
        return reply


class RecordingWriter:
    """Stands in for the call-record writer: keeps every record written."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.down = 0

    def write(self, record: dict[str, Any]) -> str:
        self.records.append(record)
        return "stored"

    def write_many(self, records: list[dict[str, Any]]) -> list[str]:
        return [self.write(record) for record in records]

    def mark_down(self) -> None:
        self.down += 1

    def replay(self) -> tuple[int, int]:
        return 0, 0



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




def assert_405_with_allow(ksr: FakeKSR) -> None:
    assert ksr.replies == [("sl", 405, "Method Not Allowed")]
    allow = [args[0] for args in ksr.args_of("hdr.append_to_reply") if args[0].startswith("Allow:")]
    assert len(allow) == 1
    assert allow[0].endswith("\r\n")
    methods = {m.strip() for m in allow[0][len("Allow:") :].split(",")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"} <= methods
    assert "REGISTER" not in methods


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


def counted(ksr: FakeKSR) -> list[tuple[Any, ...]]:
    """Every counter increment: (metric name, *label values)."""
    return [(args[0], *args[2:]) for name, args in ksr.calls if name.startswith("xhttp_prom.counter_inc_l")]

SIDE_SOCKETS = {"carrier": {"udp": "udp:10.0.1.10:5060"}, "agent": {"udp": "udp:10.0.2.10:5060"}}

_CLEAR_ANSWER = "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"


def provisional(ksr: FakeKSR, plan: CallPlan, code: int = 183, reliable: bool = True) -> None:
    """tm's state in the reply route of the callee's 18x answering the caller's offer; the callee
    side requires SDES and answers in clear."""
    sides = {"caller": MediaPolicy().to_json(), "callee": MediaPolicy(srtp=SrtpMode.SDES).to_json()}
    ksr.pv.update({"$ci": plan.call_id, "$rs": code, "$rm": "INVITE", PLAN_AVP: plan.dumps(), "$rb": _CLEAR_ANSWER,
                   "$avp(edge_media)": json.dumps(sides), "$avp(edge_from_caller)": 1, "$avp(edge_req_sdp)": 1,
                   "$(hdr(Require)[*])": "timer, 100rel" if reliable else "", "$hdr(RSeq)": "1" if reliable else ""})


#: the package's modules that import KSR (callstate does not: the renderer imports it)
#: every module of routing/kamailio (found from the sources, so a new one is not missed): those that
#: import KSR, and those bound to them (mediaflags reads through worker.pv)
KSR_MODULES = tuple(sorted(p.stem for p in Path(routing.kamailio.__file__).parent.glob("*.py")
                           if p.stem != "__init__"))


def forget_plugin() -> None:
    """Drop the package's KSR modules, so the next import binds the KSR then installed."""
    for name in KSR_MODULES:
        sys.modules.pop(f"routing.kamailio.{name}", None)
        if hasattr(routing.kamailio, name):
            delattr(routing.kamailio, name)
