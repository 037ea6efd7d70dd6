"""In-dialog requests of the two calls a bridged transfer joins (:mod:`.bridge`): the carrier's
call and the transfer leg (or, in an attended transfer, the agent's consult call).  The edge is a
proxy, so it maps the two dialogs itself (RFC 3261 section 12.2: each has its own Call-ID, tags,
CSeq spaces and remote targets):

* :func:`agent_hangs_up`: the agent's BYE, before ``loose_route`` (where the dialog module would
  end the call), answered here in any phase;
* :func:`in_dialog`: after ``loose_route``: a BYE from an end answered here (the other call is
  ended at this one's end, :func:`bridge.ended`); a re-INVITE or UPDATE (RFC 3311) with SDP from an
  end re-offered in the leg's rtpengine call and relayed to the other end with the other dialog's
  identifiers (:func:`relayed_reply` puts its replies' back, its ACK is mapped); a re-INVITE
  without SDP relayed as it is, the other end's offer in its 2xx made in the leg's rtpengine call
  and the answer in the ACK too (late offer, RFC 3261 section 14.1); a DTMF INFO (RFC 6086)
  relayed, or played into the media toward an end that takes no INFO (:func:`_dtmf_info`); other
  requests answered here;
* :func:`media_digit`: a digit rtpengine saw in the leg's media (DTMF log timer): recorded in the
  call it came in, and sent to an end that takes INFO as an INFO in that end's own dialog.

Only calls with an entry in the ``xfer`` htable come here (the native route looks it up).
"""

from __future__ import annotations

import json
import re

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import bridge as bx
from ..call import dtmf
from ..call import media
from ..call.decision import Reject
from ..ngclient import NgError
from ..tables.store import StoreUnavailable
from . import bridge
from . import callstate as cs
from . import onbehalf, rtpset, sessiontimers
from .mediaflags import flags, modes, offer_flags, sides
from .worker import Worker, has_sdp, log_reject, pv

__all__ = ["agent_hangs_up", "in_dialog", "relayed_reply", "media_digit"]

_URI_IN_BRACKETS = re.compile(r"<([^>]+)>")


def agent_hangs_up(w: Worker) -> bool:
    """Before ``loose_route`` (where the dialog module would end the call): the agent's BYE in a call
    with a bridge (the original call, or the consult call of an attended transfer), in any phase:
    answered ``200`` here, the carrier's call (and the consult call) stay for the bridge (RFC 5589
    section 6: a transferor may hang up once the transfer is accepted; after the bridge its BYE
    crosses the edge's own).  While the leg rings the agent gets no more NOTIFY, and if the leg
    fails the edge ends the carrier's call.

    Returns:
        True when it was answered here; False for any other BYE.
    """
    call_id = pv("$ci")
    b = bridge.load(call_id)
    agent = (call_id == b.call_id and pv("$ft") == b.agent_tag) or (b.consult and call_id == b.leg
                                                                    and pv("$ft") == b.leg_tag) if b else False
    if b is None or not agent:
        return False
    if b.phase in ("dialling", "answering", "consulting") and not b.agent_gone:
        bridge.save(b.moved(agent_gone=True))
        KSR.info(f"edge: transfer call-id={b.call_id}: the agent hung up while the leg rings; the caller waits for it\n")
    if KSR.tm.t_newtran() > 0:
        KSR.tm.t_reply(200, "OK")
    return True


