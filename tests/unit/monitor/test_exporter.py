"""routing.monitor.exporter: the redis-held state as Prometheus samples, read from a real redis."""

from __future__ import annotations

import redis
from prometheus_client import CollectorRegistry, generate_latest

from routing.tables import admin, keys
from routing.monitor import prober
from routing.monitor.exporter import EdgeCollector
from routing.tables.model import Agent, Direction, Gateway, Trunk
from routing.ops.settings import Settings
from routing.monitor.sipprobe import ProbeResult
from routing.tables.store import Lease, RedisStore


def scrape(client: redis.Redis, node: str = "n1") -> str:
    registry = CollectorRegistry()
    registry.register(EdgeCollector(client, node))
    return generate_latest(registry).decode()


def test_active_calls_limits_gateway_health_and_registrations(redis_client: redis.Redis) -> None:
    admin.put_trunk(redis_client, Trunk("a", Direction.BOTH, max_calls=3, gateways=(Gateway("192.0.2.1"),)))
    admin.put_trunk(redis_client, Trunk("b", Direction.BOTH))  # unlimited
    admin.put_agent(redis_client, Agent("bot", ("sip:bot@192.0.2.9",), max_calls=2))
    store = RedisStore(redis_client, "n1")
    lease = [Lease(keys.trunk_lease("a"), 3, "trunk a"), Lease(keys.agent_lease("bot"), 2, "agent bot")]
    assert store.acquire("c1", lease, 60).admitted and store.acquire("c2", lease, 60).admitted
    prober.probe_round(redis_client, Settings.model_validate({"health": {"down_after": 1}}),
                       send=lambda *a, **k: ProbeResult(200, "OK", 12.5))
    redis_client.hset(keys.registration("a", "n1"), mapping={"state": "registered", "code": "200"})
    redis_client.hset(keys.registration("b", "n1"), mapping={"state": "failed", "code": "403"})
    redis_client.hset(keys.registration("a", "other-node"), mapping={"state": "failed"})
    text = scrape(redis_client)
    for line in [
        'byoc_edge_trunk_active_calls{trunk="a"} 2.0',
        'byoc_edge_trunk_active_calls{trunk="b"} 0.0',
        'byoc_edge_trunk_max_calls{trunk="a"} 3.0',
        'byoc_edge_agent_active_calls{agent="bot"} 2.0',
        'byoc_edge_agent_max_calls{agent="bot"} 2.0',
        'byoc_edge_gateway_up{gateway="192.0.2.1:5060",trunk="a"} 1.0',
        'byoc_edge_gateway_options_rtt_seconds{gateway="192.0.2.1:5060",trunk="a"} 0.0125',
        'byoc_edge_gateway_options_code{gateway="192.0.2.1:5060",trunk="a"} 200.0',
        'byoc_edge_registration_up{trunk="a"} 1.0',
        'byoc_edge_registration_up{trunk="b"} 0.0',
        'byoc_edge_registration_state{state="failed",trunk="b"} 1.0',
        "byoc_edge_redis_up 1.0",
    ]:
        assert line in text, line
    assert 'trunk_max_calls{trunk="b"}' not in text  # unlimited: no limit series
    assert text.count("byoc_edge_registration_up{") == 2  # only this node's registrations
    store.release("c1")
    assert 'byoc_edge_trunk_active_calls{trunk="a"} 1.0' in scrape(redis_client)


def test_unreachable_redis_gives_only_redis_down() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, decode_responses=True)
    text = scrape(client)
    assert "byoc_edge_redis_up 0.0" in text
    assert "byoc_edge_trunk_active_calls" not in text


def test_account_calls_and_limit_only_where_accounts_exist(redis_client: redis.Redis) -> None:
    from routing.tables.model import Account

    admin.put_trunk(redis_client, Trunk("a", Direction.BOTH))
    assert "account" not in scrape(redis_client)
    admin.put_account(redis_client, Account("acme", max_calls=4))
    assert RedisStore(redis_client, "n1").acquire("c1", [Lease(keys.account_lease("acme"), 4, "account acme")], 60).admitted
    text = scrape(redis_client)
    assert 'byoc_edge_account_active_calls{account="acme"} 1.0' in text
    assert 'byoc_edge_account_max_calls{account="acme"} 4.0' in text
