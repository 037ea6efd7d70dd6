"""Read-only view of the calls holding concurrency slots (for ``edgectl calls`` and tests)."""

from __future__ import annotations

import time
from typing import Any

import redis

from routing.tables import keys

__all__ = ["active_calls", "lease_counts", "call_view"]


def lease_counts(client: redis.Redis) -> dict[str, int]:
    """Unexpired members of every lease ZSET: lease key -> calls (expired leases are not counted)."""
    now = time.time()
    counts = {}
    for key in client.scan_iter(match=keys.LEASE_PATTERN, count=500):
        counts[key] = int(client.zcount(key, f"({now}", "+inf"))
    return counts


def call_view(facts: dict[str, str], now_ms: int) -> dict[str, Any]:
    """Derived fields of one live call from its call hash: ``state`` (``ringing`` until a
    2xx, then ``answered``), ``age_s`` (since the INVITE), ``duration_s`` (answered time so
    far, 0 while ringing) and ``codecs`` (``caller / callee`` codec lists)."""
    def ms(name: str) -> int | None:
        value = facts.get(name, "")
        return int(value) if value.isdigit() else None

    start, answer = ms("start_ms"), ms("answer_ms")
    caller = facts.get("codecs_caller", "")
    callee = facts.get("codecs_callee", "")
    return {
        "state": "answered" if answer is not None else "ringing",
        "age_s": None if start is None else max(0, now_ms - start) // 1000,
        "duration_s": 0 if answer is None else max(0, now_ms - answer) // 1000,
        "codecs": f"{caller or '-'} / {callee or '-'}" if caller or callee else "",
    }


def active_calls(client: redis.Redis) -> dict[str, Any]:
    """Active calls: ``{"counts": [{kind, name, active, limit}], "calls": [{call_id, node, ...facts}]}``.

    Every trunk and agent in the routing tables is listed, with 0 when idle.
    Each call carries its hash's facts (direction, trunk, agent, number, start_ms,
    answer_ms, codecs_caller, codecs_callee and whatever the media work adds) plus
    :func:`call_view`'s fields.
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
        if not facts or "fenced" in facts:
            continue  # released between the scan and the read, or a fence (no call)
        calls.append({"call_id": call_id, "node": node, **facts, **call_view(facts, int(time.time() * 1000))})
    calls.sort(key=lambda c: c["call_id"])
    return {"counts": rows, "calls": calls}