def in_dialog(w: Worker, method: str) -> bool:
    """An in-dialog request of a call with a bridge (native route, after ``loose_route``).

    A BYE from an end of a bridged call (the carrier on the original call, the target on the leg)
    is answered ``200`` here and not relayed: the agent is gone, the leg's caller is the edge; a
    re-INVITE, UPDATE or INFO is relayed to the other end (:func:`_relay_across`), its ACK mapped;
    other requests are answered here (:func:`_refuse_other`).
    The dialog module ended the call when ``loose_route`` met the BYE, and :func:`ended` ended
    the other call then, leaving this call's entry in the ``ended`` phase for this answer.

    Returns:
        True when it was answered here; False to go on as any in-dialog request.
    """
    call_id = pv("$ci")
    b = bridge.load(call_id)
    if b is None or b.phase not in ("bridged", "ended"):
        return False
    if pv("$ft") != (b.carrier_tag if call_id == b.call_id else b.target_tag):
        return False  # the edge's own request on a side's behalf
    if method == "ACK":
        if b.phase == "bridged":
            _relay_ack(w, b)
        return True
    if method != "BYE":
        if b.phase == "bridged":
            _relay_across(w, b, method)
        else:
            _refuse_other(method)
        return True
    if b.phase == "ended":
        KSR.htable.sht_rm(cs.XFER_TABLE, call_id)
    else:
        KSR.dialog.dlg_manage()  # ends this dialog: dialog:end, then ended() ends the other call
    if KSR.tm.t_newtran() > 0:
        KSR.tm.t_reply(200, "OK")
    return True


def _relay_across(w: Worker, b: bx.Bridge, method: str) -> None:
    """A re-INVITE, UPDATE or INFO from an end of a bridged call, relayed to the other end in the
    other dialog: its offer (if any) re-made in the leg's rtpengine call, its dialog identifiers
    (Call-ID, tags, CSeq, Contact, route set) rewritten to those the edge has in the other dialog;
    its replies rewritten back (:func:`relayed_reply`) and a re-INVITE's ACK mapped
    (:func:`_relay_ack`).  An UPDATE with SDP (RFC 3311) goes as a re-INVITE does; a re-INVITE
    without SDP goes as it is, the other end's offer coming in its 2xx and the answer in the ACK.
    The carrier's session refreshes of a call whose timers the edge keeps (RFC 4028,
    :mod:`.sessiontimers`) are handled as before the bridge, any other UPDATE without SDP is
    answered here (:func:`_refresh_here`); a DTMF INFO is played into the media instead when the
    other end takes no INFO (:func:`_dtmf_info`)."""
    from_carrier = pv("$ci") == b.call_id
    if method not in ("INVITE", "UPDATE", "INFO"):
        _refuse_other(method)
        return
    KSR.dialog.dlg_manage()  # this end's dialog records its CSeq
    # the edge never answers a re-INVITE with the SDP it kept from before the bridge
    if from_carrier and method != "INFO" and sessiontimers.refresh(w, method, answer_reinvite=False):
        return  # the carrier's session refresh UPDATE (RFC 4028), answered here as before the bridge
    if method == "UPDATE" and not has_sdp():
        _refresh_here()
        return
    if method == "INFO" and _dtmf_info(w, b, from_carrier):
        return
    offer = method != "INFO" and has_sdp()
    policy: str | Reject = _reoffer_flags(w, b, from_carrier) if offer else ""
    if isinstance(policy, Reject):  # the offer breaks a side's media policy (SRTP required, no codec allowed)
        log_reject(policy, f"bridged {method}")
        if KSR.tm.t_newtran() > 0:
            KSR.tm.t_reply(policy.code, policy.reason)
        return
    back_contact = (_other_side(w, b, not from_carrier) or ({}, {}, "", ""))[3]  # the Contact this end knows
    other = _other_side(w, b, from_carrier)
    if other is None:
        _refuse_other("BYE")  # 501: the other call is gone
        return
    me, peer, call_id, contact = other
    field = "uac_cseq" if from_carrier else "agent_cseq"
    try:
        number = bridge.take_cseq(b, field, max(b.leg_cseq if from_carrier else 0, int(me.get("cseq") or 0)))
    except ValueError:
        _refuse_other("BYE")  # 501: the bridge ended meanwhile
        return
    b = b.moved(**{field: number})
    rtp = (b.leg_tag, b.target_tag) if from_carrier else (b.target_tag, b.leg_tag)
    late = method == "INVITE" and not offer  # a late offer (RFC 3261 section 14.1): the 2xx offers
    # the sender's own CSeq for its replies (the number it sent, before any renumbering, :func:`onbehalf.renumber`)
    sent = f"{pv(cs.CSEQ_AVP)} {method}" if pv(cs.CSEQ_AVP) else pv("$hdr(CSeq)")
    restore = {"from": pv("$hdr(From)"), "to": pv("$hdr(To)"), "callid": pv("$ci"), "cseq": sent,
               "contact": back_contact, "rtp": [b.leg, *rtp], "refresh": pv(cs.REFRESH_AVP), "late": late}
    if method == "INVITE":
        b = b.moved(relayed=[int(pv("$cs") or 0), number, int(late)])
    bridge.save(b)
    if offer:
        KSR.rtpengine.rtpengine_offer(" ".join((str(policy), _leg_media(b.leg, *rtp))))
    _rewrite(f"<{me['uri']}>;tag={me['tag']}", f"<{peer['uri']}>;tag={peer['tag']}", call_id, f"{number} {method}",
             contact if method != "INFO" else "", peer["route"])
    _send_to(peer)
    KSR.pv.sets(cs.XRELAY_AVP, json.dumps(restore))
    KSR.tm.t_on_reply(cs.ON_BRIDGED_REPLY)
    if KSR.tm.t_relay() < 0:
        KSR.sl.sl_reply_error()


