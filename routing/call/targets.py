"""The hops of a call, sans I/O: the slots a hop needs (leases), its per-hop facts (maximum
duration, DTMF mode, media policy), and on an origination call the agent's URIs that are up
followed by the DID's fallback steps (docs/agents.md).  Used by :mod:`routing.call.pipeline`."""

from __future__ import annotations

import functools

from dataclasses import replace
from typing import Callable

from routing.call import transfer as xfer
from routing.call.callerid import Forward, forwarded_verdict
from routing.call.numbers import NumberError, from_uri_user
from routing.call.decision import Reject, Step, Trace
from routing.call.plan import Target
from routing.ops.runtime import RuntimeSettings
from routing.tables import keys
from routing.call.policy import destination_allowed
from routing.tables.model import Agent, MediaPolicy, RouteEntry, Trunk, format_increment
from routing.tables.model.did import Did, FallbackKind
from routing.tables.store import Admission, Lease, Topology

__all__ = ["trunk_lease", "agent_lease", "limit_reject", "max_duration", "dtmf_mode", "trunk_media", "agent_media",
           "with_user", "up_uris", "agent_target", "fallback_targets"]


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
    return dict(_over(trunk.media, _node_default(rt.media_trunk)))


def agent_media(agent: Agent, rt: RuntimeSettings) -> dict:
    """The agent's media policy over the node's agent-side default (``MediaPolicy.to_json`` form)."""
    return dict(_over(agent.media, _node_default(rt.media_agent)))


#: id of a node-default media dict -> (that dict, its policy): the settings' dicts live as long as the worker
_DEFAULTS: dict[int, tuple[dict | None, MediaPolicy]] = {}


def _node_default(data: dict | None) -> MediaPolicy:
    """``MediaPolicy.from_json`` of a node default (``RuntimeSettings.media_trunk``/``media_agent``),
    parsed once per dict object (kept with it, so an id is never reused for another)."""
    hit = _DEFAULTS.get(id(data))
    if hit is None or hit[0] is not data:
        if len(_DEFAULTS) >= 64:  # many settings objects (tests): start over
            _DEFAULTS.clear()
        hit = _DEFAULTS[id(data)] = (data, MediaPolicy.from_json(data))
    return hit[1]


@functools.lru_cache(maxsize=1024)
def _over(policy: MediaPolicy, default: MediaPolicy) -> dict:
    """``policy.over(default).to_json()``, memoised per worker: policies are few, frozen, and read on
    every call (callers copy the dict)."""
    return policy.over(default).to_json()


def with_user(uri: str, user: str) -> str:
    """``uri`` with ``user`` as its user part when it has none (``sip:10.0.0.5:5060`` ->
    ``sip:+14155550100@10.0.0.5:5060``); a URI with a user part is kept as is."""
    scheme, _, rest = uri.partition(":")
    if "@" in rest.split(";", 1)[0]:
        return uri
    return f"{scheme}:{user}@{rest}"


def up_uris(agent: Agent, down: frozenset[str], trace: Trace | None = None) -> tuple[str, ...]:
    """The agent's URIs not in ``down`` (``{agent}/{uri}`` marked down by its OPTIONS probes); all of
    them when the agent is not probed."""
    if not agent.probe or not down:
        return agent.uris
    up = tuple(u for u in agent.uris if keys.agent_member(agent.name, u) not in down)
    if trace is not None and len(up) < len(agent.uris):
        trace.append(Step("health", bool(up), f"agent {agent.name}: marked down by OPTIONS probes, skipped: "
                          + ", ".join(u for u in agent.uris if u not in up)))
    return up


def agent_target(agent: Agent, uri: str, label: str, lease: Lease | None, number: str, trunk: Trunk,
                 rt: RuntimeSettings) -> Target:
    """A hop of an origination call from ``trunk`` to one URI of ``agent`` (the DID ``number`` as
    user part where the URI has none)."""
    return Target(uri=with_user(uri, number), label=label, lease=lease, max_duration_s=max_duration(trunk, rt),
                  dtmf=dtmf_mode(agent, rt), billing=format_increment(trunk.billing_increment),
                  rate=str(trunk.inbound_rate or ""), media=agent_media(agent, rt),
                  answer_timeout_ms=agent.answer_timeout_ms or 0, hold_answer_ms=agent.hold_answer_ms)


