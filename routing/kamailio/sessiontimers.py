"""Session timers (RFC 4028) on the agent's behalf (:mod:`routing.call.sessiontimer`): the carrier
made the refresher at the answer, its refresh UPDATEs answered by the edge, its refresh re-INVITEs
relayed without the timer headers the agent does not know and given them back in the 2xx, and
the call's expiry kept in ``sessiontimer`` (ended by the call clock, :mod:`routing.kamailio.timers`).
Calls nobody asked timers for never come past :func:`on_answer`'s first check."""

from __future__ import annotations

import time

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import sessiontimer as st
from . import callstate as cs
from .worker import has_sdp, pv

__all__ = ["on_answer", "refresh", "refresh_answered", "refreshed"]


def on_answer(call_id: str, direction: str) -> None:
    """The first 2xx of an initial INVITE (:func:`routing.kamailio.replies`): when the agent does
    not do the timers the carrier asked for, make the carrier the refresher (origination: add
    ``Session-Expires: N;refresher=uac`` and ``Require: timer`` to the 2xx) and start the expiry."""
    request_se = pv("$T_req($hdr(Session-Expires))")
    reply_se = pv("$hdr(Session-Expires)")
    if not request_se and not reply_se:
        return
    taken = st.takeover(direction, request_se, pv("$T_req($hdr(Supported))"), reply_se)
    if taken is None:
        return
    if taken.refresher == "uac":
        KSR.hdr.append(f"Session-Expires: {taken.header()}\r\nRequire: timer\r\n")
    KSR.pv.sets(cs.SESSION_VAR, taken.encode())
    _arm(call_id, taken)
    KSR.info(f"edge: session timer call-id={call_id} interval={taken.interval_s} s refresher={taken.refresher}: "
             "the edge answers refreshes for the agent\n")


def _arm(call_id: str, taken: st.Takeover) -> None:
    """The call ends (call clock) unless a refresh comes before :func:`st.end_after_s`."""
    KSR.htable.sht_sets(cs.SESSION_TABLE, call_id, str(int(time.time()) + st.end_after_s(taken.interval_s)))


def refresh(method: str) -> bool:
    """An in-dialog INVITE or UPDATE.  From the carrier of a call whose timers the edge keeps: an
    UPDATE without SDP is a pure refresh, answered here (200 with ``Session-Expires``); any other
    refresh is relayed without ``Session-Expires``, ``Min-SE`` and ``Require: timer`` (the agent
    would refuse 420), and its 2xx gets them back (:func:`refresh_answered`).

    Returns:
        True when the request has been answered here.
    """
    taken = st.Takeover.decode(pv(cs.SESSION_VAR))
    if taken is None:
        return False
    from_caller = pv("$ft") == pv("$dlg(from_tag)")
    if from_caller != (taken.refresher == "uac"):
        return False  # the agent's own request
    if method == "UPDATE" and not has_sdp():
        KSR.tm.t_newtran()
        KSR.hdr.append_to_reply(f"Session-Expires: {taken.header()}\r\nRequire: timer\r\n")
        KSR.tm.t_reply(200, "OK")
        _arm(pv("$ci"), taken)
        return True
    for name in ("Session-Expires", "Min-SE"):
        KSR.hdr.remove(name)
    if [t.strip().lower() for t in pv("$hdr(Require)").split(",")] == ["timer"]:
        KSR.hdr.remove("Require")
    KSR.pv.sets(cs.REFRESH_AVP, taken.encode())
    return False


def refreshed(call_id: str, takeover: str) -> None:
    """A 2xx to a refresh the edge relayed under another Call-ID (a bridged transfer's re-INVITE,
    :mod:`.bridgemap`): the carrier gets its ``Session-Expires`` back and the expiry of ``call_id``
    starts again; ``takeover`` is the :data:`cs.REFRESH_AVP` value."""
    taken = st.Takeover.decode(takeover)
    if taken is None:
        return
    if not pv("$hdr(Session-Expires)"):
        KSR.hdr.append(f"Session-Expires: {taken.header()}\r\nRequire: timer\r\n")
    _arm(call_id, taken)


def refresh_answered() -> None:
    """The agent's 2xx to a relayed refresh (its transaction carries :data:`cs.REFRESH_AVP`): the
    carrier gets its ``Session-Expires`` back, and the expiry starts again."""
    taken = st.Takeover.decode(pv(cs.REFRESH_AVP))
    if taken is None:
        return
    if not pv("$hdr(Session-Expires)"):
        KSR.hdr.append(f"Session-Expires: {taken.header()}\r\nRequire: timer\r\n")
    _arm(pv("$ci"), taken)