def _dtmf_info(w: Worker, b: bx.Bridge, from_carrier: bool) -> bool:
    """A DTMF INFO from an end of a bridged call (``application/dtmf-relay`` or ``application/dtmf``,
    :func:`routing.call.dtmf.parse_info`): the digit recorded in the call it came in; when the
    sender uses INFO and the other end does not (their modes kept at the leg's INVITE,
    :func:`routing.call.dtmf.info_action`), answered ``200`` here and played into the leg's media
    toward the other end (ng ``play DTMF``, the sender's tag in the leg's rtpengine call: an RFC
    4733 event or a tone by that end's codecs).  A DTMF body without a digit: ``400 Bad DTMF Signal``.

    Returns:
        True when answered here; False to relay it across (the other end takes INFO, the modes
        are unknown, or rtpengine refused to play it).
    """
    ctype = pv("$cT")
    if ctype.split(";", 1)[0].strip().lower() not in dtmf.INFO_TYPES:
        return False
    try:
        digit, duration = dtmf.parse_info(ctype, pv("$rb"))
    except dtmf.DtmfError as exc:
        KSR.info(f"edge: dtmf info refused call-id={pv('$ci')} (bridged): {exc}\n")
        if KSR.tm.t_newtran() > 0:
            KSR.tm.t_reply(400, "Bad DTMF Signal")
        return True
    side = ("caller" if b.carrier_is_caller else "callee") if from_carrier else "callee"
    try:
        w.open_store().record_dtmf(pv("$ci"), dtmf.record_entry(side, digit, dtmf.DtmfMode.INFO))
    except StoreUnavailable as exc:
        KSR.err(f"edge: cannot record dtmf of call-id={pv('$ci')}: {exc}\n")
    pair = modes(b.dtmf)
    if pair is None:
        return False
    sender, receiver = pair if from_carrier else (pair[1], pair[0])
    if dtmf.info_action(sender, receiver) == "relay":
        return False
    s = w.settings
    play = dict(item.split("=", 1) for item in dtmf.play_flags(digit, duration, s.dtmf_duration_ms, s.dtmf_volume_db).split())
    try:
        rtpset.client(w, b.leg).command("play DTMF", call_id=b.leg, from_tag=b.leg_tag if from_carrier else b.target_tag,
                                        code=play["code"], duration=int(play["duration"]), volume=int(play["volume"]))
    except NgError as exc:
        KSR.warn(f"edge: rtpengine cannot play dtmf call-id={b.leg} digit={digit}: relaying the INFO: {exc}\n")
        return False
    KSR.info(f"edge: dtmf call-id={pv('$ci')} digit={digit} info->{receiver} across the bridge\n")
    if KSR.tm.t_newtran() > 0:
        KSR.tm.t_reply(200, "OK")
    return True


