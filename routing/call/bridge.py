"""Bridged transfer decisions, sans I/O: when the edge carries out an agent's blind transfer
itself instead of the carrier, what the transfer leg presents, and the state that ties the
original call and the transfer leg together while both live.

The edge is a proxy (Kamailio 5.6 has no B2BUA), so a bridged transfer is third-party call
control (RFC 3725 flow III's order, with the offer in the INVITE, as tm acknowledges the 2xx of
its own INVITEs by itself):

1. the agent's REFER (of an origination call, the carrier calling, or a termination call, the
   agent having called the carrier) is answered ``202`` by the edge (RFC 3515 section 2.4.2), and
   the agent gets ``NOTIFY`` ``message/sipfrag`` ``100 Trying`` on the carrier's behalf;
2. the edge places the **transfer leg**: an INVITE from itself, through its own request route
   (routed as a termination call of the referring agent: destination policy, LCR, limits), whose
   offer is the carrier's last SDP anchored in a new rtpengine call (the leg's Call-ID);
3. when the target answers, the edge re-INVITEs the carrier on the agent's behalf with the answer
   rtpengine made for the carrier's side of the leg, then NOTIFYs the agent ``200 OK`` and
   sends it BYE; the carrier's dialog and the leg stay, joined by rtpengine's leg call;
4. from then on the edge maps the two dialogs: a BYE from either end ends the other; a re-INVITE
   or UPDATE from either end (hold, codec change) is re-offered in the leg's rtpengine call and
   relayed to the other end with the other dialog's identifiers, its answer and ACK mapped back
   (a re-INVITE without SDP too: the other end offers in its 2xx, the ACK answers); a DTMF INFO
   is relayed, or played into the media toward an end that takes no INFO; a digit an end sends
   in the media (RFC 4733 event, or a tone rtpengine detects) toward an end that takes INFO
   becomes an INFO in that end's own dialog (:func:`bridged_digit`).

A failed leg (busy, no answer, no route) ends nothing: the agent gets the final status in its
NOTIFY (RFC 3515 section 2.4.5) and keeps the caller.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from routing.call.dtmf import DtmfMode, info_needed, record_entry
from routing.tables.model.fields import TransferMode

__all__ = [
    "FALLBACK_CODES", "LEG_PREFIX", "Bridge", "bridges", "falls_back", "leg_call_id", "sipfrag",
    "subscription_state", "leg_from", "REASONS", "parse_replaces", "BridgedDigit", "bridged_digit",
]

#: the carrier's answers to a REFER after which ``auto`` bridges the transfer itself:
#: 403 (REFER disabled on the trunk, Twilio's answer), 405 (method not allowed), 501 (not
#: implemented), 603 (declined); RFC 3515 section 2.4.2 lets a UA refuse a REFER with any of them
FALLBACK_CODES = frozenset({403, 405, 501, 603})

#: Call-ID prefix of a transfer leg: ``xfer-{original Call-ID}`` (one bridged transfer at a time per call)
LEG_PREFIX = "xfer-"

#: reason phrases of the sipfrag when the reply's own is unknown (RFC 3261 section 21)
REASONS = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 404: "Not Found",
           408: "Request Timeout", 480: "Temporarily Unavailable", 486: "Busy Here", 487: "Request Terminated",
           488: "Not Acceptable Here", 500: "Server Internal Error", 503: "Service Unavailable", 603: "Decline"}


def bridges(mode: TransferMode, direction: str) -> bool:
    """Whether a REFER is carried out by the edge at once: ``bridge`` mode, on an origination call
    (the carrier is the caller) or a termination call (the carrier is the callee)."""
    return mode is TransferMode.BRIDGE and direction in ("origination", "termination")


def falls_back(mode: TransferMode, direction: str, code: int) -> bool:
    """Whether the carrier's final answer ``code`` to a relayed REFER makes the edge bridge the
    transfer itself: ``auto`` mode, a code of :data:`FALLBACK_CODES`."""
    return mode is TransferMode.AUTO and direction in ("origination", "termination") and code in FALLBACK_CODES


def leg_call_id(call_id: str) -> str:
    """The Call-ID of the transfer leg of the call ``call_id``."""
    return LEG_PREFIX + call_id


def sipfrag(code: int, reason: str = "") -> str:
    """The ``message/sipfrag`` body of a NOTIFY reporting ``code`` (RFC 3515 section 2.4.5,
    RFC 3420): one status line."""
    return f"SIP/2.0 {code} {reason or REASONS.get(code, 'Unknown')}\r\n"


def subscription_state(code: int) -> str:
    """The ``Subscription-State`` of a NOTIFY reporting ``code`` (RFC 6665 section 4.1.3): active
    while the leg is being set up, terminated at its final status (RFC 3515 section 2.4.7)."""
    return "active;expires=60" if code < 200 else "terminated;reason=noresource"


def leg_from(caller: str, did: str) -> str:
    """The From user of the transfer leg's INVITE: the original caller's number, or the DID when
    the caller is anonymous or unknown.  Each trunk the leg may take then decides what its carrier
    receives (``forwarded_caller_id``, :func:`routing.call.callerid.forwarded_verdict`)."""
    return caller if caller and caller.lower() != "anonymous" else did


def parse_replaces(value: str) -> tuple[str, str, str] | None:
    """A ``Replaces`` header value (RFC 3891 section 6.1: ``callid;to-tag=..;from-tag=..``, as
    embedded in a ``Refer-To`` URI, unescaped).

    Returns:
        ``(call-id, to-tag, from-tag)``, or None when the Call-ID or a tag is missing.
    """
    call_id, *params = [part.strip() for part in (value or "").split(";")]
    tags = {}
    for param in params:
        name, _, tag = param.partition("=")
        tags[name.strip().lower()] = tag.strip()
    if not call_id or not tags.get("to-tag") or not tags.get("from-tag"):
        return None
    return call_id, tags["to-tag"], tags["from-tag"]


@dataclass(slots=True)
class Bridge:
    """What ties a call and its transfer leg while the edge carries out the transfer (kept in
    the ``xfer`` htable under both Call-IDs, shared memory: only transferred calls have one).

    Attributes:
        call_id: the original call's Call-ID (carrier <-> agent).
        leg: the transfer leg's Call-ID (:func:`leg_call_id`).
        agent, trunk: the original call's agent and trunk.
        carrier_tag, agent_tag: the original dialog's tags of the carrier and of the agent.
        target: the number (E.164) or SIP URI of the target; ``number``: True for a number.
        headers: the context headers the leg carries (``[[name, value], ...]``, allow-listed).
        refer_cseq: the REFER's CSeq number (``Event: refer;id=``, RFC 3515 section 2.4.6).
        refer_code: the carrier's answer to the REFER when ``auto`` fell back (else empty).
        phase: ``dialling`` (leg placed), ``answering`` (the target answered, the carrier being
            re-INVITEd), ``bridged`` (carrier and target joined), ``failed``.
        leg_tag, target_tag: the leg's tags once the target answered (the edge is its caller).
        carrier_cseq: the carrier's last CSeq number in the original dialog at the REFER.
        leg_cseq: the leg INVITE's CSeq number (a CANCEL names it).
        agent_cseq: the highest CSeq number the edge used in the original call on the agent's
            behalf (its re-INVITEs to the carrier; its later BYE goes above it).
        uac_cseq: the highest CSeq number the edge used in the leg as its caller after the INVITE.
        relayed: ``[sender's CSeq, CSeq in the other call]`` of the last re-INVITE relayed across
            the bridge (its ACK is mapped with it).
        media: the leg's media policies, ``{"caller": ..., "callee": ...}`` JSON (``MediaPolicy``
            forms: the original trunk's for the carrier, the leg's first trunk's for the target),
            applied to re-offers across the bridge.
        agent_gone: the agent hung up while the leg rang (the carrier's call waits for the leg).
        carrier_is_caller: the carrier is the original call's caller (origination), else its
            callee (termination: the agent called the carrier).
        consult: an attended transfer: the "leg" is the agent's consult call to the target (an
            ordinary termination call through the edge), in which the edge takes the agent's
            place (``leg_tag`` is the agent's tag there, ``target_tag`` the target's).
        dtmf: the DTMF modes of the carrier and of the target, ``"carrier,target"`` (the leg's
            first hop; empty for an attended transfer): a DTMF INFO across the bridge follows them.
        caller, did: what the leg forwards (:class:`routing.call.callerid.Forward`): the original
            caller (origination; termination: the number the agent called) and the number its
            ``Diversion`` names (the DID; termination: the caller ID the call presented).
    """

    call_id: str
    leg: str
    agent: str
    trunk: str
    carrier_tag: str
    agent_tag: str
    target: str
    number: bool
    headers: list[list[str]] = field(default_factory=list)
    refer_cseq: int = 0
    refer_code: str = ""
    phase: str = "dialling"
    leg_tag: str = ""
    target_tag: str = ""
    carrier_cseq: int = 0
    leg_cseq: int = 0
    agent_cseq: int = 0
    uac_cseq: int = 0
    relayed: list[int] = field(default_factory=list)
    media: str = ""
    agent_gone: bool = False
    carrier_is_caller: bool = True
    consult: bool = False
    caller: str = ""
    did: str = ""
    dtmf: str = ""

    def encode(self) -> str:
        """JSON for the htable value."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> "Bridge | None":
        """Parse :meth:`encode`'s form; None for an empty or malformed value."""
        try:
            data = json.loads(text) if text else None
            return cls(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError):
            return None

    def moved(self, **changes: object) -> "Bridge":
        """A copy with ``changes`` applied."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def keeping_cseqs(self, stored: "Bridge | None") -> "Bridge":
        """This state with the CSeq numbers the edge used on either side (``agent_cseq``,
        ``uac_cseq``) never below ``stored``'s: a worker saving a state it loaded earlier must not
        give back a number another process (the DTMF log's INFO) took meanwhile (RFC 3261 section
        12.2.1.1: each request of a side numbered above the one before)."""
        if stored is None:
            return self
        return replace(self, agent_cseq=max(self.agent_cseq, stored.agent_cseq),
                       uac_cseq=max(self.uac_cseq, stored.uac_cseq))


@dataclass(frozen=True, slots=True)
class BridgedDigit:
    """What the edge does with a digit rtpengine saw in the media of a bridged call's leg.

    Attributes:
        from_carrier: the carrier sent it (else the target).
        record_call: the Call-ID of the call it came in, whose record gets it (the original call
            for the carrier, the leg for the target).
        entry: the record's entry (``{side}:{digit}:{mode}``, :func:`routing.call.dtmf.record_entry`;
            the side is the sender's in that call), or None for the edge's own ``play DTMF`` of a
            digit an ``info`` end sent (recorded from its INFO): nothing to do.
        info: send the other end an INFO on its peer's behalf (it takes INFO, the sender does not)
            in its own dialog; only once the calls are joined (``bridged``).
    """

    from_carrier: bool
    record_call: str
    entry: str | None
    info: bool


def bridged_digit(b: Bridge, call_id: str, source_tag: str, digit: str) -> BridgedDigit | None:
    """A digit rtpengine reported (``dtmf-log-dest``) for the rtpengine call ``call_id`` from the
    monologue ``source_tag``, seen from the bridge ``b``: in the leg's rtpengine call (which
    carries both ends' media after the bridge) the carrier's side has the leg's caller tag
    (``leg_tag``), the target's its callee tag.

    Returns:
        None when the bridge does not decide: another call's media (the original call's, before
        the bridge), an attended transfer (its consult call keeps its own DTMF handling, ``dtmf``
        empty), modes or tag unknown; else :class:`BridgedDigit`.

    Raises:
        DtmfError: ``digit`` is no DTMF digit.
    """
    if call_id != b.leg or b.consult or source_tag not in (b.leg_tag, b.target_tag) or not b.leg_tag:
        return None
    try:
        carrier, target = (DtmfMode(m) for m in b.dtmf.split(",", 1))
    except ValueError:
        return None
    from_carrier = source_tag == b.leg_tag
    sender, receiver = (carrier, target) if from_carrier else (target, carrier)
    side = ("caller" if b.carrier_is_caller else "callee") if from_carrier else "callee"
    return BridgedDigit(from_carrier, b.call_id if from_carrier else b.leg,
                        None if sender is DtmfMode.INFO else record_entry(side, digit, sender),
                        b.phase == "bridged" and info_needed(sender, receiver))
