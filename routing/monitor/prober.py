"""Continuous SIP OPTIONS pings of every gateway, and the health state least-cost routing reads.

Every ``health.interval_s`` the prober reads the trunks from redis, sends one
OPTIONS to each gateway of each trunk with ``probe: yes`` (all in parallel,
each bounded by ``health.timeout_ms``), applies :func:`routing.monitor.health.observe`
and writes, in one MULTI/EXEC:

* ``edge:health:trunk:{name}``: ``host:port`` -> the gateway's health string
  (shown by ``edgectl trunk show`` and exported as metrics);
* ``edge:gateways:down``: every gateway marked down, read by the call path in
  the same round trip as the route lookup (:meth:`RedisStore.route_lookup`), so
  a change applies to the next call;
* ``INCR edge:version`` when the set of down gateways changed (caches keyed on
  the version drop their copy).

Health of trunks that are gone or no longer probed is deleted.  Runs inside the
edge monitor process (``routing/monitor/process.py``), never in Kamailio workers.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import redis

from routing.tables import keys
from routing.monitor.agentprober import probe_agents_round
from routing.monitor.health import DOWN, GatewayHealth, observe
from routing.tables.model import DataError, Gateway, Trunk
from routing.ops.settings import Settings
from routing.monitor.sipprobe import ProbeResult, sip_options
from routing.tables.store import RedisStore, StoreUnavailable

__all__ = ["GatewayProbe", "probe_trunk", "probe_round", "read_health", "run", "tls_context", "source_address"]

log = logging.getLogger("byoc_edge.prober")
MAX_PARALLEL = 32


@dataclass(frozen=True, slots=True)
class GatewayProbe:
    """One probe of one gateway.

    Attributes:
        trunk: trunk name.
        gateway: the gateway probed.
        result: status code, reason and round-trip time (ms).
    """

    trunk: str
    gateway: Gateway
    result: ProbeResult


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Client TLS context for ``tls`` gateways, verifying them as calls do (``sip.tls``)."""
    tls = settings.sip.tls
    context = ssl.create_default_context(cafile=str(tls.ca_list) if tls.ca_list.exists() else None)
    if not tls.verify_gateways:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.min_version == "TLSv1.3":
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def source_address(settings: Settings, transport: str) -> str | None:
    """The edge's own SIP address for ``transport`` (the first such listener, else any
    listener), so probes leave from the address carriers allow-list; None for a wildcard."""
    facing = [l for l in settings.sip.listen if l.side != "agent"]  # probes go to carriers
    listeners = [l for l in facing if l.transport == transport] or facing
    address = listeners[0].address
    return None if address in ("0.0.0.0", "::") else address


def probe_trunk(trunk: Trunk, settings: Settings,
                send: Callable[..., ProbeResult] = sip_options) -> list[GatewayProbe]:
    """Send one OPTIONS to every gateway of ``trunk`` at once; results in gateway order.

    Used by ``edgectl trunk probe`` and by each prober round.  Never raises on
    network errors (they are results with ``code=0``).
    """
    return _probe_all([(trunk, gw) for gw in trunk.gateways], settings, send)


def _probe_all(pairs: list[tuple[Trunk, Gateway]], settings: Settings,
               send: Callable[..., ProbeResult]) -> list[GatewayProbe]:
    if not pairs:
        return []
    timeout_s = settings.health.timeout_ms / 1000
    context = tls_context(settings) if any(gw.transport.value == "tls" for _, gw in pairs) else None

    def one(pair: tuple[Trunk, Gateway]) -> GatewayProbe:
        trunk, gw = pair
        transport = gw.transport.value
        result = send(gw.host, gw.port, timeout_s=timeout_s, source=source_address(settings, transport),
                      transport=transport, tls_context=context)
        return GatewayProbe(trunk.name, gw, result)

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(pairs))) as pool:
        return list(pool.map(one, pairs))


def read_health(client: redis.Redis, trunk_names: list[str]) -> dict[str, dict[str, GatewayHealth]]:
    """Stored health per trunk: ``{trunk: {"host:port": GatewayHealth}}`` (one round trip).

    A malformed value (a hand edit) reads as a fresh, up gateway and is logged.

    Raises:
        redis.RedisError: redis unreachable.
    """
    pipe = client.pipeline(transaction=False)
    for name in trunk_names:
        pipe.hgetall(keys.gateway_health(name))
    out: dict[str, dict[str, GatewayHealth]] = {}
    for name, fields in zip(trunk_names, pipe.execute()):
        out[name] = {}
        for address, value in fields.items():
            try:
                out[name][address] = GatewayHealth.from_redis(value, f"{keys.gateway_health(name)} {address}")
            except DataError as exc:
                log.error("ignoring malformed gateway health: %s", exc)
                out[name][address] = GatewayHealth()
    return out