def fallback_targets(did: Did, agent: Agent, trunk: Trunk, topology: Topology, rt: RuntimeSettings,
                     trace: Trace | None = None,
                     routes: Callable[[str], tuple[list[RouteEntry], frozenset[str]]] | None = None,
                     from_user: str = "") -> list[Target]:
    """The DID's fallback steps as hops after the agent's own URIs: another agent's URIs that are
    up (its slot taken when the call reaches them), a SIP URI on a host the DID's agent may
    transfer to (:func:`routing.call.transfer.sip_target_allowed`), a number's carriers in
    least-cost order (:func:`_number_targets`; ``routes`` looks its route entries and the down
    gateways up; ``from_user``: the carrier's From user, the original caller); an announcement is no hop (:attr:`routing.call.plan.CallPlan.announce`).  A step naming an agent that no longer exists, a host not allowed or a number
    nothing may reach is skipped (shown by ``edgectl explain``)."""
    out: list[Target] = []
    for step in did.fallback:
        if step.kind is FallbackKind.ANNOUNCE:  # no hop: played when every hop failed (CallPlan.announce)
            if trace is not None:
                trace.append(Step("health", True, f"fallback {step}: {step.value}.wav played to the caller as early "
                                                  "media (183) before the final refusal"))
            continue
        if step.kind is FallbackKind.NUMBER:
            out += _number_targets(step.value, did, agent, topology, rt, trace, routes,
                                   _caller(from_user, trunk))
            continue
        if step.kind is FallbackKind.AGENT:
            other = topology.agents.get(step.value)
            uris = up_uris(other, topology.agents_down, trace) if other is not None else ()
            if other is None or not uris:
                if trace is not None:
                    trace.append(Step("health", False, f"fallback {step}: " + ("no such agent" if other is None else "no URI up")))
                continue
            lease = agent_lease(other) if other.name != agent.name else None
            out += [agent_target(other, uri, f"fallback {other.name} {uri}", lease, did.number, trunk, rt) for uri in uris]
        elif xfer.sip_target_allowed(step.value, agent.transfer_hosts, (u for a in topology.agents.values() for u in a.uris)):
            out.append(replace(agent_target(agent, step.value, f"fallback {step.value}", None, did.number, trunk, rt),
                               uri=step.value))
        elif trace is not None:
            trace.append(Step("health", False, f"fallback {step}: host not in agent {agent.name}'s transfer_hosts"))
    if trace is not None and out:
        trace.append(Step("health", True, "fallback after the agent's URIs: " + ", ".join(t.uri for t in out)))
    return out


def _caller(from_user: str, trunk: Trunk) -> str:
    """The carrier's From user as E.164 in ``trunk``'s number format, as written when it is no number."""
    try:
        return from_uri_user(from_user, trunk.number_format)
    except NumberError:
        return from_user


def _number_targets(number: str, did: Did, agent: Agent, topology: Topology, rt: RuntimeSettings,
                    trace: Trace | None, routes: Callable[[str], tuple[list[RouteEntry], frozenset[str]]] | None,
                    caller: str = "") -> list[Target]:
    """A fallback number's hops: the gateways of its route's trunks in least-cost order, under the
    destination policy of the DID's agent and each trunk, over trunks of the agent's account or shared
    route entries (docs/identity.md#accounts), each hop taking its trunk's slot.  The leg keeps the
    carrier's From (``caller``) and names the DID in ``Diversion`` per the trunk's
    ``forwarded_caller_id``; an ``owned`` trunk takes it only as
    :func:`routing.call.callerid.forwarded_verdict` allows (a Diversion naming a DID owned there).
    Not on an edge with one network per side (the hop would leave from the agent side's socket)."""
    def skip(why: str) -> list[Target]:
        if trace is not None:
            trace.append(Step("health", False, f"fallback number:{number}: {why}"))
        return []

    if rt.sip_sockets:
        return skip("not on an edge with one network per side")
    if routes is None or not destination_allowed(number, agent.allow_prefixes, (*rt.blocked_prefixes, *agent.deny_prefixes)):
        return skip(f"blocked for agent {agent.name}")
    entries, down = routes(number)
    forward = Forward(caller, did.number, fixed_from=True)
    out: list[Target] = []
    for entry in sorted(entries, key=lambda e: (e.rate, e.priority, e.trunk)):
        carrier = topology.trunks.get(entry.trunk)
        if carrier is None or not carrier.direction.allows_outbound or not (entry.shared or carrier.account == agent.account) \
                or not destination_allowed(number, carrier.allow_prefixes, carrier.deny_prefixes):
            continue
        # the DID's trunk is known here: no redis read for ownership (the caller owned only when verified)
        verdict = forwarded_verdict(carrier, forward, "", lambda n: did.trunk if n == did.number else None)
        if trace is not None:
            trace.append(Step("health", verdict.usable, f"fallback number:{number}: " + verdict.why
                              + ("" if verdict.usable else f": trunk {carrier.name} skipped")))
        if not verdict.usable:
            continue
        for gw in carrier.gateways:
            if carrier.probe and keys.gateway_member(carrier.name, gw.address) in down:
                continue
            out.append(Target(uri=gw.uri(number), label=f"fallback {carrier.name} {gw.address}", trunk=carrier.name,
                              lease=trunk_lease(carrier), max_duration_s=max_duration(carrier, rt),
                              dtmf=dtmf_mode(carrier, rt), rate=str(entry.rate),
                              billing=format_increment(carrier.billing_increment), media=trunk_media(carrier, rt),
                              diverted_from=verdict.diverted_from))
    return out or skip("no usable route")
