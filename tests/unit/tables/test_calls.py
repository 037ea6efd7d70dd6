"""routing.tables.calls: what edgectl explain reads of one Call-ID (live facts, call records)."""

from __future__ import annotations

import json

import redis

from routing.call import pipeline
from routing.tables import calls, keys
from routing.tables.model import Agent
from routing.tables.store import RedisStore


def test_active_call_is_found_by_call_id_with_glob_characters(redis_client: redis.Redis) -> None:
    tables = RedisStore(redis_client, "n1")
    lease = pipeline.agent_lease(Agent("bot"))
    tables.acquire("we*ird[1]@h", [lease], 60, facts={"direction": "origination", "agent": "bot"})
    tables.acquire("weXird1@h", [lease], 60, facts={"direction": "termination", "agent": "bot"})
    assert calls.active_call(tables.client, "we*ird[1]@h") == {"node": "n1", "direction": "origination", "agent": "bot"}
    assert calls.active_call(tables.client, "nothing") is None


def test_call_records_are_found_by_exact_call_id(redis_client: redis.Redis) -> None:
    for record_id, call_id, start in (("n1:a*b:1", "a*b", 2), ("n1:a*b:2", "a*b", 1), ("n1:aXb:1", "aXb", 3),
                                      ("n2:a*b:x:1", "a*b:x", 4)):
        redis_client.set(keys.cdr(record_id), json.dumps({"id": record_id, "call_id": call_id, "start_ms": start}))
    assert [r["id"] for r in calls.call_records(redis_client, "a*b")] == ["n1:a*b:2", "n1:a*b:1"]
    assert calls.call_records(redis_client, "nothing") == []
