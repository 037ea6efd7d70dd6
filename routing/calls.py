"""Read-only view of the calls holding concurrency slots (for ``edgectl calls`` and tests)."""

from __future__ import annotations

import time
from typing import Any

import redis

from . import keys

__all__ = ["active_calls", "lease_counts"]


def lease_counts(client: redis.Redis) -> dict[str, int]:
    """Unexpired members of every lease ZSET: lease key -> calls (expired leases are not counted)."""
    now = time.time()
    counts = {}
    for key in client.scan_iter(match=keys.LEASE_PATTERN, count=500):
        counts[key] = int(client.zcount(key, f"({now}", "+inf"))
    return counts


def active_calls(client: redis.Redis) -> dict[str, Any]:
    """Active calls: ``{"counts": [{kind, name, active, limit}], "calls": [{call_id, node, ...facts}]}``.

    Every trunk and agent in the routing tables is listed, with 0 when idle.
    """
    counts = lease_counts(client)
    rows = []
    for kind, index, lease_key, entity_key in (
        ("trunk", keys.TRUNKS, keys.trunk_lease, keys.trunk),
        ("agent", keys.AGENTS, keys.agent_lease, keys.agent),
    ):
        for name in sorted(client.smembers(index)):
            limit = client.hget(entity_key(name), "max_calls")
            rows.append(
                {
                    "kind": kind,
                    "name": name,
                    "active": counts.get(lease_key(name), 0),
                    "limit": int(limit) if limit not in (None, "") else None,
                }
            )
    calls = []
    prefix = keys.call("", "")[:-2]
    for key in client.scan_iter(match=keys.CALL_PATTERN, count=500):
        node, _, call_id = key[len(prefix) + 1 :].partition(":")
        facts = {k: v for k, v in client.hgetall(key).items() if not k.startswith("lease:")}
        calls.append({"call_id": call_id, "node": node, **facts})
    calls.sort(key=lambda c: c["call_id"])
    return {"counts": rows, "calls": calls}
