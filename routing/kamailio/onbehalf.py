"""Requests the edge sends on a side's behalf inside a dialog: the BYEs of a call it ends, the
DTMF INFOs of digits seen in the media, and what that takes: the CSeq map of such a call
(:class:`routing.cseq.CseqMap` in the ``cseqmap`` htable), the renumbering of the side's own
requests and responses, and the edge's own requests looping through it (``X-Edge-Info``)."""

from __future__ import annotations

import re
from collections.abc import Callable

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import bridge as bx
from ..call import cseq
from ..call import dtmf
from ..call import pipeline
from ..ngclient import NgError
from . import callstate as cs
from . import indialog, rtpset, sessiontimers
from .mediaflags import modes
from .worker import Worker, pv

__all__ = ["renumber", "edge_request", "hang_up", "send_info", "note_dtmf_call", "dialog_of", "on_behalf", "cseq_step"]

_URI_IN_BRACKETS = re.compile(r"<([^>]+)>")


def renumber(method: str) -> None:
    """Renumber an in-dialog request of a call in which the edge sends requests on one side's
    behalf (:mod:`routing.cseq`), before the dialog module records its CSeq: the dialog module's
    own BYEs then follow the renumbered space too.  The original number is kept in
    :data:`cs.CSEQ_AVP` for the responses."""
    call_id, from_tag = pv("$ci"), pv("$ft")
    number = int(pv("$cs") or 0)
    try:
        out = _cseq_step(call_id, from_tag, lambda seq: cseq.relay(seq, number, method))
    except ValueError as exc:
        KSR.warn(f"edge: call-id={call_id} {method} keeps its CSeq: {exc}\n")
        return
    if out == number:
        return
    KSR.hdr.remove("CSeq")
    KSR.hdr.append(f"CSeq: {out} {method}\r\n")
    KSR.textopsx.msg_apply_changes()
    if method != "ACK":
        KSR.pv.sets(cs.CSEQ_AVP, str(number))


def _cseq_step(call_id: str, from_tag: str, step: Callable[[cseq.SideSeq], tuple[int, cseq.SideSeq]]) -> int:
    """Apply one :mod:`routing.cseq` step to the state of the side whose tag is ``from_tag``, under
    the htable slot lock, so the numbers given out by concurrent workers strictly increase.

    Returns:
        The step's CSeq number.

    Raises:
        ValueError: no map for the call, a malformed one, or the step refused the number.
    """
    KSR.htable.sht_lock(cs.CSEQ_TABLE, call_id)
    try:
        state = cseq.CseqMap.decode(pv(f"$sht({cs.CSEQ_TABLE}=>{call_id})"))
        from_caller = from_tag == state.caller_tag
        before = state.side(from_caller)
        number, seq = step(before)
        if seq != before:
            KSR.htable.sht_sets(cs.CSEQ_TABLE, call_id, state.with_side(from_caller, seq).encode())
        return number
    finally:
        KSR.htable.sht_unlock(cs.CSEQ_TABLE, call_id)


def edge_request(w: Worker, method: str) -> bool:
    """An in-dialog request the edge sent to itself on one side's behalf: a DTMF INFO
    (:func:`send_info`), the callee-side BYE of a call the edge ends (:func:`hang_up`), a bridged
    transfer's NOTIFY or BYE (:mod:`.bridge`), or a carrier's pure refresh re-INVITE it answers for
    the agent (:func:`sessiontimers.answer_looped`).
    The INFO is numbered in its side's CSeq space (:func:`routing.cseq.local`); the others come
    numbered by their sender; a BYE marks the call as ended by the edge.  The
    dialog module then sees the request (it records the INFO's number, so its own BYEs go
    above it; the BYE ends the dialog), and it is relayed to the other side from that side's
    socket (``X-Edge-Socket``), through its route set.  Returns False for any other request
    (a forged ``X-Edge-`` header is stripped on the in-dialog path)."""
    token = pv(f"$hdr({cs.EDGE_INFO_HEADER})")
    if not token or token != w.token or KSR.is_myself_srcip() < 0:
        return False
    if KSR.tmx.t_precheck_trans() > 0:
        KSR.tm.t_check_trans()
        return True
    if KSR.tm.t_check_trans() == 0:
        return True
    if method == "INVITE":
        sessiontimers.answer_looped()
        return True
    call_id, from_tag = pv("$ci"), pv("$ft")
    socket_name = pv(f"$hdr({cs.EDGE_SOCKET_HEADER})")
    if method == "INFO":
        try:
            number = _cseq_step(call_id, from_tag, cseq.local)
        except ValueError as exc:
            KSR.warn(f"edge: call-id={call_id} no dtmf info: {exc}\n")
            KSR.sl.send_reply(481, "Call/Transaction Does Not Exist")
            return True
        KSR.hdr.remove("CSeq")
        KSR.hdr.append(f"CSeq: {number} INFO\r\n")
    elif method == "BYE":
        KSR.pv.seti(cs.EDGE_HANGUP_AVP, 1)  # dialog:end below: the edge ended the call
    KSR.textops.remove_hf_re("^" + pipeline.EDGE_HEADER_PREFIX)
    KSR.textopsx.msg_apply_changes()
    KSR.dialog.dlg_manage()  # records the INFO's number / ends the dialog on the BYE
    if method == "INFO" and KSR.dialog.is_known_dlg() < 0:
        KSR.sl.send_reply(481, "Call/Transaction Does Not Exist")
        return True
    if socket_name:
        KSR.pv.sets("$fs", socket_name)
    first = _URI_IN_BRACKETS.search(pv("$hdr(Route)"))
    if first:
        KSR.pv.sets("$du", first.group(1))
    indialog.tls_profile(w)  # a new TLS connection to the carrier is checked with the trunk's CA
    if KSR.tm.t_relay() < 0:
        KSR.sl.sl_reply_error()
    return True


