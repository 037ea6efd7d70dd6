"""The call-record collector against a real redis: spend today, caps, spool depth."""

from __future__ import annotations

from pathlib import Path

import redis
from prometheus_client import CollectorRegistry, generate_latest

from routing.tables import admin, keys
from routing.monitor.cdrmetrics import CdrCollector
from routing.tables.cdrstore import Spool
from routing.tables.model import Trunk
from decimal import Decimal

NOON = 1_795_262_400.0  # 2026-11-21T12:00:00Z


def scrape(collector: CdrCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_spend_cap_and_spool_depth(redis_client: redis.Redis, tmp_path: Path) -> None:
    admin.put_trunk(redis_client, Trunk("telnyx", daily_spend_cap=Decimal("50")))
    admin.put_trunk(redis_client, Trunk("twilio"))
    redis_client.set(keys.spend("telnyx", "20261121"), 12_345_678)
    redis_client.set(keys.spend("telnyx", "20261120"), 99_000_000)  # yesterday: not today's spend
    Spool(tmp_path).append({"id": "n:c:1"})
    Spool(tmp_path).append({"id": "n:c:2"})
    text = scrape(CdrCollector(redis_client, tmp_path, clock=lambda: NOON))
    assert 'byoc_edge_trunk_spend_today{trunk="telnyx"} 12.345678' in text
    assert 'byoc_edge_trunk_spend_today{trunk="twilio"} 0.0' in text
    assert 'byoc_edge_trunk_daily_spend_cap{trunk="telnyx"} 50.0' in text
    assert 'byoc_edge_trunk_daily_spend_cap{trunk="twilio"}' not in text
    assert "byoc_edge_cdr_spooled_records 2.0" in text


def test_redis_down_still_reports_the_spool(tmp_path: Path) -> None:
    from routing.tables.store import connect
    from tests.helpers import free_port

    dead = connect("127.0.0.1", free_port(), timeout_ms=100, connect_timeout_ms=100)
    text = scrape(CdrCollector(dead, tmp_path / "missing"))
    assert "byoc_edge_cdr_spooled_records 0.0" in text and "spend_today" not in text


def test_outbox_depth_only_with_a_durable_store(redis_client: redis.Redis, tmp_path: Path) -> None:
    import time

    from routing.tables.cdrstore import CdrStore

    now = int(time.time() * 1000)
    durable = CdrStore(redis_client, 3600, outbox=keys.cdr_outbox("n1"))
    for n in range(3):
        durable.add({"id": f"n1:c{n}:1", "start_ms": now, "end_ms": now, "cost": "0"})
    assert "byoc_edge_cdr_outbox_records 3.0" in scrape(CdrCollector(redis_client, tmp_path, durable))
    assert "outbox" not in scrape(CdrCollector(redis_client, tmp_path, CdrStore(redis_client, 3600)))


def test_account_spend_and_cap_only_where_accounts_exist(redis_client: redis.Redis, tmp_path: Path) -> None:
    from routing.tables.model import Account

    admin.put_trunk(redis_client, Trunk("telnyx"))
    assert "account" not in scrape(CdrCollector(redis_client, tmp_path, clock=lambda: NOON))
    admin.put_account(redis_client, Account("acme", daily_spend_cap=Decimal("20")))
    redis_client.set(keys.account_spend("acme", "20261121"), 1_500_000)
    text = scrape(CdrCollector(redis_client, tmp_path, clock=lambda: NOON))
    assert 'byoc_edge_account_spend_today{account="acme"} 1.5' in text
    assert 'byoc_edge_account_daily_spend_cap{account="acme"} 20.0' in text
    assert 'byoc_edge_trunk_spend_today{trunk="telnyx"} 0.0' in text
