"""A transfer carried out by the edge itself (``bridge`` mode, or ``auto`` after the carrier
refused the REFER; an attended transfer whose ``Replaces`` names the agent's consult call): the
flow and its reasons are in :mod:`routing.call.bridge`.

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
* :func:`attended`: the REFER with ``Replaces``: the target re-INVITEd in the consult call as the
  agent (the carrier's SDP re-offered there), then the carrier as for a leg (:func:`carrier_reply`);
* :func:`ended`: a call of a bridge ended: the other one is ended too (or a ringing leg cancelled).

The in-dialog requests of both calls are :mod:`.bridgemap`'s.

Calls never transferred never come here (the native routes look the Call-ID up in ``xfer``).
"""

from __future__ import annotations

import json
from dataclasses import replace

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import bridge as bx
from ..call import callerid
from ..call import cseq
from ..call import metrics
from ..call import pipeline
from ..call.decision import Reason, Reject, Relay, Step
from ..call.plan import CallPlan, Target
from ..ngclient import NgError
from ..tables import keys
from ..tables.model import Agent
from ..tables.store import Store, StoreUnavailable
from . import callstate as cs
from . import invite, onbehalf, records, rtpset
from .worker import Worker, count, pv

__all__ = ["start", "attended", "leg_invite", "leg_reply", "carrier_reply", "ended", "load", "save", "loop_host",
           "original_sides", "take_cseq",
           "MODE", "ATTENDED"]

MODE = "bridge"
#: mode of an attended transfer (REFER with Replaces) in records and metrics
ATTENDED = "attended"


def load(call_id: str) -> bx.Bridge | None:
    """The bridge of a call (either Call-ID), None when there is none."""
    return bx.Bridge.decode(pv(f"$sht({cs.XFER_TABLE}=>{call_id})")) if call_id else None


#: the ``xfer`` key whose slot lock serialises the bridges' writes: one lock for all (only
#: transferred calls take it), as a process holding one slot's lock while writing another Call-ID's
#: slot could deadlock with another doing the reverse
_LOCK_KEY = "~bridges"


def save(b: bx.Bridge) -> None:
    """Keep ``b`` under both of its Call-IDs, its CSeq numbers never below those stored
    (:meth:`routing.call.bridge.Bridge.keeping_cseqs`), under the bridges' lock."""
    KSR.htable.sht_lock(cs.XFER_TABLE, _LOCK_KEY)
    try:
        _write(b.keeping_cseqs(load(b.call_id)))
    finally:
        KSR.htable.sht_unlock(cs.XFER_TABLE, _LOCK_KEY)


def _write(b: bx.Bridge) -> None:
    text = b.encode()
    KSR.htable.sht_sets(cs.XFER_TABLE, b.call_id, text)
    KSR.htable.sht_sets(cs.XFER_TABLE, b.leg, text)


def take_cseq(b: bx.Bridge, field: str, floor: int) -> int:
    """The CSeq number of a request the edge sends across the bridge: as the agent to the carrier
    (``field`` ``agent_cseq``) or as the leg's caller to the target (``uac_cseq``): one above the
    stored number and above ``floor`` (the dialog module's record of that side), kept at once under
    the bridges' lock, so workers and the DTMF log's timer never give out the same number.

    Raises:
        ValueError: the bridge is gone.
    """
    KSR.htable.sht_lock(cs.XFER_TABLE, _LOCK_KEY)
    try:
        stored = load(b.call_id)
        if stored is None:
            raise ValueError(f"no bridge for call-id={b.call_id}")
        number = max(getattr(stored, field), floor) + 1
        _write(stored.moved(**{field: number}))
        return number
    finally:
        KSR.htable.sht_unlock(cs.XFER_TABLE, _LOCK_KEY)


def _drop(b: bx.Bridge) -> None:
    KSR.htable.sht_rm(cs.XFER_TABLE, b.call_id)
    KSR.htable.sht_rm(cs.XFER_TABLE, b.leg)


