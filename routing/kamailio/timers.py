"""The rtimer work, in one timer process each: the call clock (answered calls past their deadline
ended, the cleanup of calls whose dialog:end never came, the media watchdog, the replay of
spooled call records) and the DTMF log (digits rtpengine reports, recorded and sent as INFO
where a side takes them so).  The clock's and the watchdog's htable values are
:class:`callstate.Deadline` and :class:`callstate.MediaWatch`."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import bridge as bx
from ..call import dtmf
from ..call import media
from ..call import metrics
from ..call import quality
from ..call.cdr import cost_so_far, utc_day
from ..ngclient import NgError
from ..tables.store import HEARTBEAT_TTL_S, StoreUnavailable
from . import callstate as cs
from . import bridge, bridgemap, fastanswer, firstvoice, holdanswer, onbehalf, records, rtpset
from .callstate import Deadline, DtmfCall, MediaWatch
from .mediaflags import modes
from .worker import Worker, count, log_exception, observe, pv

__all__ = ["call_clock", "end_now", "end_at", "dtmf_log", "first_audio"]

#: seconds after the edge's own hang-up (or the dialog's timeout) by which dialog:end must have come
CLEANUP_GRACE_S = 3
CLOCK_ITERATOR = "edgeclock"
MEDIA_ITERATOR = "edgemedia"
SESSION_ITERATOR = "edgesession"
#: the spool of unwritten call records is replayed at most this often (s), by the call clock
REPLAY_EVERY_S = 2.0
#: datagrams read per DTMF log tick at most (the rest wait for the next tick)
DTMF_LOG_BATCH = 200
T = TypeVar("T")


def _due(table: str, iterator: str, decode: Callable[[str], T | None], when: Callable[[T], int],
         now: float) -> list[tuple[str, T]]:
    """(key, decoded value) of the entries of ``table`` whose time (``when``, epoch s) is ``now``
    or earlier; values ``decode`` does not take are skipped; [] when the table cannot be walked."""
    due = []
    if KSR.htable.sht_iterator_start(iterator, table) < 0:
        return []
    while KSR.htable.sht_iterator_next(iterator) > 0:
        value = decode(pv(f"$shtitval({iterator})"))
        if value is not None and when(value) <= now:
            due.append((pv(f"$shtitkey({iterator})"), value))
    KSR.htable.sht_iterator_end(iterator)
    return due


def _epoch_s(text: str) -> int | None:
    """A ``sessiontimer`` value: epoch seconds; None when malformed."""
    return int(text) if (text or "").isdigit() else None


def call_clock(w: Worker) -> None:
    """Once a second: replay spooled records, run the media watchdog, then end answered calls past
    their deadline with a BYE to each side (:func:`onbehalf.hang_up`; ``dlg.end_dlg`` without a
    UDP listener), and release calls whose cleanup time passed without dialog:end."""
    try:
        _replay_spool(w)
    except Exception:  # noqa: BLE001
        log_exception("exception replaying call records")
    try:  # this node lives: the others never reap its calls (routing/monitor/nodeloss.py)
        w.open_store().heartbeat(HEARTBEAT_TTL_S)
        records.retry_releases(w)  # calls that ended while redis did not answer
    except StoreUnavailable:
        pass
    except Exception:  # noqa: BLE001
        log_exception("exception retrying releases")
    try:
        _watch_media(w)
    except Exception:  # noqa: BLE001 - the clock must keep ticking
        log_exception("exception in media watchdog")
    try:  # an rtpengine set: its nodes pinged, the answered calls of a dead one ended now
        for call_id in rtpset.watch(w, time.time()):
            KSR.notice(f"edge: call-id={call_id} lost its rtpengine: ending it\n")
            end_now(w, call_id, rtpset.LOST_REASON, time.time())
    except Exception:  # noqa: BLE001
        log_exception("exception watching the rtpengine set")
    try:
        fastanswer.extend(w)
    except Exception:  # noqa: BLE001
        log_exception("exception extending answered calls")
    now = int(time.time())
    for call_id, _ in _due(cs.SESSION_TABLE, SESSION_ITERATOR, _epoch_s, lambda at: at, now):
        # the carrier refreshed nothing in time (RFC 4028 section 10): the call is over for it too
        KSR.htable.sht_rm(cs.SESSION_TABLE, call_id)
        KSR.notice(f"edge: call-id={call_id} session expired: no refresh from the carrier in time, ending it\n")
        end_now(w, call_id, "session_expired", now)
    for call_id, clock in _due(cs.DEADLINE_TABLE, CLOCK_ITERATOR, Deadline.decode, lambda d: d.at_s, now):
        if clock.h_entry.isdigit() and clock.h_id.isdigit():
            params: list[object] = [int(clock.h_entry), int(clock.h_id)]
            state = records.load(call_id)
            refused = records.media_refused(call_id)
            if refused is not None:
                params.append(media.reason_header(refused) + "\r\n")
            elif state is not None and state.transfer and str(state.transfer.get("result", "")).startswith("2"):
                KSR.notice(f"edge: call-id={call_id} transferred and the agent sent no BYE: ending it\n")
            else:
                KSR.notice(f"edge: call-id={call_id} reached its maximum duration: ending it\n")
            # dialog:end normally removes this entry; if it has not fired by then, the clock
            # frees the slots and the media session itself (set first: dialog:end may come
            # from a worker before the BYEs below return)
            KSR.htable.sht_sets(cs.DEADLINE_TABLE, call_id,
                                Deadline.cleanup_at(now + CLEANUP_GRACE_S, clock.caller_tag).encode())
            if not onbehalf.hang_up(w, call_id, clock.caller_tag, clock.callee_tag,
                                    str(params[2]) if len(params) > 2 else ""):
                KSR.jsonrpcs.exec(json.dumps({"jsonrpc": "2.0", "method": "dlg.end_dlg", "params": params, "id": 1}))
        else:
            KSR.htable.sht_rm(cs.DEADLINE_TABLE, call_id)
            KSR.htable.sht_rm(cs.MEDIA_TABLE, call_id)
            if clock.awaiting_ack:
                KSR.warn(f"edge: call-id={call_id} answered but no ACK within {cs.ACK_WAIT_S} s: releasing its slots\n")
            else:
                KSR.warn(f"edge: call-id={call_id} ended without dialog:end: releasing its slots\n")
            records.finish_call(w, call_id, "edge", records.close_media(w, call_id, clock.caller_tag))


def end_now(w: Worker, call_id: str, reason: str, now: float) -> None:
    """Have the call clock end an answered call at its next tick (BYE to both sides, slots
    released), keeping ``reason`` as the call's ``media_end_reason``; redis trouble only
    loses the reason."""
    try:
        w.open_store().record_media(call_id, {"media_end_reason": reason}, w.settings.media_quality_ttl_s)
    except StoreUnavailable:
        pass
    clock = Deadline.decode(pv(f"$sht({cs.DEADLINE_TABLE}=>{call_id})"))
    if clock is not None and not clock.cleanup:
        KSR.htable.sht_sets(cs.DEADLINE_TABLE, call_id, Deadline(int(now), clock.h_entry, clock.h_id,
                                                                 clock.caller_tag, clock.callee_tag).encode())


def end_at(call_id: str, at_s: float) -> None:
    """Have the call clock end an answered call at ``at_s`` (epoch s) or at its deadline if that
    comes first (BYE to both sides, slots released); nothing for a call not yet ACKed or ending."""
    clock = Deadline.decode(pv(f"$sht({cs.DEADLINE_TABLE}=>{call_id})"))
    if clock is None or clock.cleanup or clock.awaiting_ack or clock.at_s <= at_s:
        return
    KSR.htable.sht_sets(cs.DEADLINE_TABLE, call_id, Deadline(int(at_s), clock.h_entry, clock.h_id,
                                                             clock.caller_tag, clock.callee_tag).encode())


def _replay_spool(w: Worker) -> None:
    """Replay spooled call records (call clock, at most every REPLAY_EVERY_S)."""
    now = time.monotonic()
    if now - w.replayed_at < REPLAY_EVERY_S:
        return
    w.replayed_at = now
    try:
        stored, duplicates = w.cdrs().replay()
    except StoreUnavailable:
        return
    if stored or duplicates:
        KSR.notice(f"edge: replayed spooled call records stored={stored} duplicates={duplicates}\n")


def _watch_media(w: Worker) -> None:
    """Media watchdog, from the call clock: every ``media.check_interval_s`` per answered call, ask
    rtpengine for its statistics (ng ``query``), keep them in the call record (``media_*``), and
    end a call that received no RTP from any side for its ``rtp_timeout_s``: its deadline is
    moved to now, so the clock sends BYE to both sides and the slots are released.  A call
    rtpengine no longer knows (it timed the session out itself) counts as silent; rtpengine
    not answering at all never ends a call.  The same step counts the spend so far of calls over a
    capped trunk or account (:func:`_accrue`)."""
    now = time.time()
    interval = w.settings.media_check_interval_s
    silent: set[tuple[str, int]] = set()  # rtpengines that did not answer this tick: not asked again
    for call_id, watch in _due(cs.MEDIA_TABLE, MEDIA_ITERATOR, MediaWatch.decode, lambda m: m.next_s, now):
        ng = rtpset.client(w, call_id)
        try:
            if ng.address in silent:  # a dead node costs one wait per tick, not one per call (0.5 s each)
                raise NgError(f"rtpengine {ng.address[0]}:{ng.address[1]} did not answer this tick")
            reply = ng.query(call_id)
        except NgError as exc:
            if "unknown call" not in exc.reason.lower():
                if ng.address not in silent:
                    KSR.warn(f"edge: media watchdog cannot query call-id={call_id}: {exc}\n")
                if not exc.reason:
                    silent.add(ng.address)
                KSR.htable.sht_sets(cs.MEDIA_TABLE, call_id, watch.again(int(now) + interval).encode())
                continue
            reply = {}
        try:
            _accrue(w, call_id, now)
        except StoreUnavailable as exc:
            KSR.err(f"edge: cannot count the spend of call-id={call_id} so far: {exc}\n")
        idle = quality.idle_s(reply, now, watch.since_s)
        if reply:
            try:
                w.open_store().record_media(call_id, quality.summary(reply, watch.caller_tag, now))
            except StoreUnavailable as exc:
                KSR.err(f"edge: cannot record media of call-id={call_id}: {exc}\n")
        if idle < watch.timeout_s:
            KSR.htable.sht_sets(cs.MEDIA_TABLE, call_id, watch.again(int(now) + interval).encode())
            continue
        KSR.htable.sht_rm(cs.MEDIA_TABLE, call_id)
        KSR.notice(f"edge: call-id={call_id} had no RTP for {idle:.0f} s (rtp_timeout_s={watch.timeout_s}): ending it\n")
        end_now(w, call_id, "rtp_timeout", now)


def _accrue(w: Worker, call_id: str, now: float) -> None:
    """The media watchdog's spend step: an answered, priced call over a trunk or account with a
    ``daily_spend_cap`` counts its cost so far in the spend counters (:mod:`routing.tables.spend`);
    nothing for other calls (no redis command).

    Raises:
        StoreUnavailable: redis unreachable or slow.
    """
    state = records.load(call_id)
    if state is None or not state.answer_ms or not state.rate or not state.trunk:
        return
    topology = w.open_store().topology()
    trunk, account = topology.trunks.get(state.trunk), topology.accounts.get(state.account or "")
    if (trunk is None or trunk.daily_spend_cap is None) and (account is None or account.daily_spend_cap is None):
        return
    fact = records.facts(w, call_id, state)
    total = cost_so_far(fact.rate, fact.increment, int(state.answer_ms), int(now * 1000))
    w.accrual().accrue(call_id, total, state.trunk, state.account or "", utc_day(int(now * 1000)))


FIRST_AUDIO_ITERATOR = "edgefirstaudio"


def first_audio(w: Worker) -> None:
    """Every ``media.first_audio_poll_ms``: for each answered call whose agent has sent no RTP yet,
    ask rtpengine (ng ``query``) whether the agent's stream has received a packet.  The first
    time it has, the time from the answer goes into ``byoc_edge_time_to_first_audio_seconds`` and
    the record (``media_first_audio_ms``), to within the poll interval; after ``media.dead_air_s``
    without one the call counts as dead air (``byoc_edge_dead_air_total``, ``media_dead_air_s``).
    rtpengine has no first-packet event, and its ``last packet`` is in whole seconds: polling
    only the calls still waiting keeps the cost to a few queries per call.  Agents' held 200 OKs
    are released first (:func:`holdanswer.poll`).  At a call's first poll, an agent whose stream
    rtpengine transcodes gets its first non-silent audio watched (:mod:`.firstvoice`): its entry
    then stays after the first packet, without queries, until that watch ends."""
    now_ms = int(time.time() * 1000)
    holdanswer.poll(w, now_ms)
    pending = []
    if KSR.htable.sht_iterator_start(FIRST_AUDIO_ITERATOR, cs.FIRST_AUDIO_TABLE) < 0:
        return
    while KSR.htable.sht_iterator_next(FIRST_AUDIO_ITERATOR) > 0:
        pending.append((pv(f"$shtitkey({FIRST_AUDIO_ITERATOR})"), pv(f"$shtitval({FIRST_AUDIO_ITERATOR})")))
    KSR.htable.sht_iterator_end(FIRST_AUDIO_ITERATOR)
    live = set()
    for call_id, value in pending:
        answered, direction, trunk, agent, agent_tag = (value.split(":", 4) + [""] * 5)[:5]
        watch = w.voice.get(call_id)
        if watch is not None and watch.heard:
            live.add(call_id)  # only its first voice is awaited (firstvoice.poll)
            continue
        if not answered.isdigit():
            KSR.htable.sht_rm(cs.FIRST_AUDIO_TABLE, call_id)
            continue
        try:
            reply = rtpset.client(w, call_id).query(call_id)
        except NgError:
            KSR.htable.sht_rm(cs.FIRST_AUDIO_TABLE, call_id)  # no session (ended): nothing to wait for
            continue
        if call_id not in w.voice:  # the call's first poll
            watch = w.voice[call_id] = firstvoice.start(w, call_id, int(answered), (direction, trunk, agent),
                                                        agent_tag, reply)
        waited_ms = now_ms - int(answered)
        fields: dict[str, str] = {}
        if quality.packets_from(reply, agent_tag) > 0:
            observe(metrics.TIME_TO_FIRST_AUDIO, waited_ms / 1000, direction, trunk, agent)
            fields = {"media_first_audio_ms": str(waited_ms)}
        elif waited_ms >= w.settings.dead_air_s * 1000:
            count(metrics.DEAD_AIR, direction, trunk, agent)
            KSR.notice(f"edge: call-id={call_id} dead air: no RTP from the agent {waited_ms / 1000:.1f} s after the answer\n")
            fields = {"media_dead_air_s": str(w.settings.dead_air_s)}
            firstvoice.stop(w, call_id, unsubscribe=True)
            watch = None
        if not fields:
            live.add(call_id)
            continue
        if watch is not None:  # heard: the entry now waits for the first voice
            watch.heard = True
            live.add(call_id)
        else:
            KSR.htable.sht_rm(cs.FIRST_AUDIO_TABLE, call_id)
        try:
            w.open_store().record_media(call_id, fields)
        except StoreUnavailable as exc:
            KSR.err(f"edge: cannot record the first audio of call-id={call_id}: {exc}\n")
    firstvoice.poll(w, live, now_ms)


def _dtmf_socket(w: Worker) -> socket.socket | None:
    if w.dtmf_sock is None and not w.dtmf_sock_failed:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(("127.0.0.1", w.settings.dtmf_log_port))
            w.dtmf_sock = sock
        except OSError as exc:
            w.dtmf_sock_failed = True  # said once; digits seen in the media are then not recorded
            KSR.err(f"edge: cannot receive rtpengine dtmf events on 127.0.0.1:{w.settings.dtmf_log_port}: {exc}\n")
    return w.dtmf_sock


def dtmf_log(w: Worker) -> None:
    """Five times a second: read the DTMF events rtpengine reports (``dtmf-log-dest``, JSON over
    UDP) and append each digit to its call record as ``{side}:{digit}:{mode}``
    (routing.dtmf.logged_entry).  Digits of calls not answered on this edge, and the edge's own
    plays of INFO digits, are skipped; a digit in the media of a bridged transfer's leg is the
    bridge's (:func:`bridgemap.media_digit`: its record and its INFO follow the two ends)."""
    sock = _dtmf_socket(w)
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
        # a digit in a bridged transfer's leg is the bridge's; other calls pay a prefix test
        b = bridge.load(digit.call_id) if digit.call_id.startswith(bx.LEG_PREFIX) else None
        if b is not None and bridgemap.media_digit(w, b, digit):
            continue
        known = DtmfCall.decode(pv(f"$sht({cs.DTMF_CALL_TABLE}=>{digit.call_id})"))
        pair = modes(known.modes)
        if pair is None:
            continue
        entry = dtmf.logged_entry(digit, known.caller_tag, pair)
        if entry is None:
            continue
        KSR.info(f"edge: dtmf call-id={digit.call_id} {entry}\n")
        from_caller = digit.source_tag == known.caller_tag
        if dtmf.info_needed(*(pair if from_caller else pair[::-1])):
            onbehalf.send_info(w, digit, from_caller)
        try:
            w.open_store().record_dtmf(digit.call_id, entry)
        except StoreUnavailable as exc:
            KSR.err(f"edge: cannot record dtmf of call-id={digit.call_id}: {exc}\n")
