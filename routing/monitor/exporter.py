"""Prometheus exporter of the state the edge keeps in redis (prometheus_client custom collector).

Read at every scrape, one pipelined round trip plus one for gateway health:

=============================================  =====  =====================  ========================================
metric                                         type   labels                 source
=============================================  =====  =====================  ========================================
``byoc_edge_trunk_active_calls``               gauge  trunk                  unexpired members of ``edge:lease:trunk:{name}``
``byoc_edge_trunk_max_calls``                  gauge  trunk                  ``max_calls`` (absent when unlimited)
``byoc_edge_agent_active_calls``               gauge  agent                  unexpired members of ``edge:lease:agent:{name}``
``byoc_edge_agent_max_calls``                  gauge  agent                  ``max_calls`` (absent when unlimited)
``byoc_edge_account_active_calls``             gauge  account                unexpired members of ``edge:lease:account:{name}``
``byoc_edge_account_max_calls``                gauge  account                ``max_calls`` (absent when unlimited)
``byoc_edge_gateway_up``                       gauge  trunk, gateway         1 up, 0 marked down (``edge:health:trunk:{name}``)
``byoc_edge_gateway_options_rtt_seconds``      gauge  trunk, gateway         round trip of the last answered OPTIONS
``byoc_edge_gateway_options_code``             gauge  trunk, gateway         status of the last OPTIONS, 0 = no answer
``byoc_edge_agent_uri_up``                     gauge  agent, uri             1 up, 0 marked down (``edge:health:agent:{name}``)
``byoc_edge_agent_uri_options_rtt_seconds``    gauge  agent, uri             round trip of the last answered OPTIONS
``byoc_edge_registration_up``                 gauge  trunk                  1 when this node is registered to the trunk's registrar
``byoc_edge_registration_state``              gauge  trunk, state           1 for the current state (``edge:reg:{trunk}:{node}``)
``byoc_edge_redis_up``                         gauge  -                      1 when this scrape could read redis
=============================================  =====  =====================  ========================================

The account families are left out of a deployment without accounts.
Registration states are this node's only (each node's exporter reports its own);
``state`` is one of ``registered``, ``registering``, ``failed``, ``disabled``, ``pending``.

``gateway`` is ``host:port`` of a configured gateway (bounded by the routing
tables, never a per-call value).  The prober running in the same process adds
``byoc_edge_gateway_probes_total{trunk,gateway,result}`` (``ok``/``failed``).
Runs in the edge monitor process (``routing/monitor/process.py``), in prometheus_client's
normal single-process mode: never inside Kamailio workers.
"""

from __future__ import annotations

import logging
import time
from typing import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from routing.tables import keys
from routing.monitor.health import DOWN
from routing.monitor.agentprober import read_agent_health
from routing.monitor.prober import read_health

__all__ = ["EdgeCollector", "NAMESPACE"]

NAMESPACE = "byoc_edge"
log = logging.getLogger("byoc_edge.exporter")


