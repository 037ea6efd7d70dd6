"""Replies (but 100) to relayed requests (``t_on_reply``): CSeq numbers given back, the SDP
answer or delayed offer into rtpengine under both sides' media policies, a reliable 18x that
breaks the policy refused, the answer noted for the call record, and the reply metrics."""

from __future__ import annotations

import json
import time

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import media
from ..call import metrics
from ..call import sides as netsides
from ..call.cdr import sdp_codecs
from ..call.decision import Reject
from ..call.plan import CallPlan
from ..tables.store import StoreUnavailable
from . import callstate as cs
from .callstate import Deadline
from . import holdanswer, records, rtpset, sessiontimers, transfers
from .mediaflags import answer_fill, flags, modes, offer_flags, sdp_flags, sides
from .worker import Worker, count, has_sdp, hop_labels, log_reject, observe, pv

__all__ = ["onreply"]


def onreply(w: Worker) -> None:
    """One reply of a relayed request (its transaction's AVPs tell what the request was)."""
    number = pv(cs.CSEQ_AVP)
    if number:  # a renumbered request (onbehalf.renumber): the response gets the sender's number back
        KSR.textops.subst_hf("CSeq", f"/^[0-9]+/{number}/", "f")
    code = int(pv("$rs") or 0)
    if KSR.pv.get(cs.REFER_AVP):  # the carrier's answer to an agent's transfer
        transfers.refer_reply(code)
        return
    if KSR.pv.get(cs.LOCAL_REFRESH_AVP):  # the edge's own answer to a pure refresh: its SDP is rtpengine's already
        if 200 <= code < 300:
            sessiontimers.refresh_answered()
        return
    if 200 <= code < 300 and KSR.pv.get(cs.REFRESH_AVP):  # a session refresh the edge relayed
        sessiontimers.refresh_answered()
    refused = pv(cs.EARLY_REFUSED_AVP)
    if refused and code < 200:
        KSR.pv.seti(cs.REPLY_DROP_AVP, 1)  # the branch is being cancelled: the caller gets nothing more of it
        return
    if refused and 200 <= code < 300:
        # the callee answered before our CANCEL reached it: end the call at its ACK
        rcode, reason, tag = json.loads(refused)
        records.refuse_media(pv("$ci"), Reject(int(rcode), str(reason), str(tag)))
    if 200 <= code < 300 and pv("$rm") == "INVITE":
        if _held_answer(w, code):
            return
        _answered(w, code)
    if has_sdp() and _sdp(w, code) is None:
        return
    if 200 <= code < 300 and pv("$rm") == "INVITE" and KSR.pv.get(cs.SESSION_VAR):
        sessiontimers.keep_answer()
    _reply_metrics(code)


def _held_answer(w: Worker, code: int) -> bool:
    """The released copy of an agent's held 2xx (:mod:`.holdanswer`; the core reply_route kept the
    original from tm): its SDP answered and checked, the answer noted; True when it was one."""
    entry = holdanswer.held(pv("$ci"))
    if entry is None or not entry.released:
        return False
    holdanswer.take(entry)
    sdp = media.parse_sdp(pv("$rb"))
    if sdp is not None and pv(cs.PLAN_AVP):
        _check_reply_answer(sdp, False, code)
    _answered(w, code)
    _reply_metrics(code)
    return True


