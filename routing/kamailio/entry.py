"""The object ``app_python3`` calls: :class:`Edge`, made by :func:`mod_init`.

Loaded through ``kamailio/edge.py``.  Kamailio runs a native configuration
(``templates/kamailio.cfg.j2`` and ``templates/kamailio.routes.j2``): its routes screen, admit,
absorb retransmissions and relay what needs no decision, and call the plugin with ``python_exec``
where a decision is made.  Every entry is a few lines behind the one guard :func:`entry`
(an exception is logged once; a request that needs an answer gets 500):

* ``ksr_initial_invite``: an initial INVITE (:mod:`.invite`).
* ``ksr_register``, ``ksr_refuse(what)``, ``ksr_flood``: REGISTER, a refusal the native route
  decided, a source pike flagged (:mod:`.screening`).
* ``ksr_in_dialog``: an in-dialog request carrying SDP or a header under policy, a REFER, an INFO
  (:mod:`.indialog`).
* ``ksr_renumber``, ``ksr_edge_request``, ``ksr_dtmf_started``: CSeq renumbering of calls whose
  digits the edge sends as INFO, the edge's own INFO/BYE looping through it, the ACK of such a call
  (:mod:`.onbehalf`).
* ``ksr_transfer_leg``, ``ksr_transfer_reply``, ``ksr_bridge_reply``, ``ksr_refer_failure``,
  ``ksr_bridged``, ``ksr_bridged_reply``: a transfer the edge carries out itself (:mod:`.bridge`,
  :mod:`.bridgemap`):
  the leg's INVITE in the request route, its final reply (``event_route[uac:reply]``), the
  carrier's answer to the re-INVITE, the carrier's refusal of a relayed REFER, in-dialog requests
  of a bridged call, replies to a re-INVITE relayed across the bridge.
* ``ksr_onreply_manage(msg)``: replies (but 100) of relayed requests (``t_on_reply``, :mod:`.replies`).
* ``ksr_failure_manage(msg)``: a branch failed (``t_on_failure``, :mod:`.failure`).
* ``ksr_dialog_event(msg, event)``: ``event_route[dialog:failed]``, the end of a bridged call and
  the dialog's timeout route; ``ksr_call_end``: the calls the native ``event_route[dialog:end]``
  queued, every 20 ms (:mod:`.dialogs`).
* ``ksr_call_clock``, ``ksr_dtmf_log``, ``ksr_registration_sync``: rtimer routes (:mod:`.timers`,
  :mod:`.registration`).
* ``ksr_xhttp_event(msg)``: ``event_route[xhttp:request]``: the Prometheus metrics (xhttp_prom).

Names of the per-call state shared with the native routes live in :mod:`.callstate`.  Metrics
(names and labels in :mod:`routing.metrics`) are counted in shared memory by xhttp_prom, so every
worker adds to the same series.  Rules from app_python3 (Kamailio 5.6): an exception escaping a
route leaves the request unanswered, hence the guard; redis clients are opened per worker in
:meth:`Edge.child_init`, after the fork.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..ops import runtime
from ..call.decision import Reason, Reject
from ..tables.store import StoreUnavailable
from . import callstate as cs
from . import bridge, bridgemap, dialogs, failure, holdanswer, indialog, invite, onbehalf, overload, registration, replies, screening, timers
from . import transfers
from .worker import Worker, log_exception, pv

__all__ = ["Edge", "entry", "mod_init"]


def entry(where: str, answer: Callable[[Worker], None] | None = None, request: bool = True) -> Callable:
    """The one guard of every entry: app_python3 calls ``method(msg, *args)``.  With ``request``
    the message object and the start time are kept (:meth:`Worker.start`).  An exception is logged
    once as ``edge: {where}: {traceback}`` and then ``answer(worker)`` runs (by default nothing:
    the entry needs no answer); the entry always returns 1 (Kamailio goes on with the route)."""
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(self: "Edge", msg: object, *args: str) -> int:
            w = self.worker
            if request:
                w.start(msg)
            try:
                fn(self, msg, *args)
            except Exception:  # noqa: BLE001 - the caller must get an answer, whatever failed
                log_exception(where)
                if answer is not None:
                    answer(w)
            return 1
        return run
    return wrap


def _answer_500(w: Worker) -> None:
    w.reply_internal_error()


def _http_500(w: Worker) -> None:
    KSR.xhttp.xhttp_reply(500, "Internal Server Error", "text/plain", "")


class Edge:
    """The object ``app_python3`` calls for each route (class style of the KEMI examples).

    Args:
        settings: runtime settings from ``routing.json``.

    Attributes:
        worker: this process's :class:`Worker`.
    """

    def __init__(self, settings: runtime.RuntimeSettings) -> None:
        self.worker = Worker(settings)

    def child_init(self, rank: int) -> int:
        """Open this worker's redis client (after the fork, never before)."""
        return self.worker.child_init(rank)

    # -- the native request route (templates/kamailio.routes.j2) -------------------------------

    @entry("exception in initial INVITE", _answer_500)
    def ksr_initial_invite(self, msg: object) -> None:
        """An initial INVITE that passed the native screening and admission: route it."""
        self.worker.store_failed = KSR.pv.get(cs.STORE_FAILED_VAR) == 1
        invite.initial_invite(self.worker)

    @entry("exception in REGISTER", _answer_500)
    def ksr_register(self, msg: object) -> None:
        """REGISTER from a digest trunk (:func:`screening.register`)."""
        try:
            screening.register(self.worker)
        except StoreUnavailable:
            self.worker.reply(Reject.of(Reason.STORE_UNAVAILABLE, self.worker.settings.retry_after_s))

    @entry("exception in refusal", _answer_500)
    def ksr_refuse(self, msg: object, what: str) -> None:
        """A refusal the native route decided (``too_many_hops``, ``no_dialog``, ``not_allowed``),
        answered here so it is logged, counted and recorded like every other."""
        if what == "not_allowed":
            screening.not_allowed(self.worker)
        else:
            self.worker.reply(Reject.of(Reason.TOO_MANY_HOPS if what == "too_many_hops" else Reason.NO_DIALOG))

    @entry("exception in flood check")
    def ksr_flood(self, msg: object) -> None:
        """pike flagged the source (:func:`screening.flood`).  Replies always go to the packet's
        source address and port (rport, RFC 3581), never to Via hosts."""
        screening.flood(self.worker)

    @entry("exception in in-dialog request", _answer_500)
    def ksr_in_dialog(self, msg: object) -> None:
        """An in-dialog request that needs a decision (the native route handled the rest)."""
        indialog.in_dialog(self.worker, pv("$rm"))

    @entry("exception in CSeq renumbering")
    def ksr_renumber(self, msg: object) -> None:
        """An in-dialog request of a call whose CSeq the edge renumbers (:func:`onbehalf.renumber`)."""
        onbehalf.renumber(pv("$rm"))

    @entry("exception in edge request")
    def ksr_edge_request(self, msg: object) -> None:
        """The edge's own INFO or BYE looping through it (:func:`onbehalf.edge_request`)."""
        if onbehalf.edge_request(self.worker, pv("$rm")):
            KSR.pv.seti(cs.DONE_VAR, 1)

    @entry("exception in DTMF start")
    def ksr_dtmf_started(self, msg: object) -> None:
        """The ACK of a call whose digits travel as SIP INFO on a side's behalf (:func:`onbehalf.note_dtmf_call`)."""
        onbehalf.note_dtmf_call(self.worker)

    # -- a transfer the edge carries out itself (bridge.py) ----------------------------------------

    @entry("exception in transfer leg", _answer_500)
    def ksr_transfer_leg(self, msg: object) -> None:
        """The INVITE of a bridged transfer's leg, sent by the edge to itself (:func:`bridge.leg_invite`)."""
        bridge.leg_invite(self.worker)

    @entry("exception in transfer leg reply", request=False)
    def ksr_transfer_reply(self, msg: object, event: str = "") -> None:
        """``event_route[uac:reply]``: the leg's final reply (:func:`bridge.leg_reply`)."""
        bridge.leg_reply(self.worker)

    @entry("exception in bridge reply", request=False)
    def ksr_bridge_reply(self, msg: object) -> None:
        """The carrier's reply to the re-INVITE of a bridge (:func:`bridge.carrier_reply`)."""
        bridge.carrier_reply(self.worker)

    @entry("exception in bridged reply", request=False)
    def ksr_bridged_reply(self, msg: object) -> None:
        """A reply to a re-INVITE relayed across a bridge (:func:`bridgemap.relayed_reply`)."""
        bridgemap.relayed_reply(self.worker)

    @entry("exception in REFER failure route", request=False)
    def ksr_refer_failure(self, msg: object) -> None:
        """A relayed REFER failed (``auto``): maybe bridged by the edge (:func:`transfers.refer_failed`)."""
        transfers.refer_failed(self.worker)

    @entry("exception in bridged call", _answer_500)
    def ksr_bridged(self, msg: object, when: str = "") -> None:
        """An in-dialog request of a call with a bridge (:func:`bridgemap.in_dialog`); ``when="before"``:
        a BYE before ``loose_route`` (:func:`bridgemap.agent_hangs_up`)."""
        done = bridgemap.agent_hangs_up(self.worker) if when == "before" else bridgemap.in_dialog(self.worker, pv("$rm"))
        if done:
            KSR.pv.seti(cs.DONE_VAR, 1)

    # -- transaction and dialog callbacks -------------------------------------------------------

    @entry("exception in reply route", request=False)
    def ksr_onreply_manage(self, msg: object) -> None:
        """Replies to relayed requests: SDP answer into rtpengine, early-media marking (:mod:`.replies`)."""
        replies.onreply(self.worker)

    @entry("exception in failure route", failure.failed, request=False)
    def ksr_failure_manage(self, msg: object) -> None:
        """A hop failed: fail over to the next one, or give the caller the final answer (:mod:`.failure`)."""
        failure.failure(self.worker)

    @entry("exception holding an answer", request=False)
    def ksr_held_answer(self, msg: object) -> None:
        """Core reply_route, a 2xx of a call whose agent's answer is held until its first RTP
        (:func:`holdanswer.on_reply`); on an exception the reply passes."""
        holdanswer.on_reply(self.worker)

    @entry("cannot release slots", request=False)
    def ksr_dialog_event(self, msg: object, event: str) -> None:
        """``event_route[dialog:end|failed]`` and the dialog timeout route (:mod:`.dialogs`); on an
        exception the slots expire with their lease."""
        dialogs.dialog_event(self.worker, event)

    @entry("exception in call-end drain", request=False)
    def ksr_call_end(self, msg: object, event: str = "") -> None:
        """rtimer route ``CALL_END``, every 20 ms when calls ended: their slots released and records
        written (:func:`dialogs.drain_ended`); on an exception their slots expire with their lease."""
        dialogs.drain_ended(self.worker)

    # -- timers and HTTP --------------------------------------------------------------------------

    @entry("exception in call clock", request=False)
    def ksr_call_clock(self, msg: object, event: str = "") -> None:
        """rtimer callback ``(msg, "rtimer")``, once a second in one timer process (:func:`timers.call_clock`)."""
        timers.call_clock(self.worker)

    @entry("exception in the first-audio poll", request=False)
    def ksr_first_audio(self, msg: object, event: str = "") -> None:
        """rtimer callback, every ``media.first_audio_poll_ms`` (:func:`timers.first_audio`)."""
        timers.first_audio(self.worker)

    @entry("exception in load shedding", request=False)
    def ksr_shed_tick(self, msg: object, event: str = "") -> None:
        """rtimer callback, every 20 ms in one timer process (:func:`overload.shed_tick`)."""
        overload.shed_tick(self.worker)

    @entry("exception in dtmf log", request=False)
    def ksr_dtmf_log(self, msg: object, event: str = "") -> None:
        """rtimer callback, five times a second in one timer process (:func:`timers.dtmf_log`)."""
        timers.dtmf_log(self.worker)

    @entry("exception in registration sync", request=False)
    def ksr_registration_sync(self, msg: object, event: str = "") -> None:
        """rtimer callback (one timer process): make the ``uac`` module's registrations match the
        registration trunks in redis (:func:`registration.sync_registrations`)."""
        try:
            registration.sync_registrations(self.worker)
        except StoreUnavailable as exc:
            KSR.warn(f"edge: registration sync: routing store unavailable: {exc}\n")

    @entry("exception in xhttp event", _http_500, request=False)
    def ksr_xhttp_event(self, msg: object, event: str = "") -> None:
        """``event_route[xhttp:request]``: ``GET /metrics`` on the metrics listener answers the
        xhttp_prom exposition; anything else gets 404, and HTTP on a SIP port 403."""
        if int(pv("$Rp") or 0) != self.worker.settings.metrics_port:
            KSR.xhttp.xhttp_reply(403, "Forbidden", "text/plain", "metrics are served on the metrics port only\n")
        elif KSR.xhttp_prom.check_uri() > 0:
            KSR.xhttp_prom.dispatch()
        else:
            KSR.xhttp.xhttp_reply(404, "Not Found", "text/plain", "try /metrics\n")


def mod_init() -> Edge:
    """``app_python3`` entry: build the plugin object from ``$BYOC_EDGE_RUNTIME``.

    Raises:
        RuntimeError: the variable is not set (Kamailio then refuses to start,
            instead of routing with defaults that may point at the wrong redis).
    """
    if not os.environ.get(runtime.ENV_VAR):
        raise RuntimeError(f"{runtime.ENV_VAR} is not set: start Kamailio with `edgectl up` or set it to routing.json")
    return Edge(runtime.load())
