"""An initial INVITE that passed the native screening and admission: the routing decision
(:mod:`routing.pipeline`), then the relay: headers, dialog and its variables, the call-record
state, and the send to the plan's hop with its rtpengine offer flags for the native branch route
(``templates/kamailio.routes.j2``); a hop that cannot be sent to is failed over at once."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import media
from ..call import metrics
from ..call import pipeline
from ..call import sessiontimer
from ..call import sides as netsides
from ..call.callerid import diversion
from ..call.cdr import sdp_codecs
from ..call.decision import Authenticate, Reason, Reject, Relay
from ..tables.model import DataError, MediaPolicy
from ..call.plan import CallPlan, Target
from ..call.presentation import render
from ..ops.secrets import SecretError
from ..tables.store import RedisStore, StoreUnavailable
from . import callstate as cs
from . import announce, failure, fastanswer, holdanswer, identitycheck, records, screening
from .callstate import CallRecordState
from .mediaflags import offer_flags, sdp_flags
from .worker import Worker, count, has_sdp, hop_labels, pv

__all__ = ["initial_invite", "relay", "send"]

#: how long (s) a call whose admission timed out stays fenced in redis (routing/lua/release.lua)
ADMISSION_FENCE_S = 10


def initial_invite(w: Worker) -> None:
    """Decide (:func:`routing.pipeline.route_initial_invite`, digest authentication when the
    decision asks for it) and refuse or relay."""
    store = w.open_store()
    request = w.snapshot()
    if w.store_failed:  # the screening already waited for redis in this request
        _store_unavailable(w, store, request.call_id, "no answer to the trust check", admitted=False)
        return
    try:
        decision = pipeline.route_initial_invite(request, store, w.settings)
        if isinstance(decision, Authenticate):
            trunk = screening.authenticate(w, decision.trunk, decision.topology)
            if trunk is None:
                return  # challenged, refused or banned
            decision = pipeline.originate(request, trunk, decision.topology, store, w.settings)
    except StoreUnavailable as exc:
        _store_unavailable(w, store, request.call_id, str(exc), admitted=True)
        return
    except (DataError, SecretError) as exc:
        KSR.err(f"edge: malformed routing data: {exc}\n")
        w.reply(Reject.of(Reason.INTERNAL_ERROR))
        w.remember(Reject.of(Reason.INTERNAL_ERROR), "request", request)
        return
    if isinstance(decision, Reject):
        tried: list[str] = []
        if decision.announce:  # a DID's fallback announcement first (stateful: its transaction waits)
            created = KSR.tm.t_newtran()
            if created == 0:
                return  # a retransmission: its transaction answers it
            if announce.start(w, decision, tried):
                w.record_refusal(decision, tried)
            else:
                w.reply(decision, stateful=created > 0)
        else:
            w.reply(decision)
        w.remember(decision, "request", request, tried=tried)
        return
    relay(w, decision)


def _store_unavailable(w: Worker, store: RedisStore, call_id: str, why: str, admitted: bool) -> None:
    """Answer an initial INVITE 503 (Retry-After) because redis did not answer, then clean up.

    The answer is stateful: this refusal took redis timeouts, so the caller's INVITE
    retransmissions (RFC 3261 section 17.1.1.2) are queued behind it and must meet the
    transaction instead of being routed as new calls.  It goes out before the cleanup:
    when an admission may have been sent (``admitted``), its slots are released with a
    fence (routing/lua/release.lua) so that redis running it late, after a hang, joins nothing.
    """
    KSR.err(f"edge: routing store unavailable: {why}\n")
    w.cdrs().mark_down()  # its call record goes to the spool without waiting again
    created = KSR.tm.t_newtran()
    if created == 0:
        return  # a retransmission: its transaction already answers it
    w.reply(Reject.of(Reason.STORE_UNAVAILABLE, w.settings.retry_after_s), stateful=created > 0)
    if admitted:
        try:
            store.release(call_id, fence_s=ADMISSION_FENCE_S)
        except StoreUnavailable:
            pass  # then the lease expires on its own (lease_ttl_s)


def relay(w: Worker, decision: Relay, transfer: dict[str, str] | None = None) -> None:
    """Relay an initial INVITE along a routing decision's plan (also a bridged transfer's leg,
    :mod:`.bridge`, whose ``transfer`` facts go into its record state from the start):
    headers, record-route, dialog and its variables, record state, send."""
    plan = decision.plan
    store = w.open_store()
    try:
        for name in decision.remove:
            KSR.hdr.remove(name)
        headers = decision.headers
        if plan.verify_identity:  # a trunk with stir_verify: the carrier's Identity header checked
            plan.identity = identitycheck.check(w, plan)
            headers = {**headers, identitycheck.HDR_IDENTITY: plan.identity}
        if headers:
            # added per branch (native branch route): an agent hop gets them, a carrier hop of the
            # DID's fallback to a number gets a Diversion instead (send)
            KSR.pv.sets(cs.AGENT_HEADERS_AVP, "".join(f"{n}: {v}\r\n" for n, v in headers.items()))
        body = pv("$rb") if has_sdp() else ""
        offer = media.parse_sdp(body) if body else None  # parsed once for the refusal check and the hop's flags
        # the first hop's offer flags, made once: they are also the refusal check (an offer its own side's
        # policy does not allow: SRTP required, no allowed codec), as the flags' Reject does not depend on
        # the DTMF and silence-filling options (routing.call.media.offer_flags)
        policies = _policies(plan)
        flags = _hop_offer(w, plan, offer, policies)
        if isinstance(flags, Reject):
            refusal = replace(flags, direction=plan.direction, trunk=plan.trunk, agent=plan.agent)
            store.release(plan.call_id)
            w.reply(refusal)
            w.remember(refusal, "request")
            return
        KSR.rr.record_route()
        # the rtpengine offer is made per branch (native branch route, flags from _hop_offer), each hop with its own policy;
        # an INVITE without SDP (delayed offer) gets its offer from the 2xx and its answer from the ACK
        codecs = sdp_codecs(body) if body else []
        # a named timeout route makes the dialog module run ksr_dialog_event(msg, "dialog:timeout")
        # when the dialog's timer expires (the keepalive's end), before its BYEs
        KSR.pv.sets("$dlg_ctx(timeout_route)", cs.DIALOG_TIMEOUT_ROUTE)
        KSR.dialog.dlg_manage()
        _present_caller(plan, decision.remove)
        if plan.stir and w.settings.stir_key_file:
            _sign(w, plan.stir)
        if body and plan.direction == "origination":
            KSR.pv.sets(cs.SDP_VAR, body)  # the carrier's offer: a bridged transfer's leg offers it (bridge.py)
        KSR.pv.sets(cs.AGENT_VAR, plan.agent)
        KSR.pv.sets(cs.TRUNK_VAR, plan.trunk or plan.current.trunk or "")
        KSR.pv.sets(cs.DIRECTION_VAR, plan.direction)
        KSR.pv.sets(cs.DIRECTION_AVP, plan.direction)
        KSR.pv.sets(cs.MAX_DURATION_VAR, str(plan.current.max_duration_s or ""))
        KSR.pv.seti(cs.FROM_CALLER_AVP, 1)
        KSR.pv.seti(cs.REQ_SDP_AVP, 1 if body else 0)
        if body and plan.direction == "termination" and not sessiontimer.supports_timer(pv("$hdr(Supported)")):
            # the native onsend_route keeps the INVITE as sent (rtpengine's SDP): should the carrier make itself
            # the refresher, its pure refresh re-INVITEs are answered with it (sessiontimers.keep_answer)
            KSR.pv.seti(cs.SENT_INVITE_AVP, 1)
        if KSR.tm.t_newtran() < 0:
            store.release(plan.call_id)
            KSR.sl.sl_reply_error()
            return
        started_ms = w.now_ms or int(time.time() * 1000)
        KSR.pv.sets(cs.START_AVP, f"{started_ms / 1000:.3f}")
        KSR.pv.seti(cs.START_S_AVP, started_ms // 1000)
        KSR.pv.seti(cs.START_US_AVP, started_ms % 1000 * 1000)
        count(metrics.CALLS_ATTEMPTED, *hop_labels(plan))
        if plan.ringback_ms:
            # the native rtimer route RINGBACK sends the caller 180 when this is due and no 18x came
            due_ms = started_ms + plan.ringback_ms
            KSR.htable.sht_sets(cs.RINGBACK_TABLE, plan.call_id, f"{due_ms // 1000}:{due_ms % 1000 * 1000}:{pv('$cs')}")
        state = CallRecordState(cseq=pv("$cs"), start_ms=w.now_ms, codecs_caller=codecs, transfer=transfer)
        records.save(plan.call_id, records.plan_state(plan, state))
        send(w, plan, failure_route=False, offer=offer, flags=flags, policies=policies)
    except BaseException:
        store.release(plan.call_id)
        raise


def send(w: Worker, plan: CallPlan, failure_route: bool, offer: media.SdpOffer | None = None,
         flags: str | None = None, policies: tuple[MediaPolicy, MediaPolicy] | None = None) -> None:
    """Relay to the plan's current hop; on an immediate send error, move on (failover), and
    when no hop is left end the attempt (:func:`routing.kamailio.failure.give_up`).  ``offer`` is
    the INVITE's SDP when the caller parsed it already (else it is read here); ``flags``, the
    current hop's rtpengine offer flags when the caller made them already (:func:`_hop_offer`), and
    ``policies`` its (caller, callee) media policies (:func:`_policies`)."""
    store = w.open_store()
    target = plan.current
    while True:
        if failure_route:
            KSR.pv.sets(cs.MAX_DURATION_VAR, str(target.max_duration_s or ""))
            KSR.pv.sets(cs.TRUNK_VAR, target.trunk or plan.trunk)
        # the hop tried decides the call's media policies and DTMF modes (termination hops
        # differ per trunk); set here, not in the branch route
        policies = policies or _policies(plan)
        callee = _set_media_vars(plan, policies, fresh=not failure_route and plan.index == 0)
        KSR.pv.sets(cs.DTMF_VAR, f"{plan.caller_dtmf},{target.dtmf}")
        KSR.pv.sets(cs.DTMF_AVP, f"{plan.caller_dtmf},{target.dtmf}")
        KSR.pv.sets("$ru", target.uri)
        _send_socket(w, plan.direction, target.uri)
        if w.settings.tls_enabled and ";transport=tls" in target.uri.lower() and target.trunk:
            # selects the trunk's own CA profile in tls.cfg, if it has one (routing/tlsprofiles.py)
            KSR.pv.sets("$xavp(tls=>server_id)", target.trunk)
        KSR.pv.sets(cs.PLAN_AVP, plan.dumps())
        _hop_headers(plan, target)
        labels = hop_labels(plan)
        KSR.pv.sets(cs.LABELS_AVP, "|".join(labels))
        KSR.pv.sets(cs.HOP_DIRECTION_AVP, labels[0])
        KSR.pv.sets(cs.HOP_TRUNK_AVP, labels[1])
        hop_flags = flags if flags is not None else _hop_offer(w, plan, offer, policies)
        flags = policies = None  # a next hop makes its own
        if isinstance(hop_flags, Reject):
            KSR.err(f"edge: rtpengine offer failed call-id={plan.call_id} flags={hop_flags!r}\n")
            failure.media_unavailable(w, plan)
            return
        KSR.pv.sets(cs.OFFER_AVP, hop_flags)
        fastanswer.arm(w, plan, callee, offer=bool(hop_flags))
        KSR.tm.t_on_failure(cs.ON_FAILURE)
        KSR.tm.t_on_reply(cs.ON_REPLY)
        KSR.tm.t_on_branch(cs.ON_BRANCH)
        if target.answer_timeout_ms:
            # the agent's answer timeout bounds both tm timers of this branch: a URI that sends
            # nothing, or rings without answering, is failed over after it (tm t_set_fr, ms)
            answer = target.answer_timeout_ms
            KSR.tm.t_set_fr(answer, min(answer, w.settings.failover_timeout_ms))
        holdanswer.arm(w, plan)
        if KSR.tm.t_relay() > 0:
            return
        if KSR.pv.get(cs.MEDIA_ERROR_AVP):
            failure.media_unavailable(w, plan)
            return
        KSR.warn(f"edge: cannot send to {target.label} call-id={plan.call_id}\n")
        plan.record(500, "Send Failed", answered=False)
        failed = hop_labels(plan)
        nxt = plan.advance(store, w.settings.admission_ttl_s)
        if nxt is None:
            failure.give_up(w, plan)
            return
        count(metrics.FAILOVERS, *failed[:2])
        target = nxt


#: Privacy header values (RFC 3323 section 4.2, RFC 3325 section 9.3) that ask for an anonymous caller
_PRIVATE = frozenset({"id", "user", "header"})


def _present_caller(plan: CallPlan, removed: tuple[str, ...]) -> None:
    """The caller as the carrier receives it: the caller ID policy's choice (routing.call.callerid)
    written as the first trunk wants it (routing.call.presentation), anonymous when the agent asks
    for privacy.  uac keeps both Froms in the dialog (restore_dlg) and puts each side's back in
    every later message of the call; the edge's identity header replaces the agent's."""
    privacy = bool(plan.presentation) and bool(_PRIVATE & {t.strip().lower() for t in pv("$hdr(Privacy)").split(";")})
    shown = render(plan.presentation, pv("$fd"), privacy) if plan.presentation else None
    if shown is None:
        if plan.present_caller:
            KSR.uac.uac_replace_from_uri(f"sip:{plan.present_caller}@{pv('$fd')}")
        return
    if shown.display is None:
        KSR.uac.uac_replace_from_uri(shown.from_uri)
    else:
        KSR.uac.uac_replace_from(shown.display, shown.from_uri)
    gone = {n.lower() for n in removed}
    for line in shown.headers:
        name = line.split(":", 1)[0]
        if name.lower() not in gone and KSR.hdr.is_present(name) > 0:
            KSR.hdr.remove(name)
        KSR.hdr.append(line + "\r\n")


def _sign(w: Worker, passport: dict) -> None:
    """The STIR/SHAKEN ``Identity`` header (RFC 8224) of a termination call, signed by Kamailio's
    ``secsipid`` module with the node's key (settings ``stir``); the call goes unsigned when it fails."""
    if KSR.secsipid.secsipid_add_identity(passport["orig"], passport["dest"], passport["attest"], "",
                                          w.settings.stir_cert_url, w.settings.stir_key_file) < 0:
        KSR.err(f"edge: cannot sign call-id={pv('$ci')} (secsipid): it goes unsigned\n")