def _sdp(w: Worker, code: int) -> str | None:
    """The reply's SDP into rtpengine; None when the reply was refused (dropped), else the
    rtpengine answer flags used ("" when the reply made an offer)."""
    # the reply comes from the side that did not send the request; it answers an
    # SDP offer, or makes the offer when the request had none (delayed offer)
    pair = modes(pv(cs.DTMF_AVP))
    from_caller = not KSR.pv.get(cs.FROM_CALLER_AVP)
    offer = not KSR.pv.get(cs.REQ_SDP_AVP)
    sdp = media.parse_sdp(pv("$rb"))
    if 100 < code < 200 and _refuse_reliable_provisional(code, sdp, from_caller, offer):
        return None
    nat = media.nat_flags(sdp.address, pv("$si"), w.private_networks) if sdp is not None else ()
    iface = netsides.direction_flags(pv(cs.DIRECTION_AVP) or "origination", from_caller, w.settings.media_sides)
    if offer:
        # delayed offer: the policy of both sides, as for an offer in a request
        # (offer_flags adds the NAT flags); manage makes it an offer
        KSR.rtpengine.rtpengine_manage(
            _reply_offer_flags(w, sdp, from_caller, (*sdp_flags(pair, from_caller, True), *iface)))
        rtpset.note(w, pv("$ci"))  # with an rtpengine set: the node the module chose for this call
        answer = ""
    else:
        if 200 <= code < 300 and sdp is not None and pv(cs.PLAN_AVP):
            _check_reply_answer(sdp, from_caller, code)
        # an answer names no interface: rtpengine keeps the ones the offer chose (a
        # direction list here is applied to the legs in the offer's roles, and would
        # give the offerer the answerer's interface)
        answer = flags((*sdp_flags(pair, from_caller, offer), *nat, *answer_fill(w, pv(cs.MEDIA_AVP), from_caller)))
        # explicit: the initial offer was made with rtpengine_offer in the branch route,
        # which manage's own offer/answer detection does not see
        KSR.rtpengine.rtpengine_answer(answer)
    if 180 <= code < 200:
        KSR.pv.seti(cs.EARLY_MEDIA_AVP, 1)
    return answer


def _refuse_reliable_provisional(code: int, sdp: media.SdpOffer | None, from_caller: bool, offer: bool) -> bool:
    """A reliable 18x (RFC 3262) of an initial INVITE whose SDP breaks its sender's media policy
    (:func:`routing.media.reply_refusal`): its SDP is final for the call (the 2xx will not change
    it), so the call is refused now.  The 18x is dropped (the caller never sees it, nor PRACKs
    it), the branch is cancelled (tmx ``t_cancel_branches("this")``: CANCEL downstream, RFC 3261
    section 9.1), and the failure route that follows the callee's 487 answers the caller with
    the refusal (``failure._refuse_early``).  An unreliable 18x's SDP is only a preview of the 2xx
    (RFC 3261 section 13.2.1) and keeps passing: the 2xx decides.

    Returns:
        True when the reply was refused (dropped).
    """
    if sdp is None or not pv(cs.PLAN_AVP):
        return False
    if not media.reliable_provisional(code, pv("$(hdr(Require)[*])"), pv("$hdr(RSeq)")):
        return False
    pair = sides(pv(cs.MEDIA_AVP))
    if pair is None:
        return False
    sender, receiver = pair if from_caller else (pair[1], pair[0])
    refusal = media.reply_refusal(sdp, sender, receiver, offer)
    if refusal is None:
        return False
    log_reject(refusal, f"reliable-provisional reply={code}")
    KSR.pv.sets(cs.EARLY_REFUSED_AVP, json.dumps([refusal.code, refusal.reason, refusal.tag]))
    if KSR.tmx.t_cancel_branches("this") < 0:
        KSR.warn(f"edge: cannot cancel the branch of call-id={pv('$ci')}: its final reply decides\n")
    KSR.pv.seti(cs.REPLY_DROP_AVP, 1)
    return True


def _reply_offer_flags(w: Worker, sdp: media.SdpOffer | None, from_caller: bool, dtmf_flags: tuple[str, ...]) -> str:
    """rtpengine flags of an offer made in a reply (delayed offer, RFC 3261 section 13.2.1): the
    sender's policy holds on its leg (its codecs, its SRTP) and the receiver is offered its own
    (codecs in its order, ptime, protocol), exactly as for an offer in a request.  When the
    offer breaks its sender's policy the call cannot be refused any more (a 2xx is final): the
    receiver gets an offer with its own protocol only, the refusal is kept with the call and
    the call is ended at its ACK (``indialog``)."""
    pair = sides(pv(cs.MEDIA_AVP))
    if pair is None or sdp is None:
        return flags(dtmf_flags)
    caller, callee = pair
    sender, receiver = (caller, callee) if from_caller else (callee, caller)
    result = offer_flags(w, sdp, sender, receiver, dtmf_flags, w.settings.media_fill)
    if not isinstance(result, Reject):
        return result
    code = int(pv("$rs") or 0)
    log_reject(result, f"delayed-offer reply={code}")
    if 200 <= code < 300:
        records.refuse_media(pv("$ci"), result)
    return " ".join((media.fallback_flags(receiver), *dtmf_flags))


