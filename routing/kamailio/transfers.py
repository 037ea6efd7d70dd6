"""An agent's blind transfer (RFC 3515 REFER) relayed to the carrier, rewritten: the target
checked (:mod:`routing.call.transfer`), the ``Refer-To`` written as the trunk's carrier accepts
it, ``Referred-By`` naming no agent address, the carrier's answer and its NOTIFYs' final
``message/sipfrag`` status kept with the call record, and, once the carrier reports the transfer
done, the call ended by the edge unless the agent hangs up first (``sip.transfer_bye_delay_s``):
a carrier such as Twilio holds a transferred call until the transferor's BYE, else drops it later.

Entered from :mod:`routing.kamailio.indialog` (REFER, NOTIFY) and :mod:`routing.kamailio.replies`
(the REFER's replies); calls that are never transferred never come here.
"""

from __future__ import annotations

import json
import time

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import bridge as bx
from ..call import metrics
from ..call import sides as netsides
from ..call import transfer as xfer
from ..call.decision import Reason, Reject
from ..call.headers import header_names
from ..tables.model import Trunk
from ..tables.store import StoreUnavailable, Topology
from . import bridge as bridging
from . import callstate as cs
from .callstate import NativeAnswer
from . import records, timers
from .worker import Worker, count, pv

__all__ = ["refer", "refer_reply", "refer_failed", "notify", "toward_carrier"]

def toward_carrier() -> bool:
    """Whether the in-dialog request goes to the carrier (the agent sent it): in a termination
    call the caller is the agent, in an origination call the callee is."""
    from_caller = pv("$ft") == pv("$dlg(from_tag)")
    return from_caller == (pv(cs.DIRECTION_VAR) == "termination")


def refer(w: Worker) -> bool:
    """An in-dialog REFER.  From the agent: checked, rewritten and kept with the call, or refused
    (``400 Bad Refer-To``, ``403 Transfer Not Allowed``, ``403 Transfer Target Not Allowed``,
    ``503`` when redis cannot be read).  From the carrier: relayed as it is (the agent's own call
    to the target passes the termination policy).

    Returns:
        True to relay the REFER, False when it has been answered here.
    """
    if not toward_carrier():
        return True
    try:
        decided = _decide(w)
    except StoreUnavailable:
        decided = Reject.of(Reason.STORE_UNAVAILABLE, w.settings.retry_after_s)
    if isinstance(decided, Reject):
        if decided.code != 503:  # kept before the answer: the agent's BYE may follow it at once (its record)
            count(metrics.TRANSFERS, xfer.TransferMode.REFER.value, "denied")
            _keep(pv("$ci"), fresh=True, mode=xfer.TransferMode.REFER.value, target=pv("$hdr(Refer-To)"),
                  result=str(decided.code), refused=f"{decided.reason} [{decided.tag}]")
        w.reply(decided)
        return False
    target, refer_to, trunk = decided
    if trunk is not None and trunk.transfer is not xfer.TransferMode.REFER and _bridge_or_arm(w, target, trunk):
        return False
    KSR.hdr.remove("Refer-To")
    KSR.hdr.append(f"Refer-To: {refer_to}\r\n")
    if KSR.hdr.is_present("Referred-By") > 0:
        # RFC 3892: it names the referrer; the From user at the edge's own address, never the agent's
        KSR.hdr.remove("Referred-By")
        user = pv("$fU")
        KSR.hdr.append(f"Referred-By: <sip:{user + '@' if user else ''}{_edge_host(w)}>\r\n")
    _keep(pv("$ci"), fresh=True, mode=xfer.TransferMode.REFER.value, target=target.label, refer_to=refer_to.strip("<>"))
    KSR.pv.seti(cs.REFER_AVP, 1)
    KSR.tm.t_on_reply(cs.ON_REPLY)
    KSR.info(f"edge: transfer call-id={pv('$ci')} mode=refer target={target.label}\n")
    return True


