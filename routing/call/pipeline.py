"""Routing of an initial INVITE as explicit ordered lists of named stages.

A stage is a :class:`Stage`: a name (the ``stage`` of ``edgectl explain``'s steps and of a
refusal, :data:`~routing.call.decision.STAGE_OF_TAG`) and a function over the request's
:class:`Call` context that either returns a :class:`~routing.call.decision.Decision`, which
ends routing, or None after adding what it found to the context for the next stage.  Pure
over a :class:`SipRequest` and a :class:`Store`: no ``KSR`` here.

* :data:`ENTRY`: ``registration`` (a call to a contact the edge registered), ``acl`` (the
  source address names a trunk or an agent) and ``auth`` (a digest trunk: the adapter
  checks the credentials when :class:`Authenticate` is returned); they choose the direction.
* :data:`ORIGINATION` (carrier -> agent): ``direction`` -> ``did`` -> ``agent`` -> ``limits``
  (trunk + agent + account slots) -> ``caller`` -> ``targets``.
* :data:`TERMINATION` (agent -> carrier): ``number`` -> ``policy`` -> ``route`` (LCR: longest
  prefix, then rate, then priority; every gateway of every trunk of the agent's account or of a shared
  entry) -> ``limits`` (agent and account slots, then the first trunk with a free slot) -> ``targets``.
  Accounts: :mod:`routing.call.accounts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from routing.call.acl import classify_source
from routing.call.decision import Authenticate, Decision, Reason, Reject, Relay, Step, Trace
from routing.tables.model import Agent, AuthMode, Did, RouteEntry, Trunk, format_increment
from routing.call.numbers import NumberError, from_uri_user
from routing.call.plan import CallPlan, Target
from routing.call.targets import (agent_lease, agent_media, agent_target, dtmf_mode, fallback_targets, limit_reject,
                                  max_duration, trunk_lease, trunk_media, up_uris)
from routing.call import callerid
from routing.call.accounts import (account_lease, account_spend_refusal, agent_refusal, capped_account, route_usable,
                                   spend_refusal)
from routing.call.identity import verstat
from routing.call.request import SipRequest
from routing.ops.runtime import RuntimeSettings
from routing.call.headers import removal
from routing.call.policy import destination_allowed
from routing.tables.store import StaleTopology, Store, Topology
from routing.tables import keys
from routing.call.registration import match_inbound

__all__ = [
    "Stage", "Call", "ENTRY", "ORIGINATION", "TERMINATION", "ROUTING_STAGES", "route_initial_invite",
    "originate", "terminate", "trunk_lease", "agent_lease", "limit_reject", "max_duration", "dtmf_mode",
    "spend_refusal", "trunk_media", "agent_media",
]

#: Headers the edge adds toward agents (documented in docs/headers.md).
HDR_TRUNK = "X-Edge-Trunk"
HDR_DID = "X-Edge-DID"
HDR_CALLER = "X-Edge-Caller"
HDR_VERSTAT = "X-Edge-Verstat"
EDGE_HEADER_PREFIX = "X-Edge-"


@dataclass(slots=True)
class Call:
    """What routing knows of the request so far; each stage reads it and adds to it.

    Attributes:
        req, store, rt: the request, the routing store and the node's runtime settings.
        trace: the ``edgectl explain`` hook (a list of :class:`Step`), None on the call path.
        topology: the trunks and agents read for this request.
        direction: ``origination`` or ``termination`` once the entry stages chose it.
        trunk, agent: the call's trunk and agent once known.
        dialled: the Request-URI user (else the To user) as sent; ``number`` its E.164 form.
        did, caller: the DID found and the caller's number as relayed (origination).
        entries, targets, plan: the longest prefix's route entries (cheapest first), the
            targets in order and the admitted plan (termination).
        agent_uris: the agent's URIs not marked down (origination, stage ``health``).
        caller_id: the caller ID the agent may present (termination, stage ``caller_id``);
            ``presented``: the one the call presents, set by the first usable trunk;
            ``did_trunks``/``did_agents``: DID lookups of this call (number -> its trunk, agent).
        forward: a forwarded leg (the edge's transfer leg), None for an agent's own call;
            ``diverted``: per trunk, the number its Diversion names.
        fallback: the DID's fallback steps as targets, after the agent's URIs (stage ``health``).
    """

    req: SipRequest
    store: Store
    rt: RuntimeSettings
    trace: Trace | None
    topology: Topology
    direction: str = ""
    trunk: Trunk | None = None
    agent: Agent | None = None
    dialled: str = ""
    number: str = ""
    did: Did | None = None
    caller: str = ""
    entries: list[RouteEntry] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    plan: CallPlan | None = None
    agent_uris: tuple[str, ...] = ()
    caller_id: str = ""
    presented: str | None = None
    did_trunks: dict[str, str | None] = field(default_factory=dict)
    did_agents: dict[str, str | None] = field(default_factory=dict)
    fallback: list[Target] = field(default_factory=list)
    forward: callerid.Forward | None = None
    diverted: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stage:
    """One named routing stage: ``run(call)`` returns a decision that ends routing, or None to go on."""

    name: str
    run: Callable[[Call], Decision | None]


def _run(stages: tuple[Stage, ...], call: Call) -> Decision:
    """Run ``stages`` in order until one decides (the last stage of a list always does)."""
    for stage in stages:
        decision = stage.run(call)
        if decision is not None:
            return decision
    raise AssertionError(f"no stage of {[s.name for s in stages]} decided")


def route_initial_invite(req: SipRequest, store: Store, rt: RuntimeSettings, trace: Trace | None = None) -> Decision:
    """Decide an out-of-dialog INVITE: the :data:`ENTRY` stages, then :data:`ORIGINATION` or
    :data:`TERMINATION`.

    The store's topology may be a worker's cached copy; every decision is checked against
    ``edge:version`` (by the DID/route read, or :meth:`Store.confirm` where there is none), and a
    request routed on an out-of-date copy is routed once more on a fresh read
    (:class:`~routing.tables.store.StaleTopology`), before any slot is taken.

    Args:
        trace: when a list, every stage appends a :class:`Step` to it (``edgectl explain``);
            None on the call path, where nothing is built.

    Raises:
        StoreUnavailable: redis unreachable (the caller answers 503).
        DataError: malformed routing data in redis (the caller answers 500).
    """
    mark = len(trace) if trace is not None else 0
    try:
        return _route(req, store, rt, trace)
    except StaleTopology:  # the routing tables changed under the cached topology: once more, fresh
        if trace is not None:
            del trace[mark:]
        return _route(req, store, rt, trace)


def _route(req: SipRequest, store: Store, rt: RuntimeSettings, trace: Trace | None) -> Decision:
    call = Call(req, store, rt, trace, store.topology())
    for stage in ENTRY:
        decision = stage.run(call)
        if decision is not None:
            return decision
        if call.direction:
            break
    if call.direction == "origination":
        assert call.trunk is not None
        return _confirmed(originate(call.req, call.trunk, call.topology, store, rt, trace), store)
    assert call.agent is not None
    return _confirmed(terminate(call.req, call.agent, call.topology, store, rt, trace), store)


def _registration(c: Call) -> Decision | None:
    """A call to the contact the edge registered to a trunk, from that trunk: origination, the DID
    taken from To (RFC 3261 section 10.2.1)."""
    registered = match_inbound(c.req.ruri_user, c.req.src_ip, c.topology.trunks.values(), c.store.registrar_addresses)
    if registered is None:
        return None
    if c.trace is not None:
        c.trace.append(Step("registration", True, f"R-URI user {c.req.ruri_user} is the contact registered to trunk "
                                                  f"{registered.name}, from {c.req.src_ip}: origination"))
    c.req, c.trunk, c.direction = replace(c.req, ruri_user=""), registered, "origination"
    return None


def _acl(c: Call) -> Decision | None:
    """The source address names a trunk or an agent (longest CIDR prefix, :func:`classify_source`)."""
    peer = classify_source(c.req.src_ip, c.topology)
    if peer is None:
        c.store.confirm()  # a refusal or a challenge must not rest on an outdated copy
        if any(t.auth is AuthMode.DIGEST for t in c.topology.trunks.values()):
            if c.trace is not None:
                c.trace.append(Step("acl", True, f"source {c.req.src_ip} is in no CIDR; a digest trunk may call "
                                                 "from anywhere: its credentials decide"))
            return Authenticate(trunk=None, topology=c.topology)  # a digest trunk may call from anywhere
        if c.trace is not None:
            c.trace.append(Step("acl", False, f"source {c.req.src_ip} is in no trunk's or agent's CIDRs"))
        return Reject.of(Reason.SOURCE_NOT_ALLOWED)
    if c.trace is not None:
        way = "origination" if peer.kind == "trunk" else "termination"
        found = (c.topology.trunks if peer.kind == "trunk" else c.topology.agents)[peer.name]
        c.trace.append(Step("acl", True, f"source {c.req.src_ip} matches {peer.kind} {peer.name} ({peer.cidr}): {way}"
                            + (f", account {found.account}" if found.account else "")))
    if peer.kind == "trunk":
        c.trunk = c.topology.trunks[peer.name]
    else:
        c.agent, c.direction = c.topology.agents[peer.name], "termination"
    return None


def _auth(c: Call) -> Decision | None:
    """A trunk that authenticates by digest (``auth: digest`` or ``both``) is challenged first."""
    assert c.trunk is not None
    if c.trunk.auth is not AuthMode.IP:
        c.store.confirm()
        if c.trace is not None:
            c.trace.append(Step("auth", True, f"trunk {c.trunk.name} has auth {c.trunk.auth.value}: the call "
                                              "is challenged (407) and needs the trunk's digest credentials"))
        return Authenticate(trunk=c.trunk.name, topology=c.topology)
    c.direction = "origination"
    return None


def _confirmed(decision: Decision, store: Store) -> Decision:
    """``decision``, once a refusal made before the DID/route read (direction, number, policy) has
    been checked against ``edge:version`` (no round trip when that read already did)."""
    if isinstance(decision, Reject):
        store.confirm()
    return decision


def _refused(decision: Decision, direction: str, trunk: str = "", agent: str = "", account: str = "") -> Decision:
    """Note on a refusal what the edge knew of the call (for its call record)."""
    if isinstance(decision, Reject):
        return replace(decision, direction=direction, trunk=decision.trunk or trunk, agent=decision.agent or agent,
                       account=account)
    return decision


def originate(req: SipRequest, trunk: Trunk, topology: Topology, store: Store, rt: RuntimeSettings,
              trace: Trace | None = None) -> Decision:
    """Carrier -> agent (the :data:`ORIGINATION` stages): find the DID's agent on this trunk and
    admit the call.

    The DID is the Request-URI user, else the To user, normalised with the
    trunk's number format.  A DID owned by another trunk is not found (a
    multi-tenant carrier IP cannot reach someone else's numbers).  A refusal
    carries the trunk (and the agent once known) for the call record.

    Args:
        trace: see :func:`route_initial_invite`.
    """
    call = Call(req, store, rt, trace, topology, direction="origination", trunk=trunk)
    return _refused(_run(ORIGINATION, call), "origination", trunk=trunk.name, account=trunk.account)


def _inbound_allowed(c: Call) -> Decision | None:
    trunk = c.trunk
    assert trunk is not None
    if not trunk.direction.allows_inbound:
        if c.trace is not None:
            c.trace.append(Step("direction", False, f"trunk {trunk.name} is {trunk.direction.value}-only"))
        return Reject.of(Reason.INBOUND_NOT_ALLOWED)
    if c.trace is not None:
        c.trace.append(Step("direction", True, f"trunk {trunk.name} direction {trunk.direction.value} allows inbound"))
    return None


def _did(c: Call) -> Decision | None:
    trunk = c.trunk
    assert trunk is not None
    c.dialled = dialled = c.req.ruri_user or c.req.to_user
    try:
        c.number = number = from_uri_user(dialled, trunk.number_format)
    except NumberError as exc:
        if c.trace is not None:
            c.trace.append(Step("did", False, f"{dialled!r} is not a number in trunk {trunk.name}'s format: {exc}"))
        return Reject.of(Reason.DID_NOT_FOUND)
    c.did = did = c.store.did(number)
    if did is None or did.trunk != trunk.name:
        if c.trace is not None:
            why = "is not provisioned" if did is None else f"belongs to trunk {did.trunk}, not {trunk.name}"
            c.trace.append(Step("did", False, f"{dialled!r} -> {number}: the DID {why}"))
        return Reject.of(Reason.DID_NOT_FOUND)
    if c.trace is not None:
        c.trace.append(Step("did", True, f"{dialled!r} -> {number}: DID of trunk {trunk.name}, agent {did.agent}"))
    return None


def _did_agent(c: Call) -> Decision | None:
    assert c.did is not None
    c.agent = agent = c.topology.agents.get(c.did.agent)
    if agent is None or not agent.uris:
        if c.trace is not None:
            c.trace.append(Step("agent", False, f"agent {c.did.agent} " + ("does not exist" if agent is None else "has no URIs")))
        return Reject.of(Reason.AGENT_NOT_FOUND)
    assert c.trunk is not None
    if (refusal := agent_refusal(c.trunk, agent)) is not None and c.trace is not None:
        c.trace.append(Step("agent", False, f"agent {agent.name} is of account {agent.account or '(none)'}, "
                                            f"trunk {c.trunk.name} of account {c.trunk.account or '(none)'}"))
    return refusal and replace(refusal, agent=agent.name)


def _agent_health(c: Call) -> Decision | None:
    """The agent's URIs that are up, then the DID's fallback steps (:mod:`routing.call.targets`);
    nothing left to try: ``503 All Agent URIs Down`` with Retry-After at once, before any slot."""
    agent, did, trunk = c.agent, c.did, c.trunk
    assert agent is not None and did is not None and trunk is not None
    c.agent_uris = up_uris(agent, c.topology.agents_down, c.trace)
    c.fallback = fallback_targets(did, agent, trunk, c.topology, c.rt, c.trace,
                                  lambda number: c.store.route_lookup(number)[:2], c.req.from_user) if did.fallback else []
    if not c.agent_uris and not c.fallback:
        return replace(Reject.of(Reason.AGENT_DOWN, c.rt.retry_after_s), agent=agent.name, trunk=trunk.name,
                       direction="origination", announce=did.announcement)
    return None


def _call_facts(c: Call, **facts: str) -> dict[str, str]:
    """The facts an admitted call keeps in its call hash (``edge:call:{node}:{call-id}``), with
    ``start_ms`` (when the edge received the INVITE, epoch ms) when known."""
    if c.req.received_ms:
        facts["start_ms"] = str(c.req.received_ms)
    return facts


def _admit_origination(c: Call) -> Decision | None:
    """One trunk slot and one agent slot, atomically."""
    trunk, agent = c.trunk, c.agent
    assert trunk is not None and agent is not None
    leases = [trunk_lease(trunk), agent_lease(agent), *account_lease(trunk.account, c.topology)]
    facts = _call_facts(c, direction="origination", trunk=trunk.name, agent=agent.name, number=c.number,
                        **({"account": trunk.account} if trunk.account else {}))
    admission = c.store.acquire(c.req.call_id, leases, c.rt.admission_ttl_s, facts=facts, confirm=True)
    if not admission.admitted:
        return replace(limit_reject(admission, c.rt.retry_after_s), agent=agent.name)
    return None


def _caller(c: Call) -> Decision | None:
    """The caller's number in the trunk's format (kept as sent when it is not one)."""
    assert c.trunk is not None
    try:
        c.caller = from_uri_user(c.req.from_user, c.trunk.number_format)
    except NumberError:
        c.caller = c.req.from_user
    return None


def _agent_targets(c: Call) -> Decision:
    """The agent's URIs in order, the DID as user part where a URI has none; the X-Edge headers."""
    trunk, agent, rt, number = c.trunk, c.agent, c.rt, c.number
    assert trunk is not None and agent is not None
    targets = [agent_target(agent, uri, f"{agent.name} {uri}", None, number, trunk, rt) for uri in c.agent_uris]
    targets += c.fallback
    plan = CallPlan(call_id=c.req.call_id, direction="origination", targets=targets, agent=agent.name, trunk=trunk.name,
                    retry_after_s=rt.retry_after_s, caller_dtmf=dtmf_mode(trunk, rt), number=number, caller=c.caller,
                    caller_media=trunk_media(trunk, rt), ringback_ms=trunk.ringback_ms or 0,
                    verstat=verstat(c.req.from_user, c.req.pai), announce=c.did.announcement if c.did else "",
                    account=trunk.account,
                    verify_identity=trunk.stir_verify and any(n.lower() == "identity" for n in c.req.header_names))
    if c.trace is not None:
        c.trace.append(Step("caller", True, f"From {c.req.from_user!r} -> {c.caller}"))
        c.trace.append(Step("targets", True, "agent URIs in order: " + ", ".join(t.uri for t in targets)))
    headers = {HDR_TRUNK: trunk.name, HDR_DID: number, HDR_CALLER: c.caller}
    if plan.verstat:
        headers[HDR_VERSTAT] = plan.verstat
    remove = removal(c.req.header_names, trunk.x_headers, trunk.trust_identity)
    return Relay(plan=plan, headers=headers, remove=remove)


def terminate(req: SipRequest, agent: Agent, topology: Topology, store: Store, rt: RuntimeSettings,
              trace: Trace | None = None, forward: callerid.Forward | None = None) -> Decision:
    """Agent -> carrier (the :data:`TERMINATION` stages): least-cost routing over every trunk of
    the longest matching prefix.

    The destination is the Request-URI user, else the To user, normalised with
    the agent's number format (``484 Invalid Destination Number`` when it does
    not read as E.164).  Trunks are ordered by rate, then route priority, then name; each trunk's
    gateways by priority, then weight.  Trunks that are missing, inbound-only
    or without gateways are skipped, and so are gateways marked down by the
    OPTIONS prober (on trunks that are probed); when that leaves no gateway,
    the call gets ``503 All Gateways Down`` with Retry-After.  Spend guardrails
    skip a route whose rate is above its trunk's ``max_rate`` and a trunk whose
    spend today has reached its ``daily_spend_cap`` (read in the same round trip
    as the routes).  When nothing is left otherwise, the refusal of the cheapest
    skipped entry is returned: 403 Destination Not Allowed, 403 Daily Spend Cap
    Reached: trunk, or 403 Destination Rate Too High; 404 No Route when there
    was no entry at all.

    Args:
        trace: see :func:`route_initial_invite`.
        forward: the edge's transfer leg (the caller per each trunk's ``forwarded_caller_id``,
            :func:`routing.call.callerid.forwarded_verdict`; the agent's caller ID list does not apply).
    """
    call = Call(req, store, rt, trace, topology, direction="termination", agent=agent, forward=forward)
    return _refused(_run(TERMINATION, call), "termination", agent=agent.name, account=agent.account)


def _destination(c: Call) -> Decision | None:
    """The dialled destination as E.164, read in the agent's number format."""
    agent = c.agent
    assert agent is not None
    c.dialled = dialled = c.req.ruri_user or c.req.to_user
    try:
        c.number = from_uri_user(dialled, agent.number_format)
    except NumberError as exc:
        if c.trace is not None:
            c.trace.append(Step("number", False, f"{dialled!r} is not an E.164 destination in agent {agent.name}'s "
                                                 f"number format: {exc}"))
        return Reject.of(Reason.BAD_NUMBER)
    if c.trace is not None:
        c.trace.append(Step("number", True, f"{dialled!r} -> {c.number}"))
    return None


def _agent_policy(c: Call) -> Decision | None:
    """The node's blocked prefixes and the agent's allow/deny prefixes (toll-fraud guardrails)."""
    agent = c.agent
    assert agent is not None
    if not destination_allowed(c.number, agent.allow_prefixes, (*c.rt.blocked_prefixes, *agent.deny_prefixes)):
        if c.trace is not None:
            c.trace.append(Step("policy", False, f"{c.number} is blocked for agent {agent.name} (policy.blocked_prefixes "
                                                 "or the agent's allow/deny prefixes)"))
        return Reject.of(Reason.DESTINATION_NOT_ALLOWED)
    return None


def _did_trunk(c: Call, number: str) -> str | None:
    """The trunk ``number`` is a DID of (None when it is no DID), read once per call."""
    if number not in c.did_trunks:
        did = c.store.did(number) if number else None
        c.did_trunks[number] = did.trunk if did is not None else None
        c.did_agents[number] = did.agent if did is not None else None
    return c.did_trunks[number]


def _agent_caller_id(c: Call) -> Decision | None:
    """The caller ID the agent may present (:func:`routing.call.callerid.agent_caller_id`)."""
    assert c.agent is not None
    if c.forward is not None:  # the edge's transfer leg: the edge, not the agent, chose its caller
        c.caller_id = callerid.own_number(c.req.from_user, c.agent)
        return None
    chosen = callerid.agent_caller_id(c.req.from_user, c.agent, lambda n: (_did_trunk(c, n), c.did_agents[n])[1],
                                      c.trace)
    if isinstance(chosen, Reject):
        return chosen
    c.caller_id = chosen
    return None


def _trunk_caller_id(c: Call, trunk: Trunk) -> str | None:
    """Why ``trunk`` cannot carry the call's caller ID (None when it can)."""
    assert c.agent is not None
    why, c.presented, c.diverted[trunk.name] = callerid.trunk_caller_id(
        trunk, c.agent, c.caller_id, c.presented, lambda n: _did_trunk(c, n), c.trace, c.forward)
    return why


def _least_cost_routes(c: Call) -> Decision | None:
    """The longest prefix's route entries (one round trip with the down gateways and the spend of
    capped trunks), each trunk's guardrails, then every usable gateway as a target."""
    agent, number, rt, trace = c.agent, c.number, c.rt, c.trace
    assert agent is not None
    capped = [t.name for t in c.topology.trunks.values() if t.daily_spend_cap is not None]
    found, down, spent = c.store.route_lookup(number, capped, capped_account(agent, c.topology))
    c.entries = entries = sorted(found, key=lambda e: (e.rate, e.priority, e.trunk))
    if trace is not None:
        trace.append(Step("policy", True, f"{number} allowed for agent {agent.name}"))
        prefix = entries[0].prefix if entries else None
        offered = ", ".join(f"{e.trunk} (rate {e.rate}, priority {e.priority})" for e in entries)
        trace.append(Step("route", bool(entries), f"longest prefix {prefix}: {offered}" if entries
                          else f"no route prefix matches {number}"))
    if (over := account_spend_refusal(agent.account, c.topology, spent)) is not None:
        if trace is not None:
            trace.append(Step("route", False, f"account {agent.account}'s spend today reached its daily_spend_cap"))
        return over
    targets = c.targets
    refusal: Reject | None = None
    skipped_down = False
    for entry in entries:
        trunk = c.topology.trunks.get(entry.trunk)
        if trunk is None or not trunk.direction.allows_outbound:
            if trace is not None:
                trace.append(Step("route", False, f"trunk {entry.trunk} skipped: "
                                  + ("it does not exist" if trunk is None else f"it is {trunk.direction.value}-only")))
            continue
        skip = None
        if not route_usable(entry, trunk, agent):
            skip = Reject.of(Reason.ACCOUNT_ROUTE)
            why = f"it is of account {trunk.account or '(none)'}, not {agent.account or '(none)'}, and the entry is not shared"
        elif not destination_allowed(number, trunk.allow_prefixes, trunk.deny_prefixes):
            skip = Reject.of(Reason.DESTINATION_NOT_ALLOWED)
            why = f"its allow/deny prefixes refuse {number}"
        elif trunk.max_rate is not None and entry.rate > trunk.max_rate:
            skip = Reject.of(Reason.RATE_TOO_HIGH)
            why = f"rate {entry.rate} is above its max_rate {trunk.max_rate}"
        else:
            skip = spend_refusal(trunk, spent.get(trunk.name, 0))
            why = f"its spend today reached its daily_spend_cap {trunk.daily_spend_cap}"
        if skip is None and trunk.gateways and (why := _trunk_caller_id(c, trunk) or "") :
            skip = Reject.of(Reason.CALLER_ID_NOT_ALLOWED)
        if skip is not None:
            # another account's trunk is not named in this account's record
            refusal = refusal or replace(skip, trunk="" if skip.tag == "account_route" else trunk.name)
            if trace is not None:
                trace.append(Step("route", False, f"trunk {trunk.name} skipped: {why}"))
            continue
        if trace is not None and not trunk.gateways:
            trace.append(Step("route", False, f"trunk {trunk.name} skipped: it has no gateways"))
        lease = trunk_lease(trunk)
        duration = max_duration(trunk, rt)
        billing = format_increment(trunk.billing_increment)
        media = trunk_media(trunk, rt)
        for gw in trunk.gateways:
            if trunk.probe and keys.gateway_member(trunk.name, gw.address) in down:
                skipped_down = True
                if trace is not None:
                    trace.append(Step("route", False, f"gateway {trunk.name} {gw.address} skipped: marked down "
                                                      "by the OPTIONS prober"))
                continue
            targets.append(
                Target(
                    uri=gw.uri(number), label=f"{trunk.name} {gw.address}", trunk=trunk.name, lease=lease,
                    max_duration_s=duration, dtmf=dtmf_mode(trunk, rt), rate=str(entry.rate), billing=billing, media=media,
                    diverted_from=c.diverted.get(trunk.name, ""), session_timer_s=trunk.session_timer_s or 0,
                )
            )
    if not targets:
        if skipped_down:
            return Reject.of(Reason.GATEWAYS_DOWN, rt.retry_after_s)
        return refusal or Reject.of(Reason.NO_ROUTE)
    return None


def _admit_termination(c: Call) -> Decision | None:
    """The agent's slot, then the first target whose trunk has a free slot (full trunks skipped)."""
    agent, rt = c.agent, c.rt
    assert agent is not None
    facts = _call_facts(c, direction="termination", agent=agent.name, number=c.number,
                        **({"account": agent.account} if agent.account else {}))
    leases = [agent_lease(agent), *account_lease(agent.account, c.topology)]
    admission = c.store.acquire(c.req.call_id, leases, rt.admission_ttl_s, facts=facts, confirm=True)
    if not admission.admitted:
        return limit_reject(admission, rt.retry_after_s)
    c.plan = plan = CallPlan(call_id=c.req.call_id, direction="termination", targets=c.targets, agent=agent.name,
                             retry_after_s=rt.retry_after_s, caller_dtmf=dtmf_mode(agent, rt), number=c.number,
                             caller=c.req.from_user, caller_media=agent_media(agent, rt),
                             present_caller=callerid.present_caller(c.req.from_user, agent, c.caller_id, c.presented),
                             account=agent.account)
    if plan.advance(c.store, rt.admission_ttl_s, start=0) is None:
        c.store.release(c.req.call_id)
        assert plan.full is not None
        code, reason, tag, retry = plan.full
        return Reject(code, reason, tag, retry, trunk=plan.targets[-1].trunk or "")
    first = c.topology.trunks.get(plan.current.trunk or "")
    if first is not None:  # the first trunk shapes the caller for the whole call, as it chose the caller ID
        plan.presentation = callerid.presentation(first, c.presented or c.caller_id, c.store, c.trace,
                                                  any(n.lower() == "privacy" for n in c.req.header_names))
        if rt.stir_key_file:
            plan.stir = callerid.shaken(first, agent, c.presented or c.caller_id, c.number,
                                        lambda n: _did_trunk(c, n), c.trace)
    return None


def _carrier_targets(c: Call) -> Decision:
    """Relay along the admitted plan; the agent's header policy."""
    plan, agent = c.plan, c.agent
    assert plan is not None and agent is not None
    if c.trace is not None:
        c.trace.append(Step("targets", True, "carriers in order: " + ", ".join(t.label for t in plan.targets[plan.index:])))
    remove = removal(c.req.header_names, agent.x_headers, agent.trust_identity)
    return Relay(plan=plan, headers={}, remove=remove)


#: The stages every initial INVITE meets first; they choose the direction (or decide).
ENTRY: tuple[Stage, ...] = (
    Stage("registration", _registration),
    Stage("acl", _acl),
    Stage("auth", _auth),
)
#: Carrier -> agent, in order.
ORIGINATION: tuple[Stage, ...] = (
    Stage("direction", _inbound_allowed),
    Stage("did", _did),
    Stage("agent", _did_agent),
    Stage("health", _agent_health),
    Stage("limits", _admit_origination),
    Stage("caller", _caller),
    Stage("targets", _agent_targets),
)
#: Agent -> carrier, in order.
TERMINATION: tuple[Stage, ...] = (
    Stage("number", _destination),
    Stage("policy", _agent_policy),
    Stage("callerid", _agent_caller_id),
    Stage("route", _least_cost_routes),
    Stage("limits", _admit_termination),
    Stage("targets", _carrier_targets),
)
#: Every stage :func:`route_initial_invite` runs; a refusal at any other stage (media, failover,
#: store, internal) comes after routing, and a replay (``edgectl explain``) cannot repeat it.
ROUTING_STAGES = frozenset(stage.name for stage in (*ENTRY, *ORIGINATION, *TERMINATION))