def _hop_headers(plan: CallPlan, target: Target) -> None:
    """The header lines of this hop's branch (native branch route): the agent headers, or for a
    forwarded leg ``Diversion`` naming the DID (RFC 5806): reason ``unavailable`` on a DID's
    fallback to a number (the agent could not take the call), ``deflection`` on the edge's
    transfer leg (the agent sent the call on), per the hop trunk's ``forwarded_caller_id``; and on a
    termination hop whose trunk has ``session_timer_s``, the timer request (:func:`_timer_request`)."""
    lines = _timer_request(plan, target)
    if target.diverted_from:
        host = target.uri.split("@", 1)[-1].split(";", 1)[0]
        reason = "deflection" if plan.direction == "termination" else "unavailable"
        lines += f"Diversion: {diversion(target.diverted_from, host, reason)}\r\n"
    elif agent_headers := KSR.pv.get(cs.AGENT_HEADERS_AVP):
        lines += str(agent_headers)
    if lines:
        KSR.pv.sets(cs.HOP_HEADERS_AVP, lines)
    else:  # none of an earlier hop's (a failover from a trunk that names the DID to one that does not)
        KSR.pv.unset(cs.HOP_HEADERS_AVP)


def _timer_request(plan: CallPlan, target: Target) -> str:
    """``Supported: timer`` and ``Session-Expires: N;refresher=uas`` for a termination hop whose
    trunk has ``session_timer_s`` when the agent's INVITE neither offers timers nor asks for an
    interval: the UAC may ask the UAS to refresh, which a UAS that does timers must keep (RFC 4028
    sections 7.1 and 9); the refreshes are then answered for the agent (:mod:`.sessiontimers`).
    ``""`` otherwise."""
    if plan.direction != "termination" or not target.session_timer_s or pv("$hdr(Session-Expires)") \
            or sessiontimer.supports_timer(pv("$hdr(Supported)")):
        return ""
    return f"Supported: timer\r\nSession-Expires: {target.session_timer_s};refresher=uas\r\n"


