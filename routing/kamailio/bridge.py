"""A blind transfer carried out by the edge itself (``bridge`` mode, or ``auto`` after the carrier
refused the REFER): the flow and its reasons are in :mod:`routing.call.bridge`.

* :func:`start`: the REFER answered ``202`` (by the caller of this function), ``NOTIFY 100`` to
  the agent, the transfer leg's INVITE sent through the edge itself (uac ``uac_req_send``: its
  final reply comes to ``event_route[uac:reply]``, :func:`leg_reply`);
* :func:`leg_invite`: that INVITE passing the edge's request route (``ksr_transfer_leg``): routed
  as a termination call of the referring agent (a number: LCR and every termination guard; a SIP
  URI: straight), its own record linked to the original call;
* :func:`leg_reply`: the target's final answer: a failure NOTIFYs the agent; a 2xx re-INVITEs the
  carrier on the agent's behalf with the leg's answer for the carrier's side;
* :func:`carrier_reply`: the carrier's answer to that re-INVITE (``ksr_bridge_reply``, core
  ``reply_route``): NOTIFY ``200`` and BYE to the agent, the agent's slot released: the carrier and
  the target are joined;
* :func:`in_dialog`: in-dialog requests of either call (``ksr_bridged``): a BYE from either end is
  answered here and ends the other call (:func:`ended`, from the dialog's end); a re-INVITE from an
  end is re-offered in the leg's rtpengine call and relayed to the other end with the other
  dialog's identifiers (:func:`relayed_reply` puts its replies' back, its ACK is mapped).

Calls never transferred never come here (the native routes look the Call-ID up in ``xfer``).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import bridge as bx
from ..call import cseq
from ..call import media
from ..call import metrics
from ..call import pipeline
from ..call.decision import Reason, Reject, Relay
from ..call.plan import CallPlan, Target
from ..tables import keys
from ..tables.model import Agent, TransferCallerId
from ..tables.store import Store, StoreUnavailable
from . import callstate as cs
from . import invite, onbehalf, records
from .mediaflags import flags, offer_flags, sides
from .worker import Worker, count, has_sdp, log_reject, pv

__all__ = ["start", "leg_invite", "leg_reply", "carrier_reply", "in_dialog", "relayed_reply", "ended", "load"]

MODE = "bridge"
_URI_IN_BRACKETS = re.compile(r"<([^>]+)>")


def load(call_id: str) -> bx.Bridge | None:
    """The bridge of a call (either Call-ID), None when there is none."""
    return bx.Bridge.decode(pv(f"$sht({cs.XFER_TABLE}=>{call_id})")) if call_id else None


def _save(b: bx.Bridge) -> None:
    text = b.encode()
    KSR.htable.sht_sets(cs.XFER_TABLE, b.call_id, text)
    KSR.htable.sht_sets(cs.XFER_TABLE, b.leg, text)


def _drop(b: bx.Bridge) -> None:
    KSR.htable.sht_rm(cs.XFER_TABLE, b.call_id)
    KSR.htable.sht_rm(cs.XFER_TABLE, b.leg)


def _keep(call_id: str, **fields: str) -> None:
    """Merge ``fields`` into a call's ``transfer`` facts (its record state, no redis round trip)."""
    state = records.load(call_id)
    if state is not None:
        state.transfer = {**(state.transfer or {}), **fields}
        records.save(call_id, state)


def _host(w: Worker) -> str:
    """The edge's own loop listener as ``host:port`` (where the leg's INVITE is sent)."""
    host, _, port = w.settings.loop_socket.split(":", 1)[1].rpartition(":")
    return f"{ {'0.0.0.0': '127.0.0.1', '[::]': '[::1]'}.get(host, host)}:{port}"


