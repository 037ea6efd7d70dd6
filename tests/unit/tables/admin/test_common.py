"""routing.tables.admin.common against a real redis: version bumps, schema check, retries on conflicts."""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis

from routing.tables import admin, keys
from routing.tables.model import DataError, Did, RouteEntry
from tests.unit.tables.samples import all_keys, make_agent, make_trunk, version


def test_every_write_bumps_version_once(redis_client: redis.Redis) -> None:
    steps = [
        lambda: admin.put_trunk(redis_client, make_trunk()),
        lambda: admin.put_agent(redis_client, make_agent()),
        lambda: admin.put_did(redis_client, Did("+14155550100", "telnyx", "bot")),
        lambda: admin.put_route(redis_client, RouteEntry("+1", "telnyx", Decimal("0.01"))),
        lambda: admin.remove_route(redis_client, "+1"),
        lambda: admin.remove_did(redis_client, "+14155550100"),
        lambda: admin.remove_agent(redis_client, "bot"),
        lambda: admin.remove_trunk(redis_client, "telnyx"),
    ]
    step, *rest = steps
    step()
    first = version(redis_client)
    assert first > 1_700_000_000_000_000  # seeded from the clock (µs) on an empty database
    for expected, step in enumerate(rest, start=first + 1):
        step()
        assert version(redis_client) == expected
    assert redis_client.get(keys.SCHEMA) == keys.SCHEMA_VERSION
    assert all_keys(redis_client) == {keys.VERSION, keys.SCHEMA}


def test_newer_schema_refused(redis_client: redis.Redis) -> None:
    redis_client.set(keys.SCHEMA, "99")
    with pytest.raises(DataError, match=r"is '99' but this edgectl writes schema 1"):
        admin.put_trunk(redis_client, make_trunk())
    assert redis_client.smembers(keys.TRUNKS) == set()


def test_writes_give_up_after_repeated_conflicts(peers: redis.Redis, redis_server, monkeypatch: pytest.MonkeyPatch) -> None:
    other = redis.Redis(*redis_server, decode_responses=True)
    original = admin.common._check_schema
    attempts = []

    def always_racing(pipe):
        original(pipe)
        attempts.append(pipe)
        other.sadd(keys.TRUNKS, f"other{len(attempts)}")  # changes a watched key every attempt

    monkeypatch.setattr(admin.common, "MAX_ATTEMPTS", 3)
    monkeypatch.setattr(admin.common, "_check_schema", always_racing)
    with pytest.raises(admin.ConflictError, match="3 attempts"):
        admin.put_did(peers, Did("+14155550100", "telnyx", "bot"))
    other.close()
    assert len(attempts) == 3
    assert not peers.exists(keys.did("+14155550100"))
