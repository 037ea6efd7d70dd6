"""The failure route of a relayed INVITE (``t_on_failure``): a carrier's digest challenge answered,
a 3xx checked, failover to the next hop (:func:`routing.plan.should_fail_over`), or the end of
the attempt (:func:`end_attempt`: the one place an admitted attempt is ended with a refusal)."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import media
from ..call import metrics
from ..call.redirect import check_redirect
from ..call.decision import Reason, Reject
from ..call.plan import CallPlan, final_response, should_fail_over
from ..tables.store import StoreUnavailable
from . import callstate as cs
from . import announce, invite, records
from .worker import Worker, count, hop_labels, log_reject, pv

__all__ = ["failure", "end_attempt", "give_up", "media_unavailable", "URI_USER"]

_REALM = re.compile(r'realm="([^"]*)"', re.I)
#: the user part of the first sip:/sips:/tel: URI of a header value (3xx Contact, Refer-To)
URI_USER = re.compile(r"(?:sips?|tel):([^@;>\s]+(?:;[^@>\s]*)?)(?:@|>|$)", re.I)


def end_attempt(w: Worker, plan: CallPlan, reject: Reject, log_where: str | None, *,
                remember_where: str | None, hop: str = "", headers: tuple[str, ...] = (),
                delete_media: bool = True, release: bool = True) -> None:
    """End an admitted attempt with a refusal to the caller, in this order: rtpengine's session
    deleted (``delete_media``), the slots released (``release``; a redis failure is logged, the
    lease then expires on its own), the refusal logged and counted (``log_where``; None when it was
    logged already), the call failed in the metrics, the unanswered call's record (``hop``: a
    ``"label=code"`` added to the hops tried), ``headers`` (lines without CRLF) and the tm reply,
    and the refusal kept for ``edgectl explain`` (``remember_where``; None: not kept).  A refusal
    with an announcement (``reject.announce``) gets it played first (:mod:`.announce`: the media
    session stays for it; the reply comes when it has played)."""
    hops = [hop] if hop else []
    announcing = bool(reject.announce) and announce.start(w, reject, tried=hops)
    if delete_media and not announcing:
        KSR.rtpengine.rtpengine_delete0()
    if release:
        try:
            w.open_store().release(plan.call_id)
        except StoreUnavailable as exc:  # the lease then expires on its own (lease_ttl_s)
            KSR.err(f"edge: cannot release slots of call-id={plan.call_id}: {exc}\n")
    if log_where is not None:
        log_reject(reject, log_where)
    count(metrics.CALLS_FAILED, *hop_labels(plan)[:2], metrics.sip_class(reject.code))
    records.record_unanswered(w, plan, reject.code, reject.reason, reject.tag, extra_tried=hops)
    if not announcing:
        for line in headers:
            KSR.hdr.append_to_reply(line + "\r\n")
        KSR.tm.t_reply(reject.code, reject.reason)
    if remember_where is not None:
        w.remember(reject, remember_where, tried=[*plan.tried, *hops])


def _retry_after(reject: Reject) -> tuple[str, ...]:
    return () if reject.retry_after_s is None else (f"Retry-After: {reject.retry_after_s}",)


def media_unavailable(w: Worker, plan: CallPlan) -> None:
    """rtpengine refused or did not answer the offer: release the slots, answer 503 (no failover)."""
    reject = Reject(503, "Media Relay Unavailable", "rtpengine", w.settings.retry_after_s,
                    direction=plan.direction, trunk=plan.trunk, agent=plan.agent)
    end_attempt(w, plan, reject, "media", remember_where="request", headers=_retry_after(reject),
                delete_media=False)


def give_up(w: Worker, plan: CallPlan) -> None:
    """No hop left: the caller gets the best final answer of the hops tried (or the admission's
    refusal when no hop could be tried)."""
    if plan.best is None and plan.full:
        code, reason, tag, retry = plan.full
        reject = Reject(code, reason, tag, retry)
    else:
        none = Reason.ALL_CARRIERS_FAILED if plan.direction == "termination" else Reason.AGENT_UNREACHABLE
        code, reason = final_response(plan, none[:2])
        reject = Reject(code, reason, none[2] if plan.best is None else "downstream_failed")
    if plan.announce:
        reject = replace(reject, announce=plan.announce)
    end_attempt(w, plan, reject, f"failover tried={','.join(plan.tried)}", remember_where="failover",
                headers=_retry_after(reject))


def _refuse_early(w: Worker, plan: CallPlan, refused: str) -> None:
    """Failure route of a call whose reliable 18x broke the media policy (the cancelled branch
    answered 487, or timed out): answer the caller with the refusal and a ``Reason`` header
    naming the cause (RFC 3326, as the BYEs of a refusal after the 2xx), release the slots and
    write the call record; no failover (the policy is the call's, not the hop's)."""
    code, reason, tag = json.loads(refused)
    reject = Reject(int(code), str(reason), str(tag), direction=plan.direction, trunk=plan.trunk,
                    agent=plan.agent)
    end_attempt(w, plan, reject, None, remember_where="reliable-provisional", hop=f"{plan.current.label}={reject.tag}",
                headers=(media.reason_header(reject),))


def failure(w: Worker) -> None:
    """A hop failed: fail over to the next one, or give the caller the final answer."""
    text = pv(cs.PLAN_AVP)
    if KSR.tm.t_is_canceled() > 0:
        KSR.rtpengine.rtpengine_delete0()
        if text:
            cancelled = CallPlan.loads(text)
            records.record_unanswered(w, cancelled, 487, "Request Terminated", cancelled=True)
            direction, trunk, _ = hop_labels(cancelled)
            count(metrics.CALLS_FAILED, direction, trunk, metrics.sip_class(487))
        return
    if not text:
        return
    plan = CallPlan.loads(text)
    refused = pv(cs.EARLY_REFUSED_AVP)
    if refused:
        _refuse_early(w, plan, refused)
        return
    code = int(pv("$T_reply_code") or 408)
    reason = pv("$T_reply_reason") or "Request Timeout"
    answered = KSR.tm.t_branch_timeout() < 0 and code not in (477, 478, 479)
    early = bool(KSR.pv.get(cs.EARLY_MEDIA_AVP))
    if code in (401, 407) and answered and _answer_challenge(w, plan):
        invite.send(w, plan, failure_route=True)  # the same hop, now with credentials
        return
    if 300 <= code < 400 and answered:
        refusal = _redirect_refusal(w, plan)
        if refusal is not None:  # the dialog's failure releases the slots
            end_attempt(w, plan, refusal, f"redirect contact={pv('$T_rpl($ct)')}", remember_where=None,
                        hop=f"{plan.current.label}={code}", release=False)
            return
    plan.record(code, reason, answered)
    failed = hop_labels(plan)
    if not should_fail_over(code, answered, early):
        KSR.rtpengine.rtpengine_delete0()
        records.record_unanswered(w, plan, code, reason)
        count(metrics.CALLS_FAILED, *failed[:2], metrics.sip_class(code))
        return  # tm relays this final response upstream
    try:
        nxt = plan.advance(w.open_store(), w.settings.admission_ttl_s)
    except StoreUnavailable:
        nxt = None
    if nxt is None:
        give_up(w, plan)
        return
    count(metrics.FAILOVERS, *failed[:2])
    KSR.info(f"edge: failover call-id={plan.call_id} to={nxt.label} after={plan.tried[-1]}\n")
    invite.send(w, plan, failure_route=True)


def failed(w: Worker) -> None:
    """The failure route's own exception (logged by the entry guard): release the slots, answer 500."""
    try:
        w.open_store().release(pv("$ci"))
    except Exception:  # noqa: BLE001
        pass
    log_reject(Reject.of(Reason.INTERNAL_ERROR), "failure")
    KSR.tm.t_reply(500, "Internal Server Error")


