"""The call-record state of a relayed call (``cdr`` htable, :class:`callstate.CallRecordState`) and
the records written from it: an unanswered attempt (failure route), an ended call (dialog end, the
call clock's cleanup).  Records are built by :func:`routing.cdr.build_record` and written by the
worker's writer (redis, else the spool)."""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import metrics
from ..call import quality
from ..call.cdr import CallFacts, sdp_codecs
from ..call.decision import Reject
from ..tables.model import parse_increment
from ..call.plan import CallPlan
from ..ngclient import NgError
from ..tables.store import StoreUnavailable
from . import callstate as cs
from . import rtpset
from .callstate import CallRecordState, NativeAnswer
from .worker import Worker, observe, pv

__all__ = ["load", "save", "facts", "plan_state", "record_unanswered", "finish_call", "finish_calls", "refuse_media",
           "media_refused", "close_media", "retry_releases"]

#: fields of a call's live hash (redis) that are not media facts of its record
_NOT_MEDIA = ("direction", "trunk", "agent", "number", "start_ms", "answer_ms", "codecs_caller", "codecs_callee",
              "account", "spend_accrued", "rtp_node")
#: call-clock iterator over :data:`callstate.UNRELEASED_TABLE`, and how many releases it retries per tick
UNRELEASED_ITERATOR = "edgeunrel"
RETRY_BATCH = 200


def load(call_id: str) -> CallRecordState | None:
    """The call's state; None when the call has none (never relayed, or its record is written).  An
    answer the native route took (:mod:`.fastanswer`) is in it."""
    state = CallRecordState.decode(KSR.htable.sht_gete(cs.CDR_TABLE, call_id) if call_id else "")
    if state is not None and not state.answer_ms and state.start_ms:
        _merge_answer(state, KSR.htable.sht_gete(cs.ANSWERED_TABLE, call_id) or "")
    return state


def _merge_answer(state: CallRecordState, text: str) -> None:
    """A native answer (:class:`callstate.NativeAnswer` text) into a state that has none yet, as
    :mod:`.replies` writes it at the 2xx (answer time, the hop that answered, the callee's codecs)."""
    answer = NativeAnswer.decode(text)
    if answer is None:
        return
    state.answer_ms = answer.answer_ms
    state.tried = [*(state.tried or []), f"{answer.label}={answer.code}"]
    state.codecs_callee = sdp_codecs(answer.sdp)


def save(call_id: str, state: CallRecordState) -> None:
    """Store the call's state."""
    KSR.htable.sht_sets(cs.CDR_TABLE, call_id, state.encode())


def facts(w: Worker, call_id: str, state: CallRecordState, **extra: object) -> CallFacts:
    """The facts of the call's record: its state, ended now (answered 200 unless ``extra`` says)."""
    try:
        rate = Decimal(state.rate or "0")
    except InvalidOperation:
        rate = Decimal(0)
    try:
        increment = parse_increment(state.billing or "1/1")
    except ValueError:
        increment = (1, 1)
    values: dict = dict(
        node=w.settings.node, call_id=call_id, cseq=str(state.cseq if state.cseq is not None else ""),
        start_ms=int(state.start_ms or time.time() * 1000), end_ms=int(time.time() * 1000),
        sip_code=200, sip_reason="OK", direction=state.direction or "", answer_ms=state.answer_ms,
        trunk=state.trunk or "", agent=state.agent or "", number=state.number or "",
        caller=state.caller or "", tried=list(state.tried or []), rate=rate, increment=increment,
        codecs_caller=list(state.codecs_caller or []), codecs_callee=list(state.codecs_callee or []),
        transfer={str(k): str(v) for k, v in (state.transfer or {}).items()},
        verstat=state.verstat or "", account=state.account or "", identity=state.identity or "",
    )
    values.update(extra)
    return CallFacts(**values)


def plan_state(plan: CallPlan, state: CallRecordState) -> CallRecordState:
    """The call-record facts the plan knows (trunk, rate and billing of the current hop), into ``state``."""
    target = plan.current
    state.direction, state.agent, state.number, state.caller = plan.direction, plan.agent, plan.number, plan.caller
    state.trunk, state.rate, state.billing = target.trunk or plan.trunk, target.rate, target.billing
    state.verstat = plan.verstat or None
    state.account = plan.account or None
    state.identity = plan.identity or None
    return state


def record_unanswered(w: Worker, plan: CallPlan, code: int, reason: str, tag: str = "",
                      cancelled: bool = False, extra_tried: tuple[str, ...] | list[str] = ()) -> None:
    """Call record of an admitted call that ended without an answer (failure route); ``extra_tried``:
    steps after the plan's hops (the hop refused after its reply, the announcement played)."""
    call_id = plan.call_id
    state = plan_state(plan, load(call_id) or CallRecordState())
    if not state.start_ms:
        return  # no relay state: written already (a late failure) or never relayed
    KSR.htable.sht_rm(cs.CDR_TABLE, call_id)
    rtpset.forget(w, call_id)
    tried = [*plan.tried, *extra_tried]
    w.write_record(facts(w, call_id, state, sip_code=code, sip_reason=reason, reject_tag=tag,
                         cancelled=cancelled, tried=tried, answer_ms=None))


def finish_call(w: Worker, call_id: str, hangup: str, final_media: dict[str, str] | None = None) -> None:
    """Release the call's slots and write its record when it was answered (dialog failure, a
    bridged call's end, or the call clock's cleanup); ``final_media`` (:func:`close_media`) is kept
    with the call in the same redis round trip."""
    finish_calls(w, [(call_id, hangup, final_media or {}, None)])


