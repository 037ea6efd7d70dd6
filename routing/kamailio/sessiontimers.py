"""Session timers (RFC 4028) on the agent's behalf (:mod:`routing.call.sessiontimer`): the carrier
made the refresher at the answer, its refresh UPDATEs answered by the edge, and its pure refresh
re-INVITEs too (the SDP repeated unchanged: answered with the SDP the carrier last received, which
:func:`keep_answer` keeps; on a termination call that is first the agent's offer as the edge sent
it, kept by the native onsend_route); its other refresh re-INVITEs relayed without the timer
headers the agent does not know and given them back in the 2xx, and the call's expiry kept in
``sessiontimer`` (ended by the call clock, :mod:`routing.kamailio.timers`).  Calls nobody asked
timers for never come past :func:`on_answer`'s first check."""

from __future__ import annotations

import json
import time

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import sessiontimer as st
from . import callstate as cs
from .worker import Worker, has_sdp, pv

__all__ = ["on_answer", "keep_answer", "refresh", "refresh_answered", "refreshed", "answer_looped"]


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


def refresh(w: Worker, method: str, answer_reinvite: bool = True) -> bool:
    """An in-dialog INVITE or UPDATE.  From the carrier of a call whose timers the edge keeps: an
    UPDATE without SDP is a pure refresh, answered here (200 with ``Session-Expires``), and so is a
    re-INVITE repeating the carrier's SDP unchanged (:func:`_answer_refresh`) unless
    ``answer_reinvite`` is False (a bridged call, :mod:`.bridgemap`: what the carrier last received
    changed with the bridge); any other refresh is relayed without ``Session-Expires``, ``Min-SE`` and ``Require: timer`` (the agent
    would refuse 420), and its 2xx gets them back (:func:`refresh_answered`).

    Returns:
        True when the request has been answered here.
    """
    taken = st.Takeover.decode(pv(cs.SESSION_VAR))
    if taken is None:
        return False
    from_caller = pv("$ft") == pv("$dlg(from_tag)")
    if from_caller != (taken.refresher == "uac"):
        if has_sdp():
            KSR.pv.sets(cs.SESSION_SDP_VAR, "")  # the media change: what the carrier last received is not kept
        return False  # the agent's own request
    if method == "UPDATE" and not has_sdp():
        KSR.tm.t_newtran()
        KSR.hdr.append_to_reply(f"Session-Expires: {taken.refresh_header()}\r\nRequire: timer\r\n")
        KSR.tm.t_reply(200, "OK")
        _arm(pv("$ci"), taken)
        return True
    if method == "INVITE" and answer_reinvite and has_sdp() and _answer_refresh(w, taken):
        return True
    if has_sdp():
        KSR.pv.sets(cs.SESSION_SDP_VAR, "")  # relayed: its 2xx keeps the new answer (keep_answer)
    for name in ("Session-Expires", "Min-SE"):
        KSR.hdr.remove(name)
    if [t.strip().lower() for t in pv("$hdr(Require)").split(",")] == ["timer"]:
        KSR.hdr.remove("Require")
    KSR.pv.sets(cs.REFRESH_AVP, taken.encode())
    return False


def _answer_refresh(w: Worker, taken: st.Takeover) -> bool:
    """A carrier's re-INVITE that repeats its last SDP unchanged (a pure refresh, RFC 4028 section 10)
    on a call whose answer :func:`keep_answer` kept: answered 200 for the agent, which never sees
    it, with the SDP the carrier last received (the media do not change, so rtpengine is not
    asked), the agent's Contact and the timer headers.  The re-INVITE goes to the edge's own UDP
    listener carrying that SDP and Contact (:func:`answer_looped`), so the 200 comes back as a
    relayed reply: topology hiding (topoh) masks the Contact of relayed replies, never of a reply
    the edge makes itself.  Its ACK ends at the edge (native route WITHINDLG,
    :data:`cs.SESSION_ACK_VAR`).  True when sent so."""
    if not w.settings.loop_socket:
        return False
    try:
        kept = json.loads(pv(cs.SESSION_SDP_VAR) or "{}")
    except ValueError:
        return False
    if not kept.get("sdp") or not kept.get("contact") or not st.unchanged(str(kept.get("o") or ""), pv("$rb")):
        return False
    host, _, port = w.settings.loop_socket.split(":", 1)[1].rpartition(":")
    KSR.pv.sets(cs.SESSION_ACK_VAR, f"{pv('$ft')}:{pv('$cs')}")  # the sender's tag: each side numbers its own CSeqs
    KSR.pv.sets(cs.REFRESH_AVP, taken.encode())
    KSR.pv.seti(cs.LOCAL_REFRESH_AVP, 1)
    KSR.hdr.append(f"{cs.EDGE_INFO_HEADER}: {w.token}\r\n{cs.EDGE_CONTACT_HEADER}: {kept['contact']}\r\n")
    KSR.textops.set_body(str(kept["sdp"]), "application/sdp")
    KSR.pv.sets("$du", f"sip:{ {'0.0.0.0': '127.0.0.1', '[::]': '[::1]'}.get(host, host)}:{port}")
    KSR.pv.sets("$fs", w.settings.loop_socket)
    KSR.tm.t_on_reply(cs.ON_REPLY)
    if KSR.tm.t_relay() < 0:
        KSR.sl.sl_reply_error()
    KSR.info(f"edge: session refresh re-INVITE of call-id={pv('$ci')} answered for the agent\n")
    return True