def start(w: Worker, b: bx.Bridge, sdp: str, caller: str, did: str, choice: TransferCallerId) -> None:
    """Carry out the transfer ``b`` (the agent's REFER already answered ``202``).

    Args:
        sdp: the carrier's last SDP (the leg's offer).
        caller: the original caller's number; ``did``: the DID the call came in on.
        choice: the original trunk's ``transfer_caller_id``.
    """
    _ensure_cseq_map(b)
    _save(b)
    _keep(b.call_id, mode=MODE, target=b.target, transferred_to=b.leg, **({"refer_code": b.refer_code} if b.refer_code else {}))
    notify(w, b, 100, loop=True)
    from_user, diverted = bx.leg_caller(choice, caller, did)
    host = _host(w)
    ruri = f"sip:{b.target}@{host}" if b.number else b.target
    lines = [f"{cs.XFER_HEADER}: {w.token};{b.call_id}", f"Contact: <sip:transfer@{host}>",
             "Content-Type: application/sdp"]
    if diverted:
        lines.append(f"Diversion: {bx.diversion(diverted, host.rsplit(':', 1)[0])}")
    lines += [f"{name}: {value}" for name, value in b.headers]
    KSR.pv.unset("$uac_req(all)")
    for key, value in (("method", "INVITE"), ("ruri", ruri), ("turi", ruri), ("furi", f"sip:{from_user}@{host}"),
                       ("ouri", f"sip:{host}"), ("sock", w.settings.loop_socket), ("callid", b.leg),
                       ("hdrs", "".join(f"{line}\r\n" for line in lines)), ("body", sdp), ("evparam", b.call_id)):
        KSR.pv.sets(f"$uac_req({key})", value)
    KSR.pv.seti("$uac_req(evroute)", 1)
    if KSR.uac.uac_req_send() < 0:
        KSR.err(f"edge: transfer call-id={b.call_id}: tm refused the leg's INVITE\n")
        _failed(w, b, 500, "Server Internal Error")
        return
    KSR.info(f"edge: transfer call-id={b.call_id} mode=bridge target={b.target} leg={b.leg}\n")


def _ensure_cseq_map(b: bx.Bridge) -> None:
    """The original call's CSeq map (:mod:`routing.call.cseq`): the edge now sends requests on
    both sides' behalf (NOTIFY as the carrier, re-INVITE and BYE as the agent)."""
    if pv(f"$sht({cs.CSEQ_TABLE}=>{b.call_id})"):
        return
    top = max(b.carrier_cseq, 1)
    state = cseq.CseqMap(b.carrier_tag, b.agent_tag, cseq.SideSeq(top, 0, top), cseq.SideSeq(b.refer_cseq, 0, b.refer_cseq))
    KSR.htable.sht_sets(cs.CSEQ_TABLE, b.call_id, state.encode())


def notify(w: Worker, b: bx.Bridge, code: int, reason: str = "", loop: bool = False) -> None:
    """A NOTIFY to the agent on the carrier's behalf reporting ``code`` (RFC 3515 section 2.4.4-2.4.5);
    ``loop``: through the edge's own request route (the dialog module records its CSeq)."""
    sides = onbehalf.dialog_of(b.call_id, b.carrier_tag, b.agent_tag)
    if sides is None:
        KSR.warn(f"edge: transfer call-id={b.call_id}: no dialog to NOTIFY {code}\n")
        return
    number = onbehalf.cseq_step(b.call_id, b.carrier_tag)
    extra = (f"Event: refer;id={b.refer_cseq}\r\nSubscription-State: {bx.subscription_state(code)}\r\n"
             f"Contact: <{sides['caller']['contact']}>\r\nContent-Type: message/sipfrag;version=2.0\r\n")
    onbehalf.on_behalf(w, b.call_id, "NOTIFY", sides, True, number, extra, bx.sipfrag(code, reason), loop=loop)