def _bridge_or_arm(w: Worker, target: xfer.TransferTarget, trunk: Trunk) -> bool:
    """A REFER on a ``bridge`` or ``auto`` trunk of a call whose carrier SDP the edge keeps (its
    offer in an origination call, its answer in a termination call): with ``Replaces`` naming the agent's answered consult call through this edge, an
    attended transfer the edge carries out in every such mode (:func:`bridge.attended`; True);
    else ``bridge`` answers it ``202`` and carries it out now (True: answered); ``auto`` keeps
    what the bridge needs with the REFER's transaction, whose failure route bridges after the
    carrier's refusal (:func:`refer_failed`; False: relay it)."""
    sdp, direction, call_id = pv(cs.SDP_VAR), pv(cs.DIRECTION_VAR), pv("$ci")
    if not sdp and direction == "termination":  # the carrier's 2xx taken by the native route (fastanswer)
        answer = NativeAnswer.decode(KSR.htable.sht_gete(cs.ANSWERED_TABLE, call_id) or "")
        sdp = answer.sdp if answer is not None else ""
    if not sdp or direction not in ("origination", "termination"):
        return False
    origination = direction == "origination"  # the carrier is the caller; in a termination call, the callee
    carrier, agent = ("from", "to") if origination else ("to", "from")
    b = bx.Bridge(call_id=call_id, leg=bx.leg_call_id(call_id), agent=pv(cs.AGENT_VAR), trunk=trunk.name,
                  carrier_tag=pv(f"$dlg({carrier}_tag)"), agent_tag=pv(f"$dlg({agent}_tag)"), target=target.label,
                  number=bool(target.number), headers=_context(w, target), refer_cseq=int(pv("$cs") or 0),
                  carrier_cseq=int(pv(f"$dlg({carrier}_cseq)") or 0), carrier_is_caller=origination)
    replaces = bx.parse_replaces(next((v for n, v in target.headers if n.lower() == "replaces"), ""))
    if replaces is not None and bridging.load(call_id) is None:  # attended: Replaces names the consult call
        for agent_tag, target_tag in ((replaces[2], replaces[1]), (replaces[1], replaces[2])):  # either perspective
            consult = b.moved(leg=replaces[0], leg_tag=agent_tag, target_tag=target_tag, consult=True)
            if bridging.attended(w, consult, sdp):
                return True
    state = records.load(call_id)
    # origination: the caller and the DID; termination: the transferee is the number the agent
    # called, "diverted" from the caller ID the call presented
    caller, did = ((state.caller, state.number) if origination else (state.number, state.caller)) if state else ("", "")
    b = b.moved(caller=caller or (pv("$fU") if origination else ""), did=did or "")
    start = {"bridge": b.encode(), "sdp": sdp}
    if not bx.bridges(trunk.transfer, direction):
        KSR.pv.sets(cs.XFER_AVP, json.dumps(start))
        KSR.tm.t_on_failure(cs.ON_REFER_FAILURE)
        return False
    if bridging.load(call_id) is not None:
        KSR.sl.send_reply(491, "Request Pending")  # one bridged transfer at a time (RFC 3515 section 2.4.2)
        return True
    if KSR.tm.t_newtran() < 0:
        KSR.sl.sl_reply_error()
        return True
    _keep(call_id, fresh=True, mode=bridging.MODE, target=target.label)
    KSR.tm.t_reply(202, "Accepted")
    _start(w, start)
    return True


def _context(w: Worker, target: xfer.TransferTarget) -> list[list[str]]:
    """The context headers of a bridged transfer's leg: those embedded in the ``Refer-To`` URI
    (already filtered), then the REFER's own ``X-`` and ``User-to-User`` (RFC 7433) headers under
    the agent's allow-list (:func:`routing.call.transfer.kept_headers`), each name once."""
    out = [[n, v] for n, v in target.headers if n.lower() != "replaces"]
    names = [n for n in header_names(pv("$mb")) if n.lower().startswith("x-") or n.lower() == "user-to-user"]
    if names:
        agent = w.open_store().current_topology().agents.get(pv(cs.AGENT_VAR))
        own = [(n, pv(f"$hdr({n})")) for n in names]
        seen = {n.lower() for n, _ in out}
        for name, value in xfer.kept_headers(own, agent.x_headers if agent else (), bool(agent and agent.trust_identity)):
            if name.lower() not in seen:
                seen.add(name.lower())
                out.append([name, value])
    return out


def _start(w: Worker, start: dict) -> None:
    b = bx.Bridge.decode(start["bridge"])
    if b is not None:
        bridging.start(w, b, start["sdp"])


def refer_failed(w: Worker) -> None:
    """Failure route of a REFER relayed on an ``auto`` trunk: after a refusal of
    :data:`routing.call.bridge.FALLBACK_CODES` the edge answers the agent ``202`` and bridges the
    transfer itself; any other failure reaches the agent as the carrier sent it."""
    code = int(KSR.pv.get("$T_reply_code") or 0)
    text = pv(cs.XFER_AVP)
    if not text or code not in bx.FALLBACK_CODES:
        return
    start = json.loads(text)
    b = bx.Bridge.decode(start["bridge"])
    if b is None or bridging.load(b.call_id) is not None:
        return
    KSR.tm.t_reply(202, "Accepted")
    start["bridge"] = b.moved(refer_code=str(code)).encode()
    KSR.info(f"edge: transfer call-id={b.call_id}: the carrier refused the REFER {code}: the edge bridges it\n")
    _start(w, start)