def _send_socket(w: Worker, direction: str, uri: str) -> None:
    """On an edge with one network per side, the hop's request leaves from a socket of the
    callee's side (Kamailio ``$fs``), so its Via, Record-Route and Contact name only that
    side's (advertised) address; rr's double Record-Route keeps in-dialog requests on it."""
    if not w.settings.sip_sockets:
        return
    side = netsides.other_side(netsides.caller_side(direction))
    sock = netsides.send_socket(w.settings.sip_sockets, side, uri)
    if sock:
        KSR.pv.sets("$fs", sock)


def _policies(plan: CallPlan) -> tuple[MediaPolicy, MediaPolicy]:
    """(caller, callee) media policies of the plan's current hop."""
    return MediaPolicy.from_json(plan.caller_media), MediaPolicy.from_json(plan.current.media)


def _hop_offer(w: Worker, plan: CallPlan, offer: media.SdpOffer | None = None,
               policies: tuple[MediaPolicy, MediaPolicy] | None = None) -> str | Reject:
    """rtpengine offer flags of the plan's current hop, for the native branch route: its media
    policy (:func:`routing.media.offer_flags`) and DTMF flags (:func:`routing.dtmf.sdp_flags`);
    ``""`` for an INVITE without SDP (delayed offer: rtpengine sees the offer in the 2xx).
    ``policies``: the hop's (caller, callee) media policies when the caller has them."""
    if offer is None:
        if not has_sdp():
            return ""
        offer = media.parse_sdp(pv("$rb"))
    modes = (plan.caller_dtmf, plan.current.dtmf)
    iface = netsides.direction_flags(plan.direction, True, w.settings.media_sides)
    caller, callee = policies or _policies(plan)
    return offer_flags(w, offer, caller, callee, (*sdp_flags(modes, True, offer=True), *iface), w.settings.media_fill)


