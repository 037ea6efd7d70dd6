"""Caller ID policy of termination calls, sans I/O: which caller ID an agent may present, and
which ones a trunk's carrier accepts (docs/identity.md).

Carriers refuse calls whose caller ID the account does not own (Twilio error 32204, Telnyx
``403 ... D35``).  Per agent: a default caller ID and the caller IDs it may present (E.164
prefixes, and/or every DID bound to it).  Per trunk: ``pass`` (any caller ID) or ``owned`` (only
the trunk's own DIDs and its verified numbers), a caller ID not owned being replaced by the
agent's default (when that one is owned) or refused, as set per trunk.

One caller ID is presented for the whole call (the From of the INVITE, whatever trunk takes it):
the first usable trunk in least-cost order decides whether the agent's own or its default is
presented, and a later trunk that would need the other one is skipped; that first trunk also
shapes how the caller ID is written for the whole call (:func:`presentation`).

A leg the edge sends on for someone else (:class:`Forward`: a DID's fallback to a number, the
edge's transfer leg) presents what the trunk's ``forwarded_caller_id`` says, and under ``owned``
counts as owned when its ``Diversion`` (RFC 5806) names a DID owned there (:func:`forwarded_verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from routing.call.decision import Reason, Reject, Step, Trace
from routing.call.numbers import NumberError, from_uri_user, is_e164
from routing.call.presentation import plan_presentation
from routing.tables.model import (Agent, CallerIdAction, CallerIdHeader, CallerIdPolicy, CallerIdShape, ForwardedCallerId,
                                  FromUser, Trunk)
from routing.tables.store import Store

__all__ = ["CallerIdPolicy", "CallerIdAction", "agent_allows", "owned_on", "TrunkVerdict", "trunk_verdict",
           "Forward", "forwarded_verdict", "diversion", "own_number", "agent_caller_id", "trunk_caller_id", "present_caller", "presentation", "shaken"]


def agent_allows(caller: str, allowed: Iterable[str], present_dids: bool, caller_did_agent: str | None,
                 agent_name: str) -> bool:
    """Whether an agent may present ``caller`` (E.164, or ``""`` when the From is no number).

    Args:
        caller: the caller ID the agent sent.
        allowed: the agent's ``caller_ids`` (E.164 prefixes; ``+1415`` allows every number under it).
        present_dids: every DID bound to the agent is allowed too.
        caller_did_agent: the agent the caller's number is a DID of, None when it is no DID.
        agent_name: the agent.

    Returns:
        True when the agent restricts nothing (no list, no DIDs) or ``caller`` is allowed.
    """
    allowed = tuple(allowed)
    if not allowed and not present_dids:
        return True
    if not caller:
        return False
    return any(caller.startswith(p) for p in allowed) or (present_dids and caller_did_agent == agent_name)


def owned_on(number: str, trunk: str, verified: Iterable[str], did_trunk: str | None) -> bool:
    """Whether ``number`` is owned on ``trunk``: one of its DIDs (``did_trunk`` names the trunk the
    number is a DID of) or on its ``verified_caller_ids``."""
    return bool(number) and (did_trunk == trunk or number in tuple(verified))


@dataclass(frozen=True, slots=True)
class TrunkVerdict:
    """What a trunk's caller ID policy makes of a call.

    Attributes:
        usable: the trunk may carry the call.
        presented: the caller ID it needs (the agent's own or its default), empty when not usable.
        why: a line for ``edgectl explain``.
        diverted_from: a forwarded leg's ``Diversion`` names this number on that trunk ("" none).
    """

    usable: bool
    presented: str
    why: str
    diverted_from: str = ""


@dataclass(frozen=True, slots=True)
class Forward:
    """A leg the edge sends on for someone else (docs/identity.md#forwarded-and-transferred-calls).

    Attributes:
        caller: the original caller's number (E.164; ``""`` or ``anonymous`` when it has none): on a
            transfer leg of an origination call the carrier's caller, of a termination call the
            number the agent called (the transferee).
        did: the number the call came in on, named in ``Diversion``: the DID, or on a transferred
            termination call the caller ID it presented.
        fixed_from: the leg's From cannot change (a DID's fallback: a branch of the carrier's own
            INVITE, whose earlier branches went with the carrier's From).
    """

    caller: str
    did: str
    fixed_from: bool = False


def diversion(number: str, host: str, reason: str) -> str:
    """A ``Diversion`` header value (RFC 5806 section 3): ``<sip:{number}@{host}>;reason=..;counter=1``;
    ``reason``: ``unavailable`` (a DID's fallback: the agent could not take the call) or
    ``deflection`` (a transfer: the agent sent the call on)."""
    return f"<sip:{number}@{host}>;reason={reason};counter=1"


def forwarded_verdict(trunk: Trunk, forward: Forward, default: str,
                      did_trunk_of: Callable[[str], str | None]) -> TrunkVerdict:
    """What ``trunk`` carries as the caller of a forwarded leg, per its ``forwarded_caller_id`` and
    caller ID policy.

    ``diversion``: the original caller, ``Diversion`` naming ``forward.did``; ``caller``: the
    original caller alone; ``did``: the DID alone (``diversion`` on a ``fixed_from`` leg).  A
    transfer leg whose caller is anonymous or unknown presents the DID.  Under ``owned`` the leg is
    usable when its Diversion names a number owned there (one of its DIDs or verified numbers:
    **a forward from an owned DID counts as owned**, as carriers accept forwards from a number of
    the account), else when the presented number is itself owned; else ``replace`` presents the
    agent's ``default`` (when owned there, and the From may change) without Diversion; else the
    trunk is not usable.

    Args:
        default: the agent's default caller ID ("" none).
        did_trunk_of: the trunk a number is a DID of (None when it is no DID).

    Returns:
        the verdict, ``why`` naming the rule that applied (for ``edgectl explain``).
    """
    mode = trunk.forwarded_caller_id
    if forward.fixed_from and mode is ForwardedCallerId.DID:
        mode = ForwardedCallerId.DIVERSION
    known = bool(forward.caller) and forward.caller.lower() != "anonymous"
    if mode is ForwardedCallerId.DID or not (known or forward.fixed_from):
        presented, named = forward.did, ""
    else:
        presented, named = forward.caller, forward.did if mode is ForwardedCallerId.DIVERSION else ""
    shown = f"{presented or 'the From'}" + (f" with Diversion naming {named}" if named else " without Diversion")
    head = f"forwarded leg over trunk {trunk.name} (forwarded_caller_id {trunk.forwarded_caller_id.value}): {shown}"
    if trunk.caller_id_policy is CallerIdPolicy.PASS:
        return TrunkVerdict(True, presented, f"{head}; the trunk passes any caller ID", named)
    verified = tuple(trunk.verified_caller_ids)
    if named and owned_on(named, trunk.name, verified, did_trunk_of(named)):
        return TrunkVerdict(True, presented, f"{head}; {named} is owned there: a forward from an owned DID "
                                             "counts as owned", named)
    if owned_on(presented, trunk.name, verified, did_trunk_of(presented) if presented else None):
        return TrunkVerdict(True, presented, f"{head}; {presented} is owned there", named)
    why = f"{head}; the caller ID policy is owned and " + (f"{named} is not owned there" if named
                                                             else f"{presented or 'the From'} is not owned there")
    if (trunk.caller_id_action is CallerIdAction.REPLACE and default and not forward.fixed_from
            and owned_on(default, trunk.name, verified, did_trunk_of(default))):
        return TrunkVerdict(True, default, f"{why}: replaced by the agent's default {default}")
    return TrunkVerdict(False, "", why)


def trunk_verdict(trunk: str, policy: CallerIdPolicy, action: CallerIdAction, verified: Iterable[str],
                  caller: str, default: str, did_trunk_of: Callable[[str], str | None]) -> TrunkVerdict:
    """The caller ID ``trunk`` accepts for this call.

    Args:
        trunk, policy, action, verified: the trunk's name, ``caller_id_policy``, ``caller_id_action``
            and ``verified_caller_ids``.
        caller: the caller ID the agent may present (after the agent's own check).
        default: the agent's default caller ID, empty when none.
        did_trunk_of: the trunk a number is a DID of (None when it is no DID).
    """
    if policy is CallerIdPolicy.PASS:
        return TrunkVerdict(True, caller, f"trunk {trunk} passes any caller ID")
    verified = tuple(verified)
    if owned_on(caller, trunk, verified, did_trunk_of(caller) if caller else None):
        return TrunkVerdict(True, caller, f"{caller} is owned on trunk {trunk}")
    if action is CallerIdAction.REPLACE and default and owned_on(default, trunk, verified, did_trunk_of(default)):
        return TrunkVerdict(True, default, f"{caller or 'the From'} is not owned on trunk {trunk}: replaced by the "
                                           f"agent's default {default}")
    return TrunkVerdict(False, "", f"{caller or 'the From'} is not owned on trunk {trunk}"
                                   + ("" if action is CallerIdAction.REFUSE else " and no owned default to present"))


def own_number(from_user: str, agent: Agent) -> str:
    """The agent's From user as E.164 in its number format, ``""`` when it is no number."""
    try:
        return from_uri_user(from_user, agent.number_format)
    except NumberError:
        return ""


def agent_caller_id(from_user: str, agent: Agent, did_agent_of: Callable[[str], str | None],
                    trace: Trace | None = None) -> str | Reject:
    """The caller ID the agent may present: its own when allowed (:func:`agent_allows`), else its
    default, else ``403 Caller ID Not Allowed``.

    Args:
        from_user: the INVITE's From user part.
        did_agent_of: the agent a number is a DID of (a redis read; called only when the agent
            presents its DIDs).
    """
    own = own_number(from_user, agent)
    did_agent = did_agent_of(own) if agent.present_dids and own else None
    if agent_allows(own, agent.caller_ids, agent.present_dids, did_agent, agent.name):
        return own
    if not agent.caller_id:
        if trace is not None:
            trace.append(Step("callerid", False, f"agent {agent.name} may not present {own or from_user!r} "
                                                  "and has no default caller ID"))
        return Reject.of(Reason.CALLER_ID_NOT_ALLOWED)
    if trace is not None:
        trace.append(Step("callerid", True, f"agent {agent.name} may not present {own or from_user!r}: "
                                             f"its default {agent.caller_id} instead"))
    return agent.caller_id


def trunk_caller_id(trunk: Trunk, agent: Agent, caller_id: str, presented: str | None,
                    did_trunk_of: Callable[[str], str | None], trace: Trace | None = None,
                    forward: Forward | None = None) -> tuple[str | None, str | None, str]:
    """Whether ``trunk`` can carry the call's caller ID: ``(why not, or None; the caller ID the call
    presents; the number its Diversion names on that trunk, "" none)``.  The first usable trunk
    sets what the call presents (``presented`` None until then); a later trunk that would need
    another one cannot carry it.  ``forward``: the call is a forwarded leg (:func:`forwarded_verdict`)."""
    verdict = (forwarded_verdict(trunk, forward, agent.caller_id, did_trunk_of) if forward is not None else
               trunk_verdict(trunk.name, trunk.caller_id_policy, trunk.caller_id_action, trunk.verified_caller_ids,
                             caller_id, agent.caller_id, did_trunk_of))
    if not verdict.usable:
        return verdict.why, presented, ""
    if presented is None:
        if trace is not None and (forward is not None or trunk.caller_id_policy is not CallerIdPolicy.PASS):
            trace.append(Step("callerid", True, verdict.why))
        return None, verdict.presented, verdict.diverted_from
    if verdict.presented != presented:
        return f"it would need caller ID {verdict.presented}, the call presents {presented}", presented, ""
    return None, presented, verdict.diverted_from


def present_caller(from_user: str, agent: Agent, caller_id: str, presented: str | None) -> str:
    """The caller ID the INVITE's From must carry when it is not the agent's own number (its
    default, or an owned replacement), else ``""`` (the From is relayed as the agent wrote it)."""
    chosen = presented if presented is not None else caller_id
    return chosen if chosen and chosen != own_number(from_user, agent) else ""


def presentation(trunk: Trunk, number: str, store: Store, trace: Trace | None = None,
                 privacy_header: bool = False) -> dict | None:
    """How ``trunk``'s carrier receives the call's caller ID ``number`` (E.164)
    (:func:`routing.call.presentation.plan_presentation`); the trunk's digest username is read
    only when its From user is to carry it.  A trunk that shapes nothing still gets one, marked
    ``privacy_only``, when the INVITE has a ``Privacy`` header (its value, read at the relay,
    decides).  None: the From goes as the agent wrote it."""
    shape = trunk.caller_shape
    if not is_e164(number) or (shape.is_default and not privacy_header):
        return None
    if shape.is_default:
        shown = plan_presentation(number, CallerIdShape(header=CallerIdHeader.PAI), trunk.number_format, "")
        return {**shown, "privacy_only": True} if shown is not None else None
    auth = ""
    if shape.from_user is FromUser.AUTH:
        creds = store.credentials(trunk.name)
        auth = creds[0] if creds else ""
    shown = plan_presentation(number, shape, trunk.number_format, auth)
    if trace is not None and shown is not None:
        trace.append(Step("callerid", True, f"trunk {trunk.name} receives From user {shown['user']!r}"
                          + ("" if shape.header.value == "from" else f", {shape.header.value} {shown['number']}")))
    return shown


def shaken(trunk: Trunk, agent: Agent, number: str, destination: str, did_trunk_of: Callable[[str], str | None],
           trace: Trace | None = None) -> dict | None:
    """What the edge signs for a termination call over ``trunk`` (``stir_sign``): the caller ID
    ``number`` and the ``destination`` (E.164) as PASSporT telephone numbers (digits, RFC 8225
    section 5.2.1) and the SHAKEN attestation (RFC 8588, ATIS-1000074 section 5.2.3): ``A`` for
    a number owned on that trunk (its DIDs, its verified numbers), ``B`` for a number the agent
    is restricted to and allowed (its ``caller_ids`` or its DIDs), ``C`` otherwise.  None when
    the caller ID is no E.164 number (nothing to sign).

    Returns:
        ``{"orig": "14155550123", "dest": "442071838750", "attest": "A"}``.
    """
    if not trunk.stir_sign or not is_e164(number) or not is_e164(destination):
        return None
    if owned_on(number, trunk.name, trunk.verified_caller_ids, did_trunk_of(number)):
        attest = "A"
    elif agent.caller_ids or agent.present_dids:
        attest = "B"
    else:
        attest = "C"
    if trace is not None:
        trace.append(Step("callerid", True, f"trunk {trunk.name} signs {number} with SHAKEN attestation {attest}"))
    return {"orig": number.lstrip("+"), "dest": destination.lstrip("+"), "attest": attest}
