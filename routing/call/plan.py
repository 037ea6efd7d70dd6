"""A call's ordered targets and the serial-failover rules between them.

The plan travels with the INVITE transaction (serialised into an AVP by
:mod:`routing.kamailio`) so the failure route can continue where the request
route stopped.  Failover rules:

* fail over on 408, any 5xx, a timeout with no final response, or a gateway
  that cannot be reached;
* never on another 4xx or a 6xx (RFC 3261 section 16.7: a 6xx ends the search);
* never after early media (a 18x with SDP) and never after a 2xx.

When every target has failed, the caller gets the best final response any
target actually sent (lowest class wins, RFC 3261 section 16.7 step 6, a 503
becoming 500), or 503 when no target answered at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from routing.tables.store import Lease, Store

__all__ = ["Target", "CallPlan", "should_fail_over", "better_response", "final_response"]


@dataclass(frozen=True, slots=True)
class Target:
    """One next hop to try.

    Attributes:
        uri: Request-URI to send to.
        label: human-readable hop name for logs (``"telnyx 192.0.2.10:5060"``).
        trunk: trunk used for termination, None for an agent target.
        lease: concurrency slot the hop needs (the trunk's), None when covered up front.
        max_duration_s: longest the call may last over this hop (s); 0 = node default.
        dtmf: DTMF mode of the side this hop reaches (``rfc4733``, ``info``, ``inband``; :mod:`routing.call.dtmf`).
        rate: per-minute rate billed for the hop (decimal string): the route entry's rate for a
            gateway, the trunk's ``inbound_rate`` for an agent target; empty = free.
        billing: billing increment ``"first/next"`` (s) of the trunk billed for the hop.
        media: resolved media policy of this hop's side (``MediaPolicy.to_json`` form), None = node default.
        answer_timeout_ms: longest wait for the hop's final answer (ms), with or without a
            provisional reply first; 0 = the node's ``sip.failover_timeout_ms`` / ``ringing_timeout_ms``.
        diverted_from: on an origination call's fallback to a number, the DID the call was
            diverted from (RFC 5806 ``Diversion``); empty otherwise.
        hold_answer_ms: the agent's 200 OK is held until its first RTP packet, at most this long
            (ms); 0 = relayed at once (:mod:`routing.kamailio.holdanswer`).
        session_timer_s: on a termination hop, the trunk's ``session_timer_s``: the interval (s) the
            carrier is asked to refresh at when the agent offered no timers; 0 = not asked.
    """

    uri: str
    label: str
    trunk: str | None = None
    lease: Lease | None = None
    max_duration_s: int = 0
    dtmf: str = "rfc4733"
    rate: str = ""
    billing: str = "1/1"
    media: dict | None = None
    answer_timeout_ms: int = 0
    diverted_from: str = ""
    hold_answer_ms: int = 0
    session_timer_s: int = 0


@dataclass(slots=True)
class CallPlan:
    """Targets of one call and where the failover stands.

    Attributes:
        call_id: SIP Call-ID.
        direction: ``origination`` (carrier -> agent) or ``termination`` (agent -> carrier).
        targets: hops in order.
        index: the hop being tried now.
        held: lease key of the current hop's slot, when it needs one.
        best: the best final (code, reason) received so far from any hop.
        tried: ``"label=code"`` strings, in order, for logs and call records.
        full: the refusal of the last limit that made a hop be skipped:
            ``[code, reason, tag, retry_after_s]`` (``[503, "Trunk Limit Reached: x", "trunk_limit", 5]``).
        agent: the agent of the call (its destination policy applies to transfers and redirects).
        trunk: the trunk of an origination call.
        retry_after_s: Retry-After used for concurrency refusals (s).
        auth_tried: hop indexes whose 401/407 challenge was already answered once.
        caller_dtmf: DTMF mode of the calling side (the trunk for origination, the agent for termination).
        number: the DID (origination) or destination (termination), E.164.
        caller: the caller's number (From user, normalised when possible).
        caller_media: resolved media policy of the calling side (``MediaPolicy.to_json`` form).
        ringback_ms: the trunk's ``ringback_ms`` on an origination call (0 = none): the edge sends
            the caller 180 itself when no 18x has been relayed this long after the INVITE.
        verstat: the carrier's STIR/SHAKEN verification of the caller (:mod:`routing.call.identity`), or empty.
        present_caller: on a termination call, the caller ID (E.164) the From must carry instead
            of the agent's own (:mod:`routing.call.callerid`); empty = relayed as written.
        presentation: on a termination call, how the carrier receives the caller
            (:func:`routing.call.presentation.plan_presentation`, the first trunk's shaping); None = as written.
        stir: on a termination call over a trunk that signs, the PASSporT's numbers and SHAKEN
            attestation (:func:`routing.call.callerid.shaken`); None = unsigned.
        announce: on an origination call, the announcement of the DID's last fallback step
            (``announce:NAME``), played to the caller before the final refusal once every hop
            failed; empty = none.
        account: the call's account (the trunk's on origination, the agent's on termination;
            docs/identity.md#accounts); empty = none.
        verify_identity: on an origination call over a trunk with ``stir_verify`` whose INVITE has an
            ``Identity`` header: the adapter checks it (:mod:`routing.kamailio.identitycheck`).
        identity: the result of that check (``X-Edge-Identity``, :mod:`routing.call.identity`); empty = none.
    """

    call_id: str
    direction: str
    targets: list[Target]
    index: int = 0
    held: str | None = None
    best: tuple[int, str] | None = None
    tried: list[str] = field(default_factory=list)
    full: list | None = None
    agent: str = ""
    trunk: str = ""
    retry_after_s: int = 5
    auth_tried: list[int] = field(default_factory=list)
    caller_dtmf: str = "rfc4733"
    number: str = ""
    caller: str = ""
    caller_media: dict | None = None
    ringback_ms: int = 0
    verstat: str = ""
    present_caller: str = ""
    presentation: dict | None = None
    stir: dict | None = None
    announce: str = ""
    account: str = ""
    verify_identity: bool = False
    identity: str = ""

    @property
    def current(self) -> Target:
        """The hop being tried."""
        return self.targets[self.index]

    def record(self, code: int, reason: str, answered: bool) -> None:
        """Note how the current hop ended; ``answered`` is False for local timeouts/errors."""
        self.tried.append(f"{self.current.label}={code if answered else 'timeout'}")
        if answered and (self.best is None or better_response((code, reason), self.best)):
            self.best = (code, reason)

    def advance(self, store: Store, ttl_s: int, start: int | None = None) -> Target | None:
        """Move to the next hop whose slot can be taken, swapping trunk leases.

        Args:
            store: where the leases live.
            ttl_s: lease lifetime (s): the admission's (``RuntimeSettings.admission_ttl_s``),
                as long as one hop may take; a failover to a hop whose slot the call already
                holds (another gateway of the same trunk, an agent's next URI) extends the
                held leases by as much, so a call that rings on several hops keeps its slots.
            start: hop index to start from (0 for the first attempt); default is the next one.

        Returns:
            The hop to try now, or None when none is left (or every remaining trunk is full).

        Raises:
            StoreUnavailable: redis unreachable.
        """
        index = self.index + 1 if start is None else start
        while index < len(self.targets):
            target = self.targets[index]
            needed = target.lease.key if target.lease else None
            if needed == self.held or needed is None:
                if start is None:  # a failover: the new hop may ring as long as the first
                    store.update_call(self.call_id, {}, extend_s=ttl_s)
                self.index = index
                return target
            release = [self.held] if self.held else []
            assert target.lease is not None
            admission = store.acquire(
                self.call_id, [target.lease], ttl_s, release=release, facts={"trunk": target.trunk or ""}
            )
            self.held = None
            if admission.admitted:
                self.held = needed
                self.index = index
                return target
            self.tried.append(f"{target.label}={admission.tag}")
            self.full = [503, admission.reason, admission.tag, admission.retry_after_s(self.retry_after_s)]
            index += 1
        self.index = len(self.targets) - 1
        return None

    def dumps(self) -> str:
        """Serialise for a transaction AVP: the JSON of ``dataclasses.asdict(self)``, from dicts
        written out field by field (:func:`_plan_dict`) and one compact C encoder made once (this
        runs for every INVITE and failover: no asdict deep copies, no getattr per field, no
        encoder built per call)."""
        return _COMPACT.encode(_plan_dict(self))

    @classmethod
    def loads(cls, text: str) -> "CallPlan":
        """Inverse of :meth:`dumps`."""
        data = json.loads(text)
        targets = [
            Target(
                uri=t["uri"],
                label=t["label"],
                trunk=t["trunk"],
                lease=Lease(**t["lease"]) if t["lease"] else None,
                max_duration_s=t.get("max_duration_s", 0),
                dtmf=t.get("dtmf", "rfc4733"),
                rate=t.get("rate", ""),
                billing=t.get("billing", "1/1"),
                media=t.get("media"),
                answer_timeout_ms=t.get("answer_timeout_ms", 0),
                diverted_from=t.get("diverted_from", ""),
                hold_answer_ms=t.get("hold_answer_ms", 0),
                session_timer_s=t.get("session_timer_s", 0),
            )
            for t in data.pop("targets")
        ]
        best = tuple(data.pop("best")) if data.get("best") else None
        data.pop("best", None)
        return cls(targets=targets, best=best, **data)  # type: ignore[arg-type]


def should_fail_over(code: int, answered: bool, early_media: bool) -> bool:
    """Whether a failed hop lets the call move to the next one.

    Args:
        code: final status of the hop (a local 408 when it timed out).
        answered: True when the hop itself sent that final response.
        early_media: True when the hop sent a 18x with SDP.
    """
    if early_media or 200 <= code < 300:
        return False
    if not answered:
        return True  # timeout or unreachable gateway
    return code == 408 or 500 <= code < 600


def better_response(a: tuple[int, str], b: tuple[int, str]) -> bool:
    """True when final response ``a`` should be preferred over ``b`` (RFC 3261 section 16.7).

    6xx beats everything, otherwise the lowest class wins; the first received
    wins a tie.
    """
    rank_a = 0 if a[0] >= 600 else a[0] // 100
    rank_b = 0 if b[0] >= 600 else b[0] // 100
    return rank_a < rank_b


def final_response(plan: CallPlan, none_answered: tuple[int, str]) -> tuple[int, str]:
    """The response the caller gets once every hop failed.

    A 503 chosen from downstream becomes 500 so the caller does not take the
    edge itself for overloaded (RFC 3261 section 16.7 step 6).
    """
    if plan.best is None:
        return none_answered
    code, reason = plan.best
    if code == 503:
        return 500, "Next Hop Unavailable"
    return code, reason


#: one compact encoder for the hot path (``json.dumps`` with ``separators`` builds one per call)
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _lease_dict(lease: Lease | None) -> dict[str, object] | None:
    if lease is None:
        return None
    return {"key": lease.key, "limit": lease.limit, "label": lease.label, "cps": lease.cps, "bucket": lease.bucket}


def _target_dict(t: Target) -> dict[str, object]:
    return {"uri": t.uri, "label": t.label, "trunk": t.trunk, "lease": _lease_dict(t.lease),
            "max_duration_s": t.max_duration_s, "dtmf": t.dtmf, "rate": t.rate, "billing": t.billing,
            "media": t.media, "answer_timeout_ms": t.answer_timeout_ms, "diverted_from": t.diverted_from,
            "hold_answer_ms": t.hold_answer_ms, "session_timer_s": t.session_timer_s}


def _plan_dict(p: CallPlan) -> dict[str, object]:
    """``dataclasses.asdict(p)`` written out (a unit test checks it names every field of the three
    dataclasses, in order)."""
    return {"call_id": p.call_id, "direction": p.direction, "targets": [_target_dict(t) for t in p.targets],
            "index": p.index, "held": p.held, "best": p.best, "tried": p.tried, "full": p.full, "agent": p.agent,
            "trunk": p.trunk, "retry_after_s": p.retry_after_s, "auth_tried": p.auth_tried,
            "caller_dtmf": p.caller_dtmf, "number": p.number, "caller": p.caller, "caller_media": p.caller_media,
            "ringback_ms": p.ringback_ms, "verstat": p.verstat, "present_caller": p.present_caller,
            "presentation": p.presentation, "stir": p.stir, "announce": p.announce, "account": p.account,
            "verify_identity": p.verify_identity, "identity": p.identity}
