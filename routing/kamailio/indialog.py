"""In-dialog requests that need a decision, after the native route's ``loose_route``/``dlg_manage``:
the sender's header policy, the TLS profile toward a carrier, a REFER's destination policy, a DTMF
INFO (recorded, played into the media when the other side takes no INFO), the media policy of a
re-offer or of the answer in an ACK, and the relay."""

from __future__ import annotations

import time

import KSR  # type: ignore[import-not-found]

# non-Kamailio modules, in one place
from ..call import dtmf
from ..call import media
from ..call import sides as netsides
from ..call.decision import Reject
from ..call.headers import IDENTITY_HEADERS, canonical, header_names, headers_to_remove, in_dialog_policy
from ..tables.store import StoreUnavailable, Topology
from . import callstate as cs
from . import records, screening, sessiontimers, timers, transfers
from .mediaflags import answer_fill, flags, modes, offer_flags, sdp_flags, sides
from .worker import Worker, has_sdp, log_reject, pv

__all__ = ["in_dialog", "tls_profile"]


def _from_caller() -> bool:
    """Whether the request comes from the caller (its From-tag is the dialog's)."""
    return pv("$ft") == pv("$dlg(from_tag)")


def in_dialog(w: Worker, method: str) -> None:
    """Header policy, a transfer (REFER, its NOTIFYs), DTMF INFO, media policy of an SDP, then relay."""
    _headers(w)
    tls_profile(w)
    if method == "REFER" and not transfers.refer(w):
        return
    if method == "NOTIFY":
        transfers.notify(w)
    if method in ("INVITE", "UPDATE") and sessiontimers.refresh(w, method):
        return
    if method == "INFO" and _dtmf_info(w):
        return
    if method == "ACK":  # the native route started the call clock (route CALL_STARTED)
        if has_sdp():
            _check_answer(_from_caller())
        _end_if_media_refused(w)
    if method in ("INVITE", "UPDATE", "ACK") and not _media(w, method):
        return
    if method != "ACK" and pv(cs.CSEQ_AVP):
        KSR.tm.t_on_reply(cs.ON_REPLY)  # its responses get their CSeq number back
    if KSR.tm.t_relay() < 0:
        KSR.sl.sl_reply_error()


def _media(w: Worker, method: str) -> bool:
    """The SDP (or its absence) of an INVITE, UPDATE or ACK into rtpengine; False when the request
    was refused (its offer breaks the policy) and must not be relayed."""
    pair = modes(pv(cs.DTMF_VAR))
    from_caller = _from_caller()
    sdp = has_sdp()
    dtmf_flags = sdp_flags(pair, from_caller, offer=method != "ACK") if sdp else ()
    # offers name the sender's and receiver's interfaces; answers (the ACK's) keep the offer's
    iface = netsides.direction_flags(pv(cs.DIRECTION_VAR) or "origination", from_caller,
                                     w.settings.media_sides and method != "ACK")
    if sdp and method != "ACK":
        result = _offer(w, from_caller, (*dtmf_flags, *iface))
    else:
        fill = answer_fill(w, pv(cs.MEDIA_VAR), from_caller) if sdp else ()
        result = flags((*dtmf_flags, *iface, *fill))
    if isinstance(result, Reject):
        log_reject(result, "in-dialog")
        KSR.sl.send_reply(result.code, result.reason)
        return False
    KSR.rtpengine.rtpengine_manage(result)
    if sdp and method != "ACK" and from_caller and pv(cs.DIRECTION_VAR) == "origination":
        KSR.pv.sets(cs.SDP_VAR, pv("$rb"))  # the carrier's new offer: a bridged transfer's leg offers it
    if method != "ACK":
        KSR.pv.sets(cs.DTMF_AVP, pv(cs.DTMF_VAR))
        KSR.pv.sets(cs.MEDIA_AVP, pv(cs.MEDIA_VAR))
        KSR.pv.seti(cs.FROM_CALLER_AVP, 1 if from_caller else 0)
        KSR.pv.seti(cs.REQ_SDP_AVP, 1 if sdp else 0)
        KSR.pv.sets(cs.DIRECTION_AVP, pv(cs.DIRECTION_VAR) or "origination")
        KSR.tm.t_on_reply(cs.ON_REPLY)
    return True


def tls_profile(w: Worker) -> None:
    """An in-dialog request toward the carrier over TLS may open a new connection (another
    local socket than the INVITE's): name the trunk so it is verified with the trunk's CA too."""
    if not w.settings.tls_enabled:
        return
    trunk = pv(cs.TRUNK_VAR)
    toward_carrier = _from_caller() == (pv(cs.DIRECTION_VAR) == "termination")
    if trunk and toward_carrier and "transport=tls" in (pv("$du") or pv("$ru")).lower():
        KSR.pv.sets("$xavp(tls=>server_id)", trunk)