def cseq_step(call_id: str, from_tag: str) -> int:
    """The CSeq of a request the edge sends on behalf of the side whose tag is ``from_tag``
    (:func:`routing.cseq.local` under the map's lock: the side's later requests are renumbered
    above it).

    Raises:
        ValueError: the call has no CSeq map.
    """
    return _cseq_step(call_id, from_tag, cseq.local)


def _dialog_of(call_id: str, caller_tag: str, callee_tag: str) -> dict[str, dict[str, str]] | None:
    """What the dialog module keeps of a call's two sides (uri, tag, contact, route set, socket,
    last CSeq), read from the timer process (``dlg_get``); None when it knows no such dialog."""
    if KSR.dialog.dlg_get(call_id, caller_tag, callee_tag) < 0:
        return None
    sides = {}
    for side, prefix, tag in (("caller", "from", caller_tag), ("callee", "to", callee_tag)):
        sides[side] = {"uri": pv(f"$dlg({prefix}_uri)"), "tag": tag,
                       "contact": pv(f"$dlg({prefix}_contact)").strip().strip("<>"),
                       "route": pv(f"$dlg({prefix}_rs)"), "socket": pv(f"$dlg({prefix}_bindaddr)"),
                       "cseq": pv(f"$dlg({prefix}_cseq)")}
    return sides


def _on_behalf(w: Worker, call_id: str, method: str, sides: dict[str, dict[str, str]], from_caller: bool,
               cseq_number: int, extra: str = "", body: str = "", loop: bool = False) -> bool:
    """Send ``method`` in the dialog as the caller (``from_caller``) or the callee, toward the
    other side (tm ``t_uac_send``).  With ``loop`` it goes to the edge's own UDP listener first
    (:func:`edge_request`), marked with the node's token; else straight to the other side,
    from its socket, through its route set.  Returns False when tm refused it."""
    me, peer = (sides["caller"], sides["callee"]) if from_caller else (sides["callee"], sides["caller"])
    headers = (f"From: <{me['uri']}>;tag={me['tag']}\r\nTo: <{peer['uri']}>;tag={peer['tag']}\r\n"
               f"Call-ID: {call_id}\r\nCSeq: {cseq_number} {method}\r\nMax-Forwards: {cs.MAX_FORWARDS}\r\n")
    if peer["route"]:
        headers += f"Route: {peer['route']}\r\n"
    first = _URI_IN_BRACKETS.search(peer["route"])
    nexthop, sock = (first.group(1) if first else ""), peer["socket"]
    if loop:
        host, _, port = w.settings.loop_socket.split(":", 1)[1].rpartition(":")
        # a wildcard listener is reached on loopback
        nexthop = f"sip:{ {'0.0.0.0': '127.0.0.1', '[::]': '[::1]'}.get(host, host)}:{port}"
        headers += f"{cs.EDGE_INFO_HEADER}: {w.token}\r\n{cs.EDGE_SOCKET_HEADER}: {peer['socket']}\r\n"
        sock = w.settings.loop_socket
    return KSR.tm.t_uac_send(method, peer["contact"], nexthop, sock, headers + extra, body) >= 0