def _set_media_vars(plan: CallPlan, policies: tuple[MediaPolicy, MediaPolicy], fresh: bool = False) -> MediaPolicy:
    """Keep the media policies of the hop being tried with the dialog (re-INVITEs, watchdog); returns
    the callee's.  ``fresh``: the first hop of a new dialog (no keepalive property to reset)."""
    caller, callee = policies
    sides = json.dumps({"caller": plan.caller_media, "callee": plan.current.media})
    KSR.pv.sets(cs.MEDIA_VAR, sides)
    KSR.pv.sets(cs.MEDIA_AVP, sides)
    _keepalives(caller, callee, fresh)
    KSR.pv.sets(cs.RTP_TIMEOUT_VAR, str(media.rtp_timeout_s(caller, callee) or ""))
    return callee


def _keepalives(caller: MediaPolicy, callee: MediaPolicy, fresh: bool = False) -> None:
    """In-dialog OPTIONS keepalives of the dialog module toward the sides that want them
    (``ka-src``: the caller, ``ka-dst``: the callee of the hop being tried); an earlier hop's are
    reset, except on the first hop of a new dialog (``fresh``), whose context has none set."""
    for prop, side in (("ka-src", caller), ("ka-dst", callee)):
        if side.sip_keepalive:
            KSR.dialog.dlg_set_property(prop)
        elif not fresh:
            KSR.dialog.dlg_reset_property(prop)