def _decide(w: Worker) -> tuple[xfer.TransferTarget, str, Trunk | None] | Reject:
    """The checked target, the ``Refer-To`` for the carrier and the call's trunk, or the refusal."""
    try:
        parsed = xfer.parse_refer_to(pv("$hdr(Refer-To)"))
    except xfer.TransferError:
        return Reject.of(Reason.BAD_REFER_TO)
    topology = w.open_store().current_topology()
    agent = topology.agents.get(pv(cs.AGENT_VAR))
    trunk = topology.trunks.get(pv(cs.TRUNK_VAR))
    if agent is None:
        return Reject.of(Reason.TRANSFER_NOT_ALLOWED)
    mine = (parsed.host,) if parsed.host and KSR.is_myself(f"sip:{parsed.hostport}") else ()
    target = xfer.classify(parsed, agent.number_format, agent.transfer_hosts, _onnet_hosts(topology), mine)
    if isinstance(target, Reject):
        return target
    if target.number:
        refusal = xfer.check_number(target.number, agent.allow_prefixes,
                                    (*w.settings.blocked_prefixes, *agent.deny_prefixes),
                                    trunk.deny_prefixes if trunk is not None else ())
        if refusal is not None:
            return refusal
    target = xfer.TransferTarget(target.number, target.uri,
                                 xfer.kept_headers(target.headers, agent.x_headers, agent.trust_identity))
    if trunk is None:  # the trunk was removed during the call: relay the target in the default form
        return target, xfer.carrier_refer_to(target, xfer.ReferToFormat.SIP, pv("$rd"), agent.number_format), None
    host = trunk.gateways[0].host if trunk.gateways else pv("$rd")
    return target, xfer.carrier_refer_to(target, trunk.refer_to, host, trunk.number_format), trunk


def _edge_host(w: Worker) -> str:
    """The edge's address on the carrier side: its carrier socket on an edge with one network
    per side, else the address the request reached (advertised when the listener has one)."""
    sock = netsides.send_socket(w.settings.sip_sockets or {}, netsides.CARRIER, pv("$ru"))
    if sock:
        return sock.split(":", 1)[1].rsplit(":", 1)[0]
    return pv("$RAi") or pv("$Ri")


def _onnet_hosts(topology: Topology) -> frozenset[str]:
    """Hosts of every agent's URIs (a REFER is rare: read each time, no cache to go stale)."""
    return xfer.onnet_hosts(u for agent in topology.agents.values() for u in agent.uris)


def refer_reply(code: int) -> None:
    """A final reply of the carrier to a relayed REFER: kept with the call; a refusal (>= 300)
    ends the transfer (the agent gets the carrier's answer and keeps the call)."""
    if code < 200:
        return
    if code >= 300 and code in bx.FALLBACK_CODES and pv(cs.XFER_AVP):
        _keep(pv("$ci"), refer_code=str(code))  # the failure route bridges it (refer_failed)
    elif code >= 300:
        _keep(pv("$ci"), refer_code=str(code), result=str(code))
        count(metrics.TRANSFERS, xfer.TransferMode.REFER.value, "refused")
    else:
        _keep(pv("$ci"), refer_code=str(code))


def notify(w: Worker) -> None:
    """A NOTIFY toward the agent of a transfer it asked for (``Event: refer``): its sipfrag's
    final status is the transfer's result; after a final 2xx the call clock ends the call
    ``transfer_bye_delay_s`` later unless the agent's BYE comes first."""
    if toward_carrier() or not xfer.is_refer_event(pv("$hdr(Event)")):
        return
    code = xfer.sipfrag_status(pv("$rb"))
    call_id = pv("$ci")
    state = records.load(call_id)
    if code is None or code < 200 or state is None or not state.transfer or state.transfer.get("result"):
        return
    _keep(call_id, result=str(code))
    ok = 200 <= code < 300
    count(metrics.TRANSFERS, xfer.TransferMode.REFER.value, "accepted" if ok else "failed")
    KSR.info(f"edge: transfer call-id={call_id} result={code}\n")
    if ok:
        timers.end_at(call_id, time.time() + w.settings.transfer_bye_delay_s)


def _keep(call_id: str, fresh: bool = False, **fields: str) -> None:
    """Merge ``fields`` into the call's transfer facts (its record state, no redis round trip);
    ``fresh``: a new REFER, whose facts replace those of an earlier one."""
    state = records.load(call_id)
    if state is None:
        return
    state.transfer = {**({} if fresh else state.transfer or {}), **fields}
    records.save(call_id, state)