def _check_reply_answer(answer: media.SdpOffer, from_caller: bool, code: int) -> None:
    """The SDP answer in the 2xx of an initial INVITE must follow its sender's policy
    (:func:`routing.media.answer_refusal`: SRTP a side requires, a codec it allows).  A 2xx is
    final, so a breach is kept with the call, which is ended at its ACK (:func:`records.refuse_media`)."""
    pair = sides(pv(cs.MEDIA_AVP))
    if pair is None:
        return
    refusal = media.answer_refusal(answer, pair[0] if from_caller else pair[1])
    if refusal is not None:
        log_reject(refusal, f"answer reply={code}")
        records.refuse_media(pv("$ci"), refusal)


def _reply_metrics(code: int) -> None:
    """PDD on the first 18x, setup time and an answered call on the first 2xx of an
    initial INVITE (only those transactions carry the metric labels AVP)."""
    labels = pv(cs.LABELS_AVP)
    if not labels:
        return
    direction, trunk, agent = (labels.split("|") + ["none", "none"])[:3]
    started = float(pv(cs.START_AVP) or 0) or time.time()
    if 180 <= code < 200 and not KSR.pv.get(cs.PDD_DONE_AVP):
        KSR.pv.seti(cs.PDD_DONE_AVP, 1)
        observe(metrics.POST_DIAL_DELAY, time.time() - started, direction, trunk)
    elif 200 <= code < 300 and not KSR.pv.get(cs.ANSWERED_AVP):
        KSR.pv.seti(cs.ANSWERED_AVP, 1)
        observe(metrics.SETUP_TIME, time.time() - started, direction, trunk)
        count(metrics.CALLS_ANSWERED, direction, trunk, agent)


def _answered(w: Worker, code: int) -> None:
    """First 2xx of an initial INVITE: note the answer time, the hop that answered and the callee's
    codecs for the call record, and show them in the live call hash, whose leases now last the
    longest a call may (``lease_ttl_s``; the admission's were ``admission_ttl_s``).  Until the
    caller's ACK starts the call clock the call's deadline is its ACK's (:meth:`Deadline.ack_due`):
    a caller that gave up never ACKs, and the call clock then releases the slots."""
    call_id = pv("$ci")
    state = records.load(call_id)
    if state is None or not state.start_ms or state.answer_ms:
        return  # not ours, or a retransmitted 2xx / re-INVITE answer
    now = int(time.time() * 1000)
    text = pv(cs.PLAN_AVP)
    if text:
        plan = CallPlan.loads(text)
        records.plan_state(plan, state)
        state.tried = list(plan.tried) + [f"{plan.current.label}={code}"]
        if w.settings.first_audio_poll_ms:
            # the agent's first RTP packet is looked for from now (timers.first_audio): the agent is
            # the callee of an origination call (its To-tag), the caller of a termination call
            agent_tag = pv("$tt") if plan.direction != "termination" else pv("$ft")
            direction, trunk, agent = hop_labels(plan)
            KSR.htable.sht_sets(cs.FIRST_AUDIO_TABLE, call_id, f"{now}:{direction}:{trunk}:{agent}:{agent_tag}")
    state.answer_ms = now
    state.codecs_callee = sdp_codecs(pv("$rb")) if has_sdp() else []
    if state.direction == "termination" and has_sdp():
        KSR.pv.sets(cs.SDP_VAR, pv("$rb"))  # the carrier's answer: a bridged transfer's leg offers it (bridge.py)
    records.save(call_id, state)
    sessiontimers.on_answer(call_id, state.direction or "origination")
    if KSR.htable.sht_is_null(cs.DEADLINE_TABLE, call_id) > 0:
        KSR.htable.sht_sets(cs.DEADLINE_TABLE, call_id, Deadline.ack_due(now // 1000 + cs.ACK_WAIT_S, pv("$ft")).encode())
    try:
        w.open_store().update_call(call_id, {
            "answer_ms": str(now), "codecs_caller": ",".join(state.codecs_caller or []),
            "codecs_callee": ",".join(state.codecs_callee), "trunk": state.trunk or "",
            **rtpset.answer_facts(w, call_id),
        }, extend_s=w.settings.lease_ttl_s)
    except StoreUnavailable as exc:
        w.cdrs().mark_down()
        KSR.warn(f"edge: cannot note the answer of call-id={call_id} in redis: {exc}\n")
