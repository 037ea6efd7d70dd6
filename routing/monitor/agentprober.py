"""SIP OPTIONS pings of every agent URI, and the health state origination reads: the agent's
side of :mod:`routing.monitor.prober` (same state machine, :func:`routing.monitor.health.observe`,
same thresholds ``health.*``).

Each round reads the agents from redis, sends one OPTIONS to every URI of every agent with
``probe: yes`` (in parallel, each bounded by ``health.timeout_ms``, from the edge's agent-facing
address) and writes, in one MULTI/EXEC:

* ``edge:health:agent:{name}``: URI -> its health string (``edgectl agent show``, metrics);
* ``edge:agents:down``: every URI marked down (``{agent}/{uri}``), read with the topology by the
  call path, which skips those URIs (``routing.call.pipeline``: stage ``health``);
* ``INCR edge:version`` when that set changed, so the next call routes on the new state.

Health of agents that are gone, or no longer probed, is deleted.  Runs in the monitor process.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import redis

from routing.monitor.health import DOWN, GatewayHealth, observe
from routing.monitor.sipprobe import ProbeResult, sip_options
from routing.ops.settings import Settings
from routing.tables import keys
from routing.tables.model import Agent, DataError, Transport
from routing.tables.store import RedisStore, StoreUnavailable

__all__ = ["UriProbe", "uri_target", "read_agent_health", "probe_agents_round", "probe_agent"]

log = logging.getLogger("byoc_edge.prober")
MAX_PARALLEL = 32


@dataclass(frozen=True, slots=True)
class UriProbe:
    """One probe of one agent URI: the agent's name, the URI, the answer."""

    agent: str
    uri: str
    result: ProbeResult


def uri_target(uri: str) -> tuple[str, int, str]:
    """Where an agent URI is reached: ``(host, port, transport)``; the port defaults to 5060
    (5061 for ``sips:``), the transport to ``udp`` (``tls`` for ``sips:``), RFC 3263 SRV/NAPTR
    lookups aside (a DNS name is resolved as an A/AAAA record).

    Raises:
        DataError: not a ``sip:``/``sips:`` URI with a host.
    """
    scheme, sep, rest = uri.partition(":")
    scheme = scheme.strip().lower()
    if not sep or scheme not in ("sip", "sips"):
        raise DataError(f"agent uri: not a sip: or sips: URI: {uri!r}")
    rest = rest.split("?", 1)[0]
    hostport, _, params = rest.rpartition("@")[2].partition(";")
    transport = "tls" if scheme == "sips" else "udp"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "transport" and value.strip().lower() in {t.value for t in Transport}:
            transport = value.strip().lower()
    if hostport.startswith("["):
        host, _, port_text = hostport.partition("]")
        host, port_text = host + "]", port_text.lstrip(":")
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise DataError(f"agent uri: no host in {uri!r}")
    default = 5061 if transport == "tls" else 5060
    return host, int(port_text) if port_text.isdigit() else default, transport


def read_agent_health(client: redis.Redis, agent_names: list[str]) -> dict[str, dict[str, GatewayHealth]]:
    """Stored health per agent: ``{agent: {uri: GatewayHealth}}`` (one round trip); a malformed
    value reads as a fresh, up URI and is logged.

    Raises:
        redis.RedisError: redis unreachable.
    """
    pipe = client.pipeline(transaction=False)
    for name in agent_names:
        pipe.hgetall(keys.agent_health(name))
    out: dict[str, dict[str, GatewayHealth]] = {}
    for name, fields in zip(agent_names, pipe.execute()):
        out[name] = {}
        for uri, value in fields.items():
            try:
                out[name][uri] = GatewayHealth.from_redis(value, f"{keys.agent_health(name)} {uri}")
            except DataError as exc:
                log.error("ignoring malformed agent health: %s", exc)
                out[name][uri] = GatewayHealth()
    return out


def _source(settings: Settings, transport: str) -> str | None:
    """The edge's agent-facing SIP address for ``transport`` (None for a wildcard listener)."""
    facing = [l for l in settings.sip.listen if l.side != "carrier"]
    listeners = [l for l in facing if l.transport == transport] or facing or list(settings.sip.listen)
    address = listeners[0].address
    return None if address in ("0.0.0.0", "::") else address


