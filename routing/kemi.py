"""The Kamailio side of byoc-edge: the only module that imports ``KSR``.

Loaded by ``app_python3`` through ``kamailio/edge.py``.  It reads each request
into a :class:`~routing.request.SipRequest`, asks :mod:`routing.pipeline` for a
decision and applies it: replies, record-routing, rtpengine media anchoring,
dialog tracking and serial failover in the failure route.

Kamailio callbacks (names are also used in ``templates/kamailio.cfg.j2``):

* ``ksr_request_route(msg)``: every request.
* ``ksr_onreply_manage(msg)``: replies of relayed INVITEs (armed with ``t_on_reply``).
* ``ksr_branch_manage(msg)``: each outgoing INVITE branch (armed with ``t_on_branch``): the
  rtpengine offer with the media policy of that hop (:mod:`routing.media`).
* ``ksr_failure_manage(msg)``: a branch failed (armed with ``t_on_failure``).
* ``ksr_dialog_event(msg, event)``: dialog module ``event_callback``; releases
  concurrency slots on ``dialog:end`` and ``dialog:failed``.
* ``ksr_call_clock(msg, event)``: rtimer, once a second; ends answered calls past
  their maximum duration (the dialog module's own timer is only a backstop: in
  5.6.3 its timeout BYE can race with the ACK and leave the dialog unreleased).
* ``ksr_dtmf_log(msg, event)``: rtimer, five times a second; records the DTMF digits
  rtpengine reports seeing in the media (``dtmf.log_port``) with their calls, and sends
  each one as a SIP INFO on the sender's behalf toward a side in ``info`` mode.
* ``ksr_registration_sync(msg, event)``: rtimer, every ``registration.sync_interval_s``;
  keeps the ``uac`` module's registrations equal to the registration trunks in
  redis and publishes their state (``edge:reg:{trunk}:{node}``).
* ``ksr_reply_route(msg)``: every reply received; notes the final replies to the
  edge's own REGISTERs (the ``uac`` module does not keep their code).
* ``ksr_xhttp_event(msg, event)``: xhttp module ``event_callback``; serves the
  Prometheus metrics (xhttp_prom) on the metrics listener only.

Metrics (names and labels in :mod:`routing.metrics`) are counted in shared memory
by xhttp_prom, so every worker adds to the same series.

Rules from app_python3 (Kamailio 5.6): an exception escaping a route leaves the
request unanswered, so every entry point catches and answers 500; redis clients
are opened per worker in :meth:`Router.child_init`, after the fork.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
import traceback
from collections.abc import Callable

import KSR  # type: ignore[import-not-found]

from .explain import refusal_record
from . import cseq, dtmf, media, metrics, pipeline, quality, registration, runtime
from . import sides as netsides
from .ngclient import NgClient, NgError
from .cdr import CallFacts, build_record, sdp_codecs
from .cdrstore import CdrStore, CdrWriter, Spool
from .model import parse_increment
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from .decision import Authenticate, Reason, Reject, Relay
from .model import AuthMode, DataError, MediaPolicy, Trunk
from .secrets import SecretBox, SecretError
from .plan import CallPlan, final_response, should_fail_over
from .headers import IDENTITY_HEADERS, canonical, header_names, headers_to_remove, in_dialog_policy
from .request import SipRequest
from .acl import classify_source
from .store import RedisStore, StoreUnavailable, Topology, connect

__all__ = ["Router", "mod_init", "ON_FAILURE", "ON_REPLY", "DIALOG_EVENT"]

ON_FAILURE = "ksr_failure_manage"
ON_REPLY = "ksr_onreply_manage"
ON_BRANCH = "ksr_branch_manage"
DIALOG_EVENT = "ksr_dialog_event"

BAN_TABLE = "ipban"
AUTH_FAIL_TABLE = "authfail"
DEADLINE_TABLE = "deadline"
CLEANUP = "cleanup"
CLEANUP_GRACE_S = 3
#: the deadline of a call answered by a 2xx whose ACK has not come yet: the ACK replaces it with
#: the call's real deadline (_start_clock); if none comes the call clock releases its slots
NO_ACK = "noack"
#: how long (s) a 2xx waits for its ACK before the call's slots are released: 64*T1, the time
#: the callee retransmits its 2xx (RFC 3261 section 13.3.1.4); the dialog module's own
#: noack_timeout only acts on its 90 s cleaning timer (templates/kamailio.cfg.j2)
ACK_WAIT_S = 32
CLOCK_ITERATOR = "edgeclock"
#: htable of the media watchdog: call-id -> "next check:rtp timeout s:answered at:caller from-tag"
MEDIA_TABLE = "mediawatch"
MEDIA_ITERATOR = "edgemedia"
#: the call's RTP inactivity timeout (s), from both sides' media policies (routing.media.rtp_timeout_s)
RTP_TIMEOUT_VAR = "$dlg_var(edge_rtp_timeout)"
#: sources whose trust is remembered per topology copy before the memo starts over
TRUST_MEMO_SIZE = 4096
#: how long (s) a call whose admission timed out stays fenced in redis (routing/lua/release.lua)
ADMISSION_FENCE_S = 10
#: htable: To URI of the edge's REGISTERs -> "code|reason|epoch" of the last final reply
REG_REPLY_TABLE = "regreply"
#: per-call facts for the call record (JSON by Call-ID), from the relay until the record is written
CDR_TABLE = "cdr"
#: the spool of unwritten call records is replayed at most this often (s), by the call clock
REPLAY_EVERY_S = 2.0
TRUST_CACHE_S = 1.0
PLAN_AVP = "$avp(edge_plan)"
#: the call's direction (origination or termination), for the in-dialog header policy
DIRECTION_VAR = "$dlg_var(edge_dir)"
#: the call's direction copied into each transaction, so its reply route names rtpengine's interfaces
DIRECTION_AVP = "$avp(edge_dir)"
#: a trunk's max_duration_s, applied to the dialog timer by the first ACK (the call is answered)
MAX_DURATION_VAR = "$dlg_var(edge_max_dur)"
_REALM = re.compile(r'realm="([^"]*)"', re.I)
_URI_IN_BRACKETS = re.compile(r"<([^>]+)>")
_URI_USER = re.compile(r"(?:sips?|tel):([^@;>\s]+(?:;[^@>\s]*)?)(?:@|>|$)", re.I)
EARLY_MEDIA_AVP = "$avp(edge_early)"
#: when the initial INVITE arrived (epoch s, text), for post-dial delay and setup time
START_AVP = "$avp(edge_t0)"
#: metric labels of the hop being tried: "direction|trunk|agent"
LABELS_AVP = "$avp(edge_mlabels)"
PDD_DONE_AVP = "$avp(edge_pdd)"
ANSWERED_AVP = "$avp(edge_ans)"
RTPENGINE_FLAGS = media.BASE_FLAGS
#: set by the branch route when rtpengine did not take the offer
MEDIA_ERROR_AVP = "$avp(edge_media_err)"
#: the call's two media policies ({"caller": ..., "callee": ...}, MediaPolicy.to_json form) for re-INVITEs
MEDIA_VAR = "$dlg_var(edge_media)"
#: the same, copied into each INVITE/UPDATE transaction so its reply route can bring an offer in a
#: reply (delayed offer) into policy
MEDIA_AVP = "$avp(edge_media)"
#: call-record state key: a delayed offer or its answer broke a policy after the 2xx; the call is ended
#: at its ACK with this [code, reason, tag] as the BYEs' Reason
MEDIA_REFUSED = "media_refused"
#: set on an initial INVITE's transaction when a reliable 18x (RFC 3262) broke the media policy: the
#: branch is cancelled and the failure route answers the caller with this ``[code, reason, tag]``
EARLY_REFUSED_AVP = "$avp(edge_early_refused)"
#: DTMF modes of the call, ``"{caller},{callee}"`` (routing.dtmf), kept with the dialog
DTMF_VAR = "$dlg_var(edge_dtmf)"
#: the same, copied into each transaction so its reply route sees it
DTMF_AVP = "$avp(edge_dtmf)"
#: 1 when the transaction's request came from the caller (the dialog's From side)
FROM_CALLER_AVP = "$avp(edge_from_caller)"
#: 1 when the transaction's request carried SDP (then an SDP in its reply is an answer, else an offer)
REQ_SDP_AVP = "$avp(edge_req_sdp)"
#: htable: call-id -> "{caller from-tag},{caller mode},{callee mode}" of answered calls (DTMF log)
DTMF_CALL_TABLE = "dtmfcall"
#: htable: call-id -> routing.cseq.CseqMap of answered calls whose digits the edge sends as SIP INFO on
#: one side's behalf (routing.dtmf.info_needed): that side's later requests are renumbered
CSEQ_TABLE = "cseqmap"
#: header of the INFO requests the edge sends itself (to itself, then on to the side in ``info`` mode);
#: its value is the node's secret token, so a peer cannot pass a request off as the edge's
EDGE_INFO_HEADER = "X-Edge-Info"
#: the CSeq number a renumbered request came with; the reply route puts it back into the responses
CSEQ_AVP = "$avp(edge_cseq)"
#: header of the edge's own requests naming the socket toward their receiver (removed before they leave)
EDGE_SOCKET_HEADER = "X-Edge-Socket"
#: 1 while the edge's own BYE (call clock) passes the request route: dialog:end is the edge's hang-up
EDGE_HANGUP_AVP = "$avp(edge_hangup)"
#: datagrams read per DTMF log tick at most (the rest wait for the next tick)
DTMF_LOG_BATCH = 200
MAX_FORWARDS = 70


def _pv(name: str) -> str:
    value = KSR.pv.get(name)
    return "" if value is None else str(value)


def _has_sdp() -> bool:
    return KSR.textops.has_body_type("application/sdp") > 0


def _flags(extra: tuple[str, ...]) -> str:
    return " ".join((RTPENGINE_FLAGS, *extra))


def _modes(text: str) -> tuple[str, str] | None:
    caller, _, callee = text.partition(",")
    try:
        return dtmf.DtmfMode(caller).value, dtmf.DtmfMode(callee).value
    except ValueError:
        return None


def _sdp_flags(modes: tuple[str, str] | None, from_caller: bool, offer: bool) -> tuple[str, ...]:
    """rtpengine DTMF flags for an SDP sent by the caller (``from_caller``) or the callee."""
    if modes is None:
        return ()
    sender, receiver = modes if from_caller else (modes[1], modes[0])
    return dtmf.sdp_flags(sender, receiver, offer)


def _count(metric: metrics.Metric, *labels: str) -> None:
    """Add 1 to a counter of :mod:`routing.metrics` (xhttp_prom, shared memory)."""
    getattr(KSR.xhttp_prom, f"counter_inc_l{len(labels)}")(metric.name, 1, *labels)


def _observe(metric: metrics.Metric, seconds: float, *labels: str) -> None:
    """Observe a duration (s) in a histogram of :mod:`routing.metrics`."""
    getattr(KSR.xhttp_prom, f"histogram_observe_l{len(labels)}")(metric.name, f"{max(seconds, 0.0):.6f}", *labels)


def _hop_labels(plan: CallPlan) -> tuple[str, str, str]:
    """(direction, trunk, agent) label values of the plan's current hop."""
    return plan.direction, metrics.label(plan.current.trunk or plan.trunk), metrics.label(plan.agent)
#: CIDRs media.nat_flags treats as private (settings media.private_networks), set by Router()
_PRIVATE_NETWORKS: tuple[str, ...] = media.DEFAULT_PRIVATE_NETWORKS


def _offer_flags(offer: media.SdpOffer | None, sender: MediaPolicy, receiver: MediaPolicy,
                 dtmf_flags: tuple[str, ...], fill: bool = False) -> str | Reject:
    """rtpengine flags of an SDP offer: media policy (routing.media) plus the DTMF flags
    (routing.dtmf); telephone-event is left to the DTMF flags when they name it."""
    if offer is None:
        return _flags(dtmf_flags)
    keep_events = not any("telephone-event" in f for f in dtmf_flags)
    flags = media.offer_flags(offer, sender, receiver, keep_events=keep_events, fill=fill)
    if isinstance(flags, Reject):
        return flags
    return " ".join((flags, *dtmf_flags, *media.nat_flags(offer.address, _pv("$si"), _PRIVATE_NETWORKS)))