class EdgeCollector(Collector):
    """Collects the redis-held state at scrape time.

    Args:
        client: redis client (``decode_responses=True``) with bounded timeouts.
        node: this edge node's id (its registration states are exported).
    """

    def __init__(self, client: redis.Redis, node: str) -> None:
        self.client = client
        self.node = node

    def collect(self) -> Iterator[Metric]:
        """Yield every metric of the table above; on a redis error only ``byoc_edge_redis_up 0``."""
        up = GaugeMetricFamily(f"{NAMESPACE}_redis_up", "1 when the exporter could read the edge's redis")
        try:
            families = self._families()
        except (redis.RedisError, OSError) as exc:
            log.error("cannot read redis: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> list[Metric]:
        c = self.client
        pipe = c.pipeline(transaction=False)
        pipe.smembers(keys.TRUNKS)
        pipe.smembers(keys.AGENTS)
        pipe.smembers(keys.ACCOUNTS)
        trunk_names, agent_names, account_names = (sorted(x) for x in pipe.execute())
        now = time.time()
        pipe = c.pipeline(transaction=False)
        for name in trunk_names:
            pipe.zcount(keys.trunk_lease(name), f"({now}", "+inf")
            pipe.hget(keys.trunk(name), "max_calls")
        for name in agent_names:
            pipe.zcount(keys.agent_lease(name), f"({now}", "+inf")
            pipe.hget(keys.agent(name), "max_calls")
        for name in account_names:
            pipe.zcount(keys.account_lease(name), f"({now}", "+inf")
            pipe.hget(keys.account(name), "max_calls")
        rows = pipe.execute()
        out: list[Metric] = []
        pos = 0
        kinds = [("trunk", trunk_names), ("agent", agent_names)] + ([("account", account_names)] if account_names else [])
        for kind, names in kinds:
            active = GaugeMetricFamily(f"{NAMESPACE}_{kind}_active_calls",
                                       f"Calls holding a concurrency slot on the {kind} (calls)", labels=[kind])
            limit = GaugeMetricFamily(f"{NAMESPACE}_{kind}_max_calls",
                                      f"Concurrent-call limit of the {kind} (calls; absent when unlimited)",
                                      labels=[kind])
            for name in names:
                count, max_calls = rows[pos], rows[pos + 1]
                pos += 2
                active.add_metric([name], int(count))
                if max_calls not in (None, "") and str(max_calls).isdigit():
                    limit.add_metric([name], int(max_calls))
            out += [active, limit]
        gw_up = GaugeMetricFamily(f"{NAMESPACE}_gateway_up",
                                  "1 when the gateway answers OPTIONS, 0 when marked down", labels=["trunk", "gateway"])
        rtt = GaugeMetricFamily(f"{NAMESPACE}_gateway_options_rtt_seconds",
                                "Round-trip time of the last answered OPTIONS (s)", labels=["trunk", "gateway"])
        code = GaugeMetricFamily(f"{NAMESPACE}_gateway_options_code",
                                 "Status code of the last OPTIONS (0 = no answer)", labels=["trunk", "gateway"])
        for trunk, gateways in read_health(c, trunk_names).items():
            for address, health in sorted(gateways.items()):
                gw_up.add_metric([trunk, address], 0 if health.state == DOWN else 1)
                code.add_metric([trunk, address], health.code)
                if health.rtt_ms is not None:
                    rtt.add_metric([trunk, address], health.rtt_ms / 1000)
        uri_up = GaugeMetricFamily(f"{NAMESPACE}_agent_uri_up",
                                   "1 when the agent URI answers OPTIONS, 0 when marked down", labels=["agent", "uri"])
        uri_rtt = GaugeMetricFamily(f"{NAMESPACE}_agent_uri_options_rtt_seconds",
                                    "Round-trip time of the last answered OPTIONS to the agent URI (s)",
                                    labels=["agent", "uri"])
        for agent, uris in read_agent_health(c, agent_names).items():
            for uri, health in sorted(uris.items()):
                uri_up.add_metric([agent, uri], 0 if health.state == DOWN else 1)
                if health.rtt_ms is not None:
                    uri_rtt.add_metric([agent, uri], health.rtt_ms / 1000)
        return out + [gw_up, rtt, code, uri_up, uri_rtt, *self._registrations()]

    def _registrations(self) -> list[Metric]:
        up = GaugeMetricFamily(f"{NAMESPACE}_registration_up",
                               "1 when this node is registered to the trunk's registrar", labels=["trunk"])
        state = GaugeMetricFamily(f"{NAMESPACE}_registration_state",
                                  "1 for the current registration state of the trunk on this node",
                                  labels=["trunk", "state"])
        found = []
        prefix = keys.registration("", "")[:-1]  # "edge:reg:"
        for key in self.client.scan_iter(match=keys.registration_pattern(), count=500):
            trunk, _, node = key.removeprefix(prefix).rpartition(":")
            if node == self.node and trunk:
                found.append((trunk, key))
        pipe = self.client.pipeline(transaction=False)
        for _, key in found:
            pipe.hget(key, "state")
        for (trunk, _), value in sorted(zip(found, pipe.execute())):
            if value:
                up.add_metric([trunk], 1 if value == "registered" else 0)
                state.add_metric([trunk, value], 1)
        return [up, state]
