"""The Kamailio side of byoc-edge: the only module that imports ``KSR``.

Loaded by ``app_python3`` through ``kamailio/edge.py``.  It reads each request
into a :class:`~routing.request.SipRequest`, asks :mod:`routing.pipeline` for a
decision and applies it: replies, record-routing, rtpengine media anchoring,
dialog tracking and serial failover in the failure route.

Kamailio callbacks (names are also used in ``templates/kamailio.cfg.j2``):

* ``ksr_request_route(msg)``: every request.
* ``ksr_onreply_manage(msg)``: replies of relayed INVITEs (armed with ``t_on_reply``).
* ``ksr_failure_manage(msg)``: a branch failed (armed with ``t_on_failure``).
* ``ksr_dialog_event(msg, event)``: dialog module ``event_callback``; releases
  concurrency slots on ``dialog:end`` and ``dialog:failed``.

Rules from app_python3 (Kamailio 5.6): an exception escaping a route leaves the
request unanswered, so every entry point catches and answers 500; redis clients
are opened per worker in :meth:`Router.child_init`, after the fork.
"""

from __future__ import annotations

import os
import re
import time
import traceback

import KSR  # type: ignore[import-not-found]

from . import pipeline, runtime
from .decision import Reason, Reject, Relay
from .model import DataError
from .plan import CallPlan, final_response, should_fail_over
from .request import SipRequest
from .acl import classify_source
from .store import RedisStore, StoreUnavailable, Topology, connect

__all__ = ["Router", "mod_init", "ON_FAILURE", "ON_REPLY", "DIALOG_EVENT"]

ON_FAILURE = "ksr_failure_manage"
ON_REPLY = "ksr_onreply_manage"
DIALOG_EVENT = "ksr_dialog_event"

BAN_TABLE = "ipban"
TRUST_CACHE_S = 1.0
PLAN_AVP = "$avp(edge_plan)"
#: a trunk's max_duration_s, applied to the dialog timer by the first ACK (the call is answered)
MAX_DURATION_VAR = "$dlg_var(edge_max_dur)"
_URI_USER = re.compile(r"(?:sips?|tel):([^@;>\s]+(?:;[^@>\s]*)?)(?:@|>|$)", re.I)
EARLY_MEDIA_AVP = "$avp(edge_early)"
RTPENGINE_FLAGS = "replace-origin replace-session-connection ICE=remove"
MAX_FORWARDS = 70


def _pv(name: str) -> str:
    value = KSR.pv.get(name)
    return "" if value is None else str(value)


def _has_sdp() -> bool:
    return KSR.textops.has_body_type("application/sdp") > 0


def _log_reject(reject: Reject, where: str) -> None:
    KSR.info(
        f"edge: reject {reject.code} {reject.tag} {where} call-id={_pv('$ci')} src={_pv('$si')}:{_pv('$sp')}\n"
    )