def _log_reject(reject: Reject, where: str) -> None:
    """Every refusal of the edge, in one place: the log line ``edge: reject <code> <tag> <where> ...``
    and ``byoc_edge_rejections_total{reason=<tag>}``, so the log and the metric always agree."""
    KSR.info(
        f"edge: reject {reject.code} {reject.tag} {where} call-id={_pv('$ci')} src={_pv('$si')}:{_pv('$sp')}\n"
    )
    _count(metrics.REJECTIONS, reject.tag)


class Router:
    """The object ``app_python3`` calls for each route (class style of the KEMI examples).

    Args:
        settings: runtime settings from ``routing.json``.
    """

    def __init__(self, settings: runtime.RuntimeSettings) -> None:
        global _PRIVATE_NETWORKS
        self.settings = settings
        _PRIVATE_NETWORKS = settings.media_private_networks or media.DEFAULT_PRIVATE_NETWORKS
        self.store: RedisStore | None = None
        self._topology: Topology | None = None
        self._box: SecretBox | None = None
        self._topology_at = 0.0
        #: redis did not answer earlier in the current request (the screening's trust check)
        self._store_failed = False
        #: the screening's answers for the copy in _trust_of (pike flags every busy carrier)
        self._trust_of: Topology | None = None
        self._trust: dict[str, bool] = {}
        #: registrations this process added to the uac module: uuid -> fingerprint (timer process only)
        self._registered: dict[str, str] = {}
        self._msg: object = None
        self._ngclient: NgClient | None = None
        self._writer: CdrWriter | None = None
        self._now_ms = 0
        self._replayed_at = 0.0
        self._dtmf_sock: socket.socket | None = None
        self._dtmf_sock_failed = False
        #: made before Kamailio forks, so every process has the same: marks the edge's own INFO requests
        self._token = secrets.token_hex(16)

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

    # -- call records ---------------------------------------------------------

    def _cdrs(self) -> CdrWriter:
        """This process's call-record writer (redis, else the spool)."""
        if self._writer is None:
            s = self.settings
            self._writer = CdrWriter(CdrStore(self._store().client, s.cdr_retention_s, s.cdr_stranger_retention_s),
                                     Spool(s.cdr_spool_dir))
        return self._writer

    def _write_record(self, facts: CallFacts) -> None:
        """Build and store one call record; never raises (a record that can be neither
        stored nor spooled is logged whole, so it can be recovered from the log)."""
        record = build_record(facts)
        try:
            self._cdrs().write(record)
        except Exception:  # noqa: BLE001 - the call must not suffer from its record
            KSR.err("edge: call record lost (spool failed): " + json.dumps(record) + " | "
                    + traceback.format_exc().replace("\n", " | ") + "\n")

    def _record_refusal(self, reject: Reject) -> None:
        """Call record of an initial INVITE the edge refused itself (request route)."""
        if _pv("$rm") != "INVITE" or KSR.siputils.has_totag() > 0:
            return
        now = int(time.time() * 1000)
        self._write_record(CallFacts(
            node=self.settings.node, call_id=_pv("$ci"), cseq=_pv("$cs"), start_ms=self._now_ms or now, end_ms=now,
            sip_code=reject.code, sip_reason=reject.reason, reject_tag=reject.tag, direction=reject.direction,
            trunk=reject.trunk, agent=reject.agent, number=_pv("$rU") or _pv("$tU"), caller=_pv("$fU"),
            codecs_caller=sdp_codecs(_pv("$rb")) if _has_sdp() else [],
        ))

    def _state(self, call_id: str) -> dict:
        text = KSR.htable.sht_gete(CDR_TABLE, call_id) if call_id else ""
        try:
            return json.loads(text) if text else {}
        except ValueError:
            return {}

    def _set_state(self, call_id: str, state: dict) -> None:
        KSR.htable.sht_sets(CDR_TABLE, call_id, json.dumps(state, separators=(",", ":")))

    def _facts(self, call_id: str, state: dict, **extra: object) -> CallFacts:
        try:
            rate = Decimal(state.get("rate") or "0")
        except InvalidOperation:
            rate = Decimal(0)
        try:
            increment = parse_increment(state.get("billing") or "1/1")
        except ValueError:
            increment = (1, 1)
        values: dict = dict(
            node=self.settings.node, call_id=call_id, cseq=str(state.get("cseq", "")),
            start_ms=int(state.get("start") or time.time() * 1000), end_ms=int(time.time() * 1000),
            sip_code=200, sip_reason="OK", direction=state.get("dir", ""), answer_ms=state.get("answer"),
            trunk=state.get("trunk", ""), agent=state.get("agent", ""), number=state.get("number", ""),
            caller=state.get("caller", ""), tried=list(state.get("tried", [])), rate=rate, increment=increment,
            codecs_caller=list(state.get("cc", [])), codecs_callee=list(state.get("ce", [])),
        )
        values.update(extra)
        return CallFacts(**values)

    def _plan_state(self, plan: CallPlan, state: dict) -> dict:
        """The call-record facts the plan knows (trunk, rate and billing of the current hop)."""
        target = plan.current
        state.update(dir=plan.direction, agent=plan.agent, number=plan.number, caller=plan.caller,
                     trunk=target.trunk or plan.trunk, rate=target.rate, billing=target.billing)
        return state

    def _record_unanswered(self, plan: CallPlan, code: int, reason: str, tag: str = "",
                           cancelled: bool = False, extra_tried: str = "") -> None:
        """Call record of an admitted call that ended without an answer (failure route)."""
        call_id = plan.call_id
        state = self._plan_state(plan, self._state(call_id))
        if not state.get("start"):
            return  # no relay state: written already (a late failure) or never relayed
        KSR.htable.sht_rm(CDR_TABLE, call_id)
        tried = list(plan.tried) + ([extra_tried] if extra_tried else [])
        self._write_record(self._facts(call_id, state, sip_code=code, sip_reason=reason, reject_tag=tag,
                                       cancelled=cancelled, tried=tried, answer_ms=None))

    def _finish_call(self, call_id: str, hangup: str) -> None:
        """Release the call's slots and write its record when it was answered (dialog end,
        dialog failure, or the call clock's cleanup)."""
        media: dict[str, str] = {}
        try:
            media = self._store().finish(call_id)
        except StoreUnavailable as exc:  # the slots then expire with their lease
            self._cdrs().mark_down()
            KSR.err(f"edge: cannot release slots of call-id={call_id}: {exc}\n")
        state = self._state(call_id)
        if not state.get("start"):
            return
        KSR.htable.sht_rm(CDR_TABLE, call_id)
        media = {k: v for k, v in media.items() if not k.startswith("lease:")}
        for name in ("direction", "trunk", "agent", "number", "start_ms", "answer_ms", "codecs_caller", "codecs_callee"):
            media.pop(name, None)
        if state.get("answer"):
            self._write_record(self._facts(call_id, state, media=media, hangup=hangup))
        else:  # failed without passing the failure route (should not happen): keep a trace
            code = int(_pv("$rs") or 0) if _pv("$rs").isdigit() else 0
            self._write_record(self._facts(call_id, state, sip_code=code or 500,
                                           sip_reason=_pv("$rr") or "Call Failed", media=media))

    def _replay_spool(self) -> None:
        """Replay spooled call records (call clock, at most every REPLAY_EVERY_S)."""
        now = time.monotonic()
        if now - self._replayed_at < REPLAY_EVERY_S:
            return
        self._replayed_at = now
        try:
            stored, duplicates = self._cdrs().replay()
        except StoreUnavailable:
            return
        if stored or duplicates:
            KSR.notice(f"edge: replayed spooled call records stored={stored} duplicates={duplicates}\n")

    # -- replies -------------------------------------------------------------

    def _reply(self, reject: Reject, stateful: bool = False) -> None:
        if reject.retry_after_s is not None:
            KSR.hdr.append_to_reply(f"Retry-After: {reject.retry_after_s}\r\n")
        _log_reject(reject, "request")
        self._record_refusal(reject)
        if stateful:
            KSR.tm.t_reply(reject.code, reject.reason)
        else:
            KSR.sl.send_reply(reject.code, reject.reason)

    # -- request route -------------------------------------------------------

    def ksr_request_route(self, msg: object) -> int:
        """Entry point for every request; never lets an exception escape (answers 500)."""
        self._msg = msg  # app_python3's message object: msg.call_function reaches cfg-only module functions
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

    def _secrets(self) -> SecretBox:
        if self._box is None:
            self._box = SecretBox(self.settings.secret_key_file)
        return self._box

    def _authenticate(self, trunk_name: str | None, topology: Topology) -> Trunk | None:
        """Check the request's digest credentials (RFC 3261 section 22.3; Kamailio auth module: auth_challenge, pv_auth_check).

        Without credentials the request is challenged (407).  Wrong credentials
        get 403 and count toward a ban of the source after
        ``auth_max_failures`` attempts.  Returns the authenticated trunk, or None
        when the request has been answered.
        """
        realm = self.settings.auth_realm
        user = _pv("$au")
        if not user:
            KSR.auth.auth_challenge(realm, 0)
            return None
        store = self._store()
        name = trunk_name or store.trunk_of_user(user)
        trunk = topology.trunks.get(name or "")
        creds = store.credentials(trunk.name) if trunk is not None else None
        if trunk is None or creds is None or creds[0] != user or (trunk_name is None and trunk.auth is not AuthMode.DIGEST):
            self._auth_failed(user)
            return None
        rc = KSR.auth.pv_auth_check(realm, self._secrets().decrypt(creds[1]), 0, 0)
        if rc in (-4, -6):  # stale or reused nonce: a fresh challenge, not a failure
            KSR.auth.auth_challenge(realm, 0)
            return None
        if rc < 0:
            self._auth_failed(user)
            return None
        KSR.auth.consume_credentials()
        return trunk

    def _auth_failed(self, user: str) -> None:
        src = _pv("$si")
        failures = KSR.htable.sht_inc(AUTH_FAIL_TABLE, src)
        if failures < 1:  # no entry yet (sht_inc answers -255): the first failure in the window
            KSR.htable.sht_seti(AUTH_FAIL_TABLE, src, 1)
            failures = 1
        KSR.notice(f"edge: digest failure {failures}/{self.settings.auth_max_failures} src={src} user={user!r}\n")
        if _pv("$rm") == "INVITE":
            self._remember(Reject.of(Reason.AUTH_FAILED), "request")
        if failures >= self.settings.auth_max_failures:
            self._ban(src, "auth")
            return  # silence from now on
        self._reply(Reject.of(Reason.AUTH_FAILED))

    def _register(self) -> None:
        """REGISTER: only digest trunks may register (PBXs that register to their provider);
        the registration is accepted (200) but the edge routes by trunk, not by contact."""
        topology = self._store().current_topology()
        if not any(t.auth is not AuthMode.IP for t in topology.trunks.values()):
            self._not_allowed()
            return
        realm = self.settings.auth_realm
        user = _pv("$au")
        if not user:
            KSR.auth.auth_challenge(realm, 0)
            return
        name = self._store().trunk_of_user(user)
        creds = self._store().credentials(name) if name else None
        if creds is None or creds[0] != user:
            _count(metrics.REGISTRATIONS, metrics.label(name), "refused")
            self._auth_failed(user)
            return
        rc = KSR.auth.pv_auth_check(realm, self._secrets().decrypt(creds[1]), 0, 0)
        if rc in (-4, -6):
            KSR.auth.auth_challenge(realm, 0)
            return
        if rc < 0:
            _count(metrics.REGISTRATIONS, metrics.label(name), "refused")
            self._auth_failed(user)
            return
        _count(metrics.REGISTRATIONS, metrics.label(name), "accepted")
        expires = _pv("$hdr(Expires)") or "3600"
        KSR.hdr.append_to_reply(f"Expires: {expires}\r\n")
        KSR.sl.send_reply(200, "OK")

    def _remember(self, reject: Reject, where: str, request: SipRequest | None = None,
                  tried: tuple[str, ...] | list[str] = ()) -> None:
        """Keep a refused initial INVITE's record for ``edgectl explain`` (one SET with a TTL,
        refusals only); a redis problem here never changes the answer."""
        ttl = self.settings.trace_ttl_s
        if ttl <= 0:
            return
        try:
            req = request or self._snapshot()
            self._store().keep_trace(req.call_id, refusal_record(req, reject, self.settings.node, where, tried), ttl)
        except Exception as exc:  # noqa: BLE001 - diagnostics must not fail the call path
            KSR.warn(f"edge: cannot record the refusal of call-id={_pv('$ci')}: {exc}\n")

    def _not_allowed(self) -> None:
        KSR.hdr.append_to_reply("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER\r\n")
        self._reply(Reject.of(Reason.NOT_ALLOWED))

    def _ban(self, src: str, why: str) -> None:
        if KSR.is_myself_srcip():
            return  # never ban the edge's own addresses (local probes, loopback tools)
        KSR.htable.sht_seti(BAN_TABLE, src, 1)
        KSR.notice(f"edge: ban {src} reason={why} ua={_pv('$ua')!r}\n")

    def _cached_topology(self) -> Topology | None:
        """Trunks and agents, cached per worker for ``TRUST_CACHE_S`` (1 s).

        While redis cannot be read the last copy this worker read is kept (a carrier trusted a
        second ago stays trusted during an outage); None when this worker never read one.
        """
        now = time.monotonic()
        if self._topology is None or now - self._topology_at > TRUST_CACHE_S:
            try:
                self._topology = self._store().topology()
            except StoreUnavailable:
                self._store_failed = True  # this request does not wait for redis a second time
            except DataError:  # malformed tables do not heal by waiting: trust nobody new
                self._topology = self._topology or Topology(trunks={}, agents={})
            self._topology_at = now
        return self._topology

    def _trusted(self, src: str) -> bool:
        """Whether ``src`` belongs to a trunk or agent (cached topology).  When this worker
        cannot tell (redis unreadable and no earlier copy) the source is not banned: a
        carrier must not be locked out for ``ban_time_s`` by a routing-store outage, and
        its requests are answered 503 meanwhile."""
        topology = self._cached_topology()
        if topology is None:
            return True
        if topology is not self._trust_of:  # a new copy: forget the answers of the old one
            self._trust_of, self._trust = topology, {}
        trusted = self._trust.get(src)
        if trusted is None:
            if len(self._trust) >= TRUST_MEMO_SIZE:
                self._trust.clear()  # a spray of strangers must not grow it without bound
            trusted = self._trust[src] = classify_source(src, topology) is not None
        return trusted

    def _request(self) -> None:
        method = _pv("$rm")
        self._now_ms = int(time.time() * 1000)
        if method in ("INFO", "BYE") and self._edge_request(method):
            return
        self._store_failed = False
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
            if self.settings.dtmf_log_port and KSR.htable.sht_is_null(CSEQ_TABLE, _pv("$ci")) < 0:
                self._renumber(method)
            self._in_dialog(method)
            return
        if method == "ACK":
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return
        if method == "OPTIONS" and not _pv("$rU"):
            KSR.sl.send_reply(200, "OK")
            return
        if method == "REGISTER":
            try:
                self._register()
            except StoreUnavailable:
                self._reply(Reject.of(Reason.STORE_UNAVAILABLE, self.settings.retry_after_s))
            return
        if method != "INVITE":
            self._not_allowed()
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
        # let the dialog module see every in-dialog request (an ACK confirms the dialog; see
        # kamailio#1182: without it, an ACK racing the 200's callback can leave it unconfirmed)
        KSR.dialog.dlg_manage()
        self._in_dialog_headers()
        self._in_dialog_tls_profile()
        if method == "REFER":
            try:
                refusal = self._refer_refusal()
            except StoreUnavailable:
                refusal = Reject.of(Reason.STORE_UNAVAILABLE, self.settings.retry_after_s)
            if refusal is not None:
                self._reply(refusal)
                return
        if method == "INFO" and self._dtmf_info():
            return
        if method == "BYE":
            self._final_quality(_pv("$ci"), _pv("$dlg(from_tag)"))
            KSR.rtpengine.rtpengine_delete0()
        if method == "ACK":
            self._start_clock()
            self._note_dtmf_call()
            if _has_sdp():
                self._check_answer(_pv("$ft") == _pv("$dlg(from_tag)"))
            self._end_if_media_refused()
        if method in ("INVITE", "UPDATE", "ACK"):
            modes = _modes(_pv(DTMF_VAR))
            from_caller = _pv("$ft") == _pv("$dlg(from_tag)")
            sdp = _has_sdp()
            dtmf_flags = _sdp_flags(modes, from_caller, offer=method != "ACK") if sdp else ()
            # offers name the sender's and receiver's interfaces; answers (the ACK's) keep the offer's
            iface = netsides.direction_flags(_pv(DIRECTION_VAR) or "origination", from_caller,
                                             self.settings.media_sides and method != "ACK")
            if sdp and method != "ACK":
                flags = self._in_dialog_flags(from_caller, (*dtmf_flags, *iface))
            else:
                fill = self._answer_fill(_pv(MEDIA_VAR), from_caller) if sdp else ()
                flags = _flags((*dtmf_flags, *iface, *fill))
            if isinstance(flags, Reject):
                _log_reject(flags, "in-dialog")
                KSR.sl.send_reply(flags.code, flags.reason)
                return
            KSR.rtpengine.rtpengine_manage(flags)
            if method != "ACK":
                KSR.pv.sets(DTMF_AVP, _pv(DTMF_VAR))
                KSR.pv.sets(MEDIA_AVP, _pv(MEDIA_VAR))
                KSR.pv.seti(FROM_CALLER_AVP, 1 if from_caller else 0)
                KSR.pv.seti(REQ_SDP_AVP, 1 if sdp else 0)
                KSR.pv.sets(DIRECTION_AVP, _pv(DIRECTION_VAR) or "origination")
                KSR.tm.t_on_reply(ON_REPLY)
        if method != "ACK" and _pv(CSEQ_AVP):
            KSR.tm.t_on_reply(ON_REPLY)  # its responses get their CSeq number back
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()

    def _renumber(self, method: str) -> None:
        """Renumber an in-dialog request of a call in which the edge sends requests on one side's
        behalf (:mod:`routing.cseq`), before the dialog module records its CSeq: the dialog module's
        own BYEs then follow the renumbered space too.  The original number is kept in
        :data:`CSEQ_AVP` for the responses."""
        call_id, from_tag = _pv("$ci"), _pv("$ft")
        number = int(_pv("$cs") or 0)
        try:
            out = self._cseq_step(call_id, from_tag, lambda seq: cseq.relay(seq, number, method))
        except ValueError as exc:
            KSR.warn(f"edge: call-id={call_id} {method} keeps its CSeq: {exc}\n")
            return
        if out == number:
            return
        KSR.hdr.remove("CSeq")
        KSR.hdr.append(f"CSeq: {out} {method}\r\n")
        KSR.textopsx.msg_apply_changes()
        if method != "ACK":
            KSR.pv.sets(CSEQ_AVP, str(number))

    def _cseq_step(self, call_id: str, from_tag: str,
                   step: Callable[[cseq.SideSeq], tuple[int, cseq.SideSeq]]) -> int:
        """Apply one :mod:`routing.cseq` step to the state of the side whose tag is ``from_tag``, under
        the htable slot lock, so the numbers given out by concurrent workers strictly increase.

        Returns:
            The step's CSeq number.

        Raises:
            ValueError: no map for the call, a malformed one, or the step refused the number.
        """
        KSR.htable.sht_lock(CSEQ_TABLE, call_id)
        try:
            state = cseq.CseqMap.decode(_pv(f"$sht({CSEQ_TABLE}=>{call_id})"))
            from_caller = from_tag == state.caller_tag
            before = state.side(from_caller)
            number, seq = step(before)
            if seq != before:
                KSR.htable.sht_sets(CSEQ_TABLE, call_id, state.with_side(from_caller, seq).encode())
            return number
        finally:
            KSR.htable.sht_unlock(CSEQ_TABLE, call_id)

    def _edge_request(self, method: str) -> bool:
        """An in-dialog request the edge sent to itself on one side's behalf: a DTMF INFO
        (:meth:`_send_info`) or the caller-side BYE of a call the edge ends (:meth:`_hang_up`).
        The INFO is numbered in its side's CSeq space (:func:`routing.cseq.local`); the BYE comes
        numbered from the dialog module's record and marks the call as ended by the edge.  The
        dialog module then sees the request (it records the INFO's number, so its own BYEs go
        above it; the BYE ends the dialog), and it is relayed to the other side from that side's
        socket (``X-Edge-Socket``), through its route set.  Returns False for any other request
        (a forged ``X-Edge-`` header is stripped on the in-dialog path)."""
        token = _pv(f"$hdr({EDGE_INFO_HEADER})")
        if not token or token != self._token or KSR.is_myself_srcip() < 0:
            return False
        if KSR.tmx.t_precheck_trans() > 0:
            KSR.tm.t_check_trans()
            return True
        if KSR.tm.t_check_trans() == 0:
            return True
        call_id, from_tag = _pv("$ci"), _pv("$ft")
        socket_name = _pv(f"$hdr({EDGE_SOCKET_HEADER})")
        if method == "INFO":
            try:
                number = self._cseq_step(call_id, from_tag, cseq.local)
            except ValueError as exc:
                KSR.warn(f"edge: call-id={call_id} no dtmf info: {exc}\n")
                KSR.sl.send_reply(481, "Call/Transaction Does Not Exist")
                return True
            KSR.hdr.remove("CSeq")
            KSR.hdr.append(f"CSeq: {number} INFO\r\n")
        else:
            KSR.pv.seti(EDGE_HANGUP_AVP, 1)  # dialog:end below: the edge ended the call
        KSR.textops.remove_hf_re("^" + pipeline.EDGE_HEADER_PREFIX)
        KSR.textopsx.msg_apply_changes()
        KSR.dialog.dlg_manage()  # records the INFO's number / ends the dialog on the BYE
        if method == "INFO" and KSR.dialog.is_known_dlg() < 0:
            KSR.sl.send_reply(481, "Call/Transaction Does Not Exist")
            return True
        if socket_name:
            KSR.pv.sets("$fs", socket_name)
        first = _URI_IN_BRACKETS.search(_pv("$hdr(Route)"))
        if first:
            KSR.pv.sets("$du", first.group(1))
        self._in_dialog_tls_profile()  # a new TLS connection to the carrier is checked with the trunk's CA
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()
        return True

    def _dialog_of(self, call_id: str, caller_tag: str, callee_tag: str) -> dict[str, dict[str, str]] | None:
        """What the dialog module keeps of a call's two sides (uri, tag, contact, route set, socket,
        last CSeq), read from the timer process (``dlg_get``); None when it knows no such dialog."""
        if KSR.dialog.dlg_get(call_id, caller_tag, callee_tag) < 0:
            return None
        sides = {}
        for side, prefix, tag in (("caller", "from", caller_tag), ("callee", "to", callee_tag)):
            sides[side] = {"uri": _pv(f"$dlg({prefix}_uri)"), "tag": tag,
                           "contact": _pv(f"$dlg({prefix}_contact)").strip().strip("<>"),
                           "route": _pv(f"$dlg({prefix}_rs)"), "socket": _pv(f"$dlg({prefix}_bindaddr)"),
                           "cseq": _pv(f"$dlg({prefix}_cseq)")}
        return sides

    def _on_behalf(self, call_id: str, method: str, sides: dict[str, dict[str, str]], from_caller: bool,
                   cseq_number: int, extra: str = "", body: str = "", loop: bool = False) -> bool:
        """Send ``method`` in the dialog as the caller (``from_caller``) or the callee, toward the
        other side (tm ``t_uac_send``).  With ``loop`` it goes to the edge's own UDP listener first
        (:meth:`_edge_request`), marked with the node's token; else straight to the other side,
        from its socket, through its route set.  Returns False when tm refused it."""
        me, peer = (sides["caller"], sides["callee"]) if from_caller else (sides["callee"], sides["caller"])
        headers = (f"From: <{me['uri']}>;tag={me['tag']}\r\nTo: <{peer['uri']}>;tag={peer['tag']}\r\n"
                   f"Call-ID: {call_id}\r\nCSeq: {cseq_number} {method}\r\nMax-Forwards: 70\r\n")
        if peer["route"]:
            headers += f"Route: {peer['route']}\r\n"
        first = _URI_IN_BRACKETS.search(peer["route"])
        nexthop, sock = (first.group(1) if first else ""), peer["socket"]
        if loop:
            host, _, port = self.settings.loop_socket.split(":", 1)[1].rpartition(":")
            # a wildcard listener is reached on loopback
            nexthop = f"sip:{ {'0.0.0.0': '127.0.0.1', '[::]': '[::1]'}.get(host, host)}:{port}"
            headers += f"{EDGE_INFO_HEADER}: {self._token}\r\n{EDGE_SOCKET_HEADER}: {peer['socket']}\r\n"
            sock = self.settings.loop_socket
        return KSR.tm.t_uac_send(method, peer["contact"], nexthop, sock, headers + extra, body) >= 0

    def _hang_up(self, call_id: str, caller_tag: str, callee_tag: str, extra: str = "") -> bool:
        """End an answered call with a BYE to each side (RFC 3261 section 15.1.1), each numbered
        above the CSeqs its receiver has had from the other side (the dialog module's record): to
        the caller straight away on the callee's behalf, and to the callee on the caller's behalf
        through the edge itself, so the dialog module ends the dialog on it (``dialog:end``, slots
        released).  ``extra`` holds further header lines (``Reason``, RFC 3326).  Kamailio 5.6.3's
        ``dlg.end_dlg`` is not used: when the first side's 200 arrives before the second BYE is
        built, that BYE is never sent (``terminating non-confirmed dialogs not supported``).

        Returns:
            False when the edge cannot do it itself (no UDP listener, the dialog is unknown):
            the caller then falls back to ``dlg.end_dlg``.
        """
        if not (self.settings.loop_socket and caller_tag and callee_tag):
            return False
        sides = self._dialog_of(call_id, caller_tag, callee_tag)
        if sides is None or not sides["caller"]["contact"] or not sides["callee"]["contact"]:
            return False
        to_caller = self._on_behalf(call_id, "BYE", sides, False, int(sides["callee"]["cseq"] or 0) + 1, extra)
        to_callee = self._on_behalf(call_id, "BYE", sides, True, int(sides["caller"]["cseq"] or 0) + 1, extra,
                                    loop=True)
        if not (to_caller and to_callee):
            KSR.warn(f"edge: call-id={call_id} tm refused a BYE (caller: {to_caller}, callee: {to_callee})\n")
        return to_callee

    def _in_dialog_tls_profile(self) -> None:
        """An in-dialog request toward the carrier over TLS may open a new connection (another
        local socket than the INVITE's): name the trunk so it is verified with the trunk's CA too."""
        if not self.settings.tls_enabled:
            return
        trunk = _pv("$dlg_var(edge_trunk)")
        from_caller = _pv("$ft") == _pv("$dlg(from_tag)")
        toward_carrier = from_caller == (_pv(DIRECTION_VAR) == "termination")
        if trunk and toward_carrier and "transport=tls" in (_pv("$du") or _pv("$ru")).lower():
            KSR.pv.sets("$xavp(tls=>server_id)", trunk)

    def _in_dialog_headers(self) -> None:
        """Apply the sender's header policy (X- allow-list, identity trust) to an in-dialog request,
        as to the initial INVITE.  The trunk and agent come from the worker's topology cache (read
        at most once a second); when redis cannot be read the sender gets the strictest policy."""
        names = header_names(_pv("$mb"))
        if not any(n[:2].lower() == "x-" or canonical(n) in IDENTITY_HEADERS for n in names):
            return
        topology = self._cached_topology() or Topology(trunks={}, agents={})
        allowed, trust = in_dialog_policy(
            _pv(DIRECTION_VAR) or "origination", _pv("$ft") == _pv("$dlg(from_tag)"),
            topology.trunks.get(_pv("$dlg_var(edge_trunk)")), topology.agents.get(_pv("$dlg_var(edge_agent)")))
        for name in headers_to_remove(names, allowed, trust):
            KSR.hdr.remove(name)

    def _in_dialog_flags(self, from_caller: bool, dtmf_flags: tuple[str, ...]) -> str | Reject:
        """rtpengine flags of a re-INVITE/UPDATE offer: the call's two media policies, offerer first
        (the caller when the From tag is the dialog's), so SRTP and codecs hold on both legs."""
        text = _pv(MEDIA_VAR)
        if not text:
            return _flags(dtmf_flags)
        sides = json.loads(text)
        caller, callee = MediaPolicy.from_json(sides.get("caller")), MediaPolicy.from_json(sides.get("callee"))
        sender, receiver = (caller, callee) if from_caller else (callee, caller)
        return _offer_flags(media.parse_sdp(_pv("$rb")), sender, receiver, dtmf_flags, self.settings.media_fill)

    def _sides(self, text: str) -> tuple[MediaPolicy, MediaPolicy] | None:
        """(caller, callee) media policies from their JSON form (:data:`MEDIA_VAR`); None when unknown."""
        if not text:
            return None
        sides = json.loads(text)
        return MediaPolicy.from_json(sides.get("caller")), MediaPolicy.from_json(sides.get("callee"))

    def _reply_offer_flags(self, sdp: media.SdpOffer | None, from_caller: bool,
                           dtmf_flags: tuple[str, ...]) -> str:
        """rtpengine flags of an offer made in a reply (delayed offer, RFC 3261 section 13.2.1): the
        sender's policy holds on its leg (its codecs, its SRTP) and the receiver is offered its own
        (codecs in its order, ptime, protocol), exactly as for an offer in a request.  When the
        offer breaks its sender's policy the call cannot be refused any more (a 2xx is final): the
        receiver gets an offer with its own protocol only, the refusal is kept with the call and
        the call is ended at its ACK (:meth:`_end_if_media_refused`)."""
        sides = self._sides(_pv(MEDIA_AVP))
        if sides is None or sdp is None:
            return _flags(dtmf_flags)
        caller, callee = sides
        sender, receiver = (caller, callee) if from_caller else (callee, caller)
        flags = _offer_flags(sdp, sender, receiver, dtmf_flags, self.settings.media_fill)
        if not isinstance(flags, Reject):
            return flags
        code = int(_pv("$rs") or 0)
        _log_reject(flags, f"delayed-offer reply={code}")
        if 200 <= code < 300:
            self._refuse_media(_pv("$ci"), flags)
        return " ".join((media.fallback_flags(receiver), *dtmf_flags))

    def _answer_fill(self, sides_text: str, from_caller: bool) -> tuple[str, ...]:
        """Flags of an SDP answer from the caller (``from_caller``) or the callee for its side's
        ``fill_silence`` (:func:`routing.media.answer_flags`)."""
        sides = self._sides(sides_text)
        if sides is None:
            return ()
        return media.answer_flags(sides[0] if from_caller else sides[1], self.settings.media_fill)

    def _keepalives(self, caller: MediaPolicy, callee: MediaPolicy) -> None:
        """In-dialog OPTIONS keepalives of the dialog module toward the sides that want them
        (``ka-src``: the caller, ``ka-dst``: the callee of the hop being tried)."""
        for prop, side in (("ka-src", caller), ("ka-dst", callee)):
            if side.sip_keepalive:
                KSR.dialog.dlg_set_property(prop)
            else:
                KSR.dialog.dlg_reset_property(prop)

    def _check_answer(self, from_caller: bool) -> None:
        """The SDP answer in an ACK (to a delayed offer) must follow its sender's policy."""
        sides = self._sides(_pv(MEDIA_VAR))
        answer = media.parse_sdp(_pv("$rb"))
        if sides is None or answer is None:
            return
        refusal = media.answer_refusal(answer, sides[0] if from_caller else sides[1])
        if refusal is not None:
            _log_reject(refusal, "delayed-offer answer")
            self._refuse_media(_pv("$ci"), refusal)

    def _check_reply_answer(self, answer: media.SdpOffer, from_caller: bool, code: int) -> None:
        """The SDP answer in the 2xx of an initial INVITE must follow its sender's policy
        (:func:`routing.media.answer_refusal`: SRTP a side requires, a codec it allows).  A 2xx is
        final, so a breach is kept with the call, which is ended at its ACK (:meth:`_refuse_media`)."""
        sides = self._sides(_pv(MEDIA_AVP))
        if sides is None:
            return
        refusal = media.answer_refusal(answer, sides[0] if from_caller else sides[1])
        if refusal is not None:
            _log_reject(refusal, f"answer reply={code}")
            self._refuse_media(_pv("$ci"), refusal)

    def _refuse_media(self, call_id: str, reject: Reject) -> None:
        """Keep a media-policy refusal that came after the 2xx with the call (ended at its ACK)."""
        state = self._state(call_id)
        if not state:
            return
        state[MEDIA_REFUSED] = [reject.code, reject.reason, reject.tag]
        self._set_state(call_id, state)

    def _end_if_media_refused(self) -> None:
        """At the ACK: a call whose delayed offer or answer broke a policy is ended now: its deadline
        is moved to now, so the call clock sends BYE to both sides (with a ``Reason`` naming the
        cause, RFC 3326) within a second and the slots are released.  A 2xx cannot be turned into a
        488 (RFC 3261 section 13.3.1.4: the callee considers the call set up once it sends it), so
        the ACK completes the handshake first: the callee is never left retransmitting its 2xx."""
        call_id = _pv("$ci")
        refused = self._state(call_id).get(MEDIA_REFUSED)
        if not refused:
            return
        KSR.notice(f"edge: call-id={call_id} media broke the policy after the answer ({refused[2]}): ending it\n")
        self._end_now(call_id, f"policy:{refused[2]}", time.time())

    def _end_now(self, call_id: str, reason: str, now: float) -> None:
        """Have the call clock end an answered call at its next tick (BYE to both sides, slots
        released), keeping ``reason`` as the call's ``media_end_reason``; redis trouble only
        loses the reason."""
        try:
            self._store().record_media(call_id, {"media_end_reason": reason}, self.settings.media_quality_ttl_s)
        except StoreUnavailable:
            pass
        deadline = _pv(f"$sht({DEADLINE_TABLE}=>{call_id})")
        _, sep, ids = deadline.partition(":")
        if sep and not ids.startswith(CLEANUP):
            KSR.htable.sht_sets(DEADLINE_TABLE, call_id, f"{int(now)}:{ids}")

    def _set_media_vars(self, plan: CallPlan) -> None:
        """Keep the media policies of the hop being tried with the dialog (re-INVITEs, watchdog)."""
        caller, callee = MediaPolicy.from_json(plan.caller_media), MediaPolicy.from_json(plan.current.media)
        sides = json.dumps({"caller": plan.caller_media, "callee": plan.current.media})
        KSR.pv.sets(MEDIA_VAR, sides)
        KSR.pv.sets(MEDIA_AVP, sides)
        self._keepalives(caller, callee)
        KSR.pv.sets(RTP_TIMEOUT_VAR, str(media.rtp_timeout_s(caller, callee) or ""))

    def _media_refusal(self, plan: CallPlan) -> Reject | None:
        """The 488 of an offer its own side's policy does not allow (SRTP required, no allowed codec)."""
        offer = media.parse_sdp(_pv("$rb")) if _has_sdp() else None
        if offer is None:
            return None  # delayed offer (the offer comes in the 2xx) or no audio stream
        result = media.offer_flags(offer, MediaPolicy.from_json(plan.caller_media),
                                   MediaPolicy.from_json(plan.current.media))
        if not isinstance(result, Reject):
            return None
        return replace(result, direction=plan.direction, trunk=plan.trunk, agent=plan.agent)

    def _ng(self) -> NgClient:
        if self._ngclient is None:
            self._ngclient = NgClient(self.settings.rtpengine_ng_host, self.settings.rtpengine_ng_port, 0.5)
        return self._ngclient

    def _final_quality(self, call_id: str, caller_tag: str, extra: dict[str, str] | None = None) -> None:
        """Read the call's media statistics from rtpengine (before its session is deleted) and keep
        them: ``media_*`` fields in the call record (so its call record carries them) and
        ``edge:media:{node}:{call-id}`` (TTL ``media.quality_ttl_s``).  Problems are logged, never
        raised (the call is ending anyway)."""
        try:
            fields = quality.summary(self._ng().query(call_id), caller_tag, time.time())
        except NgError as exc:
            KSR.info(f"edge: no media statistics for call-id={call_id}: {exc}\n")
            fields = {}
        fields.update(extra or {})
        if not fields:
            return
        try:
            self._store().record_media(call_id, fields, self.settings.media_quality_ttl_s)
        except StoreUnavailable as exc:
            KSR.err(f"edge: cannot keep the media quality of call-id={call_id}: {exc}\n")

    def _dtmf_info(self) -> bool:
        """An in-dialog INFO carrying a DTMF digit (``application/dtmf-relay`` or ``application/dtmf``).

        The digit is appended to the call record.  When the other side does not use
        INFO (routing.dtmf.info_action), the edge answers 200 itself and has rtpengine
        play the digit into the media toward it (ng ``play DTMF``, selected by the
        INFO's From-tag: the sender's leg); if rtpengine refuses, the INFO is relayed
        as it is.  A DTMF body without a digit gets ``400 Bad DTMF Signal``.

        Returns:
            True when the request has been answered here, False to relay it.
        """
        ctype = _pv("$cT")
        if ctype.split(";", 1)[0].strip().lower() not in dtmf.INFO_TYPES:
            return False
        modes = _modes(_pv(DTMF_VAR))
        from_caller = _pv("$ft") == _pv("$dlg(from_tag)")
        side = "caller" if from_caller else "callee"
        try:
            digit, duration = dtmf.parse_info(ctype, _pv("$rb"))
        except dtmf.DtmfError as exc:
            KSR.info(f"edge: dtmf info refused call-id={_pv('$ci')} side={side}: {exc}\n")
            KSR.tm.t_newtran()
            KSR.tm.t_reply(400, "Bad DTMF Signal")
            return True
        self._record_dtmf(side, digit, dtmf.DtmfMode.INFO)
        if modes is None:
            return False
        sender, receiver = modes if from_caller else (modes[1], modes[0])
        if dtmf.info_action(sender, receiver) == "relay":
            return False
        s = self.settings
        flags = dtmf.play_flags(digit, duration, s.dtmf_duration_ms, s.dtmf_volume_db)
        # rtpengine's play_dtmf has no KEMI export in Kamailio 5.6: called as a cfg function
        if self._msg.call_function("play_dtmf", flags) < 0:
            KSR.warn(f"edge: rtpengine cannot play dtmf call-id={_pv('$ci')} digit={digit}: relaying the INFO\n")
            return False
        KSR.info(f"edge: dtmf call-id={_pv('$ci')} side={side} digit={digit} info->{receiver}\n")
        KSR.tm.t_newtran()
        KSR.tm.t_reply(200, "OK")
        return True

    def _record_dtmf(self, side: str, digit: str, via: dtmf.DtmfMode) -> None:
        """Append a digit to the call record (``dtmf`` field); redis trouble only logs."""
        try:
            self._store().record_dtmf(_pv("$ci"), dtmf.record_entry(side, digit, via))
        except StoreUnavailable as exc:
            KSR.err(f"edge: cannot record dtmf of call-id={_pv('$ci')}: {exc}\n")

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
            auth_user=_pv("$au"),
            header_names=tuple(header_names(_pv("$mb"))),
            received_ms=self._now_ms,
        )

    def _initial_invite(self) -> None:
        store = self._store()
        request = self._snapshot()
        if self._store_failed:  # the screening already waited for redis in this request
            self._store_unavailable(store, request.call_id, "no answer to the trust check", admitted=False)
            return
        try:
            decision = pipeline.route_initial_invite(request, store, self.settings)
            if isinstance(decision, Authenticate):
                trunk = self._authenticate(decision.trunk, decision.topology)
                if trunk is None:
                    return  # challenged, refused or banned
                decision = pipeline.originate(request, trunk, decision.topology, store, self.settings)
        except StoreUnavailable as exc:
            self._store_unavailable(store, request.call_id, str(exc), admitted=True)
            return
        except (DataError, SecretError) as exc:
            KSR.err(f"edge: malformed routing data: {exc}\n")
            self._reply(Reject.of(Reason.INTERNAL_ERROR))
            self._remember(Reject.of(Reason.INTERNAL_ERROR), "request", request)
            return
        if isinstance(decision, Reject):
            self._reply(decision)
            self._remember(decision, "request", request)
            return
        self._relay(decision)

    def _store_unavailable(self, store: RedisStore, call_id: str, why: str, admitted: bool) -> None:
        """Answer an initial INVITE 503 (Retry-After) because redis did not answer, then clean up.

        The answer is stateful: this refusal took redis timeouts, so the caller's INVITE
        retransmissions (RFC 3261 section 17.1.1.2) are queued behind it and must meet the
        transaction instead of being routed as new calls.  It goes out before the cleanup:
        when an admission may have been sent (``admitted``), its slots are released with a
        fence (routing/lua/release.lua) so that redis running it late, after a hang, joins nothing.
        """
        KSR.err(f"edge: routing store unavailable: {why}\n")
        self._cdrs().mark_down()  # its call record goes to the spool without waiting again
        created = KSR.tm.t_newtran()
        if created == 0:
            return  # a retransmission: its transaction already answers it
        self._reply(Reject.of(Reason.STORE_UNAVAILABLE, self.settings.retry_after_s), stateful=created > 0)
        if admitted:
            try:
                store.release(call_id, fence_s=ADMISSION_FENCE_S)
            except StoreUnavailable:
                pass  # then the lease expires on its own (lease_ttl_s)

    def _relay(self, decision: Relay) -> None:
        plan = decision.plan
        store = self._store()
        try:
            for name in decision.remove:
                KSR.hdr.remove(name)
            for name, value in decision.headers.items():
                KSR.hdr.append(f"{name}: {value}\r\n")
            refusal = self._media_refusal(plan)
            if refusal is not None:
                store.release(plan.call_id)
                self._reply(refusal)
                self._remember(refusal, "request")
                return
            KSR.rr.record_route()
            # the rtpengine offer is made per branch (ksr_branch_manage), each hop with its own policy;
            # an INVITE without SDP (delayed offer) gets its offer from the 2xx and its answer from the ACK
            modes = (plan.caller_dtmf, plan.current.dtmf)
            sdp = _has_sdp()
            codecs = sdp_codecs(_pv("$rb")) if sdp else []
            # a named timeout route makes the dialog module run ksr_dialog_event(msg, "dialog:timeout")
            # when the dialog's timer expires (the keepalive's end), before its BYEs
            KSR.pv.sets("$dlg_ctx(timeout_route)", DIALOG_EVENT)
            KSR.dialog.dlg_manage()
            self._set_media_vars(plan)
            KSR.pv.sets("$dlg_var(edge_agent)", plan.agent)
            KSR.pv.sets("$dlg_var(edge_trunk)", plan.trunk or plan.current.trunk or "")
            KSR.pv.sets(DIRECTION_VAR, plan.direction)
            KSR.pv.sets(DIRECTION_AVP, plan.direction)
            KSR.pv.sets(MAX_DURATION_VAR, str(plan.current.max_duration_s or ""))
            KSR.pv.sets(DTMF_VAR, ",".join(modes))
            KSR.pv.sets(DTMF_AVP, ",".join(modes))
            KSR.pv.seti(FROM_CALLER_AVP, 1)
            KSR.pv.seti(REQ_SDP_AVP, 1 if sdp else 0)
            if KSR.tm.t_newtran() < 0:
                store.release(plan.call_id)
                KSR.sl.sl_reply_error()
                return
            KSR.pv.sets(START_AVP, f"{(self._now_ms or time.time() * 1000) / 1000:.3f}")
            _count(metrics.CALLS_ATTEMPTED, *_hop_labels(plan))
            self._set_state(plan.call_id, self._plan_state(plan, {"cseq": _pv("$cs"), "start": self._now_ms, "cc": codecs}))
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
            # the hop tried decides the call's media policies and DTMF modes (termination hops
            # differ per trunk); set here, not in the branch route
            self._set_media_vars(plan)
            KSR.pv.sets(DTMF_VAR, f"{plan.caller_dtmf},{target.dtmf}")
            KSR.pv.sets(DTMF_AVP, f"{plan.caller_dtmf},{target.dtmf}")
            KSR.pv.sets("$ru", target.uri)
            self._send_socket(plan.direction, target.uri)
            if self.settings.tls_enabled and ";transport=tls" in target.uri.lower() and target.trunk:
                # selects the trunk's own CA profile in tls.cfg, if it has one (routing/tlsprofiles.py)
                KSR.pv.sets("$xavp(tls=>server_id)", target.trunk)
            KSR.pv.sets(PLAN_AVP, plan.dumps())
            KSR.pv.sets(LABELS_AVP, "|".join(_hop_labels(plan)))
            KSR.tm.t_on_failure(ON_FAILURE)
            KSR.tm.t_on_reply(ON_REPLY)
            KSR.tm.t_on_branch(ON_BRANCH)
            if KSR.tm.t_relay() > 0:
                return
            if KSR.pv.get(MEDIA_ERROR_AVP):
                self._media_unavailable(plan)
                return
            KSR.warn(f"edge: cannot send to {target.label} call-id={plan.call_id}\n")
            plan.record(500, "Send Failed", answered=False)
            failed = _hop_labels(plan)
            nxt = plan.advance(store, self.settings.admission_ttl_s)
            if nxt is None:
                self._give_up(plan)
                return
            _count(metrics.FAILOVERS, *failed[:2])
            target = nxt

    def _send_socket(self, direction: str, uri: str) -> None:
        """On an edge with one network per side, the hop's request leaves from a socket of the
        callee's side (Kamailio ``$fs``), so its Via, Record-Route and Contact name only that
        side's (advertised) address; rr's double Record-Route keeps in-dialog requests on it."""
        if not self.settings.sip_sockets:
            return
        side = netsides.other_side(netsides.caller_side(direction))
        sock = netsides.send_socket(self.settings.sip_sockets, side, uri)
        if sock:
            KSR.pv.sets("$fs", sock)

    def _media_unavailable(self, plan: CallPlan) -> None:
        """rtpengine refused or did not answer the offer: release the slots, answer 503 (no failover)."""
        try:
            self._store().release(plan.call_id)
        except StoreUnavailable:
            pass  # the lease expires on its own
        reject = Reject(503, "Media Relay Unavailable", "rtpengine", self.settings.retry_after_s,
                        direction=plan.direction, trunk=plan.trunk, agent=plan.agent)
        _log_reject(reject, "media")
        direction, trunk, _ = _hop_labels(plan)
        _count(metrics.CALLS_FAILED, direction, trunk, metrics.sip_class(reject.code))
        self._record_unanswered(plan, reject.code, reject.reason, reject.tag)
        KSR.hdr.append_to_reply(f"Retry-After: {reject.retry_after_s}\r\n")
        KSR.tm.t_reply(reject.code, reject.reason)
        self._remember(reject, "request")

    def ksr_branch_manage(self, msg: object) -> int:
        """Branch route of every relayed initial INVITE: the rtpengine offer with this hop's media
        policy (:func:`routing.media.offer_flags`) and DTMF flags (:func:`routing.dtmf.sdp_flags`).
        When rtpengine fails the branch is dropped and :data:`MEDIA_ERROR_AVP` set, so
        :meth:`_send` answers 503 instead of trying the next hop."""
        try:
            text = _pv(PLAN_AVP)
            if not _has_sdp() or not text:
                return 1  # delayed offer: rtpengine sees the offer in the 2xx (ksr_onreply_manage)
            plan = CallPlan.loads(text)
            modes = (plan.caller_dtmf, plan.current.dtmf)
            iface = netsides.direction_flags(plan.direction, True, self.settings.media_sides)
            flags = _offer_flags(media.parse_sdp(_pv("$rb")), MediaPolicy.from_json(plan.caller_media),
                                 MediaPolicy.from_json(plan.current.media),
                                 (*_sdp_flags(modes, True, offer=True), *iface), self.settings.media_fill)
            if isinstance(flags, Reject) or KSR.rtpengine.rtpengine_offer(flags) < 0:
                KSR.err(f"edge: rtpengine offer failed call-id={_pv('$ci')} flags={flags!r}\n")
                KSR.pv.seti(MEDIA_ERROR_AVP, 1)
                KSR.set_drop()  # app_python3 has no KSR.x.drop (only KSR.x.modf)
                return 1
        except Exception:  # noqa: BLE001
            KSR.err("edge: exception in branch route: " + traceback.format_exc().replace("\n", " | ") + "\n")
            KSR.pv.seti(MEDIA_ERROR_AVP, 1)
            KSR.set_drop()
        return 1

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
        direction, trunk, _ = _hop_labels(plan)
        _count(metrics.CALLS_FAILED, direction, trunk, metrics.sip_class(reject.code))
        self._record_unanswered(plan, reject.code, reject.reason, reject.tag)
        if reject.retry_after_s is not None:
            KSR.hdr.append_to_reply(f"Retry-After: {reject.retry_after_s}\r\n")
        KSR.tm.t_reply(reject.code, reject.reason)
        self._remember(reject, "failover", tried=plan.tried)

    # -- transaction callbacks -----------------------------------------------

    def ksr_onreply_manage(self, msg: object) -> int:
        """Replies to relayed requests: SDP answer into rtpengine, early-media marking."""
        try:
            number = _pv(CSEQ_AVP)
            if number:  # a renumbered request (_renumber): the response gets the sender's number back
                KSR.textops.subst_hf("CSeq", f"/^[0-9]+/{number}/", "f")
            code = int(_pv("$rs") or 0)
            refused = _pv(EARLY_REFUSED_AVP)
            if refused and code < 200:
                KSR.set_drop()  # the branch is being cancelled: the caller gets nothing more of it
                return 1
            if refused and 200 <= code < 300:
                # the callee answered before our CANCEL reached it: end the call at its ACK
                rcode, reason, tag = json.loads(refused)
                self._refuse_media(_pv("$ci"), Reject(int(rcode), str(reason), str(tag)))
            if 200 <= code < 300 and _pv("$rm") == "INVITE":
                self._answered(code)
            if _has_sdp():
                # the reply comes from the side that did not send the request; it answers an
                # SDP offer, or makes the offer when the request had none (delayed offer)
                modes = _modes(_pv(DTMF_AVP))
                from_caller = not KSR.pv.get(FROM_CALLER_AVP)
                offer = not KSR.pv.get(REQ_SDP_AVP)
                sdp = media.parse_sdp(_pv("$rb"))
                if 100 < code < 200 and self._refuse_reliable_provisional(code, sdp, from_caller, offer):
                    return 1
                nat = media.nat_flags(sdp.address, _pv("$si"), _PRIVATE_NETWORKS) if sdp is not None else ()
                iface = netsides.direction_flags(_pv(DIRECTION_AVP) or "origination", from_caller,
                                              self.settings.media_sides)
                if offer:
                    # delayed offer: the policy of both sides, as for an offer in a request
                    # (_offer_flags adds the NAT flags); manage makes it an offer
                    KSR.rtpengine.rtpengine_manage(
                        self._reply_offer_flags(sdp, from_caller, (*_sdp_flags(modes, from_caller, True), *iface)))
                else:
                    if 200 <= code < 300 and sdp is not None and _pv(PLAN_AVP):
                        self._check_reply_answer(sdp, from_caller, code)
                    # an answer names no interface: rtpengine keeps the ones the offer chose (a
                    # direction list here is applied to the legs in the offer's roles, and would
                    # give the offerer the answerer's interface)
                    flags = _flags((*_sdp_flags(modes, from_caller, offer), *nat,
                                    *self._answer_fill(_pv(MEDIA_AVP), from_caller)))
                    # explicit: the initial offer was made with rtpengine_offer in the branch route,
                    # which manage's own offer/answer detection does not see
                    KSR.rtpengine.rtpengine_answer(flags)
                if 180 <= code < 200:
                    KSR.pv.seti(EARLY_MEDIA_AVP, 1)
            self._reply_metrics(code)
        except Exception:  # noqa: BLE001
            KSR.err("edge: exception in reply route: " + traceback.format_exc().replace("\n", " | ") + "\n")
        return 1

    def _refuse_reliable_provisional(self, code: int, sdp: media.SdpOffer | None, from_caller: bool,
                                     offer: bool) -> bool:
        """A reliable 18x (RFC 3262) of an initial INVITE whose SDP breaks its sender's media policy
        (:func:`routing.media.reply_refusal`): its SDP is final for the call (the 2xx will not change
        it), so the call is refused now.  The 18x is dropped (the caller never sees it, nor PRACKs
        it), the branch is cancelled (tmx ``t_cancel_branches("this")``: CANCEL downstream, RFC 3261
        section 9.1), and the failure route that follows the callee's 487 answers the caller with
        the refusal (:meth:`_refuse_early`).  An unreliable 18x's SDP is only a preview of the 2xx
        (RFC 3261 section 13.2.1) and keeps passing: the 2xx decides.

        Returns:
            True when the reply was refused (dropped).
        """
        if sdp is None or not _pv(PLAN_AVP):
            return False
        if not media.reliable_provisional(code, _pv("$(hdr(Require)[*])"), _pv("$hdr(RSeq)")):
            return False
        sides = self._sides(_pv(MEDIA_AVP))
        if sides is None:
            return False
        sender, receiver = sides if from_caller else (sides[1], sides[0])
        refusal = media.reply_refusal(sdp, sender, receiver, offer)
        if refusal is None:
            return False
        _log_reject(refusal, f"reliable-provisional reply={code}")
        KSR.pv.sets(EARLY_REFUSED_AVP, json.dumps([refusal.code, refusal.reason, refusal.tag]))
        if KSR.tmx.t_cancel_branches("this") < 0:
            KSR.warn(f"edge: cannot cancel the branch of call-id={_pv('$ci')}: its final reply decides\n")
        KSR.set_drop()
        return True

    def _refuse_early(self, plan: CallPlan, refused: str) -> None:
        """Failure route of a call whose reliable 18x broke the media policy (the cancelled branch
        answered 487, or timed out): answer the caller with the refusal and a ``Reason`` header
        naming the cause (RFC 3326, as the BYEs of a refusal after the 2xx), release the slots and
        write the call record; no failover (the policy is the call's, not the hop's)."""
        code, reason, tag = json.loads(refused)
        reject = Reject(int(code), str(reason), str(tag), direction=plan.direction, trunk=plan.trunk,
                        agent=plan.agent)
        KSR.rtpengine.rtpengine_delete0()
        try:
            self._store().release(plan.call_id)
        except StoreUnavailable as exc:  # the lease then expires on its own (lease_ttl_s)
            KSR.err(f"edge: cannot release slots of call-id={plan.call_id}: {exc}\n")
        _count(metrics.CALLS_FAILED, *_hop_labels(plan)[:2], metrics.sip_class(reject.code))
        hop = f"{plan.current.label}={reject.tag}"
        self._record_unanswered(plan, reject.code, reject.reason, reject.tag, extra_tried=hop)
        KSR.hdr.append_to_reply(media.reason_header(reject) + "\r\n")
        KSR.tm.t_reply(reject.code, reject.reason)
        self._remember(reject, "reliable-provisional", tried=[*plan.tried, hop])

    def _reply_metrics(self, code: int) -> None:
        """PDD on the first 18x, setup time and an answered call on the first 2xx of an
        initial INVITE (only those transactions carry the metric labels AVP)."""
        labels = _pv(LABELS_AVP)
        if not labels:
            return
        direction, trunk, agent = (labels.split("|") + ["none", "none"])[:3]
        started = float(_pv(START_AVP) or 0) or time.time()
        if 180 <= code < 200 and not KSR.pv.get(PDD_DONE_AVP):
            KSR.pv.seti(PDD_DONE_AVP, 1)
            _observe(metrics.POST_DIAL_DELAY, time.time() - started, direction, trunk)
        elif 200 <= code < 300 and not KSR.pv.get(ANSWERED_AVP):
            KSR.pv.seti(ANSWERED_AVP, 1)
            _observe(metrics.SETUP_TIME, time.time() - started, direction, trunk)
            _count(metrics.CALLS_ANSWERED, direction, trunk, agent)

    def _answered(self, code: int) -> None:
        """First 2xx of an initial INVITE: note the answer time, the hop that answered and
        the callee's codecs for the call record, and show them in the live call hash, whose
        leases now last the longest a call may (``lease_ttl_s``; the admission's were
        ``admission_ttl_s``).  Until the caller's ACK starts the call clock (:meth:`_start_clock`)
        the call's deadline is its ACK's (:data:`NO_ACK`, :data:`ACK_WAIT_S`): a caller that gave
        up never ACKs, and the call clock then releases the slots."""
        call_id = _pv("$ci")
        state = self._state(call_id)
        if not state.get("start") or state.get("answer"):
            return  # not ours, or a retransmitted 2xx / re-INVITE answer
        now = int(time.time() * 1000)
        text = _pv(PLAN_AVP)
        if text:
            plan = CallPlan.loads(text)
            self._plan_state(plan, state)
            state["tried"] = list(plan.tried) + [f"{plan.current.label}={code}"]
        state["answer"] = now
        state["ce"] = sdp_codecs(_pv("$rb")) if _has_sdp() else []
        self._set_state(call_id, state)
        if KSR.htable.sht_is_null(DEADLINE_TABLE, call_id) > 0:
            KSR.htable.sht_sets(DEADLINE_TABLE, call_id, f"{now // 1000 + ACK_WAIT_S}:{NO_ACK}::{_pv('$ft')}")
        try:
            self._store().update_call(call_id, {
                "answer_ms": str(now), "codecs_caller": ",".join(state.get("cc", [])),
                "codecs_callee": ",".join(state["ce"]), "trunk": state.get("trunk", ""),
            }, extend_s=self.settings.lease_ttl_s)
        except StoreUnavailable as exc:
            self._cdrs().mark_down()
            KSR.warn(f"edge: cannot note the answer of call-id={call_id} in redis: {exc}\n")

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
            _log_reject(Reject.of(Reason.INTERNAL_ERROR), "failure")
            KSR.tm.t_reply(500, "Internal Server Error")
        return 1

    def _failure(self) -> None:
        text = _pv(PLAN_AVP)
        if KSR.tm.t_is_canceled() > 0:
            KSR.rtpengine.rtpengine_delete0()
            if text:
                cancelled = CallPlan.loads(text)
                self._record_unanswered(cancelled, 487, "Request Terminated", cancelled=True)
                direction, trunk, _ = _hop_labels(cancelled)
                _count(metrics.CALLS_FAILED, direction, trunk, metrics.sip_class(487))
            return
        if not text:
            return
        plan = CallPlan.loads(text)
        refused = _pv(EARLY_REFUSED_AVP)
        if refused:
            self._refuse_early(plan, refused)
            return
        code = int(_pv("$T_reply_code") or 408)
        reason = _pv("$T_reply_reason") or "Request Timeout"
        answered = KSR.tm.t_branch_timeout() < 0 and code not in (477, 478, 479)
        early = bool(KSR.pv.get(EARLY_MEDIA_AVP))
        if code in (401, 407) and answered and self._answer_challenge(plan):
            self._send(plan, failure_route=True)  # the same hop, now with credentials
            return
        if 300 <= code < 400 and answered:
            refusal = self._redirect_refusal(plan)
            if refusal is not None:
                KSR.rtpengine.rtpengine_delete0()
                _log_reject(refusal, f"redirect contact={_pv('$T_rpl($ct)')}")
                _count(metrics.CALLS_FAILED, *_hop_labels(plan)[:2], metrics.sip_class(refusal.code))
                self._record_unanswered(plan, refusal.code, refusal.reason, refusal.tag,
                                        extra_tried=f"{plan.current.label}={code}")
                KSR.tm.t_reply(refusal.code, refusal.reason)
                return
        plan.record(code, reason, answered)
        failed = _hop_labels(plan)
        if not should_fail_over(code, answered, early):
            KSR.rtpengine.rtpengine_delete0()
            self._record_unanswered(plan, code, reason)
            _count(metrics.CALLS_FAILED, *failed[:2], metrics.sip_class(code))
            return  # tm relays this final response upstream
        try:
            nxt = plan.advance(self._store(), self.settings.admission_ttl_s)
        except StoreUnavailable:
            nxt = None
        if nxt is None:
            self._give_up(plan)
            return
        _count(metrics.FAILOVERS, *failed[:2])
        KSR.info(f"edge: failover call-id={plan.call_id} to={nxt.label} after={plan.tried[-1]}\n")
        self._send(plan, failure_route=True)

    def _answer_challenge(self, plan: CallPlan) -> bool:
        """Answer a carrier's 401/407 once per hop with the trunk's credentials (Kamailio uac
        module, RFC 3261 section 22.2); False when the trunk has none or this hop was tried."""
        trunk = plan.current.trunk
        if not trunk or plan.index in plan.auth_tried:
            return False
        creds = self._store().credentials(trunk)
        if creds is None:
            KSR.warn(f"edge: {plan.current.label} challenged call-id={plan.call_id} with {_pv('$T_reply_code')} "
                     f"and trunk {trunk} has no credentials (edgectl trunk set-password)\n")
            return False
        challenge = _pv("$T_rpl($hdr(WWW-Authenticate))") or _pv("$T_rpl($hdr(Proxy-Authenticate))")
        match = _REALM.search(challenge)
        KSR.pv.sets("$avp(edge_auth_user)", creds[0])
        KSR.pv.sets("$avp(edge_auth_pass)", self._secrets().decrypt(creds[1]))
        KSR.pv.sets("$avp(edge_auth_realm)", match.group(1) if match else "")
        plan.auth_tried.append(plan.index)
        if KSR.uac.uac_auth() < 0:
            KSR.warn(f"edge: cannot answer the challenge of {plan.current.label} call-id={plan.call_id}\n")
            return False
        return True

    def _start_clock(self) -> None:
        """On the ACK of an answered call, note its deadline (trunk's max_duration_s, else the
        node's maximum) in the shared ``deadline`` table read by :meth:`ksr_call_clock`."""
        waiting = KSR.htable.sht_gete(DEADLINE_TABLE, _pv("$ci")) or ""
        if waiting and str(waiting).split(":", 2)[1:2] != [NO_ACK]:
            return  # already running (re-INVITE ACK, retransmission)
        if _pv("$dlg(state)") not in ("3", "4"):
            return  # the dialog already ended (a late ACK after the BYE)
        limit = _pv(MAX_DURATION_VAR)
        seconds = int(limit) if limit else self.settings.lease_ttl_s - 60
        now = int(time.time())
        entry = f"{now + seconds}:{_pv('$dlg(h_entry)')}:{_pv('$dlg(h_id)')}:{_pv('$ft')}:{_pv('$tt')}"
        KSR.htable.sht_sets(DEADLINE_TABLE, _pv("$ci"), entry)
        timeout = _pv(RTP_TIMEOUT_VAR)
        if timeout.isdigit() and int(timeout) > 0:
            watch = f"{now + self.settings.media_check_interval_s}:{timeout}:{now}:{_pv('$ft')}"
            KSR.htable.sht_sets(MEDIA_TABLE, _pv("$ci"), watch)

    def ksr_call_clock(self, msg: object, event: str = "") -> int:
        """rtimer callback ``(msg, "rtimer")``, once a second in one timer process: end answered calls past their
        deadline with a BYE to each side (:meth:`_hang_up`; ``dlg.end_dlg`` without a UDP listener)."""
        try:
            self._replay_spool()
        except Exception:  # noqa: BLE001
            KSR.err("edge: exception replaying call records: " + traceback.format_exc().replace("\n", " | ") + "\n")
        try:
            self._watch_media()
        except Exception:  # noqa: BLE001 - the clock must keep ticking
            KSR.err("edge: exception in media watchdog: " + traceback.format_exc().replace("\n", " | ") + "\n")
        try:
            now = int(time.time())
            expired = []
            if KSR.htable.sht_iterator_start(CLOCK_ITERATOR, DEADLINE_TABLE) < 0:
                return 1
            while KSR.htable.sht_iterator_next(CLOCK_ITERATOR) > 0:
                value = _pv(f"$shtitval({CLOCK_ITERATOR})")
                deadline, _, ids = value.partition(":")
                if deadline.isdigit() and int(deadline) <= now:
                    expired.append((_pv(f"$shtitkey({CLOCK_ITERATOR})"), ids))
            KSR.htable.sht_iterator_end(CLOCK_ITERATOR)
            for call_id, ids in expired:
                h_entry, h_id, from_tag, to_tag = (ids.split(":", 3) + ["", "", ""])[:4]
                if h_entry.isdigit() and h_id.isdigit():
                    params: list[object] = [int(h_entry), int(h_id)]
                    refused = self._state(call_id).get(MEDIA_REFUSED)
                    if refused:
                        reject = Reject(int(refused[0]), str(refused[1]), str(refused[2]))
                        params.append(media.reason_header(reject) + "\r\n")
                    else:
                        KSR.notice(f"edge: call-id={call_id} reached its maximum duration: ending it\n")
                    # dialog:end normally removes this entry; if it has not fired by then, the clock
                    # frees the slots and the media session itself (set first: dialog:end may come
                    # from a worker before the BYEs below return)
                    KSR.htable.sht_sets(DEADLINE_TABLE, call_id, f"{now + CLEANUP_GRACE_S}:{CLEANUP}::{from_tag}")
                    if not self._hang_up(call_id, from_tag, to_tag, str(params[2]) if len(params) > 2 else ""):
                        KSR.jsonrpcs.exec(json.dumps(
                            {"jsonrpc": "2.0", "method": "dlg.end_dlg", "params": params, "id": 1}
                        ))
                else:
                    KSR.htable.sht_rm(DEADLINE_TABLE, call_id)
                    KSR.htable.sht_rm(MEDIA_TABLE, call_id)
                    if h_entry == NO_ACK:
                        KSR.warn(f"edge: call-id={call_id} answered but no ACK within {ACK_WAIT_S} s: "
                                 "releasing its slots\n")
                    else:
                        KSR.warn(f"edge: call-id={call_id} ended without dialog:end: releasing its slots\n")
                    self._final_quality(call_id, from_tag)
                    KSR.rtpengine.rtpengine_delete(f"call-id={call_id} from-tag={from_tag}")
                    self._finish_call(call_id, hangup="edge")
        except Exception:  # noqa: BLE001 - the clock must keep ticking
            KSR.err("edge: exception in call clock: " + traceback.format_exc().replace("\n", " | ") + "\n")
        return 1

    def _note_dtmf_call(self) -> None:
        """On the ACK of an answered call, keep what :meth:`ksr_dtmf_log` needs to attribute the
        digits rtpengine reports: the caller's From-tag and both sides' DTMF modes."""
        if not self.settings.dtmf_log_port or KSR.htable.sht_is_null(DTMF_CALL_TABLE, _pv("$ci")) < 0:
            return
        modes = _pv(DTMF_VAR)
        pair = _modes(modes)
        if pair is None:
            return
        call_id, caller_tag, callee_tag = _pv("$ci"), _pv("$dlg(from_tag)"), _pv("$dlg(to_tag)")
        KSR.htable.sht_sets(DTMF_CALL_TABLE, call_id, f"{caller_tag},{modes}")
        to_callee, to_caller = dtmf.info_needed(pair[0], pair[1]), dtmf.info_needed(pair[1], pair[0])
        if not (to_callee or to_caller) or not callee_tag:
            return
        invite = int(_pv("$cs") or 0)  # the ACK repeats the INVITE's number
        state = cseq.CseqMap(caller_tag, callee_tag, cseq.SideSeq(invite, 0, invite, invite, invite), cseq.SideSeq())
        KSR.htable.sht_sets(CSEQ_TABLE, call_id, state.encode())
        # the digits travel as INFO: take them out of the media toward that side, so they arrive once
        for sender_tag, mode, needed in ((caller_tag, pair[0], to_callee), (callee_tag, pair[1], to_caller)):
            if needed:
                try:
                    self._ng().command("block DTMF", **{"call-id": call_id, "from-tag": sender_tag,
                                                        **dtmf.block_params(mode)})
                except NgError as exc:
                    KSR.warn(f"edge: call-id={call_id} digits stay in the media too: {exc}\n")

    def _dtmf_socket(self) -> socket.socket | None:
        if self._dtmf_sock is None and not self._dtmf_sock_failed:
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.setblocking(False)
                sock.bind(("127.0.0.1", self.settings.dtmf_log_port))
                self._dtmf_sock = sock
            except OSError as exc:
                self._dtmf_sock_failed = True  # said once; digits seen in the media are then not recorded
                KSR.err(f"edge: cannot receive rtpengine dtmf events on 127.0.0.1:{self.settings.dtmf_log_port}: {exc}\n")
        return self._dtmf_sock

    def ksr_dtmf_log(self, msg: object, event: str = "") -> int:
        """rtimer callback, five times a second in one timer process: read the DTMF events rtpengine
        reports (``dtmf-log-dest``, JSON over UDP) and append each digit to its call record as
        ``{side}:{digit}:{mode}`` (routing.dtmf.logged_entry).  Digits of calls not answered on this
        edge, and the edge's own plays of INFO digits, are skipped."""
        try:
            sock = self._dtmf_socket()
            for _ in range(DTMF_LOG_BATCH if sock else 0):
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                try:
                    digit = dtmf.parse_log_event(data)
                except dtmf.DtmfError as exc:
                    KSR.warn(f"edge: {exc}\n")
                    continue
                known = _pv(f"$sht({DTMF_CALL_TABLE}=>{digit.call_id})")
                caller_tag, _, modes = known.partition(",")
                pair = _modes(modes)
                if pair is None:
                    continue
                entry = dtmf.logged_entry(digit, caller_tag, pair)
                if entry is None:
                    continue
                KSR.info(f"edge: dtmf call-id={digit.call_id} {entry}\n")
                from_caller = digit.source_tag == caller_tag
                if dtmf.info_needed(*(pair if from_caller else pair[::-1])):
                    self._send_info(digit, from_caller)
                try:
                    self._store().record_dtmf(digit.call_id, entry)
                except StoreUnavailable as exc:
                    KSR.err(f"edge: cannot record dtmf of call-id={digit.call_id}: {exc}\n")
        except Exception:  # noqa: BLE001 - the timer must keep ticking
            KSR.err("edge: exception in dtmf log: " + traceback.format_exc().replace("\n", " | ") + "\n")
        return 1
    def _send_info(self, digit: dtmf.LoggedDigit, from_caller: bool) -> None:
        """Send ``digit``, seen in the media of the caller (``from_caller``) or callee, to the other side
        as a DTMF INFO on the sender's behalf (RFC 6086; body :func:`routing.dtmf.info_body`).  The
        request goes to the edge itself first (:meth:`_edge_request` numbers it and relays it), so the
        dialog module records its CSeq.  Problems are logged: the digit is in the call record anyway."""
        call_id = digit.call_id
        try:
            state = cseq.CseqMap.decode(_pv(f"$sht({CSEQ_TABLE}=>{call_id})"))
        except ValueError:
            KSR.warn(f"edge: call-id={call_id} digit {digit.digit} not sent as INFO: the call is not known\n")
            return
        sides = self._dialog_of(call_id, state.caller_tag, state.callee_tag) if self.settings.loop_socket else None
        if sides is None:
            KSR.warn(f"edge: call-id={call_id} digit {digit.digit} not sent as INFO: "
                     f"{'no dialog' if self.settings.loop_socket else 'no UDP listener'}\n")
            return
        duration = max(dtmf.MIN_DURATION_MS, min(dtmf.MAX_DURATION_MS, digit.duration_ms or self.settings.dtmf_duration_ms))
        ctype, body = dtmf.info_body(digit.digit, duration)
        # numbered by _edge_request; the 1 here is a placeholder
        if not self._on_behalf(call_id, "INFO", sides, from_caller, 1, f"Content-Type: {ctype}\r\n", body, loop=True):
            KSR.warn(f"edge: call-id={call_id} digit {digit.digit} not sent as INFO: tm refused it\n")
            return
        KSR.info(f"edge: dtmf call-id={call_id} digit={digit.digit} -> info to the {'callee' if from_caller else 'caller'}\n")

    def _watch_media(self) -> None:
        """Media watchdog, from the call clock: every ``media.check_interval_s`` per answered call, ask
        rtpengine for its statistics (ng ``query``), keep them in the call record (``media_*``), and
        end a call that received no RTP from any side for its ``rtp_timeout_s``: its deadline is
        moved to now, so the clock sends BYE to both sides and the slots are released.  A call
        rtpengine no longer knows (it timed the session out itself) counts as silent; rtpengine
        not answering at all never ends a call."""
        now = time.time()
        due = []
        if KSR.htable.sht_iterator_start(MEDIA_ITERATOR, MEDIA_TABLE) < 0:
            return
        while KSR.htable.sht_iterator_next(MEDIA_ITERATOR) > 0:
            parts = _pv(f"$shtitval({MEDIA_ITERATOR})").split(":", 3)
            if len(parts) == 4 and parts[0].isdigit() and int(parts[0]) <= now:
                due.append((_pv(f"$shtitkey({MEDIA_ITERATOR})"), int(parts[1]), int(parts[2]), parts[3]))
        KSR.htable.sht_iterator_end(MEDIA_ITERATOR)
        interval = self.settings.media_check_interval_s
        for call_id, timeout, since, caller_tag in due:
            try:
                reply = self._ng().query(call_id)
            except NgError as exc:
                if "unknown call" not in exc.reason.lower():
                    KSR.warn(f"edge: media watchdog cannot query call-id={call_id}: {exc}\n")
                    KSR.htable.sht_sets(MEDIA_TABLE, call_id, f"{int(now) + interval}:{timeout}:{since}:{caller_tag}")
                    continue
                reply = {}
            idle = quality.idle_s(reply, now, since)
            if reply:
                try:
                    self._store().record_media(call_id, quality.summary(reply, caller_tag, now))
                except StoreUnavailable as exc:
                    KSR.err(f"edge: cannot record media of call-id={call_id}: {exc}\n")
            if idle < timeout:
                KSR.htable.sht_sets(MEDIA_TABLE, call_id, f"{int(now) + interval}:{timeout}:{since}:{caller_tag}")
                continue
            KSR.htable.sht_rm(MEDIA_TABLE, call_id)
            KSR.notice(f"edge: call-id={call_id} had no RTP for {idle:.0f} s (rtp_timeout_s={timeout}): ending it\n")
            self._end_now(call_id, "rtp_timeout", now)

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
        """dialog module ``event_callback``: release the call's slots when it ends or fails; note why
        the dialog module is about to end a call whose timer expired (``dialog:timeout``)."""
        try:
            if event == "dialog:timeout":
                self._dialog_timeout()
            if event in ("dialog:end", "dialog:failed"):
                call_id = _pv("$dlg(callid)") or _pv("$ci")
                if not call_id:
                    return 1
                KSR.htable.sht_rm(DEADLINE_TABLE, call_id)
                if self.settings.dtmf_log_port:
                    KSR.htable.sht_rm(DTMF_CALL_TABLE, call_id)
                    KSR.htable.sht_rm(CSEQ_TABLE, call_id)
                KSR.htable.sht_rm(MEDIA_TABLE, call_id)
                # a BYE passing the request route, unless it is the edge's own (_hang_up)
                peer_bye = _pv("$rm") == "BYE" and not _pv("$rs") and not KSR.pv.get(EDGE_HANGUP_AVP)
                if event == "dialog:end" and not peer_bye:
                    # ended by the edge (call clock or dialog timeout: the dialog module sent the
                    # BYEs itself): no BYE passed the request route, so the media is closed here
                    self._final_quality(call_id, _pv("$dlg(from_tag)"))
                    KSR.rtpengine.rtpengine_delete(f"call-id={call_id} from-tag={_pv('$dlg(from_tag)')}")
                if not peer_bye:
                    hangup = "edge"
                elif _pv("$ft") == _pv("$dlg(from_tag)"):
                    hangup = "caller"
                else:
                    hangup = "callee"
                self._finish_call(call_id, hangup)
        except Exception:  # noqa: BLE001 - slots then expire with their lease
            KSR.err("edge: cannot release slots: " + traceback.format_exc().replace("\n", " | ") + "\n")
        return 1

    def _dialog_timeout(self) -> None:
        """``dialog:timeout`` (the dialog's timer expired; the dialog module sends BYE to both sides
        right after, ``send_bye``).  When a failed keepalive cut the call's life
        (:func:`routing.media.keepalive_ended`) the call keeps ``media_end_reason=sip_keepalive``.
        The call clock is told to clean the call up in ``CLEANUP_GRACE_S`` as after its own
        hang-up (:meth:`_hang_up`): in 5.6.3 ``dlg_bye_all`` skips ``dialog:end`` when the first side's
        200 to its BYE ends the dialog before the second BYE is sent."""
        call_id = _pv("$dlg(callid)")
        clock = _pv(f"$sht({DEADLINE_TABLE}=>{call_id})") if call_id else ""
        if not clock or clock.partition(":")[2].startswith(CLEANUP):
            return  # never answered by an ACK (no clock ran), or being ended by the call clock
        dflags, lifetime = _pv("$dlg(dflags)"), _pv("$dlg(lifetime)")
        sides = self._sides(_pv(MEDIA_VAR))
        keepalive = sides is not None and (sides[0].sip_keepalive or sides[1].sip_keepalive)
        if (dflags.isdigit() and lifetime.isdigit()
                and media.keepalive_ended(int(dflags), int(lifetime), bool(keepalive), True)):
            KSR.notice(f"edge: call-id={call_id} ended by the dialog module: a side with sip_keepalive "
                       "stopped answering in-dialog OPTIONS\n")
            try:
                self._store().record_media(call_id, {"media_end_reason": media.KEEPALIVE_END_REASON},
                                           self.settings.media_quality_ttl_s)
            except StoreUnavailable as exc:
                KSR.err(f"edge: cannot keep the end reason of call-id={call_id}: {exc}\n")
        from_tag = clock.split(":", 4)[3] if clock.count(":") >= 3 else _pv("$dlg(from_tag)")
        KSR.htable.sht_sets(DEADLINE_TABLE, call_id, f"{int(time.time()) + CLEANUP_GRACE_S}:{CLEANUP}::{from_tag}")

    # -- registration trunks ----------------------------------------------------

    def ksr_reply_route(self, msg: object) -> int:
        """Global reply route (``kemi.reply_route_callback``), run for every reply before ``tm``:
        notes the final replies to the edge's own REGISTERs (``uac_reg``) by their To URI.  The edge
        relays no REGISTER, so every REGISTER reply it receives answers one of its own."""
        try:
            if _pv("$rm") == "REGISTER":
                code = int(_pv("$rs") or 0)
                if code >= 200:
                    reason = _pv("$rr").replace("|", " ")
                    KSR.htable.sht_sets(REG_REPLY_TABLE, _pv("$tu"), f"{code}|{reason}|{int(time.time())}")
        except Exception:  # noqa: BLE001 - the reply itself must go on to tm
            KSR.err("edge: exception in reply route: " + traceback.format_exc().replace("\n", " | ") + "\n")
        return 1

    def _rpc(self, method: str, *params: object) -> object:
        """Run a Kamailio RPC in this process (jsonrpcs ``exec``); returns its result.

        Raises:
            RuntimeError: the RPC answered an error (its code and message, never its parameters).
        """
        KSR.jsonrpcs.exec(json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}))
        body = _pv("$jsonrpl(body)")
        answer = json.loads(body) if body else {}
        if "error" in answer:
            error = answer["error"]
            raise RuntimeError(f"{method}: {error.get('code')} {error.get('message')}")
        return answer.get("result")

    def ksr_registration_sync(self, msg: object, event: str = "") -> int:
        """rtimer callback (one timer process): make the ``uac`` module's registrations match the
        registration trunks in redis, then publish each one's state (see :mod:`routing.registration`)."""
        try:
            self._sync_registrations()
        except StoreUnavailable as exc:
            KSR.warn(f"edge: registration sync: routing store unavailable: {exc}\n")
        except Exception:  # noqa: BLE001 - the timer must keep ticking
            KSR.err("edge: exception in registration sync: " + traceback.format_exc().replace("\n", " | ") + "\n")
        return 1

    def _sync_registrations(self) -> None:
        store = self._store()
        topology = store.current_topology()
        creds = {}
        for trunk in topology.trunks.values():
            if trunk.register is not None:
                found = store.credentials(trunk.name)
                if found is not None:
                    creds[trunk.name] = found
        want, problems = registration.wanted(topology.trunks.values(), creds, dict(self.settings.reg_contacts),
                                             (self.settings.sip_sockets or {}).get(netsides.CARRIER))
        dump = self._rpc("uac.reg_dump") or []
        present = {str(entry.get("l_uuid")): entry for entry in dump if isinstance(entry, dict)}
        have = {uuid: self._registered.get(uuid, "") for uuid in present}
        remove, add = registration.sync_plan(want, have)
        for uuid in remove:
            try:
                self._rpc("uac.reg_unregister", "l_uuid", uuid)  # Expires: 0 to the registrar (RFC 3261 10.2.2)
            except RuntimeError:
                pass  # not registered: nothing to take back
            self._rpc("uac.reg_remove", uuid)
            self._registered.pop(uuid, None)
            KSR.info(f"edge: registration {uuid} removed\n")
        for uuid in add:
            record = want[uuid]
            try:
                password = self._secrets().decrypt(record.token)
            except SecretError as exc:
                problems[record.trunk] = str(exc)
                continue
            self._rpc("uac.reg_add", *record.rpc_params(password))
            self._registered[uuid] = record.fingerprint
            KSR.info(f"edge: registration of trunk {record.trunk} to {record.registrar} added (contact {uuid})\n")
        now = int(time.time())
        states: dict[str, dict[str, str]] = {}
        for uuid, record in want.items():
            if record.trunk in problems:
                continue
            value = KSR.htable.sht_get(REG_REPLY_TABLE, record.to_uri)
            reply = value if isinstance(value, str) else ""
            entry = None if uuid in add else present.get(uuid)
            state = registration.state_of(entry, reply, now, self.settings.reg_timer_interval_s)
            state.update(trunk=record.trunk, registrar=record.registrar, contact=f"sip:{uuid}@{record.contact_addr}",
                         addresses=",".join(_resolve(record.registrar.rsplit(":", 1)[0])))
            states[record.trunk] = state
        for trunk, problem in problems.items():
            states[trunk] = {"trunk": trunk, "state": "failed", "code": "", "reason": problem, "expires_at": "",
                             "next_refresh": "", "updated": str(now)}
        store.publish_registrations(states, ttl_s=max(60, 3 * self.settings.reg_sync_interval_s))

    def ksr_xhttp_event(self, msg: object, event: str = "") -> int:
        """xhttp ``event_callback``: ``GET /metrics`` on the metrics listener answers the
        xhttp_prom exposition; anything else gets 404, and HTTP on a SIP port 403."""
        try:
            if int(_pv("$Rp") or 0) != self.settings.metrics_port:
                KSR.xhttp.xhttp_reply(403, "Forbidden", "text/plain", "metrics are served on the metrics port only\n")
            elif KSR.xhttp_prom.check_uri() > 0:
                KSR.xhttp_prom.dispatch()
            else:
                KSR.xhttp.xhttp_reply(404, "Not Found", "text/plain", "try /metrics\n")
        except Exception:  # noqa: BLE001
            KSR.err("edge: exception in xhttp event: " + traceback.format_exc().replace("\n", " | ") + "\n")
            KSR.xhttp.xhttp_reply(500, "Internal Server Error", "text/plain", "")
        return 1

    # app_python3 calls this unless kemi.onsend_route_callback is "none"; keep it harmless.

    def ksr_onsend_route(self, msg: object) -> int:
        """onsend route (unused)."""
        return 1


def _resolve(host: str) -> list[str]:
    """Addresses of a registrar given by DNS name ([] for an IP literal or when resolution fails);
    runs in the registration timer process only, never on the call path."""
    import ipaddress
    import socket

    try:
        ipaddress.ip_address(host.strip("[]"))
        return []
    except ValueError:
        pass
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_UDP)})
    except OSError:
        return []


def mod_init() -> Router:
    """``app_python3`` entry: build the router from ``$BYOC_EDGE_RUNTIME``.

    Raises:
        RuntimeError: the variable is not set (Kamailio then refuses to start,
            instead of routing with defaults that may point at the wrong redis).
    """
    if not os.environ.get(runtime.ENV_VAR):
        raise RuntimeError(f"{runtime.ENV_VAR} is not set: start Kamailio with `edgectl up` or set it to routing.json")
    return Router(runtime.load())