def media_digit(w: Worker, b: bx.Bridge, digit: dtmf.LoggedDigit) -> bool:
    """A digit rtpengine reported in the leg's rtpengine call (``dtmf-log-dest``, read by the DTMF
    log timer, :func:`routing.kamailio.timers.dtmf_log`), which carries both ends' media after the
    bridge (:func:`routing.call.bridge.bridged_digit`): recorded in the call it came in (the
    carrier's digit in the original call's record, the target's in the leg's); once bridged, when
    the other end takes INFO and the sender does not, sent to it as a DTMF INFO (RFC 6086, body
    :func:`routing.call.dtmf.info_body`) in its own dialog (:func:`_info_across`).  The digit was
    taken out of the media toward that end at the leg's ACK (ng ``block DTMF``,
    :func:`onbehalf.note_dtmf_call`: the leg's DTMF modes are the carrier's and the target's).

    Returns:
        False when the bridge does not decide (another call's media, an attended transfer): the
        DTMF log goes on as for any call.
    """
    found = bx.bridged_digit(b, digit.call_id, digit.source_tag, digit.digit)
    if found is None:
        return False
    if found.entry is None:  # the edge's own play of an INFO end's digit (recorded from the INFO)
        return True
    KSR.info(f"edge: dtmf call-id={found.record_call} {found.entry} (bridged)\n")
    if found.info:
        _info_across(w, b, digit, found.from_carrier)
    try:
        w.open_store().record_dtmf(found.record_call, found.entry)
    except StoreUnavailable as exc:
        KSR.err(f"edge: cannot record dtmf of call-id={found.record_call}: {exc}\n")
    return True


def _info_across(w: Worker, b: bx.Bridge, digit: dtmf.LoggedDigit, from_carrier: bool) -> None:
    """Send ``digit`` to the other end of the bridge as a DTMF INFO in that end's dialog, straight
    (tm ``t_uac_send``; its reply ends there): to the target in the leg as its caller (the edge),
    or to the carrier in its call as the agent, numbered above the edge's earlier requests there
    (:func:`bridge.take_cseq`).  Problems are logged: the digit is recorded anyway."""
    if from_carrier:
        sides = onbehalf.dialog_of(b.leg, b.leg_tag, b.target_tag)
        call_id, field, as_caller, me = b.leg, "uac_cseq", True, (sides or {}).get("caller")
    else:
        found = bridge.original_sides(b)
        sides, me = (found[0], found[2]) if found else (None, None)
        call_id, field, as_caller = b.call_id, "agent_cseq", not b.carrier_is_caller
    if sides is None or me is None:
        KSR.warn(f"edge: call-id={call_id} digit {digit.digit} not sent as INFO: no dialog\n")
        return
    try:
        number = bridge.take_cseq(b, field, max(b.leg_cseq if from_carrier else 0, int(me.get("cseq") or 0)))
    except ValueError as exc:
        KSR.warn(f"edge: call-id={call_id} digit {digit.digit} not sent as INFO: {exc}\n")
        return
    duration = max(dtmf.MIN_DURATION_MS, min(dtmf.MAX_DURATION_MS, digit.duration_ms or w.settings.dtmf_duration_ms))
    ctype, body = dtmf.info_body(digit.digit, duration)
    if not onbehalf.on_behalf(w, call_id, "INFO", sides, as_caller, number, f"Content-Type: {ctype}\r\n", body):
        KSR.warn(f"edge: call-id={call_id} digit {digit.digit} not sent as INFO: tm refused it\n")
        return
    KSR.info(f"edge: dtmf call-id={call_id} digit={digit.digit} -> info to the {'target' if from_carrier else 'carrier'} "
             f"across the bridge\n")