def _headers(w: Worker) -> None:
    """Apply the sender's header policy (X- allow-list, identity trust) to an in-dialog request,
    as to the initial INVITE.  The trunk and agent come from the worker's topology cache (read
    at most once a second); when redis cannot be read the sender gets the strictest policy."""
    names = header_names(pv("$mb"))
    if not any(n[:2].lower() == "x-" or canonical(n) in IDENTITY_HEADERS for n in names):
        return
    topology = screening.cached_topology(w) or Topology(trunks={}, agents={})
    allowed, trust = in_dialog_policy(
        pv(cs.DIRECTION_VAR) or "origination", _from_caller(),
        topology.trunks.get(pv(cs.TRUNK_VAR)), topology.agents.get(pv(cs.AGENT_VAR)))
    for name in headers_to_remove(names, allowed, trust):
        KSR.hdr.remove(name)


def _offer(w: Worker, from_caller: bool, dtmf_flags: tuple[str, ...]) -> str | Reject:
    """rtpengine flags of a re-INVITE/UPDATE offer: the call's two media policies, offerer first
    (the caller when the From tag is the dialog's), so SRTP and codecs hold on both legs."""
    pair = sides(pv(cs.MEDIA_VAR))
    if pair is None:
        return flags(dtmf_flags)
    caller, callee = pair
    sender, receiver = (caller, callee) if from_caller else (callee, caller)
    return offer_flags(w, media.parse_sdp(pv("$rb")), sender, receiver, dtmf_flags, w.settings.media_fill)


def _check_answer(from_caller: bool) -> None:
    """The SDP answer in an ACK (to a delayed offer) must follow its sender's policy."""
    pair = sides(pv(cs.MEDIA_VAR))
    answer = media.parse_sdp(pv("$rb"))
    if pair is None or answer is None:
        return
    refusal = media.answer_refusal(answer, pair[0] if from_caller else pair[1])
    if refusal is not None:
        log_reject(refusal, "delayed-offer answer")
        records.refuse_media(pv("$ci"), refusal)


def _end_if_media_refused(w: Worker) -> None:
    """At the ACK: a call whose delayed offer or answer broke a policy is ended now: its deadline
    is moved to now, so the call clock sends BYE to both sides (with a ``Reason`` naming the
    cause, RFC 3326) within a second and the slots are released.  A 2xx cannot be turned into a
    488 (RFC 3261 section 13.3.1.4: the callee considers the call set up once it sends it), so
    the ACK completes the handshake first: the callee is never left retransmitting its 2xx."""
    call_id = pv("$ci")
    refused = records.media_refused(call_id)
    if refused is None:
        return
    KSR.notice(f"edge: call-id={call_id} media broke the policy after the answer ({refused.tag}): ending it\n")
    timers.end_now(w, call_id, f"policy:{refused.tag}", time.time())


def _dtmf_info(w: Worker) -> bool:
    """An in-dialog INFO carrying a DTMF digit (``application/dtmf-relay`` or ``application/dtmf``).

    The digit is appended to the call record.  When the other side does not use
    INFO (routing.dtmf.info_action), the edge answers 200 itself and has rtpengine
    play the digit into the media toward it (ng ``play DTMF``, selected by the
    INFO's From-tag: the sender's leg); if rtpengine refuses, the INFO is relayed
    as it is.  A DTMF body without a digit gets ``400 Bad DTMF Signal``.

    Returns:
        True when the request has been answered here, False to relay it.
    """
    ctype = pv("$cT")
    if ctype.split(";", 1)[0].strip().lower() not in dtmf.INFO_TYPES:
        return False
    pair = modes(pv(cs.DTMF_VAR))
    from_caller = _from_caller()
    side = "caller" if from_caller else "callee"
    try:
        digit, duration = dtmf.parse_info(ctype, pv("$rb"))
    except dtmf.DtmfError as exc:
        KSR.info(f"edge: dtmf info refused call-id={pv('$ci')} side={side}: {exc}\n")
        KSR.tm.t_newtran()
        KSR.tm.t_reply(400, "Bad DTMF Signal")
        return True
    _record_dtmf(w, side, digit, dtmf.DtmfMode.INFO)
    if pair is None:
        return False
    sender, receiver = pair if from_caller else (pair[1], pair[0])
    if dtmf.info_action(sender, receiver) == "relay":
        return False
    s = w.settings
    play = dtmf.play_flags(digit, duration, s.dtmf_duration_ms, s.dtmf_volume_db)
    # rtpengine's play_dtmf has no KEMI export in Kamailio 5.6: called as a cfg function
    if w.msg.call_function("play_dtmf", play) < 0:
        KSR.warn(f"edge: rtpengine cannot play dtmf call-id={pv('$ci')} digit={digit}: relaying the INFO\n")
        return False
    KSR.info(f"edge: dtmf call-id={pv('$ci')} side={side} digit={digit} info->{receiver}\n")
    KSR.tm.t_newtran()
    KSR.tm.t_reply(200, "OK")
    return True


def _record_dtmf(w: Worker, side: str, digit: str, via: dtmf.DtmfMode) -> None:
    """Append a digit to the call record (``dtmf`` field); redis trouble only logs."""
    try:
        w.open_store().record_dtmf(pv("$ci"), dtmf.record_entry(side, digit, via))
    except StoreUnavailable as exc:
        KSR.err(f"edge: cannot record dtmf of call-id={pv('$ci')}: {exc}\n")