def leg_invite(w: Worker) -> None:
    """The transfer leg's INVITE in the edge's request route: checked to be the edge's own (node
    token, own address), routed as a termination call of the referring agent, and relayed."""
    token, _, call_id = pv(f"$hdr({cs.XFER_HEADER})").partition(";")
    if token != w.token or KSR.is_myself_srcip() < 0:
        w.reply(Reject.of(Reason.SOURCE_NOT_ALLOWED))
        return
    b = load(call_id)
    if b is None or b.leg != pv("$ci"):
        KSR.sl.send_reply(481, "Call/Transaction Does Not Exist")
        return
    KSR.hdr.remove(cs.XFER_HEADER)
    request = w.snapshot()
    try:
        store = w.open_store()
        topology = store.topology()
        agent, trunk = topology.agents.get(b.agent), topology.trunks.get(b.trunk)
        if agent is None:
            decision: Relay | Reject = Reject.of(Reason.TRANSFER_NOT_ALLOWED)
        elif b.number:
            decision = pipeline.terminate(replace(request, ruri_user=b.target), agent, topology, store, w.settings)
        else:
            decision = _direct(b, request.from_user, agent, store, w)
    except StoreUnavailable:
        decision = Reject.of(Reason.STORE_UNAVAILABLE, w.settings.retry_after_s)
    if isinstance(decision, Reject):
        w.reply(decision)
        w.remember(decision, "request", request)
        return
    assert isinstance(decision, Relay)
    # the Diversion is the edge's own (transfer_caller_id), not the agent's identity claim
    decision = replace(decision, remove=tuple(n for n in decision.remove if n.lower() != "diversion"))
    if trunk is not None:  # the leg's caller side is the carrier: its trunk's media policy and DTMF
        decision.plan.caller_media = pipeline.trunk_media(trunk, w.settings)
        decision.plan.caller_dtmf = pipeline.dtmf_mode(trunk, w.settings)
    plan = decision.plan
    _save(b.moved(leg_cseq=int(pv("$cs") or 0), media=json.dumps({"caller": plan.caller_media, "callee": plan.current.media})))
    invite.relay(w, decision, {"mode": MODE, "transferred_from": b.call_id, "target": b.target})


def _direct(b: bx.Bridge, caller: str, agent: Agent, store: Store, w: Worker) -> Relay | Reject:
    """A SIP URI target (checked at the REFER: a listed or on-net host): one hop, the agent's slot."""
    admission = store.acquire(b.leg, [pipeline.agent_lease(agent)], w.settings.admission_ttl_s,
                              facts={"direction": "termination", "agent": agent.name, "number": b.target})
    if not admission.admitted:
        return pipeline.limit_reject(admission, w.settings.retry_after_s)
    plan = CallPlan(call_id=b.leg, direction="termination", targets=[Target(uri=b.target, label=f"transfer {b.target}")],
                    agent=agent.name, retry_after_s=w.settings.retry_after_s, caller=caller)
    return Relay(plan=plan, headers={}, remove=())


def leg_reply(w: Worker) -> None:
    """``event_route[uac:reply]``: the transfer leg's final answer (tm acknowledged a 2xx itself)."""
    call_id = pv("$uac_req(evparam)")
    b = load(call_id)
    code = int(pv("$uac_req(evcode)") or 0)
    if b is None or b.phase != "dialling":
        return
    if not 200 <= code < 300:
        _failed(w, b, code, pv("$rr") if pv("$rs") else "")
        return
    b = b.moved(phase="answering", leg_tag=pv("$ft"), target_tag=pv("$tt"))
    _save(b)
    sides = onbehalf.dialog_of(b.call_id, b.carrier_tag, b.agent_tag)
    if sides is None:  # the original call ended meanwhile: end the leg (dialog end did not see it answered)
        _end_leg(w, b)
        return
    number = onbehalf.cseq_step(b.call_id, b.agent_tag)
    _save(b.moved(agent_cseq=number))
    extra = f"Contact: <{sides['callee']['contact']}>\r\nContent-Type: application/sdp\r\n"
    # straight to the carrier: tm acknowledges its 2xx to the carrier's own Contact; the core
    # reply_route hands that answer to carrier_reply
    if not onbehalf.on_behalf(w, b.call_id, "INVITE", sides, False, number, extra, pv("$rb")):
        KSR.err(f"edge: transfer call-id={b.call_id}: tm refused the carrier's re-INVITE\n")
        _end_leg(w, b)
        _failed(w, b, 500, "Server Internal Error")