def _keep(call_id: str, **fields: str) -> None:
    """Merge ``fields`` into a call's ``transfer`` facts (its record state, no redis round trip)."""
    state = records.load(call_id)
    if state is not None:
        state.transfer = {**(state.transfer or {}), **fields}
        records.save(call_id, state)


def loop_host(w: Worker) -> str:
    """The edge's own loop listener as ``host:port`` (where the leg's INVITE is sent)."""
    host, _, port = w.settings.loop_socket.split(":", 1)[1].rpartition(":")
    return f"{ {'0.0.0.0': '127.0.0.1', '[::]': '[::1]'}.get(host, host)}:{port}"


def start(w: Worker, b: bx.Bridge, sdp: str) -> None:
    """Carry out the transfer ``b`` (the agent's REFER already answered ``202``): the leg's INVITE
    From the original caller (``b.caller``, :func:`routing.call.bridge.leg_from`); the trunk it
    takes decides what its carrier receives and adds the ``Diversion`` (:func:`leg_invite`).

    Args:
        sdp: the carrier's last SDP (the leg's offer).
    """
    _ensure_cseq_map(b)
    save(b)
    _keep(b.call_id, mode=MODE, target=b.target, transferred_to=b.leg, **({"refer_code": b.refer_code} if b.refer_code else {}))
    notify(w, b, 100, loop=True)
    from_user = bx.leg_from(b.caller, b.did)
    host = loop_host(w)
    ruri = f"sip:{b.target}@{host}" if b.number else b.target
    lines = [f"{cs.XFER_HEADER}: {w.token};{b.call_id}", f"Contact: <sip:{cs.XFER_CONTACT_USER}@{host}>",
             "Content-Type: application/sdp"]
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


def original_sides(b: bx.Bridge) -> tuple[dict[str, dict[str, str]], dict[str, str], dict[str, str]] | None:
    """The original call's two sides as the dialog module keeps them (:func:`onbehalf.dialog_of`),
    then the carrier's and the agent's (the carrier is the caller of an origination call, the
    callee of a termination call); None when the call is gone."""
    tags = (b.carrier_tag, b.agent_tag) if b.carrier_is_caller else (b.agent_tag, b.carrier_tag)
    sides = onbehalf.dialog_of(b.call_id, *tags)
    if sides is None:
        return None
    return (sides, sides["caller"], sides["callee"]) if b.carrier_is_caller else (sides, sides["callee"], sides["caller"])


def _ensure_cseq_map(b: bx.Bridge) -> None:
    """The original call's CSeq map (:mod:`routing.call.cseq`): the edge now sends requests on
    both sides' behalf (NOTIFY as the carrier, re-INVITE and BYE as the agent)."""
    if pv(f"$sht({cs.CSEQ_TABLE}=>{b.call_id})"):
        return
    top = max(b.carrier_cseq, 1)
    carrier, agent = cseq.SideSeq(top, 0, top), cseq.SideSeq(b.refer_cseq, 0, b.refer_cseq)
    state = (cseq.CseqMap(b.carrier_tag, b.agent_tag, carrier, agent) if b.carrier_is_caller
             else cseq.CseqMap(b.agent_tag, b.carrier_tag, agent, carrier))
    KSR.htable.sht_sets(cs.CSEQ_TABLE, b.call_id, state.encode())


