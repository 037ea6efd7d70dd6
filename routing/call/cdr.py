"""Call detail records: one per call attempt, built by pure functions over the call's facts.

A record is a JSON-ready ``dict`` (see :data:`FIELDS` and ``docs/operations.md``
for every field).  Times are integers in **milliseconds since the Unix epoch**
(UTC); durations are ms except ``billable_s``.  Money is a decimal string with
:data:`COST_PLACES` places (never a float), in the operator's currency.

Billing (what carriers do, e.g. "60/60" or "1/1" increments):

* only answered time counts: ``talk_ms = end_ms - answer_ms``;
* the first ``first`` seconds are billed whole, then every started block of
  ``next`` seconds (``first`` 0 means blocks from the start);
* ``cost = rate per minute * billable_s / 60``, rounded half-up to
  :data:`COST_PLACES` decimal places.

No ``KSR`` and no redis here: :mod:`routing.kamailio` gathers the facts,
:mod:`routing.tables.cdrstore` stores the record.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable, Mapping

__all__ = [
    "COST_PLACES",
    "FIELDS",
    "CallFacts",
    "billable_seconds",
    "call_cost",
    "cost_micros",
    "cost_so_far",
    "record_id",
    "parse_tried",
    "sdp_codecs",
    "build_record",
    "media_fields",
    "totals",
    "utc_day",
]

#: decimal places of ``cost`` (micro-units of the currency)
COST_PLACES = 6
_QUANTUM = Decimal(1).scaleb(-COST_PLACES)

#: Record fields, in CSV column order (lists and dicts are JSON text in CSV).
FIELDS = (
    "id", "node", "call_id", "cseq", "direction", "status", "start_ms", "answer_ms", "end_ms",
    "duration_ms", "talk_ms", "billable_s", "billing_increment", "rate", "cost", "trunk", "agent",
    "number", "caller", "gateways", "sip_code", "sip_reason", "reject_tag", "hangup", "codecs_caller",
    "codecs_callee", "media", "transfer", "verstat", "account", "spend_accrued", "identity",
)

#: Call-hash fields that are facts of the call, not media data (see :func:`media_fields`); ``rtp_node`` (the
#: call's rtpengine, for the node-loss reaper) is not recorded
_FACTS = frozenset({"direction", "trunk", "agent", "number", "start_ms", "answer_ms", "codecs_caller", "codecs_callee",
                    "account", "spend_accrued", "rtp_node"})


def billable_seconds(talk_ms: int, increment: tuple[int, int] = (1, 1)) -> int:
    """Billable seconds of ``talk_ms`` of answered time with a ``(first, next)`` increment.

    ``(60, 60)``: any call up to 60 s bills 60, 61 s bills 120.  ``(1, 1)``:
    every started second.  ``(30, 6)``: 30 s minimum, then 6 s blocks.  A
    call that was not answered (``talk_ms`` <= 0) bills 0.

    Raises:
        ValueError: ``next`` < 1 or ``first`` < 0.
    """
    first, nxt = increment
    if nxt < 1 or first < 0:
        raise ValueError(f"bad billing increment {first}/{nxt}")
    if talk_ms <= 0:
        return 0
    if talk_ms <= first * 1000:
        return first
    rest_ms = talk_ms - first * 1000
    blocks = -(-rest_ms // (nxt * 1000))
    return first + blocks * nxt


def call_cost(rate: Decimal, billable_s: int) -> Decimal:
    """``rate`` (per minute) x ``billable_s`` / 60, rounded half-up to :data:`COST_PLACES` places."""
    return (rate * billable_s / 60).quantize(_QUANTUM, rounding=ROUND_HALF_UP)


def cost_so_far(rate: Decimal, increment: tuple[int, int], answer_ms: int, now_ms: int) -> int:
    """What an answered call has cost by ``now_ms`` (micro-units): its billable time so far by the
    trunk's ``(first, next)`` increment, times its per-minute ``rate``; never more than its final cost
    if it ended now (the spend accrual of calls in progress, :mod:`routing.tables.spend`)."""
    return cost_micros(call_cost(rate, billable_seconds(max(0, now_ms - answer_ms), increment)))


def cost_micros(cost: Decimal | str) -> int:
    """A cost as integer micro-units (what the spend counters in redis add up)."""
    return int((Decimal(cost) * 10**COST_PLACES).to_integral_value(rounding=ROUND_HALF_UP))


def utc_day(ms: int) -> str:
    """The UTC day of a time in ms since epoch, as ``YYYYMMDD`` (spend counters are per UTC day)."""
    return time.strftime("%Y%m%d", time.gmtime(ms / 1000))


def record_id(node: str, call_id: str, cseq: str | int) -> str:
    """Id of one call attempt: ``{node}:{call-id}:{cseq}``.  The CSeq number of the initial
    INVITE tells apart attempts that reuse a Call-ID (RFC 3261 section 8.1.1.5) while
    retransmissions share it, so writing a record twice is a no-op."""
    return f"{node}:{call_id}:{cseq}"


def parse_tried(tried: Iterable[str]) -> list[dict[str, str]]:
    """Gateways tried, in order, from :attr:`routing.call.plan.CallPlan.tried` (``"label=result"``):
    ``[{"gateway": "carrier-a 192.0.2.10:5060", "result": "503"}]``.  A result is a SIP
    code, ``timeout`` (no answer) or a limit tag such as ``trunk_limit`` (skipped)."""
    out = []
    for item in tried:
        label, _, result = item.rpartition("=")
        out.append({"gateway": label, "result": result})
    return out


_RTPMAP = re.compile(r"^a=rtpmap:(\d+)\s+([^/\s]+)/(\d+)", re.I)
_MLINE = re.compile(r"^m=audio\s+\d+(?:/\d+)?\s+\S+\s+(.*)$", re.I)
#: static payload types (RFC 3551 section 6) used without an rtpmap line
_STATIC = {"0": "PCMU/8000", "3": "GSM/8000", "4": "G723/8000", "8": "PCMA/8000", "9": "G722/8000", "18": "G729/8000"}


def sdp_codecs(body: str) -> list[str]:
    """Audio codecs of an SDP body in the order of its first ``m=audio`` line (RFC 4566
    section 5.14): ``["PCMU/8000", "PCMA/8000", "telephone-event/8000"]``.  Empty when
    there is no SDP or no audio stream; unknown dynamic types appear as their number."""
    return list(_sdp_codecs(body or ""))


@lru_cache(maxsize=32)
def _sdp_codecs(body: str) -> tuple[str, ...]:
    payloads: list[str] = []
    names: dict[str, str] = {}
    for line in (body or "").splitlines():
        line = line.strip()
        mline = _MLINE.match(line)
        if mline and not payloads:
            payloads = mline.group(1).split()
            continue
        rtpmap = _RTPMAP.match(line)
        if rtpmap:
            names.setdefault(rtpmap.group(1), f"{rtpmap.group(2)}/{rtpmap.group(3)}")
    return tuple(names.get(pt) or _STATIC.get(pt) or pt for pt in payloads)


def media_fields(call_hash: Mapping[str, str]) -> dict[str, str]:
    """Fields the media work wrote to the call hash (quality stats, DTMF...), copied as-is:
    everything except leases and the call facts this module reads itself."""
    return {k: v for k, v in call_hash.items() if not k.startswith("lease:") and k not in _FACTS}


@dataclass(slots=True)
class CallFacts:
    """What the edge knows of one call attempt when it ends.

    Attributes:
        node: edge node id.
        call_id: SIP Call-ID.
        cseq: CSeq number of the initial INVITE.
        direction: ``origination`` or ``termination`` (empty when refused before classification).
        start_ms: INVITE received (ms since epoch).
        end_ms: final response sent, or the call ended (ms).
        answer_ms: 2xx received (ms), None when not answered.
        trunk: the carrier trunk (the one of the gateway that answered or was tried last).
        agent: the agent.
        number: the DID (origination) or the destination (termination), E.164 when known,
            else the Request-URI user as received.
        caller: the From user.
        tried: :attr:`routing.call.plan.CallPlan.tried` strings, in order.
        sip_code, sip_reason: final response of the attempt (200 for answered calls).
        reject_tag: the edge's refusal code (``acl_source``, ``spend_cap``...) when the edge refused.
        cancelled: the caller cancelled before an answer.
        rate: per-minute rate: the route entry's (termination) or the trunk's ``inbound_rate`` (origination); 0 = free.
        increment: the trunk's billing increment ``(first, next)`` seconds.
        codecs_caller: codecs the caller offered; codecs_callee: codecs the callee answered.
        hangup: who ended an answered call: ``caller`` or ``callee`` (their BYE), ``edge``
            (maximum duration, dialog timeout); empty when not answered.
        media: fields the media work stored for the call (see :func:`media_fields`).
        transfer: the agent's transfer of the call, if any: ``mode`` (``refer``), ``target`` (E.164
            number or SIP URI), ``refer_code`` (the carrier's answer to the REFER), ``result`` (the
            final ``message/sipfrag`` status of the carrier's NOTIFY, RFC 3515 section 2.4.5, or the
            REFER's refusal); empty when the call was not transferred.
        verstat: the carrier's STIR/SHAKEN verification of the caller (``TN-Validation-Passed``...,
            :mod:`routing.call.identity`), empty when it sent none.
        account: the call's account (docs/identity.md#accounts), empty when none.
        identity: the edge's check of the carrier's ``Identity`` header (``valid;attest=A``...,
            :mod:`routing.call.identity`), empty when it made none.
        accrued_micros: of the cost, what the spend counters already counted while the call ran
            (:mod:`routing.tables.spend`, micro-units); the record's ``spend_accrued``.
    """

    node: str
    call_id: str
    cseq: str
    start_ms: int
    end_ms: int
    sip_code: int
    sip_reason: str
    direction: str = ""
    answer_ms: int | None = None
    trunk: str = ""
    agent: str = ""
    number: str = ""
    caller: str = ""
    tried: list[str] = field(default_factory=list)
    reject_tag: str = ""
    cancelled: bool = False
    rate: Decimal = Decimal(0)
    increment: tuple[int, int] = (1, 1)
    codecs_caller: list[str] = field(default_factory=list)
    codecs_callee: list[str] = field(default_factory=list)
    hangup: str = ""
    media: dict[str, str] = field(default_factory=dict)
    transfer: dict[str, str] = field(default_factory=dict)
    verstat: str = ""
    account: str = ""
    accrued_micros: int = 0
    identity: str = ""


def _status(facts: CallFacts) -> str:
    if facts.answer_ms is not None:
        return "answered"
    if facts.cancelled:
        return "cancelled"
    if facts.reject_tag and not facts.tried:
        return "rejected"
    return "failed"


def build_record(facts: CallFacts) -> dict[str, object]:
    """The call record of one attempt (JSON-ready; keys in :data:`FIELDS` order).

    ``status`` is ``answered``, ``cancelled`` (the caller gave up), ``rejected`` (the
    edge refused it before any gateway or agent was tried) or ``failed``.
    """
    end_ms = max(facts.end_ms, facts.start_ms)
    answer_ms = None if facts.answer_ms is None else min(max(facts.answer_ms, facts.start_ms), end_ms)
    talk_ms = 0 if answer_ms is None else end_ms - answer_ms
    billable = billable_seconds(talk_ms, facts.increment) if answer_ms is not None else 0
    cost = call_cost(facts.rate, billable)
    return {
        "id": record_id(facts.node, facts.call_id, facts.cseq),
        "node": facts.node,
        "call_id": facts.call_id,
        "cseq": str(facts.cseq),
        "direction": facts.direction,
        "status": _status(facts),
        "start_ms": facts.start_ms,
        "answer_ms": answer_ms,
        "end_ms": end_ms,
        "duration_ms": end_ms - facts.start_ms,
        "talk_ms": talk_ms,
        "billable_s": billable,
        "billing_increment": f"{facts.increment[0]}/{facts.increment[1]}",
        "rate": str(facts.rate),
        "cost": str(cost),
        "trunk": facts.trunk,
        "agent": facts.agent,
        "number": facts.number,
        "caller": facts.caller,
        "gateways": parse_tried(facts.tried),
        "sip_code": facts.sip_code,
        "sip_reason": facts.sip_reason,
        "reject_tag": facts.reject_tag,
        "hangup": facts.hangup if answer_ms is not None else "",
        "codecs_caller": list(facts.codecs_caller),
        "codecs_callee": list(facts.codecs_callee),
        "media": dict(facts.media),
        "transfer": dict(facts.transfer),
        "verstat": facts.verstat,
        "account": facts.account,
        "spend_accrued": str(Decimal(facts.accrued_micros).scaleb(-COST_PLACES).quantize(_QUANTUM)),
        "identity": facts.identity,
    }


def totals(records: Iterable[Mapping[str, object]]) -> list[dict[str, object]]:
    """Per-trunk totals: ``[{trunk, calls, answered, billable_minutes, talk_minutes, cost}]``,
    sorted by trunk name (records without a trunk count under ``""``).  Minutes are
    decimal strings with 2 places (billable seconds / 60); cost sums the records' costs."""
    acc: dict[str, dict[str, object]] = {}
    for rec in records:
        trunk = str(rec.get("trunk") or "")
        row = acc.setdefault(trunk, {"calls": 0, "answered": 0, "billable_s": 0, "talk_ms": 0, "cost": Decimal(0)})
        row["calls"] = int(row["calls"]) + 1  # type: ignore[call-overload]
        if rec.get("status") == "answered":
            row["answered"] = int(row["answered"]) + 1  # type: ignore[call-overload]
        row["billable_s"] = int(row["billable_s"]) + int(rec.get("billable_s") or 0)  # type: ignore[call-overload]
        row["talk_ms"] = int(row["talk_ms"]) + int(rec.get("talk_ms") or 0)  # type: ignore[call-overload]
        row["cost"] = Decimal(row["cost"]) + Decimal(str(rec.get("cost") or "0"))  # type: ignore[arg-type]
    two = Decimal("0.01")
    return [
        {
            "trunk": trunk,
            "calls": row["calls"],
            "answered": row["answered"],
            "billable_minutes": str((Decimal(int(row["billable_s"])) / 60).quantize(two, rounding=ROUND_HALF_UP)),  # type: ignore[call-overload]
            "talk_minutes": str((Decimal(int(row["talk_ms"])) / 60000).quantize(two, rounding=ROUND_HALF_UP)),  # type: ignore[call-overload]
            "cost": str(Decimal(row["cost"]).quantize(_QUANTUM)),  # type: ignore[arg-type]
        }
        for trunk, row in sorted(acc.items())
    ]