def carrier_reply(w: Worker) -> None:
    """``ksr_bridge_reply`` (core ``reply_route``, a final reply to an INVITE of a call with a
    bridge): the carrier's answer to the re-INVITE sent on the agent's behalf.  A 2xx joins the
    carrier and the target: NOTIFY ``200`` and BYE to the agent, and from now on the leg's call
    clock and media watchdog watch the call (the original call's are dropped, as its CSeq map:
    no request reaches the agent any more); a refusal ends the leg and the agent keeps the call
    (its NOTIFY carries the carrier's code)."""
    code = int(pv("$rs") or 0)
    b = load(pv("$ci"))
    if b is None or b.phase != "answering" or pv("$ci") != b.call_id or int(pv("$cs") or 0) != b.agent_cseq:
        return
    if code >= 300:
        _end_leg(w, b)
        _failed(w, b, code, pv("$rr"))
        return
    b = b.moved(phase="bridged")
    _save(b)
    for table in (cs.MEDIA_TABLE, cs.DEADLINE_TABLE):  # the media flows in the leg's rtpengine call
        KSR.htable.sht_rm(table, b.call_id)
    sides = onbehalf.dialog_of(b.call_id, b.carrier_tag, b.agent_tag) if not b.agent_gone else None
    if sides is not None:  # the agent's leg ends; the carrier's dialog stays (not through the dialog module)
        notify(w, b, 200)
        onbehalf.on_behalf(w, b.call_id, "BYE", sides, True, onbehalf.cseq_step(b.call_id, b.carrier_tag))
    KSR.htable.sht_rm(cs.CSEQ_TABLE, b.call_id)
    try:  # the agent is out of the call: its slot is free (the trunk's stays until the carrier's end)
        w.open_store().acquire(b.call_id, [], w.settings.lease_ttl_s, release=[keys.agent_lease(b.agent)])
    except StoreUnavailable as exc:
        KSR.warn(f"edge: transfer call-id={b.call_id}: the agent's slot stays until the call ends: {exc}\n")
    _keep(b.call_id, result="200")
    count(metrics.TRANSFERS, MODE, "accepted")
    KSR.info(f"edge: transfer call-id={b.call_id} result=200 bridged to {b.target} leg={b.leg}\n")


def _failed(w: Worker, b: bx.Bridge, code: int, reason: str) -> None:
    """The leg failed (``code``): the agent is told in its NOTIFY and keeps the caller; when the
    agent already hung up, the edge ends the carrier's call (nobody is left to take it)."""
    _drop(b)
    if b.agent_gone:
        _end_original(w, b)
    else:
        notify(w, b, code, reason)
    _keep(b.call_id, result=str(code))
    count(metrics.TRANSFERS, MODE, "failed")
    KSR.info(f"edge: transfer call-id={b.call_id} result={code}: the agent keeps the call\n")


def _end_leg(w: Worker, b: bx.Bridge) -> None:
    """BYE to the target on the edge's (the leg caller's) behalf, through the edge (the dialog
    module ends the leg: its record, slots and media)."""
    sides = onbehalf.dialog_of(b.leg, b.leg_tag, b.target_tag) if b.leg_tag and b.target_tag else None
    if sides is None:
        return
    number = max(b.uac_cseq, b.leg_cseq, int(sides["caller"]["cseq"] or 0)) + 1
    onbehalf.on_behalf(w, b.leg, "BYE", sides, True, number, loop=True)


def _end_original(w: Worker, b: bx.Bridge) -> None:
    """BYE to the carrier on the agent's behalf, through the edge (the dialog module ends the call)."""
    sides = onbehalf.dialog_of(b.call_id, b.carrier_tag, b.agent_tag)
    if sides is None:
        return
    number = max(b.agent_cseq, int(sides["callee"]["cseq"] or 0)) + 1
    onbehalf.on_behalf(w, b.call_id, "BYE", sides, False, number, loop=True)