def answer_looped() -> None:
    """The edge's own refresh re-INVITE back at its listener (:func:`_answer_refresh`): 200 with its
    body and the Contact it names (the caller checked the node's token).  Stateless: the carrier's
    ACK ends at the edge, so nothing may wait for it; the transaction that relays this 200 answers
    the carrier's retransmissions."""
    KSR.hdr.append_to_reply(f"Contact: {pv(f'$hdr({cs.EDGE_CONTACT_HEADER})')}\r\n")
    KSR.textops.set_reply_body(pv("$rb"), "application/sdp")
    KSR.sl.send_reply(200, "OK")


def keep_answer() -> None:
    """The 2xx of an INVITE on a call whose timers the edge keeps (after rtpengine rewrote its SDP):
    keep what :func:`_answer_refresh` needs, ``{"o": the carrier's o= line, "sdp": the SDP the carrier
    received, "contact": the agent's Contact}`` (JSON, :data:`cs.SESSION_SDP_VAR`).

    * an INVITE from the carrier (an origination call's initial INVITE, either direction's re-INVITE):
      its ``o=`` line, the agent's answer as the carrier receives it (the reply's lumps applied first,
      textopsx ``msg_apply_changes``) and the 2xx's Contact;
    * a termination call's initial INVITE (the agent's offer, answered by the carrier): the 2xx's
      ``o=`` line, the INVITE's body as sent to the carrier (rtpengine's rewrite, kept by the native
      onsend_route in :data:`cs.SENT_INVITE_TABLE` and taken from it here) and the INVITE's Contact.
      A retransmitted 2xx finds the entry gone and changes nothing."""
    taken = st.Takeover.decode(pv(cs.SESSION_VAR))
    if taken is None or not has_sdp():
        return
    termination = pv(cs.DIRECTION_AVP) == "termination"
    if bool(KSR.pv.get(cs.FROM_CALLER_AVP)) != termination:  # the carrier's offer, the agent's answer
        offer = pv("$T_req($rb)")
        if KSR.textopsx.msg_apply_changes() < 0:
            return
        _keep(st.origin(offer), pv("$rb"), pv("$hdr(Contact)"))
        return
    if not termination or not KSR.pv.get(cs.SENT_INVITE_AVP):
        return
    call_id = pv("$ci")
    sent = st.sent_body(KSR.htable.sht_gete(cs.SENT_INVITE_TABLE, call_id) or "")
    KSR.htable.sht_rm(cs.SENT_INVITE_TABLE, call_id)
    if sent:
        _keep(st.origin(pv("$rb")), sent, pv("$T_req($hdr(Contact))"))


def _keep(origin: str, sdp: str, contact: str) -> None:
    KSR.pv.sets(cs.SESSION_SDP_VAR, json.dumps({"o": origin, "sdp": sdp, "contact": contact}))


def refreshed(call_id: str, takeover: str) -> None:
    """A 2xx to a refresh the edge relayed under another Call-ID (a bridged transfer's re-INVITE,
    :mod:`.bridgemap`): the carrier gets its ``Session-Expires`` back and the expiry of ``call_id``
    starts again; ``takeover`` is the :data:`cs.REFRESH_AVP` value."""
    taken = st.Takeover.decode(takeover)
    if taken is None:
        return
    if not pv("$hdr(Session-Expires)"):
        KSR.hdr.append(f"Session-Expires: {taken.refresh_header()}\r\nRequire: timer\r\n")
    _arm(call_id, taken)


def refresh_answered() -> None:
    """The agent's 2xx to a relayed refresh (its transaction carries :data:`cs.REFRESH_AVP`): the
    carrier gets its ``Session-Expires`` back, and the expiry starts again."""
    taken = st.Takeover.decode(pv(cs.REFRESH_AVP))
    if taken is None:
        return
    if not pv("$hdr(Session-Expires)"):
        KSR.hdr.append(f"Session-Expires: {taken.refresh_header()}\r\nRequire: timer\r\n")
    _arm(pv("$ci"), taken)