def notify(w: Worker, b: bx.Bridge, code: int, reason: str = "", loop: bool = False) -> None:
    """A NOTIFY to the agent on the carrier's behalf reporting ``code`` (RFC 3515 section 2.4.4-2.4.5);
    ``loop``: through the edge's own request route (the dialog module records its CSeq)."""
    found = original_sides(b)
    if found is None:
        KSR.warn(f"edge: transfer call-id={b.call_id}: no dialog to NOTIFY {code}\n")
        return
    sides, carrier, _ = found
    number = onbehalf.cseq_step(b.call_id, b.carrier_tag)
    extra = (f"Event: refer;id={b.refer_cseq}\r\nSubscription-State: {bx.subscription_state(code)}\r\n"
             f"Contact: <{carrier['contact']}>\r\nContent-Type: message/sipfrag;version=2.0\r\n")
    onbehalf.on_behalf(w, b.call_id, "NOTIFY", sides, b.carrier_is_caller, number, extra, bx.sipfrag(code, reason),
                       loop=loop)


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
    trace: list[Step] = []  # a transfer is rare: its caller ID rule is kept for edgectl explain
    try:
        store = w.open_store()
        topology = store.topology()
        agent, trunk = topology.agents.get(b.agent), topology.trunks.get(b.trunk)
        if agent is None:
            decision: Relay | Reject = Reject.of(Reason.TRANSFER_NOT_ALLOWED)
        elif b.number:
            decision = pipeline.terminate(replace(request, ruri_user=b.target), agent, topology, store, w.settings,
                                          trace, callerid.Forward(b.caller, b.did))
        else:
            decision = _direct(b, request.from_user, agent, store, w)
    except StoreUnavailable:
        decision = Reject.of(Reason.STORE_UNAVAILABLE, w.settings.retry_after_s)
    rule = _caller_rule(trace)
    if rule:
        _keep(b.call_id, leg_caller=rule)
    if isinstance(decision, Reject):
        w.reply(decision)
        w.remember(decision, "request", request)
        return
    assert isinstance(decision, Relay)
    if trunk is not None:  # the leg's caller side is the carrier: its trunk's media policy and DTMF
        decision.plan.caller_media = pipeline.trunk_media(trunk, w.settings)
        decision.plan.caller_dtmf = pipeline.dtmf_mode(trunk, w.settings)
    plan = decision.plan
    save(b.moved(leg_cseq=int(pv("$cs") or 0), media=json.dumps({"caller": plan.caller_media, "callee": plan.current.media}),
                 dtmf=f"{plan.caller_dtmf},{plan.current.dtmf}"))
    invite.relay(w, decision, {"mode": MODE, "transferred_from": b.call_id, "target": b.target,
                               **({"leg_caller": rule} if rule else {})})


def _caller_rule(trace: list[Step]) -> str:
    """The caller ID rule the leg's routing applied (the first usable trunk's, or why each trunk
    refused it), one line for the records and ``edgectl explain``."""
    lines = [s.detail for s in trace if s.stage in ("callerid", "route") and "forwarded leg" in s.detail]
    return "; ".join(lines)


def _direct(b: bx.Bridge, caller: str, agent: Agent, store: Store, w: Worker) -> Relay | Reject:
    """A SIP URI target (checked at the REFER: a listed or on-net host): one hop, the agent's slot."""
    admission = store.acquire(b.leg, [pipeline.agent_lease(agent)], w.settings.admission_ttl_s,
                              facts={"direction": "termination", "agent": agent.name, "number": b.target})
    if not admission.admitted:
        return pipeline.limit_reject(admission, w.settings.retry_after_s)
    # no trunk decides: the original caller with Diversion naming the DID (forwarded_caller_id's default)
    named = b.did if caller != b.did else ""
    plan = CallPlan(call_id=b.leg, direction="termination", agent=agent.name, retry_after_s=w.settings.retry_after_s,
                    targets=[Target(uri=b.target, label=f"transfer {b.target}", diverted_from=named)], caller=caller)
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
    b = b.moved(leg_tag=pv("$ft"), target_tag=pv("$tt"))
    save(b)
    found = original_sides(b)
    if found is None:  # the original call ended meanwhile: end the leg (dialog end did not see it answered)
        _end_leg(w, b)
        return
    _reinvite_carrier(w, b, found, pv("$rb"))