def agent_hangs_up(w: Worker) -> bool:
    """Before ``loose_route`` (where the dialog module would end the call): the agent's BYE while
    the edge's transfer leg rings.  It is answered ``200`` here and the carrier's call stays for
    the bridge (RFC 5589 section 6: a transferor may hang up once the transfer is accepted); the
    agent gets no more NOTIFY, and if the leg fails the edge ends the carrier's call.

    Returns:
        True when it was answered here; False for any other BYE.
    """
    call_id = pv("$ci")
    b = load(call_id)
    if b is None or call_id != b.call_id or b.phase not in ("dialling", "answering") or pv("$ft") != b.agent_tag:
        return False
    _save(b.moved(agent_gone=True))
    KSR.info(f"edge: transfer call-id={call_id}: the agent hung up while the leg rings; the caller waits for it\n")
    if KSR.tm.t_newtran() > 0:
        KSR.tm.t_reply(200, "OK")
    return True


def in_dialog(w: Worker, method: str) -> bool:
    """An in-dialog request of a call with a bridge (native route, after ``loose_route``).

    A BYE from an end of a bridged call (the carrier on the original call, the target on the leg)
    is answered ``200`` here and not relayed: the agent is gone, the leg's caller is the edge;
    other requests from an end are answered here too (:func:`_refuse_other`).
    The dialog module ended the call when ``loose_route`` met the BYE, and :func:`ended` ended
    the other call then, leaving this call's entry in the ``ended`` phase for this answer.

    Returns:
        True when it was answered here; False to go on as any in-dialog request.
    """
    call_id = pv("$ci")
    b = load(call_id)
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
    """A re-INVITE from an end of a bridged call (hold, codec change), relayed to the other end in
    the other dialog: its offer re-made in the leg's rtpengine call, its dialog identifiers (Call-ID,
    tags, CSeq, Contact, route set) rewritten to those the edge has in the other dialog; its
    replies rewritten back (:func:`relayed_reply`) and its ACK mapped (:func:`_relay_ack`).  A
    re-INVITE without SDP (an offer in the 2xx, answered in the ACK) is refused ``488``."""
    from_carrier = pv("$ci") == b.call_id
    if method != "INVITE" or not has_sdp():
        _refuse_other(method)
        return
    policy = _reoffer_flags(w, b, from_carrier)
    if isinstance(policy, Reject):  # the offer breaks a side's media policy (SRTP required, no codec allowed)
        log_reject(policy, "bridged re-INVITE")
        if KSR.tm.t_newtran() > 0:
            KSR.tm.t_reply(policy.code, policy.reason)
        return
    back_contact = (_other_side(w, b, not from_carrier) or ({}, {}, "", ""))[3]  # the Contact this end knows
    KSR.dialog.dlg_manage()  # this end's dialog records its CSeq
    other = _other_side(w, b, from_carrier)
    if other is None:
        _refuse_other("BYE")  # 501: the other call is gone
        return
    me, peer, call_id, contact = other
    if from_carrier:
        number = max(b.uac_cseq, b.leg_cseq, int(me.get("cseq") or 0)) + 1
        rtp, b = (b.leg_tag, b.target_tag), b.moved(uac_cseq=number)
    else:
        number = max(b.agent_cseq, int(me.get("cseq") or 0)) + 1
        rtp, b = (b.target_tag, b.leg_tag), b.moved(agent_cseq=number)
    restore = {"from": pv("$hdr(From)"), "to": pv("$hdr(To)"), "callid": pv("$ci"), "cseq": pv("$hdr(CSeq)"),
               "contact": back_contact, "rtp": [b.leg, *rtp]}
    b = b.moved(relayed=[int(pv("$cs") or 0), number])
    _save(b)
    KSR.rtpengine.rtpengine_offer(" ".join((policy, _leg_media(b.leg, *rtp))))
    _rewrite(f"<{me['uri']}>;tag={me['tag']}", f"<{peer['uri']}>;tag={peer['tag']}", call_id, f"{number} INVITE",
             contact, peer["route"])
    _send_to(peer)
    KSR.pv.sets(cs.XRELAY_AVP, json.dumps(restore))
    KSR.tm.t_on_reply(cs.ON_BRIDGED_REPLY)
    if KSR.tm.t_relay() < 0:
        KSR.sl.sl_reply_error()


