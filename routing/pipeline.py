"""Routing of an initial INVITE as an ordered list of small stages.

Each stage either hands on a richer context or returns a :class:`Reject`;
the last one admits the call (atomic concurrency leases) and returns a
:class:`Relay` with the plan of targets.  Pure over a :class:`SipRequest` and
a :class:`Store`: no ``KSR`` here.

Origination (carrier -> agent): source ACL (or digest credentials, checked by
the adapter when :class:`Authenticate` is returned) -> trunk direction -> DID ->
agent -> admission (trunk + agent slots).

Termination (agent -> carrier): source ACL -> destination number -> LCR
(longest prefix, then rate, then priority; every gateway of every trunk) ->
admission (agent slot, then the first trunk with a free slot).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from .acl import classify_source
from .cdr import COST_PLACES
from .decision import Authenticate, Decision, Reason, Reject, Relay, Step, Trace
from .model import Agent, AuthMode, MediaPolicy, Trunk, format_increment
from .numbers import NumberError, NumberFormat, from_uri_user
from .plan import CallPlan, Target
from .request import SipRequest
from .runtime import RuntimeSettings
from .headers import headers_to_remove
from .policy import destination_allowed
from .store import Admission, Lease, StaleTopology, Store, Topology
from . import keys
from .registration import match_inbound

__all__ = [
    "route_initial_invite",
    "originate",
    "terminate",
    "trunk_lease",
    "agent_lease",
    "limit_reject",
    "max_duration",
    "dtmf_mode",
    "spend_refusal",
    "trunk_media",
    "agent_media",
]

#: Headers the edge adds toward agents (documented in docs/headers.md).
HDR_TRUNK = "X-Edge-Trunk"
HDR_DID = "X-Edge-DID"
HDR_CALLER = "X-Edge-Caller"
EDGE_HEADER_PREFIX = "X-Edge-"


def trunk_lease(trunk: Trunk) -> Lease:
    """The concurrency slot of a trunk, with its CPS token bucket when ``max_cps`` is set."""
    bucket = keys.trunk_cps(trunk.name) if trunk.max_cps else None
    return Lease(keys.trunk_lease(trunk.name), trunk.max_calls, f"trunk {trunk.name}", trunk.max_cps, bucket)


def agent_lease(agent: Agent) -> Lease:
    """The concurrency slot of an agent."""
    return Lease(keys.agent_lease(agent.name), agent.max_calls, f"agent {agent.name}")


def limit_reject(admission: Admission, retry_after_s: int) -> Reject:
    """503 naming the limit that refused the call (``"Trunk Limit Reached: telnyx"``,
    ``"Trunk CPS Limit Reached: telnyx"``), with Retry-After (s)."""
    return Reject(503, admission.reason, admission.tag, admission.retry_after_s(retry_after_s))


def max_duration(trunk: Trunk | None, rt: RuntimeSettings) -> int:
    """Longest call over ``trunk`` (s) when the trunk sets a ``max_duration_s`` shorter than
    the node's ``sip.max_call_duration_s``; 0 means the node's default applies."""
    node = rt.lease_ttl_s - 60
    if trunk is not None and trunk.max_duration_s and trunk.max_duration_s < node:
        return trunk.max_duration_s
    return 0


def dtmf_mode(side: Trunk | Agent, rt: RuntimeSettings) -> str:
    """The DTMF mode of a trunk or agent: its own ``dtmf`` field, else the node's ``dtmf.default_mode``."""
    return side.dtmf.value if side.dtmf is not None else rt.dtmf_default


def trunk_media(trunk: Trunk, rt: RuntimeSettings) -> dict:
    """The trunk's media policy over the node's carrier-side default (``MediaPolicy.to_json`` form)."""
    return trunk.media.over(MediaPolicy.from_json(rt.media_trunk)).to_json()


def agent_media(agent: Agent, rt: RuntimeSettings) -> dict:
    """The agent's media policy over the node's agent-side default (``MediaPolicy.to_json`` form)."""
    return agent.media.over(MediaPolicy.from_json(rt.media_agent)).to_json()