def _relay_ack(w: Worker, b: bx.Bridge) -> None:
    """The ACK of a relayed re-INVITE's 2xx, mapped to the other dialog (its CSeq number there);
    after a late offer its SDP is the answer, made in the leg's rtpengine call first; an ACK of a
    refusal is absorbed by its transaction."""
    if KSR.tm.t_check_trans() == 0 or not b.relayed or int(pv("$cs") or 0) != b.relayed[0]:
        return
    from_carrier = pv("$ci") == b.call_id
    other = _other_side(w, b, from_carrier)
    if other is None:
        return
    if b.relayed[2:] == [1] and has_sdp():  # the answer to the other end's offer (its 2xx): from-tag the offerer's
        mine, theirs = (b.leg_tag, b.target_tag) if from_carrier else (b.target_tag, b.leg_tag)
        KSR.rtpengine.rtpengine_answer(flags((_leg_media(b.leg, theirs, mine),)))
    me, peer, call_id, contact = other
    _rewrite(f"<{me['uri']}>;tag={me['tag']}", f"<{peer['uri']}>;tag={peer['tag']}", call_id, f"{b.relayed[1]} ACK",
             contact, peer["route"])
    _send_to(peer)
    KSR.tm.t_relay()


def relayed_reply(w: Worker) -> None:
    """``onreply_route[ksr_bridged_reply]``: a reply to a re-INVITE relayed across a bridge: its
    answer into the leg's rtpengine call, its dialog identifiers put back to the sender's."""
    text = pv(cs.XRELAY_AVP)
    if not text:
        return
    data = json.loads(text)
    code = int(pv("$rs") or 0)
    if has_sdp() and code < 300 and data.get("late"):
        _late_offer(w, data)
    elif has_sdp() and code < 300:
        KSR.rtpengine.rtpengine_answer(flags((_leg_media(*data["rtp"]),)))
    if data.get("refresh") and 200 <= code < 300:  # a carrier's refresh re-INVITE (RFC 4028): its timer back
        sessiontimers.refreshed(data["callid"], data["refresh"])
    contact = data["contact"] if KSR.hdr.is_present("Contact") > 0 else ""
    if KSR.hdr.is_present("Record-Route") > 0:
        KSR.hdr.remove("Record-Route")
    _rewrite(data["from"], data["to"], data["callid"], data["cseq"], contact)


def _late_offer(w: Worker, data: dict) -> None:
    """The offer in a 2xx to a re-INVITE without SDP relayed across the bridge (RFC 3261 section
    14.1): made in the leg's rtpengine call from the replying end (its tag as from-tag) under the
    two ends' media policies; the answer comes in the ACK (:func:`_relay_ack`).  A 2xx cannot be
    refused: an offer breaking a policy is logged and relayed with rtpengine's plain flags."""
    b = bridge.load(pv("$ci"))
    leg, sender_tag, replier_tag = data["rtp"]
    policy = _reoffer_flags(w, b, pv("$ci") == b.call_id) if b is not None else flags(())
    if isinstance(policy, Reject):
        log_reject(policy, "bridged late offer (relayed as it is)")
        policy = flags(())
    KSR.rtpengine.rtpengine_offer(" ".join((policy, _leg_media(leg, replier_tag, sender_tag))))


def _reoffer_flags(w: Worker, b: bx.Bridge, from_carrier: bool) -> str | Reject:
    """rtpengine flags of a re-offer across the bridge under the leg's two media policies (the
    original trunk's for the carrier, the leg trunk's for the target: codecs, SRTP), or the refusal."""
    pair = sides(b.media)
    if pair is None:
        return flags(())
    sender, receiver = pair if from_carrier else (pair[1], pair[0])
    return offer_flags(w, media.parse_sdp(pv("$rb")), sender, receiver, (), w.settings.media_fill)


