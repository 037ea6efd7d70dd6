"""The 2xx of an initial INVITE without a Python entry, for the hops whose answer needs no decision.

At the relay (:func:`arm`, once per hop) the plugin decides whether the hop's 2xx can be taken by the
native route ``ANSWERED`` of ``templates/kamailio.routes.j2``, and if so gives it the rtpengine answer
flags (:data:`callstate.FAST_ANSWER_AVP`).  That route then does what :mod:`.replies` would: the SDP
answer into rtpengine (with ``SIP-source-address`` for a callee behind NAT, as
:func:`routing.call.media.nat_flags`), the setup-time histogram and the answered counter, the ACK's
deadline for the call clock, and notes the answer in :data:`callstate.ANSWERED_TABLE` and
:data:`callstate.EXTEND_TABLE`.  The call's record state takes the answer when it is next read
(:func:`routing.kamailio.records.load`), and the call clock (:func:`extend`, once a second, one redis
write for every call answered in that second) puts the answer time and codecs in the live call
hash and extends the leases from the admission's ``admission_ttl_s`` to ``lease_ttl_s``: up to a second
after the answer instead of at it, and not at all for a call that ended before.

A hop is left to the plugin when its answer has something to decide: the callee's side requires SRTP
(the answer is checked), its 2xx is held until first RTP (:mod:`.holdanswer`), the INVITE asked for
session timers (:mod:`.sessiontimers` may take them over), the INVITE had no SDP (the 2xx makes the
offer).  With the first-audio poll on, the native route also starts the call's wait for the agent's
first RTP (:data:`callstate.FIRST_AUDIO_TABLE`, as :mod:`.replies` does).  The native route also leaves a 2xx to the plugin when it carries
``Session-Expires``, has no SDP, has none of the callee side's codecs (sdpops
``sdp_with_codecs_by_name``), or an earlier reliable 18x was refused.
"""

from __future__ import annotations

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import media
from ..call.plan import CallPlan
from ..tables.model import MediaPolicy, SrtpMode
from ..tables.store import StoreUnavailable
from . import callstate as cs
from . import records, rtpset
from .callstate import NativeAnswer
from .mediaflags import flags, sdp_flags
from .worker import Worker, pv

__all__ = ["arm", "extend"]

#: htable iterator of the call clock over :data:`callstate.EXTEND_TABLE`
EXTEND_ITERATOR = "edgeextend"
#: answers extended per call-clock tick at most (the rest wait for the next tick)
EXTEND_BATCH = 500


def arm(w: Worker, plan: CallPlan, callee: MediaPolicy, offer: bool) -> None:
    """Before the current hop is tried: its rtpengine answer flags for the native route when its
    2xx needs no decision (module docstring), else none; ``callee``: the hop's media policy,
    ``offer``: the INVITE carries SDP."""
    if (not offer or plan.current.hold_answer_ms
            or (callee.srtp or SrtpMode.NONE) is not SrtpMode.NONE or pv("$hdr(Session-Expires)")):
        KSR.pv.unset(cs.FAST_ANSWER_AVP)
        return
    if plan.index:  # a failover hop: the record state names the hop that may answer, and the tries before it
        state = records.load(plan.call_id)
        if state is not None:
            records.plan_state(plan, state).tried = list(plan.tried)
            records.save(plan.call_id, state)
    pair = (plan.caller_dtmf, plan.current.dtmf)
    KSR.pv.sets(cs.FAST_ANSWER_AVP, flags((*sdp_flags(pair, False, False), *media.answer_flags(callee, w.settings.media_fill))))
    KSR.pv.sets(cs.HOP_LABEL_AVP, plan.current.label.replace("|", "/"))
    # the native check that the answer holds one of the callee side's codecs (routing.call.media.answer_refusal)
    KSR.pv.sets(cs.FAST_CODECS_AVP, ",".join(callee.codecs or media.CODECS))


def extend(w: Worker) -> None:
    """Call clock: the calls the native route answered since the last tick get the answer's facts in
    their live hash and their leases extended to ``lease_ttl_s`` (one redis write for all of them,
    :meth:`routing.tables.store.RedisStore.update_calls`).  When redis does not answer they stay in
    :data:`callstate.EXTEND_TABLE` for the next tick (their admission leases last ``admission_ttl_s``)."""
    due: list[str] = []
    if KSR.htable.sht_iterator_start(EXTEND_ITERATOR, cs.EXTEND_TABLE) < 0:
        return
    while len(due) < EXTEND_BATCH and KSR.htable.sht_iterator_next(EXTEND_ITERATOR) > 0:
        due.append(pv(f"$shtitkey({EXTEND_ITERATOR})"))
    KSR.htable.sht_iterator_end(EXTEND_ITERATOR)
    updates = []
    for call_id in due:
        answer = NativeAnswer.decode(KSR.htable.sht_gete(cs.ANSWERED_TABLE, call_id) or "")
        state = records.load(call_id) if answer is not None else None
        if answer is None or state is None:
            KSR.htable.sht_rm(cs.EXTEND_TABLE, call_id)  # ended (its record written) before this tick
            continue
        updates.append((call_id, {
            "answer_ms": str(answer.answer_ms), "codecs_caller": ",".join(state.codecs_caller or []),
            "codecs_callee": ",".join(state.codecs_callee or []), "trunk": state.trunk or "",
            **rtpset.answer_facts(w, call_id),
        }))
    if not updates:
        return
    try:
        w.open_store().update_calls(updates, extend_s=w.settings.lease_ttl_s)
    except StoreUnavailable as exc:
        w.cdrs().mark_down()
        KSR.warn(f"edge: cannot note {len(updates)} answers in redis, next tick tries again: {exc}\n")
        return
    for call_id, _ in updates:
        KSR.htable.sht_rm(cs.EXTEND_TABLE, call_id)