def probe_round(client: redis.Redis, settings: Settings, now: Callable[[], float] = time.time,
                send: Callable[..., ProbeResult] = sip_options,
                observed: Callable[[GatewayProbe], None] | None = None) -> dict[str, dict[str, GatewayHealth]]:
    """Probe every gateway of every probed trunk once and store the new health.

    Args:
        client: redis client (``decode_responses=True``).
        settings: health thresholds and timeouts, the edge's source addresses.
        now: clock (epoch s).
        send: the probe function (:func:`routing.monitor.sipprobe.sip_options`).
        observed: called with each probe result (metrics).

    Returns:
        The health written: ``{trunk: {"host:port": GatewayHealth}}``.

    Raises:
        StoreUnavailable: redis unreachable.
        DataError: malformed trunk data.
    """
    topology = RedisStore(client, settings.node).topology()
    trunks = [t for t in topology.trunks.values() if t.probe and t.gateways]
    try:
        previous = read_health(client, [t.name for t in trunks])
        down_before = client.smembers(keys.GATEWAYS_DOWN)
        stale = [k for k in client.scan_iter(match=keys.HEALTH_PATTERN, count=500)
                 if k.removeprefix(keys.gateway_health("")) not in {t.name for t in trunks}]
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(str(exc)) from exc
    probes = _probe_all([(t, gw) for t in trunks for gw in t.gateways], settings, send)
    h = settings.health
    health: dict[str, dict[str, GatewayHealth]] = {t.name: {} for t in trunks}
    for probe in probes:
        if observed is not None:
            observed(probe)
        address = probe.gateway.address
        before = previous.get(probe.trunk, {}).get(address, GatewayHealth())
        r = probe.result
        after = observe(before, r.code, r.reason, r.rtt_ms, now(), h.down_after, h.up_after)
        if after.state != before.state:
            why = f"{r.code} {r.reason}" if r.code else r.reason
            log.warning("gateway %s/%s is %s (%s; %d failed, %d ok in a row)", probe.trunk, address,
                        after.state, why, after.fails, after.oks)
        health[probe.trunk][address] = after
    try:
        with client.pipeline(transaction=True) as pipe:
            # the trunks may have changed while the probes ran: keep only gateways still configured,
            # and write nothing if they change again before EXEC (the next round writes instead)
            pipe.watch(keys.TRUNKS, *(keys.trunk_gateways(t) for t in health), *(keys.trunk(t) for t in health))
            still = pipe.smembers(keys.TRUNKS)
            for trunk in list(health):
                configured = pipe.hkeys(keys.trunk_gateways(trunk)) if trunk in still else []
                probed_now = (pipe.hget(keys.trunk(trunk), "probe") or "yes").strip().lower() not in ("no", "false", "0", "off")
                if not configured or not probed_now:
                    stale.append(keys.gateway_health(trunk))
                    del health[trunk]
                    continue
                health[trunk] = {a: g for a, g in health[trunk].items() if a in configured}
            down_now = {keys.gateway_member(trunk, address)
                        for trunk, gateways in health.items() for address, g in gateways.items() if g.state == DOWN}
            pipe.multi()
            for key in stale:
                pipe.delete(key)
            for trunk, gateways in health.items():
                pipe.delete(keys.gateway_health(trunk))
                if gateways:
                    pipe.hset(keys.gateway_health(trunk), mapping={a: g.to_redis() for a, g in gateways.items()})
            pipe.delete(keys.GATEWAYS_DOWN)
            if down_now:
                pipe.sadd(keys.GATEWAYS_DOWN, *sorted(down_now))
            if down_now != set(down_before):
                pipe.incr(keys.VERSION)
            pipe.execute()
    except redis.WatchError:
        log.info("trunks changed during the probe round: its results are dropped")
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(str(exc)) from exc
    return health


def run(client: redis.Redis, settings: Settings, stop: threading.Event,
        observed: Callable[[GatewayProbe], None] | None = None) -> None:
    """Probe rounds of the gateways and of the agents' URIs (:mod:`routing.monitor.agentprober`)
    every ``health.interval_s`` until ``stop`` is set; errors are logged and the next round
    tries again (a redis outage never stops the prober)."""
    while not stop.is_set():
        started = time.monotonic()
        for round_ in (lambda: probe_round(client, settings, observed=observed),
                       lambda: probe_agents_round(client, settings)):
            try:
                round_()
            except (StoreUnavailable, DataError, redis.RedisError) as exc:
                log.error("probe round failed: %s", exc)
        stop.wait(max(0.0, settings.health.interval_s - (time.monotonic() - started)))