def _leg_media(leg: str, from_tag: str, to_tag: str) -> str:
    """rtpengine flags of an offer or answer in the leg's rtpengine call, whatever the message's
    own Call-ID and tags (the ng ``call-id``/``from-tag``/``to-tag`` overrides)."""
    return f"call-id={leg} from-tag={from_tag} to-tag={to_tag}"


def _rewrite(from_: str, to: str, call_id: str, cseq_text: str, contact: str, route: str = "") -> None:
    """Replace a message's dialog identifiers (RFC 3261 section 12.2.1.1) with another dialog's."""
    for name in ("From", "To", "Call-ID", "CSeq", "Contact"):
        if KSR.hdr.is_present(name) > 0:
            KSR.hdr.remove(name)
    lines = [f"From: {from_}", f"To: {to}", f"Call-ID: {call_id}", f"CSeq: {cseq_text}"]
    lines += [f"Contact: <{contact}>"] if contact else []
    lines += [f"Route: {route}"] if route else []
    for line in lines:
        KSR.hdr.append(line + "\r\n")


def _send_to(peer: dict[str, str]) -> None:
    """Address the request to ``peer`` (its Contact, through its route set, from its socket)."""
    KSR.pv.sets("$ru", peer["contact"])
    first = _URI_IN_BRACKETS.search(peer.get("route") or "")
    # always: loose_route may have set it (a request to the edge's own Contact, the leg's caller)
    KSR.pv.sets("$du", first.group(1) if first else peer["contact"])
    if peer.get("socket"):
        KSR.pv.sets("$fs", peer["socket"])


def _other_side(w: Worker, b: bx.Bridge, from_carrier: bool) -> tuple[dict[str, str], dict[str, str], str, str] | None:
    """The other dialog as the edge is in it: (the edge's side, the other end, the Call-ID, the
    Contact the edge gives), or None when that call is gone."""
    if from_carrier:  # to the target, as the leg's caller
        sides = onbehalf.dialog_of(b.leg, b.leg_tag, b.target_tag)
        me, peer, call_id = (sides or {}).get("caller"), (sides or {}).get("callee"), b.leg
        contact = f"sip:{cs.XFER_CONTACT_USER}@{bridge.loop_host(w)}"
    else:  # to the carrier, as the agent
        found = bridge.original_sides(b)
        me, peer, call_id = (found[2], found[1], b.call_id) if found else (None, None, b.call_id)
        contact = me.get("contact", "") if me else ""
    if not me or not peer or not peer.get("contact"):
        return None
    return me, peer, call_id, contact


def _refresh_here() -> None:
    """An UPDATE without SDP from an end (a session refresh, RFC 4028 section 7 and RFC 3311): it
    refreshes only its own dialog, so the edge answers it there: 200, with its ``Session-Expires``
    (``refresher=uac`` when it named none) and ``Require: timer`` when it carried one."""
    expires = pv("$hdr(Session-Expires)")
    if KSR.tm.t_newtran() <= 0:
        return
    if expires:
        value = expires if "refresher=" in expires.lower() else f"{expires};refresher=uac"
        KSR.hdr.append_to_reply(f"Session-Expires: {value}\r\nRequire: timer\r\n")
    KSR.tm.t_reply(200, "OK")


def _refuse_other(method: str) -> None:
    """A request from an end of a bridged call that is not relayed: an in-dialog OPTIONS
    (keepalive) answered ``200``, anything else (MESSAGE, SUBSCRIBE, a REFER...) ``501``; a BYE
    here means the other call is gone (docs/transfers.md)."""
    code, reason = (200, "OK") if method == "OPTIONS" else (501, "Not Implemented")
    if KSR.tm.t_newtran() > 0:
        KSR.tm.t_reply(code, reason)