def _reinvite_carrier(w: Worker, b: bx.Bridge, found: tuple[dict[str, dict[str, str]], dict[str, str], dict[str, str]],
                      sdp: str) -> None:
    """Re-INVITE the carrier on the agent's behalf with ``sdp`` (the leg's rtpengine answer for the
    carrier's side), straight to the carrier: tm acknowledges its 2xx to the carrier's own Contact;
    the core reply_route hands that answer to :func:`carrier_reply`."""
    number = onbehalf.cseq_step(b.call_id, b.agent_tag)
    b = b.moved(agent_cseq=number, phase="answering")
    save(b)
    sides, _, agent = found
    extra = f"Contact: <{agent['contact']}>\r\nContent-Type: application/sdp\r\n"
    if not onbehalf.on_behalf(w, b.call_id, "INVITE", sides, not b.carrier_is_caller, number, extra, sdp):
        KSR.err(f"edge: transfer call-id={b.call_id}: tm refused the carrier's re-INVITE\n")
        _end_leg(w, b)
        _failed(w, b, 500, "Server Internal Error")


def attended(w: Worker, b: bx.Bridge, sdp: str) -> bool:
    """An attended transfer (REFER with ``Replaces`` naming the agent's consult call, RFC 3891):
    the agent's REFER answered ``202``, NOTIFY ``100``, then the target re-INVITEd in the consult
    call on the agent's behalf with the carrier's SDP re-offered in the consult call's rtpengine
    call; :func:`carrier_reply` takes the target's answer to the carrier, then joins them as a
    bridge whose leg is the consult call.

    Returns:
        False (nothing done) when the consult call is not an answered call of the same agent
        through this edge: the REFER then goes on as a blind transfer.
    """
    state = records.load(b.leg)
    sides = onbehalf.dialog_of(b.leg, b.leg_tag, b.target_tag)
    if sides is None or state is None or state.agent != b.agent or state.direction != "termination" \
            or not state.answer_ms or sides["caller"]["tag"] != b.leg_tag:
        return False
    try:
        offer = rtpset.client(w, b.leg).command("offer", call_id=b.leg, from_tag=b.leg_tag, to_tag=b.target_tag, sdp=sdp,
                               replace=["origin", "session-connection"], ICE="remove").get("sdp", "")
    except NgError as exc:
        KSR.warn(f"edge: attended transfer call-id={b.call_id}: rtpengine refused the re-offer: {exc}\n")
        return False
    if KSR.tm.t_newtran() < 0:
        return False
    KSR.tm.t_reply(202, "Accepted")
    _ensure_cseq_map(b)
    number = int(sides["caller"]["cseq"] or 0) + 1
    b = b.moved(phase="consulting", uac_cseq=number)
    save(b)
    _keep(b.call_id, mode=ATTENDED, target=b.target, transferred_to=b.leg)
    notify(w, b, 100, loop=True)
    extra = f"Contact: <sip:{cs.XFER_CONTACT_USER}@{loop_host(w)}>\r\nContent-Type: application/sdp\r\n"
    if not onbehalf.on_behalf(w, b.leg, "INVITE", sides, True, number, extra, offer):
        _failed(w, b, 500, "Server Internal Error")
        return True
    KSR.info(f"edge: transfer call-id={b.call_id} mode=attended target={b.target} consult={b.leg}\n")
    return True


def _consult_answered(w: Worker, b: bx.Bridge, code: int) -> None:
    """The target's answer to the consult call's re-INVITE: a 2xx goes on to the carrier's
    re-INVITE (the target's SDP answered into the consult call's rtpengine call); a refusal
    leaves both of the agent's calls as they were (its NOTIFY carries the code)."""
    if code >= 300:
        _failed(w, b, code, pv("$rr"))
        return
    found = original_sides(b)
    try:
        answer = rtpset.client(w, b.leg).command("answer", call_id=b.leg, from_tag=b.leg_tag, to_tag=b.target_tag, sdp=pv("$rb"),
                                replace=["origin", "session-connection"], ICE="remove").get("sdp", "")
    except NgError as exc:
        KSR.warn(f"edge: attended transfer call-id={b.call_id}: rtpengine refused the answer: {exc}\n")
        answer = ""
    if found is None or not answer:
        _failed(w, b, 500, "Server Internal Error")
        return
    _reinvite_carrier(w, b, found, answer)