def _answer_challenge(w: Worker, plan: CallPlan) -> bool:
    """Answer a carrier's 401/407 once per hop with the trunk's credentials (Kamailio uac
    module, RFC 3261 section 22.2); False when the trunk has none or this hop was tried."""
    trunk = plan.current.trunk
    if not trunk or plan.index in plan.auth_tried:
        return False
    creds = w.open_store().credentials(trunk)
    if creds is None:
        KSR.warn(f"edge: {plan.current.label} challenged call-id={plan.call_id} with {pv('$T_reply_code')} "
                 f"and trunk {trunk} has no credentials (edgectl trunk set-password)\n")
        return False
    challenge = pv("$T_rpl($hdr(WWW-Authenticate))") or pv("$T_rpl($hdr(Proxy-Authenticate))")
    match = _REALM.search(challenge)
    KSR.pv.sets("$avp(edge_auth_user)", creds[0])
    KSR.pv.sets("$avp(edge_auth_pass)", w.secrets().decrypt(creds[1]))
    KSR.pv.sets("$avp(edge_auth_realm)", match.group(1) if match else "")
    plan.auth_tried.append(plan.index)
    if KSR.uac.uac_auth() < 0:
        KSR.warn(f"edge: cannot answer the challenge of {plan.current.label} call-id={plan.call_id}\n")
        return False
    return True


def _redirect_refusal(w: Worker, plan: CallPlan) -> Reject | None:
    """A 3xx is relayed only when its Contact is a number allowed for the call's agent."""
    match = URI_USER.search(pv("$T_rpl($ct)"))
    if not match:
        return Reject.of(Reason.REDIRECT_NOT_ALLOWED)
    trunk = plan.trunk or (plan.current.trunk or "")
    return check_redirect(match.group(1), plan.agent, trunk, w.open_store(), w.settings)