class Router:
    """The object ``app_python3`` calls for each route (class style of the KEMI examples).

    Args:
        settings: runtime settings from ``routing.json``.
    """

    def __init__(self, settings: runtime.RuntimeSettings) -> None:
        self.settings = settings
        self.store: RedisStore | None = None
        self._topology: Topology | None = None
        self._topology_at = 0.0

    # -- process life -------------------------------------------------------

    def child_init(self, rank: int) -> int:
        """Open this worker's redis client (after the fork, never before)."""
        s = self.settings
        client = connect(
            host=s.redis_host,
            port=s.redis_port,
            db=s.redis_db,
            password=s.redis_password,
            timeout_ms=s.redis_timeout_ms,
            connect_timeout_ms=s.redis_connect_timeout_ms,
        )
        self.store = RedisStore(client, s.node)
        return 0

    def _store(self) -> RedisStore:
        if self.store is None:
            self.child_init(0)
        assert self.store is not None
        return self.store

    # -- replies -------------------------------------------------------------

    def _reply(self, reject: Reject, stateful: bool = False) -> None:
        if reject.retry_after_s is not None:
            KSR.hdr.append_to_reply(f"Retry-After: {reject.retry_after_s}\r\n")
        _log_reject(reject, "request")
        if stateful:
            KSR.tm.t_reply(reject.code, reject.reason)
        else:
            KSR.sl.send_reply(reject.code, reject.reason)

    # -- request route -------------------------------------------------------

    def ksr_request_route(self, msg: object) -> int:
        """Entry point for every request; never lets an exception escape (answers 500)."""
        try:
            self._request()
        except Exception:  # noqa: BLE001 - the caller must get an answer, whatever failed
            KSR.err("edge: exception in request route: " + traceback.format_exc().replace("\n", " | ") + "\n")
            if _pv("$rm") != "ACK":
                self._reply(Reject.of(Reason.INTERNAL_ERROR))
        return 1

    def _screen(self) -> bool:
        """Flood and scanner defence, before any parsing or routing.

        Returns False when the request is dropped silently: its source is banned,
        its User-Agent is a known scanner (banned at once), or it floods (pike)
        from a source that is no trunk's or agent's.  Replies always go to the
        packet's source address and port (rport, RFC 3581), never to Via hosts.
        """
        KSR.force_rport()
        src = _pv("$si")
        if KSR.htable.sht_is_null(BAN_TABLE, src) < 0:
            return False
        user_agent = _pv("$ua").lower()
        if user_agent and any(fragment in user_agent for fragment in self.settings.scanner_user_agents):
            self._ban(src, "scanner")
            return False
        if KSR.pike.pike_check_req() < 0 and not self._trusted(src):
            self._ban(src, "flood")
            return False
        return True

    def _ban(self, src: str, why: str) -> None:
        if KSR.is_myself_srcip():
            return  # never ban the edge's own addresses (local probes, loopback tools)
        KSR.htable.sht_seti(BAN_TABLE, src, 1)
        KSR.notice(f"edge: ban {src} reason={why} ua={_pv('$ua')!r}\n")

    def _trusted(self, src: str) -> bool:
        """Whether ``src`` belongs to a trunk or agent (topology cached per worker for 1 s;
        when redis cannot be read, nobody is trusted)."""
        now = time.monotonic()
        if self._topology is None or now - self._topology_at > TRUST_CACHE_S:
            try:
                self._topology = self._store().topology()
            except (StoreUnavailable, DataError):
                self._topology = Topology(trunks={}, agents={})
            self._topology_at = now
        return classify_source(src, self._topology) is not None

    def _request(self) -> None:
        method = _pv("$rm")
        if not self._screen():
            return
        if KSR.maxfwd.process_maxfwd(MAX_FORWARDS) < 0:
            self._reply(Reject.of(Reason.TOO_MANY_HOPS))
            return
        if KSR.sanity.sanity_check(1511, 7) < 1:
            return  # sanity already answered 400 (RFC 3261 section 16.3 checks)
        if method == "CANCEL":
            if KSR.tm.t_check_trans() > 0:
                KSR.rtpengine.rtpengine_delete0()
                KSR.tm.t_relay()
            return
        if method != "ACK":
            if KSR.tmx.t_precheck_trans() > 0:
                KSR.tm.t_check_trans()
                return
            if KSR.tm.t_check_trans() == 0:
                return
        if KSR.siputils.has_totag() > 0:
            self._in_dialog(method)
            return
        if method == "ACK":
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return
        if method == "OPTIONS" and not _pv("$rU"):
            KSR.sl.send_reply(200, "OK")
            return
        if method != "INVITE":
            KSR.hdr.append_to_reply("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER\r\n")
            self._reply(Reject.of(Reason.NOT_ALLOWED))
            return
        self._initial_invite()

    def _in_dialog(self, method: str) -> None:
        KSR.textops.remove_hf_re("^" + pipeline.EDGE_HEADER_PREFIX)
        if KSR.rr.loose_route() < 0 or KSR.dialog.is_known_dlg() < 0:
            if method == "ACK":
                if KSR.tm.t_check_trans() > 0:
                    KSR.tm.t_relay()
                return
            self._reply(Reject.of(Reason.NO_DIALOG))
            return
        if method == "REFER":
            try:
                refusal = self._refer_refusal()
            except StoreUnavailable:
                refusal = Reject.of(Reason.STORE_UNAVAILABLE, self.settings.retry_after_s)
            if refusal is not None:
                self._reply(refusal)
                return
        if method == "BYE":
            KSR.rtpengine.rtpengine_delete0()
        if method == "ACK":
            max_duration = _pv(MAX_DURATION_VAR)
            if max_duration:
                KSR.dialog.dlg_set_timeout(int(max_duration))
                KSR.pv.sets(MAX_DURATION_VAR, "")
        if method in ("INVITE", "UPDATE", "ACK"):
            KSR.rtpengine.rtpengine_manage(RTPENGINE_FLAGS)
            if method != "ACK":
                KSR.tm.t_on_reply(ON_REPLY)
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()

    def _snapshot(self) -> SipRequest:
        return SipRequest(
            method=_pv("$rm"),
            call_id=_pv("$ci"),
            src_ip=_pv("$si"),
            src_port=int(_pv("$sp") or 0),
            proto=_pv("$pr"),
            ruri_user=_pv("$rU"),
            to_user=_pv("$tU"),
            from_user=_pv("$fU"),
            from_name=_pv("$fn"),
        )

    def _initial_invite(self) -> None:
        KSR.textops.remove_hf_re("^" + pipeline.EDGE_HEADER_PREFIX)
        store = self._store()
        try:
            decision = pipeline.route_initial_invite(self._snapshot(), store, self.settings)
        except StoreUnavailable as exc:
            KSR.err(f"edge: routing store unavailable: {exc}\n")
            try:  # a slot may have been taken before redis stopped answering
                store.release(_pv("$ci"))
            except StoreUnavailable:
                pass  # then the lease expires on its own (lease_ttl_s)
            self._reply(Reject.of(Reason.STORE_UNAVAILABLE, self.settings.retry_after_s))
            return
        except DataError as exc:
            KSR.err(f"edge: malformed routing data: {exc}\n")
            self._reply(Reject.of(Reason.INTERNAL_ERROR))
            return
        if isinstance(decision, Reject):
            self._reply(decision)
            return
        self._relay(decision)

    def _relay(self, decision: Relay) -> None:
        plan = decision.plan
        store = self._store()
        try:
            for name, value in decision.headers.items():
                KSR.hdr.append(f"{name}: {value}\r\n")
            KSR.rr.record_route()
            # an INVITE without SDP (delayed offer) gets its offer from the 2xx and its answer from the ACK
            if _has_sdp() and KSR.rtpengine.rtpengine_manage(RTPENGINE_FLAGS) < 0:
                store.release(plan.call_id)
                self._reply(Reject(503, "Media Relay Unavailable", "rtpengine", self.settings.retry_after_s))
                return
            KSR.dialog.dlg_manage()
            KSR.pv.sets("$dlg_var(edge_agent)", plan.agent)
            KSR.pv.sets("$dlg_var(edge_trunk)", plan.trunk or plan.current.trunk or "")
            KSR.pv.sets(MAX_DURATION_VAR, str(plan.current.max_duration_s or ""))
            if KSR.tm.t_newtran() < 0:
                store.release(plan.call_id)
                KSR.sl.sl_reply_error()
                return
            self._send(plan, failure_route=False)
        except BaseException:
            store.release(plan.call_id)
            raise

    def _send(self, plan: CallPlan, failure_route: bool) -> None:
        """Relay to the plan's current hop; on an immediate send error, move on."""
        store = self._store()
        target = plan.current
        while True:
            if failure_route:
                KSR.pv.sets(MAX_DURATION_VAR, str(target.max_duration_s or ""))
                KSR.pv.sets("$dlg_var(edge_trunk)", target.trunk or plan.trunk)
            KSR.pv.sets("$ru", target.uri)
            KSR.pv.sets(PLAN_AVP, plan.dumps())
            KSR.tm.t_on_failure(ON_FAILURE)
            KSR.tm.t_on_reply(ON_REPLY)
            if KSR.tm.t_relay() > 0:
                return
            KSR.warn(f"edge: cannot send to {target.label} call-id={plan.call_id}\n")
            plan.record(500, "Send Failed", answered=False)
            nxt = plan.advance(store, self.settings.lease_ttl_s)
            if nxt is None:
                self._give_up(plan)
                return
            target = nxt

    def _give_up(self, plan: CallPlan) -> None:
        KSR.rtpengine.rtpengine_delete0()
        try:
            self._store().release(plan.call_id)
        except StoreUnavailable as exc:  # the lease then expires on its own (lease_ttl_s)
            KSR.err(f"edge: cannot release slots of call-id={plan.call_id}: {exc}\n")
        if plan.best is None and plan.full:
            code, reason, tag, retry = plan.full
            reject = Reject(code, reason, tag, retry)
        else:
            none = Reason.ALL_CARRIERS_FAILED if plan.direction == "termination" else Reason.AGENT_UNREACHABLE
            code, reason = final_response(plan, none[:2])
            reject = Reject(code, reason, none[2] if plan.best is None else "downstream_failed")
        _log_reject(reject, f"failover tried={','.join(plan.tried)}")
        if reject.retry_after_s is not None:
            KSR.hdr.append_to_reply(f"Retry-After: {reject.retry_after_s}\r\n")
        KSR.tm.t_reply(reject.code, reject.reason)

    # -- transaction callbacks -----------------------------------------------

    def ksr_onreply_manage(self, msg: object) -> int:
        """Replies to relayed requests: SDP answer into rtpengine, early-media marking."""
        try:
            if _has_sdp():
                KSR.rtpengine.rtpengine_manage(RTPENGINE_FLAGS)
                code = int(_pv("$rs") or 0)
                if 180 <= code < 200:
                    KSR.pv.seti(EARLY_MEDIA_AVP, 1)
        except Exception:  # noqa: BLE001
            KSR.err("edge: exception in reply route: " + traceback.format_exc().replace("\n", " | ") + "\n")
        return 1

    def ksr_failure_manage(self, msg: object) -> int:
        """A hop failed: fail over to the next one, or give the caller the final answer."""
        try:
            self._failure()
        except Exception:  # noqa: BLE001
            KSR.err("edge: exception in failure route: " + traceback.format_exc().replace("\n", " | ") + "\n")
            try:
                self._store().release(_pv("$ci"))
            except Exception:  # noqa: BLE001
                pass
            KSR.tm.t_reply(500, "Internal Server Error")
        return 1

    def _failure(self) -> None:
        if KSR.tm.t_is_canceled() > 0:
            KSR.rtpengine.rtpengine_delete0()
            return
        text = _pv(PLAN_AVP)
        if not text:
            return
        plan = CallPlan.loads(text)
        code = int(_pv("$T_reply_code") or 408)
        reason = _pv("$T_reply_reason") or "Request Timeout"
        answered = KSR.tm.t_branch_timeout() < 0 and code not in (477, 478, 479)
        early = bool(KSR.pv.get(EARLY_MEDIA_AVP))
        if 300 <= code < 400 and answered:
            refusal = self._redirect_refusal(plan)
            if refusal is not None:
                KSR.rtpengine.rtpengine_delete0()
                _log_reject(refusal, f"redirect contact={_pv('$T_rpl($ct)')}")
                KSR.tm.t_reply(refusal.code, refusal.reason)
                return
        plan.record(code, reason, answered)
        if not should_fail_over(code, answered, early):
            KSR.rtpengine.rtpengine_delete0()
            return  # tm relays this final response upstream
        try:
            nxt = plan.advance(self._store(), self.settings.lease_ttl_s)
        except StoreUnavailable:
            nxt = None
        if nxt is None:
            self._give_up(plan)
            return
        KSR.info(f"edge: failover call-id={plan.call_id} to={nxt.label} after={plan.tried[-1]}\n")
        self._send(plan, failure_route=True)

    def _redirect_refusal(self, plan: CallPlan) -> Reject | None:
        """A 3xx is relayed only when its Contact is a number allowed for the call's agent."""
        match = _URI_USER.search(_pv("$T_rpl($ct)"))
        if not match:
            return Reject.of(Reason.REDIRECT_NOT_ALLOWED)
        trunk = plan.trunk or (plan.current.trunk or "")
        return pipeline.check_transfer(match.group(1), plan.agent, trunk, self._store(), self.settings,
                                       Reason.REDIRECT_NOT_ALLOWED)

    def _refer_refusal(self) -> Reject | None:
        """A REFER is relayed only when its Refer-To is a number allowed for the dialog's agent."""
        match = _URI_USER.search(_pv("$hdr(Refer-To)"))
        if not match:
            return Reject.of(Reason.TRANSFER_NOT_ALLOWED)
        return pipeline.check_transfer(match.group(1), _pv("$dlg_var(edge_agent)"), _pv("$dlg_var(edge_trunk)"),
                                       self._store(), self.settings, Reason.TRANSFER_NOT_ALLOWED)

    def ksr_dialog_event(self, msg: object, event: str) -> int:
        """dialog module ``event_callback``: release the call's slots when it ends or fails."""
        try:
            if event in ("dialog:end", "dialog:failed"):
                call_id = _pv("$dlg(callid)") or _pv("$ci")
                if not call_id:
                    return 1
                if event == "dialog:end" and _pv("$rm") != "BYE":
                    # ended by the dialog timeout (the module sent the BYEs itself): no BYE
                    # passed the request route, so the media session is closed here
                    KSR.rtpengine.rtpengine_delete(f"call-id={call_id} from-tag={_pv('$dlg(from_tag)')}")
                self._store().release(call_id)
        except Exception:  # noqa: BLE001 - slots then expire with their lease
            KSR.err("edge: cannot release slots: " + traceback.format_exc().replace("\n", " | ") + "\n")
        return 1

    # app_python3 calls these unless kemi.*_callback is "none"; keep them harmless.
    def ksr_reply_route(self, msg: object) -> int:
        """Global reply route (unused: per-transaction ``t_on_reply`` is armed instead)."""
        return 1

    def ksr_onsend_route(self, msg: object) -> int:
        """onsend route (unused)."""
        return 1


def mod_init() -> Router:
    """``app_python3`` entry: build the router from ``$BYOC_EDGE_RUNTIME``.

    Raises:
        RuntimeError: the variable is not set (Kamailio then refuses to start,
            instead of routing with defaults that may point at the wrong redis).
    """
    if not os.environ.get(runtime.ENV_VAR):
        raise RuntimeError(f"{runtime.ENV_VAR} is not set: start Kamailio with `edgectl up` or set it to routing.json")
    return Router(runtime.load())