def _relay_ack(w: Worker, b: bx.Bridge) -> None:
    """The ACK of a relayed re-INVITE's 2xx, mapped to the other dialog (its CSeq number there);
    an ACK of a refusal is absorbed by its transaction."""
    if KSR.tm.t_check_trans() == 0 or not b.relayed or int(pv("$cs") or 0) != b.relayed[0]:
        return
    from_carrier = pv("$ci") == b.call_id
    other = _other_side(w, b, from_carrier)
    if other is None:
        return
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
    if has_sdp() and code < 300:
        KSR.rtpengine.rtpengine_answer(flags((_leg_media(*data["rtp"]),)))
    contact = data["contact"] if KSR.hdr.is_present("Contact") > 0 else ""
    if KSR.hdr.is_present("Record-Route") > 0:
        KSR.hdr.remove("Record-Route")
    _rewrite(data["from"], data["to"], data["callid"], data["cseq"], contact)


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
        me, peer, call_id, contact = (sides or {}).get("caller"), (sides or {}).get("callee"), b.leg, f"sip:transfer@{_host(w)}"
    else:  # to the carrier, as the agent
        sides = onbehalf.dialog_of(b.call_id, b.carrier_tag, b.agent_tag)
        me, peer, call_id = (sides or {}).get("callee"), (sides or {}).get("caller"), b.call_id
        contact = me.get("contact", "") if me else ""
    if not me or not peer or not peer.get("contact"):
        return None
    return me, peer, call_id, contact


def _refuse_other(method: str) -> None:
    """A request from an end of a bridged call that is not relayed: an UPDATE or a re-INVITE
    without SDP is refused ``488`` (the media stays as it is), an in-dialog OPTIONS (keepalive)
    answered ``200``, anything else (INFO, MESSAGE...) ``501`` (docs/transfers.md)."""
    code, reason = {"INVITE": (488, "Not Acceptable Here"), "UPDATE": (488, "Not Acceptable Here"),
                    "OPTIONS": (200, "OK")}.get(method, (501, "Not Implemented"))
    if KSR.tm.t_newtran() > 0:
        KSR.tm.t_reply(code, reason)


def ended(w: Worker, call_id: str) -> None:
    """``dialog:end`` or ``dialog:failed`` of a call with a bridge: a bridged call's end ends
    the other call; the original call ending while the leg rings cancels the leg.  When the end
    is an end's own BYE being routed (the dialog module ends a dialog in ``loose_route``), this
    call's entry stays in the ``ended`` phase so :func:`in_dialog` answers that BYE."""
    b = load(call_id)
    if b is None or (call_id == b.leg and b.phase != "bridged"):
        return  # a leg that failed or ends before the bridge: its final answer is leg_reply's
    _drop(b)  # first: the other call's end, which this one causes, finds nothing to do
    peer = b.carrier_tag if call_id == b.call_id else b.target_tag
    if b.phase == "bridged" and pv("$rm") == "BYE" and not pv("$rs") and pv("$ft") == peer:
        KSR.htable.sht_sets(cs.XFER_TABLE, call_id, b.moved(phase="ended").encode())
    if call_id == b.leg:
        _end_original(w, b)
        return
    if b.phase in ("bridged", "answering"):
        _end_leg(w, b)
    elif b.phase == "dialling" and b.leg_cseq:
        KSR.tmx.t_cancel_callid(b.leg, str(b.leg_cseq), 0)  # the leg's INVITE cancelled (its 487 ends it)
    if b.phase != "bridged":
        _keep(call_id, result="487")  # the caller hung up before the target answered