def carrier_reply(w: Worker) -> None:
    """``ksr_bridge_reply`` (core ``reply_route``, a final reply to an INVITE of a call with a
    bridge): the carrier's answer to the re-INVITE sent on the agent's behalf.  A 2xx joins the
    carrier and the target: NOTIFY ``200`` and BYE to the agent, and from now on the leg's call
    clock and media watchdog watch the call (the original call's are dropped, as its CSeq map:
    no request reaches the agent any more); a refusal ends the leg and the agent keeps the call
    (its NOTIFY carries the carrier's code)."""
    code = int(pv("$rs") or 0)
    b = load(pv("$ci"))
    if b is not None and b.phase == "consulting" and pv("$ci") == b.leg and int(pv("$cs") or 0) == b.uac_cseq:
        _consult_answered(w, b, code)
        return
    if b is None or b.phase != "answering" or pv("$ci") != b.call_id or int(pv("$cs") or 0) != b.agent_cseq:
        return
    if code >= 300:
        _end_leg(w, b)
        _failed(w, b, code, pv("$rr"))
        return
    b = b.moved(phase="bridged")
    save(b)
    for table in (cs.MEDIA_TABLE, cs.DEADLINE_TABLE):  # the media flows in the leg's rtpengine call
        KSR.htable.sht_rm(table, b.call_id)
    found = original_sides(b) if not b.agent_gone else None
    if found is not None:  # the agent's leg ends; the carrier's dialog stays (not through the dialog module)
        notify(w, b, 200)
        onbehalf.on_behalf(w, b.call_id, "BYE", found[0], b.carrier_is_caller, onbehalf.cseq_step(b.call_id, b.carrier_tag))
    KSR.htable.sht_rm(cs.CSEQ_TABLE, b.call_id)
    try:  # the agent is out of the call: its slot is free (the trunk's stays until the carrier's end)
        w.open_store().acquire(b.call_id, [], w.settings.lease_ttl_s, release=[keys.agent_lease(b.agent)])
    except StoreUnavailable as exc:
        KSR.warn(f"edge: transfer call-id={b.call_id}: the agent's slot stays until the call ends: {exc}\n")
    if b.consult:  # the agent's consult call: its leg ends too (BYE as the target), the edge takes its place
        consult = onbehalf.dialog_of(b.leg, b.leg_tag, b.target_tag)
        if consult is not None:
            onbehalf.on_behalf(w, b.leg, "BYE", consult, False, int(consult["callee"]["cseq"] or 0) + 1)
        try:
            w.open_store().acquire(b.leg, [], w.settings.lease_ttl_s, release=[keys.agent_lease(b.agent)])
        except StoreUnavailable as exc:
            KSR.warn(f"edge: transfer call-id={b.call_id}: the agent's consult slot stays: {exc}\n")
        _keep(b.leg, transferred_from=b.call_id, mode=ATTENDED)
    _keep(b.call_id, result="200")
    count(metrics.TRANSFERS, ATTENDED if b.consult else MODE, "accepted")
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
    count(metrics.TRANSFERS, ATTENDED if b.consult else MODE, "failed")
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
    found = original_sides(b)
    if found is None:
        return
    sides, _, agent = found
    number = max(b.agent_cseq, int(agent["cseq"] or 0)) + 1
    onbehalf.on_behalf(w, b.call_id, "BYE", sides, not b.carrier_is_caller, number, loop=True)


def ended(w: Worker, call_id: str) -> None:
    """``dialog:end`` or ``dialog:failed`` of a call with a bridge: a bridged call's end ends
    the other call; the original call ending while the leg rings cancels the leg.  When the end
    is an end's own BYE being routed (the dialog module ends a dialog in ``loose_route``), this
    call's entry stays in the ``ended`` phase so :func:`bridgemap.in_dialog` answers that BYE."""
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
