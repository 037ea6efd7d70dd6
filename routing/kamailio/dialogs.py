"""Dialog events: the end of a call (the native ``event_route[dialog:end]`` removes its htable
entries and queues it; :func:`drain_ended`, every 20 ms in one timer process, takes its final media
statistics and closes its media session, releases its slots and writes its record, for every call
ended since the last tick in one redis write), ``event_route[dialog:failed]`` and a bridged call's
end (:func:`dialog_event`), and the dialog's timeout route (the dialog module is about to end a call
whose timer expired)."""

from __future__ import annotations

import time

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import media
from ..tables.store import StoreUnavailable
from . import callstate as cs
from . import bridge, records, rtpset, timers
from .callstate import Deadline, EndedCall
from .mediaflags import sides
from .worker import Worker, log_exception, pv

__all__ = ["dialog_event", "drain_ended"]

#: htable iterator of the call-end drain over :data:`callstate.ENDED_TABLE`
ENDED_ITERATOR = "edgeended"
#: calls ended per tick at most (the rest wait for the next tick, 20 ms later)
ENDED_BATCH = 200


def drain_ended(w: Worker) -> None:
    """rtimer route ``CALL_END`` (every 20 ms, when the native ``event_route[dialog:end]`` queued a
    call): for each call in :data:`callstate.ENDED_TABLE`, its rtpengine session deleted with its
    final statistics (one ng round trip each), then every call's slots released and records written
    (:func:`records.finish_calls`: two redis round trips for the whole batch).  The flag is reset
    before the queue is read, so a call queued meanwhile is seen now or at the next tick."""
    KSR.htable.sht_seti(cs.ENDED_COUNT_TABLE, "n", 0)
    due: list[tuple[str, EndedCall]] = []
    if KSR.htable.sht_iterator_start(ENDED_ITERATOR, cs.ENDED_TABLE) < 0:
        return
    try:
        while KSR.htable.sht_iterator_next(ENDED_ITERATOR) > 0:
            if len(due) >= ENDED_BATCH:
                KSR.htable.sht_seti(cs.ENDED_COUNT_TABLE, "n", 1)  # the rest at the next tick
                break
            ended = EndedCall.decode(pv(f"$shtitval({ENDED_ITERATOR})"))
            if ended is not None:
                due.append((pv(f"$shtitkey({ENDED_ITERATOR})"), ended))
    finally:
        KSR.htable.sht_iterator_end(ENDED_ITERATOR)
    finished = []
    down = rtpset.down_nodes(w)  # a dead node's sessions died with it: no delete waits on it
    for call_id, ended in due:
        KSR.htable.sht_rm(cs.ENDED_TABLE, call_id)
        if rtpset.on_dead_node(w, call_id, down):
            rtpset.forget(w, call_id)
            finished.append((call_id, ended.hangup, {}, ended.end_ms))
            continue
        try:
            final_media = records.close_media(w, call_id, ended.caller_tag)
        except Exception:  # noqa: BLE001 - its slots and record must go anyway
            log_exception(f"exception closing the media of call-id={call_id}")
            final_media = {}
        finished.append((call_id, ended.hangup, final_media, ended.end_ms))
    records.finish_calls(w, finished)


def dialog_event(w: Worker, event: str) -> None:
    """Release the call's slots when it fails, or when a bridged call ends (the native route queues
    every other end for :func:`drain_ended`); note why the dialog module is about to end a call
    whose timer expired (``dialog:timeout``)."""
    if event == "dialog:timeout":
        _dialog_timeout(w)
    if event not in ("dialog:end", "dialog:failed"):
        return
    call_id = pv("$dlg(callid)") or pv("$ci")
    if not call_id:
        return
    caller_tag = pv("$dlg(from_tag)")  # read first: a bridge's end switches the dialog context (dlg_get)
    KSR.htable.sht_rm(cs.DEADLINE_TABLE, call_id)
    if KSR.htable.sht_is_null(cs.XFER_TABLE, call_id) < 1:  # a bridged transfer: its other call too
        try:
            bridge.ended(w, call_id)
        except Exception:  # noqa: BLE001 - this call's own release and record must happen anyway
            log_exception(f"exception ending the bridge of call-id={call_id}")
    KSR.htable.sht_rm(cs.CSEQ_TABLE, call_id)
    if w.settings.dtmf_log_port:
        KSR.htable.sht_rm(cs.DTMF_CALL_TABLE, call_id)
    KSR.htable.sht_rm(cs.MEDIA_TABLE, call_id)
    KSR.htable.sht_rm(cs.SESSION_TABLE, call_id)
    if w.settings.first_audio_poll_ms:
        KSR.htable.sht_rm(cs.FIRST_AUDIO_TABLE, call_id)
    # a BYE passing the request route, unless it is the edge's own (onbehalf.hang_up)
    peer_bye = pv("$rm") == "BYE" and not pv("$rs") and not KSR.pv.get(cs.EDGE_HANGUP_AVP)
    final_media: dict[str, str] = {}
    if event == "dialog:end":
        # the call's final media statistics, then the media session closed: for a side's
        # BYE (the native route relays it) as for the edge's own hang-up
        final_media = records.close_media(w, call_id, caller_tag)
    if not peer_bye:
        hangup = "edge"
    elif pv("$ft") == caller_tag:
        hangup = "caller"
    else:
        hangup = "callee"
    records.finish_call(w, call_id, hangup, final_media)


def _dialog_timeout(w: Worker) -> None:
    """``dialog:timeout`` (the dialog's timer expired; the dialog module sends BYE to both sides
    right after, ``send_bye``).  When a failed keepalive cut the call's life
    (:func:`routing.media.keepalive_ended`) the call keeps ``media_end_reason=sip_keepalive``.
    The call clock is told to clean the call up in ``CLEANUP_GRACE_S`` as after its own
    hang-up (:func:`onbehalf.hang_up`): in 5.6.3 ``dlg_bye_all`` skips ``dialog:end`` when the first side's
    200 to its BYE ends the dialog before the second BYE is sent."""
    call_id = pv("$dlg(callid)")
    text = pv(f"$sht({cs.DEADLINE_TABLE}=>{call_id})") if call_id else ""
    clock = Deadline.decode(text)
    if not text or (clock is not None and clock.cleanup):
        return  # never answered by an ACK (no clock ran), or being ended by the call clock
    dflags, lifetime = pv("$dlg(dflags)"), pv("$dlg(lifetime)")
    pair = sides(pv(cs.MEDIA_VAR))
    keepalive = pair is not None and (pair[0].sip_keepalive or pair[1].sip_keepalive)
    if (dflags.isdigit() and lifetime.isdigit()
            and media.keepalive_ended(int(dflags), int(lifetime), bool(keepalive), True)):
        KSR.notice(f"edge: call-id={call_id} ended by the dialog module: a side with sip_keepalive "
                   "stopped answering in-dialog OPTIONS\n")
        try:
            w.open_store().record_media(call_id, {"media_end_reason": media.KEEPALIVE_END_REASON},
                                        w.settings.media_quality_ttl_s)
        except StoreUnavailable as exc:
            KSR.err(f"edge: cannot keep the end reason of call-id={call_id}: {exc}\n")
    caller_tag = clock.caller_tag if clock is not None and text.count(":") >= 3 else pv("$dlg(from_tag)")
    KSR.htable.sht_sets(cs.DEADLINE_TABLE, call_id,
                        Deadline.cleanup_at(int(time.time()) + timers.CLEANUP_GRACE_S, caller_tag).encode())