def hang_up(w: Worker, call_id: str, caller_tag: str, callee_tag: str, extra: str = "") -> bool:
    """End an answered call with a BYE to each side (RFC 3261 section 15.1.1), each numbered
    above the CSeqs its receiver has had from the other side (the dialog module's record): to
    the caller straight away on the callee's behalf, and to the callee on the caller's behalf
    through the edge itself, so the dialog module ends the dialog on it (``dialog:end``, slots
    released); the callee of a bridged transfer's leg gets it above the edge's own requests to it
    as the leg's caller (:attr:`routing.call.bridge.Bridge.uac_cseq`).  ``extra`` holds further
    header lines (``Reason``, RFC 3326).  Kamailio 5.6.3's
    ``dlg.end_dlg`` is not used: when the first side's 200 arrives before the second BYE is
    built, that BYE is never sent (``terminating non-confirmed dialogs not supported``).

    Returns:
        False when the edge cannot do it itself (no UDP listener, the dialog is unknown):
        the caller then falls back to ``dlg.end_dlg``.
    """
    if not (w.settings.loop_socket and caller_tag and callee_tag):
        return False
    sides = _dialog_of(call_id, caller_tag, callee_tag)
    if sides is None or not sides["caller"]["contact"] or not sides["callee"]["contact"]:
        return False
    to_caller = True  # the caller of a bridged transfer's leg is the edge itself: no BYE to it
    if not sides["caller"]["contact"].startswith(f"sip:{cs.XFER_CONTACT_USER}@"):
        to_caller = _on_behalf(w, call_id, "BYE", sides, False, int(sides["callee"]["cseq"] or 0) + 1, extra)
    top = int(sides["caller"]["cseq"] or 0)
    b = bx.Bridge.decode(pv(f"$sht({cs.XFER_TABLE}=>{call_id})"))
    if b is not None and call_id == b.leg:  # the edge's requests as the leg's caller (relayed re-INVITEs,
        top = max(top, b.uac_cseq, b.leg_cseq)  # DTMF INFO) went straight, unseen by the dialog module
    to_callee = _on_behalf(w, call_id, "BYE", sides, True, top + 1, extra, loop=True)
    if not (to_caller and to_callee):
        KSR.warn(f"edge: call-id={call_id} tm refused a BYE (caller: {to_caller}, callee: {to_callee})\n")
    return to_callee


#: public names of the helpers the bridge uses (routing/kamailio/bridge.py)
dialog_of = _dialog_of
on_behalf = _on_behalf


def send_info(w: Worker, digit: dtmf.LoggedDigit, from_caller: bool) -> None:
    """Send ``digit``, seen in the media of the caller (``from_caller``) or callee, to the other side
    as a DTMF INFO on the sender's behalf (RFC 6086; body :func:`routing.dtmf.info_body`).  The
    request goes to the edge itself first (:func:`edge_request` numbers it and relays it), so the
    dialog module records its CSeq.  Problems are logged: the digit is in the call record anyway."""
    call_id = digit.call_id
    try:
        state = cseq.CseqMap.decode(pv(f"$sht({cs.CSEQ_TABLE}=>{call_id})"))
    except ValueError:
        KSR.warn(f"edge: call-id={call_id} digit {digit.digit} not sent as INFO: the call is not known\n")
        return
    sides = _dialog_of(call_id, state.caller_tag, state.callee_tag) if w.settings.loop_socket else None
    if sides is None:
        KSR.warn(f"edge: call-id={call_id} digit {digit.digit} not sent as INFO: "
                 f"{'no dialog' if w.settings.loop_socket else 'no UDP listener'}\n")
        return
    duration = max(dtmf.MIN_DURATION_MS, min(dtmf.MAX_DURATION_MS, digit.duration_ms or w.settings.dtmf_duration_ms))
    ctype, body = dtmf.info_body(digit.digit, duration)
    # numbered by edge_request; the 1 here is a placeholder
    if not _on_behalf(w, call_id, "INFO", sides, from_caller, 1, f"Content-Type: {ctype}\r\n", body, loop=True):
        KSR.warn(f"edge: call-id={call_id} digit {digit.digit} not sent as INFO: tm refused it\n")
        return
    KSR.info(f"edge: dtmf call-id={call_id} digit={digit.digit} -> info to the {'callee' if from_caller else 'caller'}\n")


def note_dtmf_call(w: Worker) -> None:
    """On the ACK of an answered call whose digits travel as SIP INFO on a side's behalf: start its
    CSeq map, and take the digits out of the media toward the INFO side (ng ``block DTMF``), so
    they arrive once."""
    if not w.settings.dtmf_log_port:
        return
    pair = modes(pv(cs.DTMF_VAR))
    if pair is None:
        return
    call_id, caller_tag, callee_tag = pv("$ci"), pv("$dlg(from_tag)"), pv("$dlg(to_tag)")
    to_callee, to_caller = dtmf.info_needed(pair[0], pair[1]), dtmf.info_needed(pair[1], pair[0])
    if not (to_callee or to_caller) or not callee_tag:
        return
    invite = int(pv("$cs") or 0)  # the ACK repeats the INVITE's number
    state = cseq.CseqMap(caller_tag, callee_tag, cseq.SideSeq(invite, 0, invite, invite, invite), cseq.SideSeq())
    KSR.htable.sht_sets(cs.CSEQ_TABLE, call_id, state.encode())
    for sender_tag, mode, needed in ((caller_tag, pair[0], to_callee), (callee_tag, pair[1], to_caller)):
        if needed:
            try:
                rtpset.client(w, call_id).command("block DTMF", **{"call-id": call_id, "from-tag": sender_tag, **dtmf.block_params(mode)})
            except NgError as exc:
                KSR.warn(f"edge: call-id={call_id} digits stay in the media too: {exc}\n")