def probe_agent(agent: Agent, settings: Settings, send: Callable[..., ProbeResult] = sip_options) -> list[UriProbe]:
    """One OPTIONS to every URI of ``agent`` at once; results in URI order (never raises on
    network errors: they are results with ``code=0``)."""
    return _probe_all([(agent, uri) for uri in agent.uris], settings, send)


def _probe_all(pairs: list[tuple[Agent, str]], settings: Settings, send: Callable[..., ProbeResult]) -> list[UriProbe]:
    if not pairs:
        return []
    timeout_s = settings.health.timeout_ms / 1000

    def one(pair: tuple[Agent, str]) -> UriProbe:
        agent, uri = pair
        try:
            host, port, transport = uri_target(uri)
        except DataError as exc:
            return UriProbe(agent.name, uri, ProbeResult(0, str(exc), None))
        result = send(host, port, timeout_s=timeout_s, source=_source(settings, transport), transport=transport)
        return UriProbe(agent.name, uri, result)

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(pairs))) as pool:
        return list(pool.map(one, pairs))


def probe_agents_round(client: redis.Redis, settings: Settings, now: Callable[[], float] = time.time,
                       send: Callable[..., ProbeResult] = sip_options,
                       observed: Callable[[UriProbe], None] | None = None) -> dict[str, dict[str, GatewayHealth]]:
    """Probe every URI of every probed agent once and store the new health.

    Returns:
        The health written: ``{agent: {uri: GatewayHealth}}``.

    Raises:
        StoreUnavailable: redis unreachable.
        DataError: malformed agent data.
    """
    topology = RedisStore(client, settings.node).topology()
    agents = [a for a in topology.agents.values() if a.probe and a.uris]
    names = {a.name for a in agents}
    try:
        previous = read_agent_health(client, sorted(names))
        down_before = client.smembers(keys.AGENTS_DOWN)
        stale = [k for k in client.scan_iter(match=keys.AGENT_HEALTH_PATTERN, count=500)
                 if k.removeprefix(keys.agent_health("")) not in names]
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(str(exc)) from exc
    h = settings.health
    health: dict[str, dict[str, GatewayHealth]] = {name: {} for name in names}
    for probe in _probe_all([(a, uri) for a in agents for uri in a.uris], settings, send):
        if observed is not None:
            observed(probe)
        before = previous.get(probe.agent, {}).get(probe.uri, GatewayHealth())
        r = probe.result
        after = observe(before, r.code, r.reason, r.rtt_ms, now(), h.down_after, h.up_after)
        if after.state != before.state:
            log.warning("agent %s uri %s is %s (%s; %d failed, %d ok in a row)", probe.agent, probe.uri, after.state,
                        f"{r.code} {r.reason}" if r.code else r.reason, after.fails, after.oks)
        health[probe.agent][probe.uri] = after
    try:
        with client.pipeline(transaction=True) as pipe:
            # the agents may have changed while the probes ran: keep only URIs still configured
            pipe.watch(keys.AGENTS, *(keys.agent_uris(a) for a in health), *(keys.agent(a) for a in health))
            still = pipe.smembers(keys.AGENTS)
            for name in list(health):
                configured = pipe.lrange(keys.agent_uris(name), 0, -1) if name in still else []
                probed_now = (pipe.hget(keys.agent(name), "probe") or "yes").strip().lower() not in ("no", "false", "0", "off")
                if not configured or not probed_now:
                    stale.append(keys.agent_health(name))
                    del health[name]
                    continue
                health[name] = {u: g for u, g in health[name].items() if u in configured}
            down_now = {keys.agent_member(name, uri)
                        for name, uris in health.items() for uri, g in uris.items() if g.state == DOWN}
            pipe.multi()
            for key in stale:
                pipe.delete(key)
            for name, uris in health.items():
                pipe.delete(keys.agent_health(name))
                if uris:
                    pipe.hset(keys.agent_health(name), mapping={u: g.to_redis() for u, g in uris.items()})
            pipe.delete(keys.AGENTS_DOWN)
            if down_now:
                pipe.sadd(keys.AGENTS_DOWN, *sorted(down_now))
            if down_now != set(down_before):
                pipe.incr(keys.VERSION)
            pipe.execute()
    except redis.WatchError:
        log.info("agents changed during the probe round: its results are dropped")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(str(exc)) from exc
    return health