def route_initial_invite(req: SipRequest, store: Store, rt: RuntimeSettings, trace: Trace | None = None) -> Decision:
    """Decide an out-of-dialog INVITE.

    The store's topology may be a worker's cached copy; every decision is checked against
    ``edge:version`` (by the DID/route read, or :meth:`Store.confirm` where there is none), and a
    request routed on an out-of-date copy is routed once more on a fresh read
    (:class:`~routing.store.StaleTopology`), before any slot is taken.

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
    topology = store.topology()
    registered = match_inbound(req.ruri_user, req.src_ip, topology.trunks.values(), store.registrar_addresses)
    if registered is not None:
        # a call to the contact the edge registered: the DID is in To (RFC 3261 section 10.2.1)
        if trace is not None:
            trace.append(Step("registration", True, f"R-URI user {req.ruri_user} is the contact registered to trunk "
                                                    f"{registered.name}, from {req.src_ip}: origination"))
        return _confirmed(originate(replace(req, ruri_user=""), registered, topology, store, rt, trace), store)
    peer = classify_source(req.src_ip, topology)
    if peer is None:
        store.confirm()  # a refusal or a challenge must not rest on an outdated copy
        if any(t.auth is AuthMode.DIGEST for t in topology.trunks.values()):
            if trace is not None:
                trace.append(Step("acl", True, f"source {req.src_ip} is in no CIDR; a digest trunk may call "
                                               "from anywhere: its credentials decide"))
            return Authenticate(trunk=None, topology=topology)  # a digest trunk may call from anywhere
        if trace is not None:
            trace.append(Step("acl", False, f"source {req.src_ip} is in no trunk's or agent's CIDRs"))
        return Reject.of(Reason.SOURCE_NOT_ALLOWED)
    if trace is not None:
        way = "origination" if peer.kind == "trunk" else "termination"
        trace.append(Step("acl", True, f"source {req.src_ip} matches {peer.kind} {peer.name} ({peer.cidr}): {way}"))
    if peer.kind == "trunk":
        trunk = topology.trunks[peer.name]
        if trunk.auth is not AuthMode.IP:
            store.confirm()
            if trace is not None:
                trace.append(Step("auth", True, f"trunk {trunk.name} has auth {trunk.auth.value}: the call "
                                                "is challenged (407) and needs the trunk's digest credentials"))
            return Authenticate(trunk=trunk.name, topology=topology)
        return _confirmed(originate(req, trunk, topology, store, rt, trace), store)
    return _confirmed(terminate(req, topology.agents[peer.name], topology, store, rt, trace), store)


def _confirmed(decision: Decision, store: Store) -> Decision:
    """``decision``, once a refusal made before the DID/route read (direction, number, policy) has
    been checked against ``edge:version`` (no round trip when that read already did)."""
    if isinstance(decision, Reject):
        store.confirm()
    return decision


def _refused(decision: Decision, direction: str, trunk: str = "", agent: str = "") -> Decision:
    """Note on a refusal what the edge knew of the call (for its call record)."""
    if isinstance(decision, Reject):
        return replace(decision, direction=direction, trunk=decision.trunk or trunk, agent=decision.agent or agent)
    return decision


def _with_user(uri: str, user: str) -> str:
    scheme, _, rest = uri.partition(":")
    if "@" in rest.split(";", 1)[0]:
        return uri
    return f"{scheme}:{user}@{rest}"


def originate(req: SipRequest, trunk: Trunk, topology: Topology, store: Store, rt: RuntimeSettings,
              trace: Trace | None = None) -> Decision:
    """Carrier -> agent: find the DID's agent on this trunk and admit the call.

    The DID is the Request-URI user, else the To user, normalised with the
    trunk's number format.  A DID owned by another trunk is not found (a
    multi-tenant carrier IP cannot reach someone else's numbers).  A refusal
    carries the trunk (and the agent once known) for the call record.

    Args:
        trace: see :func:`route_initial_invite`.
    """
    return _refused(_originate(req, trunk, topology, store, rt, trace), "origination", trunk=trunk.name)


def _originate(req: SipRequest, trunk: Trunk, topology: Topology, store: Store, rt: RuntimeSettings,
               trace: Trace | None) -> Decision:
    if not trunk.direction.allows_inbound:
        if trace is not None:
            trace.append(Step("direction", False, f"trunk {trunk.name} is {trunk.direction.value}-only"))
        return Reject.of(Reason.INBOUND_NOT_ALLOWED)
    if trace is not None:
        trace.append(Step("direction", True, f"trunk {trunk.name} direction {trunk.direction.value} allows inbound"))
    dialled = req.ruri_user or req.to_user
    try:
        number = from_uri_user(dialled, trunk.number_format)
    except NumberError as exc:
        if trace is not None:
            trace.append(Step("did", False, f"{dialled!r} is not a number in trunk {trunk.name}'s format: {exc}"))
        return Reject.of(Reason.DID_NOT_FOUND)
    did = store.did(number)
    if did is None or did.trunk != trunk.name:
        if trace is not None:
            why = "is not provisioned" if did is None else f"belongs to trunk {did.trunk}, not {trunk.name}"
            trace.append(Step("did", False, f"{dialled!r} -> {number}: the DID {why}"))
        return Reject.of(Reason.DID_NOT_FOUND)
    agent = topology.agents.get(did.agent)
    if trace is not None:
        trace.append(Step("did", True, f"{dialled!r} -> {number}: DID of trunk {trunk.name}, agent {did.agent}"))
    if agent is None or not agent.uris:
        if trace is not None:
            trace.append(Step("agent", False, f"agent {did.agent} " + ("does not exist" if agent is None else "has no URIs")))
        return Reject.of(Reason.AGENT_NOT_FOUND)
    leases = [trunk_lease(trunk), agent_lease(agent)]
    facts = {"direction": "origination", "trunk": trunk.name, "agent": agent.name, "number": number}
    if req.received_ms:
        facts["start_ms"] = str(req.received_ms)
    admission = store.acquire(req.call_id, leases, rt.admission_ttl_s, facts=facts)
    if not admission.admitted:
        return replace(limit_reject(admission, rt.retry_after_s), agent=agent.name)
    try:
        caller = from_uri_user(req.from_user, trunk.number_format)
    except NumberError:
        caller = req.from_user
    duration = max_duration(trunk, rt)
    billing = format_increment(trunk.billing_increment)
    media = agent_media(agent, rt)
    targets = [
        Target(uri=_with_user(uri, number), label=f"{agent.name} {uri}", max_duration_s=duration,
               dtmf=dtmf_mode(agent, rt), billing=billing, rate=str(trunk.inbound_rate or ""), media=media)
        for uri in agent.uris
    ]
    plan = CallPlan(call_id=req.call_id, direction="origination", targets=targets, agent=agent.name, trunk=trunk.name,
                    retry_after_s=rt.retry_after_s, caller_dtmf=dtmf_mode(trunk, rt), number=number, caller=caller,
                    caller_media=trunk_media(trunk, rt))
    if trace is not None:
        trace.append(Step("caller", True, f"From {req.from_user!r} -> {caller}"))
        trace.append(Step("targets", True, "agent URIs in order: " + ", ".join(t.uri for t in targets)))
    headers = {HDR_TRUNK: trunk.name, HDR_DID: number, HDR_CALLER: caller}
    remove = headers_to_remove(req.header_names, trunk.x_headers, trunk.trust_identity)
    return Relay(plan=plan, headers=headers, remove=tuple(remove))


def terminate(req: SipRequest, agent: Agent, topology: Topology, store: Store, rt: RuntimeSettings,
              trace: Trace | None = None) -> Decision:
    """Agent -> carrier: least-cost routing over every trunk of the longest matching prefix.

    Trunks are ordered by rate, then route priority, then name; each trunk's
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
    """
    return _refused(_terminate(req, agent, topology, store, rt, trace), "termination", agent=agent.name)


def spend_refusal(trunk: Trunk, spent_micros: int) -> Reject | None:
    """403 ``Daily Spend Cap Reached: {trunk}`` when the trunk's spend today (micro-units)
    has reached its ``daily_spend_cap``; None when it has no cap or is below it."""
    if trunk.daily_spend_cap is None or Decimal(spent_micros) / 10**COST_PLACES < trunk.daily_spend_cap:
        return None
    code, phrase, tag = Reason.SPEND_CAP
    return Reject(code, f"{phrase}: {trunk.name}", tag, trunk=trunk.name)


def _terminate(req: SipRequest, agent: Agent, topology: Topology, store: Store, rt: RuntimeSettings,
               trace: Trace | None) -> Decision:
    dialled = req.ruri_user or req.to_user
    try:
        number = from_uri_user(dialled, NumberFormat())
    except NumberError as exc:
        if trace is not None:
            trace.append(Step("number", False, f"{dialled!r} is not an E.164 destination: {exc}"))
        return Reject.of(Reason.BAD_NUMBER)
    if trace is not None:
        trace.append(Step("number", True, f"{dialled!r} -> {number}"))
    if not destination_allowed(number, agent.allow_prefixes, (*rt.blocked_prefixes, *agent.deny_prefixes)):
        if trace is not None:
            trace.append(Step("policy", False, f"{number} is blocked for agent {agent.name} (policy.blocked_prefixes "
                                               "or the agent's allow/deny prefixes)"))
        return Reject.of(Reason.DESTINATION_NOT_ALLOWED)
    capped = [t.name for t in topology.trunks.values() if t.daily_spend_cap is not None]
    found, down, spent = store.route_lookup(number, capped)
    entries = sorted(found, key=lambda e: (e.rate, e.priority, e.trunk))
    if trace is not None:
        trace.append(Step("policy", True, f"{number} allowed for agent {agent.name}"))
        prefix = entries[0].prefix if entries else None
        offered = ", ".join(f"{e.trunk} (rate {e.rate}, priority {e.priority})" for e in entries)
        trace.append(Step("route", bool(entries), f"longest prefix {prefix}: {offered}" if entries
                          else f"no route prefix matches {number}"))
    targets: list[Target] = []
    refusal: Reject | None = None
    skipped_down = False
    for entry in entries:
        trunk = topology.trunks.get(entry.trunk)
        if trunk is None or not trunk.direction.allows_outbound:
            if trace is not None:
                trace.append(Step("route", False, f"trunk {entry.trunk} skipped: "
                                  + ("it does not exist" if trunk is None else f"it is {trunk.direction.value}-only")))
            continue
        skip = None
        if not destination_allowed(number, trunk.allow_prefixes, trunk.deny_prefixes):
            skip = Reject.of(Reason.DESTINATION_NOT_ALLOWED)
            why = f"its allow/deny prefixes refuse {number}"
        elif trunk.max_rate is not None and entry.rate > trunk.max_rate:
            skip = Reject.of(Reason.RATE_TOO_HIGH)
            why = f"rate {entry.rate} is above its max_rate {trunk.max_rate}"
        else:
            skip = spend_refusal(trunk, spent.get(trunk.name, 0))
            why = f"its spend today reached its daily_spend_cap {trunk.daily_spend_cap}"
        if skip is not None:
            refusal = refusal or replace(skip, trunk=trunk.name)
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
                )
            )
    if not targets:
        if skipped_down:
            return Reject.of(Reason.GATEWAYS_DOWN, rt.retry_after_s)
        return refusal or Reject.of(Reason.NO_ROUTE)
    facts = {"direction": "termination", "agent": agent.name, "number": number}
    if req.received_ms:
        facts["start_ms"] = str(req.received_ms)
    admission = store.acquire(req.call_id, [agent_lease(agent)], rt.admission_ttl_s, facts=facts)
    if not admission.admitted:
        return limit_reject(admission, rt.retry_after_s)
    plan = CallPlan(call_id=req.call_id, direction="termination", targets=targets, agent=agent.name,
                    retry_after_s=rt.retry_after_s, caller_dtmf=dtmf_mode(agent, rt), number=number,
                    caller=req.from_user, caller_media=agent_media(agent, rt))
    if plan.advance(store, rt.admission_ttl_s, start=0) is None:
        store.release(req.call_id)
        assert plan.full is not None
        code, reason, tag, retry = plan.full
        return Reject(code, reason, tag, retry, trunk=plan.targets[-1].trunk or "")
    if trace is not None:
        trace.append(Step("targets", True, "carriers in order: " + ", ".join(t.label for t in plan.targets[plan.index:])))
    remove = headers_to_remove(req.header_names, agent.x_headers, agent.trust_identity)
    return Relay(plan=plan, headers={}, remove=tuple(remove))


def check_transfer(target_user: str, agent_name: str, trunk_name: str, store: Store, rt: RuntimeSettings,
                   reason: tuple[int, str, str]) -> Reject | None:
    """Destination policy for a REFER's Refer-To or a 3xx Contact (toll fraud through transfers).

    The target must be a telephone number allowed for the call's agent (its
    allow/deny prefixes and the node-wide blocked prefixes) and, when the call
    came in on a trunk, by that trunk's deny prefixes.  A target that is not a
    number cannot be checked and is refused.

    Args:
        target_user: user part of the Refer-To or Contact URI.
        agent_name: the call's agent (empty when unknown: refused).
        trunk_name: the call's trunk, may be empty.
        reason: the refusal to return (``Reason.TRANSFER_NOT_ALLOWED`` or ``Reason.REDIRECT_NOT_ALLOWED``).

    Returns:
        None when allowed, else the 403.
    """
    try:
        number = from_uri_user(target_user, NumberFormat())
    except NumberError:
        return Reject.of(reason)
    topology = store.current_topology()
    agent = topology.agents.get(agent_name)
    if agent is None or not destination_allowed(number, agent.allow_prefixes, (*rt.blocked_prefixes, *agent.deny_prefixes)):
        return Reject.of(reason)
    trunk = topology.trunks.get(trunk_name)
    if trunk is not None and not destination_allowed(number, (), trunk.deny_prefixes):
        return Reject.of(reason)
    return None


__all__ += ["check_transfer"]