def finish_calls(w: Worker, ended: list[tuple[str, str, dict[str, str], int | None]]) -> None:
    """:func:`finish_call` of each ``(call_id, hangup, final media, end ms or None for now)``: every
    slot released in one redis write, every record in another (:meth:`Worker.write_records`)."""
    if not ended:
        return
    medias: list[dict[str, str]] = [{} for _ in ended]
    try:
        medias = w.open_store().finish_many([(call_id, final) for call_id, _, final, _ in ended],
                                            w.settings.media_quality_ttl_s)
    except StoreUnavailable as exc:  # retried by the call clock (retry_releases) until redis answers
        w.cdrs().mark_down()
        for call_id, _, _, _ in ended:
            KSR.htable.sht_sets(cs.UNRELEASED_TABLE, call_id, str(int(time.time())))
        KSR.err(f"edge: cannot release slots of {len(ended)} calls ({ended[0][0]}...), retried every second: {exc}\n")
    written = []
    for (call_id, hangup, _, end_ms), media in zip(ended, medias):
        state = load(call_id)
        KSR.htable.sht_rm(cs.ANSWERED_TABLE, call_id)
        rtpset.forget(w, call_id)
        if state is None or not state.start_ms:
            continue
        KSR.htable.sht_rm(cs.CDR_TABLE, call_id)
        accrued = int(media.get("spend_accrued") or 0) if (media.get("spend_accrued") or "").isdigit() else 0
        media = {k: v for k, v in media.items() if not k.startswith("lease:") and k not in _NOT_MEDIA}
        end = {"end_ms": end_ms} if end_ms else {}
        if state.answer_ms:
            written.append(facts(w, call_id, state, media=media, hangup=hangup, accrued_micros=accrued, **end))
        else:  # failed without passing the failure route (should not happen): keep a trace
            code = int(pv("$rs") or 0) if pv("$rs").isdigit() else 0
            written.append(facts(w, call_id, state, sip_code=code or 500, sip_reason=pv("$rr") or "Call Failed",
                                 media=media, **end))
    w.write_records(written)
    for record in written:
        if record.answer_ms:
            _observe_quality(record)


def _observe_quality(record: CallFacts) -> None:
    """An answered call's talk time and final media quality into the per-trunk and per-agent
    histograms (``routing.call.metrics``: duration, MOS, loss, jitter)."""
    trunk, agent = metrics.label(record.trunk), metrics.label(record.agent)
    talk_s = (record.end_ms - (record.answer_ms or record.end_ms)) / 1000
    observe(metrics.CALL_DURATION, talk_s, record.direction or "none", trunk, agent)
    for metric, value, side in metrics.quality_observations(record.direction, record.media):
        observe(metric, value, trunk, agent, side)


def refuse_media(call_id: str, reject: Reject) -> None:
    """Keep a media-policy refusal that came after the 2xx with the call (ended at its ACK)."""
    state = load(call_id)
    if state is None:
        return
    state.media_refused = [reject.code, reject.reason, reject.tag]
    save(call_id, state)


def media_refused(call_id: str) -> Reject | None:
    """The media-policy refusal kept with the call (:func:`refuse_media`), if any."""
    state = load(call_id)
    refused = state.media_refused if state is not None else None
    if not refused:
        return None
    return Reject(int(refused[0]), str(refused[1]), str(refused[2]))



def close_media(w: Worker, call_id: str, caller_tag: str) -> dict[str, str]:
    """Delete the call's rtpengine session and return its final media statistics (``media_*``
    fields, :func:`routing.call.quality.summary`), which rtpengine returns in the reply to
    ``delete`` (rtpengine ``docs/ng_control_protocol.md``: the same keys as a ``query`` reply), so
    one ng round trip does both; :func:`finish_call` keeps them with the call.  When this client gets
    no answer the Kamailio module's own delete is tried and nothing is returned; problems are
    logged, never raised (the call is ending anyway)."""
    try:
        reply = rtpset.client(w, call_id).command("delete", call_id=call_id, from_tag=caller_tag)
        rtpset.forget(w, call_id)
    except NgError as exc:
        if "unknown call" not in exc.reason.lower():
            KSR.warn(f"edge: rtpengine delete of call-id={call_id} failed, the module tries again: {exc}\n")
            KSR.rtpengine.rtpengine_delete(f"call-id={call_id} from-tag={caller_tag}")
        return {}
    return quality.summary(reply, caller_tag, time.time()) if reply else {}


def retry_releases(w: Worker) -> int:
    """Call clock: release the slots of calls that ended while redis did not answer (a Sentinel
    failover takes seconds; without this their slots would stay held until their leases expire,
    ``lease_ttl_s``), at most :data:`RETRY_BATCH` per tick; the first failure stops the round.

    Returns:
        calls released now.
    """
    due: list[str] = []
    if KSR.htable.sht_iterator_start(UNRELEASED_ITERATOR, cs.UNRELEASED_TABLE) < 0:
        return 0
    while len(due) < RETRY_BATCH and KSR.htable.sht_iterator_next(UNRELEASED_ITERATOR) > 0:
        due.append(pv(f"$shtitkey({UNRELEASED_ITERATOR})"))
    KSR.htable.sht_iterator_end(UNRELEASED_ITERATOR)
    done = 0
    for call_id in due:
        try:
            w.open_store().finish(call_id)
        except StoreUnavailable:
            break
        KSR.htable.sht_rm(cs.UNRELEASED_TABLE, call_id)
        done += 1
    if done:
        KSR.notice(f"edge: released the slots of {done} calls that ended while redis did not answer\n")
    return done
